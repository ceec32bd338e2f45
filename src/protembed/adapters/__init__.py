"""Model families behind one interface.

A new family is one adapter module (a subclass of `base.Adapter`) plus one `Family` record
in FAMILIES below, which holds every fact about the family that is needed before its module
is imported. The records live here, not in the adapter modules, because the Snakefile and
the export read them in environments without torch (or without EvolutionaryScale's esm),
which every adapter module imports.
"""

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..names import KMER_NAME

if TYPE_CHECKING:
    from ..config import ModelSettings
    from .base import Adapter


@dataclass(frozen=True)
class Family:
    """What is known of a model family without importing its adapter module."""

    # model.family's value, and the adapter's `family` attribute.
    name: str
    # "module:class" of the adapter, imported only when a model of the family is loaded.
    adapter: str
    # Parts of model names that identify the family, compared without case, '-' or '_'.
    name_markers: tuple[str, ...]
    # model_type values in a local directory's config.json that identify the family.
    model_types: tuple[str, ...] = ()
    # The conda environment file (under envs/) that the family's embed jobs run in.
    environment: str = "embed.yaml"
    # Widths of published models, by a distinctive part of their names, for when their
    # files are not on this machine yet (the export runs before the first embed job
    # downloads them).
    published_widths: dict[str, int] = field(default_factory=dict)


# In the order names are matched: ESM-C's and ESM-3's markers before ESM-2's.
FAMILIES = (
    Family(
        "esmc",
        "protembed.adapters.esmc:EsmcAdapter",
        name_markers=("esmc",),
        model_types=("esmc",),
        published_widths={"esmc_300m": 960, "esmc_600m": 1152, "esmc_6b": 2560},
    ),
    Family(
        "esm3",
        "protembed.adapters.esm3:Esm3Adapter",
        name_markers=("esm3",),
        model_types=("esm3",),
        # EvolutionaryScale's esm package pins torch and transformers < 5.
        environment="esm.yaml",
        published_widths={"esm3": 1536},
    ),
    Family(
        "prot_t5",
        "protembed.adapters.prott5:ProtT5Adapter",
        name_markers=("prot_t5",),
        model_types=("t5",),
        published_widths={"prot_t5_xl": 1024},
    ),
    Family(
        "esm2",
        "protembed.adapters.esm2:Esm2Adapter",
        name_markers=("esm2",),
        model_types=("esm",),
        published_widths={
            "esm2_t6_8m": 320,
            "esm2_t12_35m": 480,
            "esm2_t30_150m": 640,
            "esm2_t33_650m": 1280,
            "esm2_t36_3b": 2560,
            "esm2_t48_15b": 5120,
        },
    ),
    # Widths from the name itself: 20^k (see expected_dimension).
    Family("kmer", "protembed.adapters.kmer:KmerAdapter", name_markers=("kmer",)),
)
_BY_NAME = {family.name: family for family in FAMILIES}


def _comparable(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def detect_family(name: str) -> str:
    """Family from a local directory's config.json (model_type), else from the model's name."""
    config_file = Path(name) / "config.json"
    if config_file.is_file():
        model_type = json.loads(config_file.read_text()).get("model_type")
        for family in FAMILIES:
            if model_type in family.model_types:
                return family.name
    for family in FAMILIES:
        if any(_comparable(marker) in _comparable(name) for marker in family.name_markers):
            return family.name
    raise UserError(
        f"cannot tell the model family of {name!r}; set model.family to one of "
        f"{', '.join(sorted(_BY_NAME))}"
    )


def resolve_family(name: str, family: str = "auto") -> str:
    family = detect_family(name) if family == "auto" else family
    if family not in _BY_NAME:
        raise UserError(
            f"model.family {family!r} is not one of auto, {', '.join(sorted(_BY_NAME))}"
        )
    return family


def environment(model: "ModelSettings") -> str:
    """The conda environment file (under envs/) that the embed jobs of this model need."""
    return _BY_NAME[resolve_family(model.name, model.family)].environment


def expected_dimension(name: str) -> int | None:
    """The width of a model's vectors without loading it (the export runs before any model
    is loaded, in an environment without torch): from its config.json where the files are
    here (a local directory or the hub cache), else from its published name; None if
    neither tells."""
    for directory in (Path(name), hub_snapshot(name)):
        config_file = directory / "config.json" if directory else None
        if config_file and config_file.is_file():
            model_config = json.loads(config_file.read_text())
            for key in ("hidden_size", "d_model"):
                if isinstance(model_config.get(key), int):
                    return model_config[key]
    kmer = KMER_NAME.search(name.lower())
    if kmer:
        return 20 ** int(kmer.group(1))
    widths = (item for family in FAMILIES for item in family.published_widths.items())
    return next((width for part, width in widths if _comparable(part) in _comparable(name)), None)


def hub_snapshot(name: str) -> Path | None:
    """The hub cache's snapshot of `name` that from_pretrained resolved `main` to, if any.

    Found the way huggingface_hub lays its cache out, without importing it (the graph-only
    environment lacks it): HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.
    """
    cache = os.environ.get("HF_HUB_CACHE") or str(
        Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"
    )
    repo = Path(cache) / f"models--{name.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if "/" not in name or not ref.is_file():
        return None
    return repo / "snapshots" / ref.read_text().strip()


def resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"model.device is {device!r} but torch sees no CUDA device")
    return torch.device(device)


def load_adapter(
    name: str,
    family: str = "auto",
    device: str = "auto",
    precision: str = "float32",
    compile: bool | str = False,
) -> "Adapter":
    """The model as its files hold it (float32 unless `precision` says otherwise: `auto`, the
    user's default in Embedder and the config, is asked for explicitly)."""
    family = resolve_family(name, family)
    module_name, class_name = _BY_NAME[family].adapter.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(
            f"model family {family} needs {error.name!r}, which this environment lacks; "
            f"run the embed jobs in envs/{_BY_NAME[family].environment} "
            "(see docs/models.md, Two environments)"
        ) from error
    adapter_class = getattr(module, class_name)
    try:
        adapter = adapter_class(name, resolve_device(device))
    except OSError as error:
        raise UserError(
            f"could not load model {name!r} ({error.__class__.__name__}: "
            f"{str(error).splitlines()[0]}); without access to the model hub, set model.name "
            "to a local directory that holds the weights"
        ) from error
    adapter.family = family
    adapter.use_precision(precision)
    if adapter.packs:
        from .packing import use_packing

        use_packing(adapter)
    adapter.use_compile(compile)
    return adapter
