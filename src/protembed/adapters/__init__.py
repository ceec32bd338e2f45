"""Model families behind one interface. A new family is one module plus one line in FAMILIES."""

import json
from pathlib import Path

import torch

from ..errors import UserError
from .base import Adapter

# family -> (module, class); modules are imported on demand so that one family's
# dependencies are not needed to run another.
FAMILIES = {
    "esm2": ("protembed.adapters.esm2", "Esm2Adapter"),
}

# Substrings of model names that identify a family, checked in this order.
_NAME_MARKERS = (("esm2", "esm2"),)
_MODEL_TYPES = {"esm": "esm2"}


def detect_family(name: str) -> str:
    """Family from the model's name, or from config.json's model_type for a local directory."""
    lowered = name.lower().replace("-", "").replace("_", "")
    for marker, family in _NAME_MARKERS:
        if marker in lowered:
            return family
    config_file = Path(name) / "config.json"
    if config_file.is_file():
        model_type = json.loads(config_file.read_text()).get("model_type")
        if model_type in _MODEL_TYPES:
            return _MODEL_TYPES[model_type]
    raise UserError(
        f"cannot tell the model family of {name!r}; set model.family to one of "
        f"{', '.join(sorted(FAMILIES))}"
    )


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"model.device is {device!r} but torch sees no CUDA device")
    return torch.device(device)


def load_adapter(name: str, family: str = "auto", device: str = "auto") -> Adapter:
    import importlib

    family = detect_family(name) if family == "auto" else family
    module_name, class_name = FAMILIES[family]
    adapter_class = getattr(importlib.import_module(module_name), class_name)
    try:
        return adapter_class(name, resolve_device(device))
    except OSError as error:
        raise UserError(
            f"could not load model {name!r} ({error.__class__.__name__}: "
            f"{str(error).splitlines()[0]}); without access to the model hub, set model.name "
            "to a local directory that holds the weights"
        ) from error
