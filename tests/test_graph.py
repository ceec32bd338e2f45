"""Graph I/O on the real local Neo4j: export pages, float32 writes, idempotency, detection."""

import numpy as np
import pytest

from protembed import graph
from protembed.errors import UserError

PROTEINS = graph.ProteinGraph("Protein", "accession_id", "sequence")


def test_export_pages_stream_every_protein_once_in_id_order(database):
    proteins = [{"accession_id": f"P{i:03d}", "sequence": "MKT" + "A" * i} for i in range(23)]
    graph.add_proteins(database, None, PROTEINS, proteins)
    database.execute_query("CREATE (:Protein {accession_id: 'NO_SEQUENCE'})")
    database.execute_query("CREATE (:Protein {accession_id: 'P005b', sequence: 'MKV'})")
    # A page size that does not divide the count: the last page is short.
    rows = list(graph.export_rows(database, None, PROTEINS, "embedding_x", page_size=5))
    assert [row.id for row in rows] == sorted([p["accession_id"] for p in proteins] + ["P005b"])
    assert not any(row.settled for row in rows)
    assert rows[0].sequence == "MKT" and rows[0].stored_sha256 is None


def test_export_marks_proteins_settled_by_this_model_only(database):
    graph.add_proteins(database, None, PROTEINS, [{"accession_id": "P1", "sequence": "MKT"}])
    database.execute_query(
        "MATCH (p:Protein) SET p.embedding_a = [1.0], p.embedding_a_sequence_sha256 = 'abc'"
    )
    (row_a,) = graph.export_rows(database, None, PROTEINS, "embedding_a", page_size=10)
    (row_b,) = graph.export_rows(database, None, PROTEINS, "embedding_b", page_size=10)
    assert (row_a.settled, row_a.stored_sha256) == (True, "abc")
    assert (row_b.settled, row_b.stored_sha256) == (False, None)


def batch(ids: list[str], vectors: np.ndarray, shas: list[str]) -> graph.VectorBatch:
    return graph.VectorBatch(ids, shas, ["whole"] * len(ids), vectors)


PROVENANCE = {
    "model": "m",
    "model_revision": "r1",
    "embedding": "mean_last",
    "pooling": "mean over residues",
    "dimension": 3,
    "precision": "float32",
    "pipeline": "protembed test",
}


@pytest.mark.parametrize("writers", [1, 3])
def test_vectors_are_stored_as_float32_once(database, writers):
    ids = [f"P{i}" for i in range(10)]
    proteins = [{"accession_id": i, "sequence": "M"} for i in ids]
    graph.add_proteins(database, None, PROTEINS, proteins)
    graph.ensure_id_index(database, None, PROTEINS)
    # 0.1 has no exact float32: a float32 store gives back float32(0.1), not 0.1.
    vectors = np.full((10, 3), 0.1, dtype=np.float64) + np.arange(10)[:, None]
    batches = [batch(ids[i : i + 3], vectors[i : i + 3], ["s"] * 3) for i in range(0, 10, 3)]
    written = graph.write_vectors(
        database, None, PROTEINS, "embedding_m", batches, PROVENANCE, writers=writers
    )
    assert written == 10
    stored = dict(
        database.execute_query(
            "MATCH (p:Protein) RETURN p.accession_id AS id, p.embedding_m AS v"
        ).records
    )
    for i, protein_id in enumerate(ids):
        expected = vectors[i].astype(np.float32).astype(np.float64)
        assert stored[protein_id] == expected.tolist() != vectors[i].tolist()
    again = graph.write_vectors(
        database, None, PROTEINS, "embedding_m", batches, PROVENANCE, writers=writers
    )
    assert again == 0


def test_a_changed_sequence_hash_rewrites_and_a_rejection_removes_the_vector(database):
    graph.add_proteins(
        database, None, PROTEINS, [{"accession_id": i, "sequence": "M"} for i in ("A", "B")]
    )
    vectors = np.ones((2, 3), dtype=np.float32)
    first = [batch(["A", "B"], vectors, ["s1", "s1"])]
    assert graph.write_vectors(database, None, PROTEINS, "embedding_m", first, PROVENANCE) == 2
    second = [batch(["A", "B"], vectors * 2, ["s1", "s2"])]
    assert graph.write_vectors(database, None, PROTEINS, "embedding_m", second, PROVENANCE) == 1
    rows = [{"id": "A", "sha256": "s3", "reason": "bad"}]
    rejected = graph.write_rejections(database, None, PROTEINS, "embedding_m", rows, PROVENANCE)
    assert rejected == 1
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


@pytest.mark.parametrize("key", graph.SPACE_PROVENANCE)
def test_a_property_never_mixes_vectors_from_different_spaces(database, key):
    graph.add_proteins(database, None, PROTEINS, [{"accession_id": "A", "sequence": "M"}])
    graph.check_same_space(database, None, PROTEINS, "embedding_m", PROVENANCE)  # empty: fine
    vectors = np.ones((1, 3), dtype=np.float32)
    stored = [batch(["A"], vectors, ["s"])]
    graph.write_vectors(database, None, PROTEINS, "embedding_m", stored, PROVENANCE)
    # Precision, path and pipeline version may change within one space.
    same_space = {"precision": "bfloat16", "model": "/elsewhere/m", "pipeline": "protembed 9"}
    graph.check_same_space(database, None, PROTEINS, "embedding_m", PROVENANCE | same_space)
    other = PROVENANCE | {key: 4 if key == "dimension" else "other"}
    with pytest.raises(UserError, match=rf"Protein.embedding_m .*e\.g\. A: {key} "):
        graph.check_same_space(database, None, PROTEINS, "embedding_m", other)


def test_a_property_holding_only_rejections_is_guarded_too(database):
    graph.add_proteins(database, None, PROTEINS, [{"accession_id": "A", "sequence": "M"}])
    rows = [{"id": "A", "sha256": "s", "reason": "too short"}]
    graph.write_rejections(database, None, PROTEINS, "embedding_m", rows, PROVENANCE)
    graph.check_same_space(database, None, PROTEINS, "embedding_m", PROVENANCE)
    other = PROVENANCE | {"model_revision": "r2"}
    with pytest.raises(UserError, match="e\\.g\\. A: model_revision 'r1' there, 'r2' now"):
        graph.check_same_space(database, None, PROTEINS, "embedding_m", other)


def test_native_vector_type_is_not_detected_on_community_5_26(database):
    (component,) = database.execute_query("CALL dbms.components()").records
    assert component["versions"][0].startswith("5.26") and component["edition"] == "community"
    assert graph.stores_native_vectors(database, None) is False


def test_the_driver_runs_with_the_rust_extension():
    assert graph.rust_extension_loaded()
