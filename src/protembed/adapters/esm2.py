"""ESM-2 (every size, 8M to 15B) through transformers' EsmModel."""

import torch
from transformers import AutoTokenizer, EsmModel

from .base import TransformersAdapter, tokenizer_table


class Esm2Adapter(TransformersAdapter):
    implementation = "transformers"
    final_norm = "the final layer norm (emb_layer_norm_after)"
    packs = True

    def __init__(self, name: str, device: torch.device):
        self.name = name
        self.device = device
        tokenizer = AutoTokenizer.from_pretrained(name)
        self.residue_ids = tokenizer_table(tokenizer, self.alphabet)
        self.prefix_ids, self.suffix_ids = (tokenizer.cls_token_id,), (tokenizer.eos_token_id,)
        self.pad_id = tokenizer.pad_token_id
        # The pooling head is a randomly initialised tanh layer on <cls>: never load or use it.
        self.model = EsmModel.from_pretrained(name, add_pooling_layer=False, dtype=torch.float32)
        self.model.to(device).eval()
        use_fused_gelu(self.model)
        self.dimension = self.model.config.hidden_size
        self.num_layers = self.model.config.num_hidden_layers
        # ESM-2 was trained on crops of 1,022 residues plus <cls> and <eos>.
        self.max_residues = min(1022, self.model.config.max_position_embeddings - 2)


def use_fused_gelu(model: EsmModel) -> None:
    """Each block's GELU as torch's own kernel. transformers' EsmIntermediate spells the
    same exact (erf) GELU out in five tensor operations: on a CPU that took 12% of an 8M
    forward pass in float32, and in bfloat16 it rounds after each of the five, where
    torch's kernel computes in float32 and rounds once. Same function, float32 results
    within 1.2e-6."""
    for layer in model.encoder.layer:
        layer.intermediate = torch.nn.Sequential(layer.intermediate.dense, torch.nn.GELU())
