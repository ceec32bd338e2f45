"""k-mer composition: a cheap, weight-free baseline behind the same interface as the models.

`kmer-2` gives each protein its 400 dipeptide frequencies (`kmer-1`: the 20 amino-acid
frequencies). Larger k would exceed Neo4j's 4,096 vector dimensions (20^3 = 8,000).

Pooling stays the generic mean over residues: residue i holds the one-hot vector of the
k-mer starting at i, scaled by length / (number of counted k-mers), so the mean over the
protein's residues is exactly the k-mer frequency vector. k-mers holding anything but the
20 standard residues (X, B, Z, U, O) are not counted.
"""

from typing import ClassVar

import numpy as np
import torch

from ..errors import RejectedSequence, UserError
from ..names import KMER_NAME, MAX_INDEX_DIMENSIONS
from .base import Adapter

STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
_CODE = np.full(256, -1, dtype=np.int64)
_CODE[np.frombuffer(STANDARD_RESIDUES.encode(), dtype=np.uint8)] = np.arange(20)


class KmerAdapter(Adapter):
    special_tokens = 0
    first_residue = 0
    tokens = (
        "residue positions (residue i holds the one-hot k-mer starting at i, scaled so that "
        "the mean is the k-mer frequency vector)"
    )
    final_norm = "no norm (k-mer counts have no layers)"
    # No weights: the revision names the counting rules, and changes only when they do (a
    # new protembed release must not make earlier k-mer vectors look incomparable).
    revision: ClassVar[str] = "kmer-counting-1"

    def __init__(self, name: str, device: torch.device):
        match = KMER_NAME.search(name.lower())
        k = int(match.group(1)) if match else 0
        if k < 1 or 20**k > MAX_INDEX_DIMENSIONS:
            raise UserError(
                f"k-mer model {name!r}: use kmer-1 (20 dimensions) or kmer-2 (400); "
                f"20^k must stay within Neo4j's {MAX_INDEX_DIMENSIONS} vector dimensions"
            )
        self.name = name
        self.k = k
        self.device = torch.device("cpu")  # counting gains nothing from a GPU
        self.dimension = 20**self.k
        self.num_layers = 1
        self.max_residues = 10**9  # no trained length: never chunk or truncate

    def prepare(self, sequence: str) -> str:
        cleaned = super().prepare(sequence)
        if not self._kmer_codes(cleaned).size:
            raise RejectedSequence(
                f"no {self.k}-mer of the 20 standard amino acids to count in {len(cleaned)} "
                "residues"
            )
        return cleaned

    def _kmer_codes(self, sequence: str) -> np.ndarray:
        """(start position, k-mer number) of every countable k-mer, as two rows."""
        residues = _CODE[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
        starts = len(residues) - self.k + 1
        if starts <= 0:
            return np.zeros((2, 0), dtype=np.int64)
        codes = np.zeros(starts, dtype=np.int64)
        valid = np.ones(starts, dtype=bool)
        for offset in range(self.k):
            window = residues[offset : offset + starts]
            codes = codes * 20 + window
            valid &= window >= 0
        positions = np.flatnonzero(valid)
        return np.stack([positions, codes[positions]])

    def hidden_states(self, sequences: list[str], layers: list[int]) -> list[torch.Tensor]:
        states = torch.zeros(len(sequences), max(map(len, sequences)), self.dimension)
        for row, sequence in enumerate(sequences):
            positions, codes = self._kmer_codes(sequence)
            if positions.size:
                states[row, positions, codes] = len(sequence) / positions.size
        return [states] * len(layers)

    def describe_layer(self, layer: int) -> str:
        return f"{self.k}-mer counts (no layers: every layer choice gives the same vector)"
