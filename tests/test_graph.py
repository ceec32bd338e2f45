"""Graph I/O on the real local Neo4j (both server lines): export pages, float32 writes,
idempotency, duplicate and missing ids, the user's own schema."""

import numpy as np
import pytest
from conftest import vectors_on

from protembed import graph
from protembed.config import load_settings
from protembed.errors import UserError


def add(database, *proteins: tuple) -> None:
    graph.add_proteins(
        graph.ProteinGraph(database), [{"accession_id": i, "sequence": s} for i, s in proteins]
    )


def test_export_pages_stream_every_protein_once_in_id_order(database):
    proteins = [{"accession_id": f"P{i:03d}", "sequence": "MKT" + "A" * i} for i in range(23)]
    graph.add_proteins(graph.ProteinGraph(database), proteins)
    database.execute_query("CREATE (:Protein {accession_id: 'NO_SEQUENCE'})")
    database.execute_query("CREATE (:Protein {accession_id: 'P005b', sequence: 'MKV'})")
    # A page size that does not divide the count: the last page is short.
    rows = list(vectors_on(database, "embedding_x").export_rows(page_size=5))
    assert [row.id for row in rows] == sorted([p["accession_id"] for p in proteins] + ["P005b"])
    assert not any(row.settled for row in rows)
    assert rows[0].sequence == "MKT" and rows[0].stored_sha256 is None


@pytest.mark.parametrize("page_size", [2, 3, 4, 100])
def test_nodes_sharing_an_id_are_each_exported_once_across_page_boundaries(database, page_size):
    # Runs of 3 and 2 equal ids: some page sizes cut through each run, others do not.
    database.execute_query(
        "UNWIND $rows AS row CREATE (:Protein {accession_id: row[0], sequence: row[1]})",
        rows=[["A", "MA"], ["B", "MB1"], ["B", "MB2"], ["B", "MB3"], ["C", "MC"]]
        + [["D", "MD1"], ["D", "MD2"], ["E", "ME"]],
    )
    vectors_on(database, "embedding_x").ensure_id_index()
    rows = list(vectors_on(database, "embedding_x").export_rows(page_size=page_size))
    assert sorted((row.id, row.sequence) for row in rows) == [
        ("A", "MA"), ("B", "MB1"), ("B", "MB2"), ("B", "MB3"), ("C", "MC"),
        ("D", "MD1"), ("D", "MD2"), ("E", "ME"),
    ]  # fmt: skip
    assert len({row.node for row in rows}) == 8


def test_proteins_without_a_string_id_are_found_despite_the_users_id_index(database):
    # PyEED's uniqueness constraint makes a range index on the id; on 5.26 the planner once
    # answered "no string id" from that index, which holds no node that lacks the id.
    database.execute_query(
        "CREATE CONSTRAINT constraint_unique_Protein_accession_id IF NOT EXISTS "
        "FOR (p:Protein) REQUIRE p.accession_id IS UNIQUE"
    )
    database.execute_query(
        "CREATE (:Protein {accession_id: 'A', sequence: 'MA'}), (:Protein {sequence: 'MNOID'}),"
        " (:Protein {accession_id: 7, sequence: 'MINT'}), (:Protein {accession_id: 'NOSEQ'})"
    )
    found = graph.ProteinGraph(database).without_string_id()
    assert sorted(reason for _, reason in found) == [
        "accession_id is missing",
        "accession_id is not a string",
    ]
    assert graph.ProteinGraph(database).count_with_sequence() == 3


def test_the_users_index_or_constraint_on_the_id_is_used_whatever_its_name(database):
    database.execute_query(
        "CREATE CONSTRAINT constraint_unique_Protein_accession_id IF NOT EXISTS "
        "FOR (p:Protein) REQUIRE p.accession_id IS UNIQUE"
    )
    assert graph.ProteinGraph(database).ensure_id_index() == (
        "constraint_unique_Protein_accession_id"
    )
    database.execute_query("DROP CONSTRAINT constraint_unique_Protein_accession_id")
    database.execute_query("CREATE INDEX users_own FOR (p:Protein) ON (p.accession_id)")
    assert graph.ProteinGraph(database).ensure_id_index() == "users_own"
    database.execute_query("DROP INDEX users_own")
    assert graph.ProteinGraph(database).ensure_id_index() == "protembed_Protein_accession_id"


