"""Sequences to per-protein vectors: long-sequence policy, token-budget batching, pooling.

Every family goes through this one path, so "mean embedding" means the same thing for all:
the average of the adapter's per-residue vectors over the protein's residues. A residue
covered by several windows of a chunked long sequence contributes the average of its
window vectors, so each residue weighs the same in the protein's mean.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .adapters.base import Adapter
from .errors import RejectedSequence
from .sequences import windows

log = logging.getLogger(__name__)

LONG_SEQUENCE_POLICIES = ("chunk", "truncate", "reject")


@dataclass(frozen=True)
class Embedded:
    vector: np.ndarray  # float32, (dimension,)
    residues: int  # residues of the prepared sequence
    handling: str  # how the length policy applied: "whole", "truncated", "chunked:N"


def default_tokens_per_batch(device: torch.device) -> int:
    # Measured on CPUs: small budgets win there; GPUs want large batches.
    return 1024 if device.type == "cpu" else 16384


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


def embed_sequences(
    adapter: Adapter,
    sequences: list[str],
    *,
    long_sequences: str = "chunk",
    overlap: int = 256,
    tokens_per_batch: int | None = None,
    progress: Iterable | None = None,
) -> list[Embedded | RejectedSequence]:
    """Mean-pooled vectors for prepared sequences, in input order; rejects in their place."""
    budget = tokens_per_batch or default_tokens_per_batch(adapter.device)
    results: list[Embedded | RejectedSequence | None] = [None] * len(sequences)
    pieces: list[tuple[int, int, int]] = []  # (sequence index, start, end)
    weights: dict[int, np.ndarray] = {}
    handling: dict[int, str] = {}
    for index, sequence in enumerate(sequences):
        try:
            spans, handling[index] = plan_windows(
                sequence, adapter.max_residues, long_sequences, overlap
            )
        except RejectedSequence as rejected:
            results[index] = rejected
            continue
        coverage = np.zeros(len(sequence), dtype=np.float32)
        for start, end in spans:
            coverage[start:end] += 1
        weights[index] = coverage
        pieces.extend((index, start, end) for start, end in spans)

    sums = {index: np.zeros(adapter.dimension, dtype=np.float64) for index in weights}
    lengths = [end - start for _, start, end in pieces]
    bar = tqdm(
        total=sum(lengths),
        unit="res",
        unit_scale=True,
        file=progress,
        mininterval=10,
        disable=progress is None,
    )
    for group in batches(lengths, budget, adapter.special_tokens):
        texts = [sequences[pieces[i][0]][pieces[i][1] : pieces[i][2]] for i in group]
        for piece_index, states in zip(group, adapter.residue_embeddings(texts), strict=True):
            index, start, end = pieces[piece_index]
            share = 1.0 / weights[index][start:end]
            sums[index] += (states.numpy().astype(np.float64) * share[:, None]).sum(axis=0)
        bar.update(sum(lengths[i] for i in group))
    bar.close()

    for index, coverage in weights.items():
        covered = int(np.count_nonzero(coverage))
        vector = (sums[index] / covered).astype(np.float32)
        results[index] = Embedded(vector, len(sequences[index]), handling[index])
    return results  # type: ignore[return-value]
