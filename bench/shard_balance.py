"""How evenly the shards of one run share the embedding work: shards cut by cost (ours)
against equal ranges of the sequence hash (the assignment before, commit 98f0bcd) and a
greedy longest-first packing (a reference that ignores the hash line), on the
Synechocystis proteome and on synthetic proteomes made from it. The shards are written by
the real export code (ShardSpill) for both ours and the one before, extracted from git, so
the time of the second pass over the spill files is measured in the same run.

A shard's cost is sharding.sequence_cost summed over its unique sequences (residues' worth
of work). "max/mean" is how much longer the run's slowest embed job works than it would
with perfectly equal shards (with as many GPUs as shards); "max/min" the spread.

    .venv/bin/python bench/shard_balance.py
    .venv/bin/python bench/shard_balance.py --synthetic 1000000 --shards 500,1000
"""

import argparse
import heapq
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graph_common import PROTEOME, synthetic_proteins  # noqa: E402

from protembed import parquet_io, sharding  # noqa: E402
from protembed.demo.proteins import read_proteins  # noqa: E402
from protembed.sequences import sequence_sha256  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BEFORE = "98f0bcd"  # the last commit that assigned shards by equal ranges of the hash


def sharding_before(directory: Path):
    """The sharding module of commit BEFORE, importable beside ours."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{BEFORE}:src/protembed/sharding.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.replace("from . import parquet_io", "from protembed import parquet_io")
    path = directory / "sharding_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("sharding_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_shards(module, proteins: list[tuple[str, str, str]], shards: int, directory: Path):
    """Costs of the shards the module's ShardSpill writes, and the seconds it took."""
    began = time.perf_counter()
    with module.ShardSpill(directory / "spill") as spill:
        for sha, sequence, protein_id in proteins:
            spill.add(sha, sequence, protein_id)
        paths = [directory / "shards" / f"shard-{i}.parquet" for i in range(shards)]
        summaries = spill.write_shards(paths)
    seconds = time.perf_counter() - began
    costs = []
    for path in paths:
        lengths = pc.utf8_length(parquet_io.read_table(path)["sequence"]).to_numpy()
        costs.append(float(sharding.sequence_cost(lengths).sum()))
    assert sum(s["proteins"] for s in summaries) == len(proteins)
    return np.array(costs), seconds


def longest_first(costs: np.ndarray, shards: int) -> np.ndarray:
    """Greedy longest-processing-time packing: each sequence, costliest first, to the
    shard that holds the least so far."""
    loads = [(0.0, shard) for shard in range(shards)]
    for cost in np.sort(costs)[::-1]:
        load, shard = heapq.heappop(loads)
        heapq.heappush(loads, (load + cost, shard))
    return np.array([load for load, _ in loads])


def describe(costs: np.ndarray) -> str:
    return f"{costs.max() / costs.mean():9.3f} {costs.max() / max(costs.min(), 1):9.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=100_000, help="0: proteome only")
    parser.add_argument("--shards", default="10,50,100,500", help="shard counts to try")
    args = parser.parse_args()
    counts = [int(n) for n in args.shards.split(",")]
    inputs = {
        f"proteome ({PROTEOME.name})": [
            (p["accession_id"], p["sequence"]) for p in read_proteins(PROTEOME)
        ]
    }
    if args.synthetic:
        inputs[f"synthetic, {args.synthetic:,} proteins (bench/graph_common.py)"] = [
            (p["accession_id"], p["sequence"]) for p in synthetic_proteins(args.synthetic)
        ]
    print(f"{'input':>10} {'shards':>7} {'path':>13} {'max/mean':>9} {'max/min':>9} {'write s':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        before = sharding_before(Path(scratch))
        warm_up = [(sequence_sha256("MKT"), "MKT", "P1")]
        write_shards(before, warm_up, 1, Path(tempfile.mkdtemp(dir=scratch)))
        for name, pairs in inputs.items():
            print(name)
            proteins = [(sequence_sha256(s), s, i) for i, s in pairs]
            unique = {sha: s for sha, s, _ in proteins}
            costs = sharding.sequence_cost(np.array([len(s) for s in unique.values()]))
            for shards in counts:
                if shards > len(unique) // 20:  # fewer than 20 sequences a shard
                    continue
                runs = {}
                for label, module in (("hash ranges", before), ("by cost", sharding)):
                    directory = Path(tempfile.mkdtemp(dir=scratch))
                    runs[label] = write_shards(module, proteins, shards, directory)
                for label, (shard_costs, seconds) in runs.items():
                    print(
                        f"{len(pairs):>10} {shards:>7} {label:>13} {describe(shard_costs)} "
                        f"{seconds:8.1f}"
                    )
                reference = longest_first(costs, shards)
                print(f"{len(pairs):>10} {shards:>7} {'longest first':>13} {describe(reference)}")


if __name__ == "__main__":
    main()