def test_export_marks_proteins_settled_by_this_model_only(database):
    add(database, ("P1", "MKT"))
    database.execute_query(
        "MATCH (p:Protein) SET p.embedding_a = [1.0], p.embedding_a_sequence_sha256 = 'abc'"
    )
    (row_a,) = vectors_on(database, "embedding_a").export_rows(page_size=10)
    (row_b,) = vectors_on(database, "embedding_b").export_rows(page_size=10)
    assert (row_a.settled, row_a.stored_sha256) == (True, "abc")
    assert (row_b.settled, row_b.stored_sha256) == (False, None)


def batch(ids: list[str], vectors: np.ndarray, shas: list[str], sequences=None):
    sequences = sequences or ["M"] * len(ids)
    return graph.VectorBatch(ids, sequences, shas, ["whole"] * len(ids), vectors)


DEFAULT_INDEX = load_settings({}).graph.vector_index
PROVENANCE = {
    "model": "m",
    "model_revision": "r1",
    "embedding": "mean_last",
    "pooling": "mean over residues",
    "dimension": 3,
    "precision": "float32",
    "batching": "padded",
    "pipeline": "protembed test",
}


@pytest.mark.parametrize("writers", [1, 3])
def test_vectors_are_stored_as_float32_once(database, writers):
    ids = [f"P{i}" for i in range(10)]
    add(database, *[(i, "M") for i in ids])
    proteins = vectors_on(database, "embedding_m")
    proteins.ensure_id_index()
    # 0.1 has no exact float32: a float32 store gives back float32(0.1), not 0.1.
    vectors = np.full((10, 3), 0.1, dtype=np.float64) + np.arange(10)[:, None]
    batches = [batch(ids[i : i + 3], vectors[i : i + 3], ["s"] * 3) for i in range(0, 10, 3)]
    assert proteins.write_vectors(batches, PROVENANCE, writers=writers) == graph.WriteResult(10, [])
    stored = dict(
        database.execute_query(
            "MATCH (p:Protein) RETURN p.accession_id AS id, p.embedding_m AS v"
        ).records
    )
    for i, protein_id in enumerate(ids):
        expected = vectors[i].astype(np.float32).astype(np.float64)
        assert stored[protein_id] == expected.tolist() != vectors[i].tolist()
    again = proteins.write_vectors(batches, PROVENANCE, writers=writers)
    assert again == graph.WriteResult(0, [])


def test_a_changed_sequence_hash_rewrites_and_a_rejection_removes_the_vector(database):
    add(database, ("A", "M"), ("B", "M"))
    proteins = vectors_on(database, "embedding_m")
    vectors = np.ones((2, 3), dtype=np.float32)
    first = [batch(["A", "B"], vectors, ["s1", "s1"])]
    assert proteins.write_vectors(first, PROVENANCE).written == 2
    second = [batch(["A", "B"], vectors * 2, ["s1", "s2"])]
    assert proteins.write_vectors(second, PROVENANCE).written == 1
    rows = [{"id": "A", "sequence": "M", "sha256": "s3", "reason": "bad"}]
    assert proteins.write_rejections(rows, PROVENANCE) == graph.WriteResult(1, [])
    props = {
        r["id"]: r["props"]
        for r in database.execute_query(
            "MATCH (p:Protein) RETURN p.accession_id AS id, properties(p) AS props"
        ).records
    }
    assert props["B"]["embedding_m"] == [2.0] * 3
    assert props["A"] == {
        "accession_id": "A",
        "sequence": "M",
        "embedding_m_sequence_sha256": "s3",
        "embedding_m_rejected": "bad",
        "embedding_m_model": "m",  # which model's rules rejected it
        "embedding_m_model_revision": "r1",
        "embedding_m_embedding": "mean_last",
    }


def test_each_node_sharing_an_id_gets_its_own_sequences_vector(database):
    database.execute_query(
        "CREATE (:Protein {accession_id: 'X', sequence: 'MA'}), "
        "(:Protein {accession_id: 'X', sequence: 'MB'}), "
        "(:Protein {accession_id: 'X', sequence: 'MB'})"
    )
    proteins = vectors_on(database, "embedding_m")
    vectors = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    written = proteins.write_vectors(
        [batch(["X", "X"], vectors, ["sha-a", "sha-b"], ["MA", "MB"])], PROVENANCE
    )
    assert written == graph.WriteResult(3, [])
    stored = database.execute_query(
        "MATCH (p:Protein) RETURN p.sequence AS s, p.embedding_m AS v, "
        "p.embedding_m_sequence_sha256 AS sha ORDER BY s"
    ).records
    assert [(r["s"], r["v"], r["sha"]) for r in stored] == [
        ("MA", [1.0, 0.0, 0.0], "sha-a"),
        ("MB", [0.0, 1.0, 0.0], "sha-b"),
        ("MB", [0.0, 1.0, 0.0], "sha-b"),
    ]


