"""Two independent implementations agree on the same weights.

ESM-2: our transformers path against fair-esm's ESM2. ESM-C: transformers' native model
against EvolutionaryScale's esm package. fair-esm and the esm package both install the
module `esm`, and the esm package needs torch 2.11 and transformers < 5, so each oracle
runs in a virtual environment of its own, built with uv from files in this repository
(tests/oracles/requirements-fair-esm.txt; envs/esm.yaml's pins) and kept in .cache/venvs.
The esm environment also runs the ESM-3 adapter, which only works there.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from support.random_models import save_random_esmc

from protembed.adapters import load_adapter
from protembed.engine import EmbeddingKind, embed_sequences

REPO = Path(__file__).resolve().parents[1]
ORACLES = REPO / "tests" / "oracles"
VENVS = REPO / ".cache" / "venvs"

SEQUENCES = [
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQ",
    "M",
    "XBUZOACDEFGHIKLMNPQRSTVWY",
    "MSLNKIIVEGR" * 12,
]


def uv() -> str:
    for candidate in (Path(sys.executable).with_name("uv"), shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("uv builds the oracle environments: run `make bootstrap`, or put uv on PATH")


def oracle_python(name: str, requirements: list[str], also_hash: str = "") -> Path:
    """Python of a virtual environment holding `requirements`, built once per content."""
    digest = hashlib.sha256("\n".join([*requirements, also_hash]).encode()).hexdigest()[:12]
    venv = VENVS / f"{name}-{digest}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").is_file():
        for stale in VENVS.glob(f"{name}-*"):  # earlier pins, or a build that broke off
            shutil.rmtree(stale)
        subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        installed = subprocess.run(
            [uv(), "pip", "install", "-q", "--python", str(python), *requirements],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert installed.returncode == 0, installed.stderr[-4000:]
        (venv / ".complete").write_text("\n".join(requirements) + "\n")
    return python


def run_oracle(python: Path, script: str, *args) -> None:
    # The oracles never reach for a model hub: every model is built locally. protembed is
    # read from this checkout, as Snakemake's jobs in envs/esm.yaml read it; the random
    # models from tests/support.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])
    done = subprocess.run(
        [str(python), str(ORACLES / script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]


def residue_vectors(adapter, layer) -> list[np.ndarray]:
    kind = EmbeddingKind(layer, per_residue=True)
    return [r.residue_vectors for r in embed_sequences(adapter, SEQUENCES, kind=kind)]


@pytest.fixture(scope="module")
def sequences_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("oracle") / "sequences.json"
    path.write_text(json.dumps(SEQUENCES))
    return path


def test_esm2_matches_fair_esm_on_every_layer(tiny_esm2, sequences_file, tmp_path):
    requirements = ORACLES / "requirements-fair-esm.txt"
    python = oracle_python("fair-esm", ["-r", str(requirements)], requirements.read_text())
    run_oracle(python, "fair_esm2_reference.py", tiny_esm2, sequences_file, tmp_path / "fair.npz")
    fair = np.load(tmp_path / "fair.npz")
    adapter = load_adapter(str(tiny_esm2), "auto", "cpu")
    layers = adapter.num_layers
    for layer in range(layers + 1):
        for i, ours in enumerate(residue_vectors(adapter, layer)):
            np.testing.assert_allclose(ours, fair[f"seq{i}"][layer], atol=1e-5)
    # The per-protein kinds, computed from fair-esm's layers as their definitions say.
    expected = {
        "last": lambda reps: reps[layers].mean(0),
        "first": lambda reps: reps[1].mean(0),
        "all": lambda reps: reps[1:].mean(0).mean(0),
    }
    for layer, pooled in expected.items():
        ours = embed_sequences(adapter, SEQUENCES, kind=EmbeddingKind(layer))
        for i, result in enumerate(ours):
            np.testing.assert_allclose(result.vector, pooled(fair[f"seq{i}"]), atol=1e-5)


@pytest.fixture(scope="module")
def esm_oracle(tmp_path_factory, sequences_file) -> tuple[dict, Path]:
    """The esm package's environment from envs/esm.yaml, and everything the oracle wrote."""
    work = tmp_path_factory.mktemp("esm_oracle")
    esmc_dir = save_random_esmc(work / "tiny_esmc")
    pins = yaml.safe_load((REPO / "envs" / "esm.yaml").read_text())["dependencies"][-1]["pip"]
    python = oracle_python("esm", pins)
    proteins = REPO / "tests" / "data" / "synechocystis_every7th.fasta"
    run_oracle(
        python, "esm_reference.py", esmc_dir, sequences_file, work, work / "esm.npz", proteins
    )
    return dict(np.load(work / "esm.npz")), esmc_dir


