"""The package's imports form a stack: no cycles, and the layers a notebook or a job builds
on (errors, sequences, settings, Parquet, adapters, engine, graph) never import the steps,
the notebook API, the report or the command line that are built on them. Imports inside
functions count too: a lazy import hides a cycle from Python, not from a reader."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import protembed

PACKAGE = Path(protembed.__file__).parent
TOP = {"protembed.steps", "protembed.notebook", "protembed.report", "protembed.cli"}
TOP |= {"protembed.preflight", "protembed.jobs", "protembed.demo"}
BELOW_THE_STEPS = (
    "protembed.errors",
    "protembed.names",
    "protembed.layout",
    "protembed.sequences",
    "protembed.config",
    "protembed.parquet_io",
    "protembed.sharding",
    "protembed.adapters",
    "protembed.engine",
    "protembed.embedder",
    "protembed.graph",
    "protembed.provenance",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    files = (p for p in PACKAGE.rglob("*.py") if "project" not in p.relative_to(PACKAGE).parts)
    return {module_name(p): p for p in files}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + [node.module or ""]).rstrip(".") if node.level else node.module
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known
            # `from . import graph` imports the submodule, not the package's __init__.
            found |= submodules or ({target} & known)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names} & known
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def test_the_reader_sees_every_module():
    graph = import_graph()
    assert {"protembed.steps", "protembed.graph.writes", "protembed.adapters.esm2"} <= set(graph)
    assert "protembed.graph.session" in graph["protembed.graph.writes"]


def test_no_module_imports_itself_round_a_cycle():
    try:
        TopologicalSorter(import_graph()).prepare()
    except CycleError as error:
        raise AssertionError(f"an import cycle: {' -> '.join(error.args[1])}") from None


def test_the_lower_layers_never_import_what_is_built_on_them():
    graph = import_graph()
    upward = {
        (name, target)
        for name, targets in graph.items()
        if name.startswith(BELOW_THE_STEPS)
        for target in targets
        if any(target == top or target.startswith(top + ".") for top in TOP)
    }
    assert not upward, f"imports upward: {sorted(upward)}"
