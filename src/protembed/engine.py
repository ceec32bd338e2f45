"""The engine: prepared sequences to per-protein vectors (embedding kinds, long-sequence
policy, batching, pooling). The Embedder (embedder/) is the front door that calls it.

Every family goes through this one path, so "mean embedding" means the same thing for all:
the average of the adapter's per-residue vectors (of the chosen layers) over the protein's
residues. A residue covered by several windows of a chunked long sequence contributes the
average of its window vectors, so each residue weighs the same in the protein's mean.

Speed: the host side must never keep a GPU waiting. A shard is tokenised by one table lookup;
each batch's inputs are built with array operations (layout.py), packed into one row where the
family and device allow (adapters/packing.py), else padded, longest pieces first under a token
budget. Pooling is one gather and one segment sum per batch on the device, into per-protein
sums that stay there: nothing waits for the GPU until the shard's sums are copied back once.
Out of device memory, a batch is retried in halves under a halved budget; a piece that does
not fit even alone rejects its protein, with the reason.
"""

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from . import layout
from .adapters.base import Adapter
from .errors import RejectedSequence, UserError
from .names import embedding_kind
from .sequences import windows

log = logging.getLogger(__name__)

# Packed rows of a compiled model are filled up to a multiple of this many tokens.
PACKED_BUCKET = 2048


@dataclass(frozen=True)
class EmbeddingKind:
    """Which layers the vectors come from and what is kept (config: model.embedding)."""

    layer: str | int = "last"  # last, first, all, or a layer number
    per_residue: bool = False  # also keep every residue's vector
    normalize: bool = False  # L2-normalise each per-protein vector

    @property
    def name(self) -> str:
        """Short name of the per-protein vectors, stored with them in the graph."""
        return embedding_kind(self.layer, self.normalize)

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


def default_tokens_per_batch(adapter: Adapter, layers: int = 1) -> int:
    """Tokens per forward pass when the user leaves it to us.

    A CPU gets one piece per forward: batching gains nothing there (BENCHMARKS.md), and in a
    padded batch a row's last bits depend on its batch mates, which change with the shard
    count (docs/reproducibility.md). A GPU gets what half its free memory holds.
    """
    if adapter.device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(adapter.device)
    return device_token_budget(free, *activation_shape(adapter), layers)


def activation_shape(adapter: Adapter) -> tuple[int, int, int]:
    """(hidden width, feed-forward width, bytes per value) of the adapter's model."""
    config = getattr(getattr(adapter, "model", None), "config", None)
    hidden = adapter.dimension
    feed_forward = getattr(config, "intermediate_size", None) or getattr(config, "d_ff", None)
    size = 4 if adapter.precision == "float32" else 2
    return hidden, feed_forward or 4 * hidden, size


