"""Shards: which shard a sequence goes to, and the export's spill files that group each
shard's proteins by sequence without holding the graph in memory."""

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import parquet_io


def shard_of(sha256_hex: str, shards: int) -> int:
    """Stable shard of a sequence: identical sequences always meet in the same shard."""
    return int(sha256_hex[:16], 16) % shards


class ShardSpill:
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

    def __enter__(self) -> "ShardSpill":
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
