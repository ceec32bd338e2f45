"""The workflow's four steps as plain functions: Snakemake scripts and notebooks call these.

Each step takes the validated configuration (config.yaml after the JSON schema filled in
defaults) and explicit file paths, and writes its outputs atomically.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import graph, parquet_io
from .errors import UserError
from .names import vector_property
from .provenance import embedding_metadata, expected_space, graph_provenance, now
from .sequences import sequence_sha256
from .sharding import ShardSpill, shard_of

log = logging.getLogger(__name__)


def export(config: dict, manifest_path: str, shard_paths: list[str]) -> dict:
    """Stream the proteins that need a vector from this model into hash-assigned shards.

    Memory stays bounded whatever the graph's size: pages of proteins go to spill files on
    disk as they arrive, and each shard is grouped by sequence (identical sequences share a
    shard) from its spill file once the graph has been read.
    """
    protein = graph.ProteinGraph.from_config(config)
    prop = vector_property(config)
    connection = graph.Connection.from_env()
    database = connection.database
    counts = defaultdict(int)
    rejects: list[dict] = []
    with (
        graph.connect(connection) as driver,
        ShardSpill(Path(manifest_path).parent, len(shard_paths)) as spill,
    ):
        graph.ensure_id_index(driver, database, protein)
        # Before any embedding: with new weights under an old property, every protein
        # would look up to date and the run would silently change nothing.
        graph.check_same_space(driver, database, protein, prop, *expected_space(config))
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
            spill.add(shard_of(sha, len(shard_paths)), sha, row.sequence, row.id)
            counts["exported"] += 1
        shards = spill.write_shards(shard_paths)
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
        "created": now(),
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
    config: dict,
    shard_path: str,
    embeddings_path: str,
    rejects_path: str,
    progress=None,
    token_budget_divisor: int = 1,
    residues_path: str | None = None,
) -> dict:
    """Embed one shard's unique sequences; every one ends embedded or rejected.

    `token_budget_divisor` divides the token budget (model.tokens_per_batch, or the device's
    automatic one): the workflow passes 2, 4, ... when it retries a failed job.
    `residues_path` receives the per-residue vectors (empty unless
    model.embedding.per_residue).
    """
    # Imported here so that export, merge and load never pay for the deep-learning stack.
    from .embedder import Embedder
    from .embedding import Embedded

    model = config["model"]
    # The notebook's path: Embedder.embed prepares, deduplicates and embeds.
    embedder = Embedder.from_config(model, progress=False)
    kind = embedder.kind
    per_residue = model["embedding"]["per_residue"]
    if per_residue and residues_path is None:
        raise ValueError("model.embedding.per_residue needs a residues_path to write to")
    shard = parquet_io.read_table(shard_path).to_pylist()
    rejects: list[dict] = []
    if shard:
        adapter = embedder.adapter  # loaded before the clock starts
        budget = embedder.token_budget(token_budget_divisor)
        started = time.perf_counter()
        results = embedder.embed(
            [row["sequence"] for row in shard],
            per_residue=per_residue,
            progress=progress,
            token_budget_divisor=token_budget_divisor,
        )
        seconds = time.perf_counter() - started
        done = []
        for row, result in zip(shard, results, strict=True):
            if isinstance(result, Embedded):
                done.append((row, result))
            else:  # a RejectedSequence: its message is the reason
                rejects.extend(_rejects(row, str(result)))
        dimension = adapter.dimension
        metadata = embedding_metadata(config, adapter, kind, per_residue=per_residue)
        metadata["throughput"] = _throughput(shard_path, done, seconds, adapter, budget)
        log.info("shard %s: %s", shard_path, metadata["throughput"])
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
    if residues_path is not None:
        with_residues = [(row, r) for row, r in done if r.residue_vectors is not None]
        residue_table = pa.table(
            {
                "sequence_sha256": [row["sequence_sha256"] for row, _ in with_residues],
                "ids": [row["ids"] for row, _ in with_residues],
                "residue_vectors": parquet_io.residue_vectors_array(
                    [r.residue_vectors for _, r in with_residues], dimension
                ),
            },
            schema=parquet_io.residue_embeddings_schema(dimension),
        )
        residue_metadata = metadata | {
            "embedding": "per_residue" if per_residue else "none",
            "pooling": metadata.get("residue_pooling"),
        }
        parquet_io.write_table(residue_table, residues_path, residue_metadata)
    parquet_io.write_table(pa.Table.from_pylist(rejects, parquet_io.REJECTS_SCHEMA), rejects_path)
    summary = {"sequences": len(shard), "embedded": len(done), "rejected_proteins": len(rejects)}
    log.info("shard %s: %s", shard_path, summary)
    return summary


def _throughput(shard_path: str, done: list, seconds: float, adapter, budget: int) -> dict:
    """How fast this shard was embedded (model loading and file I/O not counted)."""
    residues = sum(result.residues for _, result in done)
    return {
        "shard": Path(shard_path).name,
        "sequences": len(done),
        "residues": residues,
        "seconds": seconds,
        "residues_per_s": round(residues / seconds, 1) if seconds else None,
        "device": str(adapter.device),
        "precision": adapter.precision,
        "tokens_per_batch": budget,
    }


def _run_throughput(shard_metadata: list[dict]) -> dict:
    """The shards' speeds, and their sum; seconds add up the embed jobs' model time, which
    is more than the run's wall time when jobs ran side by side."""
    shards = [m["throughput"] for m in shard_metadata if "throughput" in m]
    residues = sum(shard["residues"] for shard in shards)
    seconds = sum(shard["seconds"] for shard in shards)
    return {
        "residues": residues,
        "model_seconds": seconds,
        "residues_per_s": round(residues / seconds, 1) if seconds else None,
        "shards": shards,
    }


