"""ESM-C (ESMC 300M, 600M, 6B): transformers' native EsmcModel, or the esm package's own.

transformers >= 5 has ESM-C built in. Where EvolutionaryScale's `esm` package is installed
instead (it needs transformers < 5, see envs/esm.yaml) its EsmcModel is used: the same
checkpoint layout, the same forward signature and the same hidden_states convention.
"""

import torch

try:
    from transformers import EsmcModel, EsmcTokenizer

    IMPLEMENTATION = "transformers"
except ImportError:
    from esm.models.esmc import EsmcModel, EsmcTokenizer

    IMPLEMENTATION = "esm"

from .base import TransformersAdapter, tokenizer_table

# The esm package's short names for the published checkpoints.
HUB_NAMES = {
    "esmc_300m": "biohub/ESMC-300M",
    "esmc_600m": "biohub/ESMC-600M",
    "esmc_6b": "biohub/ESMC-6B",
}


class EsmcAdapter(TransformersAdapter):
    final_norm = "the final layer norm (norm)"
    half_precision = torch.bfloat16
    packs = True

    def __init__(self, name: str, device: torch.device):
        self.name = name
        self.device = device
        self.implementation = IMPLEMENTATION
        # The vocabulary is fixed by the architecture (ESM-2's ids 0-32, '|' a chain break).
        tokenizer = EsmcTokenizer()
        self.residue_ids = tokenizer_table(tokenizer, self.alphabet)
        self.prefix_ids, self.suffix_ids = (tokenizer.cls_token_id,), (tokenizer.eos_token_id,)
        self.pad_id = tokenizer.pad_token_id
        # The esm package picks its kernels by the device the model is built on.
        placement = {"device": device} if IMPLEMENTATION == "esm" else {}
        self.model = EsmcModel.from_pretrained(
            HUB_NAMES.get(name, name), dtype=torch.float32, **placement
        )
        self.model.to(device).eval()
        config = self.model.config
        self.dimension = config.hidden_size
        self.num_layers = config.num_hidden_layers
        # ESM-C was trained on contexts of 2,048 tokens: 2,046 residues plus <cls> and <eos>.
        self.max_residues = min(2046, getattr(config, "max_position_embeddings", 2048) - 2)
