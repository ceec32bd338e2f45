"""The whole workflow on one machine at 100,000 and 1,000,000 proteins: time, speed, peak
memory of every job, the Neo4j store's growth, and the vector index (time to ONLINE, size,
recall@10 against exact search).

Proteins are synthesised from the Synechocystis proteome (graph_common.synthetic_proteins:
median length about 300, one in 20 a duplicate sequence) into a fresh local Neo4j 5.26 per
size. Every job runs as the workflow runs it, through the public steps (steps.export, embed,
merge, load, snapshot; iter_embeddings; report), each in a fresh interpreter whose peak
resident memory (VmHWM) is printed, with a fixed number of proteins per shard so that an
embed job's work does not grow with the run:

- pass 1, `kmer-2` (400 dimensions, no weights, so the model costs little): export, embed
  (one job per shard, one after the other), merge, load, the vector index, snapshot, the
  read-back (iter_embeddings) and the report (its recall@k on `--queries` sampled proteins,
  against exact search over every vector);
- pass 2, a real model's width (1,280, ESM-2 650M's property): the pass-1 vectors projected
  to 1,280 dimensions by one fixed random matrix (so that neighbourhoods keep the structure
  of real k-mer profiles; random vectors would be a worst case no user has), laid out as the
  merge writes them; then load, the vector index and its recall.

The index is built after the load (graph.create_vector_index: false for the load, then
ensure_vector_index), so that the load's speed and the index's time to ONLINE are each
measured on their own. Neo4j gets --heap plus --page-cache (8 GiB in all by default); the
vector index lives outside both, in the OS's file cache (Lucene memory-maps it).

    .venv/bin/python bench/scale.py                              # 100,000 and 1,000,000
    .venv/bin/python bench/scale.py --sizes 10000 --shard 5000   # a quick look
    .venv/bin/python bench/scale.py --sizes 100000 --no-wide     # pass 1 only
"""

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from graph_common import REPO, iter_synthetic_proteins, run_measured, start_server  # noqa: E402

KMER = "kmer-2"
WIDE_MODEL = "facebook/esm2_t33_650M_UR50D"
WIDE = 1280
K = 10
QUERIES = 1000  # recall@K on this many sampled proteins


# -- the jobs: each runs in a fresh interpreter (Stages.job), as a workflow job would --


def job_export(settings, run: Path) -> dict:
    from protembed import steps

    manifest = steps.export(
        settings.graph,
        settings.model,
        settings.shards,
        str(run / "manifest.json"),
        str(run / "shards"),
    )
    return {
        "proteins": manifest["exported"],
        "unique": manifest["unique_sequences"],
        "shards": len(manifest["shards"]),
    }


def job_embed(settings, run: Path, shard: int) -> dict:
    from protembed import steps

    summary = steps.embed(
        settings.model,
        str(run / "shards" / f"shard-{shard}.parquet"),
        str(run / "embed" / f"shard-{shard}.parquet"),
        str(run / "embed" / f"shard-{shard}.rejects.parquet"),
        progress=False,
    )
    return {"proteins": summary["sequences"], "embedded": summary["embedded"]}


def job_merge(settings, run: Path, shards: int) -> dict:
    from protembed import steps

    embedded = [str(run / "embed" / f"shard-{i}.parquet") for i in range(shards)]
    rejects = [str(run / "embed" / f"shard-{i}.rejects.parquet") for i in range(shards)]
    summary = steps.merge(
        settings.model,
        str(run / "manifest.json"),
        embedded,
        rejects,
        str(run / "embeddings.parquet"),
        str(run / "rejects.parquet"),
        str(run / "summary.json"),
        str(run / "run.json"),
    )
    return {"proteins": summary["embedded"], "rejected": summary["rejected"]}


def job_load(settings, run: Path, embeddings: str) -> dict:
    from protembed import steps

    receipt = steps.load(
        settings.graph,
        settings.model,
        str(run / embeddings),
        str(run / "rejects.parquet"),
        str(run / "receipt.json"),
    )
    return {"proteins": receipt["written"], "write_seconds": receipt["write_seconds"]}


def job_index(settings, run: Path, dimension: int) -> dict:
    from protembed import open_graph

    with open_graph(settings) as proteins:
        name = proteins.ensure_vector_index(
            dimension, settings.graph.index_online_timeout_s, settings.graph.vector_index
        )
        vectors = proteins.count_with_vector()
    return {"proteins": vectors, "index": name}