def _rejects(row: dict, reason: str) -> list[dict]:
    return [
        {"id": i, "sequence_sha256": row["sequence_sha256"], "reason": reason} for i in row["ids"]
    ]


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
    shard_metadata = [parquet_io.read_metadata(path) for path in shard_embeddings]
    metadata = next((m for m in shard_metadata if m.get("dimension")), None)
    if metadata:  # one shard's speed says nothing about the run's: that goes in summary.json
        metadata = {key: value for key, value in metadata.items() if key != "throughput"}
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
        "throughput": _run_throughput(shard_metadata),
    }
    parquet_io.write_json(summary, summary_path)
    log.info("merged: %s", summary)
    return summary


def load(config: dict, embeddings_path: str, rejects_path: str, receipt_path: str) -> dict:
    """Write the run's vectors and rejections into the graph; make sure the index is ONLINE.

    Batches stream from the Parquet file, so memory does not grow with the run's size.
    """
    protein = graph.ProteinGraph.from_config(config)
    prop = vector_property(config)
    settings = config["graph"]
    batch_size = settings["write_batch_size"]
    metadata = parquet_io.read_metadata(embeddings_path)
    total = parquet_io.count_rows(embeddings_path)
    written = rejected = 0
    index = None
    connection = graph.Connection.from_env()
    with graph.connect(connection) as driver:
        native = graph.stores_native_vectors(driver, connection.database)
        started = time.monotonic()
        # Rejections to write come from embed jobs that loaded the model, so whenever
        # there is anything to write, the metadata says what made it.
        provenance = graph_provenance(metadata) if metadata.get("dimension") else None
        if provenance:
            graph.check_same_space(driver, connection.database, protein, prop, provenance)
        if total:
            written = graph.write_vectors(
                driver,
                connection.database,
                protein,
                prop,
                _vector_batches(embeddings_path, batch_size),
                provenance,
                writers=settings["writers"],
                native=native,
            )
        for batch in parquet_io.iter_batches(rejects_path, batch_size):
            rejections = [
                {"id": r["id"], "sha256": r["sequence_sha256"], "reason": r["reason"]}
                for r in batch.to_pylist()
                if r["sequence_sha256"] is not None
            ]
            if rejections:
                rejected += graph.write_rejections(
                    driver, connection.database, protein, prop, rejections, provenance
                )
        seconds = time.monotonic() - started
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
        "vector_type": "VECTOR" if native else "float32 list (db.create.setNodeVectorProperty)",
        "writers": settings["writers"],
        "write_seconds": round(seconds, 3),
        "neo4j_rust_ext": graph.rust_extension_loaded(),
        "vector_index": index,
        "created": now(),
    }
    parquet_io.write_json(receipt, receipt_path)
    log.info("loaded: %s", receipt)
    return receipt


def _vector_batches(path: str, batch_size: int) -> Iterator[graph.VectorBatch]:
    for batch in parquet_io.iter_batches(path, batch_size):
        vectors = batch["vector"]
        yield graph.VectorBatch(
            ids=batch["id"].to_pylist(),
            sequence_sha256=batch["sequence_sha256"].to_pylist(),
            long_sequence_handling=batch["long_sequence_handling"].to_pylist(),
            vectors=vectors.flatten().to_numpy().reshape(len(vectors), vectors.type.list_size),
        )
