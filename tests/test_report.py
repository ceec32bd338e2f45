"""The run's report as a person sees it (built by snakemake --report, opened in headless
Chromium), and the vector-index settings it states."""

import base64
import re
from pathlib import Path

import doc_pages
import numpy as np
import pyarrow as pa
import pytest
from neo4j.exceptions import Neo4jError
from support.browser import Page, show_result
from test_graph_incremental import kmer_config, run_steps
from workflow_runner import read_json, run_workflow, write_config

from protembed import graph, parquet_io, report, steps
from protembed.config import load_settings
from protembed.demo.local_neo4j import LTS
from protembed.demo.proteins import read_proteins
from protembed.errors import UserError
from protembed.report import (
    REJECTS_PER_PAGE,
    neighbours_html,
    reasons_of,
    rejects_html,
    similarities,
)

DATA = Path(__file__).resolve().parent / "data"
# The report command exactly as docs/report.md (and the README) print it, minus `snakemake`
# itself: the test runs what a user copies.
REPORT_COMMAND = doc_pages.command(
    "snakemake --cores 8 report --report report.html --report-after-run"
)[1:]
FAMILIES = ("TEM", "SHV", "CTX-M", "KPC", "CMY", "VIM")


def index_options(driver) -> dict:
    records = driver.execute_query("SHOW VECTOR INDEXES YIELD options").records
    return records[0]["options"]["indexConfig"]


def test_vector_index_is_built_with_the_configured_settings(database, tmp_path):
    graph.add_proteins(
        graph.ProteinGraph(database),
        [{"accession_id": f"P{i}", "sequence": "MKTAYIAKQR"[i:] + "W" * i} for i in range(8)],
    )
    config = kmer_config()
    config["graph"]["vector_index"] = {
        "similarity_function": "euclidean",
        "hnsw": {"m": 24, "ef_construction": 200},
        "quantization": False,
    }
    run_steps(config, tmp_path)
    options = index_options(database)
    assert options["vector.similarity_function"] == "EUCLIDEAN"
    assert (options["vector.hnsw.m"], options["vector.hnsw.ef_construction"]) == (24, 200)
    index = graph.ProteinGraph(database, vector_property="embedding_kmer_2").vector_index()
    assert (index.similarity, index.hnsw_m, index.quantization) == ("euclidean", 24, False)
    # Another run asking for other settings is refused at export, before any embedding.
    config["graph"]["vector_index"]["hnsw"]["m"] = 32
    with pytest.raises(UserError, match=r"built with other settings \(hnsw_m 24 there, 32"):
        settings = load_settings(config)
        steps.export(
            settings.graph, settings.model, settings.shards, tmp_path / "again" / "m.json", tmp_path
        )
    assert not (tmp_path / "again" / "m.json").exists()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("hnsw.m", 513, "hnsw.m: 513 is greater than the maximum of 512"),
        ("hnsw.ef_construction", 0, "hnsw.ef_construction: 0 is less than the minimum of 1"),
        (
            "similarity_function",
            "dot",
            "similarity_function: 'dot' is not one of cosine, euclidean",
        ),
    ],
)
def test_settings_the_server_rejects_are_refused_by_the_schema(database, setting, value, message):
    """The schema's ranges are the server's: it rejects the same value when asked directly."""
    key, _, sub = setting.partition(".")
    index_config = {"similarity_function": "cosine", "hnsw": {"m": 16, "ef_construction": 100}}
    if sub:
        index_config[key][sub] = value
    else:
        index_config[key] = value
    with pytest.raises(Neo4jError, match="must be between|unsupported"):
        database.execute_query(
            "CREATE VECTOR INDEX refused FOR (p:Protein) ON p.v OPTIONS {indexConfig: {"
            "`vector.dimensions`: 4, `vector.similarity_function`: $similarity, "
            "`vector.hnsw.m`: $m, `vector.hnsw.ef_construction`: $ef}}",
            similarity=index_config["similarity_function"],
            m=index_config["hnsw"]["m"],
            ef=index_config["hnsw"]["ef_construction"],
        )
    with pytest.raises(UserError, match=re.escape(f"graph.vector_index.{message}")):
        load_settings({"graph": {"vector_index": index_config}})


def report_results(html: str) -> dict[str, str]:
    """{file name: its bytes as the report embeds them (base64 in data: URLs)}."""
    pattern = r"data:[a-z/+]+;charset=utf8;filename=([\w.]+);base64,([\w+/=]+)"
    return {name: base64.b64decode(data) for name, data in re.findall(pattern, html)}


