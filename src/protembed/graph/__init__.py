"""The one place that talks to Neo4j: `ProteinGraph`, the proteins of one label in one
database and, when a model is named, that model's vectors on them.

Its parts, one concern each: `connection` (where the graph is), `queries` (every Cypher
statement), `session` (the driver and the checked names), `schema` (names, indexes, one
vector space per property), `reads` (export, read-back, questions) and `writes` (vectors
and rejections).

Users' graphs are not ours: ids may repeat or be missing, and the server may be 5.26 LTS or
a calendar release; a vector is written only to a node that still holds the sequence it was
made from.
"""

from .connection import CONNECT_TIMEOUT_S, Connection, Server, connect, rust_extension_loaded
from .queries import QUERIES, RUN_PROVENANCE, SPACE_PROVENANCE, STORED_COLUMNS
from .reads import GraphReads
from .records import ExportRow, VectorBatch, VectorIndex, VectorStatus, WriteResult
from .writes import GraphWrites, add_proteins


class ProteinGraph(GraphReads, GraphWrites):
    """The proteins of one label in one Neo4j database, and one model's vectors on them.

    >>> with ProteinGraph.connect(vector_property="embedding") as proteins:
    ...     proteins.nearest_neighbours("P12345", k=5)
    """


__all__ = [
    "CONNECT_TIMEOUT_S",
    "QUERIES",
    "RUN_PROVENANCE",
    "SPACE_PROVENANCE",
    "STORED_COLUMNS",
    "Connection",
    "ExportRow",
    "ProteinGraph",
    "Server",
    "VectorBatch",
    "VectorIndex",
    "VectorStatus",
    "WriteResult",
    "add_proteins",
    "connect",
    "rust_extension_loaded",
]
