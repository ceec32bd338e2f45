"""The engine's own host work, timed with a model that costs nothing.

A GPU runs ESM-2 650M at about 250,000 tokens/s; the host side (tokenising, building each
batch, pooling, bookkeeping) must not be what it waits for. Here the model is replaced by one
that returns a hidden state four values wide at once, so what is timed is our code alone, on
one CPU thread. The target: at least 2,000,000 tokens/s, one tenth of that GPU's time.

Baseline, in the same run: the engine as it was before the host-side rework (commit
BASELINE_COMMIT), extracted from git and run in a subprocess on the same proteins with the
same zero-cost model and budget. Rounds alternate between the paths; the medians are printed.

    .venv/bin/python bench/embed_host.py                    # the proteome, 16,384-token batches
    .venv/bin/python bench/embed_host.py --limit 200 --rounds 1   # a quick look (smoke test)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[1]
PROTEOME = Path("/work/shared/data/proteome_UP000001425_synechocystis.fasta")
SMALL_FASTA = REPO / "tests" / "data" / "synechocystis_every7th.fasta"
BASELINE_COMMIT = "c2655e2"  # the last commit before the host-side rework (issue 20)
WIDTH = 4  # values per token of the zero-cost model's hidden state
TARGET = 2_000_000


class ZeroCostModel(torch.nn.Module):
    """Stands in for the network: the hidden state is the token ids, four times over."""

    def forward(self, input_ids, output_hidden_states=False, **packed):
        states = input_ids.unsqueeze(-1).expand(*input_ids.shape, WIDTH).float()
        return SimpleNamespace(last_hidden_state=states, hidden_states=None)


def zero_cost_adapter(model_dir: str, packed: bool):
    from protembed.adapters import load_adapter

    adapter = load_adapter(model_dir, "esm2", "cpu", "float32")
    if packed:
        from protembed.adapters.packing import use_packing

        assert use_packing(adapter, reference=True)  # sets the layout; no attention runs
    adapter.model, adapter.dimension = ZeroCostModel(), WIDTH
    return adapter


def time_engine(model_dir: str, sequences: list[str], budget: int, packed: bool) -> float:
    try:
        from protembed.engine import embed_sequences
    except ModuleNotFoundError:  # the baseline commit, from before the module's rename
        from protembed.embedding import embed_sequences

    adapter = zero_cost_adapter(model_dir, packed)
    embed_sequences(adapter, sequences[:50], tokens_per_batch=budget)  # warm-up
    started = time.perf_counter()
    results = embed_sequences(adapter, sequences, tokens_per_batch=budget)
    seconds = time.perf_counter() - started
    assert len(results) == len(sequences) and all(hasattr(r, "vector") for r in results)
    return seconds


def worker(args) -> None:
    """One timing, printed as JSON: run under the baseline's package, or ours."""
    torch.set_num_threads(1)
    sequences = json.loads(Path(args.sequences).read_text())
    seconds = time_engine(args.model, sequences, args.budget, args.packed)
    print(json.dumps({"seconds": seconds}))


def run_worker(python_path: Path, model: Path, sequences: Path, budget: int, packed: bool):
    command = [sys.executable, __file__, "--worker", "--model", str(model)]
    command += ["--sequences", str(sequences), "--budget", str(budget)]
    command += ["--packed"] if packed else []
    env = os.environ | {"PYTHONPATH": str(python_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def extract_baseline(directory: Path) -> Path:
    directory.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BASELINE_COMMIT, "src/protembed"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True)
    return directory / "src"


def load_sequences(fasta: Path, limit: int | None) -> list[str]:
    from protembed.adapters.base import ESM_ALPHABET
    from protembed.demo.proteins import read_proteins
    from protembed.errors import RejectedSequence
    from protembed.sequences import clean_sequence

    sequences = []
    for protein in read_proteins(fasta)[:limit]:
        try:
            sequences.append(clean_sequence(protein["sequence"], ESM_ALPHABET)[:1022])
        except RejectedSequence:
            continue
    return sequences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fasta", type=Path, default=PROTEOME if PROTEOME.is_file() else None)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--budget", type=int, default=16384, help="tokens per batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--sequences", help=argparse.SUPPRESS)
    parser.add_argument("--packed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    from protembed.demo.offline_model import save_random_esm2

    fasta = args.fasta or SMALL_FASTA
    sequences = load_sequences(fasta, args.limit)
    tokens = sum(len(s) + 2 for s in sequences)
    cpu = _cpu_name()
    print(
        f"{cpu}; torch {torch.__version__}; {len(sequences)} proteins from {fasta.name} "
        f"({tokens:,} tokens, cut at 1,022 residues); budget {args.budget:,} tokens; 1 thread",
        flush=True,
    )
    ours_path = REPO / "src"
    with tempfile.TemporaryDirectory(prefix="protembed-host-bench-") as scratch:
        scratch = Path(scratch)
        model = save_random_esm2(scratch / "esm2", layers=1, hidden=8, heads=2)
        sequences_file = scratch / "sequences.json"
        sequences_file.write_text(json.dumps(sequences))
        baseline_path = extract_baseline(scratch / "baseline")
        paths = {
            f"baseline ({BASELINE_COMMIT}), padded": (baseline_path, False),
            "ours, padded": (ours_path, False),
            "ours, packed": (ours_path, True),
        }
        seconds = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, (python_path, packed) in paths.items():
                seconds[name].append(
                    run_worker(python_path, model, sequences_file, args.budget, packed)
                )
    rates = {name: tokens / statistics.median(times) for name, times in seconds.items()}
    baseline = rates[f"baseline ({BASELINE_COMMIT}), padded"]
    for name, rate in rates.items():
        print(f"{name:<28} {rate:12,.0f} host tokens/s  {rate / baseline:6.1f}x baseline")
    best = max(rates["ours, padded"], rates["ours, packed"])
    worst = min(rates["ours, padded"], rates["ours, packed"])
    met = worst >= TARGET
    print(
        f"target >= {TARGET:,} host tokens/s on one thread: "
        f"{'met' if met else 'NOT met'} (slowest of ours {worst:,.0f}, fastest {best:,.0f})"
    )
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU"


if __name__ == "__main__":
    sys.exit(main())