# The browser test runs on the LTS server only: the report reads the graph through the same
# ProteinGraph queries that every other graph test checks on both lines, and a second
# workflow run plus browser would double the slowest test of the suite for nothing new.
@pytest.mark.parametrize("neo4j_server", [LTS], indirect=True, ids=[f"neo4j-{LTS}"])
def test_report_opens_in_chromium_with_its_plots_and_no_console_errors(database, tmp_path):
    proteins = read_proteins(DATA / "betalactamase_families.fasta", attributes=("family",))
    chosen = [p for f in FAMILIES for p in [q for q in proteins if q["family"] == f][:12]]
    chosen.append({"accession_id": "NO_KMER", "sequence": "MXBZ", "family": "none"})
    graph.add_proteins(graph.ProteinGraph(database), chosen)
    write_config(
        tmp_path,
        model={"name": "kmer-2", "device": "cpu"},
        shards=2,
        report={"color_by": "family", "neighbours": 5, "sample": 30},
    )
    result = run_workflow(tmp_path, *REPORT_COMMAND)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "results" / "embedding_kmer_2"
    numbers = read_json(run / "report" / "report.json")
    assert numbers["rejects"] == 1 and numbers["neighbours"]["sampled"] == 30
    assert numbers["neighbours"]["recall_at_k"] >= 0.8
    assert numbers["neighbours"]["same_label"]["index"] >= 0.8
    assert numbers["neighbours"]["index"]["hnsw_m"] == 16
    assert len(numbers["neighbours"]["examples"]) == 5
    assert numbers["summary"]["vectors"] == 72 and numbers["this_run"]["vectors"] == 72

    # A protein added later: the report still covers the whole property, with the
    # second run's share (one protein) beside it.
    graph.add_proteins(
        graph.ProteinGraph(database), [{"accession_id": "LATE", "sequence": "MKWVTF"}]
    )
    result = run_workflow(tmp_path, *REPORT_COMMAND, "--forcerun", "export_sequences")
    assert result.returncode == 0, result.stderr[-3000:]
    again = read_json(run / "report" / "report.json")
    assert again["summary"]["vectors"] == 73 and again["this_run"]["vectors"] == 1
    assert again["rejects"] == 1 and again["neighbours"]["vectors"] == 73

    html = (tmp_path / "report.html").read_text()
    embedded = report_results(html)
    for plot in ("lengths.png", "throughput.png", "projection.png", "reasons.png", "scores.png"):
        assert embedded[plot] == (run / "report" / plot).read_bytes(), plot
    neighbours = embedded["neighbours.html"].decode()
    assert "recall@5 of the index against exact search" in neighbours
    assert "share of the 5 index neighbours with the same family" in neighbours

    with Page() as page:
        page.open((tmp_path / "report.html").as_uri())
        page.settle(1)
        categories = page.evaluate(MENU)
        for category in ("1. Run", "2. Plots", "3. Rejects", "4. Neighbour quality"):
            assert category in categories, categories
        show_result(page, "2. Plots", "PCA projection")
        images = page.evaluate(IMAGES)
        screenshot = page.screenshot(tmp_path / "report.png")
        errors = page.errors
    projection = [size for name, size in images if name == "projection.png"]
    assert projection and projection[0][0] > 400, images  # decoded and laid out
    assert screenshot.stat().st_size > 20000
    assert errors == [], errors


MENU = "[...document.querySelectorAll('a')].map(e => e.textContent.trim()).filter(t => t)"
# Each shown image's file name (from its data: URL) and decoded size.
IMAGES = (
    "[...document.querySelectorAll('img')].map(e => "
    "[(e.src.match(/filename=([^;]+)/) || [])[1], [e.naturalWidth, e.naturalHeight]])"
)


def test_neighbour_table_escapes_labels_and_lists_examples():
    neighbours = {
        "k": 10,
        "sampled": 3,
        "recall_at_k": 0.9,
        "index": {"name": "i", "hnsw_m": 16},
        "vectors": 7,
        "same_label": {"index": 0.5, "exact": 0.75, "chance": 0.25, "queries_with_label": 3},
        "examples": [{"query": "Q1", "neighbours": [["P1", 0.99, "<TEM>"], ["P2", 0.9, None]]}],
    }
    page = neighbours_html(neighbours, {}, "<family>")
    assert "<td>recall@10 of the index against exact search</td><td>0.9</td>" in page
    assert "exact neighbours with the same &lt;family&gt;</td><td>0.75</td>" in page
    assert "<tr><td>Q1</td><td>P1</td><td>0.99</td><td>&lt;TEM&gt;</td></tr>" in page
    assert "<tr><td></td><td>P2</td><td>0.9</td><td>-</td></tr>" in page