def test_esmc_native_matches_the_esm_package(esm_oracle):
    oracle, esmc_dir = esm_oracle
    native = load_adapter(str(esmc_dir), "auto", "cpu")
    assert native.implementation == "transformers"
    assert str(oracle["adapter_implementation"]) == "esm"
    layers = native.num_layers
    # The package's `embeddings` is the last layer after the final norm; its hidden_states
    # are the blocks' outputs before it.
    last = residue_vectors(native, "last")
    for i in range(len(SEQUENCES)):
        np.testing.assert_allclose(last[i], oracle[f"esmc_embeddings{i}"], atol=1e-5)
    for layer in range(1, layers):
        for i, ours in enumerate(residue_vectors(native, layer)):
            np.testing.assert_allclose(ours, oracle[f"esmc_hidden{i}"][layer - 1], atol=1e-5)
    # Our adapter on the esm package's EsmcModel gives what it gives on transformers'.
    kinds = {"last": EmbeddingKind(), "first": EmbeddingKind("first"), "all": EmbeddingKind("all")}
    kinds |= {"layer0": EmbeddingKind(0), "last_l2": EmbeddingKind(normalize=True)}
    for name, kind in kinds.items():
        ours = np.stack([r.vector for r in embed_sequences(native, SEQUENCES, kind=kind)])
        np.testing.assert_allclose(ours, oracle[f"adapter_{name}"], atol=1e-5)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_esm3_stays_float32_on_cpus_and_refuses_bfloat16_there(esm_oracle):
    """ESM-3's half precision runs on GPUs only (adapters/esm3.py); tests/gpu_checks.py
    cannot hold it to float32 there, as the esm package's environment is not on the GPU
    machine: README, Precision."""
    oracle, _ = esm_oracle
    assert str(oracle["esm3_cpu_auto_precision"]) == "float32"  # even where bf16 is native
    assert len(oracle["esm3_cpu_auto"]) == 30
    np.testing.assert_array_equal(oracle["esm3_cpu_auto"], oracle["esm3_cpu_float32"])
    assert "precision bfloat16 is refused for esm3 on cpu" in str(
        oracle["esm3_cpu_bfloat16_refusal"]
    )


def test_esm3_adapter_in_the_esm_environment(esm_oracle):
    oracle, _ = esm_oracle
    layers = int(oracle["esm3_num_layers"])
    direct = [oracle[f"esm3_direct{i}"] for i in range(len(SEQUENCES))]
    for batched, single in zip(oracle["esm3_batched"], oracle["esm3_single"], strict=True):
        assert cosine(batched, single) > 0.9999
    np.testing.assert_allclose(oracle["esm3_with_mate"], oracle["esm3_single"][0], atol=1e-5)
    expected = {
        "last": lambda reps: reps[layers].mean(0),
        "first": lambda reps: reps[1].mean(0),
        "all": lambda reps: reps[1:].mean(0).mean(0),
        "layer0": lambda reps: reps[0].mean(0),
    }
    for name, pooled in expected.items():
        for i, reps in enumerate(direct):
            np.testing.assert_allclose(oracle[f"esm3_{name}"][i], pooled(reps), atol=1e-4)
    for vector, reps in zip(oracle["esm3_last_l2"], direct, strict=True):
        mean = reps[layers].mean(0)
        np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), atol=1e-5)

    # 3,000 residues in windows of 2,046: each residue averaged over the windows holding it.
    spans = oracle["esm3_long_spans"]
    assert str(oracle["esm3_long_handling"]) == f"chunked:{len(spans)}" and len(spans) == 2
    sums, counts = np.zeros((3000, direct[0].shape[-1])), np.zeros(3000)
    for w, (start, end) in enumerate(spans):
        sums[start:end] += oracle[f"esm3_long_window{w}"]
        counts[start:end] += 1
    assert counts.min() == 1
    np.testing.assert_allclose(
        oracle["esm3_long_vector"], (sums / counts[:, None]).mean(0), atol=1e-4
    )