def job_snapshot(settings, run: Path) -> dict:
    from protembed import steps

    summary = steps.snapshot(
        settings.graph,
        settings.model,
        str(run / "graph" / "vectors.parquet"),
        str(run / "graph" / "rejects.parquet"),
        str(run / "graph" / "summary.json"),
        str(run / "summary.json"),
    )
    return {"proteins": summary["vectors"]}


def job_read_back(settings, run: Path) -> dict:
    import protembed

    rows = pages = 0
    for page in protembed.iter_embeddings(settings, settings.graph.export_page_size):
        rows += len(page.ids)
        pages += 1
    return {"proteins": rows, "pages": pages}


def job_report(settings, run: Path) -> dict:
    from protembed import report

    files = {
        "graph_vectors": run / "graph" / "vectors.parquet",
        "graph_rejects": run / "graph" / "rejects.parquet",
        "graph_summary": run / "graph" / "summary.json",
        "summary": run / "summary.json",
        "run_record": run / "run.json",
        "receipt": run / "receipt.json",
    }
    names = ["summary", "rejects", "neighbours"]
    out = {name: run / "report" / f"{name}.html" for name in names}
    for plot in ("lengths", "throughput", "projection", "reasons", "scores"):
        out[plot] = run / "report" / f"{plot}.png"
    out["numbers"] = run / "report" / "report.json"
    inputs = {k: str(v) for k, v in files.items()}
    numbers = report.build(settings.graph, settings.model, settings.report, inputs, out)
    neighbours = numbers["neighbours"]
    return {
        "proteins": neighbours["vectors"],
        "recall": neighbours["recall_at_k"],
        "queries": neighbours["sampled"],
        "projection_points": numbers["projection"]["points"],
    }


def job_recall(settings, run: Path, embeddings: str) -> dict:
    """recall@k of the index on sampled proteins against exact search over the Parquet
    file, by the report's own code (its sample and its streaming exact search)."""
    from protembed import open_graph, report

    path = str(run / embeddings)
    sample = report.Sample.draw(path, settings.report.sample)
    with open_graph(settings) as proteins:
        index = proteins.vector_index()
        result = report.neighbour_quality(proteins, index, path, sample, {}, K)
    return {
        "proteins": result["vectors"],
        "recall": result["recall_at_k"],
        "queries": len(sample.query_ids),
    }


JOBS = {name.removeprefix("job_"): f for name, f in globals().items() if name.startswith("job_")}


def run_job(name: str, config_path: str, run: str, *args: str) -> None:
    from protembed.config import load_settings

    settings = load_settings(config_path)
    started = time.perf_counter()
    result = JOBS[name](settings, Path(run), *[int(a) if a.isdigit() else a for a in args])
    print(json.dumps({"seconds": time.perf_counter() - started, **result}))


# -- the driver -----------------------------------------------------------------------


class Stages:
    """Runs the jobs of one size against one server and keeps each one's figures."""

    def __init__(self, server, data_dir: Path, run: Path, config_path: Path, json_path=None):
        self.server, self.data_dir, self.run, self.config_path = server, data_dir, run, config_path
        self.json_path = json_path
        self.figures: dict[str, dict] = {}

    def job(self, stage: str, name: str, *args, config: Path | None = None, output=None) -> dict:
        before = self._state()
        code = (
            f"import sys; sys.path.insert(0, {str(BENCH)!r}); import scale; "
            f"scale.run_job({name!r}, {str(config or self.config_path)!r}, {str(self.run)!r}, "
            + ", ".join(repr(str(a)) for a in args)
            + ")"
        )
        result, peak = run_measured(code, self.server.env())
        after = self._state()
        figure = {
            **result,
            "peak_rss": peak,
            "store_growth": after["store"] - before["store"],
            "log_growth": after["logs"] - before["logs"],
            "index_bytes": after["index"],
            "server_rss": after["server_rss"],
            "server_rss_growth": after["server_rss"] - before["server_rss"],
            "load": (before["load"], after["load"]),
        }
        if output:  # what the job wrote: files or folders
            figure["output_bytes"] = sum(_du(self.run / path) for path in output)
        if stage in self.figures:  # one figure for many jobs of a stage (the embed jobs)
            figure = _add(self.figures[stage], figure)
        self.figures[stage] = figure
        if self.json_path:  # as it goes: a long run may be stopped
            self.json_path.write_text(json.dumps(self.figures, indent=1))
        return figure

    def _state(self) -> dict:
        return {
            "store": _du(self.data_dir / "data" / "databases"),
            "logs": _du(self.data_dir / "data" / "transactions"),
            "index": vector_index_bytes(self.data_dir),
            "server_rss": _rss(self.server.pid),
            "load": os.getloadavg()[0],
        }


