"""Graphs made the way our users make them, on both server lines: PyEED's own schema (made
by neomodel, as PyEED makes it, and by plain Cypher), duplicate ids across export pages,
id-less nodes, a sequence changed mid-run, and models the index cannot hold."""

import json
import subprocess
from pathlib import Path

import doc_pages
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from test_graph_incremental import run_steps
from workflow_runner import read_json, run_workflow, write_config

import protembed
from protembed import graph
from protembed.config import load_config, load_settings
from protembed.demo.offline_model import save_random_esm2
from protembed.demo.proteins import read_proteins
from protembed.sequences import sequence_sha256

REPO = Path(__file__).resolve().parents[1]
PYEED_PYTHON = REPO / ".venv-pyeed" / "bin" / "python"
PYEED_INDEX = "vector_index_Protein_embedding"
PYEED_CONSTRAINT = "constraint_unique_Protein_accession_id"


@pytest.fixture(scope="session")
def esm2_1280(tmp_path_factory) -> Path:
    """One layer of ESM-2 650M's width (1,280), random weights: what PyEED's index holds."""
    return save_random_esm2(
        tmp_path_factory.mktemp("models") / "esm2_1280", layers=1, hidden=1280, heads=20
    )


@pytest.fixture(scope="session")
def betalactamases() -> list[dict]:
    """Real beta-lactamases, as PyEED users study them: 10 of each of four families."""
    proteins = read_proteins(
        REPO / "tests" / "data" / "betalactamase_families.fasta", attributes=("family",)
    )
    chosen = []
    for family in ("TEM", "SHV", "CTX-M", "KPC"):
        chosen += [p for p in proteins if p.get("family") == family][:10]
    assert len(chosen) == 40, "tests/data/betalactamase_families.fasta lost its families"
    return chosen


