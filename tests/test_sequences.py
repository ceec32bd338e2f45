import pytest

from protembed.adapters.base import ESM_ALPHABET
from protembed.errors import RejectedSequence
from protembed.sequences import clean_sequence, sequence_sha256, windows
from protembed.sharding import shard_of


def test_clean_sequence_normalises_case_whitespace_and_stop():
    assert clean_sequence(" mkt ay\nIAK* ", ESM_ALPHABET) == "MKTAYIAK"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("", "empty sequence"), ("  *", "empty sequence"), ("MKT1A", "'1'"), ("MK-TA", "'-'")],
)
def test_clean_sequence_rejects_with_reason(raw, reason):
    with pytest.raises(RejectedSequence, match=reason):
        clean_sequence(raw, ESM_ALPHABET)


def test_shard_assignment_is_stable_and_spreads():
    hashes = [sequence_sha256(f"MKT{i}") for i in range(2000)]
    shards = [shard_of(h, 4) for h in hashes]
    assert shards == [shard_of(h, 4) for h in hashes]
    assert all(400 < shards.count(s) < 600 for s in range(4))
    # Pinned: a change of hash or shard rule would reshuffle every user's existing shards.
    sha = sequence_sha256("MKT")
    assert sha == "366893d2245f5f241af2eeba0a8c19ef3bf362141a7c8504d7479ce7e7f2fb66"
    assert [shard_of(sha, n) for n in (2, 3, 7)] == [
        int("366893d2245f5f24", 16) % n for n in (2, 3, 7)
    ]


@pytest.mark.parametrize(
    ("length", "window", "overlap"),
    [(3000, 1022, 256), (1023, 1022, 0), (5000, 100, 99), (10, 20, 5)],
)
def test_windows_cover_every_residue_within_size(length, window, overlap):
    spans = windows(length, window, overlap)
    covered = set()
    for start, end in spans:
        assert 0 <= start < end <= length and end - start <= window
        covered.update(range(start, end))
    assert covered == set(range(length))
    assert spans[0][0] == 0 and spans[-1][1] == length
