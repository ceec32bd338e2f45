"""The slurm and workstation profiles running the whole workflow against the real local
Neo4j: on a real SLURM (one node, two fake GPUs) the embed jobs ask for a GPU, never more
run at once than there are GPUs, and a cancelled job is retried with more; on a workstation
with two GPUs two embed jobs run at once, each on a GPU of its own; both end in the same
graph. One test, because each run costs minutes here and the comparison needs both."""

import re
import subprocess
import threading
import time
from datetime import datetime

import numpy as np
import pyarrow.parquet as pq
from support import faults
from support.slurm_cluster import SlurmCluster, ensure_installed, max_concurrency
from workflow_runner import REPO, SNAKEMAKE, run_workflow, write_config

from protembed import graph

GPUS = 2
SHARDS = 4
PROPERTY = "vec"


def seed(driver, synechocystis) -> None:
    proteins = [p for p in synechocystis if len(p["sequence"]) < 400][:30]
    extras = [
        {"accession_id": "DUPLICATE", "sequence": proteins[0]["sequence"]},
        {"accession_id": "BAD_CHARACTERS", "sequence": "MKT1AYZ"},
    ]
    graph.add_proteins(graph.ProteinGraph(driver), proteins + extras)


def reset(driver) -> None:
    driver.execute_query("MATCH (n) DETACH DELETE n")
    driver.execute_query(f"DROP INDEX Protein_{PROPERTY} IF EXISTS")


def graph_state(driver) -> dict[str, dict]:
    """Every protein's properties, without the times at which they were written."""
    records, _, _ = driver.execute_query("MATCH (p:Protein) RETURN properties(p) AS p")
    return {
        r["p"]["accession_id"]: {k: v for k, v in r["p"].items() if not k.endswith("_created")}
        for r in records
    }


def vector_index(driver) -> list:
    records, _, _ = driver.execute_query(
        "SHOW VECTOR INDEXES YIELD name, state, labelsOrTypes, properties, options "
        "RETURN name, state, labelsOrTypes, properties, options.indexConfig AS config"
    )
    return [dict(r) for r in records]


def log_interval(path) -> tuple[datetime, datetime]:
    """When a job's log began and ended."""
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", path.read_text(), re.M)
    return tuple(datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in (stamps[0], stamps[-1]))


def most_at_once(intervals) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def cancel_first_running_embed_job(cluster: SlurmCluster, cancelled: list, stop: threading.Event):
    """Cancel one embed job once it runs, as a preemption would: Snakemake must retry it."""
    while not stop.is_set():
        queue = cluster.run("squeue", "-h", "-t", "RUNNING", "-o", "%i %k", check=False)
        for line in queue.splitlines():
            job_id, _, comment = line.partition(" ")
            if comment.startswith("rule_embed"):
                cluster.run("scancel", job_id)
                cancelled.append(int(job_id))
                return
        time.sleep(0.5)


