"""Shards: which shard a sequence goes to, how many shards an export makes, and the export's
spill files that group each shard's proteins by sequence without holding the graph in memory.

A shard is a range of the sequence hash, not a remainder: the number of shards follows the
number of exported proteins, known only once the graph has been read, and ranges of any
count can be cut from spill files written before it was known.
"""

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import parquet_io

POSITIONS = 1 << 32  # a sequence's position on the hash line: its hash's first 32 bits


def position(sha256_hex: str) -> int:
    return int(sha256_hex[:8], 16)


def shard_of(sha256_hex: str, shards: int) -> int:
    """Stable shard of a sequence: identical sequences always meet in the same shard."""
    return position(sha256_hex) * shards // POSITIONS


def shard_count(proteins: int, most: int, fewest_per_shard: int) -> int:
    """As many shards (embed jobs) as `proteins` fill with `fewest_per_shard` each, up to
    `most`; one for fewer than that, none for nothing."""
    if proteins == 0:
        return 0
    return max(1, min(most, proteins // fewest_per_shard))


class ShardSpill:
    """Exported proteins parked on disk until the graph has been read, then grouped by
    sequence one spill file at a time.

    The SPILL_FILES files split the hash line into equal ranges whatever the number of
    shards (few open files), so grouping holds about 1/SPILL_FILES of the exported proteins
    in memory. Identical sequences always meet in one file, and shards come out of the
    files in order, so one shard file is open at a time.
    """

    SPILL_FILES = 64
    BUFFERED_ROWS = 16384  # in all spill files together, before each gets a write

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self._directory = tempfile.TemporaryDirectory(dir=directory, prefix=".export-spill-")
        folder = Path(self._directory.name)
        self._paths = [folder / f"{f}.parquet" for f in range(self.SPILL_FILES)]
        self._writing = contextlib.ExitStack()
        self._writers = [
            # Without statistics: a writer keeps every row group's in memory until closed.
            self._writing.enter_context(
                parquet_io.table_writer(path, parquet_io.SPILL_SCHEMA, write_statistics=False)
            )
            for path in self._paths
        ]
        self._buffers: list[list[tuple]] = [[] for _ in self._paths]
        self._buffered = 0

    def __enter__(self) -> "ShardSpill":
        return self

    def __exit__(self, *exc_info) -> None:
        self._writing.__exit__(*exc_info)
        self._directory.cleanup()

    def add(self, sha256: str, sequence: str, protein_id: str) -> None:
        where = position(sha256)
        self._buffers[where * self.SPILL_FILES // POSITIONS].append(
            (where, sha256, sequence, protein_id)
        )
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

    def write_shards(self, shard_paths: list[Path]) -> list[dict]:
        """Write each shard, one row per unique sequence with its ids in export order."""
        self._flush()
        self._writing.close()
        summaries: list[dict] = [{} for _ in shard_paths]
        with contextlib.ExitStack() as open_shard:
            current = writer = None
            for path in self._paths:
                for shard, rows in self._grouped(path, len(shard_paths)):
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

    @staticmethod
    def _grouped(path: Path, shards: int) -> Iterator[tuple[int, pa.Table]]:
        """(shard, its unique sequences) for each shard in one spill file, shards ascending."""
        grouped = (
            parquet_io.read_table(path)
            .group_by(["position", "sequence_sha256"], use_threads=False)
            .aggregate([("sequence", "first"), ("id", "list")])
        )
        of_row = grouped["position"].to_numpy().astype(np.int64) * shards // POSITIONS
        # A stable sort keeps each shard's sequences in the order they were exported.
        order = np.argsort(of_row, kind="stable")
        grouped, of_row = grouped.take(order), of_row[order]
        starts = np.flatnonzero(np.diff(of_row, prepend=-1))  # where a new shard begins
        ends = np.append(starts[1:], len(of_row))[: len(starts)]
        for start, end in zip(starts, ends, strict=True):
            rows = grouped.slice(start, end - start)
            yield (
                int(of_row[start]),
                pa.table(
                    [rows["sequence_sha256"], rows["sequence_first"], rows["id_list"]],
                    schema=parquet_io.SHARD_SCHEMA,
                ),
            )
