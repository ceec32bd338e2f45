"""Every Parquet file the workflow reads or writes, with its schema, in one place.

Writes are atomic: a temporary file beside the target, then a rename, so a crashed job
never leaves a half-written file that a rerun would mistake for a finished one. Every data
page carries a CRC that reads verify, so a file damaged after it was written (a full disk,
a truncated copy, a flipped bit) is never read as data: the reader moves it aside to
`<name>.corrupt` and fails with one line, and the rerun of the same command rebuilds it,
because Snakemake then sees the file missing.
"""

import glob
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import UserError

METADATA_KEY = b"protembed"

SHARD_SCHEMA = pa.schema(
    [
        ("sequence_sha256", pa.string()),
        ("sequence", pa.large_string()),
        ("ids", pa.list_(pa.string())),
    ]
)

# Export's temporary files: one row per exported protein, before grouping by sequence.
SPILL_SCHEMA = pa.schema(
    [
        ("position", pa.uint32()),  # sharding.position of the sequence's hash
        ("sequence_sha256", pa.string()),
        ("sequence", pa.large_string()),
        ("id", pa.string()),
    ]
)

# The sequence travels with each vector and rejection to the load, which writes it only to
# a node that still holds that sequence (ids may repeat; sequences change under a run).
REJECTS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("sequence_sha256", pa.string()),
        ("reason", pa.string()),
        ("sequence", pa.large_string()),
    ]
)


# What the graph holds, read back (steps.snapshot): one row per node with a rejection, or
# with a string id missing (id null, the node's elementId in the reason).
GRAPH_REJECTS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("reason", pa.string()),
        ("sequence_sha256", pa.string()),
        ("model", pa.string()),
        ("residues", pa.int32()),
    ]
)


def graph_vectors_schema(dimension: int) -> pa.Schema:
    """Every vector the graph holds for one property, with what the graph says of it (the
    graph's own <property>_<name> properties, graph.STORED_COLUMNS)."""
    text = ("long_sequence_handling", "model", "model_revision", "embedding", "pooling")
    return pa.schema(
        [
            ("id", pa.string()),
            ("sequence_sha256", pa.string()),
            ("vector", pa.list_(pa.float32(), dimension)),
            *[(name, pa.string()) for name in text],
            ("dimension", pa.int32()),
            *[(name, pa.string()) for name in ("precision", "batching", "created", "pipeline")],
            ("residues", pa.int32()),
        ]
    )


def shard_embeddings_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            ("sequence_sha256", pa.string()),
            ("sequence", pa.large_string()),
            ("ids", pa.list_(pa.string())),
            ("vector", pa.list_(pa.float32(), dimension)),
            ("residues", pa.int32()),
            ("long_sequence_handling", pa.string()),
        ]
    )


def embeddings_schema(dimension: int) -> pa.Schema:
    """The run's merged dataset: one row per protein node (nodes that share an id and a
    sequence share a row's content)."""
    return pa.schema(
        [
            ("id", pa.string()),
            ("model", pa.string()),
            ("sequence_sha256", pa.string()),
            ("sequence", pa.large_string()),
            ("vector", pa.list_(pa.float32(), dimension)),
            ("residues", pa.int32()),
            ("long_sequence_handling", pa.string()),
        ]
    )


def residue_embeddings_schema(dimension: int) -> pa.Schema:
    """Per-residue vectors (model.embedding.per_residue): one row per unique sequence."""
    return pa.schema(
        [
            ("sequence_sha256", pa.string()),
            ("ids", pa.list_(pa.string())),
            ("residue_vectors", pa.large_list(pa.list_(pa.float32(), dimension))),
        ]
    )


def residue_vectors_array(matrices: list[np.ndarray], dimension: int) -> pa.LargeListArray:
    """(residues, dimension) float32 matrices as large_list<fixed_size_list<float32>>."""
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in matrices])]).astype(np.int64)
    rows = np.concatenate(matrices) if matrices else np.zeros((0, dimension), np.float32)
    return pa.LargeListArray.from_arrays(pa.array(offsets), vectors_array(rows))


def vectors_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """An (n, dimension) float32 matrix as Arrow's fixed_size_list<float32>[dimension]."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows, dimension = vectors.shape
    if rows == 0:
        return pa.array([], pa.list_(pa.float32(), dimension))
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dimension)


def with_metadata(schema: pa.Schema, metadata: dict | None) -> pa.Schema:
    if metadata is None:
        return schema
    return schema.with_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def read_metadata(path: str | Path) -> dict:
    with _readable(path):
        raw = pq.read_schema(path).metadata or {}
    return json.loads(raw[METADATA_KEY]) if METADATA_KEY in raw else {}


class CorruptFile(UserError):
    """A file of ours that cannot be read back as written; it has been moved aside."""


def _quarantine(path: str | Path, kind: str, reason: str) -> CorruptFile:
    """Move a damaged file to `<name>.corrupt` (kept for a post-mortem) so that the rerun
    rebuilds it; the error to raise."""
    path = Path(path)
    quarantine = path.with_name(path.name + ".corrupt")
    os.replace(path, quarantine)
    return CorruptFile(
        f"{path} is not a valid {kind} ({reason}); moved it to {quarantine.name}: "
        "rerun the same command to rebuild it"
    )


@contextmanager
def _readable(path: str | Path) -> Iterator[None]:
    """Turn pyarrow's complaints about a damaged file into a CorruptFile."""
    try:
        yield
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as error:
        if isinstance(error, (FileNotFoundError, PermissionError)):
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _quarantine(path, "Parquet file", reason) from error


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path that becomes `path` only if the block finishes.

    Leftovers of an earlier attempt that was killed before its clean-up (SIGKILL, a node
    lost) are removed first: each target has one writer at a time in the workflow.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        leftover.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # Created as any new file of the user is (0666 less the umask, and the directory's
    # default ACL), not by mkstemp: its 0600 kept colleagues on a shared file system out.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_table(table: pa.Table, path: str | Path, metadata: dict | None = None) -> None:
    table = table.replace_schema_metadata(with_metadata(table.schema, metadata).metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True)


@contextmanager
def table_writer(path: str | Path, schema: pa.Schema, metadata: dict | None = None, **options):
    """Stream record batches into one file, atomically; `options` go to pq.ParquetWriter."""
    schema = with_metadata(schema, metadata)
    options.setdefault("write_page_checksum", True)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, **options) as w:
        yield w


def write_json(data: dict, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict:
    """A JSON file this package wrote; a damaged one is quarantined like a Parquet file."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise _quarantine(path, "JSON file", str(error)) from error


def read_table(path: str | Path) -> pa.Table:
    with _readable(path):
        return pq.read_table(path, page_checksum_verification=True)


def iter_batches(path: str | Path, batch_size: int) -> Iterator[pa.RecordBatch]:
    """Batches read page by page: without buffered reads pyarrow holds whole row groups
    (a merged shard's vectors, hundreds of MB) in memory."""
    with _readable(path):
        file = pq.ParquetFile(
            path, pre_buffer=False, buffer_size=1 << 20, page_checksum_verification=True
        )
        yield from file.iter_batches(batch_size=batch_size)


def count_rows(path: str | Path) -> int:
    with _readable(path):
        return pq.ParquetFile(path).metadata.num_rows
