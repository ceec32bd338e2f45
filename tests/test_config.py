"""Configuration: one schema, shipped inside the package, holds every default and range;
config.py is the one reader of the raw dict."""

import importlib.resources
import re
from pathlib import Path

import pytest
import yaml

from protembed import Embedder
from protembed.config import SCHEMA, default_config, load_config, load_settings
from protembed.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "src" / "protembed"


def test_the_workflow_links_the_packaged_schema():
    packaged = importlib.resources.files("protembed") / "schemas" / "config.schema.yaml"
    assert Path(str(packaged)).resolve() == SCHEMA.resolve()
    # One file: the workflow's path is a link to the package's, not a copy that could drift.
    assert (REPO / "workflow" / "schemas" / "config.schema.yaml").resolve() == SCHEMA.resolve()
    assert "schemas/*.yaml" in (REPO / "pyproject.toml").read_text()


def test_config_yaml_shows_exactly_the_schema_defaults():
    shown = yaml.safe_load((REPO / "config.yaml").read_text())
    assert shown == default_config()


def test_every_key_of_the_schema_has_a_description_and_a_default():
    def walk(spec: dict, path: str):
        for key, child in spec.get("properties", {}).items():
            yield f"{path}{key}", child
            yield from walk(child, f"{path}{key}.")

    schema = yaml.safe_load(SCHEMA.read_text())
    keys = list(walk(schema, ""))
    assert len(keys) > 30
    assert [k for k, spec in keys if not spec.get("description")] == []
    assert [k for k, spec in keys if "default" not in spec] == []


def test_defaults_are_filled_in_and_the_given_dict_is_left_alone(tmp_path):
    given = {"model": {"name": "kmer-2", "embedding": {"layer": 3}}, "shards": 2}
    filled = load_config(given)
    assert given == {"model": {"name": "kmer-2", "embedding": {"layer": 3}}, "shards": 2}
    assert filled["model"]["embedding"] == {"layer": 3, "per_residue": False, "normalize": False}
    assert filled["graph"]["vector_index"]["hnsw"] == {"m": 16, "ef_construction": 100}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(given))
    assert load_config(path) == filled


def test_settings_are_typed_sections_with_the_property_worked_out_once():
    settings = load_settings({"model": {"name": "org/esm2_t6_8M_UR50D", "embedding": {"layer": 4}}})
    assert settings.model.property == "embedding_esm2_t6_8M_UR50D_layer4"
    assert settings.model.kind == "mean_layer4"
    assert settings.graph.vector_index.hnsw_ef_construction == 100
    assert settings.shards.most == 4 and settings.report.neighbours == 10
    with pytest.raises(AttributeError):
        settings.model.name = "other"  # frozen
    layout = settings.layout
    assert layout.directory == Path("results/embedding_esm2_t6_8M_UR50D_layer4")
    assert layout.shard_embeddings("{shard}").name == "shard-{shard}.parquet"
    assert layout.log("embed/shard-3") == layout.directory / "logs" / "embed" / "shard-3.log"
    assert load_settings(settings) is settings


def test_bad_configs_name_the_key():
    with pytest.raises(UserError, match=r"invalid config: model.precision: 'half' is not one"):
        load_config({"model": {"precision": "half"}})
    with pytest.raises(UserError, match="graph.label: 'Pro tein' is not a plain identifier"):
        load_config({"graph": {"label": "Pro tein"}})
    with pytest.raises(UserError, match=r"graph.vector_index.hnsw.m: 513 is greater than"):
        load_config({"graph": {"vector_index": {"hnsw": {"m": 513}}}})
    with pytest.raises(UserError, match="similarity_function: 'dot' is not one of cosine"):
        load_config({"graph": {"vector_index": {"similarity_function": "dot"}}})
    with pytest.raises(UserError, match="config file /nowhere.yaml does not exist"):
        load_config("/nowhere.yaml")


def test_the_embedder_checks_its_keywords_against_the_same_schema():
    with pytest.raises(
        UserError, match="Embedder: tokens_per_batch 0 is less than the minimum of 1"
    ):
        Embedder("kmer-2", tokens_per_batch=0)
    with pytest.raises(UserError, match=r"'batch' was unexpected"):
        Embedder("kmer-2", batch=3)
    embedder = Embedder("kmer-2", layer="all", normalize=True)
    assert embedder.settings.property == "embedding_kmer_2_all_layers_l2"


def test_no_module_but_config_reads_the_raw_dict():
    indexing = re.compile(r"\bconfig\[|\bconfig\.get\(|snakemake\.config\b")
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in (SOURCES, REPO / "scripts", REPO / "workflow")
        for path in sorted(folder.rglob("*"))
        if path.suffix in (".py", ".smk") or path.name == "Snakefile"
        if path != SOURCES / "config.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if indexing.search(line)
    ]
    assert offenders == []
