"""What the graph's schema must hold before and after a run: the names a config gives
(a typo is refused naming what exists), the id's range index, the vector index, and one
vector space per property.

Users' graphs are not ours: an index or constraint on the id may exist under any name
(PyEED's neomodel schema makes `constraint_unique_Protein_accession_id`). Schema is found
by what it covers, never by the name we would have given it.
"""

import difflib
import time
from collections.abc import Iterable

from neo4j.exceptions import ClientError

from ..config import VectorIndexSettings
from ..errors import UserError
from ..names import MAX_INDEX_DIMENSIONS, identifier
from .queries import QUERIES, SPACE_PROVENANCE
from .records import VectorIndex
from .session import GraphSession


class GraphSchema(GraphSession):
    """The names, indexes and vector space a run relies on, checked or made."""

    def check_names(self, extra: dict[str, str | None] | None = None) -> None:
        """The label, the id and sequence properties (and the `extra` {setting: property}
        given) are each held by at least one node: a typo is refused here, naming what
        exists, nearest first, before anything is read or written."""
        if not self._read("has_label"):
            labels = self._execute(QUERIES["labels"], read=True)[0][0]["labels"]
            raise UserError(
                f"no node has the label {self.label!r} (graph.label); "
                + _nearest("labels in the database", self.label, labels)
            )
        wanted = {"graph.id_property": self.id_property}
        wanted["graph.sequence_property"] = self.sequence_property
        wanted.update({k: v for k, v in (extra or {}).items() if v})
        for setting, name in wanted.items():
            query = self._query("has_property", property=identifier(name, setting))
            if not self._execute(query, read=True)[0]:
                keys = self._read("label_keys")[0]["keys"]
                raise UserError(
                    f"no {self.label} node has the property {name!r} ({setting}); "
                    + _nearest(f"properties of {self.label} nodes", name, keys)
                )

    def ensure_id_index(self, timeout_s: float = 600) -> str:
        """The name of a range index on the id (the user's, a constraint's, or one we make),
        once ONLINE: keyset export pages and load lookups need it.

        Never a uniqueness constraint of ours: the user's data may hold duplicate ids.
        """
        existing = self._read("range_indexes", label=self.label, property=self.id_property)
        if existing:
            name = existing[0]["name"]
        else:
            name = identifier(f"protembed_{self.label}_{self.id_property}", "index name")
            try:
                self._execute(self._query("create_id_index", index=name))
            except ClientError:
                # Another run (or the user) made one between our look and our CREATE:
                # IF NOT EXISTS does not cover that race. Use it if it is there.
                existing = self._read("range_indexes", label=self.label, property=self.id_property)
                if not existing:
                    raise
                name = existing[0]["name"]
        # A new index on a large graph populates in the background; wait for it.
        self._execute(self._query("await_index"), name=name, timeout=int(timeout_s))
        return name

    def vector_index(self) -> VectorIndex | None:
        """The vector index on the model's property, whatever its name, or None."""
        records = self._read(
            "vector_indexes", label=self.label, property=self._need_vector_property()
        )
        if not records:
            return None
        options = (records[0]["options"] or {}).get("indexConfig", {})
        similarity = options.get("vector.similarity_function")
        # 5.x reports quantization.enabled; 2026.x reports quantization.type instead.
        kind = options.get("vector.quantization.type")
        quantization = options.get(
            "vector.quantization.enabled", None if kind is None else kind != "NONE"
        )
        return VectorIndex(
            records[0]["name"],
            options.get("vector.dimensions"),
            similarity.lower() if isinstance(similarity, str) else similarity,
            records[0]["state"],
            options.get("vector.hnsw.m"),
            options.get("vector.hnsw.ef_construction"),
            quantization,
            kind,
        )

    def check_vector_index(
        self, dimension: int | None, create: bool, settings: VectorIndexSettings
    ) -> None:
        """Refuse, before any embedding, vectors that the property's index cannot hold, and
        index settings (graph.vector_index) that the server would reject or that differ
        from those of the index already there."""
        prop = self._need_vector_property()
        index = self.vector_index()
        differs = index.differences(settings) if index is not None and create else []
        if differs:
            raise UserError(
                f"vector index {index.name} on {self.label}.{prop} was built with other "
                f"settings ({'; '.join(differs)}); set graph.vector_index to match, or drop "
                f"the index (DROP INDEX {index.name}) to have it rebuilt with yours"
            )
        if dimension is None:
            return
        if index is not None and index.dimension not in (None, dimension):
            raise UserError(
                f"vector index {index.name} on {self.label}.{prop} holds {index.dimension} "
                f"dimensions but model makes {dimension}; set model.property to another name "
                f"(one property per model), or drop the index (DROP INDEX {index.name}) if "
                "its vectors may go, or choose a model of that dimension"
            )
        if index is None and create and dimension > MAX_INDEX_DIMENSIONS:
            raise UserError(
                f"the model makes {dimension}-dimensional vectors and Neo4j's vector indexes "
                f"hold at most {MAX_INDEX_DIMENSIONS}; set graph.create_vector_index: false to "
                "store the vectors without an index, or choose a smaller model"
            )

    def ensure_vector_index(
        self, dimension: int, timeout_s: float, settings: VectorIndexSettings
    ) -> str:
        """The (existing or new) vector index on the model's property, once ONLINE."""
        self.check_vector_index(dimension, create=True, settings=settings)
        index = self.vector_index()
        if index is None:
            name = settings.name or f"{self.label}_{self.vector_property}"
            name = identifier(name, "graph.vector_index.name")
            self._execute(
                self._query("create_vector_index", index=name),
                dimension=dimension,
                similarity=settings.similarity_function,
                hnsw_m=settings.hnsw_m,
                hnsw_ef_construction=settings.hnsw_ef_construction,
                quantization=settings.quantization,
            )
        else:
            name = index.name
        deadline = time.monotonic() + timeout_s
        while True:
            index = self.vector_index()
            state = index.state if index else "MISSING"
            if state == "ONLINE":
                return name
            if state == "FAILED" or time.monotonic() > deadline:
                raise UserError(f"vector index {name} is {state}, not ONLINE, after {timeout_s} s")
            time.sleep(0.2)

    def stored_space(self) -> tuple[str, dict] | None:
        """One stored vector's or rejection's protein id and its model and SPACE_PROVENANCE
        (None where a rejection has none), or None when the property holds neither. Every
        load passes check_same_space, so one stands for all."""
        self._need_vector_property()
        records = self._read("stored_space")
        return (records[0]["id"], records[0]["space"]) if records else None

    def check_same_space(self, provenance: dict, keys: Iterable[str] = SPACE_PROVENANCE) -> None:
        """Refuse vectors that would not be comparable with those the property holds."""
        stored = self.stored_space()
        if stored is None:
            return
        protein_id, space = stored
        differs = [k for k in keys if space[k] is not None and space[k] != provenance[k]]
        if differs:
            details = "; ".join(f"{k} {space[k]!r} there, {provenance[k]!r} now" for k in differs)
            raise UserError(
                f"{self.label}.{self.vector_property} already holds vectors that this run's "
                f"would not be comparable with (e.g. {protein_id}: {details}); nothing was "
                "written. Set model.property to a new name, or remove the old vectors first"
            )


def _nearest(what: str, name: str, names: list[str]) -> str:
    """`what`: the names, the most similar to `name` first."""
    if not names:
        return f"there are no {what}"
    ranked = sorted(
        names, key=lambda n: -difflib.SequenceMatcher(None, name.lower(), n.lower()).ratio()
    )
    shown = ", ".join(ranked[:8]) + (", ..." if len(ranked) > 8 else "")
    return f"{what}, nearest first: {shown}"
