"""Every family that runs in the main environment (ESM-2, ESM-C, ProtT5), with tiny random
weights loaded through the real from_pretrained path, against direct computations from
each model's own hidden states: kinds, batching, padding, long sequences, preparation.
(ESM-3 runs in the esm package's environment: tests/test_adapters_oracles.py.)"""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import doc_pages
import numpy as np
import pytest
import sentencepiece
import torch
from support.random_models import save_random_esmc, save_random_prott5
from transformers import AutoTokenizer, EsmcModel, EsmcTokenizer, EsmModel, T5EncoderModel

from protembed.adapters import FAMILIES as FAMILY_RECORDS
from protembed.adapters import Family, load_adapter
from protembed.engine import EmbeddingKind, embed_sequences, plan_windows
from protembed.errors import RejectedSequence

FAMILIES = ["esm2", "esmc", "prot_t5"]

SEQUENCES = [
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQ",
    "MSLNKIIVEGR",
    "M",
    "MKVLAAGIVGLLLAAPAAQAETAMTRDWLLEQTQQAIKAAIAQHQPYARVSLALYEPGSQQRLFSAQSGEVPLSP" * 3,
    "XACDEFGHIKLMNPQRSTVWY",
]


@pytest.fixture(scope="module")
def model_dirs(tiny_esm2, tmp_path_factory):
    models = tmp_path_factory.mktemp("family_models")
    return {
        "esm2": tiny_esm2,
        "esmc": save_random_esmc(models / "tiny_esmc"),
        "prot_t5": save_random_prott5(models / "tiny_prott5"),
    }


@pytest.fixture(scope="module")
def adapters(model_dirs):
    return {family: load_adapter(str(path), "auto", "cpu") for family, path in model_dirs.items()}


class Direct:
    """One sequence at a time, no padding, straight from the model's hidden_states: every
    layer's residue vectors, and what the model's final norm put out."""

    def __init__(self, family, path):
        self.family = family
        if family == "esm2":
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = EsmModel.from_pretrained(path, add_pooling_layer=False)
            self.norm = self.model.encoder.emb_layer_norm_after
        elif family == "esmc":
            self.tokenizer = EsmcTokenizer()
            self.model = EsmcModel.from_pretrained(path)
            self.norm = self.model.norm
        else:
            spiece = str(path / "spiece.model")
            self.pieces = sentencepiece.SentencePieceProcessor(model_file=spiece)
            self.model = T5EncoderModel.from_pretrained(path)
            self.norm = self.model.encoder.final_layer_norm
        self.model.eval()

    def layers(self, sequence: str) -> np.ndarray:
        """(layers + 1, residues, dimension); asserts that the last is the final norm's output."""
        if self.family == "prot_t5":
            ids = torch.tensor([self.pieces.encode(" ".join(sequence)) + [1]])  # </s> closes
            inputs, first = {"input_ids": ids}, 0
        else:
            inputs, first = self.tokenizer(sequence, return_tensors="pt"), 1  # after <cls>
        assert inputs["input_ids"].shape[1] == len(sequence) + (1 if first == 0 else 2)
        normed = {}
        hook = self.norm.register_forward_hook(lambda m, i, out: normed.update(out=out))
        with torch.no_grad():
            output = self.model(**inputs, output_hidden_states=True)
        hook.remove()
        assert torch.equal(output.hidden_states[-1], normed["out"])
        stacked = torch.stack(output.hidden_states)[:, 0, first : first + len(sequence)]
        return stacked.numpy()


@pytest.fixture(scope="module")
def direct(model_dirs):
    return {family: Direct(family, path) for family, path in model_dirs.items()}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("family", FAMILIES)
