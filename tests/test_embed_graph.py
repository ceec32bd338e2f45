"""protembed.embed_graph: the workflow in process, on the real local Neo4j, leaves the graph
(and the Parquet) exactly as the Snakemake run does; read_embeddings reads it back."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from workflow_runner import run_workflow, write_config

import protembed
from protembed import graph
from protembed.config import load_config
from protembed.errors import UserError

PROPERTY = "embedding_tiny_esm2"


def seed(driver, synechocystis) -> None:
    driver.execute_query("MATCH (n) DETACH DELETE n")
    for record in driver.execute_query("SHOW INDEXES YIELD name, type")[0]:
        if record["type"] in ("VECTOR", "RANGE") and record["name"].startswith(
            ("Protein_", "protembed_")
        ):
            driver.execute_query(f"DROP INDEX {record['name']}")
    proteins = synechocystis[:60]
    extras = [
        {"accession_id": "COPY_OF_FIRST", "sequence": proteins[0]["sequence"]},
        {"accession_id": "BAD_CHARACTERS", "sequence": "MKT1AYZ"},
    ]
    graph.ProteinGraph(driver).add_proteins(proteins + extras)


def graph_state(driver) -> tuple[dict, list]:
    """Every node's properties (the creation time aside, which is the run's clock) and
    the indexes."""
    records = driver.execute_query(
        "MATCH (p:Protein) RETURN p.accession_id AS id, properties(p) AS props"
    ).records
    nodes = {
        r["id"]: {k: v for k, v in r["props"].items() if k != f"{PROPERTY}_created"}
        for r in records
    }
    indexes = driver.execute_query(
        "SHOW INDEXES YIELD name, type, labelsOrTypes, properties, state "
        "WHERE name STARTS WITH 'Protein_' OR name STARTS WITH 'protembed_' "
        "RETURN name, type, labelsOrTypes, properties, state ORDER BY name"
    ).records
    return nodes, [dict(r) for r in indexes]


def test_embed_graph_leaves_the_graph_as_the_workflow_does(
    tmp_path, tiny_esm2, database, synechocystis
):
    seed(database, synechocystis)
    model = {"name": str(tiny_esm2), "property": None, "device": "cpu"}
    (tmp_path / "snakemake").mkdir()
    write_config(tmp_path / "snakemake", shards=3, model=model)
    result = run_workflow(tmp_path / "snakemake")
    assert result.returncode == 0, result.stderr[-4000:]
    by_snakemake = graph_state(database)
    assert len(by_snakemake[0]) == 62 and by_snakemake[0]["BAD_CHARACTERS"][f"{PROPERTY}_rejected"]

    seed(database, synechocystis)
    config = {
        "results": str(tmp_path / "in_process"),
        "shards": 3,
        "min_proteins_per_shard": 1,  # as write_config has it
        "model": model,
    }
    summary = protembed.embed_graph(config, progress=False)
    assert graph_state(database) == by_snakemake
    assert summary["embedded"] == 61 and summary["rejected"] == 1
    assert summary["load"]["written"] == 61

    workflow_run = tmp_path / "snakemake" / "results" / PROPERTY
    in_process = tmp_path / "in_process" / PROPERTY
    # Snakemake marks the time of a directory output with a file of its own in it.
    files = {
        p.relative_to(workflow_run)
        for p in workflow_run.rglob("*")
        if p.is_file() and p.name != ".snakemake_timestamp"
    }
    assert files == {p.relative_to(in_process) for p in in_process.rglob("*") if p.is_file()}
    assert len(list(in_process.glob("export/shards/shard-*.parquet"))) == 3
    columns = ["id", "sequence_sha256", "vector", "long_sequence_handling"]
    workflow_table = pq.read_table(workflow_run / "embeddings.parquet", columns=columns)
    in_process_table = pq.read_table(in_process / "embeddings.parquet", columns=columns)
    assert in_process_table.sort_by("id").equals(workflow_table.sort_by("id"))

    ids, matrix, metadata = protembed.read_embeddings(in_process)
    assert matrix.shape == (61, 32) and matrix.dtype == np.float32
    assert set(ids) == set(by_snakemake[0]) - {"BAD_CHARACTERS"}
    stored = by_snakemake[0][ids[5]][PROPERTY]
    np.testing.assert_array_equal(matrix[5], np.float32(stored))
    assert metadata["pooling"] == by_snakemake[0][ids[5]][f"{PROPERTY}_pooling"]
    assert metadata["model_revision"] == by_snakemake[0][ids[5]][f"{PROPERTY}_model_revision"]

    again = protembed.embed_graph(config, progress=False)
    assert again["exported"] == 0 and again["load"]["written"] == 0
    assert graph_state(database) == by_snakemake
    with pytest.raises(UserError, match="does not exist; run embed_graph"):
        protembed.read_embeddings(tmp_path / "nowhere")
    assert load_config(config)["results"] == str(tmp_path / "in_process")