def test_a_node_whose_sequence_changed_or_was_deleted_gets_no_stale_vector(database):
    add(database, ("CHANGED", "MNEW"), ("KEPT", "MK"))
    proteins = vectors_on(database, "embedding_m")
    vectors = np.ones((3, 3), dtype=np.float32)
    # Exported as MOLD; the node holds MNEW by the time of the load. GONE was deleted.
    rows = batch(
        ["CHANGED", "KEPT", "GONE"], vectors, ["s-old", "s-k", "s-g"], ["MOLD", "MK", "MG"]
    )
    assert proteins.write_vectors([rows], PROVENANCE) == graph.WriteResult(1, ["CHANGED", "GONE"])
    rejection = [{"id": "CHANGED", "sequence": "MOLD", "sha256": "s-old", "reason": "bad"}]
    assert proteins.write_rejections(rejection, PROVENANCE) == graph.WriteResult(0, ["CHANGED"])
    stored = dict(
        database.execute_query(
            "MATCH (p:Protein) RETURN p.accession_id AS id, keys(p) AS keys"
        ).records
    )
    assert sorted(stored["CHANGED"]) == ["accession_id", "sequence"]
    assert "embedding_m" in stored["KEPT"] and "GONE" not in stored


@pytest.mark.parametrize("key", graph.SPACE_PROVENANCE)
def test_a_property_never_mixes_vectors_from_different_spaces(database, key):
    add(database, ("A", "M"))
    proteins = vectors_on(database, "embedding_m")
    proteins.check_same_space(PROVENANCE)  # empty: fine
    vectors = np.ones((1, 3), dtype=np.float32)
    proteins.write_vectors([batch(["A"], vectors, ["s"])], PROVENANCE)
    # Precision, path and pipeline version may change within one space.
    same_space = {
        "precision": "bfloat16",
        "batching": "packed (varlen_attn)",
        "model": "/elsewhere/m",
        "pipeline": "protembed 9",
    }
    proteins.check_same_space(PROVENANCE | same_space)
    other = PROVENANCE | {key: 4 if key == "dimension" else "other"}
    with pytest.raises(UserError, match=rf"Protein.embedding_m .*e\.g\. A: {key} "):
        proteins.check_same_space(other)


def test_a_property_holding_only_rejections_is_guarded_too(database):
    add(database, ("A", "M"))
    proteins = vectors_on(database, "embedding_m")
    rows = [{"id": "A", "sequence": "M", "sha256": "s", "reason": "too short"}]
    proteins.write_rejections(rows, PROVENANCE)
    proteins.check_same_space(PROVENANCE)
    other = PROVENANCE | {"model_revision": "r2"}
    with pytest.raises(UserError, match="e\\.g\\. A: model_revision 'r1' there, 'r2' now"):
        proteins.check_same_space(other)


def test_an_index_of_another_dimension_or_too_many_dimensions_is_refused(database):
    database.execute_query(
        "CREATE VECTOR INDEX vector_index_Protein_embedding FOR (p:Protein) ON p.embedding "
        "OPTIONS {indexConfig: {`vector.dimensions`: 1280, `vector.similarity_function`: "
        "'cosine'}}"
    )
    pyeed = vectors_on(database, "embedding")
    pyeed.check_vector_index(1280, True, DEFAULT_INDEX)
    with pytest.raises(
        UserError,
        match="vector index vector_index_Protein_embedding on Protein.embedding "
        "holds 1280 dimensions but model makes 320; set model.property",
    ):
        pyeed.check_vector_index(320, True, DEFAULT_INDEX)
    unindexed = vectors_on(database, "embedding_esm2_t48_15B_UR50D")
    with pytest.raises(
        UserError, match="5120-dimensional .* at most 4096; set graph.create_vector_index: false"
    ):
        unindexed.check_vector_index(5120, True, DEFAULT_INDEX)
    unindexed.check_vector_index(5120, False, DEFAULT_INDEX)


def test_the_server_line_is_known_and_the_native_vector_type_is_not_on_community(
    database, neo4j_server
):
    proteins = graph.ProteinGraph(database)
    assert proteins.server.version == neo4j_server.version
    assert proteins.server.edition == "community"
    assert proteins.server.has_search_clause == neo4j_server.version.startswith("2026")
    assert proteins.stores_native_vectors() is False


def test_the_driver_runs_with_the_rust_extension():
    assert graph.rust_extension_loaded()
