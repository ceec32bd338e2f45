"""Sequences to per-protein vectors: embedding kinds, long-sequence policy, batching, pooling.

Every family goes through this one path, so "mean embedding" means the same thing for all:
the average of the adapter's per-residue vectors (of the chosen layers) over the protein's
residues. A residue covered by several windows of a chunked long sequence contributes the
average of its window vectors, so each residue weighs the same in the protein's mean.

Speed: pieces are batched longest first under a token budget (per device, overridable);
the mean is taken on the device, so only one vector per piece crosses back to the host;
on a GPU the next batch is tokenised on a worker thread into pinned memory while the
current one runs. Out of device memory, a batch is retried in halves under a halved
budget; a piece that does not fit even alone rejects its protein, with the reason.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .adapters.base import Adapter
from .errors import RejectedSequence, UserError
from .names import embedding_kind
from .sequences import windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddingKind:
    """Which layers the vectors come from and what is kept (config: model.embedding)."""

    layer: str | int = "last"  # last, first, all, or a layer number
    per_residue: bool = False  # also keep every residue's vector
    normalize: bool = False  # L2-normalise each per-protein vector

    @classmethod
    def from_config(cls, embedding: dict) -> "EmbeddingKind":
        return cls(embedding["layer"], embedding["per_residue"], embedding["normalize"])

    @property
    def name(self) -> str:
        """Short name of the per-protein vectors, stored with them in the graph."""
        return embedding_kind({"layer": self.layer, "normalize": self.normalize})

    def layers(self, num_layers: int) -> list[int]:
        """Layer numbers to average (see adapters/base.py for the numbering)."""
        if self.layer == "last":
            return [num_layers]
        if self.layer == "first":
            return [1]
        if self.layer == "all":
            return list(range(1, num_layers + 1))
        if not 0 <= self.layer <= num_layers:
            raise UserError(
                f"model.embedding.layer is {self.layer} but the model has layers 0 to "
                f"{num_layers} (0 the input embeddings, {num_layers} the last)"
            )
        return [self.layer]

    def source(self, adapter: Adapter) -> str:
        layers = self.layers(adapter.num_layers)
        if len(layers) == 1:
            return adapter.describe_layer(layers[0])
        return (
            f"the average of layers 1 to {adapter.num_layers} (every block's output; the "
            f"last after {adapter.final_norm}, the others before it; layer 0, the input "
            "embeddings, excluded)"
        )

    def describe(self, adapter: Adapter) -> str:
        """Exactly what the per-protein vector is, in words (goes into the metadata)."""
        normalized = ", then L2-normalised" if self.normalize else ""
        return f"mean over {adapter.tokens} of {self.source(adapter)}{normalized}"

    def describe_residues(self, adapter: Adapter) -> str:
        return (
            f"one vector per residue ({adapter.tokens}) of {self.source(adapter)}, not "
            "normalised; a residue in several windows of a chunked sequence gets the average "
            "of its window vectors"
        )


@dataclass(frozen=True)
class Embedded:
    vector: np.ndarray  # float32, (dimension,)
    residues: int  # residues of the prepared sequence
    handling: str  # how the length policy applied: "whole", "truncated", "chunked:N"
    residue_vectors: np.ndarray | None = None  # float32, (residues, dimension), if asked for


def default_tokens_per_batch(device: torch.device) -> int:
    # GPUs want large batches. A CPU gets one piece per forward: batching gains nothing
    # there (BENCHMARKS.md), and in a padded batch a row's last bits depend on its batch
    # mates, which change with the shard count (README, Reproducibility).
    return 1 if device.type == "cpu" else 16384


def plan_windows(
    sequence: str, max_residues: int, policy: str, overlap: int
) -> tuple[list[tuple[int, int]], str]:
    """The residue windows a sequence is embedded in, and how the policy applied."""
    if len(sequence) <= max_residues:
        return [(0, len(sequence))], "whole"
    if policy == "reject":
        raise RejectedSequence(
            f"{len(sequence)} residues exceed the model's {max_residues} (long_sequences: reject)"
        )
    if policy == "truncate":
        return [(0, max_residues)], "truncated"
    spans = windows(len(sequence), max_residues, overlap)
    return spans, f"chunked:{len(spans)}"


def batches(lengths: list[int], tokens_per_batch: int, special_tokens: int) -> list[list[int]]:
    """Indices grouped longest first so that padded tokens per batch stay within the budget."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    for index in order:
        padded_width = lengths[current[0]] + special_tokens if current else 0
        width = max(padded_width, lengths[index] + special_tokens)
        if current and width * (len(current) + 1) > tokens_per_batch:
            groups.append(current)
            current = []
        current.append(index)
    if current:
        groups.append(current)
    return groups