def _add(total: dict, more: dict) -> dict:
    summed = (
        "seconds",
        "proteins",
        "store_growth",
        "log_growth",
        "server_rss_growth",
        "embedded",
        "output_bytes",
    )
    merged = dict(more)
    for key in summed:
        if key in total:
            merged[key] = total[key] + more.get(key, 0)
    merged["peak_rss"] = max(total["peak_rss"], more["peak_rss"])
    merged["load"] = (
        min(total["load"][0], more["load"][0]),
        max(total["load"][1], more["load"][1]),
    )
    merged["jobs"] = total.get("jobs", 1) + 1
    return merged


def _du(path: Path) -> int:
    done = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    return int(done.stdout.split()[0]) if done.returncode == 0 else 0


def vector_index_bytes(data_dir: Path) -> int:
    """Bytes of the database's vector index files (Lucene's, under schema/index/vector-*)."""
    index = data_dir / "data" / "databases" / "neo4j" / "schema" / "index"
    if not index.is_dir():
        return 0
    return sum(_du(provider) for provider in index.iterdir() if provider.name.startswith("vector"))


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def write_config(
    path: Path, run: Path, size: int, per_shard: int, model: str, quantization: bool = True
) -> Path:
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["results"] = str(run)
    config["shards"] = max(1, math.ceil(size / per_shard))
    config["min_proteins_per_shard"] = per_shard
    config["graph"].update(label="Protein", create_vector_index=False)
    config["graph"]["index_online_timeout_s"] = 6 * 3600
    config["graph"]["vector_index"]["quantization"] = quantization
    config["model"]["name"] = model
    config["model"]["device"] = "cpu"
    config["report"].update(sample=QUERIES, neighbours=K)
    path.write_text(yaml.safe_dump(config))
    return path


def seed_graph(server, size: int) -> float:
    """The proteins, as a user's graph holds them before the workflow; returns seconds."""
    from protembed import graph

    env = server.env()
    connection = graph.Connection(
        uri=env["NEO4J_URI"],
        user=env["NEO4J_USERNAME"],
        password=env["NEO4J_PASSWORD"],
        database=env["NEO4J_DATABASE"],
    )
    started = time.perf_counter()
    with graph.ProteinGraph.connect(connection, label="Protein") as proteins:
        proteins.ensure_id_index()  # add_proteins MERGEs on the id
        for chunk in itertools.batched(iter_synthetic_proteins(size), 100_000):
            graph.add_proteins(proteins, list(chunk), batch_size=5000)
    return time.perf_counter() - started


def count_kmers(sequences: list[str]) -> np.ndarray:
    """kmer-2's vectors (dipeptide frequencies over the pairs of standard residues), for
    many sequences in a few array operations: what the embed job computes one protein per
    forward pass."""
    from protembed.adapters.kmer import _CODE

    lengths = np.array([len(s) for s in sequences])
    joined = "".join(sequences).encode("ascii")
    codes = _CODE[np.frombuffer(joined, dtype=np.uint8)]
    protein = np.repeat(np.arange(len(sequences)), lengths)
    pairs = codes[:-1] * 20 + codes[1:]
    valid = (codes[:-1] >= 0) & (codes[1:] >= 0) & (protein[:-1] == protein[1:])
    counts = np.bincount(
        protein[:-1][valid] * 400 + pairs[valid], minlength=len(sequences) * 400
    ).reshape(len(sequences), 400)
    return (counts / counts.sum(1, keepdims=True)).astype(np.float32)


