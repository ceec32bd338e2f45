"""Names spliced into Cypher and file paths. Light on imports: the Snakefile reads it."""

import re

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The weight-free k-mer baseline's model names: kmer-1, kmer-2 (k-mer composition).
KMER_NAME = re.compile(r"kmer[-_]?(\d+)$")
# Neo4j's vector indexes hold 1 to 4,096 dimensions.
MAX_INDEX_DIMENSIONS = 4096


def identifier(name: str, what: str) -> str:
    """`name` if it is a plain identifier; labels and properties cannot be Cypher parameters."""
    from .errors import UserError

    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise UserError(
            f"{what} {name!r} is not a plain identifier (letters, digits and _, not starting "
            "with a digit); rename it in config.yaml"
        )
    return name


def embedding_kind(layer: str | int, normalize: bool) -> str:
    """Short name of the per-protein vectors (model.embedding): mean_last, mean_layer12_l2..."""
    source = {"all": "all_layers"}.get(layer, layer if isinstance(layer, str) else f"layer{layer}")
    return f"mean_{source}" + ("_l2" if normalize else "")


def model_slug(name: str) -> str:
    """A model's name without its organisation, as an identifier's part."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name.rstrip("/").split("/")[-1])
