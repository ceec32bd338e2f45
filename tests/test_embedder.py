"""The notebook front door: Embedder.encode / encode_records, its error modes, the model
cache, precision, PyEED's embedding types, worker processes, and equality with the
workflow's embed step."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from transformers import AutoTokenizer, EsmModel

from protembed import Embedder, parquet_io, steps
from protembed.config import load_config
from protembed.errors import UserError
from protembed.testing.random_models import save_random_esmc

GOOD = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQ"
BAD = "MKT1AYZ"
LONG = "MSLNKIIVEGRW" * 100  # 1,200 residues: over ESM-2's 1,022


@pytest.fixture(scope="module")
def direct(tiny_esm2):
    """Hidden states straight from transformers, one protein at a time."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_esm2)
    model = EsmModel.from_pretrained(tiny_esm2, add_pooling_layer=False).eval()

    def hidden_states(sequence: str) -> list[np.ndarray]:
        with torch.no_grad():
            tokens = tokenizer(sequence, return_tensors="pt")
            output = model(**tokens, output_hidden_states=True)
        return [layer[0].numpy() for layer in output.hidden_states]

    return hidden_states


# Where a test compares with the float32 model's own outputs.
FP32 = {"device": "cpu", "precision": "float32"}


@pytest.fixture(scope="module")
def embedder(tiny_esm2):
    return Embedder(str(tiny_esm2), device="cpu", progress=False)


def test_ten_real_proteins_in_three_lines(tiny_esm2, synechocystis, direct):
    from protembed import Embedder

    vectors = Embedder(str(tiny_esm2)).encode([p["sequence"] for p in synechocystis[:10]])

    assert vectors.shape == (10, 32) and vectors.dtype == np.float32
    # The default precision, auto, holds the model in bfloat16 on a CPU that runs it
    # natively: the residue mean of the float32 model to cosine 0.9999 (test_precision.py).
    for protein, vector in zip(synechocystis[:10], vectors, strict=True):
        expected = direct(protein["sequence"])[-1][1 : len(protein["sequence"]) + 1].mean(0)
        assert vector @ expected / np.linalg.norm(vector) / np.linalg.norm(expected) >= 0.9999


def test_error_modes_for_rejected_long_and_duplicate_sequences(embedder, tiny_esm2):
    sequences = [GOOD, BAD, LONG, GOOD.lower() + "*"]  # the last is GOOD once prepared
    with pytest.raises(UserError, match=r"sequence 1 cannot be embedded: characters .*'1'"):
        embedder.encode(sequences)

    with_nan = embedder.encode(sequences, errors="nan")
    assert with_nan.shape == (4, 32) and np.isnan(with_nan[1]).all()
    assert not np.isnan(with_nan[[0, 2, 3]]).any()
    np.testing.assert_array_equal(with_nan[3], with_nan[0])  # embedded once, shared
    assert embedder.last_rejects == {1: "characters the model cannot encode: '1'"}

    skipped = embedder.encode(sequences, errors="skip")
    np.testing.assert_array_equal(skipped, with_nan[[0, 2, 3]])
    assert list(embedder.last_rejects) == [1]

    # The long one is chunked by default; under "reject" it is a rejection like the others.
    (result,) = embedder.embed([LONG])
    assert result.handling == "chunked:2" and result.residues == 1200
    strict = Embedder(str(tiny_esm2), device="cpu", long_sequences="reject", progress=False)
    with pytest.raises(UserError, match="sequence 2 cannot be embedded: 1200 residues exceed"):
        strict.encode([GOOD, GOOD, LONG])
    assert np.isnan(strict.encode([LONG, GOOD], errors="nan")[0]).all()
    assert strict.encode([LONG, GOOD], errors="skip").shape == (1, 32)

    single = embedder.encode(GOOD)
    assert single.shape == (32,)
    np.testing.assert_array_equal(single, with_nan[0])
    assert np.isnan(embedder.encode(BAD, errors="nan")).all()
    with pytest.raises(UserError, match="sequence 0 cannot be embedded: empty sequence"):
        embedder.encode(" *", errors="skip")  # one string: nothing to return without it
    with pytest.raises(UserError, match="errors 'ignore' is not one of raise, nan, skip"):
        embedder.encode([GOOD], errors="ignore")


