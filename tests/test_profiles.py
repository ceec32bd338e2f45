"""Every profile's dry run shows the whole plan, with each job's resources, without Neo4j.

The profiles' real runs (slurm, workstation) are in test_slurm.py."""

import os
import re

import pytest
from workflow_runner import REPO, run_workflow, write_config

PROFILES = REPO / "workflow" / "profiles"


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table as {rule: count}."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize("profile", ["default", "workstation", "slurm"])
def test_dry_run_shows_the_plan_without_touching_the_database(tmp_path, monkeypatch, profile):
    # No NEO4J_* at all: planning must not need the database or its credentials.
    for key in [k for k in os.environ if k.startswith("NEO4J_")]:
        monkeypatch.delenv(key)
    write_config(tmp_path, shards=5)
    result = run_workflow(tmp_path, "--dry-run", "--workflow-profile", str(PROFILES / profile))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert job_counts(output) == {
        "export_sequences": 1,
        "embed_shard": 5,
        "merge_shards": 1,
        "load_vectors": 1,
        "all": 1,
        "total": 9,
    }
    embed_jobs = re.findall(r"rule embed_shard:.*?resources: ([^\n]*)", output, re.S)
    assert len(embed_jobs) == 5
    for resources in embed_jobs:
        # First attempt: full token budget, the rule's memory and time.
        assert "gpu=1" in resources and "token_budget_divisor=1" in resources
        assert "mem_mb=16000" in resources and "runtime=240" in resources
    assert not (tmp_path / "results").exists()
