"""Protein language-model embeddings for proteins stored in Neo4j.

    from protembed import Embedder                      # sequences -> vectors
    from protembed import embed_graph, read_embeddings  # the whole workflow, in process
    from protembed import open_graph                    # one vector, neighbours, by id

Imported lazily: the Snakefile and the graph steps import this package without torch.
"""

__version__ = "0.1.0"

_LAZY = {
    "Embedder": ("protembed.embedder", "Embedder"),
    "embed_graph": ("protembed.notebook", "embed_graph"),
    "read_embeddings": ("protembed.notebook", "read_embeddings"),
    "iter_embeddings": ("protembed.notebook", "iter_embeddings"),
    "open_graph": ("protembed.notebook", "open_graph"),
}

__all__ = [
    "Embedder",
    "__version__",
    "embed_graph",
    "iter_embeddings",
    "open_graph",
    "read_embeddings",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'protembed' has no attribute {name!r}")
