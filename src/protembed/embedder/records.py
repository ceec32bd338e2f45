"""(id, sequence) records from a notebook's usual containers."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..sequences import fasta_accession, read_fasta


@dataclass
class Records:
    """(id, sequence) records from a notebook's usual containers, in input order."""

    ids: list[str]
    sequences: list[object]  # not always strings: those that are not get rejected

    @classmethod
    def of(
        cls, records, *, id_column: str | None = None, sequence_column: str = "sequence"
    ) -> "Records":
        """From (id, sequence) pairs, a {id: sequence} dict, a FASTA path, or a DataFrame
        (ids from `id_column`, else an `id` or `accession_id` column, else the index)."""
        if isinstance(records, str | Path):
            return cls.from_fasta(records)
        if hasattr(records, "columns"):  # a pandas DataFrame
            if sequence_column not in records.columns:
                raise UserError(f"the DataFrame has no {sequence_column!r} column")
            column = id_column or next(
                (c for c in ("id", "accession_id") if c in records.columns), None
            )
            ids = records[column] if column else records.index
            return cls([str(i) for i in ids], list(records[sequence_column]))
        if isinstance(records, Mapping):
            return cls([str(i) for i in records], list(records.values()))
        pairs = list(records)
        for position, pair in enumerate(pairs):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise UserError(f"record {position} is not an (id, sequence) pair: {pair!r:.60}")
        return cls([str(i) for i, _ in pairs], [s for _, s in pairs])

    @classmethod
    def from_fasta(cls, path: str | Path) -> "Records":
        """Ids from the headers as `sequences.fasta_accession` reads them."""
        records = read_fasta(path)
        return cls([fasta_accession(header) for header, _ in records], [s for _, s in records])
