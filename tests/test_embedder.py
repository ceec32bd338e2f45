"""The notebook front door: Embedder.encode / encode_records, its error modes, the model
cache, precision, PyEED's embedding types, worker processes, and equality with the
workflow's embed step."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from support.random_models import save_random_esmc
from transformers import AutoTokenizer, EsmModel

from protembed import Embedder, parquet_io, steps
from protembed.config import load_settings
from protembed.errors import UserError

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
    model = load_settings(config_file).model
    shard = tmp_path / "shard.parquet"
    rows = {
        "sequence_sha256": [f"sha-{i}" for i in range(len(proteins))],
        "sequence": [p["sequence"] for p in proteins],
        "ids": [[p["accession_id"]] for p in proteins],
    }
    parquet_io.write_table(pa.table(rows, schema=parquet_io.SHARD_SCHEMA), shard)
    vectors, rejects = tmp_path / "vectors.parquet", tmp_path / "rejects.parquet"
    steps.embed(model, shard, vectors, rejects)

    embedder = Embedder(model, progress=False)
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
        processes = spread._workers._workers  # the WorkerPool's executors, one per device
        assert len(processes) == 2
        worker_pids = {w.submit(os.getpid).result() for w in processes}
    assert len(worker_pids) == 2
    np.testing.assert_allclose(shared, alone, atol=1e-6, equal_nan=True)


def test_encode_reads_a_fasta_path_and_refuses_a_file_name_string(embedder, tmp_path):
    fasta = tmp_path / "two.fasta"
    fasta.write_text(f">sp|P1|ONE\n{GOOD}\n>P2 second\n{GOOD[:30]}\n")
    np.testing.assert_array_equal(embedder.encode(fasta), embedder.encode([GOOD, GOOD[:30]]))
    with pytest.raises(UserError) as refused:
        embedder.encode(str(fasta))
    assert str(refused.value) == (
        f"{str(fasta)!r} is a file, not a sequence: encode(pathlib.Path({str(fasta)!r})) "
        "reads a FASTA file, encode_records reads one with its ids"
    )
    (tmp_path / "empty.fasta").touch()
    with pytest.raises(UserError, match="FASTA file .*empty.fasta holds no record"):
        embedder.encode(tmp_path / "empty.fasta")


def test_sentence_transformers_keywords(embedder):
    sequences = [GOOD, GOOD[:40], LONG]
    plain = embedder.encode(sequences)
    unit = embedder.encode(sequences, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(unit * np.linalg.norm(plain, axis=1, keepdims=True), plain, 1e-6)
    one = embedder.encode(GOOD, normalize_embeddings=True)
    assert one.shape == (32,) and abs(np.linalg.norm(one) - 1) < 1e-6
    with_nan = embedder.encode([GOOD, BAD], errors="nan", normalize_embeddings=True)
    assert np.isnan(with_nan[1]).all() and abs(np.linalg.norm(with_nan[0]) - 1) < 1e-6

    tensor = embedder.encode(sequences, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(tensor.numpy(), plain)
    assert isinstance(embedder.encode(sequences, convert_to_numpy=True), np.ndarray)
    with pytest.raises(UserError, match="returns a NumPy array, or a torch.Tensor with convert_"):
        embedder.encode(sequences, convert_to_numpy=False)

    refusals = {
        "batch_size": "encode\\(\\) takes no batch_size: batches hold a number of tokens, not of "
        "sequences: set Embedder\\(..., tokens_per_batch=N\\)",
        "device": "takes no device: the device is the Embedder's: Embedder\\(model, device=",
        "output_value": "per-residue vectors come from encode_records\\(records, per_residue=True",
        "precision": "takes no precision: encode returns float32; Embedder\\(model, precision",
    }
    for keyword, message in refusals.items():
        with pytest.raises(UserError, match=message):
            embedder.encode(sequences, **{keyword: 1})
    with pytest.raises(TypeError, match="unexpected keyword argument 'batchsize'"):
        embedder.encode(sequences, batchsize=4)
    with pytest.raises(UserError, match="pass progress or show_progress_bar, not both"):
        embedder.encode(sequences, progress=False, show_progress_bar=True)


def test_a_bar_only_for_calls_of_ten_sequences_or_more(tiny_esm2, synechocystis, capsys):
    quiet_by_default = Embedder(str(tiny_esm2), device="cpu")
    few = [p["sequence"] for p in synechocystis[:9]]
    quiet_by_default.encode(few)
    assert "res/s" not in capsys.readouterr().err  # tqdm's text bar: residues per second
    quiet_by_default.encode([*few, GOOD])
    assert "res/s" in capsys.readouterr().err
    quiet_by_default.encode(GOOD, show_progress_bar=True)  # asked for: shown for one
    assert "res/s" in capsys.readouterr().err
    quiet_by_default.encode([*few, GOOD], show_progress_bar=False)
    Embedder(str(tiny_esm2), device="cpu", progress=False).encode([*few, GOOD])
    assert "res/s" not in capsys.readouterr().err


def test_the_bar_in_a_jupyter_kernel_without_ipywidgets():
    """In a Jupyter kernel (ipykernel's shell, as tqdm detects it) without ipywidgets:
    tqdm's text bar, and no "IProgress not found" warning, even once transformers (which
    imports tqdm.auto too) is imported. Without protembed first, transformers' import warns:
    the kernel is faked well enough for tqdm to take it for one."""
    fake_kernel = (
        "import sys, types, warnings\n"
        "warnings.simplefilter('always')  # every warning to stderr\n"
        "class ZMQInteractiveShell: pass\n"
        "ipython = types.ModuleType('IPython')\n"
        "ipython.get_ipython = ZMQInteractiveShell\n"
        "sys.modules.update({'IPython': ipython, 'ipykernel.zmqshell': types.ModuleType('z')})\n"
    )
    with_protembed = fake_kernel + (
        "from protembed.embedder import _progress\n"
        "import transformers.utils.logging, tqdm.std\n"
        "bar = _progress(True)\n"
        "assert issubclass(bar, tqdm.std.tqdm), bar  # the text bar, not the widget\n"
        "with bar(total=10, unit='res') as b: b.update(10)\n"
    )
    run = subprocess.run([sys.executable, "-c", with_protembed], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "10/10" in run.stderr and "IProgress" not in run.stderr
    alone = fake_kernel + "import transformers.utils.logging\n"
    run = subprocess.run([sys.executable, "-c", alone], capture_output=True, text=True)
    assert run.returncode == 0 and "IProgress not found" in run.stderr, run.stderr[-3000:]
