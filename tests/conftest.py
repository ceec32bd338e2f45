"""Shared fixtures: tiny models built locally and one real Neo4j for the whole session."""

import secrets
from pathlib import Path

import pytest

from protembed import graph
from protembed.demo.local_neo4j import VERSIONS, LocalNeo4j, build_launcher
from protembed.demo.offline_model import save_random_esm2
from protembed.demo.proteins import read_proteins

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def tiny_esm2(tmp_path_factory) -> Path:
    """A 2-layer, 32-dimensional ESM-2 with random weights, saved like a hub download."""
    return save_random_esm2(tmp_path_factory.mktemp("models") / "tiny_esm2")


@pytest.fixture(scope="session", params=VERSIONS, ids=[f"neo4j-{v}" for v in VERSIONS])
def neo4j_server(request, tmp_path_factory):
    """A genuine Neo4j on a loopback port, with auth, stopped by PID at the end: once for
    each server line users run (5.26 LTS and the newest calendar release), so that every
    graph-facing test runs on both. pytest runs one server's tests, then the other's."""
    version = request.param
    build_launcher(version)
    server = LocalNeo4j(version)
    server.start(tmp_path_factory.mktemp(f"neo4j-{version}"), password=secrets.token_hex(12))
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
    """A driver on an emptied database, without constraints or indexes of any test before:
    every test starts from a clean graph."""
    with graph.connect(graph.Connection.from_env()) as driver:
        driver.execute_query("MATCH (n) DETACH DELETE n")
        for record in driver.execute_query("SHOW CONSTRAINTS YIELD name").records:
            driver.execute_query(f"DROP CONSTRAINT `{record['name']}`")
        for record in driver.execute_query("SHOW INDEXES YIELD name, type").records:
            if record["type"] != "LOOKUP":
                driver.execute_query(f"DROP INDEX `{record['name']}`")
        yield driver


@pytest.fixture
def protein_graph(database) -> graph.ProteinGraph:
    """The emptied database as PyEED names its proteins (no model property)."""
    return graph.ProteinGraph(database)


def vectors_on(driver, vector_property: str) -> graph.ProteinGraph:
    return graph.ProteinGraph(driver, vector_property=vector_property)


@pytest.fixture(scope="session")
def synechocystis() -> list[dict]:
    return read_proteins(DATA / "synechocystis_every7th.fasta")
