"""The whole pipeline against the real local Neo4j: export, embed, merge, load, index."""

import doc_pages
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoTokenizer, EsmModel
from workflow_runner import read_json, run_workflow, write_config

from protembed import graph
from protembed.demo.local_neo4j import LTS

PROPERTY = "embedding_tiny_esm2"


@pytest.fixture
def seeded(database, synechocystis):
    """300 real proteins (some longer than ESM-2's 1,022 residues) plus awkward records."""
    proteins = synechocystis[:300]
    assert sum(len(p["sequence"]) > 1022 for p in proteins) >= 2
    extras = [
        {"accession_id": "DUPLICATE_OF_FIRST", "sequence": proteins[0]["sequence"]},
        {"accession_id": "BAD_CHARACTERS", "sequence": "MKT1AYZ"},
        {"accession_id": "EMPTY_AFTER_CLEANING", "sequence": "  *"},
    ]
    graph.add_proteins(graph.ProteinGraph(database), proteins + extras)
    database.execute_query("CREATE (:Protein {accession_id: 'NO_SEQUENCE'})")
    return {p["accession_id"]: p["sequence"] for p in proteins + extras}


def vectors_in_graph(driver, vector: str = PROPERTY) -> dict[str, list[float]]:
    records, _, _ = driver.execute_query(
        f"MATCH (p:Protein) WHERE p.{vector} IS NOT NULL "
        f"RETURN p.accession_id AS id, p.{vector} AS v, p.{vector}_created AS created"
    )
    return {r["id"]: (r["v"], r["created"]) for r in records}


def residue_mean(model_dir, sequence: str) -> np.ndarray:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = EsmModel.from_pretrained(model_dir, add_pooling_layer=False).eval()
    with torch.no_grad():
        hidden = model(**tokenizer(sequence, return_tensors="pt")).last_hidden_state[0]
    return hidden[1 : len(sequence) + 1].mean(0).numpy()


def test_pipeline_end_to_end_and_second_run_writes_nothing(tmp_path, tiny_esm2, seeded, database):
    # float32: the vectors are compared with the float32 model's own residue means below.
    model = {"name": str(tiny_esm2), "property": None, "precision": "float32"}
    write_config(tmp_path, shards=3, model=model)
    first = run_workflow(tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]

    run = tmp_path / "results" / PROPERTY
    summary = read_json(run / "summary.json")
    assert summary["exported"] == len(seeded)
    assert summary["embedded"] == len(seeded) - 2
    assert summary["embedded"] + summary["rejected"] == summary["exported"]
    rejects = {r["id"]: r["reason"] for r in pq.read_table(run / "rejects.parquet").to_pylist()}
    assert rejects.keys() == {"BAD_CHARACTERS", "EMPTY_AFTER_CLEANING"}
    assert "'1'" in rejects["BAD_CHARACTERS"] and rejects["EMPTY_AFTER_CLEANING"] == (
        "empty sequence"
    )

    stored = vectors_in_graph(database)
    assert stored.keys() == seeded.keys() - rejects.keys()
    table = pq.read_table(run / "embeddings.parquet")
    vector_type = table.schema.field("vector").type
    assert pa.types.is_fixed_size_list(vector_type) and vector_type.list_size == 32
    assert vector_type.value_type == pa.float32()
    parquet = dict(zip(table["id"].to_pylist(), table["vector"].to_pylist(), strict=True))
    for protein_id, (vector, _) in stored.items():
        assert len(vector) == 32
        np.testing.assert_array_equal(np.float32(vector), np.float32(parquet[protein_id]))

    first_id = next(iter(seeded))
    short = min(seeded, key=lambda i: abs(len(seeded[i]) - 300))
    for protein_id in (first_id, short):
        np.testing.assert_allclose(
            np.float32(stored[protein_id][0]),
            residue_mean(tiny_esm2, seeded[protein_id]),
            atol=1e-5,
        )
    assert stored["DUPLICATE_OF_FIRST"][0] == stored[first_id][0]

    receipt = read_json(run / "load" / "receipt.json")
    index = receipt["vector_index"]
    state = database.execute_query(
        "SHOW VECTOR INDEXES YIELD name, state WHERE name = $n RETURN state", n=index
    )[0]
    assert state[0]["state"] == "ONLINE"
    neighbours = graph.ProteinGraph(database, vector_property=PROPERTY).nearest_neighbours(
        first_id, k=3
    )
    # The index quantises vectors, so even an identical vector scores a little under 1.
    assert neighbours[0][0] == "DUPLICATE_OF_FIRST" and neighbours[0][1] > 0.99
    assert len(neighbours) == 3 and neighbours[0][1] >= neighbours[1][1] >= neighbours[2][1]

    second = run_workflow(tmp_path, "--forcerun", "export_sequences")
    assert second.returncode == 0, second.stderr[-4000:]
    assert read_json(run / "summary.json")["exported"] == 0
    assert read_json(run / "load" / "receipt.json")["written"] == 0
    assert vectors_in_graph(database) == stored


# On the LTS server only: how many jobs is decided from the export's count, and the graph
# reads behind that count are checked on both lines by the test above; 20 embed jobs cost.
@pytest.mark.parametrize("neo4j_server", [LTS], indirect=True, ids=[f"neo4j-{LTS}"])
def test_embed_jobs_follow_the_work(tmp_path, database, synechocystis):
    """At most `shards` embed jobs, each of at least min_proteins_per_shard proteins: a
    large export uses them all, a one-protein update one, an up-to-date graph none."""
    graph.add_proteins(graph.ProteinGraph(database), synechocystis[:200])
    write_config(tmp_path, shards=20, min_proteins_per_shard=10, model={"name": "kmer-2"})
    run = tmp_path / "results" / "embedding_kmer_2"

    # The README's commands, as a user types them (run_workflow adds where the workflow is).
    full_run = doc_pages.command("snakemake --cores 8")[1:]
    update = doc_pages.command("snakemake --cores 8 --forcerun export_sequences")[1:]

    def embed_jobs(*args: str) -> int:
        done = run_workflow(tmp_path, *args)
        assert done.returncode == 0, done.stderr[-4000:]
        assert done.stderr.count("rule embed_shard:") == read_json(run / "summary.json")["shards"]
        return done.stderr.count("rule embed_shard:")

    assert embed_jobs(*full_run) == 20
    assert read_json(run / "load" / "receipt.json")["written"] == 200

    added = {"accession_id": "ADDED", "sequence": "MKTAYIAKQRQISFVKSHFSRQ"}
    graph.add_proteins(graph.ProteinGraph(database), [added])
    assert embed_jobs(*update) == 1
    assert read_json(run / "summary.json")["exported"] == 1
    assert read_json(run / "load" / "receipt.json")["written"] == 1
    assert vectors_in_graph(database, "embedding_kmer_2").keys() == {
        p["accession_id"] for p in synechocystis[:200]
    } | {"ADDED"}

    assert embed_jobs(*update) == 0
    assert read_json(run / "load" / "receipt.json")["written"] == 0
    # After a finished run, a plain snakemake has nothing to do.
    plan = run_workflow(tmp_path, "--dry-run")
    assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout[-3000:]