def test_reject_reasons_group_numbers_but_keep_quoted_characters():
    grouped = reasons_of(
        {
            "characters the model cannot encode: '1'": 2,
            "characters the model cannot encode: '7'": 1,
            "1100 residues exceed the model's 1022 (long_sequences: reject)": 1,
            "1500 residues exceed the model's 1022 (long_sequences: reject)": 3,
        }
    )
    assert grouped == {
        "characters the model cannot encode: '1'": 2,
        "characters the model cannot encode: '7'": 1,
        "N residues exceed the model's N (long_sequences: reject)": 4,
    }


def test_long_rejects_tables_are_paged():
    rejects = [{"id": f"P{i}", "reason": f"reason <{i}>"} for i in range(2 * REJECTS_PER_PAGE + 1)]
    page = rejects_html(rejects)
    assert page.count('<section class="page"') == 3 and '<a href="#page-3">3</a>' in page
    assert page.count("<tr><td>") == len(rejects) and "reason &lt;0&gt;" in page
    assert rejects_html(rejects[:3]).count("<tr><td>") == 3 and "page" not in rejects_html([])


def test_similarities_score_as_the_index_does_without_a_cube_in_memory():
    rng = np.random.default_rng(0)
    vectors, queries = rng.normal(size=(300, 16)), rng.normal(size=(4, 16))
    direct = -np.linalg.norm(vectors[:, None] - queries[None], axis=2)
    np.testing.assert_allclose(similarities(vectors, queries, "euclidean"), direct, atol=1e-9)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = unit @ (queries / np.linalg.norm(queries, axis=1, keepdims=True)).T
    np.testing.assert_allclose(similarities(vectors, queries, "cosine"), expected, atol=1e-12)


def test_rejects_beyond_those_listed_are_counted_and_pointed_to():
    rejects = [{"id": f"P{i}", "reason": "too long"} for i in range(3)]
    page = rejects_html(rejects, total=12345)
    assert page.startswith("<p>12,345 rejected proteins (the first 3 listed here;")
    assert "graph/rejects.parquet" in page and page.count("<tr><td>") == 3
    assert "listed here" not in rejects_html(rejects, total=3)


def vectors_file(path: Path, residues: list[int], dimension: int = 4) -> Path:
    rows = len(residues)
    vectors = np.arange(rows * dimension, dtype=np.float32).reshape(rows, dimension) % 7
    table = pa.table(
        {
            "id": [f"P{i:06d}" for i in range(rows)],
            "vector": parquet_io.vectors_array(vectors),
            "residues": pa.array(residues, pa.int32()),
        }
    )
    parquet_io.write_table(table, path)
    return path


def test_the_sample_counts_every_length_but_keeps_only_its_points(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "BATCH_ROWS", 1000)  # many batches
    monkeypatch.setattr(report, "PROJECTION_POINTS", 50)
    residues = [(i * 37) % 900 + 30 for i in range(12000)]
    path = vectors_file(tmp_path / "vectors.parquet", residues)
    sample = report.Sample.draw(path, 20)
    assert sample.total == 12000 and len(sample.query_ids) == 20
    assert sample.points.shape == (50, 4) and len(set(sample.ids)) == 50
    np.testing.assert_array_equal(sample.length_counts, np.bincount(residues))
    # A point's vector and length are its own row's.
    row = int(sample.ids[7][1:])
    assert sample.point_residues[7] == residues[row]
    np.testing.assert_array_equal(sample.points[7], (np.arange(4) + 4 * row) % 7)


def test_the_projection_says_when_it_shows_a_sample(tmp_path):
    points = np.random.default_rng(0).normal(size=(30, 5))
    labels = ["a"] * 30
    shown = report.plot_projection(points, labels, None, tmp_path / "p.png", total=5000)
    assert shown["points"] == 30 and shown["vectors"] == 5000
    whole = report.plot_projection(points, labels, None, tmp_path / "q.png")
    assert whole["vectors"] == 30


def test_the_report_reads_rejects_and_their_lengths_without_the_whole_file(tmp_path):
    rows = [
        {"id": f"R{i}", "reason": "r", "sequence_sha256": None, "model": None, "residues": r}
        for i, r in enumerate([5, 5, None, 9] * 3000)
    ]
    path = tmp_path / "rejects.parquet"
    parquet_io.write_table(pa.Table.from_pylist(rows, parquet_io.GRAPH_REJECTS_SCHEMA), path)
    assert [r["id"] for r in report.first_rows(path, 3)] == ["R0", "R1", "R2"]
    assert len(report.first_rows(path, 25000)) == 12000
    counts = report._rejected_lengths(path)
    assert counts[5] == 6000 and counts[9] == 3000 and counts.sum() == 9000
