"""protembed.embed_graph: the workflow in process, on the real local Neo4j, leaves the graph
(and the Parquet) exactly as the Snakemake run does; read_embeddings reads it back."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from workflow_runner import read_json, run_workflow, write_config

import protembed
from protembed import graph
from protembed.config import load_settings
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
    graph.add_proteins(graph.ProteinGraph(driver), proteins + extras)


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

    ids, matrix, metadata, table = protembed.read_embeddings(config)
    assert matrix.shape == (61, 32) and matrix.dtype == np.float32
    assert sorted(ids) == ids and set(ids) == set(by_snakemake[0]) - {"BAD_CHARACTERS"}
    stored = by_snakemake[0][ids[5]]
    np.testing.assert_array_equal(matrix[5], np.float32(stored[PROPERTY]))
    assert metadata["pooling"] == stored[f"{PROPERTY}_pooling"]
    assert metadata["model_revision"] == stored[f"{PROPERTY}_model_revision"]
    assert table.loc[5, "sequence_sha256"] == stored[f"{PROPERTY}_sequence_sha256"]
    assert table.loc[5, "precision"] == stored[f"{PROPERTY}_precision"]

    again = protembed.embed_graph(config, progress=False)
    assert again["exported"] == 0 and again["load"]["written"] == 0
    assert graph_state(database) == by_snakemake
    assert load_settings(config).results == tmp_path / "in_process"


def test_every_output_describes_the_graph_after_incremental_and_empty_runs(
    tmp_path, tiny_esm2, database, synechocystis, monkeypatch
):
    seed(database, synechocystis)
    config = {"results": str(tmp_path), "shards": 2, "model": {"name": str(tiny_esm2)}}
    first = protembed.embed_graph(config, progress=False)
    assert first["embedded"] == 61 and first["graph"]["vectors"] == 61
    graph.add_proteins(
        graph.ProteinGraph(database), [{"accession_id": "NEW", "sequence": "MKTAYIAKQR"}]
    )
    second = protembed.embed_graph(config, progress=False)  # only the new protein
    third = protembed.embed_graph(config, progress=False)  # nothing to do
    assert (second["embedded"], third["embedded"], third["exported"]) == (1, 0, 0)

    ids, matrix, _, table = protembed.read_embeddings(config)
    assert matrix.shape == (62, 32) and "NEW" in ids and len(table) == 62
    # What would not fit in memory is refused, with the sizes, pointing at the pages.
    with monkeypatch.context() as small:
        small.setattr(protembed.notebook, "available_memory", lambda: 100_000)
        with pytest.raises(
            UserError, match=r"would take 0\.1 MiB in memory, more than half of the 0\.1 MiB free"
        ):
            protembed.read_embeddings(config)
    # The same, a page at a time.
    pages = list(protembed.iter_embeddings(config, batch_size=25))
    assert [len(page.ids) for page in pages] == [25, 25, 12]
    np.testing.assert_array_equal(np.concatenate([p.matrix for p in pages]), matrix)

    # The run directory's graph/ files hold the whole property, this run's share beside it.
    held = read_json(tmp_path / PROPERTY / "graph" / "summary.json")
    assert (held["vectors"], held["rejected"], held["proteins_with_sequence"]) == (62, 1, 63)
    assert held["this_run"] == {"exported": 0, "embedded": 0, "rejected": 0, "up_to_date": 63}
    assert held["space"]["dimension"] == 32
    assert held["precision"] == table["precision"].value_counts().to_dict()
    assert sum(held["precision"].values()) == 62
    snapshot = pq.read_table(tmp_path / PROPERTY / "graph" / "vectors.parquet")
    assert snapshot.num_rows == 62 and sorted(snapshot["id"].to_pylist()) == sorted(ids)
    rejects = pq.read_table(tmp_path / PROPERTY / "graph" / "rejects.parquet").to_pylist()
    assert [(r["id"], r["reason"][:27]) for r in rejects] == [
        ("BAD_CHARACTERS", "characters the model cannot")
    ]


def test_pyeed_style_calls_by_id_and_by_vector(tmp_path, tiny_esm2, database, synechocystis):
    seed(database, synechocystis)
    config = {"results": str(tmp_path), "shards": 1, "model": {"name": str(tiny_esm2)}}
    protembed.embed_graph(config, progress=False)
    ids, matrix, _, _ = protembed.read_embeddings(config)
    with protembed.open_graph(config) as proteins:
        first = ids.index(synechocystis[3]["accession_id"])
        np.testing.assert_array_equal(proteins.vector(ids[first]), matrix[first])
        by_id = proteins.nearest_neighbours(ids[first], k=5)
        by_vector = proteins.nearest_to(matrix[first], k=6)
        # The query itself comes first by vector; by id it is left out.
        # Scores are (1 + cosine) / 2 of the quantised index: the query itself about 1.
        assert by_vector[0][0] == ids[first] and by_vector[0][1] == pytest.approx(1.0, abs=1e-3)
        assert [i for i, _ in by_vector[1:]] == [i for i, _ in by_id]
        exact = (
            matrix @ matrix[first] / np.linalg.norm(matrix, axis=1) / np.linalg.norm(matrix[first])
        )
        exact_ten = {ids[i] for i in np.argsort(-exact)[1:11]}
        assert len({i for i, _ in by_id} & exact_ten) >= 4
        with pytest.raises(UserError, match=r"rejected it \(characters the model cannot"):
            proteins.vector("BAD_CHARACTERS")
        with pytest.raises(UserError, match="no Protein 'NOPE' in the graph"):
            proteins.vector("NOPE")
        with pytest.raises(UserError, match="the query vector has 3 values; .* holds 32"):
            proteins.nearest_to([1.0, 2.0, 3.0])


def test_pyeed_index_name_and_pyeeds_own_query(tmp_path, tiny_esm2, database, synechocystis):
    """A graph without PyEED's index gets one under the name PyEED's code asks for."""
    seed(database, synechocystis)
    config = {
        "results": str(tmp_path),
        "shards": 1,
        "model": {"name": str(tiny_esm2), "property": "embedding"},
        "graph": {"vector_index": {"name": "vector_index_Protein_embedding"}},
    }
    protembed.embed_graph(config, progress=False)
    query = synechocystis[0]["accession_id"]
    # PyEED's EmbeddingTool.find_nearest_neighbors_based_on_vector_index, as it queries.
    records = database.execute_query(
        "MATCH (source:Protein {accession_id: $id}) WITH source.embedding AS embedding "
        "CALL db.index.vector.queryNodes('vector_index_Protein_embedding', 5, embedding) "
        "YIELD node AS fprotein, score RETURN fprotein.accession_id AS id, score",
        id=query,
    ).records
    assert len(records) == 5 and records[0]["id"] in (query, "COPY_OF_FIRST")
    with protembed.open_graph(config) as proteins:
        assert proteins.vector_index().name == "vector_index_Protein_embedding"
        assert [i for i, _ in proteins.nearest_neighbours(query, k=4)] == [
            r["id"] for r in records if r["id"] != query
        ][:4]
