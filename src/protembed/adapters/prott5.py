"""ProtT5 (e.g. Rostlab/prot_t5_xl_half_uniref50-enc) through transformers' T5EncoderModel.

The encoder reads residues as space-separated words, one SentencePiece token each, and
closes every sequence with </s>; there is no leading token.
"""

import re

import sentencepiece
import torch
from transformers import T5EncoderModel
from transformers.utils import cached_file

from .base import TransformersAdapter

# ProtT5 was trained with the rare residues U, Z, O and B replaced by X.
_RARE_RESIDUES = re.compile(r"[UZOB]")


class ProtT5Adapter(TransformersAdapter):
    family = "prot_t5"
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
        self.pieces = sentencepiece.SentencePieceProcessor(
            model_file=cached_file(name, "spiece.model")
        )
        self.model = T5EncoderModel.from_pretrained(name, dtype=torch.float32)
        self.model.to(device).eval()
        config = self.model.config
        self.pad, self.eos = config.pad_token_id, config.eos_token_id
        self.dimension = config.d_model
        self.num_layers = config.num_layers
        # ProtT5 was pre-trained on 512 tokens: 511 residues plus </s>.
        self.max_residues = 511

    def prepare(self, sequence: str) -> str:
        return _RARE_RESIDUES.sub("X", super().prepare(sequence))

    def encode(self, sequences: list[str]) -> dict[str, torch.Tensor]:
        ids = [self.pieces.encode(" ".join(sequence)) + [self.eos] for sequence in sequences]
        for sequence, tokens in zip(sequences, ids, strict=True):
            if len(tokens) != len(sequence) + 1:
                raise RuntimeError(f"{self.name}'s tokenizer does not read one token per residue")
        width = max(map(len, ids))
        input_ids = torch.tensor([t + [self.pad] * (width - len(t)) for t in ids])
        mask = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t in ids])
        return {"input_ids": input_ids, "attention_mask": mask}
