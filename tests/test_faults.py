"""Nothing lost, nothing doubled: each test breaks a real run on purpose (a job killed, Ctrl-C,
the database stopped or crashed, a damaged file, another writer, a second model at once),
reruns the same command, and checks the graph against an unbroken run's: the same nodes
with the same vectors bit for bit and the same provenance apart from times, every protein
embedded or rejected with its reason, no node written twice, and no password in any file
the runs wrote. Each test prints how long the break and the recovery took (BENCHMARKS.md).

The runs use their own Neo4j server (these tests stop and crash it), a tiny random ESM-2
with one protein per forward pass (so a vector never depends on its batch mates and any
two runs agree bit for bit), two shards and small write transactions.
"""

import os
import re
import secrets
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import neo4j
import numpy as np
import pyarrow.parquet as pq
import pytest
from support import faults
from workflow_runner import read_json, write_config

from protembed import graph
from protembed.demo.local_neo4j import LocalNeo4j

PROPERTY = "embedding_faults"
ARGS = ("--set-threads", "embed_shard=1")  # two one-thread embed jobs side by side
BATCH = 20  # vectors per write transaction: 15 transactions for the run


def configure(directory, model_dir):
    return write_config(
        directory,
        shards=2,
        model={"name": str(model_dir), "property": PROPERTY, "tokens_per_batch": 1},
        graph={"write_batch_size": BATCH, "writers": 1},
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("faults-neo4j")
    neo = LocalNeo4j().start(data_dir, password=secrets.token_hex(12))
    neo.data_dir = data_dir
    yield neo
    neo.stop()


@pytest.fixture(scope="module")
def proteins(synechocystis) -> list[dict]:
    chosen = synechocystis[:300]
    return chosen + [
        {"accession_id": "DUPLICATE_OF_FIRST", "sequence": chosen[0]["sequence"]},
        {"accession_id": "BAD_CHARACTERS", "sequence": "MKT1AYZ"},
    ]


def connect(server) -> neo4j.Driver:
    return graph.connect(graph.Connection(server.uri, server.user, server.password, None))


def seed(driver, proteins) -> None:
    driver.execute_query("MATCH (n) DETACH DELETE n")
    for record in driver.execute_query("SHOW INDEXES YIELD name, type")[0]:
        if record["type"] in ("VECTOR", "RANGE"):
            driver.execute_query(f"DROP INDEX {record['name']}")
    graph.add_proteins(graph.ProteinGraph(driver), proteins)


def graph_state(driver) -> dict[str, dict]:
    """Every protein's properties, without the times at which they were written."""
    records, _, _ = driver.execute_query("MATCH (p:Protein) RETURN properties(p) AS p")
    return {
        r["p"]["accession_id"]: {k: v for k, v in r["p"].items() if not k.endswith("_created")}
        for r in records
    }


def vector_count(driver) -> int:
    return graph.ProteinGraph(driver, vector_property=PROPERTY).count_with_vector()


@pytest.fixture(scope="module")
def reference(server, proteins, tiny_esm2, tmp_path_factory) -> dict:
    """The graph after an unbroken run, and that run's receipt."""
    directory = tmp_path_factory.mktemp("unbroken")
    configure(directory, tiny_esm2)
    with connect(server) as driver:
        seed(driver, proteins)
        outcome = faults.run(directory, *ARGS, env=server.env())
        assert outcome.returncode == 0, outcome.stderr[-4000:]
        state = graph_state(driver)
    print(f"\nRECOVERY unbroken run: {outcome.seconds:.1f} s")
    receipt = read_json(directory / "results" / PROPERTY / "load" / "receipt.json")
    return {"state": state, "receipt": receipt, "directory": directory}


@pytest.fixture
def case(server, proteins, tiny_esm2, reference, tmp_path):
    """A seeded graph, a configured run directory and a driver, for one fault."""
    configure(tmp_path, tiny_esm2)
    with connect(server) as driver:
        seed(driver, proteins)
        yield driver, tmp_path
    leaks = faults.files_holding(tmp_path, server.password)
    assert not leaks, f"the password is in {leaks}"


def assert_recovered(driver, reference, directory, written_before: int = 0) -> None:
    """The unbroken run's graph, every protein accounted for, and no node written twice."""
    state = graph_state(driver)
    assert state.keys() == reference["state"].keys()
    assert state == reference["state"]
    for protein_id, properties in state.items():
        assert PROPERTY in properties or properties.get(f"{PROPERTY}_rejected"), protein_id
    assert state["BAD_CHARACTERS"][f"{PROPERTY}_rejected"]
    receipt = read_json(directory / "results" / PROPERTY / "load" / "receipt.json")
    # The rerun wrote exactly the nodes that had no vector yet: none twice, none skipped.
    assert written_before + receipt["written"] == reference["receipt"]["written"]
    summary = read_json(directory / "results" / PROPERTY / "summary.json")
    assert summary["embedded"] + summary["rejected"] == summary["exported"] == len(state)


def lock_middle_of_load(driver, directory):
    """Lock a protein half-way through the load's order (shard by shard, as merged)."""
    export = directory / "results" / PROPERTY / "export" / "shards"
    ids = [
        i
        for shard in (0, 1)
        for row in pq.read_table(export / f"shard-{shard}.parquet").to_pylist()
        for i in row["ids"]
    ]
    return faults.write_lock(
        driver,
        "MATCH (p:Protein {accession_id: $id}) SET p.fault_lock = true",
        id=ids[len(ids) // 2],
    )


@contextmanager
def load_held_half_way(run, driver, directory):
    """Once the export is done, hold the run's load at a protein half-way through its
    order: the block runs while the load waits, some transactions committed."""
    faults.wait_for_text(directory / "results" / PROPERTY / "export" / "manifest.json", "}", run)
    with lock_middle_of_load(driver, directory):
        faults.wait_for(
            lambda: faults.transactions(driver, "setNodeVectorProperty", blocked=True),
            "the load waiting",
            while_running=run,
        )
        yield


def test_embed_logs_keep_the_progress_bar_beside_the_log_lines(reference):
    """The probes below watch for the bar; a user tailing a log watches it too."""
    logs = reference["directory"] / "results" / PROPERTY / "logs" / "embed"
    for shard in (0, 1):
        text = (logs / f"shard-{shard}.log").read_text()
        start, end = text.find(" 0%|"), text.find("100%|")
        assert 0 < text.find("token budget divided by") < start < end, text
        assert end < text.find("'embedded':"), text


BAR_START = re.compile(r"(?<!\d)0%\|")  # the bar as a shard starts ("100%|" is its end)


def embedding_log(run: faults.Run, directory: Path) -> Path:
    """The log of an embed job that has begun its shard's forward passes."""
    logs = directory / "results" / PROPERTY / "logs" / "embed"

    def started():
        texts = {p: p.read_text(errors="replace") for p in logs.glob("shard-*.log")}
        return next((p for p, text in texts.items() if BAR_START.search(text)), None)

    return faults.wait_for(started, "an embed job's progress bar", while_running=run)


def test_embed_job_killed_mid_shard(server, case, reference):
    driver, directory = case
    run = faults.Run(directory, *ARGS, env=server.env())
    log = embedding_log(run, directory)
    victim = faults.process_with_open(run, log)
    time.sleep(0.3)  # into the shard: each protein is its own forward pass
    assert "'embedded':" not in log.read_text(), "the shard finished before the kill"
    os.kill(victim, signal.SIGKILL)
    broken = run.finish()
    assert broken.returncode != 0
    assert "Error in rule embed_shard" in broken.stderr and "SIGKILL" in broken.stderr

    embed = directory / "results" / PROPERTY / "embed"
    killed = embed / log.name.replace(".log", ".parquet")
    assert not killed.exists() and "'embedded':" not in log.read_text()
    assert vector_count(driver) == 0
    other = next(embed / f"shard-{s}.parquet" for s in (0, 1) if f"shard-{s}.log" != log.name)
    assert other.is_file(), "snakemake let the other running shard finish"
    kept = other.stat().st_mtime_ns

    started = time.monotonic()
    again = faults.run(directory, *ARGS, env=server.env())
    assert again.returncode == 0, again.stderr[-4000:]
    print(f"\nRECOVERY embed SIGKILL: rerun {time.monotonic() - started:.1f} s")
    assert other.stat().st_mtime_ns == kept  # the finished shard was not embedded again
    assert list(embed.glob(".*.tmp")) == []
    assert_recovered(driver, reference, directory)


def test_load_killed_after_some_transactions(server, case, reference):
    driver, directory = case
    run = faults.Run(directory, *ARGS, env=server.env())
    with load_held_half_way(run, driver, directory):
        committed = vector_count(driver)
        run.kill_job("load.py")
    broken = run.finish()
    assert broken.returncode != 0
    assert "Error in rule load_vectors" in broken.stderr and "SIGKILL" in broken.stderr
    assert 0 < committed < reference["receipt"]["written"]
    assert committed % BATCH == 0 and vector_count(driver) == committed

    started = time.monotonic()
    again = faults.run(directory, *ARGS, env=server.env())
    assert again.returncode == 0, again.stderr[-4000:]
    print(f"\nRECOVERY load SIGKILL: rerun {time.monotonic() - started:.1f} s")
    assert_recovered(driver, reference, directory, written_before=committed)


def test_neo4j_stopped_during_load(server, case, reference):
    """The driver retries for 30 s; a server still down then fails the load with one line,
    and once it is back the rerun writes only what was not committed."""
    driver, directory = case
    run = faults.Run(directory, *ARGS, env=server.env())
    with load_held_half_way(run, driver, directory):
        committed = vector_count(driver)
        stopped = time.monotonic()
        server.stop()
    broken = run.finish()
    failed_after = time.monotonic() - stopped
    assert broken.returncode != 0
    assert "protembed: error: Neo4j failed during load_vectors" in broken.stderr
    assert "rerun the same command" in broken.stderr

    restart = faults.restart(server, server.data_dir)
    with connect(server) as fresh:
        assert vector_count(fresh) == committed  # committed work survived the stop
        started = time.monotonic()
        again = faults.run(directory, *ARGS, env=server.env())
        assert again.returncode == 0, again.stderr[-4000:]
        print(
            f"\nRECOVERY Neo4j stopped in load: failed after {failed_after:.1f} s, "
            f"restart {restart:.1f} s, rerun {time.monotonic() - started:.1f} s"
        )
        assert_recovered(fresh, reference, directory, written_before=committed)


def test_neo4j_crashed_during_export(server, case, reference):
    driver, directory = case
    # An uncommitted new :Protein holds the label's lock, so the export's CREATE INDEX waits.
    lock = faults.write_lock(driver, "CREATE (:Protein {accession_id: 'FAULT_LOCK'})")
    with lock:
        run = faults.Run(directory, *ARGS, env=server.env())
        faults.wait_for(
            # Its index creation commits in a transaction of its own, with no query text.
            lambda: len(faults.transactions(driver, "")) >= 2,
            "the export creating its index",
            timeout=60,
            while_running=run,
        )
        crashed = time.monotonic()
        faults.crash(server)
    broken = run.finish()
    failed_after = time.monotonic() - crashed
    assert broken.returncode != 0
    # Which line depends on where the export was when the server went: mid-query, or
    # (re)connecting. Both say what happened.
    assert (
        "protembed: error: Neo4j failed during export_sequences" in broken.stderr
        or "protembed: error: cannot reach Neo4j at" in broken.stderr
    )
    export = directory / "results" / PROPERTY / "export"
    assert not list(export.glob("*.json")) and not list(export.rglob("*.parquet"))

    restart = faults.restart(server, server.data_dir)
    with connect(server) as fresh:
        started = time.monotonic()
        again = faults.run(directory, *ARGS, env=server.env())
        assert again.returncode == 0, again.stderr[-4000:]
        print(
            f"\nRECOVERY Neo4j crashed in export: failed after {failed_after:.1f} s, "
            f"restart {restart:.1f} s, rerun {time.monotonic() - started:.1f} s"
        )
        assert_recovered(fresh, reference, directory)


def test_truncated_shard_is_detected_and_rebuilt(server, case, reference):
    driver, directory = case
    # Up to the merge, not to embed_shard: the embed jobs enter the plan only once the
    # export (a checkpoint) has run, so `--until embed_shard` stops after the export.
    first = faults.run(directory, *ARGS, "--until", "merge_shards", env=server.env())
    assert first.returncode == 0, first.stderr[-4000:]
    shard = directory / "results" / PROPERTY / "embed" / "shard-0.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # as a full disk leaves a file behind

    broken = faults.run(directory, *ARGS, env=server.env())
    assert broken.returncode != 0
    assert "embed/shard-0.parquet is not a valid Parquet file" in broken.stderr
    assert not shard.exists() and shard.with_name("shard-0.parquet.corrupt").is_file()
    assert vector_count(driver) == 0

    started = time.monotonic()
    again = faults.run(directory, *ARGS, env=server.env())
    assert again.returncode == 0, again.stderr[-4000:]
    print(f"\nRECOVERY truncated shard: rerun {time.monotonic() - started:.1f} s")
    assert pq.read_table(shard).num_rows > 0
    assert_recovered(driver, reference, directory)


def test_ctrl_c_during_embed_jobs(server, case, reference):
    driver, directory = case
    run = faults.Run(directory, *ARGS, env=server.env())
    logs = directory / "results" / PROPERTY / "logs" / "embed"
    embedding_log(run, directory)
    run.interrupt()
    broken = run.finish()
    # If this fails again, the test process's own SIGINT state says where to look next.
    here = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    assert broken.returncode != 0, f"snakemake ignored SIGINT; here: handler, blocked = {here}"
    assert "Terminating processes on user request" in broken.stderr
    faults.wait_for(lambda: not faults.process_group_alive(run.process.pid), "the jobs to stop", 30)
    embed = directory / "results" / PROPERTY / "embed"
    for shard in (0, 1):
        output = embed / f"shard-{shard}.parquet"
        finished = "'embedded':" in (logs / f"shard-{shard}.log").read_text()
        assert output.exists() == finished, f"shard {shard}: output kept without a finished job"
    assert vector_count(driver) == 0

    started = time.monotonic()
    again = faults.run(directory, *ARGS, env=server.env())
    assert again.returncode == 0, again.stderr[-4000:]
    print(f"\nRECOVERY Ctrl-C in embed: rerun {time.monotonic() - started:.1f} s")
    assert_recovered(driver, reference, directory)


def test_other_writer_between_export_and_load(server, case, reference, proteins):
    driver, directory = case
    first = faults.run(directory, *ARGS, "--until", "merge_shards", env=server.env())
    assert first.returncode == 0, first.stderr[-4000:]
    changed, source, deleted = proteins[10], proteins[20], proteins[30]
    driver.execute_query(
        "MATCH (p:Protein {accession_id: $id}) SET p.sequence = $sequence",
        id=changed["accession_id"],
        sequence=source["sequence"],
    )
    driver.execute_query(
        "MATCH (p:Protein {accession_id: $id}) DETACH DELETE p", id=deleted["accession_id"]
    )

    load = faults.run(directory, *ARGS, env=server.env())
    assert load.returncode == 0, load.stderr[-4000:]
    state = graph_state(driver)
    assert deleted["accession_id"] not in state  # the load never creates nodes
    # A vector of the old sequence must not land on a node whose sequence changed.
    assert PROPERTY not in state[changed["accession_id"]]

    incremental = faults.run(directory, *ARGS, "--forcerun", "export_sequences", env=server.env())
    assert incremental.returncode == 0, incremental.stderr[-4000:]
    assert read_json(directory / "results" / PROPERTY / "summary.json")["exported"] == 1
    expected = dict(reference["state"])
    del expected[deleted["accession_id"]]
    expected[changed["accession_id"]] = {
        **reference["state"][source["accession_id"]],
        "accession_id": changed["accession_id"],
    }
    assert graph_state(driver) == expected


def test_two_models_at_once(server, case, reference, proteins):
    from protembed.adapters import load_adapter
    from protembed.engine import embed_sequences

    driver, directory = case
    kmer = "embedding_kmer_faults"
    (directory / "kmer.yaml").write_text(f"model:\n  name: kmer-2\n  property: {kmer}\n")
    esm_run = faults.Run(directory, *ARGS, env=server.env())
    kmer_run = faults.Run(
        directory, *ARGS, "--configfile", str(directory / "kmer.yaml"), env=server.env()
    )
    esm, other = esm_run.finish(), kmer_run.finish()
    assert esm.returncode == 0, esm.stderr[-4000:]
    assert other.returncode == 0, other.stderr[-4000:]

    state = graph_state(driver)
    assert {
        i: {k: v for k, v in p.items() if not k.startswith(kmer)} for i, p in state.items()
    } == reference["state"]
    adapter = load_adapter("kmer-2", "auto", "cpu")
    embeddable = [p for p in proteins if p["accession_id"] != "BAD_CHARACTERS"]
    expected = embed_sequences(adapter, [adapter.prepare(p["sequence"]) for p in embeddable])
    for protein, result in zip(embeddable, expected, strict=True):
        stored = state[protein["accession_id"]]
        np.testing.assert_array_equal(np.float32(stored[kmer]), result.vector)
        assert stored[f"{kmer}_model"] == "kmer-2"
    assert state["BAD_CHARACTERS"][f"{kmer}_rejected"]
