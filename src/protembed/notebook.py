"""The whole workflow in the calling process, for users without Snakemake, and what the
graph holds read back.

    import protembed
    protembed.embed_graph("config.yaml")               # export, embed, merge, load
    vectors = protembed.read_embeddings("config.yaml")  # every vector the property holds

`embed_graph` calls the same steps as the workflow's rules, with the same files (the run
layout, protembed.config.RunLayout: `<results>/<vector property>/`, logs included), so its
graph and its Parquet are the ones a `snakemake --forcerun export_sequences` run leaves:
every call exports what still needs a vector, and an up-to-date graph gets nothing written.
"""

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from . import graph, steps
from .config import Settings, load_settings
from .errors import UserError
from .jobs import log_file
from .preflight import check_before_run

if TYPE_CHECKING:
    import pandas as pd

# A row's id, hash and provenance in the DataFrame beside its vector, roughly.
ROW_OVERHEAD_BYTES = 1000
# What every vector of one property shares (the graph refuses to mix others).
SHARED = ("model", "model_revision", "embedding", "pooling", "dimension")


class Embeddings(NamedTuple):
    ids: list[str]
    matrix: np.ndarray  # float32, (proteins, dimension), row i for ids[i]
    metadata: dict  # what the vectors share: model, model_revision, embedding, pooling, ...
    proteins: "pd.DataFrame"  # row i: ids[i]'s sequence_sha256 and provenance (STORED_COLUMNS)


def embed_graph(config: "str | Path | dict | Settings", *, progress: bool = True) -> dict:
    """Run export, embed (each shard the export made, one after the other), merge, load
    and snapshot here.

    `config`: a config.yaml path or a dict of the same shape (checked against the schema,
    defaults filled in); the Neo4j connection comes from the NEO4J_* environment variables
    as for the workflow. Returns the run's summary (summary.json) with the load's receipt
    under `load` and what the graph holds under `graph`.
    """
    settings = load_settings(config)
    check_before_run(settings)
    graph_settings, model, files = settings.graph, settings.model, settings.layout
    with _step_log(files.log("export")):
        exported = steps.export(
            graph_settings, model, settings.shards, files.manifest, files.shards
        )
    shards = range(len(exported["shards"]))
    for shard in shards:
        with _step_log(files.log(f"embed/shard-{shard}")):
            steps.embed(
                model,
                files.shard(shard),
                files.shard_embeddings(shard),
                files.shard_rejects(shard),
                progress=progress,
                residues_path=files.shard_residues(shard),
            )
    with _step_log(files.log("merge")):
        summary = steps.merge(
            model,
            files.manifest,
            [files.shard_embeddings(shard) for shard in shards],
            [files.shard_rejects(shard) for shard in shards],
            files.embeddings,
            files.rejects,
            files.summary,
            files.run_record,
        )
    with _step_log(files.log("load")):
        receipt = steps.load(graph_settings, model, files.embeddings, files.rejects, files.receipt)
    with _step_log(files.log("snapshot")):
        held = steps.snapshot(
            graph_settings,
            model,
            files.graph_vectors,
            files.graph_rejects,
            files.graph_summary,
            files.summary,
        )
    return summary | {"load": receipt, "graph": held}


def open_graph(config: "str | Path | dict | Settings") -> graph.ProteinGraph:
    """The graph and model property a config names, connected; use it in a `with` block:
    `vector(id)`, `nearest_neighbours(id, k)`, `nearest_to(vector, k)`."""
    settings = load_settings(config)
    return graph.ProteinGraph.from_settings(settings.graph, settings.model)


def iter_embeddings(
    config: "str | Path | dict | Settings", batch_size: int = 5000
) -> Iterator[Embeddings]:
    """Every vector the graph holds for the config's model property, a page at a time, in
    id order: memory stays flat whatever the graph's size."""
    import pandas as pd

    settings = load_settings(config)
    with graph.ProteinGraph.from_settings(settings.graph, settings.model) as proteins:
        for matrix, rows in proteins.stored_vectors(batch_size):
            table = pd.DataFrame(rows, columns=graph.STORED_COLUMNS)
            shared = table.iloc[0][list(SHARED)].to_dict()
            shared["property"] = proteins.vector_property
            yield Embeddings(table["id"].tolist(), matrix, shared, table)


def read_embeddings(config: "str | Path | dict | Settings") -> Embeddings:
    """Every vector the graph holds for the config's model property (whichever runs put
    them there), with ids, sequence hashes and provenance: one matrix in memory. Nodes that
    share an id each have their own row."""
    import pandas as pd

    settings = load_settings(config)
    with graph.ProteinGraph.from_settings(settings.graph, settings.model) as proteins:
        _check_it_fits(proteins)
    pages = list(iter_embeddings(settings, settings.graph.export_page_size))
    if not pages:
        empty = pd.DataFrame(columns=graph.STORED_COLUMNS)
        return Embeddings(
            [], np.zeros((0, 0), np.float32), {"property": settings.model.property}, empty
        )
    table = pd.concat([page.proteins for page in pages], ignore_index=True)
    matrix = np.concatenate([page.matrix for page in pages])
    return Embeddings(table["id"].tolist(), matrix, pages[0].metadata, table)


def _check_it_fits(proteins: graph.ProteinGraph) -> None:
    """Refuse, with the sizes, a matrix that would take more than half the free memory."""
    stored = proteins.stored_space()
    dimension = (stored[1]["dimension"] if stored else None) or 0
    needed = proteins.count_with_vector() * (dimension * 4 + ROW_OVERHEAD_BYTES)
    free = available_memory()
    if needed > free / 2:
        raise UserError(
            f"{proteins.label}.{proteins.vector_property} holds vectors that would take "
            f"{_size(needed)} in memory, more than half of the {_size(free)} free here; read "
            "them a page at a time with iter_embeddings(config), or from the run's "
            "graph/vectors.parquet"
        )


def _size(size: float) -> str:
    return f"{size / 2**30:,.1f} GiB" if size >= 2**30 else f"{size / 2**20:,.1f} MiB"


def available_memory() -> int:
    """Bytes this machine can still give (MemAvailable), or all of it where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _step_log(path: Path):
    """The step's log file, where the workflow's rule would write it."""
    return log_file(path, logging.getLogger("protembed"))
