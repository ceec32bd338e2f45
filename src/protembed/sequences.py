"""Sequence identity, cleaning and windows, shared by every model family."""

import hashlib
import re

from .errors import RejectedSequence

_WHITESPACE = re.compile(r"\s+")


def sequence_sha256(sequence: str) -> str:
    """Hash of the sequence exactly as stored in the graph: a changed string means re-embed."""
    return hashlib.sha256(sequence.encode("utf-8")).hexdigest()


def clean_sequence(sequence: str, alphabet: frozenset[str]) -> str:
    """Uppercase, drop whitespace and a terminal stop; reject what the alphabet cannot encode."""
    cleaned = _WHITESPACE.sub("", sequence).upper()
    if cleaned.endswith("*"):
        cleaned = cleaned[:-1]
    if not cleaned:
        raise RejectedSequence("empty sequence")
    unknown = sorted(set(cleaned) - alphabet)
    if unknown:
        shown = "".join(unknown[:10])
        raise RejectedSequence(f"characters the model cannot encode: {shown!r}")
    return cleaned


def windows(length: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Overlapping [start, end) windows of at most `window` residues that cover `length`."""
    if length <= window:
        return [(0, length)]
    step = max(1, window - overlap)
    starts = list(range(0, length - window, step)) + [length - window]
    return [(start, start + window) for start in starts]
