"""Pipeline overhead: the whole workflow (snakemake CLI on a real local Neo4j) against pure
model time (embed_sequences alone, in this process) on the same proteins.

Overhead = (workflow time - model time) / model time, by wall time and by CPU time (user +
system of every process involved: snakemake and its jobs, the Neo4j server, or this process
for the model). On a shared machine CPU time is the steadier measure; run with --cores 1 so
that both sides use one thread and CPU time is what a free machine's wall time would be.
Model time is measured before and after the workflow (after a warm-up) and averaged. On a
shared VM the CPU's speed drifts by +-15% between runs minutes apart, more than the overhead
itself, so the headline is measured inside the one workflow run: its wall time against the
model time its embed jobs clocked around embed_sequences (summary.json's throughput).

To show where the rest goes, the same four steps also run in this process without snakemake
(each timed), and the start-up of one job's interpreter (snakemake's script preamble,
torch, transformers, protembed) is timed in a fresh process.

The model is esm2_t6_8M_UR50D's shape with random weights (see embed_cpu.py).

    .venv/bin/python bench/pipeline_overhead.py                     # 502 proteins, 2 shards
    .venv/bin/python bench/pipeline_overhead.py --shards 4 \
        --fasta /work/shared/data/proteome_UP000001425_synechocystis.fasta
"""

import argparse
import json
import logging
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from embed_cpu import esm2_8m_random  # bench/ is on sys.path when this script runs

from protembed import graph, steps
from protembed.adapters import load_adapter
from protembed.config import load_settings
from protembed.demo.local_neo4j import LocalNeo4j
from protembed.demo.proteins import read_proteins
from protembed.engine import embed_sequences
from protembed.errors import RejectedSequence

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO_ROOT / "workflow" / "Snakefile"
# What one embed job imports before it can start (snakemake's script preamble included).
JOB_IMPORTS = (
    "import snakemake.script, torch, transformers, protembed.steps, protembed.adapters.esm2"
)


def run_config(model_dir: Path, shards: int, vector_property: str) -> dict:
    return {
        "shards": shards,
        "min_proteins_per_shard": 1,  # --shards embed jobs, however few the proteins
        "results": "results",
        "model": {"name": str(model_dir), "device": "cpu", "property": vector_property},
    }


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system time of a running process (the Neo4j server), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def snakemake_cli(directory: Path, config: dict, cores: int, env: dict) -> float:
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    command = [
        str(SNAKEMAKE),
        *("--snakefile", str(SNAKEFILE), "--directory", str(directory)),
        *("--cores", str(cores), "--quiet", "rules"),
    ]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"snakemake failed:\n{result.stderr[-4000:]}")
    return time.perf_counter() - started


def steps_in_process(directory: Path, config: dict) -> dict[str, float]:
    """The workflow's four steps called directly, as a notebook would."""
    settings = load_settings(config)
    graph_settings, model = settings.graph, settings.model
    run = directory / "run"
    run.mkdir(parents=True)
    timings = {}
    started = time.perf_counter()
    manifest = steps.export(
        graph_settings, model, settings.shards, run / "manifest.json", run / "shards"
    )
    timings["export"] = time.perf_counter() - started
    shards = [shard["path"] for shard in manifest["shards"]]
    embedded, rejects = [], []
    for i, shard in enumerate(shards):
        embedded.append(str(run / f"embedded-{i}.parquet"))
        rejects.append(str(run / f"rejects-{i}.parquet"))
        started = time.perf_counter()
        steps.embed(model, shard, embedded[-1], rejects[-1], residues_path=str(run / f"r{i}.pq"))
        timings[f"embed shard {i}"] = time.perf_counter() - started
    started = time.perf_counter()
    paths = [run / "embeddings.parquet", run / "rejects.parquet", run / "summary.json"]
    steps.merge(model, str(run / "manifest.json"), embedded, rejects, *map(str, paths))
    timings["merge"] = time.perf_counter() - started
    started = time.perf_counter()
    steps.load(graph_settings, model, str(paths[0]), str(paths[1]), str(run / "receipt.json"))
    timings["load"] = time.perf_counter() - started
    return timings


class PureModel:
    """embed_sequences alone on the run's unique sequences, as the embed step calls it."""

    def __init__(self, model_dir: Path, sequences: list[str], config: dict):
        started = time.perf_counter()
        self.adapter = load_adapter(str(model_dir), "esm2", "cpu")
        self.load_seconds = time.perf_counter() - started
        self.sequences = []
        for sequence in sequences:
            try:
                self.sequences.append(self.adapter.prepare(sequence))
            except RejectedSequence:
                continue
        self.residues = sum(map(len, self.sequences))
        self.model = load_settings(config).model
        self.embed(self.sequences[:8])  # warm-up: one-time costs belong to the workflow side

    def embed(self, sequences: list[str]) -> None:
        embed_sequences(
            self.adapter,
            sequences,
            long_sequences=self.model.long_sequences,
            overlap=self.model.chunk_overlap,
        )

    def time(self) -> tuple[float, float]:
        """Wall and CPU seconds for the whole set."""
        started, cpu_started = time.perf_counter(), time.process_time()
        self.embed(self.sequences)
        return time.perf_counter() - started, time.process_time() - cpu_started


