"""The engine's speed machinery, run on the CPU: out-of-memory retries (with a fake model
that runs out of memory above a token count), half precision
with float32 rotary frequencies, the progress line, and throughput in the step outputs."""

import io

import numpy as np
import pyarrow as pa
import pytest
import torch
from test_embedding import SEQUENCES, cosine, shard_file

from protembed import parquet_io, steps
from protembed.adapters import load_adapter
from protembed.adapters.base import Adapter, cast_keeping_rotary_float32, choose_precision
from protembed.config import load_settings
from protembed.engine import Embedded, PieceRunner, Plan, embed_sequences, finish
from protembed.errors import RejectedSequence


class SmallMemoryAdapter(Adapter):
    """A model on a device that runs out of memory above `memory` padded tokens. Residue j of
    a sequence gets the vector (code of the residue, j, 1): means are easy to compute."""

    family = "fake"

    def __init__(self, memory: int):
        self.name, self.device = "fake", torch.device("cpu")
        self.dimension, self.num_layers, self.max_residues = 3, 1, 1000
        self.memory = memory
        self.batches: list[int] = []  # padded tokens of every batch that ran
        self.failures: list[int] = []  # and of every batch that ran out of memory

    def hidden_states(self, sequences: list[str], layers: list[int]) -> list[torch.Tensor]:
        width = max(map(len, sequences)) + self.special_tokens
        if width * len(sequences) > self.memory:
            self.failures.append(width * len(sequences))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        self.batches.append(width * len(sequences))
        states = torch.zeros(len(sequences), width, 3)
        for row, sequence in enumerate(sequences):
            for j, residue in enumerate(sequence):
                states[row, j + 1] = torch.tensor([ord(residue), j, 1.0])
        return [states]


def expected_mean(sequence: str) -> np.ndarray:
    return np.array([np.mean([ord(r) for r in sequence]), (len(sequence) - 1) / 2, 1.0])


def test_out_of_memory_halves_the_budget_and_retries_until_everything_fits():
    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n)) for n in range(40, 240, 5)]
    adapter = SmallMemoryAdapter(memory=1000)
    results = embed_sequences(adapter, sequences, tokens_per_batch=4000)
    for sequence, result in zip(sequences, results, strict=True):
        assert isinstance(result, Embedded)
        np.testing.assert_allclose(result.vector, expected_mean(sequence), rtol=1e-6)
    # The first batch, the 16 longest (16 x 237 tokens), ran out of memory; so did its first
    # half under a budget of 1,896; from then on the budget was 948, for every batch.
    assert adapter.failures == [16 * 237, 8 * 237]
    assert max(adapter.batches) <= 16 * 237 // 4 < adapter.memory


def test_a_piece_too_large_even_alone_rejects_its_protein_with_the_reason():
    adapter = SmallMemoryAdapter(memory=300)
    sequences = ["M" * 100, "K" * 400, "A" * 50]
    results = embed_sequences(adapter, sequences, tokens_per_batch=4000)
    assert isinstance(results[0], Embedded) and isinstance(results[2], Embedded)
    assert isinstance(results[1], RejectedSequence)
    assert str(results[1]).startswith("out of cpu memory embedding 402 tokens even alone")
    # A chunked protein whose windows do not fit is rejected too, not partly averaged.
    (chunked,) = embed_sequences(adapter, ["W" * 900], max_residues=400, overlap=50)
    assert isinstance(chunked, RejectedSequence)


def test_plan_runner_and_finish_each_do_their_part():
    # Planning: windows, each residue's coverage, and the policy's rejects, before any model.
    plan = Plan.of(["M" * 10, "K" * 25, "W" * 30], window=12, policy="chunk", overlap=4)
    assert plan.handling == {0: "whole", 1: "chunked:3", 2: "chunked:4"}
    assert [p for p in plan.pieces if p[0] == 1] == [(1, 0, 12), (1, 8, 20), (1, 13, 25)]
    np.testing.assert_array_equal(
        plan.coverage[1][[0, 8, 12, 13, 19, 20, 24]], [1, 2, 1, 2, 2, 1, 1]
    )
    strict = Plan.of(["M" * 10, "K" * 25], window=12, policy="reject", overlap=4)
    assert list(strict.rejected) == [1] and [p[0] for p in strict.pieces] == [0]

    # Running: the budget lives on the runner, halved when the device runs out of memory.
    adapter = SmallMemoryAdapter(memory=40)
    runner = PieceRunner(adapter, plan, [1], tokens_per_batch=1000, per_residue=True)
    runner.run_all()
    assert runner.budget < 1000 and adapter.failures and not runner.failed
    # Each residue's share: 1/coverage, so the sum over windows counts every residue once.
    np.testing.assert_allclose(runner.sums[1][2].item(), 25.0)
    # A residue's vector: the average over the windows holding it (here, its place in each).
    places = [
        [j - start for start, end in [(0, 12), (8, 20), (13, 25)] if start <= j < end]
        for j in range(25)
    ]
    expected = [np.mean(p) for p in places]
    np.testing.assert_allclose(runner.residue_vectors[1][:, 1], expected, rtol=1e-6)

    # Finishing: means, normalising, and rejects in input order.
    results = finish(plan, runner, normalize=True)
    assert [r.handling for r in results] == ["whole", "chunked:3", "chunked:4"]
    for result in results:
        np.testing.assert_allclose(np.linalg.norm(result.vector), 1.0, rtol=1e-6)
    unnormalised = finish(plan, runner)
    np.testing.assert_allclose(unnormalised[0].vector, expected_mean("M" * 10), rtol=1e-6)
    runner.failed[2] = "out of memory"
    assert str(finish(plan, runner)[2]) == "out of memory"


