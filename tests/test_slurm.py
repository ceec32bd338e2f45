"""The slurm and workstation profiles running the whole workflow against the real local
Neo4j: on a real SLURM (one node, two fake GPUs) the embed jobs ask for a GPU, never more
run at once than there are GPUs, and a cancelled job is retried with more; on a workstation
with two GPUs two embed jobs run at once, each on a GPU of its own; both end in the same
graph. One test, because each run costs minutes here and the comparison needs both.

Then many shards: 50 embed jobs of one run through the slurm profile, shards cut by cost;
why the profile keeps SLURM job arrays off (the pinned plugin's arrays fail tasks whose
first task has not finished); and the refusal of a run that would hang with arrays on."""

import json
import re
import subprocess
import threading
import time
from datetime import datetime

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import faults
from support.slurm_cluster import SlurmCluster, ensure_installed, max_concurrency
from workflow_runner import REPO, SNAKEMAKE, run_workflow, write_config

from protembed import graph
from protembed.demo.local_neo4j import LTS
from protembed.sequences import sequence_sha256
from protembed.sharding import POSITIONS, ShardSpill, position, sequence_cost

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
                cancelled.append(job_id)  # N, or N_i for a task of array N
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
        cancelled: list[str] = []
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
    first = next(r for r in records if r.job_id == int(cancelled[0]))
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


MANY_SHARDS = 50


def slurm_run(directory, *args: str, timeout_s: int = 900) -> list[str]:
    """The snakemake command of a run with the slurm profile on this test cluster."""
    return [
        # SIGINT, not SIGTERM: on SIGINT the plugin cancels its jobs before it exits.
        *("timeout", "-s", "INT", "-k", "30", str(timeout_s)),
        str(SNAKEMAKE),
        *("--snakefile", str(REPO / "workflow" / "Snakefile")),
        *("--directory", str(directory)),
        *("--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm")),
        *("--set-threads", "embed_shard=1"),
        "--slurm-no-account",
        *("--slurm-status-command", "squeue"),
        *("--slurm-init-seconds-before-status-checks", "1"),
        *("--latency-wait", "5"),
        *("--set-resources", "embed_shard:slurm_partition=main"),
        "embed_shard:mem_mb=1000*attempt",
        *args,
    ]


# On one server line: the graph side of a SLURM run is the workstation's, which the test
# above runs on both lines; this one is about the jobs, and takes 3.5 minutes a line.
@pytest.mark.parametrize("neo4j_server", [LTS], indirect=True, ids=[f"neo4j-{LTS}"])
def test_fifty_shards_through_slurm_cost_about_the_same_and_all_load(
    tmp_path, database, synechocystis, neo4j_env
):
    """The slurm profile as a user runs it, on 50 shards of the k-mer baseline: 50 embed
    jobs through SLURM, each completed once, every shard embedded and every protein loaded;
    the shards, cut by cost, cost about the same, where equal ranges of the hash would not."""
    ensure_installed()
    graph.add_proteins(graph.ProteinGraph(database), synechocystis)  # 502 proteins
    write_config(
        tmp_path,
        shards=MANY_SHARDS,
        model={"name": "kmer-2", "property": PROPERTY, "device": "cpu"},
        execution={"local_graph_steps": True},
    )
    # Eight fake GPUs and cores: eight embed jobs at once, one thread each.
    with SlurmCluster().start(tmp_path / "cluster", gpus=8, cpus=8) as cluster:
        began = time.monotonic()
        result = subprocess.run(
            slurm_run(tmp_path), env=cluster.env(), capture_output=True, text=True
        )
        seconds = time.monotonic() - began
        records = cluster.job_records()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    print(f"{MANY_SHARDS} shards through SLURM: {seconds:.0f} s")

    shards = [re.fullmatch(r"rule_embed_shard_wildcards_(\d+)", r.comment)[1] for r in records]
    assert sorted(map(int, shards)) == list(range(MANY_SHARDS))
    assert all(r.state == "COMPLETED" and r.gpus == 1 for r in records)
    assert max_concurrency(records) > 1

    run = tmp_path / "results" / PROPERTY
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert len(manifest["shards"]) == MANY_SHARDS
    for shard in range(MANY_SHARDS):
        assert pq.read_table(run / "embed" / f"shard-{shard}.parquet").num_rows > 0, shard
    state = graph_state(database)
    assert len(state) == len(synechocystis)
    embedded = [p for p in state.values() if PROPERTY in p]
    assert all(PROPERTY in p or f"{PROPERTY}_rejected" in p for p in state.values())
    assert len(embedded) > 0.95 * len(state), len(embedded)

    # The shards' costs (from the export's manifest) against equal ranges of the hash on
    # the same sequences: 1.29 against 10.9, the costliest shard over the least (measured).
    costs = [shard["cost"] for shard in manifest["shards"]]
    by_hash = np.zeros(MANY_SHARDS)
    for sequence in {p["sequence"] for p in synechocystis}:
        where = position(sequence_sha256(sequence)) * MANY_SHARDS // POSITIONS
        by_hash[where] += sequence_cost(np.array([len(sequence)]))[0]
    assert max(costs) / min(costs) < 1.5
    assert by_hash.max() / by_hash.min() > 3


