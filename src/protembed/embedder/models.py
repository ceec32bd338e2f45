"""The model cache: each model is loaded once per process for its settings."""

from ..adapters import load_adapter, resolve_device
from ..adapters.base import Adapter

# Loaded models of this process: (name, family, device, precision, compile) -> adapter.
_ADAPTERS: dict[tuple, Adapter] = {}


def cached_adapter(
    name: str, family: str, device: str, precision: str, compile: bool | str = "auto"
) -> Adapter:
    """The model loaded once per process for these settings."""
    key = (name, family, str(resolve_device(device)), precision, compile)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = load_adapter(name, family, device, precision, compile)
    return _ADAPTERS[key]
