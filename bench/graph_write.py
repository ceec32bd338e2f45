"""Writing vectors into Neo4j: our load step against the seed's write path, 1,280 dimensions.

The seed's path is PyEED's `embeddings/database.py`: batches of 16 proteins, each vector
sent as a Python list, `UNWIND $updates AS update MATCH (p:Protein {accession_id:
update.accession}) SET p.embedding = update.embedding` in a fresh session's
`execute_write`. Ours is `steps.load` on an embeddings Parquet file, as the workflow runs it
(provenance included, no vector index for either path).

Speed: one server, each path on its own proteins in interleaved rounds after a warm-up,
with wall time and the CPU time of this process and of the server per vector; a third
path, ours without the run-level provenance properties, shows what they cost. Then a
table of our transaction sizes and writer counts. Store growth: each path writes
60,000 vectors on a fresh server holding the same proteins; the store files' bytes after a
clean shutdown (which checkpoints; Community has no db.checkpoint()) minus those before.

    .venv/bin/python bench/graph_write.py                    # 40,000 vectors per path
    .venv/bin/python bench/graph_write.py --proteins 4000    # a quicker look at speed
"""

import argparse
import datetime
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
from graph_common import start_server, store_files, synthetic_proteins

from protembed import __version__, graph, parquet_io, steps
from protembed.config import Settings, load_settings

# Each protein created here, by id: the load writes a vector only where its sequence is.
SEQUENCES: dict[str, str] = {}
MODEL = "facebook/esm2_t33_650M_UR50D"
METADATA = {
    "model": MODEL,
    "model_revision": "08e4846e537177426273712802403f7ba8261b6c",
    "family": "esm2",
    "embedding": "mean_last",
    "pooling": "mean over residue positions only (<cls>, <eos> and padding excluded) "
    "of layer 33 of 33 (the last block's output after the final layer norm "
    "(emb_layer_norm_after))",
    "precision": "float32",
    "versions": {"protembed": __version__},
}
SEED_BATCH = 16
WARM_UP = 8000  # vectors per path before timing
# Store files grow in preallocated steps of up to 32 MiB: enough vectors that a step is
# a few per cent of the growth.
BYTES_PROTEINS = 60000


def seed_write(driver, accessions: list[str], embeddings: np.ndarray) -> None:
    """PyEED's update_protein_embeddings_in_db with DatabaseConnector.execute_write."""
    updates = [
        {"accession": acc, "embedding": emb.flatten().tolist()}
        for acc, emb in zip(accessions, embeddings, strict=True)
    ]
    query = """
    UNWIND $updates AS update
    MATCH (p:Protein {accession_id: update.accession})
    SET p.embedding = update.embedding
    """
    with driver.session() as session:
        session.execute_write(lambda tx: [r.data() for r in tx.run(query, {"updates": updates})])


def seed_load(driver, ids: list[str], vectors: np.ndarray) -> float:
    started = time.perf_counter()
    for start in range(0, len(ids), SEED_BATCH):
        seed_write(driver, ids[start : start + SEED_BATCH], vectors[start : start + SEED_BATCH])
    return time.perf_counter() - started


def embeddings_file(directory: Path, ids: list[str], vectors: np.ndarray) -> Path:
    """The merge step's output for these proteins (one row group per 5,000, like shards)."""
    dimension = vectors.shape[1]
    path = directory / f"embeddings-{ids[0]}-{len(ids)}.parquet"
    metadata = METADATA | {"dimension": dimension, "created": _now()}
    with parquet_io.table_writer(path, parquet_io.embeddings_schema(dimension), metadata) as w:
        for start in range(0, len(ids), 5000):
            rows = slice(start, start + 5000)
            count = len(ids[rows])
            w.write_table(
                pa.table(
                    {
                        "id": ids[rows],
                        "model": [MODEL] * count,
                        "sequence_sha256": [f"{i:064x}" for i in range(start, start + count)],
                        "sequence": [SEQUENCES[i] for i in ids[rows]],
                        "vector": parquet_io.vectors_array(vectors[rows]),
                        "residues": [300] * count,
                        "long_sequence_handling": ["whole"] * count,
                    },
                    schema=w.schema.remove_metadata(),
                )
            )
    return path


