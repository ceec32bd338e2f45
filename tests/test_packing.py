"""Padding-free batches and the host side that builds them, on the CPU.

Packed rows run through the reference attention here (one sdpa call per sequence); on a GPU
the same layout goes to varlen_attn (tests/gpu_checks.py). What holds them together: packed
and padded give the same vectors, per protein, for whole, chunked and per-residue outputs,
every layer, and through the out-of-memory halving.

Rotary attention depends only on the distance between positions, so packed sequences would
get the same vectors (up to rounding) even with positions running on across the row; they
restart at 0 anyway, because an angle of position x frequency computed in float32 loses
digits far into a 100,000-token row. The layout test checks that they restart.
"""

import numpy as np
import pytest
import sentencepiece
import torch
from support.random_models import save_random_esmc, save_random_prott5
from test_embedding import cosine
from transformers import AutoTokenizer, EsmcTokenizer

from protembed import layout
from protembed.adapters import load_adapter
from protembed.adapters.packing import use_packing
from protembed.engine import EmbeddingKind, device_token_budget, embed_sequences
from protembed.errors import RejectedSequence

# The odd residues each family's alphabet holds, and a protein long enough to be chunked.
ODD = ["MKTAYIAKQRXBZUO", "ACDEFGHIKLMNPQRSTVWY", "M"]


@pytest.fixture(scope="module")
def tiny_esmc(tmp_path_factory):
    return save_random_esmc(tmp_path_factory.mktemp("models") / "tiny_esmc")


@pytest.fixture(scope="module")
def tiny_prott5(tmp_path_factory):
    return save_random_prott5(tmp_path_factory.mktemp("models") / "tiny_prott5")


@pytest.fixture(scope="module")
def proteins(synechocystis) -> list[str]:
    # 40 real proteins, from 37 to over 1,000 residues: chunked at max_residues=200 below.
    return [p["sequence"] for p in synechocystis[:40]]


def test_table_tokenisation_equals_each_familys_tokenizer(
    tiny_esm2, tiny_esmc, tiny_prott5, proteins
):
    sequences = ODD + proteins[:10]
    esm2 = load_adapter(str(tiny_esm2), "esm2", "cpu")
    expected = AutoTokenizer.from_pretrained(tiny_esm2)(sequences, padding=True)
    got = esm2.tokenize(sequences)
    assert got["input_ids"].tolist() == expected["input_ids"]
    assert got["attention_mask"].tolist() == expected["attention_mask"]

    esmc = load_adapter(str(tiny_esmc), "esmc", "cpu")
    expected = EsmcTokenizer()(sequences, padding=True)
    assert esmc.tokenize(sequences)["input_ids"].tolist() == expected["input_ids"]

    prott5 = load_adapter(str(tiny_prott5), "prot_t5", "cpu")
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(tiny_prott5 / "spiece.model"))
    prepared = [prott5.prepare(s) for s in sequences]
    ids = prott5.tokenize(prepared)["input_ids"]
    for row, sequence in zip(ids.tolist(), prepared, strict=True):
        assert row[: len(sequence) + 1] == pieces.encode(" ".join(sequence)) + [1]  # </s>
        assert set(row[len(sequence) + 1 :]) <= {0}  # padding

    with pytest.raises(ValueError, match="no token for residue '1'"):
        esm2.token_ids(["MKT1"])


