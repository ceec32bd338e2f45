"""Where every residue sits in a batch: the model's inputs for a group of pieces, built from a
shard's token ids with array operations only (no Python per residue).

A piece is a run of residues of one prepared sequence: `sources[j]` is where piece j starts in
the shard's concatenated token ids, `lengths[j]` how many residues it has. Each piece gets the
family's prefix (e.g. <cls>) and suffix (e.g. <eos>) tokens around it.

Two layouts:
- padded: one row per piece, right-padded to the longest, with an attention mask;
- packed: all pieces one after another in a single row, each with positions counted from 0
  and its own span in `cu_seq_lens` (the cumulative token counts varlen attention reads).

Both return, beside the inputs, `positions`: the flat index, in the batch's tokens, of every
residue, pieces in order. Pooling gathers the model's states at those indices.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    inputs: dict[str, np.ndarray | int]  # the model's keyword arguments, as host arrays
    positions: np.ndarray  # int64: flat token index of each residue, pieces in order
    tokens: int  # tokens the model runs (padding included)


def residue_sources(sources: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every residue of the pieces, in order: its piece, and its place in that piece."""
    piece = np.repeat(np.arange(len(lengths)), lengths)
    first = np.cumsum(lengths) - lengths
    within = np.arange(int(lengths.sum())) - first[piece]
    return piece, within


def padded(
    ids: np.ndarray,
    sources: np.ndarray,
    lengths: np.ndarray,
    prefix: tuple[int, ...],
    suffix: tuple[int, ...],
    pad: int,
) -> Layout:
    rows, before, after = len(lengths), len(prefix), len(suffix)
    width = int(lengths.max()) + before + after
    piece, within = residue_sources(sources, lengths)
    positions = piece * width + before + within
    input_ids = np.full(rows * width, pad, dtype=np.int64)
    input_ids[positions] = ids[sources[piece] + within]
    row_starts = np.arange(rows) * width
    _place_specials(input_ids, row_starts, lengths, prefix, suffix)
    mask = np.arange(width) < (lengths + before + after)[:, None]
    inputs = {
        "input_ids": input_ids.reshape(rows, width),
        "attention_mask": mask.astype(np.int64),
    }
    return Layout(inputs, positions, rows * width)


def packed(
    ids: np.ndarray,
    sources: np.ndarray,
    lengths: np.ndarray,
    prefix: tuple[int, ...],
    suffix: tuple[int, ...],
    pad: int = 0,
    bucket: int | None = None,
) -> Layout:
    """With `bucket`, the row is filled up to a multiple of it by one more sequence of
    padding (attending only to itself, never pooled), and the longest length is rounded up
    to a multiple of 128: a compiled model then sees few distinct shapes."""
    before = len(prefix)
    tokens = lengths + before + len(suffix)
    starts = np.cumsum(tokens) - tokens
    used = int(tokens.sum())
    total = -(-used // bucket) * bucket if bucket else used
    piece, within = residue_sources(sources, lengths)
    positions = starts[piece] + before + within
    input_ids = np.full(total, pad, dtype=np.int64)
    input_ids[positions] = ids[sources[piece] + within]
    _place_specials(input_ids, starts, lengths, prefix, suffix)
    if total > used:
        starts, tokens = np.append(starts, used), np.append(tokens, total - used)
    position_ids = np.arange(total) - np.repeat(starts, tokens)
    cu_seq_lens = np.append(starts, total).astype(np.int32)
    longest = int(tokens.max())
    if bucket:
        longest = -(-longest // 128) * 128
    inputs = {
        "input_ids": input_ids[None],
        "position_ids": position_ids[None],
        "cu_seq_lens_q": cu_seq_lens,
        "cu_seq_lens_k": cu_seq_lens,
        "max_length_q": longest,
        "max_length_k": longest,
    }
    return Layout(inputs, positions, total)


def _place_specials(
    input_ids: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    prefix: tuple[int, ...],
    suffix: tuple[int, ...],
) -> None:
    for offset, token in enumerate(prefix):
        input_ids[starts + offset] = token
    for offset, token in enumerate(suffix):
        input_ids[starts + len(prefix) + lengths + offset] = token