def our_file(directory: Path, ids: list[str], vectors: np.ndarray) -> tuple[str, str]:
    """An embeddings file and an empty rejects file for these proteins, as merge leaves them."""
    path = embeddings_file(directory, ids, vectors)
    rejects = directory / "rejects.parquet"
    parquet_io.write_table(pa.Table.from_pylist([], parquet_io.REJECTS_SCHEMA), rejects)
    return str(path), str(rejects)


def our_load(settings: Settings, directory: Path, ids: list[str], vectors: np.ndarray) -> float:
    """Seconds of the load step's writes (its receipt's write_seconds)."""
    path, rejects = our_file(directory, ids, vectors)
    receipt = steps.load(
        settings.graph, settings.model, path, rejects, str(directory / "receipt.json")
    )
    assert receipt["written"] == len(ids), receipt
    return receipt["write_seconds"]


class Meter:
    """Wall seconds, and CPU seconds of this process and of the server, per path."""

    def __init__(self, server_pid: int):
        self.server = psutil.Process(server_pid)
        self.totals: dict[str, np.ndarray] = {}

    @contextmanager
    def measure(self, path: str):
        start = self._now()
        yield
        took = self._now() - start
        self.totals[path] = self.totals.get(path, 0) + took
        self.last = took

    def _now(self) -> np.ndarray:
        server = self.server.cpu_times()
        return np.array([time.perf_counter(), time.process_time(), server.user + server.system])


def our_config(**graph_settings) -> Settings:
    graph_settings = {"create_vector_index": False, **graph_settings}
    return load_settings({"model": {"name": MODEL}, "graph": graph_settings})


def create_proteins(driver, prefix: str, count: int) -> list[str]:
    proteins = synthetic_proteins(count, prefix)
    graph.add_proteins(graph.ProteinGraph(driver), proteins, batch_size=5000)
    SEQUENCES.update((p["accession_id"], p["sequence"]) for p in proteins)
    return [p["accession_id"] for p in proteins]


PATHS = {
    "seed": f"seed's path (batches of {SEED_BATCH})",
    "ours": "ours (steps.load, config.yaml)",
    "bare": "ours without run provenance",
}