def test_each_kind_is_what_the_hidden_states_say(family, adapters, direct):
    adapter = adapters[family]
    layers = adapter.num_layers
    references = [direct[family].layers(s) for s in SEQUENCES]
    expected = {
        EmbeddingKind(): lambda reps: reps[layers].mean(0),
        EmbeddingKind("first"): lambda reps: reps[1].mean(0),
        EmbeddingKind("all"): lambda reps: reps[1:].mean(0).mean(0),
        EmbeddingKind(0): lambda reps: reps[0].mean(0),
        EmbeddingKind(layers - 1): lambda reps: reps[layers - 1].mean(0),
    }
    for kind, pooled in expected.items():
        results = embed_sequences(adapter, SEQUENCES, kind=kind, tokens_per_batch=4096)
        for result, reps in zip(results, references, strict=True):
            assert result.vector.dtype == np.float32
            assert result.vector.shape == (adapter.dimension,)
            np.testing.assert_allclose(result.vector, pooled(reps), atol=1e-5)

    kind = EmbeddingKind("all", per_residue=True, normalize=True)
    results = embed_sequences(adapter, SEQUENCES, kind=kind)
    for result, reps in zip(results, references, strict=True):
        np.testing.assert_allclose(result.residue_vectors, reps[1:].mean(0), atol=1e-5)
        mean = reps[1:].mean(0).mean(0)
        np.testing.assert_allclose(result.vector, mean / np.linalg.norm(mean), atol=1e-5)
        assert abs(np.linalg.norm(result.vector) - 1) < 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_and_single_agree_with_mixed_lengths(family, adapters):
    adapter = adapters[family]
    for kind in (EmbeddingKind(), EmbeddingKind("all")):
        batched = embed_sequences(adapter, SEQUENCES, kind=kind, tokens_per_batch=100_000)
        single = embed_sequences(adapter, SEQUENCES, kind=kind, tokens_per_batch=1)
        for b, s in zip(batched, single, strict=True):
            assert cosine(b.vector, s.vector) > 0.9999
            np.testing.assert_allclose(b.vector, s.vector, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_long_batch_mate_changes_nothing(family, adapters):
    adapter = adapters[family]
    mate = "W" * min(900, adapter.max_residues)
    for kind in (EmbeddingKind(), EmbeddingKind(0, per_residue=True)):
        (alone,) = embed_sequences(adapter, [SEQUENCES[1]], kind=kind)
        paired = embed_sequences(adapter, [SEQUENCES[1], mate], kind=kind, tokens_per_batch=10**5)
        np.testing.assert_allclose(paired[0].vector, alone.vector, atol=1e-5)
        if kind.per_residue:
            np.testing.assert_allclose(paired[0].residue_vectors, alone.residue_vectors, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_3000_residues_weight_each_residue_once(family, adapters, direct):
    adapter = adapters[family]
    rng = np.random.default_rng(1)
    sequence = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 3000))
    spans, handling = plan_windows(sequence, adapter.max_residues, "chunk", 256)
    assert handling == f"chunked:{len(spans)}" and len(spans) > 1
    assert all(end - start == adapter.max_residues for start, end in spans)
    assert spans[0][0] == 0 and spans[-1][1] == 3000
    steps = np.diff([start for start, _ in spans])
    assert (steps <= adapter.max_residues - 256).all()  # consecutive windows share >= 256

    kind = EmbeddingKind(per_residue=True)
    (result,) = embed_sequences(adapter, [sequence], kind=kind, overlap=256)
    sums, counts = np.zeros((3000, adapter.dimension)), np.zeros(3000)
    for start, end in spans:
        sums[start:end] += direct[family].layers(sequence[start:end])[-1]
        counts[start:end] += 1
    assert result.handling == handling and result.residues == 3000
    np.testing.assert_allclose(result.residue_vectors, sums / counts[:, None], atol=1e-5)
    np.testing.assert_allclose(result.vector, (sums / counts[:, None]).mean(0), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_preparation_and_rejects(family, adapters):
    adapter = adapters[family]
    assert adapter.prepare(" mkT ay\nIA*") == "MKTAYIA"
    for bad, reason in [("  *", "empty sequence"), ("MKT1A", "'1'"), ("MK|TA", "'|'")]:
        with pytest.raises(RejectedSequence, match=reason):
            adapter.prepare(bad)
    rare = adapter.prepare("MUZOBX")
    assert rare == ("MXXXXX" if family == "prot_t5" else "MUZOBX")


def test_statements_say_which_tokens_and_layers(adapters):
    esm2, esmc, prott5 = adapters["esm2"], adapters["esmc"], adapters["prot_t5"]
    assert EmbeddingKind().describe(esm2) == (
        "mean over residue positions only (<cls>, <eos> and padding excluded) of layer 2 of 2 "
        "(the last block's output after the final layer norm (emb_layer_norm_after))"
    )
    assert "block 1's output, before the final layer norm (norm)" in EmbeddingKind(1).describe(esmc)
    assert EmbeddingKind(normalize=True).describe(prott5) == (
        "mean over residue positions only (the closing </s> and padding excluded) of layer 2 "
        "of 2 (the last block's output after the final layer norm (final_layer_norm)), then "
        "L2-normalised"
    )


# The Snakefile and the export read the family records in environments without torch or
# EvolutionaryScale's esm; the records must not import them.
READ_RECORDS_WITHOUT_TORCH = """
import sys
for blocked in ("torch", "transformers", "sentencepiece", "esm"):
    sys.modules[blocked] = None
from protembed.adapters import detect_family, expected_dimension
print(detect_family("esm3-open"), detect_family("Rostlab/prot_t5_xl_uniref50"),
      expected_dimension("biohub/ESMC-600M"), expected_dimension("esmc_300m"))
"""


def test_family_records_are_read_without_torch_and_name_real_adapters():
    result = subprocess.run(
        [sys.executable, "-c", READ_RECORDS_WITHOUT_TORCH], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["esm3", "prot_t5", "1152", "960"]
    for family in FAMILY_RECORDS:
        module, class_name = family.adapter.split(":")
        spec = importlib.util.find_spec(module)
        assert spec, f"{family.name}: no module {module}"
        assert f"class {class_name}(" in Path(spec.origin).read_text(), family.name


def test_the_models_pages_family_record_is_a_valid_record():
    # The page shows an entry of the FAMILIES tuple, trailing comma included.
    code = textwrap.dedent(doc_pages.block("family-record"))
    (shown,) = eval(code, {"Family": Family})  # noqa: S307
    assert isinstance(shown, Family)
    module, _, class_name = shown.adapter.partition(":")
    assert module.startswith("protembed.adapters.") and class_name.endswith("Adapter")
    assert shown.name_markers and all(isinstance(m, str) for m in shown.name_markers)
    assert shown.environment == "embed.yaml"
    assert all(isinstance(w, int) for w in shown.published_widths.values())
