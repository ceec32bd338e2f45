"""Shared fixtures: tiny models built locally and one real Neo4j for the whole session."""

import secrets
from pathlib import Path

import pytest

from protembed import graph
from protembed.testing.fasta import read_proteins
from protembed.testing.local_neo4j import LocalNeo4j, build_launcher
from protembed.testing.random_models import save_random_esm2

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def tiny_esm2(tmp_path_factory) -> Path:
    """A 2-layer, 32-dimensional ESM-2 with random weights, saved like a hub download."""
    return save_random_esm2(tmp_path_factory.mktemp("models") / "tiny_esm2")


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory):
    """A genuine Neo4j on a loopback port, with auth, stopped by PID at the end."""
    build_launcher(REPO)
    server = LocalNeo4j()
    server.start(tmp_path_factory.mktemp("neo4j"), password=secrets.token_hex(12))
    yield server
    server.stop()


@pytest.fixture
def neo4j_env(neo4j_server, monkeypatch):
    """The server's coordinates in the environment, the only place the workflow reads them."""
    for key, value in neo4j_server.env().items():
        monkeypatch.setenv(key, value)
    return neo4j_server.env()


@pytest.fixture
def database(neo4j_server, neo4j_env):
    """A driver on an emptied database: every test starts from a clean graph."""
    with graph.connect(graph.Connection.from_env()) as driver:
        driver.execute_query("MATCH (n) DETACH DELETE n")
        for record in driver.execute_query("SHOW INDEXES YIELD name, type")[0]:
            if record["type"] in ("VECTOR", "RANGE") and record["name"].startswith(
                ("Protein_", "protembed_")
            ):
                driver.execute_query(f"DROP INDEX {record['name']}")
        yield driver


@pytest.fixture(scope="session")
def synechocystis() -> list[dict]:
    return read_proteins(DATA / "synechocystis_every7th.fasta")