def test_encode_records_from_every_container(embedder, tmp_path):
    pairs = [("P1", GOOD), ("P2", BAD), ("P3", LONG), ("P4", GOOD), ("P5", "")]
    fasta = tmp_path / "proteins.fasta"
    fasta.write_text("".join(f">sp|{i}|NAME_{i} a protein\n{s}\n" for i, s in pairs))
    frame = pd.DataFrame({"accession_id": [i for i, _ in pairs], "sequence": [s for _, s in pairs]})
    expected_vectors = embedder.encode([GOOD, LONG, GOOD])
    for records in (pairs, dict(pairs), fasta, str(fasta), frame):
        embedded, rejects = embedder.encode_records(records)
        assert embedded["id"].tolist() == ["P1", "P3", "P4"], type(records)
        np.testing.assert_array_equal(np.stack(embedded["vector"]), expected_vectors)
        assert embedded["long_sequence_handling"].tolist() == ["whole", "chunked:2", "whole"]
        assert embedded["residues"].tolist() == [len(GOOD), 1200, len(GOOD)]
        reasons = dict(zip(rejects["id"], rejects["reason"], strict=True))
        assert reasons == {
            "P2": "characters the model cannot encode: '1'",
            "P5": "empty sequence",
        }
    embedded, _ = embedder.encode_records(pairs, per_residue=True)
    for sequence, vector, matrix in zip(
        [GOOD, LONG, GOOD], embedded["vector"], embedded["residue_vectors"], strict=True
    ):
        assert matrix.shape == (len(sequence), 32) and matrix.dtype == np.float32
        np.testing.assert_allclose(matrix.mean(0), vector, atol=1e-5)
    _, rejects = embedder.encode_records([("P6", None)])
    assert rejects.to_dict("records") == [{"id": "P6", "reason": "sequence is not a string"}]
    with pytest.raises(UserError, match="record 0 is not an"):
        embedder.encode_records(["MKT"])
    with pytest.raises(UserError, match="has no 'sequence' column"):
        embedder.encode_records(pd.DataFrame({"seq": [GOOD]}))


def test_workflow_embed_step_gives_the_notebooks_vectors(tiny_esm2, synechocystis, tmp_path):
    proteins = synechocystis[:40]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"model:\n  name: {tiny_esm2}\n  device: cpu\n")
    config = load_config(config_file)
    shard = tmp_path / "shard.parquet"
    rows = {
        "sequence_sha256": [f"sha-{i}" for i in range(len(proteins))],
        "sequence": [p["sequence"] for p in proteins],
        "ids": [[p["accession_id"]] for p in proteins],
    }
    parquet_io.write_table(pa.table(rows, schema=parquet_io.SHARD_SCHEMA), shard)
    vectors, rejects = tmp_path / "vectors.parquet", tmp_path / "rejects.parquet"
    steps.embed(config, shard, vectors, rejects)

    embedder = Embedder.from_config(config["model"], progress=False)
    notebook = embedder.encode([p["sequence"] for p in proteins])
    workflow = parquet_io.read_table(vectors)
    assert workflow["ids"].to_pylist() == [[p["accession_id"]] for p in proteins]
    np.testing.assert_array_equal(np.array(workflow["vector"].to_pylist(), np.float32), notebook)
    assert parquet_io.read_metadata(vectors)["pooling"] == embedder.describe()


