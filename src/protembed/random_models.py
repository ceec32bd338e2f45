"""Models with random weights built from a config, saved like hub downloads.

Tests use them, and the demo falls back to one when the model hub is out of reach; either
way they are read back through the same `from_pretrained` path as real weights. Their
vectors carry no biology.
"""

from pathlib import Path

import torch

# ESM-2's vocabulary, in the order of its token ids.
ESM2_VOCABULARY = (
    *("<cls>", "<pad>", "<eos>", "<unk>"),
    *"LAGVSERTIDPKQNFYMHWCXBUZO.-",
    *("<null_1>", "<mask>"),
)


def save_random_esm2(
    directory: Path,
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    seed: int = 0,
) -> Path:
    """An ESM-2 architecture (rotary positions, pre-norm, final norm) with random weights.

    The defaults are tiny; `layers=6, hidden=320, heads=20` is esm2_t6_8M_UR50D's shape.
    """
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocabulary = directory / "vocab.txt"
    vocabulary.write_text("\n".join(ESM2_VOCABULARY) + "\n")
    config = EsmConfig(
        vocab_size=len(ESM2_VOCABULARY),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=1026,
        position_embedding_type="rotary",
        emb_layer_norm_before=False,
        token_dropout=True,
        pad_token_id=ESM2_VOCABULARY.index("<pad>"),
        mask_token_id=ESM2_VOCABULARY.index("<mask>"),
    )
    torch.manual_seed(seed)
    EsmModel(config, add_pooling_layer=False).save_pretrained(directory)
    EsmTokenizer(str(vocabulary)).save_pretrained(directory)
    return directory
