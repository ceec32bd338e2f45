"""ProtT5 (e.g. Rostlab/prot_t5_xl_half_uniref50-enc) through transformers' T5EncoderModel.

The encoder reads residues as space-separated words, one SentencePiece token each, and
closes every sequence with </s>; there is no leading token.
"""

import re

import numpy as np
import sentencepiece
import torch
from transformers import T5EncoderModel
from transformers.utils import cached_file

from .base import TransformersAdapter, residue_table

# ProtT5 was trained with the rare residues U, Z, O and B replaced by X.
_RARE_RESIDUES = re.compile(r"[UZOB]")


class ProtT5Adapter(TransformersAdapter):
    implementation = "transformers"
    special_tokens = 1
    first_residue = 0
    tokens = "residue positions only (the closing </s> and padding excluded)"
    final_norm = "the final layer norm (final_layer_norm)"
    # T5's activations overflow float16 (NaN/inf); bfloat16 has float32's range.
    half_precision = torch.bfloat16

    def __init__(self, name: str, device: torch.device):
        self.name = name
        self.device = device
        pieces = sentencepiece.SentencePieceProcessor(model_file=cached_file(name, "spiece.model"))
        self.model = T5EncoderModel.from_pretrained(name, dtype=torch.float32)
        self.model.to(device).eval()
        config = self.model.config
        self.residue_ids = residue_ids(pieces, self.alphabet)
        self.suffix_ids, self.pad_id = (config.eos_token_id,), config.pad_token_id
        self.dimension = config.d_model
        self.num_layers = config.num_layers
        # ProtT5 was pre-trained on 512 tokens: 511 residues plus </s>.
        self.max_residues = 511

    def prepare(self, sequence: str) -> str:
        return _RARE_RESIDUES.sub("X", super().prepare(sequence))


def residue_ids(pieces: sentencepiece.SentencePieceProcessor, alphabet: frozenset) -> np.ndarray:
    """The encoder reads residues as space-separated words, one SentencePiece token each."""
    letters = sorted(alphabet)
    tokens = pieces.encode(" ".join(letters))
    if len(tokens) != len(letters):
        raise RuntimeError("the ProtT5 tokenizer does not read one token per residue")
    return residue_table(dict(zip(letters, tokens, strict=True)))
