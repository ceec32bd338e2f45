"""ESM-2 (every size, 8M to 15B) through transformers' EsmModel."""

import torch
from transformers import AutoTokenizer, EsmModel

from .base import Adapter, transformers_layers


class Esm2Adapter(Adapter):
    family = "esm2"
    implementation = "transformers"
    final_norm = "the final layer norm (emb_layer_norm_after)"

    def __init__(self, name: str, device: torch.device):
        self.name = name
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(name)
        # The pooling head is a randomly initialised tanh layer on <cls>: never load or use it.
        self.model = EsmModel.from_pretrained(name, add_pooling_layer=False, dtype=torch.float32)
        self.model.to(device).eval()
        self.dimension = self.model.config.hidden_size
        self.num_layers = self.model.config.num_hidden_layers
        # ESM-2 was trained on crops of 1,022 residues plus <cls> and <eos>.
        self.max_residues = min(1022, self.model.config.max_position_embeddings - 2)

    def encode(self, sequences: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(sequences, padding=True, return_tensors="pt")
        # EsmModel assumes an all-ones mask when none is given, so padding would leak in.
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, inputs: dict[str, torch.Tensor], layers: list[int]) -> list[torch.Tensor]:
        output = self.model(**inputs, output_hidden_states=layers != [self.num_layers])
        return transformers_layers(output, layers, self.num_layers)
