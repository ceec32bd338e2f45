"""Configuration checks that name the offending key in one line (the Snakefile calls this)."""

from pathlib import Path

import jsonschema
import yaml

from .errors import UserError
from .names import IDENTIFIER


def check_config(config: dict, schema_path: str | Path) -> None:
    """Raise a UserError naming the first invalid key, before Snakemake fills in defaults."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
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
