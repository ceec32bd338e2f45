"""A user's mistakes caught before any work, in one line each, and never retried: typo'd
names in the graph, models that are not where they are said to be, a server that is down;
and a run with nothing to do says so. Against the real local Neo4j."""

import json
import time

import pytest
from workflow_runner import run_workflow, write_config

from protembed import graph
from protembed.config import load_settings
from protembed.errors import UserError
from protembed.preflight import check_before_run, check_model

PROTEINS = [
    {"accession_id": f"P{i}", "sequence": "MKTAYIAKQR"[i:] + "W" * i, "family": "TEM"}
    for i in range(6)
]


def schema(driver) -> list:
    indexes = driver.execute_query("SHOW INDEXES YIELD name RETURN name ORDER BY name").records
    constraints = driver.execute_query("SHOW CONSTRAINTS YIELD name RETURN name").records
    return [r["name"] for r in indexes] + [r["name"] for r in constraints]


@pytest.fixture
def proteins(database):
    graph.add_proteins(graph.ProteinGraph(database), PROTEINS)
    return database


def kmer(**sections):
    return load_settings({"model": {"name": "kmer-2"}, **sections})


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"graph": {"label": "Protien"}},
            "no node has the label 'Protien' (graph.label); labels in the database, nearest "
            "first: Protein",
        ),
        (
            {"graph": {"id_property": "accesion_id"}},
            "no Protein node has the property 'accesion_id' (graph.id_property); properties "
            "of Protein nodes, nearest first: accession_id,",
        ),
        (
            {"graph": {"sequence_property": "seq"}},
            "no Protein node has the property 'seq' (graph.sequence_property); properties of "
            "Protein nodes, nearest first: sequence,",
        ),
        (
            {"report": {"color_by": "famliy"}},
            "no Protein node has the property 'famliy' (report.color_by); properties of "
            "Protein nodes, nearest first: family,",
        ),
    ],
)
def test_typod_names_are_refused_in_seconds_naming_what_exists(proteins, sections, message):
    before = schema(proteins)
    started = time.monotonic()
    with pytest.raises(UserError) as refused:
        check_before_run(kmer(**sections))
    assert time.monotonic() - started < 5
    assert str(refused.value).startswith(message), str(refused.value)
    assert schema(proteins) == before


def test_a_typod_label_stops_the_workflow_before_any_job_and_any_schema(proteins, tmp_path):
    before = schema(proteins)
    write_config(tmp_path, model={"name": "kmer-2"}, graph={"label": "Protien"})
    done = run_workflow(tmp_path)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("protembed: error:")]
    assert lines == [
        "protembed: error: no node has the label 'Protien' (graph.label); labels in the "
        "database, nearest first: Protein"
    ]
    assert "rule export_sequences" not in done.stderr and not (tmp_path / "results").exists()
    assert schema(proteins) == before
    # The export step refuses the same by itself (a parent workflow, embed_graph).
    with pytest.raises(UserError, match="no node has the label 'Protien'"):
        from protembed import steps

        config = kmer(graph={"label": "Protien"})
        steps.export(config.graph, config.model, config.shards, tmp_path / "m.json", tmp_path)
    assert schema(proteins) == before


def test_a_server_that_is_down_is_said_once_and_never_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("NEO4J_PASSWORD", "x")
    write_config(tmp_path, model={"name": "kmer-2"})
    started = time.monotonic()
    with pytest.raises(UserError, match=r"cannot reach Neo4j at bolt://127\.0\.0\.1:9"):
        check_before_run(load_settings(tmp_path / "config.yaml"))
    assert time.monotonic() - started < 5
    # With retries, as the workstation profile sets them: it never becomes a job to retry.
    done = run_workflow(tmp_path, "--retries", "1")
    assert done.returncode == 1
    assert done.stderr.count("cannot reach Neo4j at bolt://127.0.0.1:9") == 1
    assert "rule export_sequences" not in done.stderr


@pytest.mark.parametrize(
    ("name", "environment", "message"),
    [
        ("/no/such/directory", {}, "model.name /no/such/directory is a local directory that"),
        ("./models/esm2_t6", {}, "model.name ./models/esm2_t6 is a local directory that does"),
        (
            "someone/no-such-model",
            {"HF_HUB_OFFLINE": "1"},
            "model.name someone/no-such-model is not in the hub cache and HF_HUB_OFFLINE is set",
        ),
        (
            "facebook/esm2_t6_8M_UR50D",
            {"HF_HUB_OFFLINE": "", "HF_HUB_CACHE": "/nonexistent"},
            "model.name facebook/esm2_t6_8M_UR50D is not in the hub cache and the model hub "
            "cannot be reached",
        ),
        ("mystery-model", {}, "cannot tell the model family of 'mystery-model'"),
    ],
)
def test_models_that_are_not_there_are_refused_saying_which_case(
    name, environment, message, monkeypatch
):
    """The test machine reaches no model hub: an uncached hub name must fail fast."""
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    with pytest.raises(UserError) as refused:
        check_model(kmer(model={"name": name}).model)
    assert time.monotonic() - started < 10
    assert str(refused.value).startswith(message) or message in str(refused.value)


def test_a_local_directory_of_an_unknown_model_asks_for_the_family(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError, match="cannot tell the model family"):
        check_model(kmer(model={"name": str(tmp_path)}).model)
    check_model(
        kmer(model={"name": str(tmp_path), "family": "esm2"}).model
    )  # said explicitly: fine


def test_a_run_with_nothing_to_embed_says_so_with_the_counts(proteins, tmp_path):
    write_config(tmp_path, model={"name": "kmer-2"}, shards=1)
    first = run_workflow(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "this run embedded 6, rejected 0" in first.stderr
    again = run_workflow(tmp_path, "--forcerun", "export_sequences")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        "protembed: nothing needed a vector: this run embedded 0, rejected 0, found 6 up to "
        "date; Protein.embedding_kmer_2 now holds 6 vectors and 0 rejections (0 of 6 proteins "
        "with a sequence still without)"
    ) in again.stderr