def make_pyeed_schema(env: dict, how: str, driver) -> None:
    """The constraint and vector index PyEED's Protein class gets."""
    if how == "neomodel":
        if not PYEED_PYTHON.is_file():
            pytest.fail(
                f"{PYEED_PYTHON} is missing: run `make bootstrap` (it builds the PyEED "
                "environment from tests/support/pyeed/requirements.lock)"
            )
        script = REPO / "tests" / "support" / "pyeed" / "make_schema.py"
        done = subprocess.run(
            [PYEED_PYTHON, script], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        driver.execute_query(
            f"CREATE CONSTRAINT {PYEED_CONSTRAINT} FOR (p:Protein) REQUIRE p.accession_id IS UNIQUE"
        )
        driver.execute_query(
            f"CREATE VECTOR INDEX {PYEED_INDEX} FOR (p:Protein) ON p.embedding OPTIONS "
            "{indexConfig: {`vector.dimensions`: 1280, `vector.similarity_function`: 'cosine'}}"
        )
    schema = {
        r["name"]: r["type"]
        for r in driver.execute_query("SHOW INDEXES YIELD name, type").records
        if r["type"] != "LOOKUP"
    }
    assert schema == {PYEED_CONSTRAINT: "RANGE", PYEED_INDEX: "VECTOR"}


def add_pyeed_proteins(driver, proteins: list[dict]) -> None:
    """Nodes as PyEED saves them (accession_id, sequence, seq_length), plus one node that
    lost its id: neomodel checks `required` in Python only, so graphs do hold such nodes."""
    driver.execute_query(
        "UNWIND $rows AS row CREATE (:Protein {accession_id: row.id, sequence: row.sequence, "
        "seq_length: size(row.sequence)})",
        rows=[{"id": p["accession_id"], "sequence": p["sequence"]} for p in proteins],
    )
    driver.execute_query("CREATE (:Protein {sequence: 'MKVLAAGIVALLLAA', seq_length: 15})")


def notifications_in_logs(run: Path) -> list[str]:
    """What the driver logged of the server's notifications (deprecations among them)."""
    return [
        line
        for log in sorted(run.glob("logs/**/*.log"))
        for line in log.read_text().splitlines()
        if "Received notification from DBMS server" in line
    ]


def pyeed_config(directory: Path, model: Path, **graph_settings) -> Path:
    """What docs/pyeed.md tells a PyEED user to set, read from the page, with a local model
    of the same width standing in for the hub's ESM-2 650M."""
    shown = yaml.safe_load(doc_pages.block("pyeed-config"))
    assert shown["model"] == {"name": "facebook/esm2_t33_650M_UR50D", "property": "embedding"}
    assert shown["graph"]["vector_index"]["name"] == PYEED_INDEX
    return write_config(
        directory,
        shards=2,
        graph={**shown["graph"], "export_page_size": 7, **graph_settings},
        model={**shown["model"], "name": str(model), "device": "cpu"},
    )


@pytest.mark.parametrize("how", ["neomodel", "cypher"])
def test_a_pyeed_graph_is_embedded_and_answers_pyeeds_own_query(
    tmp_path, how, database, neo4j_env, esm2_1280, betalactamases
):
    make_pyeed_schema(neo4j_env, how, database)
    add_pyeed_proteins(database, betalactamases)
    pyeed_config(tmp_path, esm2_1280)
    done = run_workflow(tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]

    run = tmp_path / "results" / "embedding"
    manifest = read_json(run / "export" / "manifest.json")
    assert manifest["proteins_with_sequence"] == 41 == len(betalactamases) + 1
    (no_id,) = manifest["rejected_at_export"]
    assert no_id["reason"].startswith("accession_id is missing")
    receipt = read_json(run / "load" / "receipt.json")
    assert receipt["vector_index"] == PYEED_INDEX and receipt["written"] == 40
    stored = pyeed_embeddings(database)
    assert stored.keys() == {p["accession_id"] for p in betalactamases}
    assert {len(v) for v in stored.values()} == {1280}

    # PyEED's EmbeddingTool.find_nearest_neighbors_based_on_vector_index, as it sends it.
    query = betalactamases[0]["accession_id"]
    neighbours = database.execute_query(
        f"MATCH (source:Protein {{accession_id: '{query}'}}) "
        "WITH source.embedding AS embedding "
        f"CALL db.index.vector.queryNodes('{PYEED_INDEX}', 5, embedding) "
        "YIELD node AS fprotein, score RETURN fprotein.accession_id, score"
    ).records
    assert len(neighbours) == 5 and neighbours[0]["fprotein.accession_id"] == query
    # The index is approximate (and quantised), and TEM variants a residue apart score
    # within rounding of each other: the index's 5 are among the exact 10, not in order.
    exact = cosine_ranking(stored, query)
    assert {r["fprotein.accession_id"] for r in neighbours} <= set(exact[:10])
    assert notifications_in_logs(run) == []

    # docs/pyeed.md's table of PyEED's calls and ours, call by call, on this PyEED-made graph.
    config = tmp_path / "config.yaml"
    ids, matrix, _, _ = protembed.read_embeddings(config)
    assert sorted(ids) == sorted(stored) and matrix.shape == (40, 1280)
    with protembed.open_graph(config) as proteins:
        # get_embedding(id)
        np.testing.assert_array_equal(proteins.vector(query), np.float32(stored[query]))
        # find_nearest_neighbors_based_on_vector_index(id): the same index, without the query
        ours = proteins.nearest_neighbours(query, k=4)
        theirs = [
            r["fprotein.accession_id"] for r in neighbours if r["fprotein.accession_id"] != query
        ]
        assert {i for i, _ in ours} == set(theirs[:4])
        # queryNodes(index, k, vector)
        assert proteins.nearest_to(stored[query], k=5)[0][0] == query
    # find_closest_matches_simple(id, n): exact cosine over read_embeddings' matrix
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    closest = [ids[i] for i in np.argsort(-(unit @ unit[ids.index(query)]))[:10]]
    assert closest == exact[:10]


def pyeed_embeddings(driver) -> dict[str, list[float]]:
    """{accession_id: embedding} as PyEED's own code reads them."""
    records = driver.execute_query(
        "MATCH (p:Protein) WHERE p.embedding IS NOT NULL "
        "RETURN p.accession_id AS id, p.embedding AS v"
    ).records
    return {r["id"]: r["v"] for r in records}


def cosine_ranking(vectors: dict[str, list[float]], query: str) -> list[str]:
    ids = list(vectors)
    matrix = np.array([vectors[i] for i in ids])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    scores = matrix @ matrix[ids.index(query)]
    return [ids[i] for i in np.argsort(-scores)]


def test_a_model_of_another_width_than_pyeeds_index_is_refused_before_embedding(
    tmp_path, database, neo4j_env, tiny_esm2, betalactamases
):
    make_pyeed_schema(neo4j_env, "cypher", database)
    add_pyeed_proteins(database, betalactamases[:5])
    pyeed_config(tmp_path, tiny_esm2)
    done = run_workflow(tmp_path)
    assert done.returncode != 0
    assert (
        f"vector index {PYEED_INDEX} on Protein.embedding holds 1280 dimensions but model "
        "makes 32; set model.property to another name"
    ) in done.stderr
    assert not list((tmp_path / "results").glob("*/embed/*.parquet"))


def test_a_model_wider_than_any_vector_index_is_refused_before_embedding(
    tmp_path, database, neo4j_env, betalactamases
):
    # ESM-2 15B's config, without its 60 GB of weights: the export reads only the config.
    model = tmp_path / "esm2_t48_15B_UR50D"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"model_type": "esm", "hidden_size": 5120, "num_hidden_layers": 48})
    )
    graph.add_proteins(graph.ProteinGraph(database), betalactamases[:5])
    write_config(tmp_path, model={"name": str(model), "device": "cpu"})
    done = run_workflow(tmp_path)
    assert done.returncode != 0
    assert (
        "the model makes 5120-dimensional vectors and Neo4j's vector indexes hold at most 4096; "
        "set graph.create_vector_index: false"
    ) in done.stderr
    assert not list((tmp_path / "results").glob("*/embed/*.parquet"))


