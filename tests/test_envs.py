"""The conda environments for `--sdm conda`. Conda channels are unreachable here, so the
files are not built: they must parse, pin exactly what the lock pins, and hold what their
rules import."""

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_runner import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))
# EvolutionaryScale's esm package needs torch 2.11 and transformers < 5: its environment is
# a stack of its own that the main lock cannot hold (see the README's model table).
SEPARATE_STACKS = {"esm.yaml"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions() -> dict[str, str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    pins = (re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line) for line in lines)
    return {normalise(m[1]): m[2] for m in pins if m}


def pip_requirements(env_file) -> list[str]:
    env = yaml.safe_load(env_file.read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


@pytest.mark.parametrize("env_file", ENVS, ids=lambda p: p.name)
def test_env_file_parses_and_pins_what_the_lock_pins(env_file):
    env = yaml.safe_load(env_file.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda_packages = [d for d in env["dependencies"] if isinstance(d, str)]
    assert conda_packages == ["python=3.12", "pip"]
    pins = [PIN.match(requirement) for requirement in pip_requirements(env_file)]
    if env_file.name in SEPARATE_STACKS:
        return
    # Snakemake copies an env file into .snakemake/conda/ before building it, so a local
    # path in it (`--editable ..`) would point nowhere; every entry is a registry pin.
    assert all(pins), f"{env_file.name}: only exact name==version pins belong here"
    lock = locked_versions()
    wrong = {
        m[1]: (m[2], lock.get(normalise(m[1]))) for m in pins if lock.get(normalise(m[1])) != m[2]
    }
    assert not wrong, f"{env_file.name} pins differ from requirements.lock (env, lock): {wrong}"


def test_every_env_file_a_rule_names_exists():
    for rule_file in (REPO / "workflow" / "rules").glob("*.smk"):
        for name in re.findall(r"envs/([\w-]+\.yaml)", rule_file.read_text()):
            assert (REPO / "envs" / name).is_file(), f"{rule_file.name} names envs/{name}"


# Imports what the export, merge and load scripts import, with the deep-learning stack made
# unimportable, and prints the files of the protembed modules that this loaded.
GRAPH_STEP_IMPORTS = """
import sys
for blocked in ("torch", "transformers", "sentencepiece", "esm"):
    sys.modules[blocked] = None
import protembed.jobs, protembed.steps
print(*(m.__file__ for name, m in sys.modules.items() if name.startswith("protembed")))
"""


def module_level_imports(path) -> set[str]:
    """Top-level names of the packages a module imports when it is loaded."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"protembed"}


def test_graph_env_holds_what_export_merge_and_load_import_and_no_torch():
    result = subprocess.run(
        [sys.executable, "-c", GRAPH_STEP_IMPORTS], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"graph steps need the deep-learning stack:\n{result.stderr}"
    packages = set().union(*(module_level_imports(Path(f)) for f in result.stdout.split()))
    distributions = importlib.metadata.packages_distributions()
    needed = {normalise(d) for package in packages for d in distributions[package]}
    graph_env = {normalise(PIN.match(r)[1]) for r in pip_requirements(REPO / "envs" / "graph.yaml")}
    assert needed and needed <= graph_env, f"envs/graph.yaml lacks {needed - graph_env}"
    assert not {"torch", "transformers"} & graph_env