def padded_tokens(lengths: list[int], special_tokens: int) -> int:
    """Tokens of a batch padded to its longest piece."""
    return (max(lengths) + special_tokens) * len(lengths)


def _one_ahead(
    function: Callable, items: Iterable, *, enabled: bool
) -> Iterator[tuple[object, object]]:
    """(item, function(item)) for each item; when enabled, the next item's function runs on
    a worker thread while the caller works on this one."""
    if not enabled:
        for item in items:
            yield item, function(item)
        return
    with ThreadPoolExecutor(max_workers=1) as worker:
        upcoming = None
        for item in items:
            future = worker.submit(function, item)
            if upcoming is not None:
                yield upcoming[0], upcoming[1].result()
            upcoming = (item, future)
        if upcoming is not None:
            yield upcoming[0], upcoming[1].result()


def embed_sequences(
    adapter: Adapter,
    sequences: list[str],
    *,
    kind: EmbeddingKind = EmbeddingKind(),
    long_sequences: str = "chunk",
    overlap: int = 256,
    max_residues: int | None = None,
    tokens_per_batch: int | None = None,
    progress: Iterable | None = None,
) -> list[Embedded | RejectedSequence]:
    """Vectors for prepared sequences, in input order; rejects in their place.

    `max_residues` (default: the model's trained length) is the longest piece embedded at
    once; longer sequences follow `long_sequences`. `progress`: a file for the progress bar,
    or a tqdm class to make one (None: no bar).
    """
    plan = Plan.of(sequences, max_residues or adapter.max_residues, long_sequences, overlap)
    runner = PieceRunner(
        adapter,
        plan,
        kind.layers(adapter.num_layers),
        tokens_per_batch or default_tokens_per_batch(adapter.device),
        per_residue=kind.per_residue,
    )
    runner.run_all(progress)
    return finish(plan, runner, normalize=kind.normalize)


@dataclass
class Plan:
    """What to embed: the pieces (windows) of every sequence and how much each residue
    weighs. A residue covered by n windows gets weight n, so that its share is 1/n."""

    sequences: list[str]
    pieces: list[tuple[int, int, int]]  # (sequence index, start, end)
    coverage: dict[int, np.ndarray]  # sequence index -> windows holding each residue
    handling: dict[int, str]  # sequence index -> "whole", "truncated", "chunked:N"
    rejected: dict[int, RejectedSequence]  # sequence index -> why the policy refused it

    @classmethod
    def of(cls, sequences: list[str], window: int, policy: str, overlap: int) -> "Plan":
        plan = cls(list(sequences), [], {}, {}, {})
        for index, sequence in enumerate(sequences):
            try:
                spans, plan.handling[index] = plan_windows(sequence, window, policy, overlap)
            except RejectedSequence as rejected:
                plan.rejected[index] = rejected
                continue
            coverage = np.zeros(len(sequence), dtype=np.float32)
            for start, end in spans:
                coverage[start:end] += 1
            plan.coverage[index] = coverage
            plan.pieces.extend((index, start, end) for start, end in spans)
        return plan

    @property
    def lengths(self) -> list[int]:
        return [end - start for _, start, end in self.pieces]

    def text(self, piece: int) -> str:
        index, start, end = self.pieces[piece]
        return self.sequences[index][start:end]