def kmer_config(**graph_settings) -> dict:
    config = load_config(REPO / "config.yaml")
    config["model"].update(name="kmer-2", device="cpu")
    config["shards"] = 2
    config["graph"].update(export_page_size=3, write_batch_size=2, **graph_settings)
    return config


def graph_vectors(driver) -> list[tuple]:
    return sorted(
        (r["id"], r["sequence"], r["sha"], tuple(r["v"]) if r["v"] else None, r["rejected"])
        for r in driver.execute_query(
            "MATCH (p:Protein) RETURN p.accession_id AS id, p.sequence AS sequence, "
            "p.embedding_kmer_2 AS v, p.embedding_kmer_2_sequence_sha256 AS sha, "
            "p.embedding_kmer_2_rejected AS rejected"
        ).records
    )


def test_duplicate_ids_each_get_their_own_sequences_vector_across_pages(
    tmp_path, database, synechocystis
):
    # Runs of 1, 3 and 2 nodes per id; with pages of 3 the runs straddle page boundaries.
    sequences = [p["sequence"] for p in synechocystis[:6]]
    rows = [["A", sequences[0]], ["B", sequences[1]], ["B", sequences[2]], ["B", sequences[1]]]
    rows += [["C", sequences[3]], ["C", sequences[4]], ["D", "MKT1X"]]
    database.execute_query(
        "UNWIND $rows AS row CREATE (:Protein {accession_id: row[0], sequence: row[1]})",
        rows=rows,
    )
    manifest, receipt = run_steps(kmer_config(), tmp_path / "run")
    assert manifest["exported"] == 7 == manifest["proteins_with_sequence"]
    stored = graph_vectors(database)
    for protein_id, sequence, sha, vector, rejected in stored:
        assert sha == sequence_sha256(sequence)
        if protein_id == "D":
            assert vector is None and "'1'" in rejected
            continue
        expected = dipeptide_frequencies(sequence)
        np.testing.assert_allclose(np.float32(vector), expected, atol=1e-6)
    assert receipt["not_written_sequence_gone"] == []
    again, _ = run_steps(kmer_config(), tmp_path / "again")
    assert again["exported"] == 0 and again["up_to_date"] == 7


