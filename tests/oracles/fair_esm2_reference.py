"""Oracle, run in the fair-esm environment: every layer of fair-esm's own ESM2 for the
weights of a transformers EsmModel directory, one sequence at a time.

usage: python fair_esm2_reference.py MODEL_DIR SEQUENCES_JSON OUT_NPZ
writes, per sequence i, "seq{i}": (layers + 1, residues, dimension) float32, residue
positions only (fair-esm's extract.py: representations[layer][0, 1 : len + 1]).
"""

import json
import sys
from pathlib import Path

import esm
import numpy as np
import torch
from esm.model.esm2 import ESM2
from safetensors.torch import load_file

# transformers' names -> fair-esm's, within one layer.
LAYER_NAMES = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.LayerNorm": "self_attn_layer_norm",
    "intermediate.dense": "fc1",
    "output.dense": "fc2",
    "LayerNorm": "final_layer_norm",
}
# transformers writes some LayerNorms with TensorFlow's names.
PARAMETER_NAMES = {"gamma": "weight", "beta": "bias", "weight": "weight", "bias": "bias"}


def fair_state_dict(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in weights.items():
        if key.endswith("inv_freq"):
            continue  # rotary frequencies: recomputed, not learned
        module, parameter = key.rsplit(".", 1)
        parameter = PARAMETER_NAMES[parameter]
        if module == "embeddings.word_embeddings":
            state[f"embed_tokens.{parameter}"] = value
        elif module == "encoder.emb_layer_norm_after":
            state[f"emb_layer_norm_after.{parameter}"] = value
        elif module.startswith("contact_head."):
            state[key] = value
        else:
            _, _, index, name = module.split(".", 3)
            state[f"layers.{index}.{LAYER_NAMES[name]}.{parameter}"] = value
    return state


def main(model_dir: str, sequences_json: str, out_npz: str) -> None:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = ESM2(
        num_layers=config["num_hidden_layers"],
        embed_dim=config["hidden_size"],
        attention_heads=config["num_attention_heads"],
        alphabet=alphabet,
        token_dropout=config["token_dropout"],
    ).eval()
    missing, unexpected = model.load_state_dict(
        fair_state_dict(load_file(str(Path(model_dir) / "model.safetensors"))), strict=False
    )
    # The masked-LM head is not part of an EsmModel checkpoint, and rotary frequencies are
    # computed, not learned; nothing else may be missing.
    missing = [k for k in missing if not k.startswith("lm_head.") and "rot_emb" not in k]
    assert not missing and not unexpected, (missing, unexpected)
    layers = list(range(config["num_hidden_layers"] + 1))
    convert = alphabet.get_batch_converter()
    references = {}
    for i, sequence in enumerate(json.loads(Path(sequences_json).read_text())):
        _, _, tokens = convert([(str(i), sequence)])
        with torch.no_grad():
            representations = model(tokens, repr_layers=layers)["representations"]
        residues = [representations[layer][0, 1 : len(sequence) + 1] for layer in layers]
        references[f"seq{i}"] = torch.stack(residues).numpy().astype(np.float32)
    np.savez(out_npz, **references)


if __name__ == "__main__":
    main(*sys.argv[1:])
