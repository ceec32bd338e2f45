"""The workflow's four steps as plain functions: Snakemake scripts and notebooks call these.

Each step takes the validated configuration (config.yaml after the JSON schema filled in
defaults) and explicit file paths, and writes its outputs atomically.
"""

import contextlib
import datetime
import hashlib
import importlib.metadata
import logging
import os
import platform
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import __version__, graph, parquet_io
from .errors import RejectedSequence, UserError
from .names import embedding_kind, vector_property
from .sequences import sequence_sha256, shard_of

log = logging.getLogger(__name__)


def _versions() -> dict:
    names = ("torch", "transformers", "numpy", "pyarrow", "neo4j")
    versions = {"protembed": __version__, "python": platform.python_version()}
    return versions | {n: importlib.metadata.version(n) for n in names}


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
        _ShardSpill(Path(manifest_path).parent, len(shard_paths)) as spill,
    ):
        graph.ensure_id_index(driver, database, protein)
        # Before any embedding: with new weights under an old property, every protein
        # would look up to date and the run would silently change nothing.
        graph.check_same_space(driver, database, protein, prop, *_expected_space(config))
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


class _ShardSpill:
    """Exported proteins parked on disk until the graph has been read, then grouped by
    sequence one spill file at a time.

    There are at most SPILL_FILES files whatever the number of shards (few open files), and
    few shards are spread over several files each, so grouping holds about 1/SPILL_FILES of
    the exported proteins in memory. Identical sequences always meet in one file.
    """

    SPILL_FILES = 64
    BUFFERED_ROWS = 16384  # in all spill files together, before each gets a write

    def __init__(self, directory: Path, shards: int):
        self.shards = shards
        self.files_per_shard = max(1, self.SPILL_FILES // shards)
        self.files = min(shards * self.files_per_shard, self.SPILL_FILES)
        directory.mkdir(parents=True, exist_ok=True)
        self._directory = tempfile.TemporaryDirectory(dir=directory, prefix=".export-spill-")
        self._paths = [Path(self._directory.name) / f"{f}.parquet" for f in range(self.files)]
        self._writing = contextlib.ExitStack()
        self._writers = [
            # Without statistics: a writer keeps every row group's in memory until closed.
            self._writing.enter_context(
                parquet_io.table_writer(path, parquet_io.SPILL_SCHEMA, write_statistics=False)
            )
            for path in self._paths
        ]
        self._buffers: list[list[tuple]] = [[] for _ in range(self.files)]
        self._buffered = 0

    def __enter__(self) -> "_ShardSpill":
        return self

    def __exit__(self, *exc_info) -> None:
        self._writing.__exit__(*exc_info)
        self._directory.cleanup()

    def add(self, shard: int, sha256: str, sequence: str, protein_id: str) -> None:
        # File f holds shard f mod shards (few shards), or shards f, f + files, ... (many).
        spread = int(sha256[16:32], 16) % self.files_per_shard
        f = (shard + self.shards * spread) % self.files
        self._buffers[f].append((shard, sha256, sequence, protein_id))
        self._buffered += 1
        if self._buffered >= self.BUFFERED_ROWS:
            self._flush()

    def _flush(self) -> None:
        for writer, buffer in zip(self._writers, self._buffers, strict=True):
            if buffer:
                columns = zip(*buffer, strict=True)
                columns = dict(zip(parquet_io.SPILL_SCHEMA.names, columns, strict=True))
                writer.write_table(pa.table(columns, schema=parquet_io.SPILL_SCHEMA))
                buffer.clear()
        self._buffered = 0

    def write_shards(self, shard_paths: list[str]) -> list[dict]:
        """Write each shard, one row per unique sequence with its ids in export order."""
        self._flush()
        self._writing.close()
        summaries: list[dict] = [{} for _ in shard_paths]
        with contextlib.ExitStack() as open_shard:
            current = writer = None
            # A shard's files in a row, so that one shard file is open at a time.
            for f in sorted(range(self.files), key=lambda f: f % self.shards):
                for shard, rows in self._grouped(f):
                    if shard != current:
                        open_shard.close()
                        current = shard
                        writer = open_shard.enter_context(
                            parquet_io.table_writer(shard_paths[shard], parquet_io.SHARD_SCHEMA)
                        )
                        summaries[shard] = {"path": str(shard_paths[shard])}
                    writer.write_table(rows)
                    summary = summaries[shard]
                    summary["sequences"] = summary.get("sequences", 0) + rows.num_rows
                    ids = len(pa.compute.list_flatten(rows["ids"]))
                    summary["proteins"] = summary.get("proteins", 0) + ids
        for shard, path in enumerate(shard_paths):
            if not summaries[shard]:
                parquet_io.write_table(parquet_io.SHARD_SCHEMA.empty_table(), path)
                summaries[shard] = {"path": str(path), "sequences": 0, "proteins": 0}
        return summaries

    def _grouped(self, f: int) -> Iterator[tuple[int, pa.Table]]:
        """(shard, its unique sequences) for each shard in spill file f, shards ascending."""
        grouped = (
            parquet_io.read_table(self._paths[f])
            .group_by(["shard", "sequence_sha256"], use_threads=False)
            .aggregate([("sequence", "first"), ("id", "list")])
        )
        # A stable sort keeps each shard's sequences in the order they were exported.
        grouped = grouped.take(pa.compute.sort_indices(grouped, [("shard", "ascending")]))
        shards = grouped["shard"].to_numpy()
        starts = np.flatnonzero(np.diff(shards, prepend=-1))  # where a new shard begins
        ends = np.append(starts[1:], len(shards))[: len(starts)]
        for start, end in zip(starts, ends, strict=True):
            rows = grouped.slice(start, end - start)
            yield (
                int(shards[start]),
                pa.table(
                    [rows["sequence_sha256"], rows["sequence_first"], rows["id_list"]],
                    schema=parquet_io.SHARD_SCHEMA,
                ),
            )


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
    from .adapters import load_adapter
    from .embedding import Embedded, EmbeddingKind, default_tokens_per_batch, embed_sequences

    model = config["model"]
    kind = EmbeddingKind.from_config(model["embedding"])
    if kind.per_residue and residues_path is None:
        raise ValueError("model.embedding.per_residue needs a residues_path to write to")
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
        if budget == "auto" or adapter.device.type == "cpu":  # a CPU: always the default
            budget = default_tokens_per_batch(adapter.device)
        budget = max(1, budget // token_budget_divisor)
        started = time.perf_counter()
        results = embed_sequences(
            adapter,
            prepared,
            kind=kind,
            long_sequences=model["long_sequences"],
            overlap=model["chunk_overlap"],
            max_residues=model["max_residues"],
            tokens_per_batch=budget,
            progress=progress,
        )
        seconds = time.perf_counter() - started
        done = []
        for row, result in zip(kept, results, strict=True):
            if isinstance(result, Embedded):
                done.append((row, result))
            else:  # a RejectedSequence: its message is the reason
                rejects.extend(_rejects(row, str(result)))
        dimension, metadata = adapter.dimension, _embedding_metadata(config, adapter, kind)
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
            "embedding": "per_residue" if kind.per_residue else "none",
            "representation": metadata.get("residue_representation"),
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


def _expected_space(config: dict) -> tuple[dict, list[str]]:
    """What the export can tell about the run's vectors before a model is loaded, and which
    of it to compare: the weights' revision where it is known here (a local directory, a
    hub model in the cache), otherwise the model's name."""
    model = config["model"]
    expected = {
        "model": model["name"],
        "model_revision": model_revision(model["name"]),
        "embedding": embedding_kind(model["embedding"]),
    }
    known = "model_revision" if expected["model_revision"] != "unknown" else "model"
    return expected, ["embedding", known]


def _rejects(row: dict, reason: str) -> list[dict]:
    return [
        {"id": i, "sequence_sha256": row["sequence_sha256"], "reason": reason} for i in row["ids"]
    ]


def _embedding_metadata(config: dict, adapter, kind) -> dict:
    """What the vectors are, exactly: the kind's name (also stored in the graph) and, in
    words, which tokens and which layers (before or after the final norm) they come from."""
    model = config["model"]
    extras = {}
    # esm lives in envs/esm.yaml only; snakemake where a job runs under it
    for package in ("esm", "sentencepiece", "snakemake"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            extras[package] = importlib.metadata.version(package)
    metadata = {
        "model": model["name"],
        "revision": model_revision(model["name"], adapter),
        "family": adapter.family,
        "implementation": getattr(adapter, "implementation", None),
        "embedding": kind.name,
        "representation": kind.describe(adapter),
        "layers": kind.layers(adapter.num_layers),
        "num_layers": adapter.num_layers,
        "normalized": kind.normalize,
        "dimension": adapter.dimension,
        "precision": adapter.precision,
        "attention": adapter.attention,
        "max_residues": model["max_residues"] or adapter.max_residues,
        "long_sequences": model["long_sequences"],
        "chunk_overlap": model["chunk_overlap"],
        "device": str(adapter.device),
        "versions": _versions() | extras,
        "created": _now(),
    }
    if kind.per_residue:
        metadata["residue_representation"] = kind.describe_residues(adapter)
    return metadata


def model_revision(name: str, adapter=None) -> str:
    """Which weights made the vectors: the hub commit they were loaded from, or for a local
    directory 40 hex digits of a SHA-256 over its JSON files (config, weight index) and each
    weight file's name, size, first and last MiB (hashing whole weights would cost every
    job minutes)."""
    if getattr(adapter, "revision", None):
        return adapter.revision
    directory = Path(name)
    if directory.parent.name == "snapshots" and directory.parent.parent.name.startswith("models--"):
        return directory.name  # a hub cache snapshot, named by its commit: same as by name
    if directory.is_dir():
        digest = hashlib.sha256()
        for path in sorted(directory.iterdir()):
            if path.suffix == ".json":
                digest.update(path.name.encode() + path.read_bytes())
            elif path.suffix in (".safetensors", ".bin", ".pt", ".pth"):
                size = path.stat().st_size
                with path.open("rb") as weights:
                    head = weights.read(1 << 20)
                    weights.seek(max(size - (1 << 20), 0))
                    tail = weights.read()
                digest.update(f"{path.name}:{size}:".encode() + head + tail)
        return digest.hexdigest()[:40]
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # the graph-only environment: the export then compares names
        return "unknown"

    # What from_pretrained resolved `main` to, as the hub cache records it.
    ref = Path(HF_HUB_CACHE) / f"models--{name.replace('/', '--')}" / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else "unknown"


def merge(
    config: dict,
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
    import json

    manifest = json.loads(Path(manifest_path).read_text())
    shard_metadata = [parquet_io.read_metadata(path) for path in shard_embeddings]
    metadata = next((m for m in shard_metadata if m.get("dimension")), None)
    if metadata:  # one shard's speed says nothing about the run's: that goes in summary.json
        metadata = {key: value for key, value in metadata.items() if key != "throughput"}
    dimension = metadata["dimension"] if metadata else 0
    file_metadata = dict(metadata or {})
    if run_record_path:
        file_metadata["run_record"] = os.path.relpath(run_record_path, Path(embeddings_path).parent)
    model = config["model"]["name"]
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
    if run_record_path:
        record = run_record(config, manifest, metadata, shard_metadata, summary, embeddings_path)
        parquet_io.write_json(record, run_record_path)
    log.info("merged: %s", summary)
    return summary


def run_record(
    config: dict,
    manifest: dict,
    metadata: dict | None,
    shard_metadata: list[dict],
    summary: dict,
    embeddings_path: str,
) -> dict:
    """What a methods section cites about one run: which weights, settings, software and
    server made the vectors, how many there are, and the merged file's checksum.

    `metadata` is the first embedded shard's (None: nothing needed embedding this run);
    where each shard ran, and in which precision, is listed per shard.
    """
    embedded = metadata or {}
    digest = hashlib.sha256()
    with open(embeddings_path, "rb") as merged:
        for block in iter(lambda: merged.read(1 << 20), b""):
            digest.update(block)
    return {
        "protembed": __version__,
        "model": {
            "name": config["model"]["name"],
            # The hub commit, or for a local directory a fingerprint of its files (see
            # model_revision); "kmer-counting-N" for the weight-free k-mer baseline.
            "revision": embedded.get("revision", model_revision(config["model"]["name"])),
            "family": embedded.get("family"),
            "implementation": embedded.get("implementation"),
        },
        "vectors": {
            key: embedded.get(key)
            for key in ("embedding", "representation", "dimension", "layers", "normalized")
        },
        "compute": {key: embedded.get(key) for key in ("device", "precision", "attention")}
        | {
            "shards": [
                {key: m["throughput"][key] for key in ("shard", "device", "precision")}
                for m in shard_metadata
                if "throughput" in m
            ]
        },
        "settings": config,
        "versions": embedded.get("versions", {"protembed": __version__}),
        "neo4j_server": manifest.get("server"),
        "property": manifest["property"],
        "counts": {
            "proteins_with_sequence": manifest["proteins_with_sequence"],
            "up_to_date": manifest["up_to_date"],
            "exported": manifest["exported"],
            "unique_sequences": manifest["unique_sequences"],
            "embedded": summary["embedded"],
            "rejected": summary["rejected"],
        },
        "embeddings": {"path": str(embeddings_path), "sha256": digest.hexdigest()},
        "exported_at": manifest["created"],
        "created": _now(),
    }


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
        provenance = _provenance(metadata) if metadata.get("dimension") else None
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
        "created": _now(),
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


def _provenance(metadata: dict) -> dict:
    """What every vector of the run shares, from the embed step's Parquet metadata."""
    created = metadata.get("created") or _now()
    return {
        "model": metadata["model"],
        "model_revision": metadata.get("revision", "unknown"),
        "embedding": metadata["embedding"],
        "pooling": metadata["representation"],
        "dimension": metadata["dimension"],
        "precision": metadata["precision"],
        "created": datetime.datetime.fromisoformat(created),
        "pipeline": f"protembed {metadata.get('versions', {}).get('protembed', __version__)}",
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
