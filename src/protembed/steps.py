"""The workflow's steps as plain functions: Snakemake scripts and embed_graph call these.

Each step takes the settings sections it reads (protembed.config) and explicit file paths,
and writes its outputs atomically.
"""

import itertools
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import graph, parquet_io
from .config import GraphSettings, ModelSettings, ShardSettings
from .errors import UserError
from .provenance import embedding_metadata, expected_space, graph_provenance, now, run_record
from .sequences import sequence_sha256
from .sharding import ShardSpill, shard_count

log = logging.getLogger(__name__)


def export(
    graph_settings: GraphSettings,
    model: ModelSettings,
    sharding: ShardSettings,
    manifest_path: str,
    shards_directory: str,
) -> dict:
    """Stream the proteins that need a vector from this model into shards of equal cost,
    `shards_directory`/shard-N.parquet, as many as the work fills (sharding.shard_count):
    the manifest lists them, and each becomes one embed job.

    Every node with the label and a sequence ends up counted once: exported, up to date, or
    rejected with its reason. Memory stays bounded whatever the graph's size: pages of
    proteins go to spill files on disk as they arrive, and each shard is grouped by
    sequence (identical sequences share a shard) from the spill files once the graph has
    been read.
    """
    from .preflight import check_model

    check_model(model)
    counts = defaultdict(int)
    with (
        graph.ProteinGraph.from_settings(graph_settings, model) as proteins,
        ShardSpill(Path(manifest_path).parent) as spill,
    ):
        proteins.check_names()  # before any schema is made for a label no node has
        _check_before_embedding(graph_settings, model, proteins)
        rejects = [
            _reject(node, None, None, f"{reason} (id shown is the node's elementId)")
            for node, reason in proteins.without_string_id()
        ]
        for row in proteins.export_rows(graph_settings.export_page_size):
            if not isinstance(row.sequence, str):
                rejects.append(
                    _reject(row.id, None, None, f"{proteins.sequence_property} is not a string")
                )
                continue
            sha = sequence_sha256(row.sequence)
            if row.settled and row.stored_sha256 == sha:
                counts["up_to_date"] += 1
                continue
            spill.add(sha, row.sequence, row.id)
            counts["exported"] += 1
        count = shard_count(counts["exported"], sharding.most, sharding.min_proteins_per_shard)
        shards = spill.write_shards(_shard_paths(Path(shards_directory), count))
        server = {"version": proteins.server.version, "edition": proteins.server.edition}
    manifest = {
        "label": proteins.label,
        "id_property": proteins.id_property,
        "sequence_property": proteins.sequence_property,
        "property": proteins.vector_property,
        "model": model.name,
        "proteins_with_sequence": counts["exported"] + counts["up_to_date"] + len(rejects),
        "up_to_date": counts["up_to_date"],
        "exported": counts["exported"],
        "unique_sequences": sum(s["sequences"] for s in shards),
        "rejected_at_export": rejects,
        "shards": shards,
        "server": server,
        "created": now(),
    }
    parquet_io.write_json(manifest, manifest_path)
    log.info(
        "exported %d proteins (%d unique sequences) into %d shards (shards: %d, "
        "min_proteins_per_shard: %d); %d already up to date, %d rejected",
        manifest["exported"],
        manifest["unique_sequences"],
        len(shards),
        sharding.most,
        sharding.min_proteins_per_shard,
        manifest["up_to_date"],
        len(rejects),
    )
    return manifest


def _shard_paths(directory: Path, count: int) -> list[Path]:
    """Paths for this export's shards, in a directory that holds no other: shards of an
    earlier, larger export would otherwise sit beside them (a rerun in process)."""
    directory.mkdir(parents=True, exist_ok=True)
    for earlier in directory.glob("shard-*.parquet"):
        earlier.unlink()
    return [directory / f"shard-{i}.parquet" for i in range(count)]


