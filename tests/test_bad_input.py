"""Bad input stops the run before any write, with one line naming the problem and the fix."""

import socket

import pytest
from workflow_runner import run_workflow, write_config

from protembed import graph


def graph_state(driver) -> tuple:
    """Everything a failed run could have touched: nodes, their properties, indexes."""
    nodes = driver.execute_query(
        "MATCH (p) RETURN p.accession_id AS id, properties(p) AS props ORDER BY id"
    )[0]
    indexes = driver.execute_query("SHOW INDEXES YIELD name RETURN name ORDER BY name")[0]
    return [tuple(sorted(r["props"].items())) for r in nodes], [r["name"] for r in indexes]


@pytest.fixture
def small_graph(database):
    graph.add_proteins(
        graph.ProteinGraph(database), [{"accession_id": "P1", "sequence": "MKTAYIAKQR"}]
    )
    return database


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"NEO4J_URI": "bolt://127.0.0.1:{closed}"}, "cannot reach Neo4j at bolt://127.0.0.1"),
        ({"NEO4J_PASSWORD": "not-the-password"}, "refused the credentials of user 'neo4j'"),
        ({"NEO4J_DATABASE": "nosuchdb"}, "database 'nosuchdb' does not exist"),
        ({"NEO4J_URI": ""}, "NEO4J_URI is not set"),
    ],
    ids=["unreachable", "wrong-password", "unknown-database", "no-uri"],
)
def test_connection_problems_stop_before_any_write(
    tmp_path, tiny_esm2, small_graph, neo4j_env, environment, expected
):
    before = graph_state(small_graph)
    env = {k: v.format(closed=closed_port()) for k, v in environment.items()}
    write_config(tmp_path, model={"name": str(tiny_esm2)})
    result = run_workflow(tmp_path, env=env, timeout=300)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("protembed: error:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-3000:]
    for secret in (env.get("NEO4J_PASSWORD"), neo4j_env["NEO4J_PASSWORD"]):
        assert not secret or secret not in result.stdout + result.stderr
    assert graph_state(small_graph) == before
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.parquet"))


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"shards": 0}, "invalid config: shards: 0 is less than the minimum of 1"),
        (
            {"graph": {"label": "Protein) DETACH DELETE p //"}},
            "invalid config: graph.label: 'Protein) DETACH DELETE p //' is not a plain identifier",
        ),
        ({"model": {"property": "vec-1"}}, "invalid config: model.property"),
        ({"model": {"long_sequences": "ignore"}}, "invalid config: model.long_sequences"),
    ],
    ids=["shards", "label-injection", "property", "policy"],
)
def test_invalid_config_stops_before_any_write(tmp_path, small_graph, section, expected):
    before = graph_state(small_graph)
    write_config(tmp_path, **section)
    result = run_workflow(tmp_path, timeout=300)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr[-3000:]
    assert graph_state(small_graph) == before
    assert not (tmp_path / "results").exists()


def test_password_never_reaches_logs_or_metadata(tmp_path, tiny_esm2, database, neo4j_env):
    graph.add_proteins(
        graph.ProteinGraph(database), [{"accession_id": "P1", "sequence": "MKTAYIAKQR"}]
    )
    write_config(tmp_path, shards=1, model={"name": str(tiny_esm2)})
    result = run_workflow(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    password = neo4j_env["NEO4J_PASSWORD"]
    assert password not in result.stdout + result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
