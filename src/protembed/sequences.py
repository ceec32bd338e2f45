"""Sequence identity, cleaning and windows, shared by every model family; FASTA files."""

import hashlib
import re
from pathlib import Path

from .errors import RejectedSequence, UserError

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


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """(header, sequence) per record: the header without its '>', the sequence's lines
    joined with all whitespace removed. Blank lines anywhere are ignored."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"FASTA file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise UserError(f"FASTA file {path} is not text: {error}") from error
    records: list[tuple[str, list[str]]] = []
    for number, line in enumerate(lines, start=1):
        if line.startswith(">"):
            header = line[1:].strip()
            if not header:
                raise UserError(f"FASTA file {path} line {number}: a header without an id")
            records.append((header, []))
        elif line.strip():
            if not records:
                raise UserError(f"FASTA file {path} line {number}: sequence before any '>' header")
            records[-1][1].append(_WHITESPACE.sub("", line))
    return [(header, "".join(parts)) for header, parts in records]


def fasta_accession(header: str) -> str:
    """The id a FASTA header gives: UniProt's accession between the bars
    (`sp|P14835|PSBH_SYNY3 ...` gives P14835), else the header's first word."""
    first = header.split(maxsplit=1)[0]
    parts = first.split("|")
    return parts[1] if len(parts) >= 3 else first
