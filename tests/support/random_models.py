"""Models of every family with random weights, built from a config and saved like hub
downloads, for the tests and benchmarks (ESM-2's is the demo's, in protembed.demo).

Their vectors carry no biology; norm weights are random too (see randomize_norms).
"""

import json
from pathlib import Path

import torch

from protembed.demo.offline_model import (  # noqa: F401 - every random model from one module
    cached_random_esm2,
    randomize_norms,
    save_random_esm2,
)

# The residues ProtT5's vocabulary holds, one SentencePiece token each.
PROTT5_RESIDUES = "LAGVSERTIDPKQNFYMHWCXBUZO"


def save_random_esmc(
    directory: Path, *, layers: int = 2, hidden: int = 64, heads: int = 4, seed: int = 0
) -> Path:
    """An ESM-C (ESMC 300M is 30 layers, 960 wide, 15 heads) saved as the hub has it: the
    masked-language model with its head, in transformers' layout."""
    from transformers import EsmcConfig, EsmcForMaskedLM, EsmcTokenizer

    directory = Path(directory)
    config = EsmcConfig(
        vocab_size=64,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        # ESM-C's SwiGLU width, 8/3 of the model's rounded up to a multiple of 256.
        intermediate_size=int((8 * hidden / 3 + 255) // 256 * 256),
        pad_token_id=1,
        mask_token_id=32,
    )
    torch.manual_seed(seed)
    model = EsmcForMaskedLM(config)
    randomize_norms(model, seed)
    model.save_pretrained(directory)
    EsmcTokenizer().save_pretrained(directory)
    return directory


def save_random_prott5(
    directory: Path, *, layers: int = 2, hidden: int = 32, heads: int = 4, seed: int = 0
) -> Path:
    """A ProtT5 encoder (ProtT5-XL: 24 layers, 1024 wide, 32 heads) with a SentencePiece
    vocabulary of one token per residue, like Rostlab's: <pad> 0, </s> 1, <unk> 2."""
    import io

    import sentencepiece
    from transformers import T5Config, T5EncoderModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # A "word" model over space-separated residues gives exactly one piece per residue.
    corpus = [" ".join(PROTT5_RESIDUES[i:] + PROTT5_RESIDUES[:i]) for i in range(25)]
    model_file = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model_file,
        model_type="word",
        vocab_size=3 + len(PROTT5_RESIDUES),
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    (directory / "spiece.model").write_bytes(model_file.getvalue())
    config = T5Config(
        vocab_size=128,  # as ProtT5's: the residues, the specials and 100 sentinel slots
        d_model=hidden,
        d_kv=hidden // heads,
        d_ff=4 * hidden,
        num_layers=layers,
        num_heads=heads,
        feed_forward_proj="relu",
        is_encoder_decoder=False,
        pad_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    model = T5EncoderModel(config)
    randomize_norms(model, seed)
    model.save_pretrained(directory)
    return directory


def save_random_esm3(
    directory: Path,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    seed: int = 0,
) -> Path:
    """An ESM-3 (esm3-open: 48 layers, 1536 wide, 24 heads, 256 geometric heads) as
    adapters/esm3.py reads a local directory: config.json and model.pth. Needs the esm
    package (envs/esm.yaml)."""
    from protembed.adapters.esm3 import build_esm3

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = dict(model_type="esm3", d_model=hidden, n_heads=heads, v_heads=heads, n_layers=layers)
    torch.manual_seed(seed)
    model = build_esm3(config)
    randomize_norms(model, seed)
    torch.save(model.state_dict(), directory / "model.pth")
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory
