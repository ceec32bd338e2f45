"""The workflow's four steps as plain functions: Snakemake scripts and notebooks call these.

Each step takes the validated configuration (config.yaml after the JSON schema filled in
defaults) and explicit file paths, and writes its outputs atomically.
"""

import datetime
import importlib.metadata
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import __version__, graph, parquet_io
from .errors import RejectedSequence, UserError
from .names import vector_property
from .sequences import sequence_sha256, shard_of

log = logging.getLogger(__name__)


def protein_graph(config: dict) -> graph.ProteinGraph:
    g = config["graph"]
    return graph.ProteinGraph(g["label"], g["id_property"], g["sequence_property"])


def _versions() -> dict:
    names = ("torch", "transformers", "numpy", "pyarrow", "neo4j")
    return {"protembed": __version__} | {n: importlib.metadata.version(n) for n in names}


def export(config: dict, manifest_path: str, shard_paths: list[str]) -> dict:
    """Stream the proteins that need a vector from this model into hash-assigned shards."""
    protein = protein_graph(config)
    prop = vector_property(config)
    connection = graph.Connection.from_env()
    database = connection.database
    by_sequence: list[dict[str, tuple[str, list[str]]]] = [{} for _ in shard_paths]
    counts = defaultdict(int)
    rejects: list[dict] = []
    with graph.connect(connection) as driver:
        graph.ensure_id_index(driver, database, protein)
        for element_id in graph.unaddressable_proteins(driver, database, protein):
            rejects.append(
                {
                    "id": element_id,
                    "sequence_sha256": None,
                    "reason": f"{protein.id_property} is missing or not a string "
                    "(id shown is the node's elementId)",
                }
            )
        for row in graph.export_rows(
            driver, database, protein, prop, config["graph"]["export_page_size"]
        ):
            counts["proteins_with_sequence"] += 1
            if not isinstance(row.sequence, str):
                rejects.append(
                    {
                        "id": row.id,
                        "sequence_sha256": None,
                        "reason": f"{protein.sequence_property} is not a string",
                    }
                )
                continue
            sha = sequence_sha256(row.sequence)
            if row.settled and row.stored_sha256 == sha:
                counts["up_to_date"] += 1
                continue
            shard = by_sequence[shard_of(sha, len(shard_paths))]
            shard.setdefault(sha, (row.sequence, []))[1].append(row.id)
            counts["exported"] += 1

    shards = []
    for path, sequences in zip(shard_paths, by_sequence, strict=True):
        table = pa.table(
            {
                "sequence_sha256": list(sequences),
                "sequence": [sequence for sequence, _ in sequences.values()],
                "ids": [ids for _, ids in sequences.values()],
            },
            schema=parquet_io.SHARD_SCHEMA,
        )
        parquet_io.write_table(table, path)
        shards.append(
            {
                "path": str(path),
                "sequences": len(sequences),
                "proteins": sum(len(ids) for _, ids in sequences.values()),
            }
        )
    manifest = {
        "label": protein.label,
        "id_property": protein.id_property,
        "sequence_property": protein.sequence_property,
        "property": prop,
        "model": config["model"]["name"],
        "proteins_with_sequence": counts["proteins_with_sequence"],
        "up_to_date": counts["up_to_date"],
        "exported": counts["exported"],
        "unique_sequences": sum(s["sequences"] for s in shards),
        "rejected_at_export": rejects,
        "shards": shards,
        "created": _now(),
    }
    parquet_io.write_json(manifest, manifest_path)
    log.info(
        "exported %d proteins (%d unique sequences) into %d shards; %d already up to date",
        manifest["exported"],
        manifest["unique_sequences"],
        len(shards),
        manifest["up_to_date"],
    )
    return manifest


def embed(
    config: dict, shard_path: str, embeddings_path: str, rejects_path: str, progress=None
) -> dict:
    """Embed one shard's unique sequences; every one ends embedded or rejected."""
    # Imported here so that export, merge and load never pay for the deep-learning stack.
    from .adapters import load_adapter
    from .embedding import Embedded, embed_sequences

    model = config["model"]
    shard = parquet_io.read_table(shard_path).to_pylist()
    rejects: list[dict] = []
    if shard:
        adapter = load_adapter(model["name"], model["family"], model["device"])
        prepared, kept = [], []
        for row in shard:
            try:
                prepared.append(adapter.prepare(row["sequence"]))
                kept.append(row)
            except RejectedSequence as reason:
                rejects.extend(_rejects(row, str(reason)))
        budget = model["tokens_per_batch"]
        results = embed_sequences(
            adapter,
            prepared,
            long_sequences=model["long_sequences"],
            overlap=model["chunk_overlap"],
            tokens_per_batch=None if budget == "auto" else budget,
            progress=progress,
        )
        done = [(row, r) for row, r in zip(kept, results, strict=True) if isinstance(r, Embedded)]
        for row, result in zip(kept, results, strict=True):
            if isinstance(result, RejectedSequence):
                rejects.extend(_rejects(row, str(result)))
        dimension, metadata = adapter.dimension, _embedding_metadata(config, adapter)
    else:
        # An empty shard loads no model: its output only needs a valid, empty table.
        done, dimension, metadata = [], 0, {"model": model["name"], "dimension": 0}
    vectors = np.stack([r.vector for _, r in done]) if done else np.zeros((0, dimension))
    table = pa.table(
        {
            "sequence_sha256": [row["sequence_sha256"] for row, _ in done],
            "ids": [row["ids"] for row, _ in done],
            "vector": parquet_io.vectors_array(vectors),
            "residues": [r.residues for _, r in done],
            "long_sequence_handling": [r.handling for _, r in done],
        },
        schema=parquet_io.shard_embeddings_schema(dimension),
    )
    parquet_io.write_table(table, embeddings_path, metadata)
    parquet_io.write_table(pa.Table.from_pylist(rejects, parquet_io.REJECTS_SCHEMA), rejects_path)
    summary = {"sequences": len(shard), "embedded": len(done), "rejected_proteins": len(rejects)}
    log.info("shard %s: %s", shard_path, summary)
    return summary


def _rejects(row: dict, reason: str) -> list[dict]:
    return [
        {"id": i, "sequence_sha256": row["sequence_sha256"], "reason": reason} for i in row["ids"]
    ]


def _embedding_metadata(config: dict, adapter) -> dict:
    model = config["model"]
    return {
        "model": model["name"],
        "family": adapter.family,
        "embedding": "mean",
        "pooling": f"mean over residues of the {adapter.representation}",
        "representation": adapter.representation,
        "dimension": adapter.dimension,
        "precision": "float32",
        "max_residues": adapter.max_residues,
        "long_sequences": model["long_sequences"],
        "chunk_overlap": model["chunk_overlap"],
        "device": str(adapter.device),
        "versions": _versions(),
        "created": _now(),
    }


def merge(
    config: dict,
    manifest_path: str,
    shard_embeddings: list[str],
    shard_rejects: list[str],
    embeddings_path: str,
    rejects_path: str,
    summary_path: str,
) -> dict:
    """One dataset for the run, one row per protein; fails if any protein went missing."""
    import json

    manifest = json.loads(Path(manifest_path).read_text())
    metadata = next(
        (m for m in map(parquet_io.read_metadata, shard_embeddings) if m.get("dimension")), None
    )
    dimension = metadata["dimension"] if metadata else 0
    model = config["model"]["name"]
    embedded = 0
    with parquet_io.table_writer(
        embeddings_path, parquet_io.embeddings_schema(dimension), metadata
    ) as writer:
        for path in shard_embeddings:
            table = parquet_io.read_table(path)
            if table.num_rows == 0:
                continue
            lengths = pa.compute.list_value_length(table["ids"]).to_numpy()
            rows = np.repeat(np.arange(table.num_rows), lengths)
            exploded = pa.table(
                {
                    "id": pa.compute.list_flatten(table["ids"]),
                    "model": pa.array([model] * len(rows), pa.string()),
                    "sequence_sha256": table["sequence_sha256"].take(rows),
                    "vector": table["vector"].take(rows),
                    "residues": table["residues"].take(rows),
                    "long_sequence_handling": table["long_sequence_handling"].take(rows),
                },
                schema=writer.schema.remove_metadata(),
            )
            writer.write_table(exploded)
            embedded += exploded.num_rows
    rejects = pa.concat_tables(
        [pa.Table.from_pylist(manifest["rejected_at_export"], parquet_io.REJECTS_SCHEMA)]
        + [parquet_io.read_table(p) for p in shard_rejects]
    )
    parquet_io.write_table(rejects, rejects_path)
    rejected_exported = rejects.num_rows - len(manifest["rejected_at_export"])
    if embedded + rejected_exported != manifest["exported"]:
        raise UserError(
            f"the run lost proteins: exported {manifest['exported']}, embedded {embedded}, "
            f"rejected {rejected_exported}; rerun the embed jobs"
        )
    summary = {
        "exported": manifest["exported"],
        "embedded": embedded,
        "rejected": rejects.num_rows,
        "up_to_date": manifest["up_to_date"],
        "dimension": dimension if metadata else None,
        "property": manifest["property"],
        "shards": len(shard_embeddings),
        "embeddings": str(embeddings_path),
        "rejects": str(rejects_path),
    }
    parquet_io.write_json(summary, summary_path)
    log.info("merged: %s", summary)
    return summary


def load(config: dict, embeddings_path: str, rejects_path: str, receipt_path: str) -> dict:
    """Write the run's vectors and rejections into the graph; make sure the index is ONLINE."""
    protein = protein_graph(config)
    prop = vector_property(config)
    settings = config["graph"]
    metadata = parquet_io.read_metadata(embeddings_path)
    total = parquet_io.count_rows(embeddings_path)
    written = 0
    index = None
    connection = graph.Connection.from_env()
    with graph.connect(connection) as driver:
        if total:
            provenance = {
                "model": metadata["model"],
                "embedding": metadata["embedding"],
                "dimension": metadata["dimension"],
                "precision": metadata["precision"],
                "created": _now(),
                "pipeline": f"protembed {__version__}",
            }
            for batch in parquet_io.iter_batches(embeddings_path, settings["write_batch_size"]):
                rows = [
                    {"id": i, "sha256": s, "handling": h, "vector": v}
                    for i, s, h, v in zip(
                        batch["id"].to_pylist(),
                        batch["sequence_sha256"].to_pylist(),
                        batch["long_sequence_handling"].to_pylist(),
                        batch["vector"].to_pylist(),
                        strict=True,
                    )
                ]
                written += graph.write_vectors(
                    driver, connection.database, protein, prop, rows, provenance
                )
        rejections = [
            {"id": r["id"], "sha256": r["sequence_sha256"], "reason": r["reason"]}
            for r in parquet_io.read_table(rejects_path).to_pylist()
            if r["sequence_sha256"] is not None
        ]
        rejected = (
            graph.write_rejections(driver, connection.database, protein, prop, rejections)
            if rejections
            else 0
        )
        dimension = metadata.get("dimension")
        if settings["create_vector_index"] and dimension:
            index = graph.ensure_vector_index(
                driver,
                connection.database,
                protein,
                prop,
                dimension,
                settings["index_online_timeout_s"],
            )
    receipt = {
        "rows": total,
        "written": written,
        "unchanged": total - written,
        "rejections_written": rejected,
        "property": prop,
        "vector_index": index,
        "created": _now(),
    }
    parquet_io.write_json(receipt, receipt_path)
    log.info("loaded: %s", receipt)
    return receipt


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
