"""Export speed, and peak memory of export and load at 10,000 and 100,000 proteins.

Proteins are synthesised from the Synechocystis proteome (median length about 300, one in
20 a duplicate sequence; see graph_common.synthetic_proteins), one label per size on one
local Neo4j. Each step runs as the workflow runs it (steps.export / steps.load with the
repository's config.yaml: 4 shards, its page and batch sizes), in a fresh interpreter
whose peak resident memory is read from the kernel. Load writes 1,280-dimensional
vectors from a Parquet file laid out as the merge step writes it; no vector index.

    .venv/bin/python bench/graph_scale.py
    .venv/bin/python bench/graph_scale.py --sizes 2000,20000    # a quick look
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml
from graph_common import run_measured, start_server, synthetic_proteins

from protembed import graph, parquet_io
from protembed.config import load_settings

DIMENSION = 1280
MODEL = "facebook/esm2_t33_650M_UR50D"

EXPORT = """
import json, time
from protembed import steps
from protembed.config import load_settings
settings = load_settings({config!r})
# every shard of config.yaml, as before the floor
shards = settings.shards._replace(min_proteins_per_shard=1)
started = time.perf_counter()
manifest = steps.export(
    settings.graph, settings.model, shards, {directory!r} + "/manifest.json",
    {directory!r} + "/shards"
)
print(json.dumps({{"seconds": time.perf_counter() - started, "exported": manifest["exported"],
                  "unique": manifest["unique_sequences"]}}))
"""

LOAD = """
import json, time
from protembed import steps
from protembed.config import load_settings
settings = load_settings({config!r})
started = time.perf_counter()
receipt = steps.load(
    settings.graph, settings.model, {embeddings!r}, {rejects!r}, {directory!r} + "/receipt.json"
)
print(json.dumps({{"seconds": time.perf_counter() - started, "written": receipt["written"]}}))
"""


def embeddings_file(directory: Path, proteins: list[dict], shards: int) -> Path:
    """What merge writes: one write per shard into one file."""
    path = directory / "embeddings.parquet"
    rng = np.random.default_rng(0)
    metadata = {
        "model": MODEL,
        "model_revision": "08e4846e537177426273712802403f7ba8261b6c",
        "embedding": "mean_last",
        "pooling": "mean over residue positions only of layer 33 of 33",
        "dimension": DIMENSION,
        "precision": "float32",
        "created": "2026-11-25T00:00:00+00:00",
    }
    schema = parquet_io.embeddings_schema(DIMENSION)
    with parquet_io.table_writer(path, schema, metadata) as writer:
        for shard in range(shards):
            part = proteins[shard::shards]
            writer.write_table(
                pa.table(
                    {
                        "id": [p["accession_id"] for p in part],
                        "model": [MODEL] * len(part),
                        "sequence_sha256": [f"{i:064x}" for i in range(len(part))],
                        "sequence": [p["sequence"] for p in part],
                        "vector": parquet_io.vectors_array(
                            rng.standard_normal((len(part), DIMENSION), dtype=np.float32)
                        ),
                        "residues": [len(p["sequence"]) for p in part],
                        "long_sequence_handling": ["whole"] * len(part),
                    },
                    schema=writer.schema.remove_metadata(),
                )
            )
    rejects = directory / "rejects.parquet"
    parquet_io.write_table(pa.Table.from_pylist([], parquet_io.REJECTS_SCHEMA), rejects)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="protembed-bench-scale-") as work:
        work = Path(work)
        server = start_server(work / "neo4j")
        try:
            for size in sizes:
                label = f"Bench{size}"
                directory = work / label
                directory.mkdir()
                config = {
                    "graph": {"label": label, "create_vector_index": False},
                    "model": {"name": MODEL},
                }
                config_path = directory / "config.yaml"
                config_path.write_text(yaml.safe_dump(config))
                proteins = synthetic_proteins(size)
                connection = graph.Connection(**_connection(server))
                with graph.ProteinGraph.connect(connection, label=label) as protein_graph:
                    # The index first: add_proteins MERGEs on the id.
                    protein_graph.ensure_id_index()
                    graph.add_proteins(protein_graph, proteins, batch_size=5000)
                env = server.env()
                exported, export_rss = run_measured(
                    EXPORT.format(config=str(config_path), directory=str(directory)), env
                )
                embeddings = embeddings_file(directory, proteins, load_settings(config).shards.most)
                loaded, load_rss = run_measured(
                    LOAD.format(
                        config=str(config_path),
                        embeddings=str(embeddings),
                        rejects=str(directory / "rejects.parquet"),
                        directory=str(directory),
                    ),
                    env,
                )
                assert exported["exported"] == size and loaded["written"] == size
                results[size] = (exported, export_rss, loaded, load_rss)
                print(
                    f"{size:>8,d} proteins: export {size / exported['seconds']:8,.0f} proteins/s "
                    f"({exported['unique']:,} unique sequences), peak RSS "
                    f"{export_rss / 2**20:6.1f} MiB; load {size / loaded['seconds']:6,.0f} "
                    f"vectors/s, peak RSS {load_rss / 2**20:6.1f} MiB",
                    flush=True,
                )
        finally:
            server.stop()
    small, large = min(sizes), max(sizes)
    print(f"\npeak RSS, {large:,} vs {small:,} proteins (target <= 1.5x):")
    print(f"  export {results[large][1] / results[small][1]:.2f}x")
    print(f"  load   {results[large][3] / results[small][3]:.2f}x")
    return 0


def _connection(server) -> dict:
    env = server.env()
    return {
        "uri": env["NEO4J_URI"],
        "user": env["NEO4J_USERNAME"],
        "password": env["NEO4J_PASSWORD"],
        "database": env["NEO4J_DATABASE"],
    }


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
