"""Checks that need an NVIDIA GPU: run by bench/gpu_check.sh (`pytest tests/gpu_checks.py`).

The file name keeps it out of the default test run (pytest collects test_*.py); named on
the command line it runs, and without CUDA every check fails saying so. They need no Neo4j,
no Java and no snakemake: a bare GPU machine runs them (bench/gpu_check.sh).
"""

import logging
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
import torch
from support.random_models import (
    cached_random_esm2,
    save_random_esmc,
    save_random_prott5,
)

from protembed import Embedder, parquet_io, steps
from protembed.adapters import load_adapter
from protembed.config import load_settings
from protembed.engine import embed_sequences
from protembed.gpu_lease import lease_gpu

HALF = {"esm2": "float16", "esmc": "bfloat16", "prott5": "bfloat16"}


@pytest.fixture(autouse=True)
def cuda():
    if not torch.cuda.is_available():
        pytest.fail("these checks need a CUDA device, and torch sees none")


@pytest.fixture(scope="module")
def model_dirs(tiny_esm2, tmp_path_factory):
    work = tmp_path_factory.mktemp("gpu_models")
    return {
        "esm2": tiny_esm2,
        "esmc": save_random_esmc(work / "esmc"),
        "prott5": save_random_prott5(work / "prott5"),
    }


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("family", HALF)
def test_auto_half_precision_on_cuda_against_float32(family, model_dirs, synechocystis):
    sequences = [p["sequence"] for p in synechocystis[:60]]
    name = str(model_dirs[family])
    reference = Embedder(name, device="cpu", precision="float32", progress=False)
    on_gpu = Embedder(name, device="cuda", progress=False)
    assert on_gpu.precision == HALF[family]
    assert cosines(on_gpu.encode(sequences), reference.encode(sequences)).min() >= 0.9999
    fp32_gpu = Embedder(name, device="cuda", precision="float32", progress=False)
    np.testing.assert_allclose(fp32_gpu.encode(sequences), reference.encode(sequences), atol=1e-4)


@pytest.mark.parametrize("family", HALF)
def test_batched_equals_single_on_cuda(family, model_dirs, synechocystis):
    sequences = [p["sequence"] for p in synechocystis[:60]]
    name = str(model_dirs[family])
    for precision in ("float32", HALF[family]):
        batched = Embedder(name, device="cuda", precision=precision, tokens_per_batch=16384)
        single = Embedder(name, device="cuda", precision=precision, tokens_per_batch=1)
        assert cosines(batched.encode(sequences), single.encode(sequences)).min() > 0.9999


def test_out_of_memory_halves_the_budget_and_loses_nothing(tmp_path, synechocystis, caplog):
    model = cached_random_esm2(tmp_path / "esm2_35M", layers=12, hidden=480, heads=20)
    sequences = [p["sequence"][:1022] for p in synechocystis[:200]]
    expected = Embedder(str(model), device="cuda", tokens_per_batch=4096).encode(sequences)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    # Room for the weights and a few thousand tokens, not for a 2M-token batch.
    torch.cuda.set_per_process_memory_fraction(
        (torch.cuda.memory_allocated() + 2 * 1024**3) / total
    )
    try:
        with caplog.at_level(logging.WARNING, logger="protembed"):
            squeezed = Embedder(str(model), device="cuda", tokens_per_batch=2_000_000)
            got = squeezed.encode(sequences)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert "token budget halved" in caplog.text
    assert cosines(got, expected).min() > 0.9999


def test_the_lease_points_cuda_at_one_gpu(tmp_path):
    job = (
        "import os, torch\nfrom pathlib import Path\n"
        "from protembed.gpu_lease import lease_gpu\n"
        f"lease = lease_gpu('cuda', lock_dir=Path({str(tmp_path)!r}))\n"
        "print(lease.device, os.environ['CUDA_VISIBLE_DEVICES'], torch.cuda.device_count())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    out = subprocess.run(
        [sys.executable, "-c", job], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert out[0] == out[1] and out[2] == "1"
    assert (tmp_path / f"gpu-{out[0]}.lock").exists()


@pytest.mark.parametrize("family", ["esm2", "esmc"])
def test_packed_varlen_rows_equal_padded_batches(family, model_dirs, synechocystis):
    sequences = [p["sequence"][:1022] for p in synechocystis[:120]]
    packed = load_adapter(str(model_dirs[family]), family, "cuda", "auto")
    assert packed.batching == "packed (varlen_attn)"
    padded = load_adapter(str(model_dirs[family]), family, "cuda", "auto")
    padded.model.config._attn_implementation = "sdpa"
    padded.batching = "padded"
    prepared = [packed.prepare(s) for s in sequences]
    a = embed_sequences(packed, prepared, tokens_per_batch=8192, max_residues=300, overlap=50)
    b = embed_sequences(padded, prepared, tokens_per_batch=8192, max_residues=300, overlap=50)
    got = np.stack([r.vector for r in a])
    expected = np.stack([r.vector for r in b])
    assert cosines(got, expected).min() >= 0.9999


def test_one_embed_job_on_an_exported_shard(tmp_path, tiny_esm2, synechocystis):
    proteins = {p["accession_id"]: p["sequence"] for p in synechocystis[:200]}
    shard = tmp_path / "shard-0.parquet"
    rows = {
        "sequence_sha256": [f"sha-{i}" for i in proteins],
        "sequence": list(proteins.values()),
        "ids": [[i] for i in proteins],
    }
    parquet_io.write_table(pa.table(rows, schema=parquet_io.SHARD_SCHEMA), shard)
    model = load_settings({"model": {"name": str(tiny_esm2), "device": "cuda"}}).model
    out = [tmp_path / name for name in ("embedded.parquet", "rejects.parquet")]
    with lease_gpu("cuda", lock_dir=tmp_path / "locks") as lease:
        summary = steps.embed(model, shard, *out)
    assert lease.device is not None
    assert summary["embedded"] + summary["rejected_proteins"] == len(proteins)
    metadata = parquet_io.read_metadata(out[0])
    assert metadata["precision"] == "float16"
    assert metadata["batching"] == "packed (varlen_attn)"
    assert metadata["throughput"]["tokens_per_batch"] >= 1024  # sized to the device