def test_half_precision_keeps_rotary_frequencies_float32(tiny_esm2):
    full = load_adapter(str(tiny_esm2), "esm2", "cpu")
    half = load_adapter(str(tiny_esm2), "esm2", "cpu")
    rotary = full.model.rotary_embeddings.inv_freq
    cast_keeping_rotary_float32(half.model, torch.bfloat16)
    assert half.model.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16
    assert half.model.rotary_embeddings.inv_freq.dtype == torch.float32
    assert torch.equal(half.model.rotary_embeddings.inv_freq, rotary)
    # The drift that bfloat16 leaves on a 1,000-residue protein (positions past 256 included).
    sequence = ("MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQ" * 20)[:1000]
    (a,), (b,) = embed_sequences(full, [sequence]), embed_sequences(half, [sequence])
    assert cosine(a.vector, b.vector) > 0.999


def test_progress_line_reports_residues_and_proteins_per_second(tiny_esm2):
    adapter = load_adapter(str(tiny_esm2), "esm2", "cpu")
    log = io.StringIO()
    embed_sequences(adapter, SEQUENCES, progress=log)
    final = log.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    residues = sum(map(len, SEQUENCES))
    assert f"{residues}/{residues}" in final and "res/s" in final
    assert f"{len(SEQUENCES)} proteins" in final and "proteins/s" in final


def test_embed_and_merge_record_throughput(tiny_esm2, tmp_path):
    config = {"model": {"name": str(tiny_esm2), "device": "cpu", "tokens_per_batch": 512}}
    model = load_settings(config).model
    shards, embedded, rejects = [], [], []
    for i, chunk in enumerate((SEQUENCES[:2], SEQUENCES[2:])):
        shards.append(
            shard_file(
                tmp_path / f"shard-{i}.parquet", {f"p{i}{j}": s for j, s in enumerate(chunk)}
            )
        )
        embedded.append(tmp_path / f"embedded-{i}.parquet")
        rejects.append(tmp_path / f"rejects-{i}.parquet")
        steps.embed(model, shards[-1], embedded[-1], rejects[-1], token_budget_divisor=2)
    per_shard = [parquet_io.read_metadata(path)["throughput"] for path in embedded]
    auto_on_cpu = str(choose_precision("auto", torch.device("cpu"), torch.float16))
    auto_on_cpu = auto_on_cpu.removeprefix("torch.")
    for shard, chunk, speed in zip(shards, (SEQUENCES[:2], SEQUENCES[2:]), per_shard, strict=True):
        assert speed["shard"] == shard.name and speed["sequences"] == len(chunk)
        assert speed["residues"] == sum(map(len, chunk)) and speed["seconds"] > 0
        assert speed["residues_per_s"] == pytest.approx(speed["residues"] / speed["seconds"], 1e-2)
        assert speed["device"] == "cpu" and speed["precision"] == auto_on_cpu
        assert speed["batching"] == "padded"  # varlen attention needs CUDA
        # A CPU embeds one sequence per forward, whatever the configured budget.
        assert speed["tokens_per_batch"] == 1

    manifest = tmp_path / "manifest.json"
    ids = [
        i for path in shards for row in parquet_io.read_table(path)["ids"].to_pylist() for i in row
    ]
    parquet_io.write_json(
        {"exported": len(ids), "up_to_date": 0, "rejected_at_export": [], "property": "p"},
        manifest,
    )
    out = [tmp_path / name for name in ("all.parquet", "rejects.parquet", "summary.json")]
    summary = steps.merge(model, manifest, embedded, rejects, *out)
    run = summary["throughput"]
    assert run["shards"] == per_shard
    assert run["residues"] == sum(map(len, SEQUENCES))
    assert run["model_seconds"] == pytest.approx(sum(s["seconds"] for s in per_shard))
    assert "throughput" not in parquet_io.read_metadata(out[0])
    assert pa.types.is_fixed_size_list(parquet_io.read_table(out[0]).schema.field("vector").type)
