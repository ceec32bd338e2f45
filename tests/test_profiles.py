"""Every profile's dry run shows the plan, with each job's resources, without Neo4j.

The profiles' real runs (slurm, workstation) are in test_slurm.py."""

import json
import os
import re

import pytest
from workflow_runner import REPO, run_workflow, write_config

PROFILES = REPO / "workflow" / "profiles"


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table as {rule: count}."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def planted_export(directory, shards: int) -> None:
    """What export_sequences leaves when it made `shards` shards."""
    export = directory / "results" / "embedding_esm2_t33_650M_UR50D" / "export"
    (export / "shards").mkdir(parents=True)
    for shard in range(shards):
        (export / "shards" / f"shard-{shard}.parquet").touch()
    manifest = {"shards": [{"path": str(p)} for p in sorted((export / "shards").iterdir())]}
    (export / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("profile", ["default", "workstation", "slurm"])
def test_dry_run_shows_the_plan_without_touching_the_database(tmp_path, monkeypatch, profile):
    # No NEO4J_* at all: planning must not need the database or its credentials.
    for key in [k for k in os.environ if k.startswith("NEO4J_")]:
        monkeypatch.delenv(key)
    write_config(tmp_path, shards=5)
    profile_args = ("--workflow-profile", str(PROFILES / profile))
    result = run_workflow(tmp_path, "--dry-run", *profile_args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    # The embed jobs are the export's to decide (a checkpoint): none is planned before it.
    assert job_counts(output) == {
        "export_sequences": 1,
        "merge_shards": 1,
        "load_vectors": 1,
        "snapshot_graph": 1,
        "all": 1,
        "total": 5,
    }
    assert "DAG of jobs will be updated after completion" in output
    assert not (tmp_path / "results").exists()

    # Once the export has made its shards (3 of the 5 allowed), the plan shows their jobs.
    planted_export(tmp_path, 3)
    result = run_workflow(tmp_path, "--dry-run", *profile_args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert job_counts(output) == {
        "embed_shard": 3,
        "merge_shards": 1,
        "load_vectors": 1,
        "snapshot_graph": 1,
        "all": 1,
        "total": 7,
    }
    embed_jobs = re.findall(r"rule embed_shard:.*?resources: ([^\n]*)", output, re.S)
    assert len(embed_jobs) == 3
    for resources in embed_jobs:
        # First attempt: full token budget, the rule's memory and time.
        assert "gpu=1" in resources and "token_budget_divisor=1" in resources
        assert "mem_mb=16000" in resources and "runtime=240" in resources