def count_shards(run: Path, shards: range, like: int) -> float:
    """Shard outputs as the embed job writes them (its metadata, the same vectors), from
    count_kmers; checked against the real job's output for shard `like`. Returns seconds."""
    import pyarrow as pa

    from protembed import parquet_io

    real = parquet_io.read_table(run / "embed" / f"shard-{like}.parquet")
    counted = count_kmers(real["sequence"].to_pylist())
    error = np.abs(counted - np.stack(real["vector"].to_numpy(zero_copy_only=False))).max()
    if error > 1e-6:
        raise RuntimeError(f"count_kmers differs from the embed job by {error}")
    metadata = parquet_io.read_metadata(run / "embed" / f"shard-{like}.parquet")
    metadata.pop("throughput", None)
    started = time.perf_counter()
    for shard in shards:
        table = parquet_io.read_table(run / "shards" / f"shard-{shard}.parquet")
        vectors = count_kmers(table["sequence"].to_pylist())
        out = pa.table(
            {
                "sequence_sha256": table["sequence_sha256"],
                "sequence": table["sequence"],
                "ids": table["ids"],
                "vector": parquet_io.vectors_array(vectors),
                "residues": pa.compute.utf8_length(table["sequence"]).cast(pa.int32()),
                "long_sequence_handling": [real["long_sequence_handling"][0].as_py()] * len(table),
            },
            schema=parquet_io.shard_embeddings_schema(400),
        )
        parquet_io.write_table(out, run / "embed" / f"shard-{shard}.parquet", metadata)
        empty = pa.Table.from_pylist([], parquet_io.REJECTS_SCHEMA)
        parquet_io.write_table(empty, run / "embed" / f"shard-{shard}.rejects.parquet")
    print(f"  count_kmers agrees with the embed job to {error:.1e}", flush=True)
    return time.perf_counter() - started


def widen(run: Path, source: str, target: str, seed: int = 0) -> float:
    """The merged k-mer vectors, projected to WIDE dimensions, in a file laid out as the
    merge writes one for WIDE_MODEL; returns seconds."""
    import pyarrow as pa

    from protembed import parquet_io

    started = time.perf_counter()
    projection = np.random.default_rng(seed).standard_normal((400, WIDE), dtype=np.float32)
    metadata = {
        "model": WIDE_MODEL,
        "model_revision": "08e4846e537177426273712802403f7ba8261b6c",
        "embedding": "mean_last",
        "pooling": "mean over residue positions only of layer 33 of 33",
        "dimension": WIDE,
        "precision": "float32",
        "created": "2026-12-05T00:00:00+00:00",
    }
    schema = parquet_io.embeddings_schema(WIDE)
    with parquet_io.table_writer(run / target, schema, metadata) as writer:
        for batch in parquet_io.iter_batches(run / source, 25_000):
            narrow = batch["vector"]
            matrix = narrow.flatten().to_numpy().reshape(len(narrow), -1) @ projection
            columns = {name: batch[name] for name in schema.names if name != "vector"}
            columns["model"] = pa.array([WIDE_MODEL] * len(narrow), pa.string())
            columns["vector"] = parquet_io.vectors_array(matrix)
            writer.write_table(pa.table(columns, schema=writer.schema.remove_metadata()))
    return time.perf_counter() - started


def measure(size: int, args, work: Path) -> dict:
    data_dir, run = work / f"neo4j-{size}", work / f"run-{size}"
    run.mkdir(parents=True)
    config = write_config(run / "config.yaml", run, size, args.shard, KMER, args.quantization)
    server = start_server(data_dir, page_cache_mib=args.page_cache_mib, heap=args.heap)
    partial = args.json.with_suffix(f".{size}.json") if args.json else None
    stages = Stages(server, data_dir, run, config, partial)
    try:
        store, logs = _du(data_dir / "data" / "databases"), _du(data_dir / "data" / "transactions")
        seeded = seed_graph(server, size)
        stages.figures["seed"] = {
            "seconds": seeded,
            "proteins": size,
            "store_growth": _du(data_dir / "data" / "databases") - store,
            "log_growth": _du(data_dir / "data" / "transactions") - logs,
            "load": (os.getloadavg()[0],) * 2,
        }
        _say(size, "seed", stages.figures["seed"])
        exported = stages.job("export", "export", output=["shards"])
        _say(size, "export", exported)
        real = min(exported["shards"], args.embed_jobs or exported["shards"])
        for shard in range(real):
            stages.job("embed", "embed", shard, output=[f"embed/shard-{shard}.parquet"])
        _say(size, "embed", stages.figures["embed"])
        if real < exported["shards"]:
            seconds = count_shards(run, range(real, exported["shards"]), like=0)
            stages.figures["embed-counted"] = {
                "seconds": seconds,
                "shards": exported["shards"] - real,
            }
            print(f"{size:>9,d} counted the other shards' k-mers in {seconds:.0f} s", flush=True)
        _say(
            size,
            "merge",
            stages.job("merge", "merge", exported["shards"], output=["embeddings.parquet"]),
        )
        shutil.rmtree(run / "shards")
        shutil.rmtree(run / "embed")
        _say(size, "load", stages.job("load", "load", "embeddings.parquet"))
        _say(size, "index", stages.job("index", "index", 400))
        _say(size, "snapshot", stages.job("snapshot", "snapshot", output=["graph"]))
        _say(size, "read-back", stages.job("read-back", "read_back"))
        _say(size, "report", stages.job("report", "report"))
        (run / "graph" / "vectors.parquet").unlink()
        if args.wide:
            wide = write_config(
                run / "config-wide.yaml", run, size, args.shard, WIDE_MODEL, args.quantization
            )
            seconds = widen(run, "embeddings.parquet", "embeddings-wide.parquet")
            stages.figures["widen"] = {
                "seconds": seconds,
                "output_bytes": _du(run / "embeddings-wide.parquet"),
            }
            print(
                f"{size:>9,d} wrote the {WIDE}-dimensional file in {seconds:.0f} s, "
                f"{stages.figures['widen']['output_bytes'] / 2**20:,.0f} MiB"
            )
            (run / "embeddings.parquet").unlink()
            for stage, name, extra in (
                ("load-1280", "load", "embeddings-wide.parquet"),
                ("index-1280", "index", WIDE),
                ("recall-1280", "recall", "embeddings-wide.parquet"),
            ):
                _say(size, stage, stages.job(stage, name, extra, config=wide))
    finally:
        server.stop()
    figures = stages.figures
    figures["server"] = {"heap": args.heap, "page_cache_mib": args.page_cache_mib}
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
    return figures