def device_token_budget(
    free_bytes: int, hidden: int, feed_forward: int, value_bytes: int, layers: int = 1
) -> int:
    """The tokens whose activations fill half of `free_bytes`: per token, a block's working
    set (its input, q, k, v, attention output and residual: about eight widths, plus the
    feed-forward's two) and the `layers` hidden states kept for pooling. Attention itself is
    linear in tokens with the flash and memory-efficient kernels. Between 1,024 and 131,072,
    in steps of 1,024; out-of-memory halving remains the safety net."""
    per_token = value_bytes * (hidden * (8 + layers) + 2 * feed_forward)
    budget = free_bytes // 2 // per_token
    return int(min(max(budget // 1024 * 1024, 1024), 131072))


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


def batches(
    lengths: list[int], tokens_per_batch: int, special_tokens: int, *, packed: bool = False
) -> list[list[int]]:
    """Indices grouped longest first so that the tokens a batch runs stay within the budget:
    the padded tokens, or with `packed` the tokens themselves."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for index in order:
        width = lengths[index] + special_tokens
        if packed:
            tokens += width
        else:  # longest first: the first piece sets the padded width
            tokens = (lengths[current[0]] + special_tokens if current else width) * (
                len(current) + 1
            )
        if current and tokens > tokens_per_batch:
            groups.append(current)
            current, tokens = [], width
        current.append(index)
    if current:
        groups.append(current)
    return groups


def batch_tokens(lengths: list[int], special_tokens: int, *, packed: bool = False) -> int:
    """Tokens a batch of pieces runs: their own, or with padding to the longest."""
    if packed:
        return sum(lengths) + special_tokens * len(lengths)
    return (max(lengths) + special_tokens) * len(lengths)


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
    layers = kind.layers(adapter.num_layers)
    runner = PieceRunner(
        adapter,
        plan,
        layers,
        tokens_per_batch or default_tokens_per_batch(adapter, len(layers)),
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

    def chunked(self, index: int) -> bool:
        return self.handling[index].startswith("chunked")


class PieceRunner:
    """Runs a plan's pieces through the model in batches under a token budget, adding each
    piece's weighted residue vectors into its protein's sum, on the device.

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
        self.packed = adapter.batching != "padded"
        self.pieces = np.array(plan.pieces, dtype=np.int64).reshape(-1, 3)
        self.sources = self.token_sources()
        # Every protein's sum over its residues, float64 as on the host before: a shard's
        # worth (a few hundred MB at most) stays on the device until finish().
        self.sums = torch.zeros(
            (len(plan.sequences), adapter.dimension), dtype=torch.float64, device=adapter.device
        )
        self.residue_vectors = {
            i: np.zeros((len(plan.sequences[i]), adapter.dimension), dtype=np.float32)
            for i in (plan.coverage if per_residue else ())
        }
        self.failed: dict[int, str] = {}  # sequence index -> why the device could not embed it

    def token_sources(self) -> np.ndarray | None:
        """Tokenise every sequence of the plan at once (families with a residue table), and
        where each piece's residues start in those ids."""
        if self.adapter.residue_ids is None:
            self.ids = None
            return None
        self.ids = self.adapter.token_ids(self.plan.sequences)
        lengths = np.array([len(s) for s in self.plan.sequences], dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        return starts[self.pieces[:, 0]] + self.pieces[:, 1]

    def run_all(self, progress=None) -> None:
        """Every piece, longest batches first."""
        bar = _progress_bar(progress, sum(self.lengths))
        pieces_left = np.bincount(self.pieces[:, 0], minlength=len(self.plan.sequences))
        proteins_done, started = 0, time.monotonic()
        special = self.adapter.special_tokens
        for group in batches(self.lengths, self.budget, special, packed=self.packed):
            self.run(group)
            proteins = self.pieces[group, 0]
            np.subtract.at(pieces_left, proteins, 1)
            proteins_done += int(np.count_nonzero(pieces_left[np.unique(proteins)] == 0))
            rate = proteins_done / max(time.monotonic() - started, 1e-9)
            bar.set_postfix_str(f"{proteins_done} proteins, {rate:.1f} proteins/s", refresh=False)
            bar.update(sum(self.lengths[i] for i in group))
        bar.close()

    def run(self, group: list[int]) -> None:
        lengths = [self.lengths[i] for i in group]
        tokens = batch_tokens(lengths, self.adapter.special_tokens, packed=self.packed)
        if len(group) > 1 and tokens > self.budget:  # planned before running out of memory
            self.split(group)
            return
        try:
            self.add(group)
            return
        except torch.OutOfMemoryError:  # torch.cuda.OutOfMemoryError is this class
            pass
        # Here, outside the except clause, the failed batch's tensors are free again.
        if self.adapter.device.type == "cuda":
            torch.cuda.empty_cache()
        device = self.adapter.device
        if len(group) == 1:
            index = self.plan.pieces[group[0]][0]
            self.failed[index] = (
                f"out of {device} memory embedding {tokens} tokens even alone; "
                "use a device with more memory, or a smaller model.max_residues"
            )
            log.warning("sequence %d rejected: %s", index, self.failed[index])
            return
        self.budget = max(1, tokens // 2)
        log.warning(
            "out of %s memory at %d tokens: token budget halved to %d", device, tokens, self.budget
        )
        self.split(group)

    def split(self, group: list[int]) -> None:
        """Run a group in batches under the (lowered) budget."""
        lengths = [self.lengths[i] for i in group]
        special = self.adapter.special_tokens
        for part in batches(lengths, self.budget, special, packed=self.packed):
            self.run([group[i] for i in part])

    @torch.inference_mode()
    def add(self, group: list[int]) -> None:
        """Embed a group of pieces into their proteins' sums: one forward, one gather of the
        residues' states, one segment sum."""
        hidden, positions = self.forward(group)
        device = self.adapter.device
        flat = [h.reshape(-1, h.shape[-1]) for h in hidden]
        index = _to_device(positions, device)
        states = sum(f.index_select(0, index).float() for f in flat) / len(flat)
        lengths = self.piece_lengths(group)
        proteins = np.repeat(self.pieces[group, 0], lengths)
        weights = self.residue_weights(group)
        if weights is not None:
            states = states * _to_device(weights, device)[:, None]
        self.sums.index_add_(0, _to_device(proteins, device), states.to(self.sums.dtype))
        if self.residue_vectors:  # per-residue outputs cross back batch by batch
            self.keep_residues(group, states.cpu().numpy(), lengths)

    def forward(self, group: list[int]) -> tuple[list[torch.Tensor], np.ndarray]:
        """The chosen layers' states for a group, and where its residues sit in them."""
        adapter = self.adapter
        if self.ids is None:  # the family tokenises inside hidden_states
            texts = [self.plan.text(i) for i in group]
            hidden = adapter.hidden_states(texts, self.layers)
            lengths = self.piece_lengths(group)
            piece, within = layout.residue_sources(np.zeros_like(lengths), lengths)
            return hidden, piece * hidden[0].shape[1] + adapter.first_residue + within
        sources, lengths = self.sources[group], self.piece_lengths(group)
        prefix, suffix = adapter.prefix_ids, adapter.suffix_ids
        if self.packed:
            bucket = PACKED_BUCKET if adapter.compiled else None
            batch = layout.packed(
                self.ids, sources, lengths, prefix, suffix, adapter.pad_id, bucket
            )
        else:
            batch = layout.padded(self.ids, sources, lengths, prefix, suffix, adapter.pad_id)
        inputs = {
            key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
            for key, value in batch.inputs.items()
        }
        return adapter.forward(adapter.to_device(inputs), self.layers), batch.positions

    def piece_lengths(self, group: list[int]) -> np.ndarray:
        pieces = self.pieces[group]
        return pieces[:, 2] - pieces[:, 1]

    def residue_weights(self, group: list[int]) -> np.ndarray | None:
        """Each residue's share (1 / the windows holding it) where the group holds a window
        of a chunked sequence; None where every share is 1."""
        if not any(self.plan.chunked(index) for index, _, _ in self.pieces[group]):
            return None
        return np.concatenate(
            [1.0 / self.plan.coverage[index][start:end] for index, start, end in self.pieces[group]]
        ).astype(np.float32)

    def keep_residues(self, group: list[int], states: np.ndarray, lengths: np.ndarray) -> None:
        for (index, start, end), rows in zip(
            self.pieces[group], np.split(states, np.cumsum(lengths)[:-1]), strict=True
        ):
            self.residue_vectors[index][start:end] += rows


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(array)
    if device.type != "cuda":
        return tensor
    # Pinned, the copy is queued behind the running kernels instead of waiting for them.
    return tensor.pin_memory().to(device, non_blocking=True)


def finish(
    plan: Plan, runner: PieceRunner, *, normalize: bool = False
) -> list[Embedded | RejectedSequence]:
    """Each protein's mean over its residues (optionally L2-normalised), or its rejection,
    in input order. The only point where the host waits for the device."""
    sums = runner.sums.cpu().numpy()
    results: list[Embedded | RejectedSequence] = []
    for index, sequence in enumerate(plan.sequences):
        if index in plan.rejected:
            results.append(plan.rejected[index])
            continue
        if index in runner.failed:
            results.append(RejectedSequence(runner.failed[index]))
            continue
        vector = sums[index] / np.count_nonzero(plan.coverage[index])
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
