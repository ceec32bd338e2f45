"""The workflow's configuration in one place: the schema (shipped inside the package, so an
installed protembed finds it outside a checkout), its defaults, and the checks that name the
offending key in one line. The Snakefile, the `protembed` command and embed_graph use it.

Light on imports (no torch): the Snakefile reads it.
"""

import copy
from pathlib import Path

import jsonschema
import yaml

from .errors import UserError
from .names import IDENTIFIER

# workflow/schemas/config.schema.yaml, which Snakemake validates against, links to this file.
SCHEMA = Path(__file__).with_name("schemas") / "config.schema.yaml"


def load_config(source: str | Path | dict) -> dict:
    """config.yaml (a path) or a dict of the same shape, checked against the schema, with
    the schema's defaults filled in (a dict is copied, never changed)."""
    if isinstance(source, dict):
        config = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError(f"config file {path} does not exist; pass --config PATH")
        config = yaml.safe_load(path.read_text()) or {}
    check_config(config)
    return with_defaults(config)


def check_config(config: dict, schema_path: str | Path = SCHEMA) -> None:
    """Raise a UserError naming the first invalid key, before any defaults are filled in."""
    validator = jsonschema.Draft202012Validator(_schema(schema_path))
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    if error.validator == "pattern" and error.validator_value == IDENTIFIER.pattern:
        reason = "is not a plain identifier (letters, digits and _, not starting with a digit)"
        message = f"{error.instance!r} {reason}"
    else:
        message = error.message
    raise UserError(f"invalid config: {key}: {message}; fix it in config.yaml or --config")


def with_defaults(config: dict, schema: dict | None = None) -> dict:
    """`config` with every key the schema gives a default filled in, nested objects too."""
    schema = _schema(SCHEMA) if schema is None else schema
    for key, spec in schema.get("properties", {}).items():
        if key not in config and "default" in spec:
            config[key] = copy.deepcopy(spec["default"])
        if isinstance(config.get(key), dict):
            with_defaults(config[key], spec)
    return config


def _schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())
