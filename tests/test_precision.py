"""model.precision: what `auto` picks per device, and the accuracy check every precision
`auto` may pick must pass: cosine >= 0.9999 to float32 on real proteins, per family.

ESM-3 runs only in the esm package's environment (envs/esm.yaml), and in half precision
only on GPUs: tests/test_adapters_oracles.py checks that on a CPU it stays float32."""

import numpy as np
import pytest
import torch
from support.random_models import save_random_esmc, save_random_prott5

from protembed import Embedder
from protembed.adapters import base
from protembed.adapters.base import choose_precision
from protembed.errors import UserError

PROTEINS = 30  # every 7th Synechocystis protein, one of them over 1,022 residues (chunked)
FAMILIES = {"esm2": torch.float16, "esmc": torch.bfloat16, "prott5": torch.bfloat16}


@pytest.fixture(scope="module")
def model_dirs(tiny_esm2, tmp_path_factory):
    work = tmp_path_factory.mktemp("precision_models")
    return {
        "esm2": tiny_esm2,
        "esmc": save_random_esmc(work / "esmc"),
        "prott5": save_random_prott5(work / "prott5"),
    }


def auto_choices(half_precision: torch.dtype) -> set[torch.dtype]:
    """Everything `auto` can pick for a family, on any machine."""
    choices = set()
    for device in ("cpu", "cuda"):
        for native_bfloat16 in (True, False):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(base, "cpu_runs_bfloat16_natively", lambda n=native_bfloat16: n)
                choices.add(choose_precision("auto", torch.device(device), half_precision))
    return choices


def test_auto_picks_half_on_gpus_bfloat16_on_cpus_that_run_it_and_float32_elsewhere(
    monkeypatch,
):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(base, "cpu_runs_bfloat16_natively", lambda: True)
    assert choose_precision("auto", cpu, torch.float16) == torch.bfloat16
    assert choose_precision("auto", cuda, torch.float16) == torch.float16
    assert choose_precision("auto", cuda, torch.bfloat16) == torch.bfloat16
    monkeypatch.setattr(base, "cpu_runs_bfloat16_natively", lambda: False)
    assert choose_precision("auto", cpu, torch.float16) == torch.float32
    assert choose_precision("auto", torch.device("mps"), torch.float16) == torch.float32
    assert choose_precision("float32", cuda, torch.float16) == torch.float32
    with pytest.raises(UserError, match="precision 'half' is not one of auto, float32"):
        choose_precision("half", cpu, torch.float16)


def test_native_bfloat16_is_what_torch_detects():
    detected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert base.cpu_runs_bfloat16_natively() == detected


@pytest.mark.parametrize("family", FAMILIES)
def test_every_precision_auto_may_pick_keeps_cosine_to_float32(family, model_dirs, synechocystis):
    choices = auto_choices(FAMILIES[family]) - {torch.float32}
    assert choices == {FAMILIES[family], torch.bfloat16}
    sequences = [p["sequence"] for p in synechocystis[:PROTEINS]]
    assert max(map(len, sequences)) > 1022  # positions past 1,000, and a chunked protein
    name = str(model_dirs[family])
    reference = Embedder(name, device="cpu", precision="float32", progress=False)
    expected = reference.encode(sequences)
    for dtype in choices:
        precision = str(dtype).removeprefix("torch.")
        embedder = Embedder(name, device="cpu", precision=precision, progress=False)
        assert embedder.precision == precision
        vectors = embedder.encode(sequences)
        cosines = np.sum(vectors * expected, axis=1) / (
            np.linalg.norm(vectors, axis=1) * np.linalg.norm(expected, axis=1)
        )
        assert cosines.min() >= 0.9999, (family, precision, float(cosines.min()))


def test_auto_is_recorded_as_what_it_picked(tiny_esm2):
    embedder = Embedder(str(tiny_esm2), device="cpu", progress=False)
    picked = choose_precision("auto", torch.device("cpu"), torch.float16)
    assert embedder.precision == str(picked).removeprefix("torch.")
    weight = embedder.adapter.model.encoder.layer[0].attention.self.query.weight
    assert weight.dtype == picked
