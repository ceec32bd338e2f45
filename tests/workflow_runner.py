"""Run the Snakemake workflow as a user would: the real CLI, in a directory of its own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def write_config(directory: Path, **sections) -> Path:
    """The repository's config.yaml with `sections` merged over it, and one embed job per
    protein allowed: the tests' graphs are far smaller than the default floor, under which
    every run would be one shard."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["min_proteins_per_shard"] = 1
    for key, value in sections.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_workflow(
    directory: Path,
    *args: str,
    env: dict | None = None,
    timeout: float = 600,
    snakefile: Path = REPO / "workflow" / "Snakefile",
) -> subprocess.CompletedProcess:
    command = [
        str(SNAKEMAKE),
        "--snakefile",
        str(snakefile),
        "--directory",
        str(directory),
        "--cores",
        "2",
        *args,
    ]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=directory,  # nothing may depend on the directory pytest runs in (the repo's)
    )


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