ARRAY_SHARDS = 4


def planted_export(directory, proteins: list[dict], shards: int) -> None:
    """What export_sequences leaves for `proteins` in `shards` shards (no Neo4j needed)."""
    export = directory / "results" / PROPERTY / "export"
    paths = [export / "shards" / f"shard-{i}.parquet" for i in range(shards)]
    with ShardSpill(export) as spill:
        for protein in proteins:
            sequence = protein["sequence"]
            spill.add(sequence_sha256(sequence), sequence, protein["accession_id"])
        summaries = spill.write_shards(paths)
    (export / "manifest.json").write_text(json.dumps({"shards": summaries}))


def test_with_the_pinned_plugin_array_tasks_fail_for_the_first_tasks_outputs(
    tmp_path, synechocystis
):
    """Why the slurm profile keeps SLURM job arrays off: the embed jobs of 4 shards as one
    array, the first task cancelled as it starts (as a preemption would). Only that task
    should fail; with snakemake-executor-plugin-slurm 2.8.0 and -jobstep 0.6.1 other tasks,
    which embedded their own shards, fail too, each checking the first task's outputs (the
    plugin's issue 447). When this test fails because they all complete, the plugin is
    fixed: turn slurm-array-jobs on in the slurm profile and assert the opposite here."""
    ensure_installed()
    write_config(
        tmp_path,
        shards=ARRAY_SHARDS,
        model={"name": "kmer-2", "property": PROPERTY, "device": "cpu"},
        execution={"local_graph_steps": True},
    )
    planted_export(tmp_path, synechocystis[:40], ARRAY_SHARDS)
    targets = [f"results/{PROPERTY}/embed/shard-{i}.parquet" for i in range(ARRAY_SHARDS)]
    with SlurmCluster().start(tmp_path / "cluster", gpus=ARRAY_SHARDS, cpus=8) as cluster:
        cancelled: list[str] = []
        stop = threading.Event()
        canceller = threading.Thread(
            target=cancel_first_running_embed_job, args=(cluster, cancelled, stop)
        )
        canceller.start()
        # No retries: the cancelled task stays failed; --no-hooks: no Neo4j to check.
        command = slurm_run(
            tmp_path,
            "--slurm-array-jobs",
            "embed_shard",
            "--retries",
            "0",
            "--no-hooks",
            timeout_s=300,
        )
        try:
            result = subprocess.run(
                [*command, *targets], env=cluster.env(), capture_output=True, text=True
            )
        finally:
            stop.set()
            canceller.join()
        records = cluster.job_records()
    output = result.stdout[-3000:] + result.stderr[-3000:]
    # The embed jobs went as one array, and one task was cancelled.
    assert {r.raw.get("ArrayJobId") for r in records} == {cancelled[0].split("_")[0]}, output
    states = {r.raw["ArrayTaskId"]: r.state for r in records}
    assert states.pop(cancelled[0].split("_")[1]) == "CANCELLED", output
    # The plugin's bug: other tasks fail, and for that reason only.
    array = cancelled[0].split("_")[0]
    failed = [task for task, state in states.items() if state == "FAILED"]
    assert failed, f"every other array task completed: the plugin's issue 447 is fixed? {states}"
    for task in failed:
        log = tmp_path / ".snakemake" / "slurm_logs" / "rule_embed_shard" / f"{array}_{task}.log"
        assert "MissingOutputException" in log.read_text(), log.read_text()[-3000:]


def test_more_shards_than_job_slots_with_arrays_is_refused_before_any_job(tmp_path):
    """With arrays on, the SLURM plugin would hold back embed jobs handed to it in a smaller
    batch than all that are ready, and the run would hang: one line, before any job."""
    write_config(tmp_path, shards=5)
    command = [
        *("timeout", "120"),
        str(SNAKEMAKE),
        *("--snakefile", str(REPO / "workflow" / "Snakefile")),
        *("--directory", str(tmp_path)),
        *("--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm")),
        *("--slurm-array-jobs", "embed_shard", "--jobs", "3", "--slurm-no-account"),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert (
        "protembed: error: shards: 5 is more than the 3 jobs snakemake may have at once "
        "(--jobs) while embed jobs go to SLURM as arrays" in result.stderr
    ), result.stderr[-2000:]
    assert not (tmp_path / "results").exists()
