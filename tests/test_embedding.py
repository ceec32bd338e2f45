"""Pooling semantics, batching and long-sequence policies, against direct model computations."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, EsmModel

from protembed.adapters import detect_family, load_adapter
from protembed.embedding import Embedded, batches, embed_sequences, plan_windows
from protembed.errors import RejectedSequence, UserError

SEQUENCES = [
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQ",
    "MSLNKIIVEGR",
    "M",
    "MKVLAAGIVGLLLAAPAAQAETAMTRDWLLEQTQQAIKAAIAQHQPYARVSLALYEPGSQQRLFSAQSGEVPLSP" * 3,
]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def adapter(tiny_esm2):
    return load_adapter(str(tiny_esm2), "auto", "cpu")


@pytest.fixture(scope="module")
def reference(tiny_esm2):
    """Residue-mean of the final layer computed straight from the model, one protein at a time."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_esm2)
    model = EsmModel.from_pretrained(tiny_esm2, add_pooling_layer=False).eval()

    def residue_mean(sequence: str, start: int = 0, end: int | None = None) -> np.ndarray:
        with torch.no_grad():
            tokens = tokenizer(sequence, return_tensors="pt")
            hidden = model(**tokens).last_hidden_state[0]
        residues = hidden[1 : len(sequence) + 1]  # drop <cls> and <eos>
        return residues[start:end].mean(0).numpy()

    return residue_mean


def test_family_detected_from_name_and_local_config(tiny_esm2):
    assert detect_family("facebook/esm2_t33_650M_UR50D") == "esm2"
    assert detect_family(str(tiny_esm2)) == "esm2"
    with pytest.raises(UserError, match="model.family"):
        detect_family("someone/unknown-model")


def test_mean_excludes_special_tokens_and_padding(adapter, reference):
    results = embed_sequences(adapter, SEQUENCES, tokens_per_batch=10_000)
    for sequence, result in zip(SEQUENCES, results, strict=True):
        assert isinstance(result, Embedded)
        assert result.vector.dtype == np.float32 and result.vector.shape == (32,)
        np.testing.assert_allclose(result.vector, reference(sequence), atol=1e-5)


def test_batched_equals_single(adapter):
    batched = embed_sequences(adapter, SEQUENCES, tokens_per_batch=100_000)
    single = embed_sequences(adapter, SEQUENCES, tokens_per_batch=1)
    for b, s in zip(batched, single, strict=True):
        assert cosine(b.vector, s.vector) > 0.9999


def test_long_batch_mate_does_not_change_short_protein(adapter):
    alone = embed_sequences(adapter, [SEQUENCES[1]])[0].vector
    with_mate = embed_sequences(adapter, [SEQUENCES[1], "W" * 900], tokens_per_batch=10_000)
    np.testing.assert_allclose(with_mate[0].vector, alone, atol=1e-5)


def test_chunked_long_sequence_weights_each_residue_once(adapter, reference):
    rng = np.random.default_rng(1)
    sequence = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 3000))
    spans, handling = plan_windows(sequence, adapter.max_residues, "chunk", 256)
    assert handling == f"chunked:{len(spans)}" and len(spans) == 4
    assert all(end - start == adapter.max_residues for start, end in spans)

    (result,) = embed_sequences(adapter, [sequence], long_sequences="chunk", overlap=256)
    # Direct computation: each residue's vector averaged over the windows holding it.
    sums = np.zeros((3000, adapter.dimension))
    counts = np.zeros(3000)
    for start, end in spans:
        window = sequence[start:end]
        states = adapter.residue_embeddings([window])[0].numpy()
        sums[start:end] += states
        counts[start:end] += 1
    expected = (sums / counts[:, None]).mean(0)
    assert result.handling == handling and result.residues == 3000
    np.testing.assert_allclose(result.vector, expected, atol=1e-5)


def test_truncate_and_reject_policies(adapter, reference):
    sequence = "MKTAYIAKQR" * 110  # 1,100 residues
    (truncated,) = embed_sequences(adapter, [sequence], long_sequences="truncate")
    assert truncated.handling == "truncated"
    np.testing.assert_allclose(
        truncated.vector, reference(sequence[: adapter.max_residues]), atol=1e-5
    )
    (rejected,) = embed_sequences(adapter, [sequence], long_sequences="reject")
    assert isinstance(rejected, RejectedSequence)
    assert "1100 residues exceed the model's 1022" in str(rejected)


def test_batches_respect_budget_and_keep_every_item():
    lengths = [5, 300, 40, 40, 1000, 7, 7, 7]
    groups = batches(lengths, tokens_per_batch=600, special_tokens=2)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        width = max(lengths[i] for i in group) + 2
        assert width * len(group) <= 600 or len(group) == 1