def _say(size: int, stage: str, figure: dict) -> None:
    seconds = figure["seconds"]
    speed = figure["proteins"] / seconds if seconds else 0
    parts = [f"{size:>9,d} {stage:<11} {seconds:8.1f} s {speed:9,.0f}/s"]
    if "peak_rss" in figure:
        parts.append(f"peak RSS {figure['peak_rss'] / 2**20:7.1f} MiB")
    if figure.get("jobs"):
        parts.append(f"({figure['jobs']} jobs)")
    parts.append(
        f"store +{figure['store_growth'] / 2**20:,.0f} MiB, "
        f"transaction logs +{figure['log_growth'] / 2**20:,.0f} MiB"
    )
    if "output_bytes" in figure:
        parts.append(f"wrote {figure['output_bytes'] / 2**20:,.0f} MiB")
    if stage.startswith("index"):
        parts.append(
            f"index files {figure['index_bytes'] / 2**20:,.0f} MiB, server RSS "
            f"{figure['server_rss'] / 2**20:,.0f} MiB ({figure['server_rss_growth'] / 2**20:+,.0f})"
        )
    if figure.get("recall") is not None:
        parts.append(f"recall@{K} {figure['recall']:.4f} on {figure['queries']} queries")
    low, high = figure["load"]
    parts.append(f"load avg {low:.1f}-{high:.1f}")
    print("  ".join(parts), flush=True)


def ratios(results: dict[int, dict]) -> None:
    small, large = min(results), max(results)
    print(f"\npeak RSS of each job, {large:,} vs {small:,} proteins (target <= 1.5x):")
    for stage, figure in results[large].items():
        if "peak_rss" in figure and stage in results[small]:
            ratio = figure["peak_rss"] / results[small][stage]["peak_rss"]
            mib = figure["peak_rss"] / 2**20
            print(
                f"  {stage:<11} {ratio:5.2f}x  ({mib:,.0f} MiB)  {'ok' if ratio <= 1.5 else 'OVER'}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--shard", type=int, default=50_000, help="proteins per embed job")
    parser.add_argument(
        "--embed-jobs",
        type=int,
        help="run this many embed jobs, count the other shards' k-mers in the benchmark "
        "(the same vectors, checked): on a CPU kmer-2's embed jobs run at one protein per "
        "forward pass, hours for a million",
    )
    parser.add_argument("--heap", default="3g")
    parser.add_argument("--page-cache-mib", type=int, default=5120)
    parser.add_argument("--work", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--no-wide", dest="wide", action="store_false")
    parser.add_argument(
        "--no-quantization",
        dest="quantization",
        action="store_false",
        help="build the indexes without quantization (config.yaml: with)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the stores and files")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    print(
        f"CPU: {_cpu()}, {os.cpu_count()} cores; Neo4j heap {args.heap}, page cache "
        f"{args.page_cache_mib} MiB; {args.shard:,} proteins per shard",
        flush=True,
    )
    results = {}
    work = args.work or Path(tempfile.mkdtemp(prefix="protembed-bench-scale-"))
    try:
        for size in sizes:
            results[size] = measure(size, args, work)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    finally:
        if args.work is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if len(results) > 1:
        ratios(results)
    return 0


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