def test_models_are_cached_per_model_device_and_precision(tiny_esm2):
    first = Embedder(str(tiny_esm2), device="cpu", precision="float32", progress=False)
    again = Embedder(str(tiny_esm2), device="cpu", precision="float32", layer="all", progress=False)
    assert first.adapter is again.adapter
    half = Embedder(str(tiny_esm2), device="cpu", precision="bfloat16", progress=False)
    assert half.adapter is not first.adapter
    assert (first.precision, half.precision) == ("float32", "bfloat16")
    assert half.adapter.model.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16
    assert first.dimension == 32 and first.num_layers == 2 and first.device == "cpu"
    a, b = first.encode(GOOD), half.encode(GOOD)
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.999
    assert first.describe() == (
        "mean over residue positions only (<cls>, <eos> and padding excluded) of layer 2 of 2 "
        "(the last block's output after the final layer norm (emb_layer_norm_after))"
    )
    with pytest.raises(UserError, match="precision 'half' is not one of auto, float32"):
        Embedder(str(tiny_esm2), precision="half")
    with pytest.raises(UserError, match="long_sequences 'split' is not one of chunk"):
        Embedder(str(tiny_esm2), long_sequences="split")


def test_float16_is_refused_where_the_family_runs_bfloat16(tmp_path):
    esmc = save_random_esmc(tmp_path / "esmc")
    with pytest.raises(UserError, match="float16 is refused for esmc: its half precision is bf"):
        Embedder(str(esmc), device="cpu", precision="float16").encode(GOOD)


def test_pyeed_embedding_types_map_onto_ours(tiny_esm2, direct):
    layers = direct(GOOD)
    residues = slice(1, len(GOOD) + 1)
    last, per_residue = Embedder.like_pyeed(str(tiny_esm2), "last_hidden_state", **FP32)
    assert per_residue
    embedded, _ = last.encode_records([("P", GOOD)], per_residue=True, progress=False)
    # PyEED: last_hidden_state[0, 1:-1] of the protein alone.
    np.testing.assert_allclose(embedded["residue_vectors"][0], layers[-1][residues], atol=1e-5)

    first, _ = Embedder.like_pyeed(str(tiny_esm2), "first_layer", **FP32)
    embedded, _ = first.encode_records([("P", GOOD)], per_residue=True, progress=False)
    # PyEED: hidden_states[0] (the input embeddings), before its row-wise L2 normalisation.
    np.testing.assert_allclose(embedded["residue_vectors"][0], layers[0][residues], atol=1e-5)

    final, per_residue = Embedder.like_pyeed(str(tiny_esm2), "final_embeddings", **FP32)
    assert not per_residue
    vector = final.encode(GOOD, progress=False)
    # Ours: the residue mean; PyEED averages <cls> and <eos> in too, and that differs.
    np.testing.assert_allclose(vector, layers[-1][residues].mean(0), atol=1e-5)
    assert not np.allclose(vector, layers[-1].mean(0), atol=1e-3)

    all_layers, _ = Embedder.like_pyeed(str(tiny_esm2), "all_layers", **FP32)
    vector = all_layers.encode(GOOD, progress=False)
    np.testing.assert_allclose(vector, np.mean(layers[1:], 0)[residues].mean(0), atol=1e-5)
    with pytest.raises(UserError, match="embedding_type 'pooled' is not one of"):
        Embedder.like_pyeed(str(tiny_esm2), "pooled")


def test_two_cpu_workers_give_the_vectors_of_one(tiny_esm2, synechocystis):
    sequences = [p["sequence"] for p in synechocystis[:12]] + [BAD]
    settings = {"device": "cpu", "tokens_per_batch": 1, "progress": False}
    alone = Embedder(str(tiny_esm2), **settings).encode(sequences, errors="nan")
    with Embedder(str(tiny_esm2), devices=["cpu", "cpu"], **settings) as spread:
        assert spread.devices == ["cpu", "cpu"]
        shared = spread.encode(sequences, errors="nan")
        assert spread.last_rejects == {12: "characters the model cannot encode: '1'"}
        assert len(spread._workers) == 2
        worker_pids = {w.submit(os.getpid).result() for w in spread._workers}
    assert len(worker_pids) == 2
    np.testing.assert_allclose(shared, alone, atol=1e-6, equal_nan=True)
