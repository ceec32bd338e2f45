"""Same graph, model files, settings, precision and device type: the same vectors, bit for
bit, on a CPU, across runs and across shard counts (README, Reproducibility)."""

import numpy as np
import pyarrow.parquet as pq
from workflow_runner import read_json, run_workflow, write_config

from protembed import graph

PROPERTY = "embedding_tiny_esm2"


def merged_vectors(directory, tiny_esm2, shards: int) -> dict[str, np.ndarray]:
    """Export, embed and merge (no load: the next run must find the same proteins to do)."""
    directory.mkdir()
    write_config(
        directory,
        shards=shards,
        # A budget that would batch on a GPU: on a CPU every sequence still goes alone.
        model={"name": str(tiny_esm2), "device": "cpu", "tokens_per_batch": 4096},
    )
    done = run_workflow(directory, "merge_shards")
    assert done.returncode == 0, done.stderr[-4000:]
    run = directory / "results" / PROPERTY
    assert read_json(run / "summary.json")["shards"] == shards
    table = pq.read_table(run / "embeddings.parquet")
    vectors = table["vector"].combine_chunks()
    values = vectors.flatten().to_numpy().reshape(len(vectors), vectors.type.list_size)
    return dict(zip(table["id"].to_pylist(), values, strict=True))


def test_cpu_vectors_are_bit_identical_across_runs_and_shard_counts(
    tmp_path, tiny_esm2, database, synechocystis
):
    # Real proteins of all lengths, some chunked (over the model's 1,022 residues).
    proteins = synechocystis[:300]
    assert sum(len(p["sequence"]) > 1022 for p in proteins) >= 2
    graph.add_proteins(graph.ProteinGraph(database), proteins)

    one_shard = merged_vectors(tmp_path / "one", tiny_esm2, shards=1)
    three_shards = merged_vectors(tmp_path / "three", tiny_esm2, shards=3)
    again = merged_vectors(tmp_path / "again", tiny_esm2, shards=3)

    assert one_shard.keys() == three_shards.keys() == again.keys()
    assert len(one_shard) == len(proteins)
    for protein_id, vector in one_shard.items():
        # Compared as bits: equal floats could still differ in a NaN payload or a signed zero.
        assert vector.dtype == np.float32
        assert vector.tobytes() == three_shards[protein_id].tobytes(), protein_id
        assert vector.tobytes() == again[protein_id].tobytes(), protein_id
