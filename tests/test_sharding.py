"""Shards cut by cost: identical sequences share a shard, every protein lands once, the
same input gives the same shards, and the shards of one run cost about the same on a real
proteome's lengths, unlike equal ranges of the hash."""

import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from protembed.cluster import check_array_slots
from protembed.demo.proteins import read_proteins
from protembed.errors import UserError
from protembed.sequences import sequence_sha256
from protembed.sharding import (
    ATTENDED_AT_MOST,
    POSITIONS,
    ShardSpill,
    position,
    sequence_cost,
    shard_count,
)

DATA = Path(__file__).resolve().parent / "data"


def write(tmp_path: Path, name: str, proteins: list[tuple[str, str]], count: int) -> list[dict]:
    """Export (id, sequence) pairs in this order into `count` shards; their rows and summaries."""
    with ShardSpill(tmp_path / f"spill-{name}") as spill:
        for protein_id, sequence in proteins:
            spill.add(sequence_sha256(sequence), sequence, protein_id)
        paths = [tmp_path / name / f"shard-{i}.parquet" for i in range(count)]
        summaries = spill.write_shards(paths)
    for path, summary in zip(paths, summaries, strict=True):
        summary["rows"] = pq.read_table(path).to_pylist()
    return summaries


def spread(costs) -> float:
    return max(costs) / min(costs)


@pytest.mark.parametrize(
    ("proteins", "shards"), [(0, 0), (1, 1), (9_999, 1), (20_000, 2), (25_000, 2), (10**7, 20)]
)
def test_shard_count_follows_the_work(proteins, shards):
    # At most 20 embed jobs, each of at least 10,000 proteins; none for nothing to embed.
    assert shard_count(proteins, 20, 10_000) == shards


def test_position_is_the_hash_first_32_bits():
    # Pinned: a change would move every user's sequences to other shards.
    sha = sequence_sha256("MKT")
    assert sha == "366893d2245f5f241af2eeba0a8c19ef3bf362141a7c8504d7479ce7e7f2fb66"
    assert position(sha) == 0x366893D2


def test_cost_is_linear_plus_attention_up_to_the_longest_window():
    costs = sequence_cost(np.array([0, 100, 1000, 10_000, 20_000]))
    assert list(np.diff(costs) > 0) == [True] * 4
    # Squared below the window: ten times the residues cost more than ten times as much.
    assert costs[2] / costs[1] > 10.5
    # Beyond the longest window a model attends at once, only the number of windows grows.
    assert costs[4] / costs[3] == pytest.approx(20_002 / 10_002)
    assert ATTENDED_AT_MOST < 10_000


@pytest.mark.parametrize("count", [1, 3, 100])
def test_every_protein_lands_once_with_its_twins_in_ranges_of_the_hash(tmp_path, count):
    sequences = [f"MKT{'A' * (i % 37)}{i}" for i in range(300)]
    proteins = [(f"P{i}", sequences[i % 300]) for i in range(400)]  # 100 have a twin
    summaries = write(tmp_path, "out", proteins, count)
    rows, ranges = {}, []
    for summary in summaries:
        assert summary["sequences"] == len(summary["rows"])
        assert summary["proteins"] == sum(len(row["ids"]) for row in summary["rows"])
        for row in summary["rows"]:
            assert row["sequence"] not in rows, "a sequence in two shards"
            assert row["sequence_sha256"] == sequence_sha256(row["sequence"])
            rows[row["sequence"]] = row["ids"]
        hashes = [(position(r["sequence_sha256"]), r["sequence_sha256"]) for r in summary["rows"]]
        assert hashes == sorted(hashes), "a shard's rows are in hash order"
        ranges.append((hashes[0], hashes[-1]) if hashes else None)
    expected = {s: [f"P{i}" for i in (n, n + 300) if i < 400] for n, s in enumerate(sequences)}
    assert rows == expected  # the ids of a sequence in export order
    # Each shard is a range of the hash line, the ranges in shard order.
    cut = [r for r in ranges if r]
    assert all(a[1] < b[0] for a, b in zip(cut, cut[1:], strict=False))
    if count == 100:  # 300 sequences of about equal cost: every shard gets some
        assert all(ranges)


def test_the_same_sequences_make_the_same_shards_in_any_export_order(tmp_path):
    proteins = [(f"P{i}", f"MKT{'L' * (i % 50)}{i % 700}") for i in range(1000)]
    shuffled = random.Random(7).sample(proteins, len(proteins))
    one, two, again = (
        write(tmp_path, name, order, 7)
        for name, order in (("one", proteins), ("two", shuffled), ("again", proteins))
    )
    for a, b, c in zip(one, two, again, strict=True):
        assert [r["sequence"] for r in a["rows"]] == [r["sequence"] for r in b["rows"]]
        assert [sorted(r["ids"]) for r in a["rows"]] == [sorted(r["ids"]) for r in b["rows"]]
        assert a["rows"] == c["rows"] and a["cost"] == c["cost"]


def test_shards_of_a_real_proteome_cost_about_the_same_unlike_hash_ranges(tmp_path):
    """502 Synechocystis proteins (every 7th of the proteome) in 20 shards: every shard's
    cost is within the costliest sequence of an equal share, so the jobs finish close
    together; equal ranges of the hash (the old assignment) spread them far more."""
    proteome = read_proteins(DATA / "synechocystis_every7th.fasta")
    proteins = [(p["accession_id"], p["sequence"]) for p in proteome]
    shards = 20
    summaries = write(tmp_path, "proteome", proteins, shards)
    costs = []
    for summary in summaries:
        lengths = np.array([len(row["sequence"]) for row in summary["rows"]])
        costs.append(float(sequence_cost(lengths).sum()))
        assert summary["cost"] == round(costs[-1])
    unique = {sequence_sha256(s): s for _, s in proteins}
    every = sequence_cost(np.array([len(s) for s in unique.values()]))
    share, costliest = every.sum() / shards, every.max()
    assert all(abs(cost - share) <= costliest for cost in costs), (costs, share, costliest)

    by_hash = np.zeros(shards)
    for sha, sequence in unique.items():
        by_hash[position(sha) * shards // POSITIONS] += sequence_cost(np.array([len(sequence)]))[0]
    # Measured: 1.14 by cost against 3.67 by hash ranges (the costliest shard over the least).
    assert spread(costs) < 1.25 and spread(by_hash) > 2, (spread(costs), spread(by_hash))


@pytest.mark.parametrize(
    ("shards", "arrays", "slots", "refused"),
    [
        (50, "embed_shard", 1000, False),
        (2000, "embed_shard", 1000, True),
        (2000, "merge_shards; embed_shard", 1000, True),
        (2000, "all", 1000, True),
        (2000, None, 100, False),  # one sbatch per job: Snakemake refills the slots
        (2000, "merge_shards", 100, False),
    ],
)
def test_more_shards_than_job_slots_are_refused_while_embed_jobs_go_as_arrays(
    shards, arrays, slots, refused
):
    if refused:
        with pytest.raises(UserError, match=f"shards: {shards} is more than the {slots} jobs"):
            check_array_slots(shards, arrays, slots)
    else:
        check_array_slots(shards, arrays, slots)