def test_slurm_and_workstation_profiles_end_in_the_same_graph(
    tmp_path, tiny_esm2, database, synechocystis, neo4j_env
):
    ensure_installed()
    seed(database, synechocystis)
    runs = {}
    for name in ("slurm", "workstation"):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        # The cluster's compute nodes here can reach Neo4j, but export/merge/load as local
        # rules keep the number of (slow) SLURM jobs down to the embed jobs.
        write_config(
            runs[name],
            shards=SHARDS,
            model={"name": str(tiny_esm2), "property": PROPERTY},
            execution={"local_graph_steps": True},
        )
    # One thread per embed job in both runs, so that both do the same arithmetic (and the
    # CPUs are never what limits how many embed jobs run at once).
    one_thread = ("--set-threads", "embed_shard=1")

    with SlurmCluster().start(tmp_path / "cluster", gpus=GPUS, cpus=4 * GPUS) as cluster:
        cancelled: list[int] = []
        stop = threading.Event()
        canceller = threading.Thread(
            target=cancel_first_running_embed_job, args=(cluster, cancelled, stop)
        )
        canceller.start()
        command = [
            # SIGINT, not SIGTERM: on SIGINT the plugin cancels its jobs before it exits.
            *("timeout", "-s", "INT", "-k", "30", "480"),
            str(SNAKEMAKE),
            *("--snakefile", str(REPO / "workflow" / "Snakefile")),
            *("--directory", str(runs["slurm"])),
            *("--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm")),
            *one_thread,
            # This test cluster: no accounting database (so no accounts, and job status
            # from squeue), one partition, little memory, and impatience.
            "--slurm-no-account",
            *("--slurm-status-command", "squeue"),
            *("--slurm-init-seconds-before-status-checks", "1"),
            *("--latency-wait", "5"),
            *("--set-resources", "embed_shard:slurm_partition=main"),
            "embed_shard:mem_mb=1000*attempt",
        ]
        try:
            result = subprocess.run(command, env=cluster.env(), capture_output=True, text=True)
        finally:
            stop.set()
            canceller.join()
        records = cluster.job_records()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    # Only the embed jobs went through SLURM, each asking for one GPU.
    assert records and all(r.comment.startswith("rule_embed_shard") for r in records)
    assert all(r.gpus == 1 for r in records)
    # Never more embed jobs at once than GPUs, and the GPUs (not the CPUs) were the limit.
    assert max_concurrency(records) == GPUS

    # The cancelled job was resubmitted with twice the memory and time; its shard's log
    # says the retry halved the token budget.
    assert len(cancelled) == 1
    first = next(r for r in records if r.job_id == cancelled[0])
    retry = next(r for r in records if r.comment == first.comment and r.job_id > first.job_id)
    assert first.state == "CANCELLED" and retry.state == "COMPLETED"
    assert (first.raw["MinMemoryNode"], retry.raw["MinMemoryNode"]) == ("1000M", "2000M")
    assert (first.raw["TimeLimit"], retry.raw["TimeLimit"]) == ("04:00:00", "08:00:00")
    assert sum(r.state == "COMPLETED" for r in records) == SHARDS
    shard = re.fullmatch(r"rule_embed_shard_wildcards_(\d+)", retry.comment)[1]
    logs = runs["slurm"] / "results" / PROPERTY / "logs" / "embed"
    for log in logs.glob("shard-*.log"):
        text = log.read_text()
        divisor = 2 if log.name == f"shard-{shard}.log" else 1
        assert f"token budget divided by {divisor}" in text, text
        # SLURM chose each job's GPU; the job kept it.
        assert re.search(r"CUDA_VISIBLE_DEVICES='\d' was set for this job", text), text

    # The password reaches the jobs in their environment only: no file of the run (results,
    # logs, the plugin's job logs under .snakemake) and nothing the run printed holds it.
    # (slurmctld keeps each job's environment in its state directory, as any SLURM does;
    # that directory is the cluster's, readable by its administrators only.)
    password = neo4j_env["NEO4J_PASSWORD"]
    assert password not in result.stdout + result.stderr
    assert not faults.files_holding(runs["slurm"], password)

    on_slurm, index_on_slurm = graph_state(database), vector_index(database)
    reset(database)
    seed(database, synechocystis)
    # The profile allows gpu=2; the run may use two GPUs, which each embed job must share
    # out by leasing one. 4 cores: the CPUs would allow four jobs at once.
    workstation = run_workflow(
        runs["workstation"],
        *("--workflow-profile", str(REPO / "workflow" / "profiles" / "workstation")),
        *("--cores", "4"),
        *one_thread,
        env={"CUDA_VISIBLE_DEVICES": "0,1", "TMPDIR": str(tmp_path)},
    )
    assert workstation.returncode == 0, workstation.stderr[-4000:]
    assert not faults.files_holding(runs["workstation"], password)
    on_workstation, index_on_workstation = graph_state(database), vector_index(database)

    logs = sorted((runs["workstation"] / "results" / PROPERTY / "logs" / "embed").glob("*.log"))
    intervals = [log_interval(log) for log in logs]
    assert len(logs) == SHARDS and most_at_once(intervals) == GPUS
    devices = [re.search(r"leased GPU (\d) of", log.read_text())[1] for log in logs]
    for i, (start, end) in enumerate(intervals):
        for j in range(i):
            if start < intervals[j][1] and intervals[j][0] < end:
                assert devices[i] != devices[j], "two jobs ran on one GPU at the same time"

    assert index_on_slurm == index_on_workstation and index_on_workstation[0]["state"] == "ONLINE"
    assert on_slurm.keys() == on_workstation.keys() and len(on_workstation) == 32
    assert PROPERTY not in on_workstation["BAD_CHARACTERS"]
    shard_file = (
        runs["workstation"] / "results" / PROPERTY / "export" / "shards" / f"shard-{shard}.parquet"
    )
    retried = {i for ids in pq.read_table(shard_file)["ids"].to_pylist() for i in ids}
    for protein_id, properties in on_workstation.items():
        if protein_id in retried and PROPERTY in properties:
            # Half the token budget makes other batches: the same vectors up to rounding.
            properties, slurm_properties = dict(properties), dict(on_slurm[protein_id])
            np.testing.assert_allclose(
                slurm_properties.pop(PROPERTY), properties.pop(PROPERTY), rtol=0, atol=1e-6
            )
            assert slurm_properties == properties, protein_id
        else:
            assert on_slurm[protein_id] == properties, protein_id
