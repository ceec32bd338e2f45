"""What the graph benchmarks share: a local Neo4j, synthetic proteins, peak memory of a step.

The local server is the project's embedded Neo4j 5.26 Community. The tests start it with
the JVM's quick C1 compiler only (fast start-up); the benchmarks re-enable the optimising
compiler through _JAVA_OPTIONS (read after the command line), as a production server runs.
"""

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from protembed.demo.local_neo4j import LocalNeo4j
from protembed.demo.proteins import read_proteins

REPO = Path(__file__).resolve().parents[1]
PROTEOME = Path("/work/shared/data/proteome_UP000001425_synechocystis.fasta")
SMALL_PROTEOME = REPO / "tests" / "data" / "synechocystis_every7th.fasta"
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def start_server(data_dir: Path, page_cache_mib: int = 1024, heap: str = "2g") -> LocalNeo4j:
    os.environ["_JAVA_OPTIONS"] = f"-XX:TieredStopAtLevel=4 -Xmx{heap}"
    try:
        return LocalNeo4j(page_cache_mib=page_cache_mib).start(
            data_dir, password=secrets.token_hex(12)
        )
    finally:
        del os.environ["_JAVA_OPTIONS"]


def synthetic_proteins(count: int, prefix: str = "SYN") -> list[dict]:
    """`count` proteins made from the Synechocystis proteome (iter_synthetic_proteins)."""
    return list(iter_synthetic_proteins(count, prefix))


def iter_synthetic_proteins(count: int, prefix: str = "SYN") -> Iterator[dict]:
    """`count` proteins made from the Synechocystis proteome, median length about 300, one
    at a time (a million of them take about 1 GB as a list).

    Each proteome sequence is lengthened by 14 % (a copy of its start appended: the
    proteome's median is 263) and, from the second pass over the proteome on, gets one
    substitution per pass so that sequences stay distinct. Every 20th protein repeats the
    sequence of the one before it, so that deduplication has something to do.
    """
    source = PROTEOME if PROTEOME.is_file() else SMALL_PROTEOME
    base = [p["sequence"] for p in read_proteins(source)]
    previous = None
    for i in range(count):
        sequence = base[i % len(base)]
        sequence = sequence + sequence[: len(sequence) * 37 // 263]
        rounds = i // len(base)
        if rounds:
            position = (rounds * 7919) % len(sequence)
            old = sequence[position]
            new = AMINO_ACIDS[(AMINO_ACIDS.find(old) + rounds) % 20]
            sequence = sequence[:position] + new + sequence[position + 1 :]
        if i % 20 == 19:
            sequence = previous
        previous = sequence
        yield {"accession_id": f"{prefix}{i:08d}", "sequence": sequence}


# Printed by the measured interpreter when it is done. Not the kernel's ru_maxrss of the
# child: that counts the moment between fork and exec, when the child is a copy of this
# (large) benchmark process. VmHWM is the peak of the program's own address space.
PEAK_RSS = """
import atexit, re
def _peak():
    status = open("/proc/self/status").read()
    print("PEAK_RSS_KIB", re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
atexit.register(_peak)
"""


def run_measured(code: str, env: dict) -> tuple[dict, int]:
    """Run Python `code` (which prints one JSON line) in a fresh interpreter; return what
    it printed and its peak resident memory in bytes."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS + code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    if result.returncode:
        raise RuntimeError(f"measured step failed:\n{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    peak_kib = int(lines[-1].split()[1])
    return json.loads(lines[-2]), peak_kib * 1024


def store_files(data_dir: Path, database: str = "neo4j") -> dict[str, int]:
    """Bytes of each of the database's store files (not its transaction logs)."""
    store = data_dir / "data" / "databases" / database
    return {f.name: f.stat().st_size for f in store.iterdir() if f.name.startswith("neostore")}
