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


def embedding_kind(embedding: dict) -> str:
    """Short name of the per-protein vectors (model.embedding): mean_last, mean_layer12_l2..."""
    layer = embedding.get("layer", "last")
    source = {"all": "all_layers"}.get(layer, layer if isinstance(layer, str) else f"layer{layer}")
    return f"mean_{source}" + ("_l2" if embedding.get("normalize") else "")


def vector_property(config: dict) -> str:
    """The node property for this model's vectors: one per model and embedding kind, so
    spaces never mix (the default kind, mean_last, adds no suffix)."""
    model = config["model"]
    if model.get("property"):
        return identifier(model["property"], "model.property")
    slug = re.sub(r"[^A-Za-z0-9_]", "_", model["name"].rstrip("/").split("/")[-1])
    kind = embedding_kind(model.get("embedding", {}))
    suffix = "" if kind == "mean_last" else "_" + kind.removeprefix("mean_")
    return identifier(f"embedding_{slug}{suffix}", "derived model.property")
