"""Protein language-model embeddings for proteins stored in Neo4j."""

__version__ = "0.1.0"
