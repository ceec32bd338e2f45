"""The one interface every model family implements.

Layers are numbered the same way for every family, as transformers and fair-esm do:
layer 0 is the input embeddings, layer i the output of transformer block i, and the last
layer (`num_layers`) the output of the last block after the model's final norm. Blocks
1 .. num_layers - 1 are taken before that norm, as the models produce them.
"""

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from ..sequences import clean_sequence

# The 20 standard residues plus the ambiguity and rare codes that ESM-style vocabularies hold.
ESM_ALPHABET = frozenset("ACDEFGHIKLMNPQRSTVWYXBZUO")


class Adapter(ABC):
    """A loaded model that turns prepared sequences into per-residue vectors of chosen layers.

    Pooling, long-sequence windows and batching live in `embedding.py` and are the same for
    every family; an adapter says how its model reads residues, which token positions hold
    them, and what its layers are.
    """

    family: ClassVar[str]
    alphabet: ClassVar[frozenset[str]] = ESM_ALPHABET
    # Tokens added to every sequence (e.g. <cls> and <eos>); they count towards batches.
    special_tokens: ClassVar[int] = 2
    # Token position of the first residue (1 after a leading <cls>).
    first_residue: ClassVar[int] = 1
    # Which token positions the vectors are taken from, in words (goes into the metadata).
    tokens: ClassVar[str] = "residue positions only (<cls>, <eos> and padding excluded)"
    # The model's final norm, as its code names it.
    final_norm: ClassVar[str] = "the final layer norm"
    # Half precision this family tolerates on a GPU; T5 overflows in float16.
    half_precision: ClassVar[torch.dtype] = torch.float16

    name: str
    device: torch.device
    dimension: int
    max_residues: int
    num_layers: int

    def prepare(self, sequence: str) -> str:
        """The sequence as this family reads it; raises RejectedSequence with the reason."""
        return clean_sequence(sequence, self.alphabet)

    @abstractmethod
    def hidden_states(self, sequences: list[str], layers: list[int]) -> list[torch.Tensor]:
        """The given layers for a batch of prepared sequences: (batch, tokens, dimension) each,
        sequences right-padded, the attention mask applied so padding changes nothing."""

    @torch.inference_mode()
    def residue_embeddings(
        self, sequences: list[str], layers: list[int] | None = None
    ) -> list[torch.Tensor]:
        """One float32 (length, dimension) tensor per sequence, residues only: the average of
        the given layers (default: the last)."""
        layers = [self.num_layers] if layers is None else layers
        states = sum(s.float() for s in self.hidden_states(sequences, layers)) / len(layers)
        start = self.first_residue
        return [states[i, start : start + len(s)].cpu() for i, s in enumerate(sequences)]

    def describe_layer(self, layer: int) -> str:
        if layer == 0:
            return "layer 0 (the input embeddings, before any transformer block)"
        if layer == self.num_layers:
            return (
                f"layer {layer} of {self.num_layers} (the last block's output after "
                f"{self.final_norm})"
            )
        return (
            f"layer {layer} of {self.num_layers} (block {layer}'s output, before {self.final_norm})"
        )


def transformers_layers(output, layers: list[int], num_layers: int) -> list[torch.Tensor]:
    """The layers from a transformers model output, whose hidden_states follow our numbering."""
    if layers == [num_layers]:
        return [output.last_hidden_state]
    return [output.hidden_states[i] for i in layers]
