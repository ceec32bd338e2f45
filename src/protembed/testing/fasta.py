"""Proteins from FASTA files, as PyEED-style records, for the demo, tests and benchmarks."""

import re
from pathlib import Path

from Bio import SeqIO

_ATTRIBUTE = re.compile(r"(\w+)=(\S+)")


def read_proteins(path: str | Path, attributes: tuple[str, ...] = ()) -> list[dict]:
    """One dict per record: accession_id, sequence and the named `key=value` header fields.

    UniProt headers (`sp|P14835|PSBH_SYNY3 ...`) give the accession between the bars.
    """
    proteins = []
    for record in SeqIO.parse(str(path), "fasta"):
        parts = record.id.split("|")
        accession = parts[1] if len(parts) >= 3 else record.id
        fields = dict(_ATTRIBUTE.findall(record.description))
        wanted = {key: fields[key] for key in attributes if key in fields}
        proteins.append(wanted | {"accession_id": accession, "sequence": str(record.seq)})
    return proteins
