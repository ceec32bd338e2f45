"""What the graph hands over and takes: export rows, vector batches, write results, and
what the server says of a vector index."""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..config import VectorIndexSettings


@dataclass(frozen=True)
class ExportRow:
    id: str
    sequence: object  # str when the graph is sane; anything else is rejected
    stored_sha256: str | None  # hash of the sequence the stored vector or rejection is for
    settled: bool  # holds this model's vector, or the reason it was rejected
    node: str  # elementId: tells apart nodes that share an id


@dataclass(frozen=True)
class VectorBatch:
    """Vectors for one write transaction, column by column."""

    ids: list[str]
    sequences: list[str]  # what each vector was made from: written only where it still is
    sequence_sha256: list[str]
    long_sequence_handling: list[str]
    vectors: np.ndarray  # (rows, dimension) float32


@dataclass(frozen=True)
class VectorStatus:
    """The nodes that hold one id, and where they stand with one model's vector."""

    nodes: int
    with_sequence: int
    embedded: int
    rejected: list[str]  # the distinct reasons recorded on them (<property>_rejected)


@dataclass(frozen=True)
class WriteResult:
    written: int  # nodes whose vector or rejection changed
    missing: list[str]  # ids of rows whose sequence no node with that id holds any more

    @classmethod
    def total(cls, results: Iterable["WriteResult"]) -> "WriteResult":
        written, missing = 0, []
        for result in results:
            written += result.written
            missing.extend(result.missing)
        return cls(written, missing)


@dataclass(frozen=True)
class VectorIndex:
    name: str
    dimension: int | None
    similarity: str | None
    state: str
    hnsw_m: int | None = None
    hnsw_ef_construction: int | None = None
    quantization: bool | None = None
    quantization_type: str | None = None  # 2026.x: BINARY where quantization is on, or NONE

    def differences(self, settings: VectorIndexSettings) -> list[str]:
        """The settings this index was built with that differ from `settings` (a setting
        the server does not report counts as matching)."""
        built = {
            "similarity_function": self.similarity,
            "hnsw_m": self.hnsw_m,
            "hnsw_ef_construction": self.hnsw_ef_construction,
            "quantization": self.quantization,
        }
        wanted = settings.as_dict()
        return [
            f"{key} {built[key]!r} there, {wanted[key]!r} in config"
            for key in built
            if built[key] is not None and built[key] != wanted[key]
        ]


# The queries, whole. {label}, {id}, {sequence} and {vector} are the checked names;
# {vector}_xxx are its provenance siblings. {stale} is filled in by ProteinGraph.
