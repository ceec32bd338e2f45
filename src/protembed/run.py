"""The whole workflow in the calling process, for users without Snakemake, and its output
read back.

    import protembed
    protembed.embed_graph("config.yaml")               # export, embed, merge, load
    ids, matrix, metadata = protembed.read_embeddings("results/embedding_esm2_t33_650M_UR50D")

`embed_graph` calls the same four steps as the workflow's rules, with the same files under
`<results>/<vector property>/` (logs included), so its graph and its Parquet are the ones a
`snakemake --forcerun export_sequences` run leaves: every call exports what still needs a
vector, and an up-to-date graph gets nothing written.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import parquet_io, steps
from .config import load_config
from .errors import UserError
from .names import vector_property


class Embeddings(NamedTuple):
    ids: list[str]
    matrix: np.ndarray  # float32, (proteins, dimension), row i for ids[i]
    metadata: dict  # model, model_revision, embedding, pooling, dimension, precision, ...


def run_directory(config: dict) -> Path:
    """Where one model's outputs live (the workflow's RUN): one directory per property."""
    return Path(config["results"]) / vector_property(config)


def embed_graph(config: str | Path | dict, *, progress: bool = True) -> dict:
    """Run export, embed (each shard the export made, one after the other), merge and load
    here.

    `config`: a config.yaml path or a dict of the same shape (checked against the schema,
    defaults filled in); the Neo4j connection comes from the NEO4J_* environment variables
    as for the workflow. Returns the run's summary (summary.json) with the load's receipt
    under `load`.
    """
    config = load_config(config)
    run = run_directory(config)
    manifest = run / "export" / "manifest.json"
    with _step_log(run / "logs" / "export.log"):
        exported = steps.export(config, str(manifest), str(run / "export" / "shards"))
    shards = range(len(exported["shards"]))
    embedded = [run / "embed" / f"shard-{i}.parquet" for i in shards]
    rejects = [run / "embed" / f"shard-{i}.rejects.parquet" for i in shards]
    for shard in shards:
        with _step_log(run / "logs" / "embed" / f"shard-{shard}.log"):
            steps.embed(
                config,
                exported["shards"][shard]["path"],
                str(embedded[shard]),
                str(rejects[shard]),
                progress=progress,
                residues_path=str(run / "embed" / f"shard-{shard}.residues.parquet"),
            )
    with _step_log(run / "logs" / "merge.log"):
        summary = steps.merge(
            config,
            str(manifest),
            [str(path) for path in embedded],
            [str(path) for path in rejects],
            str(run / "embeddings.parquet"),
            str(run / "rejects.parquet"),
            str(run / "summary.json"),
            str(run / "run.json"),
        )
    with _step_log(run / "logs" / "load.log"):
        receipt = steps.load(
            config,
            str(run / "embeddings.parquet"),
            str(run / "rejects.parquet"),
            str(run / "load" / "receipt.json"),
        )
    return summary | {"load": receipt}


def read_embeddings(path: str | Path) -> Embeddings:
    """A run's embeddings.parquet (or the run directory that holds it): ids, the float32
    matrix and the metadata saying what the vectors are."""
    path = Path(path)
    if path.is_dir():
        path = path / "embeddings.parquet"
    if not path.is_file():
        raise UserError(f"{path} does not exist; run embed_graph or the workflow first")
    table = parquet_io.read_table(path)
    if "id" not in table.column_names or "vector" not in table.column_names:
        raise UserError(f"{path} is not a run's embeddings.parquet (no id and vector columns)")
    vectors = table["vector"].combine_chunks()
    dimension = vectors.type.list_size
    matrix = vectors.flatten().to_numpy(zero_copy_only=False).reshape(len(vectors), dimension)
    return Embeddings(
        table["id"].to_pylist(), matrix.astype(np.float32), parquet_io.read_metadata(path)
    )


@contextmanager
def _step_log(path: Path) -> Iterator[None]:
    """The step's log file, where the workflow's rule would write it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("protembed")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()
