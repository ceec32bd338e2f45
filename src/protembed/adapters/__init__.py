"""Model families behind one interface. A new family is one module plus one line in FAMILIES.

Light on imports (no torch until a model is loaded): the Snakefile reads `environment`.
"""

import importlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..names import KMER_NAME

if TYPE_CHECKING:
    from ..config import ModelSettings
    from .base import Adapter

# family -> (module, class); modules are imported on demand so that one family's
# dependencies are not needed to run another.
FAMILIES = {
    "esm2": ("protembed.adapters.esm2", "Esm2Adapter"),
    "esmc": ("protembed.adapters.esmc", "EsmcAdapter"),
    "esm3": ("protembed.adapters.esm3", "Esm3Adapter"),
    "prot_t5": ("protembed.adapters.prott5", "ProtT5Adapter"),
    "kmer": ("protembed.adapters.kmer", "KmerAdapter"),
}

# Families whose embed jobs need another conda environment than envs/embed.yaml:
# EvolutionaryScale's esm package pins torch 2.11 and transformers < 5.
ENVIRONMENTS = {"esm3": "esm.yaml"}

# Substrings of model names that identify a family, checked in this order.
_NAME_MARKERS = (
    ("esmc", "esmc"),
    ("esm3", "esm3"),
    ("prott5", "prot_t5"),
    ("esm2", "esm2"),
    ("kmer", "kmer"),
)
# model_type in a local directory's config.json.
_MODEL_TYPES = {"esm": "esm2", "esmc": "esmc", "esm3": "esm3", "t5": "prot_t5"}


def detect_family(name: str) -> str:
    """Family from a local directory's config.json (model_type), else from the model's name."""
    config_file = Path(name) / "config.json"
    if config_file.is_file():
        model_type = json.loads(config_file.read_text()).get("model_type")
        if model_type in _MODEL_TYPES:
            return _MODEL_TYPES[model_type]
    lowered = name.lower().replace("-", "").replace("_", "")
    for marker, family in _NAME_MARKERS:
        if marker in lowered:
            return family
    raise UserError(
        f"cannot tell the model family of {name!r}; set model.family to one of "
        f"{', '.join(sorted(FAMILIES))}"
    )


def resolve_family(name: str, family: str = "auto") -> str:
    family = detect_family(name) if family == "auto" else family
    if family not in FAMILIES:
        raise UserError(
            f"model.family {family!r} is not one of auto, {', '.join(sorted(FAMILIES))}"
        )
    return family


def environment(model: "ModelSettings") -> str:
    """The conda environment file (under envs/) that the embed jobs of this model need."""
    return _environment_file(resolve_family(model.name, model.family))


def _environment_file(family: str) -> str:
    return ENVIRONMENTS.get(family, "embed.yaml")


# Widths of published models whose files may not be on this machine yet when the export
# runs (the first embed job downloads them), by a distinctive part of the name.
_KNOWN_DIMENSIONS = {
    "esm2_t6_8m": 320,
    "esm2_t12_35m": 480,
    "esm2_t30_150m": 640,
    "esm2_t33_650m": 1280,
    "esm2_t36_3b": 2560,
    "esm2_t48_15b": 5120,
    "esmc_300m": 960,
    "esmc-300m": 960,
    "esmc_600m": 1152,
    "esmc-600m": 1152,
    "esmc-6b": 2560,
    "esm3": 1536,
    "prot_t5_xl": 1024,
}


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
    lowered = name.lower()
    return next((d for marker, d in _KNOWN_DIMENSIONS.items() if marker in lowered), None)


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
    module_name, class_name = FAMILIES[family]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(
            f"model family {family} needs {error.name!r}, which this environment lacks; "
            f"run the embed jobs in envs/{_environment_file(family)} "
            "(see the README's environment table)"
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
    adapter.use_precision(precision)
    if adapter.packs:
        from .packing import use_packing

        use_packing(adapter)
    adapter.use_compile(compile)
    return adapter