def job_startup_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", JOB_IMPORTS], check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fasta", type=Path, default=REPO_ROOT / "tests" / "data" / "synechocystis_every7th.fasta"
    )
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    args = parser.parse_args()
    logging.getLogger("neo4j").setLevel(logging.ERROR)  # "property key does not exist" notes
    # An embed job runs with min(its rule's 4 threads, --cores) threads; so does this process.
    torch.set_num_threads(min(4, args.cores))

    model_dir = esm2_8m_random()
    proteins = read_proteins(args.fasta)
    unique_sequences = list(dict.fromkeys(p["sequence"] for p in proteins))
    print(
        f"{len(proteins)} proteins ({len(unique_sequences)} unique sequences) from "
        f"{args.fasta.name}; {args.shards} shards; --cores {args.cores}; "
        f"{torch.get_num_threads()} torch threads",
        flush=True,
    )
    model = PureModel(model_dir, unique_sequences, run_config(model_dir, args.shards, "unused"))
    model_runs = [model.time()]
    print(
        f"pure model time: {model_runs[0][0]:.1f} s wall, {model_runs[0][1]:.1f} s CPU", flush=True
    )

    with tempfile.TemporaryDirectory(prefix="protembed-bench-") as scratch:
        scratch = Path(scratch)
        server = LocalNeo4j().start(scratch / "neo4j", password=secrets.token_urlsafe(16))
        try:
            os.environ.update(server.env())
            with graph.connect(graph.Connection.from_env()) as driver:
                graph.add_proteins(graph.ProteinGraph(driver), proteins)
            # Each run writes its own property, so each finds every protein still to embed.
            cpu_started = children_cpu_seconds() + process_cpu_seconds(server.pid)
            wall = snakemake_cli(
                scratch / "cli",
                run_config(model_dir, args.shards, "bench_cli"),
                args.cores,
                dict(os.environ),
            )
            cpu = children_cpu_seconds() + process_cpu_seconds(server.pid) - cpu_started
            print(f"workflow (snakemake CLI): {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
            run = scratch / "cli" / "results" / "bench_cli"
            jobs_model = json.loads((run / "summary.json").read_text())["throughput"]
            if os.environ.get("BENCH_KEEP_LOGS"):
                shutil.copytree(run / "logs", os.environ["BENCH_KEEP_LOGS"], dirs_exist_ok=True)
            model_runs.append(model.time())
            timings = steps_in_process(
                scratch / "steps", run_config(model_dir, args.shards, "bench_steps")
            )
        finally:
            server.stop()
    startup = job_startup_seconds()

    model_wall = sum(w for w, _ in model_runs) / len(model_runs)
    model_cpu = sum(c for _, c in model_runs) / len(model_runs)
    in_process = sum(timings.values())
    jobs = 3 + args.shards
    print(f"\n{'':<26} {'wall s':>8} {'CPU s':>8}")
    print(f"{'workflow':<26} {wall:8.1f} {cpu:8.1f}")
    print(f"{'pure model time':<26} {model_wall:8.1f} {model_cpu:8.1f}", end="")
    print(f"   (runs: {', '.join(f'{w:.1f}/{c:.1f}' for w, c in model_runs)})")
    print(
        f"{'overhead %':<26} {100 * (wall - model_wall) / model_wall:8.1f} "
        f"{100 * (cpu - model_cpu) / model_cpu:8.1f}"
    )
    # The same model time, clocked inside the workflow's own embed jobs: immune to the
    # machine's speed drifting between the runs above (by +-15% on a shared VM).
    jobs_seconds = jobs_model["model_seconds"]
    print(
        f"{'embed jobs model time':<26} {jobs_seconds:8.1f}   (their own clocks, same run)\n"
        f"{'overhead % in the run':<26} {100 * (wall - jobs_seconds) / jobs_seconds:8.1f}"
        "   (target < 10 %)"
    )
    print(f"model: {model.residues / model_cpu:.0f} residues per CPU second")
    print("\nwhere the rest goes (wall seconds):")
    print(f"  the same steps in one process, without snakemake: {in_process:.1f} s")
    for name, seconds in timings.items():
        print(f"    {name:<16} {seconds:7.1f} s")
    print(f"  model load (once)                         {model.load_seconds:6.1f} s per embed job")
    print(f"  one job's interpreter start-up + imports  {startup:6.1f} s x {jobs} jobs")
    print(
        f"  snakemake itself and job start-up         {wall - in_process:6.1f} s "
        "(workflow wall time - the steps in one process)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
