"""ESM-2 (every size, 8M to 15B) through transformers' EsmModel."""

import torch
from transformers import AutoTokenizer, EsmModel

from .base import Adapter


class Esm2Adapter(Adapter):
    family = "esm2"

    def __init__(self, name: str, device: torch.device):
        self.name = name
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(name)
        # The pooling head is a randomly initialised tanh layer on <cls>: never load or use it.
        self.model = EsmModel.from_pretrained(name, add_pooling_layer=False)
        self.model.to(device).eval()
        self.dimension = self.model.config.hidden_size
        # ESM-2 was trained on crops of 1,022 residues plus <cls> and <eos>.
        self.max_residues = min(1022, self.model.config.max_position_embeddings - 2)
        self.representation = (
            "final layer after the last layer norm (last_hidden_state), residue positions "
            "only: <cls>, <eos> and padding excluded"
        )

    @torch.inference_mode()
    def residue_embeddings(self, sequences: list[str]) -> list[torch.Tensor]:
        batch = self.tokenizer(sequences, padding=True, return_tensors="pt").to(self.device)
        # EsmModel assumes an all-ones mask when none is given, so padding would leak in.
        hidden = self.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        return [hidden[i, 1 : len(seq) + 1].float().cpu() for i, seq in enumerate(sequences)]
