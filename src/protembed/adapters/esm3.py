"""ESM-3 through EvolutionaryScale's `esm` package (its own environment: envs/esm.yaml).

`model.name` is one of the package's names (`esm3-open`, weights from the model hub, gated),
or a local directory with this project's config.json (model_type "esm3" and the sizes:
d_model, n_heads, v_heads, n_layers) beside the weights saved by `torch.save(state_dict)`
(`weights`, default model.pth).
"""

import json
from pathlib import Path

import torch
from esm.models.esm3 import ESM3
from esm.tokenization import (
    EsmSequenceTokenizer,
    InterProQuantizedTokenizer,
    SASADiscretizingTokenizer,
    SecondaryStructureTokenizer,
    StructureTokenizer,
    TokenizerCollection,
)

from ..errors import UserError
from .base import Adapter


def _no_decoder(device):
    raise RuntimeError("this ESM-3 was loaded for embeddings only: it has no decoders")


def build_esm3(model_config: dict) -> ESM3:
    """An ESM-3 of the sizes in `model_config`, with random weights."""
    # Only the sequence tokenizer is used; the package's full set reads a file from the hub.
    tokenizers = TokenizerCollection(
        sequence=EsmSequenceTokenizer(),
        structure=StructureTokenizer(),
        secondary_structure=SecondaryStructureTokenizer(kind="ss8"),
        sasa=SASADiscretizingTokenizer(),
        function=InterProQuantizedTokenizer(),
        residue_annotations=None,
    )
    return ESM3(
        **{key: model_config[key] for key in ("d_model", "n_heads", "v_heads", "n_layers")},
        structure_encoder_fn=_no_decoder,
        structure_decoder_fn=_no_decoder,
        function_decoder_fn=_no_decoder,
        tokenizers=tokenizers,
    )


def load_local_esm3(directory: str | Path) -> ESM3:
    """An ESM-3 from a directory holding config.json and a saved state dict."""
    directory = Path(directory)
    model_config = json.loads((directory / "config.json").read_text())
    model = build_esm3(model_config)
    weights = directory / model_config.get("weights", "model.pth")
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model


class Esm3Adapter(Adapter):
    implementation = "esm"
    final_norm = "the final layer norm (transformer.norm)"
    half_precision = torch.bfloat16

    def __init__(self, name: str, device: torch.device):
        self.name = name
        self.device = device
        if (Path(name) / "config.json").is_file():
            model = load_local_esm3(name)
        else:
            model = ESM3.from_pretrained(name, device=device)
        self.model = model.to(device=device, dtype=torch.float32).eval()
        self.tokenizer = EsmSequenceTokenizer()
        self.num_layers = len(self.model.transformer.blocks)
        self.dimension = self.model.transformer.norm.normalized_shape[0]
        # ESM-3 reads at most 2,048 tokens: 2,046 residues plus <cls> and <eos>.
        self.max_residues = 2046

    def use_precision(self, requested: str = "auto") -> None:
        """Half precision on GPUs only, as the esm package runs ESM-3: on a CPU its geometric
        attention turns autocast off and multiplies bfloat16 activations by float32
        rotations, which fails. So `auto` is float32 on a CPU, and bfloat16 is refused."""
        on_gpu = self.device.type == "cuda"
        if not on_gpu and requested in ("bfloat16", "float16"):
            raise UserError(
                f"precision {requested} is refused for esm3 on {self.device.type}: the esm "
                "package runs ESM-3 in half precision on GPUs only; use auto or float32"
            )
        super().use_precision(requested if on_gpu or requested != "auto" else "float32")

    def tokenize(self, sequences: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(sequences, padding=True, return_tensors="pt")
        return {"input_ids": batch["input_ids"]}

    def forward(self, inputs: dict[str, torch.Tensor], layers: list[int]) -> list[torch.Tensor]:
        ids = inputs["input_ids"]
        # The transformer stack returns (after norm, before norm, every block's output, ...)
        # and the sequence only ever reaches it: keep what goes in and what comes out.
        seen = {}
        hook = self.model.transformer.register_forward_hook(
            lambda module, args, output: seen.update(inputs=args[0], outputs=output)
        )
        # In half precision (GPUs), autocast as the esm package itself runs ESM-3: its
        # forward makes the default pLDDT inputs float32, which bfloat16 weights refuse.
        half = self.precision != "float32"
        try:
            with torch.autocast(self.device.type, dtype=self.half_precision, enabled=half):
                # ESM-3 knows no attention mask: tokens attend where sequence_id is equal, so
                # padding (False) and residues (True) never see each other.
                self.model(sequence_tokens=ids, sequence_id=ids != self.tokenizer.pad_token_id)
        finally:
            hook.remove()
        after_norm, _, blocks = seen["outputs"][:3]
        stack = [seen["inputs"], *blocks[:-1], after_norm]
        return [stack[i] for i in layers]
