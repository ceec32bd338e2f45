"""PyEED's embedding types, as Embedder settings."""

from ..errors import UserError

# PyEED's EmbeddingProcessor kinds (src/pyeed/embeddings/processor.py) and what gives the
# same representation here: Embedder arguments, and whether PyEED returns one matrix per
# protein (residues x dimension; here encode_records(per_residue=True)). What differs is in
# docs/pyeed.md's table: our means never include special tokens, our vectors are float32.
PYEED_EMBEDDING_TYPES = {
    # the last layer of every residue (special tokens dropped): a matrix
    "last_hidden_state": ({"layer": "last"}, True),
    # every layer including the input embeddings, each residue L2-normalised: our nearest
    # is the mean over blocks 1..N (layer 0 excluded), per residue
    "all_layers": ({"layer": "all"}, True),
    # PyEED's "first layer" is hidden_states[0], the input embeddings: our layer 0
    "first_layer": ({"layer": 0}, True),
    # the mean of the last layer over every token, <cls> and <eos> included: our residue mean
    "final_embeddings": ({"layer": "last"}, False),
}


def pyeed_settings(embedding_type: str) -> tuple[dict, bool]:
    """The Embedder settings for one of PyEED's embedding types, and whether PyEED returns
    residue matrices for it."""
    if embedding_type not in PYEED_EMBEDDING_TYPES:
        raise UserError(
            f"PyEED embedding_type {embedding_type!r} is not one of "
            f"{', '.join(PYEED_EMBEDDING_TYPES)}"
        )
    return PYEED_EMBEDDING_TYPES[embedding_type]
