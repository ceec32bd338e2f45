"""An ESM-2 with random weights, saved like a hub download: the demo's model where the
model hub is out of reach (and the tests' tiny model).

It is read back through the same `from_pretrained` path as real weights. Its vectors carry
no biology. Norm weights are drawn at random too (libraries start them at 1), so that a
test comparing two implementations notices a norm applied in the wrong place.
"""

from pathlib import Path

import torch

# ESM-2's vocabulary, in the order of its token ids.
ESM2_VOCABULARY = (
    *("<cls>", "<pad>", "<eos>", "<unk>"),
    *"LAGVSERTIDPKQNFYMHWCXBUZO.-",
    *("<null_1>", "<mask>"),
)


def randomize_norms(model: torch.nn.Module, seed: int) -> None:
    """Norm weights (one-dimensional `weight` parameters) of 1 + N(0, 0.1) instead of 1.

    Biases stay 0: a random bias shared by every position makes all protein vectors nearly
    parallel, and nearest-neighbour tests meaningless."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1 and name.endswith("weight"):
                noise = torch.randn(parameter.shape, generator=generator)
                parameter.add_(0.1 * noise.to(parameter.dtype))


def cached_random_esm2(directory: Path, *, layers: int, hidden: int, heads: int) -> Path:
    """save_random_esm2 once: later calls find the model in `directory`."""
    if not (directory / "config.json").is_file():
        save_random_esm2(directory, layers=layers, hidden=hidden, heads=heads)
    return directory


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
        layer_norm_eps=1e-5,  # as facebook's checkpoints and fair-esm have it
        position_embedding_type="rotary",
        emb_layer_norm_before=False,
        token_dropout=True,
        pad_token_id=ESM2_VOCABULARY.index("<pad>"),
        mask_token_id=ESM2_VOCABULARY.index("<mask>"),
    )
    torch.manual_seed(seed)
    model = EsmModel(config, add_pooling_layer=False)
    randomize_norms(model, seed)
    model.save_pretrained(directory)
    EsmTokenizer(str(vocabulary)).save_pretrained(directory)
    return directory