def test_packed_layout_restarts_positions_and_marks_each_sequence():
    ids = np.arange(100, 110)  # a shard of two sequences: 100..103 and 104..109
    sources, lengths = np.array([0, 5, 4]), np.array([4, 3, 2])  # the third: 104..105
    packed = layout.packed(ids, sources, lengths, prefix=(0,), suffix=(2,))
    assert packed.inputs["input_ids"].tolist() == [
        [0, 100, 101, 102, 103, 2, 0, 105, 106, 107, 2, 0, 104, 105, 2]
    ]
    assert packed.inputs["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 0, 1, 2, 3]]
    assert packed.inputs["cu_seq_lens_q"].tolist() == [0, 6, 11, 15]
    assert packed.inputs["max_length_q"] == 6 and packed.tokens == 15
    assert packed.positions.tolist() == [1, 2, 3, 4, 7, 8, 9, 12, 13]

    padded = layout.padded(ids, sources, lengths, prefix=(0,), suffix=(2,), pad=1)
    assert padded.inputs["input_ids"].tolist() == [
        [0, 100, 101, 102, 103, 2],
        [0, 105, 106, 107, 2, 1],
        [0, 104, 105, 2, 1, 1],
    ]
    assert padded.positions.tolist() == [1, 2, 3, 4, 7, 8, 9, 13, 14]
    assert padded.tokens == 18


def _embed_both_ways(path, family, sequences, kind, **settings):
    padded_adapter = load_adapter(str(path), family, "cpu", "float32")
    packed_adapter = load_adapter(str(path), family, "cpu", "float32")
    assert use_packing(packed_adapter, reference=True)
    assert packed_adapter.batching == "packed (reference attention)"
    assert padded_adapter.batching == "padded"
    padded = embed_sequences(padded_adapter, sequences, kind=kind, **settings)
    packed = embed_sequences(packed_adapter, sequences, kind=kind, **settings)
    return padded, packed


@pytest.mark.parametrize("family", ["esm2", "esmc"])
@pytest.mark.parametrize("layer", ["last", "all"])
def test_packed_equals_padded_whole_chunked_and_per_residue(
    family, layer, tiny_esm2, tiny_esmc, proteins
):
    path = tiny_esm2 if family == "esm2" else tiny_esmc
    kind = EmbeddingKind(layer, per_residue=True)
    settings = {"max_residues": 200, "overlap": 50, "tokens_per_batch": 3000}
    padded, packed = _embed_both_ways(path, family, proteins, kind, **settings)
    handling = {result.handling.split(":")[0] for result in packed}
    assert handling == {"whole", "chunked"}
    for a, b in zip(padded, packed, strict=True):
        assert a.handling == b.handling and a.residues == b.residues
        assert cosine(a.vector, b.vector) >= 0.99999
        rows = np.einsum("ij,ij->i", a.residue_vectors, b.residue_vectors)
        norms = np.linalg.norm(a.residue_vectors, axis=1) * np.linalg.norm(
            b.residue_vectors, axis=1
        )
        assert (rows / norms).min() >= 0.99999


def test_packed_rows_hold_many_sequences_and_stay_in_budget(tiny_esm2, proteins, monkeypatch):
    adapter = load_adapter(str(tiny_esm2), "esm2", "cpu", "float32")
    use_packing(adapter, reference=True)
    rows = []
    forward = adapter.forward

    def counting(inputs, layers):
        rows.append((inputs["input_ids"].shape, len(inputs["cu_seq_lens_q"]) - 1))
        return forward(inputs, layers)

    monkeypatch.setattr(adapter, "forward", counting)
    embed_sequences(adapter, proteins, max_residues=200, overlap=50, tokens_per_batch=3000)
    assert all(shape[0] == 1 and shape[1] <= 3000 for shape, _ in rows)
    assert max(count for _, count in rows) > 10  # short proteins share a row


def test_packed_out_of_memory_halving_gives_the_same_vectors(tiny_esm2, proteins, monkeypatch):
    kind = EmbeddingKind("last", per_residue=False)
    settings = {"max_residues": 200, "overlap": 50, "tokens_per_batch": 4000}
    padded, _ = _embed_both_ways(tiny_esm2, "esm2", proteins, kind, **settings)

    adapter = load_adapter(str(tiny_esm2), "esm2", "cpu", "float32")
    use_packing(adapter, reference=True)
    forward, failures = adapter.forward, []

    def small_device(inputs, layers):
        tokens = inputs["input_ids"].numel()
        if tokens > 900:
            failures.append(tokens)
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return forward(inputs, layers)

    monkeypatch.setattr(adapter, "forward", small_device)
    packed = embed_sequences(adapter, proteins, kind=kind, **settings)
    assert failures and failures[0] > 900
    for a, b in zip(padded, packed, strict=True):
        assert cosine(a.vector, b.vector) >= 0.99999

    # A piece that does not fit even alone rejects its protein, packed as padded.
    (alone,) = embed_sequences(adapter, ["W" * 1000], kind=kind, max_residues=1000)
    assert isinstance(alone, RejectedSequence)
    assert str(alone).startswith("out of cpu memory embedding 1002 tokens even alone")


def test_families_that_do_not_pack_stay_padded(tiny_prott5):
    adapter = load_adapter(str(tiny_prott5), "prot_t5", "cpu")
    assert not use_packing(adapter, reference=True) and adapter.batching == "padded"
    # And on a CPU, no family packs by itself: varlen attention needs CUDA.
    assert load_adapter(str(tiny_prott5), "prot_t5", "cpu").batching == "padded"


def test_device_budget_follows_free_memory_and_model_width():
    # ESM-2 650M in half precision on an 80 GB card with 78 GB free, last layer only.
    big = device_token_budget(78 * 2**30, hidden=1280, feed_forward=5120, value_bytes=2)
    assert big == 131072  # the cap
    # The same model with 4 GB free: 2 GiB / (2 x (1280 x 9 + 2 x 5120)) bytes per token.
    small = device_token_budget(4 * 2**30, hidden=1280, feed_forward=5120, value_bytes=2)
    assert small == 2**31 // 43520 // 1024 * 1024 == 49152
    # Keeping every layer (33) for pooling costs memory per token: a smaller budget.
    every_layer = device_token_budget(
        4 * 2**30, hidden=1280, feed_forward=5120, value_bytes=2, layers=33
    )
    assert every_layer < small
    assert device_token_budget(10**6, 1280, 5120, 2) == 1024  # the floor


def test_bucketed_rows_add_one_sequence_of_padding():
    ids = np.arange(100, 110)
    sources, lengths = np.array([0, 5]), np.array([4, 3])
    row = layout.packed(ids, sources, lengths, prefix=(0,), suffix=(2,), pad=1, bucket=16)
    assert row.inputs["input_ids"].tolist() == [
        [0, 100, 101, 102, 103, 2, 0, 105, 106, 107, 2, 1, 1, 1, 1, 1]
    ]
    assert row.inputs["cu_seq_lens_q"].tolist() == [0, 6, 11, 16]
    assert row.inputs["position_ids"].tolist()[0][11:] == [0, 1, 2, 3, 4]
    assert row.inputs["max_length_q"] == 128 and row.tokens == 16
    assert row.positions.tolist() == [1, 2, 3, 4, 7, 8, 9]


def test_bucketed_packed_rows_give_the_same_vectors(tiny_esm2, proteins):
    kind = EmbeddingKind("last")
    settings = {"max_residues": 200, "overlap": 50, "tokens_per_batch": 3000}
    _, packed = _embed_both_ways(tiny_esm2, "esm2", proteins, kind, **settings)
    adapter = load_adapter(str(tiny_esm2), "esm2", "cpu", "float32")
    use_packing(adapter, reference=True)
    adapter.compiled = True  # what makes the engine bucket rows; the model stays as it is
    bucketed = embed_sequences(adapter, proteins, kind=kind, **settings)
    for a, b in zip(packed, bucketed, strict=True):
        assert cosine(a.vector, b.vector) >= 0.99999


def test_compiled_model_gives_the_same_vectors(tiny_esm2, proteins):
    from protembed import Embedder

    settings = {"device": "cpu", "precision": "float32", "progress": False}
    sequences = proteins[:6]
    eager = Embedder(str(tiny_esm2), compile=False, **settings)
    compiled = Embedder(str(tiny_esm2), compile=True, **settings)
    assert compiled.adapter.compiled and not eager.adapter.compiled
    assert not Embedder(str(tiny_esm2), **settings).adapter.compiled  # auto: off
    np.testing.assert_allclose(compiled.encode(sequences), eager.encode(sequences), atol=1e-5)
