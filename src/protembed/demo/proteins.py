"""Proteins from FASTA files, as PyEED-style records, for the demo, tests and benchmarks."""

import re
from pathlib import Path

from ..sequences import fasta_accession, read_fasta

_ATTRIBUTE = re.compile(r"(\w+)=(\S+)")


def read_proteins(path: str | Path, attributes: tuple[str, ...] = ()) -> list[dict]:
    """One dict per record: accession_id (as `fasta_accession` reads it), sequence and the
    named `key=value` header fields."""
    proteins = []
    for header, sequence in read_fasta(path):
        fields = dict(_ATTRIBUTE.findall(header))
        wanted = {key: fields[key] for key in attributes if key in fields}
        proteins.append(wanted | {"accession_id": fasta_accession(header), "sequence": sequence})
    return proteins
