"""Configuration: one schema, shipped inside the package, the one Snakemake validates with."""

import copy
import importlib.resources
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from protembed.config import SCHEMA, load_config
from protembed.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_the_workflow_validates_with_the_packaged_schema():
    packaged = importlib.resources.files("protembed") / "schemas" / "config.schema.yaml"
    assert Path(str(packaged)).resolve() == SCHEMA.resolve()
    # One file: the workflow's path is a link to the package's, not a copy that could drift.
    assert (REPO / "workflow" / "schemas" / "config.schema.yaml").resolve() == SCHEMA.resolve()
    assert "schemas/*.yaml" in (REPO / "pyproject.toml").read_text()


def test_defaults_are_the_ones_snakemake_fills_in(tmp_path):
    given = {"model": {"name": "kmer-2", "embedding": {"layer": 3}}, "shards": 2}
    snakemake_filled = copy.deepcopy(given)
    validate(snakemake_filled, str(SCHEMA))
    assert load_config(given) == snakemake_filled
    assert given == {"model": {"name": "kmer-2", "embedding": {"layer": 3}}, "shards": 2}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(given))
    assert load_config(path) == snakemake_filled
    repository = load_config(REPO / "config.yaml")
    assert repository["model"]["precision"] == "auto" and repository["graph"]["writers"] == 2


def test_bad_configs_name_the_key():
    with pytest.raises(UserError, match=r"invalid config: model.precision: 'half' is not one"):
        load_config({"model": {"precision": "half"}})
    with pytest.raises(UserError, match="graph.label: 'Pro tein' is not a plain identifier"):
        load_config({"graph": {"label": "Pro tein"}})
    with pytest.raises(UserError, match="config file /nowhere.yaml does not exist"):
        load_config("/nowhere.yaml")