def speed(work: Path, count: int, rounds: int, dimension: int) -> None:
    server = start_server(work / "speed-neo4j")
    os.environ.update(server.env())
    rng = np.random.default_rng(0)
    meter = Meter(server.pid)
    try:
        with graph.connect(graph.Connection.from_env()) as driver:
            graph.ProteinGraph(driver).ensure_id_index()
            ids = {path: create_proteins(driver, path.upper(), count) for path in PATHS}
            warm_ids = create_proteins(driver, "WARM", 2 * WARM_UP)
            vectors = rng.standard_normal((count, dimension), dtype=np.float32)
            # Warm-up: the server's JIT compiles each path's code during its first few
            # thousand vectors (measured: ours ran at a fifth of its speed for ~2,000).
            warm = rng.standard_normal((WARM_UP, dimension), dtype=np.float32)
            seed_load(driver, warm_ids[:WARM_UP], warm)
            our_load(our_config(), work, warm_ids[WARM_UP:], warm)
            size = count // rounds
            for r in range(rounds):
                part = slice(r * size, (r + 1) * size)
                files = {p: our_file(work, ids[p][part], vectors[part]) for p in ("ours", "bare")}
                rate = {}
                for path in [*PATHS][r % 3 :] + [*PATHS][: r % 3]:  # each path first in turn
                    with meter.measure(path):
                        if path == "seed":
                            seed_load(driver, ids[path][part], vectors[part])
                        elif path == "ours":
                            our = our_config()
                            receipt = str(work / "receipt.json")
                            steps.load(our.graph, our.model, *files[path], receipt)
                        else:
                            settings = our_config().graph
                            batches = steps._vector_batches(
                                files[path][0], settings.write_batch_size
                            )
                            graph.ProteinGraph(
                                driver, vector_property="embedding_bare"
                            ).write_vectors(batches, {}, writers=settings["writers"])
                    rate[path] = size / meter.last[0]
                print(
                    f"  round {r + 1}: "
                    + ", ".join(f"{path} {rate[path]:6,.0f}" for path in PATHS)
                    + " vectors/s",
                    flush=True,
                )
            done = size * rounds
            print(f"\nwrite speed, {done:,} vectors of {dimension} dimensions per path")
            print(f"  {'':32s} {'vectors/s':>9s}  {'vs seed':>7s}  CPU ms/vector: client server")
            seed_rate = done / meter.totals["seed"][0]
            for path, label in PATHS.items():
                wall, client, server_cpu = meter.totals[path]
                print(
                    f"  {label:32s} {done / wall:9,.0f}  {done / wall / seed_rate:6.2f}x"
                    f"  {1000 * client / done:20.3f} {1000 * server_cpu / done:6.3f}"
                )

            print("\nour transaction size and writers (4,000 vectors each)")
            print("  write_batch_size  writers  vectors/s")
            tune = rng.standard_normal((4000, dimension), dtype=np.float32)
            for batch in (250, 500, 1000, 2000):
                for writers in (1, 2, 4):
                    tune_ids = create_proteins(driver, f"T{batch}W{writers}_", 4000)
                    config = our_config(write_batch_size=batch, writers=writers)
                    rate = 4000 / our_load(config, work, tune_ids, tune)
                    print(f"  {batch:16d}  {writers:7d}  {rate:9,.0f}")
    finally:
        server.stop()


def store_growth(work: Path, count: int, dimension: int) -> None:
    vectors = np.random.default_rng(1).standard_normal((count, dimension), dtype=np.float32)
    growth = {}
    for path in ("seed", "ours"):
        data = work / f"bytes-{path}"
        server = start_server(data)
        os.environ.update(server.env())
        with graph.connect(graph.Connection.from_env()) as driver:
            graph.ProteinGraph(driver).ensure_id_index()
            ids = create_proteins(driver, "P", count)
        server.stop()
        before = store_files(data)
        server = start_server(data)
        os.environ.update(server.env())
        with graph.connect(graph.Connection.from_env()) as driver:
            if path == "seed":
                seed_load(driver, ids, vectors)
        if path == "ours":
            our_load(our_config(), work, ids, vectors)
        server.stop()
        after = store_files(data)
        growth[path] = {name: after[name] - before.get(name, 0) for name in after}
    print(f"\nstore growth, {count:,} vectors of {dimension} dimensions, after checkpoint")
    print(f"  {'bytes per vector':38s} {'seed':>9s} {'ours':>9s}")
    for name in sorted(set(growth["seed"]) | set(growth["ours"])):
        seed, ours = growth["seed"].get(name, 0), growth["ours"].get(name, 0)
        if seed or ours:
            print(f"  {name:38s} {seed / count:9,.1f} {ours / count:9,.1f}")
    seed, ours = sum(growth["seed"].values()), sum(growth["ours"].values())
    print(f"  {'all store files':38s} {seed / count:9,.1f} {ours / count:9,.1f}")
    print(f"  ratio ours / seed {ours / seed:.3f}")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proteins", type=int, default=40000, help="vectors per path")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--dimension", type=int, default=1280)
    args = parser.parse_args()
    print(f"neo4j-rust-ext loaded: {graph.rust_extension_loaded()}")
    with tempfile.TemporaryDirectory(prefix="protembed-bench-write-") as work:
        speed(Path(work), args.proteins, args.rounds, args.dimension)
        store_growth(Path(work), BYTES_PROTEINS, args.dimension)
    return 0


if __name__ == "__main__":
    sys.exit(main())
