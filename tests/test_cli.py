"""The `protembed` command against the real local Neo4j."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_graph_incremental import kmer_config, run_steps

from protembed import graph
from protembed.cli import main

PROTEMBED = Path(sys.executable).with_name("protembed")


@pytest.fixture
def embedded(tmp_path, database, synechocystis) -> tuple[Path, str]:
    """20 proteins, a copy of the first and one that kmer-2 rejects, embedded with kmer-2,
    then one without a sequence and one added since; the config file used."""
    proteins = synechocystis[:20]
    copy = {"accession_id": "COPY_OF_FIRST", "sequence": proteins[0]["sequence"]}
    rejected = {"accession_id": "REJECTED", "sequence": "X"}  # no 2-mer to count
    graph.add_proteins(graph.ProteinGraph(database), [*proteins, copy, rejected])
    config = kmer_config()
    run_steps(config, tmp_path / "run")
    added = {"accession_id": "ADDED_SINCE", "sequence": "MKTAYIAKQR"}
    graph.add_proteins(graph.ProteinGraph(database), [added])
    database.execute_query("CREATE (:Protein {accession_id: 'NO_SEQUENCE'})")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"graph": config["graph"], "model": {"name": "kmer-2"}}))
    return path, proteins[0]["accession_id"]


def test_neighbours_prints_ids_and_scores_best_first(embedded, neo4j_env):
    config, query = embedded
    result = subprocess.run(
        [str(PROTEMBED), "neighbours", query, "-k", "4", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == 4 and all(len(row) == 2 for row in rows)
    scores = [float(score) for _, score in rows]
    assert scores == sorted(scores, reverse=True)
    # The identical sequence first; the index quantises, so a little under 1.
    assert rows[0][0] == "COPY_OF_FIRST" and scores[0] > 0.99
    assert query not in {protein_id for protein_id, _ in rows}


@pytest.mark.parametrize(
    ("accession", "why"),
    [
        ("NO_SUCH_PROTEIN", "no Protein has accession_id 'NO_SUCH_PROTEIN'; is the id right?"),
        (
            "REJECTED",
            "Protein 'REJECTED' has no embedding_kmer_2 vector: the model rejected its sequence "
            "(no 2-mer of the 20 standard amino acids to count in 1 residues)",
        ),
        (
            "ADDED_SINCE",
            "Protein 'ADDED_SINCE' has no embedding_kmer_2 vector yet (added, or its sequence "
            "changed, since this model's last run): run the workflow (snakemake --forcerun "
            "export_sequences)",
        ),
        ("NO_SEQUENCE", "Protein 'NO_SEQUENCE' has no sequence, so nothing to embed"),
    ],
)
def test_neighbours_without_a_vector_says_why_in_one_line(embedded, capsys, accession, why):
    config, _ = embedded
    assert main(["neighbours", accession, "--config", str(config)]) == 1
    assert capsys.readouterr().err == f"protembed: error: {why}\n"


def test_neighbours_needs_the_connection_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("NEO4J_URI", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": "kmer-2"}}))
    assert main(["neighbours", "P1", "--config", str(config)]) == 1
    assert "NEO4J_URI is not set" in capsys.readouterr().err


def test_neighbours_refuses_a_property_that_is_not_an_identifier(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": "kmer-2"}}))
    args = ["neighbours", "P1", "--config", str(config), "--property", "x) DETACH DELETE p //"]
    assert main(args) == 1
    assert "is not a plain identifier" in capsys.readouterr().err
