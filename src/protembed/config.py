"""The workflow's settings, read once: config.yaml (or a dict of its shape) checked against
the schema, with the schema's defaults filled in, turned into frozen, typed sections.

The schema (shipped inside the package, so an installed protembed finds it outside a
checkout) is the one place for every key's default, range and description; this module is
the one reader of the raw dict. Everything else receives the section it needs.

The sections are NamedTuples: Snakemake compares a rule's `params` by their repr, so a
section passed as a param reruns the rule when one of its settings changes.

Light on imports (no torch): the Snakefile reads it.
"""

import copy
from pathlib import Path
from typing import NamedTuple

import jsonschema
import yaml

from .errors import UserError
from .names import IDENTIFIER, embedding_kind, identifier, model_slug

# workflow/schemas/config.schema.yaml links to this file.
SCHEMA = Path(__file__).with_name("schemas") / "config.schema.yaml"


class VectorIndexSettings(NamedTuple):
    """How a new vector index is built (graph.vector_index)."""

    name: str | None  # None: <label>_<property>; an existing index keeps its own name
    similarity_function: str
    hnsw_m: int
    hnsw_ef_construction: int
    quantization: bool

    def as_dict(self) -> dict:
        """The settings an index reports back, to compare with one already there."""
        return {key: getattr(self, key) for key in self._fields if key != "name"}


class GraphSettings(NamedTuple):
    label: str
    id_property: str
    sequence_property: str
    export_page_size: int
    write_batch_size: int
    writers: int
    create_vector_index: bool
    vector_index: VectorIndexSettings
    index_online_timeout_s: float


class ModelSettings(NamedTuple):
    name: str
    family: str
    layer: str | int
    per_residue: bool
    normalize: bool
    property: str  # the node property for its vectors, worked out once (see vector_property)
    long_sequences: str
    chunk_overlap: int
    max_residues: int | None
    device: str
    precision: str
    tokens_per_batch: int | str  # a number, or auto
    compile: bool | str

    @property
    def kind(self) -> str:
        """Short name of the per-protein vectors: mean_last, mean_layer12_l2..."""
        return embedding_kind(self.layer, self.normalize)


class ShardSettings(NamedTuple):
    most: int  # config: shards
    min_proteins_per_shard: int


class ReportSettings(NamedTuple):
    color_by: str | None
    neighbours: int
    sample: int


class RunLayout(NamedTuple):
    """Every file of one model's run, named once: the workflow's rules and embed_graph
    both write here, <results>/<vector property>/. Shard paths take the shard number, or
    "{shard}" for the rules' wildcard."""

    directory: Path

    @property
    def manifest(self) -> Path:
        return self.directory / "export" / "manifest.json"

    @property
    def shards(self) -> Path:
        return self.directory / "export" / "shards"

    def shard(self, shard) -> Path:
        return self.shards / f"shard-{shard}.parquet"

    def shard_embeddings(self, shard) -> Path:
        return self.directory / "embed" / f"shard-{shard}.parquet"

    def shard_rejects(self, shard) -> Path:
        return self.directory / "embed" / f"shard-{shard}.rejects.parquet"

    def shard_residues(self, shard) -> Path:
        return self.directory / "embed" / f"shard-{shard}.residues.parquet"

    @property
    def embeddings(self) -> Path:
        return self.directory / "embeddings.parquet"

    @property
    def rejects(self) -> Path:
        return self.directory / "rejects.parquet"

    @property
    def summary(self) -> Path:
        return self.directory / "summary.json"

    @property
    def run_record(self) -> Path:
        return self.directory / "run.json"

    @property
    def receipt(self) -> Path:
        return self.directory / "load" / "receipt.json"

    @property
    def graph_vectors(self) -> Path:
        return self.directory / "graph" / "vectors.parquet"

    @property
    def graph_rejects(self) -> Path:
        return self.directory / "graph" / "rejects.parquet"

    @property
    def graph_summary(self) -> Path:
        return self.directory / "graph" / "summary.json"

    @property
    def report(self) -> Path:
        return self.directory / "report"

    def log(self, step: str) -> Path:
        """A step's log: export, merge, load, snapshot, report, or embed/shard-N."""
        return self.directory / "logs" / f"{step}.log"


class Settings(NamedTuple):
    results: Path
    shards: ShardSettings
    graph: GraphSettings
    model: ModelSettings
    report: ReportSettings
    local_graph_steps: bool  # execution.local_graph_steps

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.results / self.model.property)

    def record(self) -> dict:
        """The settings that decide what the vectors are, for the run record."""
        return {"shards": as_dict(self.shards), "graph": as_dict(self.graph)} | {
            "model": as_dict(self.model)
        }


