"""Where the demo finds the project's files, and where it may write.

The files (the workflow, its scripts, config.yaml, the demo's proteins, the Neo4j
launcher's sources) are under `project/`: in a wheel they are package data (pyproject.toml
lists them), in a checkout symbolic links to the checkout's own. Nothing is written there:
builds and downloads go to the user's cache, a run's results to the working directory.
"""

import os
from pathlib import Path

PROJECT = Path(__file__).with_name("project")
SNAKEFILE = PROJECT / "workflow" / "Snakefile"
DEMO_PROTEINS = PROJECT / "synechocystis_every7th.fasta"
LAUNCHER_SOURCES = PROJECT / "neo4j-launcher"


def cache_dir() -> Path:
    """PROTEMBED_CACHE, else $XDG_CACHE_HOME/protembed, else ~/.cache/protembed."""
    if os.environ.get("PROTEMBED_CACHE"):
        return Path(os.environ["PROTEMBED_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "protembed"
