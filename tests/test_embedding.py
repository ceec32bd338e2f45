"""Pooling semantics, batching, long-sequence policies, embedding kinds and the embed step,
against direct model computations (ESM-2; every family: test_adapters_*.py)."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from support.random_models import save_random_esmc
from transformers import AutoTokenizer, EsmModel

from protembed import parquet_io, steps
from protembed.adapters import detect_family, environment, load_adapter
from protembed.config import load_config, load_settings
from protembed.engine import Embedded, EmbeddingKind, batches, embed_sequences, plan_windows
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


def test_family_detected_from_local_config_then_name(tiny_esm2, tmp_path):
    names = {
        "facebook/esm2_t33_650M_UR50D": "esm2",
        "biohub/ESMC-600M": "esmc",
        "esmc_300m": "esmc",
        "esm3-open": "esm3",
        "Rostlab/prot_t5_xl_half_uniref50-enc": "prot_t5",
        str(tiny_esm2): "esm2",
    }
    for name, family in names.items():
        assert detect_family(name) == family, name
    # A local directory's config.json outranks its name.
    misleading = save_random_esmc(tmp_path / "esm2_named_but_esmc")
    assert detect_family(str(misleading)) == "esmc"
    with pytest.raises(UserError, match="model.family"):
        detect_family("someone/unknown-model")
    with pytest.raises(UserError, match="'esm4' is not one of auto, esm2, esm3, esmc"):
        load_adapter(str(tiny_esm2), "esm4", "cpu")


def test_esm3_names_its_environment():
    assert environment(load_settings({"model": {"name": "esm3-open"}}).model) == "esm.yaml"
    assert environment(load_settings({"model": {"name": "biohub/ESMC-300M"}}).model) == "embed.yaml"
    # The esm package lives in envs/esm.yaml only; here the adapter says where to go.
    with pytest.raises(UserError, match=r"needs 'esm'.*envs/esm.yaml"):
        load_adapter("esm3-open", "auto", "cpu")


def test_kind_names_layers_and_properties(adapter):
    assert EmbeddingKind().name == "mean_last" and EmbeddingKind().layers(2) == [2]
    assert EmbeddingKind("first").layers(2) == [1]
    assert EmbeddingKind("all", normalize=True).name == "mean_all_layers_l2"
    assert EmbeddingKind("all").layers(2) == [1, 2]
    assert EmbeddingKind(0).name == "mean_layer0" and EmbeddingKind(0).layers(2) == [0]
    with pytest.raises(UserError, match="layer is 3 but the model has layers 0 to 2"):
        embed_sequences(adapter, ["MKT"], kind=EmbeddingKind(3))
    # Another kind is another vector space: a property of its own, unless named explicitly.
    model = {"name": "facebook/esm2_t6_8M_UR50D", "embedding": {"layer": "last"}}
    assert load_settings({"model": model}).model.property == "embedding_esm2_t6_8M_UR50D"
    model["embedding"] = {"layer": 4, "normalize": True}
    assert load_settings({"model": model}).model.property == "embedding_esm2_t6_8M_UR50D_layer4_l2"
    for layer in ("middle", -1):
        with pytest.raises(UserError, match="model.embedding.layer"):
            load_config({"model": {"embedding": {"layer": layer}}})


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


def shard_file(path: Path, sequences: dict[str, str]) -> Path:
    rows = {
        "sequence_sha256": [f"sha-{i}" for i in sequences],
        "sequence": list(sequences.values()),
        "ids": [[i, f"{i}-twin"] for i in sequences],
    }
    parquet_io.write_table(pa.table(rows, schema=parquet_io.SHARD_SCHEMA), path)
    return path


def test_embed_step_writes_what_the_kind_says(adapter, tiny_esm2, tmp_path):
    sequences = {"short": "mktayiakqr*", "long": SEQUENCES[3], "bad": "MKT1A", "empty": " "}
    config = {
        "model": {
            "name": str(tiny_esm2),
            "device": "cpu",
            "precision": "float32",  # compared with the float32 adapter below
            "max_residues": 100,
            "chunk_overlap": 20,
            "embedding": {"layer": "all", "per_residue": True},
        }
    }
    out = {name: tmp_path / f"{name}.parquet" for name in ("vectors", "rejects", "residues")}
    summary = steps.embed(
        load_settings(config).model,
        shard_file(tmp_path / "shard.parquet", sequences),
        out["vectors"],
        out["rejects"],
        residues_path=out["residues"],
    )
    assert summary == {"sequences": 4, "embedded": 2, "rejected_proteins": 4}
    rejects = parquet_io.read_table(out["rejects"]).to_pylist()
    assert {r["id"] for r in rejects} == {"bad", "bad-twin", "empty", "empty-twin"}

    vectors = parquet_io.read_table(out["vectors"]).to_pydict()
    residues = parquet_io.read_table(out["residues"]).to_pydict()
    assert vectors["ids"] == residues["ids"] == [["short", "short-twin"], ["long", "long-twin"]]
    assert vectors["long_sequence_handling"] == ["whole", "chunked:3"]  # 225 residues
    prepared = ["MKTAYIAKQR", SEQUENCES[3]]
    kind = EmbeddingKind("all", per_residue=True)
    expected = embed_sequences(adapter, prepared, kind=kind, max_residues=100, overlap=20)
    for i, result in enumerate(expected):
        per_residue = np.array(residues["residue_vectors"][i], dtype=np.float32)
        assert per_residue.shape == (len(prepared[i]), 32)
        np.testing.assert_allclose(per_residue, result.residue_vectors, atol=1e-6)
        np.testing.assert_allclose(vectors["vector"][i], result.vector, atol=1e-6)
        np.testing.assert_allclose(per_residue.mean(0), result.vector, atol=1e-5)

    metadata = parquet_io.read_metadata(out["vectors"])
    assert metadata["embedding"] == "mean_all_layers" and metadata["layers"] == [1, 2]
    assert metadata["pooling"] == (
        "mean over residue positions only (<cls>, <eos> and padding excluded) of the average "
        "of layers 1 to 2 (every block's output; the last after the final layer norm "
        "(emb_layer_norm_after), the others before it; layer 0, the input embeddings, excluded)"
    )
    assert metadata["max_residues"] == 100 and metadata["normalized"] is False
    residue_metadata = parquet_io.read_metadata(out["residues"])
    assert residue_metadata["embedding"] == "per_residue"
    assert residue_metadata["pooling"].startswith("one vector per residue")

    config["model"]["embedding"] = {"layer": "last", "per_residue": False, "normalize": True}
    shard = tmp_path / "shard.parquet"
    model = load_settings(config).model
    steps.embed(model, shard, out["vectors"], out["rejects"], residues_path=out["residues"])
    assert parquet_io.count_rows(out["residues"]) == 0
    assert parquet_io.read_metadata(out["residues"])["embedding"] == "none"
    vectors = parquet_io.read_table(out["vectors"]).to_pydict()
    np.testing.assert_allclose(np.linalg.norm(vectors["vector"], axis=1), 1, atol=1e-6)
    assert parquet_io.read_metadata(out["vectors"])["embedding"] == "mean_last_l2"
