"""Shards: how many shards an export makes, what a sequence costs to embed, and the export's
spill files that group the proteins by sequence and cut them into shards of equal cost,
without holding the graph in memory.

A shard is a range of the sequence hash line: identical sequences always meet in one shard,
and ranges of any count can be cut from spill files written before the count was known. The
ranges are cut where the embedding cost (not the number of proteins) adds up to equal parts,
so that the embed jobs of one run finish close together.
"""

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import parquet_io

POSITIONS = 1 << 32  # a sequence's position on the hash line: its hash's first 32 bits

# What embedding a sequence of L residues costs, in residues' worth of work: every token
# pays the model's dense layers (linear in L), attention adds a term in L squared. The
# constants are ESM-2 650M's arithmetic, the default model: 1.37 GFLOP per token in the dense
# layers (2 x parameters) against 4 x 33 layers x 1,280 = 169 kFLOP per token per token
# attended, so attention equals the dense work at about 8,100 residues. Models attend at
# most about 1,000 to 2,000 residues at once (longer sequences are windowed or truncated),
# so the squared term stops growing there.
TOKENS_ADDED = 2  # the start and end tokens every model puts around a sequence
ATTENTION_EQUALS_DENSE_AT = 8_100
ATTENDED_AT_MOST = 1_024
# A job's fixed start (a fresh Python, imports, the weights) is the same for every shard, so
# it moves no cut; it is what min_proteins_per_shard weighs when choosing how many shards.


def position(sha256_hex: str) -> int:
    return int(sha256_hex[:8], 16)


def sequence_cost(lengths: np.ndarray) -> np.ndarray:
    """Cost of embedding sequences of these lengths, in residues' worth of work."""
    tokens = np.asarray(lengths, dtype=np.float64) + TOKENS_ADDED
    return tokens * (1 + np.minimum(tokens, ATTENDED_AT_MOST) / ATTENTION_EQUALS_DENSE_AT)


def shard_count(proteins: int, most: int, fewest_per_shard: int) -> int:
    """As many shards (embed jobs) as `proteins` fill with `fewest_per_shard` each, up to
    `most`; one for fewer than that, none for nothing."""
    if proteins == 0:
        return 0
    return max(1, min(most, proteins // fewest_per_shard))


def cost_shards(costs: np.ndarray, before: float, total: float, shards: int) -> np.ndarray:
    """Shard of each sequence, given each one's cost in hash order, the cost of all sequences
    before them on the hash line, and the total: a sequence goes to the shard whose equal
    share of the total holds the middle of its own cost. So every shard's cost is within one
    sequence's cost of total / shards, and shards ascend along the hash line."""
    middles = before + np.cumsum(costs) - costs / 2
    return np.minimum((middles * shards / total).astype(np.int64), shards - 1)


class ShardSpill:
    """Exported proteins parked on disk until the graph has been read, then grouped by
    sequence one spill file at a time.

    The SPILL_FILES files split the hash line into equal ranges whatever the number of
    shards (few open files), so grouping holds about 1/SPILL_FILES of the exported proteins
    in memory. Identical sequences always meet in one file. Shards are cut in two passes: the
    first adds up each file's cost, the second walks the files in hash order with the cost
    so far and cuts shards at equal shares of the total, so shards come out in order and
    one shard file is open at a time.
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
        """Write each shard, one row per unique sequence (in hash order) with its ids in
        export order; each shard's summary says its sequences, proteins and cost (in residues'
        worth of work, sequence_cost)."""
        self._flush()
        self._writing.close()
        file_costs = [self._file_cost(path) for path in self._paths]
        total = sum(file_costs)
        summaries: list[dict] = [{} for _ in shard_paths]
        before = 0.0
        with contextlib.ExitStack() as open_shard:
            current = writer = None
            for path, file_cost in zip(self._paths, file_costs, strict=True):
                for shard, rows, cost in self._cut(path, before, total, len(shard_paths)):
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
                    ids = len(pc.list_flatten(rows["ids"]))
                    summary["proteins"] = summary.get("proteins", 0) + ids
                    summary["cost"] = summary.get("cost", 0.0) + cost
                before += file_cost
        for shard, path in enumerate(shard_paths):
            if not summaries[shard]:
                parquet_io.write_table(parquet_io.SHARD_SCHEMA.empty_table(), path)
                summaries[shard] = {"path": str(path), "sequences": 0, "proteins": 0, "cost": 0}
            summaries[shard]["cost"] = round(summaries[shard]["cost"])
        return summaries

    @staticmethod
    def _unique(path: Path) -> pa.Table:
        """One spill file's unique sequences in hash order, each with its ids in export order."""
        return (
            parquet_io.read_table(path)
            .group_by(["position", "sequence_sha256"], use_threads=False)
            .aggregate([("sequence", "first"), ("id", "list")])
            .sort_by([("position", "ascending"), ("sequence_sha256", "ascending")])
        )

    @staticmethod
    def _file_cost(path: Path) -> float:
        # Grouping lengths, not sequences: the first pass moves no strings.
        table = parquet_io.read_table(path)
        lengths = pa.table(
            {"sha256": table["sequence_sha256"], "length": pc.utf8_length(table["sequence"])}
        )
        unique = lengths.group_by("sha256", use_threads=False).aggregate([("length", "max")])
        return float(sequence_cost(unique["length_max"].to_numpy()).sum())

    @classmethod
    def _cut(
        cls, path: Path, before: float, total: float, shards: int
    ) -> Iterator[tuple[int, pa.Table, float]]:
        """(shard, its unique sequences, their cost) for each shard in one spill file, shards
        ascending; `before` is the cost of the spill files before this one."""
        grouped = cls._unique(path)
        costs = sequence_cost(pc.utf8_length(grouped["sequence_first"]).to_numpy())
        of_row = cost_shards(costs, before, total, shards)
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
                float(costs[start:end].sum()),
            )