def load_settings(source: "str | Path | dict | Settings") -> Settings:
    """config.yaml (a path), or a dict of the same shape (copied, never changed), as
    settings; a Settings is returned as it is."""
    if isinstance(source, Settings):
        return source
    return settings_of(load_config(source))


def load_config(source: str | Path | dict) -> dict:
    """The raw dict, checked and with the schema's defaults filled in (for Snakemake's
    `config`, which rules look settings up in)."""
    if isinstance(source, dict):
        config = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError(f"config file {path} does not exist; pass --config PATH")
        config = yaml.safe_load(path.read_text()) or {}
    fill_and_check(config)
    return config


def fill_and_check(config: dict) -> None:
    """Fill in the schema's defaults (in place) and raise a UserError naming the first
    invalid key."""
    _check(config, "invalid config: ", ": ", "; fix it in config.yaml or --config")


def settings_of(config: dict) -> Settings:
    """The sections of a checked config with its defaults filled in."""
    return Settings(
        results=Path(config["results"]),
        shards=ShardSettings(config["shards"], config["min_proteins_per_shard"]),
        graph=graph_settings(config["graph"]),
        model=model_settings(config["model"]),
        report=ReportSettings(**config["report"]),
        local_graph_steps=config["execution"]["local_graph_steps"],
    )


def graph_settings(graph: dict) -> GraphSettings:
    index = graph["vector_index"]
    return GraphSettings(
        **{key: value for key, value in graph.items() if key != "vector_index"},
        vector_index=VectorIndexSettings(
            name=index["name"],
            similarity_function=index["similarity_function"],
            hnsw_m=index["hnsw"]["m"],
            hnsw_ef_construction=index["hnsw"]["ef_construction"],
            quantization=index["quantization"],
        ),
    )


def model_settings(model: dict) -> ModelSettings:
    embedding = model["embedding"]
    return ModelSettings(
        **{key: value for key, value in model.items() if key not in ("embedding", "property")},
        layer=embedding["layer"],
        per_residue=embedding["per_residue"],
        normalize=embedding["normalize"],
        property=vector_property(model),
    )


def embedder_settings(name: str, **given) -> ModelSettings:
    """An Embedder's model settings: its keywords (flat: layer, normalize, ...) checked
    against the schema's model section, the rest its defaults."""
    embedding = {key: given.pop(key) for key in ("layer", "normalize") if key in given}
    config = {"model": {"name": str(name), "embedding": embedding, **given}}
    _check(config, "Embedder: ", " ", "", inside="model")
    return model_settings(config["model"])


def vector_property(model: dict) -> str:
    """The node property for this model's vectors: model.property, or one per model and
    embedding kind, so spaces never mix (the default kind, mean_last, adds no suffix)."""
    if model["property"]:
        return identifier(model["property"], "model.property")
    embedding = model["embedding"]
    kind = embedding_kind(embedding["layer"], embedding["normalize"])
    suffix = "" if kind == "mean_last" else "_" + kind.removeprefix("mean_")
    return identifier(f"embedding_{model_slug(model['name'])}{suffix}", "derived model.property")


def default_config() -> dict:
    """Every key at its schema default."""
    return load_config({})


def as_dict(section: NamedTuple) -> dict:
    """A section as plain values, nested sections too (for JSON records)."""
    return {
        key: as_dict(value) if hasattr(value, "_asdict") else value
        for key, value in section._asdict().items()
    }


def _check(config: dict, prefix: str, between: str, suffix: str, inside: str = "") -> None:
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(config))
    if error is None:
        return
    path = [str(part) for part in error.absolute_path]
    if inside and path[:1] == [inside]:
        path = path[1:]
    key = ".".join(path) + between if path else ""
    raise UserError(f"{prefix}{key}{_reason(error)}{suffix}")


def _reason(error: jsonschema.ValidationError) -> str:
    if error.validator == "pattern" and error.validator_value == IDENTIFIER.pattern:
        reason = "is not a plain identifier (letters, digits and _, not starting with a digit)"
        return f"{error.instance!r} {reason}"
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    return error.message


def _with_defaults(validator_class):
    """A validator that fills in each missing property's default as it goes (the usual
    jsonschema recipe), so that defaults come from the schema and nowhere else."""
    check_properties = validator_class.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, spec in properties.items():
                if "default" in spec and key not in instance:
                    instance[key] = copy.deepcopy(spec["default"])
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill_defaults})


_VALIDATOR = _with_defaults(jsonschema.Draft202012Validator)(yaml.safe_load(SCHEMA.read_text()))
