"""The benchmarks must keep working: the CPU one on four proteins, the GPU one on the CPU
with tiny models, and the GPU one's FLOP count against the published per-token figures
(models built on the meta device)."""

import importlib.util
import subprocess
import sys

import pytest
import torch
from conftest import DATA, REPO
from transformers import EsmConfig, EsmModel, T5Config, T5EncoderModel

spec = importlib.util.spec_from_file_location("embed_gpu", REPO / "bench" / "embed_gpu.py")
embed_gpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(embed_gpu)


def test_cpu_benchmark_runs_and_its_paths_agree():
    command = [sys.executable, str(REPO / "bench" / "embed_cpu.py")]
    command += ["--fasta", str(DATA / "synechocystis_every7th.fasta"), "--limit", "4"]
    command += ["--rounds", "1", "--shapes", "8M", "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]  # 1: paths disagree
    assert "ESM-2 8M: 4 proteins" in done.stdout
    assert "1 thread(s): ours float32" in done.stdout and "lowest cosine to plain HF" in done.stdout


def test_gpu_benchmark_runs_on_cpu_with_tiny_models():
    fasta = DATA / "synechocystis_every7th.fasta"
    threads = torch.get_num_threads()
    # One thread: tiny matrices gain nothing from two, and lose a lot when the cores are busy.
    torch.set_num_threads(1)
    try:
        results = embed_gpu.main(["--device", "cpu", "--tiny", "--fasta", str(fasta)])
    finally:
        torch.set_num_threads(threads)
    assert [r["model"] for r in results] == list(embed_gpu.MODELS)
    for result in results:
        assert result["proteins"] == 12 and 1 <= result["seed_proteins"] <= 4
        assert result["tokens_per_s"] > 0 and result["seed_tokens_per_s"] > 0
        assert result["peak_fraction"] > 0 and result["speedup"] > 0


@pytest.mark.parametrize(
    ("name", "config", "gflop_per_token"),
    [
        # Field notes: ESM-2 650M ~1.37 and the ProtT5-XL encoder ~2.6 GFLOP/token at 400.
        (
            "esm2_650m",
            EsmConfig(
                vocab_size=33,
                hidden_size=1280,
                num_hidden_layers=33,
                num_attention_heads=20,
                intermediate_size=5120,
            ),
            1.37,
        ),
        (
            "prott5_xl",
            T5Config(
                vocab_size=128,
                d_model=1024,
                d_kv=128,
                d_ff=16384,
                num_layers=24,
                num_heads=32,
                is_encoder_decoder=False,
            ),
            2.6,
        ),
    ],
)
def test_flops_per_token_match_published_figures(name, config, gflop_per_token):
    with torch.device("meta"):
        model = (
            EsmModel(config, add_pooling_layer=False)
            if name.startswith("esm2")
            else T5EncoderModel(config)
        )
    flops = embed_gpu.flops_per_sequence(model, embed_gpu.MODELS[name], 400) / 400
    assert flops / 1e9 == pytest.approx(gflop_per_token, rel=0.05)


def test_host_benchmark_runs_both_engines_on_the_same_proteins():
    command = [sys.executable, str(REPO / "bench" / "embed_host.py")]
    command += ["--fasta", str(DATA / "synechocystis_every7th.fasta"), "--limit", "60"]
    command += ["--rounds", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for path in ("baseline (c2655e2), padded", "ours, padded", "ours, packed"):
        assert path in done.stdout
    assert "host tokens/s on one thread" in done.stdout
