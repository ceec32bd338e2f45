"""The one interface every model family implements."""

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from ..sequences import clean_sequence

# The 20 standard residues plus the ambiguity and rare codes that ESM-style vocabularies hold.
ESM_ALPHABET = frozenset("ACDEFGHIKLMNPQRSTVWYXBZUO")


class Adapter(ABC):
    """A loaded model that turns prepared sequences into per-residue vectors.

    Pooling, long-sequence windows and batching live in `embedding.py` and are the same for
    every family; an adapter only says how its model reads residues and which tokens and
    layer its per-residue vectors come from (`representation`).
    """

    family: ClassVar[str]
    alphabet: ClassVar[frozenset[str]] = ESM_ALPHABET
    # Tokens added around every sequence (e.g. <cls> and <eos>); they count towards batches.
    special_tokens: ClassVar[int] = 2

    name: str
    device: torch.device
    dimension: int
    max_residues: int
    representation: str

    def prepare(self, sequence: str) -> str:
        """The sequence as this family reads it; raises RejectedSequence with the reason."""
        return clean_sequence(sequence, self.alphabet)

    @abstractmethod
    def residue_embeddings(self, sequences: list[str]) -> list[torch.Tensor]:
        """One float32 (length, dimension) tensor per prepared sequence, residues only."""
