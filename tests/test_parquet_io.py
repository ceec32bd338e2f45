"""A damaged Parquet or JSON file is never read as data: it is moved aside with a one-line
error, so that rerunning the same command rebuilds it."""

import os
import stat

import numpy as np
import pyarrow as pa
import pytest

from protembed import parquet_io


def written(path):
    table = pa.table(
        {"id": [f"P{i}" for i in range(500)], "vector": parquet_io.vectors_array(np.ones((500, 8)))}
    )
    parquet_io.write_table(table, path)
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "flipped bit"])
def test_damaged_file_is_moved_aside(tmp_path, damage):
    path = tmp_path / "shard-0.parquet"
    data = bytearray(written(path))
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 4] ^= 0x10  # inside the first data page
    path.write_bytes(bytes(data))
    with pytest.raises(parquet_io.CorruptFile, match="shard-0.parquet is not a valid Parquet"):
        parquet_io.read_table(path)
    assert not path.exists() and (tmp_path / "shard-0.parquet.corrupt").read_bytes() == data


def test_damaged_json_is_moved_aside(tmp_path):
    path = tmp_path / "manifest.json"
    parquet_io.write_json({"exported": 3, "unique_sequences": 2}, path)
    assert parquet_io.read_json(path) == {"exported": 3, "unique_sequences": 2}
    damaged = path.read_text()[:-8]  # as a full disk leaves a hand-copied file behind
    path.write_text(damaged)
    with pytest.raises(parquet_io.CorruptFile, match=r"manifest.json is not a valid JSON file \("):
        parquet_io.read_json(path)
    assert not path.exists() and (tmp_path / "manifest.json.corrupt").read_text() == damaged


def test_leftovers_of_a_killed_write_are_removed(tmp_path):
    leftover = tmp_path / ".shard-0.parquet.abc123.tmp"
    leftover.write_bytes(b"half a file")
    written(tmp_path / "shard-0.parquet")
    assert not leftover.exists()
    assert parquet_io.read_table(tmp_path / "shard-0.parquet").num_rows == 500


@pytest.fixture
def umask():
    """Set the process umask for one test, then put the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_every_writer_respects_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    written(tmp_path / "table.parquet")
    parquet_io.write_json({"a": 1}, tmp_path / "manifest.json")
    with parquet_io.table_writer(tmp_path / "streamed.parquet", parquet_io.SHARD_SCHEMA) as w:
        w.write_table(parquet_io.SHARD_SCHEMA.empty_table())
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["table.parquet", "manifest.json", "streamed.parquet"], oct(mode))
