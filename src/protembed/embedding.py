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
    once; longer sequences follow `long_sequences`.
    """
    budget = tokens_per_batch or default_tokens_per_batch(adapter.device)
    window = max_residues or adapter.max_residues
    layers = kind.layers(adapter.num_layers)
    results: list[Embedded | RejectedSequence | None] = [None] * len(sequences)
    pieces: list[tuple[int, int, int]] = []  # (sequence index, start, end)
    weights: dict[int, np.ndarray] = {}
    handling: dict[int, str] = {}
    for index, sequence in enumerate(sequences):
        try:
            spans, handling[index] = plan_windows(sequence, window, long_sequences, overlap)
        except RejectedSequence as rejected:
            results[index] = rejected
            continue
        coverage = np.zeros(len(sequence), dtype=np.float32)
        for start, end in spans:
            coverage[start:end] += 1
        weights[index] = coverage
        pieces.extend((index, start, end) for start, end in spans)

    sums = {index: np.zeros(adapter.dimension, dtype=np.float64) for index in weights}
    residue_vectors = {
        index: np.zeros((len(sequences[index]), adapter.dimension), dtype=np.float32)
        for index in (weights if kind.per_residue else ())
    }
    lengths = [end - start for _, start, end in pieces]
    on_gpu = adapter.device.type == "cuda"
    failed: dict[int, str] = {}  # sequence index -> why the device could not embed it
    pieces_left = Counter(index for index, _, _ in pieces)
    proteins_done, started = 0, time.monotonic()
    tokenizer_lock = threading.Lock()
    bar = tqdm(
        total=sum(lengths),
        unit="res",
        unit_scale=True,
        file=progress,
        mininterval=10,
        disable=progress is None,
    )

    def texts(group: list[int]) -> list[str]:
        return [sequences[pieces[i][0]][pieces[i][1] : pieces[i][2]] for i in group]

    def host_inputs(group: list[int]) -> dict[str, torch.Tensor] | None:
        with tokenizer_lock:  # a tokenizer is not safe to share between threads
            inputs = adapter.encode(texts(group))
        if inputs is not None and on_gpu:
            inputs = {key: value.pin_memory() for key, value in inputs.items()}
        return inputs

    def add(group: list[int], inputs: dict[str, torch.Tensor] | None) -> None:
        """Embed a group of pieces into their proteins' sums."""
        on_device = None if inputs is None else adapter.to_device(inputs)
        states = adapter.residue_embeddings(texts(group), layers, on_device)
        shared = []
        for piece_index, piece_states in zip(group, states, strict=True):
            index, start, end = pieces[piece_index]
            coverage = weights[index][start:end]
            if coverage.max() > 1:  # a window of a chunked sequence
                share = torch.from_numpy(1.0 / coverage).to(piece_states.device)
                piece_states = piece_states * share[:, None]
            shared.append(piece_states)
        piece_sums = torch.stack([piece.sum(0) for piece in shared]).cpu().numpy()
        for piece_index, piece_states, piece_sum in zip(group, shared, piece_sums, strict=True):
            index, start, end = pieces[piece_index]
            sums[index] += piece_sum
            if kind.per_residue:
                residue_vectors[index][start:end] += piece_states.cpu().numpy()

    def run(group: list[int], inputs: dict[str, torch.Tensor] | None) -> None:
        nonlocal budget
        padded = padded_tokens([lengths[i] for i in group], adapter.special_tokens)
        if len(group) > 1 and padded > budget:  # planned before running out of memory
            split(group)
            return
        try:
            add(group, inputs)
            return
        except torch.OutOfMemoryError:  # torch.cuda.OutOfMemoryError is this class
            pass
        # Here, outside the except clause, the failed batch's tensors are free again.
        if on_gpu:
            torch.cuda.empty_cache()
        if len(group) == 1:
            index = pieces[group[0]][0]
            failed[index] = (
                f"out of {adapter.device} memory embedding {padded} tokens even alone; "
                "use a device with more memory, or a smaller model.max_residues"
            )
            log.warning("sequence %d rejected: %s", index, failed[index])
            return
        budget = max(1, padded // 2)
        log.warning(
            "out of %s memory at %d tokens: token budget halved to %d",
            adapter.device,
            padded,
            budget,
        )
        split(group)

    def split(group: list[int]) -> None:
        """Run a group in batches under the (lowered) budget."""
        for part in batches([lengths[i] for i in group], budget, adapter.special_tokens):
            smaller = [group[i] for i in part]
            run(smaller, host_inputs(smaller))

    planned = batches(lengths, budget, adapter.special_tokens)
    for group, inputs in _one_ahead(host_inputs, planned, enabled=on_gpu):
        run(group, inputs)
        for piece_index in group:
            pieces_left[pieces[piece_index][0]] -= 1
            proteins_done += pieces_left[pieces[piece_index][0]] == 0
        rate = proteins_done / max(time.monotonic() - started, 1e-9)
        bar.set_postfix_str(f"{proteins_done} proteins, {rate:.1f} proteins/s", refresh=False)
        bar.update(sum(lengths[i] for i in group))
    bar.close()

    for index, coverage in weights.items():
        if index in failed:
            results[index] = RejectedSequence(failed[index])
            continue
        vector = sums[index] / np.count_nonzero(coverage)
        if kind.normalize:
            vector /= np.linalg.norm(vector) or 1.0
        results[index] = Embedded(
            vector.astype(np.float32),
            len(sequences[index]),
            handling[index],
            residue_vectors.get(index),
        )
    return results  # type: ignore[return-value]
