"""What one embed job costs on this machine's CPU: the fixed start (a fresh Python importing
torch and transformers and loading the model) against the per-residue work, for sizing shards.

The model has a real ESM-2 shape with random weights (speed does not depend on the
weights): esm2_t33_650M_UR50D's by default, the workflow's default model. Proteins are
taken evenly from the Synechocystis proteome, truncated to ESM-2's 1,022 residues.

    .venv/bin/python bench/embed_job_cost.py                       # ESM-2 650M, 12 proteins
    .venv/bin/python bench/embed_job_cost.py --shape 6,320,20 --proteins 200   # ESM-2 8M
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from protembed.adapters import load_adapter
from protembed.demo.offline_model import cached_random_esm2
from protembed.demo.proteins import read_proteins
from protembed.engine import embed_sequences

REPO = Path(__file__).resolve().parents[1]
PROTEOME = Path("/work/shared/data/proteome_UP000001425_synechocystis.fasta")
MAX_RESIDUES = 1022

START_JOB = """
import sys, time
start = time.perf_counter()
import torch
from protembed.adapters import load_adapter
load_adapter(sys.argv[1], "auto", "cpu")
print(time.perf_counter() - start)
"""


def model_dir(layers: int, hidden: int, heads: int) -> Path:
    directory = REPO / ".cache" / "models" / f"esm2_{layers}x{hidden}_random_weights"
    return cached_random_esm2(directory, layers=layers, hidden=hidden, heads=heads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="33,1280,20", help="layers,hidden,heads")
    parser.add_argument("--proteins", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    layers, hidden, heads = map(int, args.shape.split(","))
    torch.set_num_threads(args.threads)

    directory = model_dir(layers, hidden, heads)
    proteome = read_proteins(PROTEOME)
    step = max(1, len(proteome) // args.proteins)
    sequences = [p["sequence"][:MAX_RESIDUES] for p in proteome[::step][: args.proteins]]
    residues = sum(map(len, sequences))
    median_length = statistics.median(len(p["sequence"]) for p in proteome)

    starts = [
        float(
            subprocess.run(
                [sys.executable, "-c", START_JOB, str(directory)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for _ in range(2)
    ]
    adapter = load_adapter(str(directory), "auto", "cpu")
    embed_sequences(adapter, sequences[:1])  # warm-up
    began = time.perf_counter()
    embed_sequences(adapter, sequences)
    compute = time.perf_counter() - began
    rate = residues / compute
    start = min(starts)

    print(
        f"model: ESM-2 shape {layers} layers x {hidden} ({directory.name}), "
        f"CPU threads {args.threads}"
    )
    print(f"job start (fresh Python, imports, model load): {start:.1f} s (runs: {starts})")
    print(f"embedding: {residues} residues of {len(sequences)} proteins in {compute:.1f} s")
    print(f"  = {rate:.0f} residues/s = {rate / median_length:.2f} proteins/s at the")
    print(f"    proteome's median length of {median_length:.0f} residues")
    for proteins in (1_000, 10_000):
        work = proteins * median_length / rate
        print(
            f"shard of {proteins} proteins: {work / 3600:.2f} h of embedding, start-up "
            f"{start / (start + work):.2%} of the job"
        )


if __name__ == "__main__":
    main()