def _check_before_embedding(
    graph_settings: GraphSettings, model: ModelSettings, proteins: graph.ProteinGraph
) -> None:
    """What would make the load fail or the vectors useless, refused before any GPU time."""
    from .adapters import expected_dimension

    proteins.ensure_id_index()
    # With new weights under an old property, every protein would look up to date and
    # the run would silently change nothing.
    proteins.check_same_space(*expected_space(model))
    proteins.check_vector_index(
        expected_dimension(model.name),  # None: known only once embedded
        create=graph_settings.create_vector_index,
        settings=graph_settings.vector_index,
    )


def _reject(protein_id: str, sha256: str | None, sequence: str | None, reason: str) -> dict:
    return {"id": protein_id, "sequence_sha256": sha256, "reason": reason, "sequence": sequence}


def embed(
    model: ModelSettings,
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
    `residues_path` receives the per-residue vectors (empty unless model.per_residue).
    """
    # Imported here so that export, merge and load never pay for the deep-learning stack.
    from .embedder import Embedder
    from .engine import Embedded

    # The notebook's path: Embedder.embed prepares, deduplicates and embeds.
    embedder = Embedder(model, progress=False)
    kind = embedder.kind
    per_residue = model.per_residue
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
        metadata = embedding_metadata(model, adapter, kind, per_residue=per_residue)
        metadata["throughput"] = _throughput(shard_path, done, seconds, adapter, budget)
        log.info("shard %s: %s", shard_path, metadata["throughput"])
    else:
        # An empty shard loads no model: its output only needs a valid, empty table.
        done, dimension, metadata = [], 0, {"model": model.name, "dimension": 0}
    vectors = np.stack([r.vector for _, r in done]) if done else np.zeros((0, dimension))
    table = pa.table(
        {
            "sequence_sha256": [row["sequence_sha256"] for row, _ in done],
            "sequence": [row["sequence"] for row, _ in done],
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
        "batching": adapter.batching,
        "tokens_per_batch": budget,
    }


def _throughput_of_shards(shard_metadata: list[dict]) -> dict:
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
    return [_reject(i, row["sequence_sha256"], row["sequence"], reason) for i in row["ids"]]


def merge(
    model: ModelSettings,
    manifest_path: str,
    shard_embeddings: list[str],
    shard_rejects: list[str],
    embeddings_path: str,
    rejects_path: str,
    summary_path: str,
    run_record_path: str | None = None,
) -> dict:
    """One dataset for the run, one row per protein; fails if any protein went missing.

    `run_record_path` receives the run record (see run_record); the merged Parquet's
    metadata then names it under `run_record`, relative to the Parquet's directory.
    """
    manifest = parquet_io.read_json(manifest_path)
    shard_metadata = [parquet_io.read_metadata(path) for path in shard_embeddings]
    metadata = next((m for m in shard_metadata if m.get("dimension")), None)
    if metadata:  # one shard's speed says nothing about the run's: that goes in summary.json
        metadata = {key: value for key, value in metadata.items() if key != "throughput"}
    dimension = metadata["dimension"] if metadata else 0
    file_metadata = dict(metadata or {})
    if run_record_path:
        file_metadata["run_record"] = os.path.relpath(run_record_path, Path(embeddings_path).parent)
    embedded = 0
    with parquet_io.table_writer(
        embeddings_path, parquet_io.embeddings_schema(dimension), file_metadata or None
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
                    "model": pa.array([model.name] * len(rows), pa.string()),
                    "sequence_sha256": table["sequence_sha256"].take(rows),
                    "sequence": table["sequence"].take(rows),
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
        "throughput": _throughput_of_shards(shard_metadata),
    }
    parquet_io.write_json(summary, summary_path)
    if run_record_path:
        record = run_record(model, manifest, metadata, shard_metadata, summary, embeddings_path)
        parquet_io.write_json(record, run_record_path)
    log.info("merged: %s", summary)
    return summary


def load(
    graph_settings: GraphSettings,
    model: ModelSettings,
    embeddings_path: str,
    rejects_path: str,
    receipt_path: str,
) -> dict:
    """Write the run's vectors and rejections into the graph; make sure the index is ONLINE.

    Each goes only to the nodes that still hold the sequence it was made from; rows whose
    sequence no node holds any more (deleted or changed since the export) are listed in the
    receipt, and the next run embeds what those nodes hold now. Batches stream from the
    Parquet file, so memory does not grow with the run's size.
    """
    settings = graph_settings
    batch_size = settings.write_batch_size
    metadata = parquet_io.read_metadata(embeddings_path)
    total = parquet_io.count_rows(embeddings_path)
    vectors = rejections = graph.WriteResult(0, [])
    index = None
    with graph.ProteinGraph.from_settings(settings, model) as proteins:
        native = proteins.stores_native_vectors()
        started = time.monotonic()
        # Rejections to write come from embed jobs that loaded the model, so whenever
        # there is anything to write, the metadata says what made it.
        provenance = graph_provenance(metadata) if metadata.get("dimension") else None
        if provenance:
            proteins.check_same_space(provenance)
        if total:
            vectors = proteins.write_vectors(
                _vector_batches(embeddings_path, batch_size),
                provenance,
                writers=settings.writers,
                native=native,
            )
        rejections = graph.WriteResult.total(
            proteins.write_rejections(rows, provenance)
            for rows in _rejection_batches(rejects_path, batch_size)
        )
        seconds = time.monotonic() - started
        dimension = metadata.get("dimension")
        if settings.create_vector_index and dimension:
            index = proteins.ensure_vector_index(
                dimension, settings.index_online_timeout_s, settings.vector_index
            )
    if vectors.missing or rejections.missing:
        log.warning(
            "%d vectors and %d rejections were not written: no node with their id holds "
            "their sequence any more (deleted or changed since the export; see the receipt)",
            len(vectors.missing),
            len(rejections.missing),
        )
    receipt = {
        "rows": total,
        "written": vectors.written,
        "unchanged": total - vectors.written - len(vectors.missing),
        "rejections_written": rejections.written,
        "not_written_sequence_gone": sorted(set(vectors.missing + rejections.missing)),
        "property": proteins.vector_property,
        "vector_type": "VECTOR" if native else "float32 list (db.create.setNodeVectorProperty)",
        "writers": settings.writers,
        "write_seconds": round(seconds, 3),
        "neo4j_rust_ext": graph.rust_extension_loaded(),
        "vector_index": index,
        "created": now(),
    }
    parquet_io.write_json(receipt, receipt_path)
    log.info("loaded: %s", {k: v for k, v in receipt.items() if k != "not_written_sequence_gone"})
    return receipt


def _vector_batches(path: str, batch_size: int) -> Iterator[graph.VectorBatch]:
    for batch in parquet_io.iter_batches(path, batch_size):
        vectors = batch["vector"]
        yield graph.VectorBatch(
            ids=batch["id"].to_pylist(),
            sequences=batch["sequence"].to_pylist(),
            sequence_sha256=batch["sequence_sha256"].to_pylist(),
            long_sequence_handling=batch["long_sequence_handling"].to_pylist(),
            vectors=vectors.flatten().to_numpy().reshape(len(vectors), vectors.type.list_size),
        )


def _rejection_batches(path: str, batch_size: int) -> Iterator[list[dict]]:
    """Rejections that can be recorded on a node: those with a sequence (an id-less node,
    or one whose sequence is no string, has nothing to record the verdict against)."""
    for batch in parquet_io.iter_batches(path, batch_size):
        rows = [
            {
                "id": r["id"],
                "sequence": r["sequence"],
                "sha256": r["sequence_sha256"],
                "reason": r["reason"],
            }
            for r in batch.to_pylist()
            if r["sequence"] is not None
        ]
        if rows:
            yield rows


def snapshot(
    graph_settings: GraphSettings,
    model: ModelSettings,
    vectors_path: str,
    rejects_path: str,
    summary_path: str,
    run_summary_path: str | None = None,
) -> dict:
    """What the graph holds for this model's property, read back after the load: every
    vector (with its sequence hash and provenance), every rejection, and their counts and
    provenance in summary.json beside this run's share. The report, the notebook's
    read_embeddings and a parent workflow's rules read these, so what they show is the
    graph, whichever runs put it there. Streams page by page: memory stays flat.
    """
    page_size = graph_settings.export_page_size
    seen = _ProvenanceTally()
    with graph.ProteinGraph.from_settings(graph_settings, model) as proteins:
        dimension = _snapshot_vectors(proteins, vectors_path, page_size, seen)
        names = parquet_io.GRAPH_REJECTS_SCHEMA.names
        stored = proteins.stored_rejections(page_size)
        rejects = [dict(zip(names, row, strict=True)) for row in stored]
        rejects += [
            dict.fromkeys(names) | {"reason": f"{reason} (node {node})"}
            for node, reason in proteins.without_string_id()
        ]
        with_sequence = proteins.count_with_sequence()
        label, prop = proteins.label, proteins.vector_property
    parquet_io.write_table(
        pa.Table.from_pylist(rejects, parquet_io.GRAPH_REJECTS_SCHEMA), rejects_path
    )
    this_run = parquet_io.read_json(run_summary_path) if run_summary_path else None
    summary = {
        "label": label,
        "property": prop,
        "proteins_with_sequence": with_sequence,
        "vectors": seen.rows,
        "rejected": len(rejects),
        "without_vector": with_sequence - seen.rows - len(rejects),
        "dimension": dimension,
        "space": seen.space,
        "precision": seen.counts["precision"],
        "batching": seen.counts["batching"],
        "pipeline": seen.counts["pipeline"],
        "created": {"first": seen.first, "last": seen.last},
        "rejected_by_reason": dict(Counter(r["reason"] for r in rejects).most_common()),
        "this_run": None
        if this_run is None
        else {key: this_run.get(key) for key in ("exported", "embedded", "rejected", "up_to_date")},
        "read_at": now(),
    }
    parquet_io.write_json(summary, summary_path)
    log.info("the graph holds %d vectors and %d rejections for %s", seen.rows, len(rejects), prop)
    return summary


class _ProvenanceTally:
    """What the stored vectors say of themselves, tallied page by page."""

    def __init__(self):
        self.rows = 0
        self.space: dict | None = None
        self.counts: dict[str, Counter] = {
            k: Counter() for k in ("precision", "batching", "pipeline")
        }
        self.first = self.last = None

    def add(self, rows: list[list]) -> None:
        for row in rows:
            values = dict(zip(graph.STORED_COLUMNS, row, strict=True))
            if self.space is None:
                self.space = {
                    k: values[k]
                    for k in ("model", "model_revision", "embedding", "pooling", "dimension")
                }
            for key, counter in self.counts.items():
                counter[values[key] or "unknown"] += 1
            created = values["created"]
            if created:
                self.first = min(self.first or created, created)
                self.last = max(self.last or created, created)
        self.rows += len(rows)


def _snapshot_vectors(
    proteins: graph.ProteinGraph, path: str, page_size: int, seen: _ProvenanceTally
) -> int:
    """Stream the stored vectors into a Parquet file; returns their width (0: none)."""
    pages = proteins.stored_vectors(page_size)
    first = next(pages, None)
    dimension = first[0].shape[1] if first else 0
    schema = parquet_io.graph_vectors_schema(dimension)
    with parquet_io.table_writer(path, schema) as writer:
        for matrix, rows in itertools.chain([first] if first else [], pages):
            seen.add(rows)
            columns = list(zip(*rows, strict=True)) if rows else [[]] * len(graph.STORED_COLUMNS)
            table = dict(zip(graph.STORED_COLUMNS, columns, strict=True))
            table["vector"] = parquet_io.vectors_array(matrix)
            writer.write_table(pa.table(table, schema=schema))
    return dimension