class PieceRunner:
    """Runs a plan's pieces through the model in batches under a token budget, adding each
    piece's weighted residue vectors into its protein's sum.

    Out of device memory, a batch is retried in halves and the budget stays halved for the
    rest of the run; a piece that fails even alone leaves its protein in `failed`.
    """

    def __init__(
        self,
        adapter: Adapter,
        plan: Plan,
        layers: list[int],
        tokens_per_batch: int,
        *,
        per_residue: bool = False,
    ):
        self.adapter, self.plan, self.layers = adapter, plan, layers
        self.budget = tokens_per_batch
        self.lengths = plan.lengths
        self.on_gpu = adapter.device.type == "cuda"
        self.sums = {i: np.zeros(adapter.dimension, dtype=np.float64) for i in plan.coverage}
        self.residue_vectors = {
            i: np.zeros((len(plan.sequences[i]), adapter.dimension), dtype=np.float32)
            for i in (plan.coverage if per_residue else ())
        }
        self.failed: dict[int, str] = {}  # sequence index -> why the device could not embed it
        self._tokenizer_lock = threading.Lock()  # a tokenizer is not safe to share

    def run_all(self, progress=None) -> None:
        """Every piece, longest batches first; the next batch is tokenised on a worker thread
        while a GPU computes this one."""
        bar = _progress_bar(progress, sum(self.lengths))
        pieces_left = Counter(index for index, _, _ in self.plan.pieces)
        proteins_done, started = 0, time.monotonic()
        planned = batches(self.lengths, self.budget, self.adapter.special_tokens)
        for group, inputs in _one_ahead(self.host_inputs, planned, enabled=self.on_gpu):
            self.run(group, inputs)
            for piece in group:
                pieces_left[self.plan.pieces[piece][0]] -= 1
                proteins_done += pieces_left[self.plan.pieces[piece][0]] == 0
            rate = proteins_done / max(time.monotonic() - started, 1e-9)
            bar.set_postfix_str(f"{proteins_done} proteins, {rate:.1f} proteins/s", refresh=False)
            bar.update(sum(self.lengths[i] for i in group))
        bar.close()

    def host_inputs(self, group: list[int]) -> dict[str, torch.Tensor] | None:
        with self._tokenizer_lock:
            inputs = self.adapter.encode([self.plan.text(i) for i in group])
        if inputs is not None and self.on_gpu:
            inputs = {key: value.pin_memory() for key, value in inputs.items()}
        return inputs

    def run(self, group: list[int], inputs: dict[str, torch.Tensor] | None) -> None:
        padded = padded_tokens([self.lengths[i] for i in group], self.adapter.special_tokens)
        if len(group) > 1 and padded > self.budget:  # planned before running out of memory
            self.split(group)
            return
        try:
            self.add(group, inputs)
            return
        except torch.OutOfMemoryError:  # torch.cuda.OutOfMemoryError is this class
            pass
        # Here, outside the except clause, the failed batch's tensors are free again.
        if self.on_gpu:
            torch.cuda.empty_cache()
        device = self.adapter.device
        if len(group) == 1:
            index = self.plan.pieces[group[0]][0]
            self.failed[index] = (
                f"out of {device} memory embedding {padded} tokens even alone; "
                "use a device with more memory, or a smaller model.max_residues"
            )
            log.warning("sequence %d rejected: %s", index, self.failed[index])
            return
        self.budget = max(1, padded // 2)
        log.warning(
            "out of %s memory at %d tokens: token budget halved to %d", device, padded, self.budget
        )
        self.split(group)

    def split(self, group: list[int]) -> None:
        """Run a group in batches under the (lowered) budget."""
        lengths = [self.lengths[i] for i in group]
        for part in batches(lengths, self.budget, self.adapter.special_tokens):
            smaller = [group[i] for i in part]
            self.run(smaller, self.host_inputs(smaller))

    def add(self, group: list[int], inputs: dict[str, torch.Tensor] | None) -> None:
        """Embed a group of pieces into their proteins' sums."""
        on_device = None if inputs is None else self.adapter.to_device(inputs)
        texts = [self.plan.text(i) for i in group]
        states = self.adapter.residue_embeddings(texts, self.layers, on_device)
        shared = []
        for piece, piece_states in zip(group, states, strict=True):
            index, start, end = self.plan.pieces[piece]
            coverage = self.plan.coverage[index][start:end]
            if coverage.max() > 1:  # a window of a chunked sequence
                share = torch.from_numpy(1.0 / coverage).to(piece_states.device)
                piece_states = piece_states * share[:, None]
            shared.append(piece_states)
        # Only one vector per piece crosses back to the host (all residues if asked for).
        piece_sums = torch.stack([piece.sum(0) for piece in shared]).cpu().numpy()
        for piece, piece_states, piece_sum in zip(group, shared, piece_sums, strict=True):
            index, start, end = self.plan.pieces[piece]
            self.sums[index] += piece_sum
            if index in self.residue_vectors:
                self.residue_vectors[index][start:end] += piece_states.cpu().numpy()


def finish(
    plan: Plan, runner: PieceRunner, *, normalize: bool = False
) -> list[Embedded | RejectedSequence]:
    """Each protein's mean over its residues (optionally L2-normalised), or its rejection,
    in input order."""
    results: list[Embedded | RejectedSequence] = []
    for index, sequence in enumerate(plan.sequences):
        if index in plan.rejected:
            results.append(plan.rejected[index])
            continue
        if index in runner.failed:
            results.append(RejectedSequence(runner.failed[index]))
            continue
        vector = runner.sums[index] / np.count_nonzero(plan.coverage[index])
        if normalize:
            vector /= np.linalg.norm(vector) or 1.0
        results.append(
            Embedded(
                vector.astype(np.float32),
                len(sequence),
                plan.handling[index],
                runner.residue_vectors.get(index),
            )
        )
    return results


def _progress_bar(progress, total: int):
    """A bar over residues: into a file (the job logs, every 10 s), from a tqdm class (the
    notebook's tqdm.auto), or none."""
    if isinstance(progress, type):
        return progress(total=total, unit="res", unit_scale=True)
    return tqdm(
        total=total,
        unit="res",
        unit_scale=True,
        file=progress,
        mininterval=10,
        disable=progress is None,
    )
