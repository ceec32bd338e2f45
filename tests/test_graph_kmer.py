"""The k-mer composition model behind the adapter interface: its mean-pooled vector is
exactly the k-mer frequency vector."""

from collections import Counter

import numpy as np
import pytest

from protembed.adapters import load_adapter
from protembed.engine import Embedded, embed_sequences
from protembed.errors import RejectedSequence, UserError

STANDARD = "ACDEFGHIKLMNPQRSTVWY"


def frequencies(sequence: str, k: int) -> np.ndarray:
    """Direct count of the k-mers made of standard residues, as fractions."""
    kmers = [sequence[i : i + k] for i in range(len(sequence) - k + 1)]
    counted = Counter(m for m in kmers if set(m) <= set(STANDARD))
    vector = np.zeros(20**k)
    for kmer, n in counted.items():
        vector[sum(STANDARD.index(c) * 20 ** (k - 1 - j) for j, c in enumerate(kmer))] = n
    return vector / sum(counted.values())


@pytest.mark.parametrize("name", ["kmer-1", "kmer-2"])
def test_mean_over_residues_is_the_kmer_frequency_vector(name, synechocystis):
    adapter = load_adapter(name)
    k = int(name[-1])
    sequences = [p["sequence"] for p in synechocystis[:12]] + ["MKXAAXW", "AC"]
    prepared = [adapter.prepare(s) for s in sequences]
    # A small token budget: many batches with padding, which must change nothing.
    results = embed_sequences(adapter, prepared, tokens_per_batch=600)
    assert adapter.family == "kmer" and adapter.dimension == 20**k
    for sequence, result in zip(prepared, results, strict=True):
        assert isinstance(result, Embedded) and result.handling == "whole"
        np.testing.assert_allclose(result.vector, frequencies(sequence, k), atol=1e-6)


def test_sequences_without_a_countable_kmer_are_rejected():
    adapter = load_adapter("kmer-2")
    for sequence in ("M", "XBZ", "MX"):
        with pytest.raises(RejectedSequence, match="no 2-mer of the 20 standard"):
            adapter.prepare(sequence)


def test_k_beyond_neo4j_vector_dimensions_is_refused():
    with pytest.raises(UserError, match="4096 vector dimensions"):
        load_adapter("kmer-3")
