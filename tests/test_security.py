"""TLS to a Neo4j with a self-signed certificate, and credentials that never leak."""

import os
import secrets
import shutil
import subprocess
import sys

import pytest
from support import faults
from workflow_runner import write_config

from protembed import graph
from protembed.demo.local_neo4j import LocalNeo4j


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A Neo4j whose Bolt accepts TLS only, with a certificate made here by openssl."""
    if shutil.which("openssl") is None:
        pytest.fail("`openssl` is not on PATH; it makes the test's self-signed certificate")
    certificates = tmp_path_factory.mktemp("bolt-tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(certificates / "private.key"), "-out", str(certificates / "public.crt")]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )
    server = LocalNeo4j().start(
        tmp_path_factory.mktemp("tls-neo4j"), password=secrets.token_hex(12), tls_dir=certificates
    )
    yield server
    server.stop()


def with_scheme(server, scheme: str) -> dict:
    return server.env() | {"NEO4J_URI": server.uri.replace("bolt://", f"{scheme}://")}


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "protembed.cli", "neighbours", "P1", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_bolt_tls_with_a_self_signed_certificate(tls_server, tmp_path):
    env = with_scheme(tls_server, "bolt+ssc")
    connection = graph.Connection(env["NEO4J_URI"], tls_server.user, tls_server.password, None)
    with graph.ProteinGraph.connect(connection) as proteins:
        graph.add_proteins(proteins, [{"accession_id": "P1", "sequence": "MKTAYIAKQR"}])
    # The workflow's export over TLS.
    write_config(tmp_path, shards=1, model={"name": "kmer-2", "property": "vec"})
    export = faults.run(tmp_path, "--until", "export_sequences", env=env)
    assert export.returncode == 0, export.stderr[-3000:]
    assert not faults.files_holding(tmp_path, tls_server.password)

    # A verifying client refuses the self-signed certificate: one line, no traceback.
    refused = cli(with_scheme(tls_server, "bolt+s"), "--config", str(tmp_path / "config.yaml"))
    assert refused.returncode == 1
    # Before it, the driver logs its retries (30 s of them) as warnings of its own.
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("protembed: error: Neo4j at bolt+s://")
    assert "certificate" in error and "bolt+ssc://" in error
    assert "Traceback" not in refused.stderr


def test_credentials_in_the_uri_are_refused_without_echo(tls_server, tmp_path):
    password = tls_server.password
    host = tls_server.uri.removeprefix("bolt://")
    env = tls_server.env() | {"NEO4J_URI": f"bolt+ssc://neo4j:{password}@{host}"}
    write_config(tmp_path, shards=1, model={"name": "kmer-2", "property": "vec"})
    outcome = faults.run(tmp_path, "--until", "export_sequences", env=env)
    assert outcome.returncode != 0
    assert "protembed: error:" in outcome.stderr and "NEO4J_URI" in outcome.stderr
    assert password not in outcome.stdout + outcome.stderr
    assert not faults.files_holding(tmp_path, password)