def dipeptide_frequencies(sequence: str) -> np.ndarray:
    """kmer-2's vector, counted by hand: pair (a, b) of standard residues at 20 * a + b."""
    residues = "ACDEFGHIKLMNPQRSTVWY"
    counts = np.zeros(400)
    for a, b in zip(sequence, sequence[1:], strict=False):
        if a in residues and b in residues:
            counts[20 * residues.index(a) + residues.index(b)] += 1
    return counts / counts.sum()


def test_a_sequence_changed_or_deleted_between_export_and_load_gets_no_stale_vector(
    tmp_path, database, synechocystis
):
    proteins = {p["accession_id"]: p["sequence"] for p in synechocystis[:8]}
    graph.add_proteins(
        graph.ProteinGraph(database),
        [{"accession_id": i, "sequence": s} for i, s in proteins.items()],
    )
    changed, deleted, *_ = proteins
    config = kmer_config()
    run_steps(config, tmp_path / "first", load=False)
    database.execute_query(
        "MATCH (p:Protein {accession_id: $id}) SET p.sequence = 'MKTAYIAKQRQISFVKSHFSRQ'",
        id=changed,
    )
    database.execute_query("MATCH (p:Protein {accession_id: $id}) DELETE p", id=deleted)
    first = tmp_path / "first"
    receipt = steps_load(config, first)
    assert receipt["not_written_sequence_gone"] == sorted([changed, deleted])
    assert receipt["written"] == len(proteins) - 2
    by_id = {row[0]: row for row in graph_vectors(database)}
    assert deleted not in by_id  # not recreated
    assert by_id[changed][3] is None and by_id[changed][2] is None  # no stale vector
    old_sha = sequence_sha256(proteins[changed])
    assert old_sha in pq.read_table(first / "embeddings.parquet")["sequence_sha256"].to_pylist()
    # The next incremental run picks the changed node up, and only it.
    manifest, _ = run_steps(config, tmp_path / "second")
    assert manifest["exported"] == 1
    by_id = {row[0]: row for row in graph_vectors(database)}
    assert by_id[changed][2] == sequence_sha256("MKTAYIAKQRQISFVKSHFSRQ")


def steps_load(config: dict, directory: Path) -> dict:
    from protembed import steps

    settings = load_settings(config)
    return steps.load(
        settings.graph,
        settings.model,
        directory / "embeddings.parquet",
        directory / "rejects.parquet",
        directory / "receipt.json",
    )


def test_neighbour_queries_raise_no_notification_on_either_server_line(
    database, synechocystis, caplog, tmp_path
):
    graph.add_proteins(graph.ProteinGraph(database), synechocystis[:20])
    run_steps(kmer_config(), tmp_path / "run")
    with caplog.at_level("INFO", logger="neo4j.notifications"):
        found = graph.ProteinGraph(database, vector_property="embedding_kmer_2").nearest_neighbours(
            synechocystis[0]["accession_id"], k=3
        )
    assert len(found) == 3
    assert [r.getMessage() for r in caplog.records if r.name == "neo4j.notifications"] == []
    if proteins_graph_has_search(database):
        # What the check above would catch: the procedure, in Cypher 25, is deprecated.
        with caplog.at_level("INFO", logger="neo4j.notifications"):
            database.execute_query(
                "CYPHER 25 MATCH (q:Protein) WITH q LIMIT 1 CALL db.index.vector.queryNodes("
                "'Protein_embedding_kmer_2', 2, q.embedding_kmer_2) YIELD node RETURN node"
            )
        assert any("deprecated" in r.getMessage() for r in caplog.records)


def proteins_graph_has_search(driver) -> bool:
    return graph.ProteinGraph(driver).server.has_search_clause
