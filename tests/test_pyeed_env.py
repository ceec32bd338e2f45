"""protembed installed beside PyEED: .venv-pyeed holds neomodel 7 (neo4j 6.1.x), PyEED's own
runtime dependencies and protembed's, resolved together from tests/support/pyeed/
requirements.in, and protembed's graph steps run there, in one process with neomodel, on
both server lines."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_real_graphs import pyeed_embeddings

import protembed

REPO = Path(__file__).resolve().parents[1]
PYEED = REPO / "tests" / "support" / "pyeed"
PYEED_PYTHON = REPO / ".venv-pyeed" / "bin" / "python"
PYEED_INDEX = "vector_index_Protein_embedding"

INSTALLED = """
import importlib.metadata, json
print(json.dumps({d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}))
"""


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyeed_python() -> Path:
    if not PYEED_PYTHON.is_file():
        pytest.fail(
            f"{PYEED_PYTHON} is missing: run `make bootstrap` (it builds the PyEED "
            "environment from tests/support/pyeed/requirements.lock)"
        )
    return PYEED_PYTHON


def run_there(*args) -> subprocess.CompletedProcess:
    """Run in .venv-pyeed, which must find protembed installed, not on a path we set."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [pyeed_python(), *args], capture_output=True, text=True, timeout=600, env=env
    )


def test_the_pyeed_environment_is_its_lock_plus_this_checkouts_protembed():
    done = run_there("-c", INSTALLED)
    assert done.returncode == 0, done.stderr[-3000:]
    installed = {normalise(name): version for name, version in json.loads(done.stdout).items()}
    lines = (PYEED / "requirements.lock").read_text().splitlines()
    pins = (re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line) for line in lines)
    locked = {normalise(m[1]): m[2] for m in pins if m}
    # Installing protembed with dependency resolution added nothing: the lock, resolved
    # with pyproject.toml, already held every requirement of ours at a version we accept.
    assert installed.pop("protembed") == protembed.__version__
    assert installed == locked
    assert locked["neomodel"] == "7.0.0" and locked["neo4j"].startswith("6.1.")
    assert locked["neo4j-rust-ext"].startswith(locked["neo4j"] + ".")
    assert "biopython" in locked  # PyEED's own pin (< 1.84), which ours no longer meets
    check = subprocess.run(
        [Path(sys.executable).with_name("uv"), "pip", "check", "--python", PYEED_PYTHON],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_pyeed_session_embeds_into_pyeeds_index_with_protembed(tmp_path, database, neo4j_env):
    done = run_there(PYEED / "use_protembed.py", tmp_path)  # NEO4J_* from neo4j_env
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout)
    versions = seen["versions"]
    assert versions["neomodel"] == "7.0.0" and versions["neo4j"].startswith("6.1.")
    assert versions["neo4j-rust-ext"].startswith(versions["neo4j"] + ".")
    assert seen["rust_extension_loaded"]
    assert Path(seen["protembed"]).is_relative_to(REPO / "src")

    summary = seen["summary"]
    assert summary["exported"] == len(seen["saved"]) == 20
    assert summary["load"]["vector_index"] == PYEED_INDEX
    assert summary["load"]["written"] == 20 and summary["load"]["neo4j_rust_ext"]
    query = seen["query"]
    stored = pyeed_embeddings(database)
    assert stored.keys() == set(seen["saved"])
    # What neomodel read back is the vector protembed wrote.
    assert len(seen["neomodel_vector"]) == 1280
    np.testing.assert_array_equal(np.float32(seen["neomodel_vector"]), np.float32(stored[query]))
    # The index is approximate, and TEM variants a residue apart score within rounding of
    # each other: each query's 5 are among the exact 10 nearest, not in their order. Ours
    # leaves the query out; PyEED's keeps it, at Neo4j's cosine score (1 + cos) / 2 of 1.
    exact = exact_ranking(stored, query)
    ours = dict(seen["neighbours"])
    assert len(ours) == 5 and query not in ours and ours.keys() <= set(exact[1:11])
    pyeeds = dict(seen["pyeed_neighbours"])
    assert len(pyeeds) == 5 and pyeeds.keys() <= set(exact[:10])
    assert pyeeds[query] == pytest.approx(1, abs=1e-3)


def exact_ranking(vectors: dict[str, list[float]], query: str) -> list[str]:
    ids = list(vectors)
    matrix = np.array([vectors[i] for i in ids])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return [ids[i] for i in np.argsort(-(matrix @ matrix[ids.index(query)]))]
