"""Reading the graph: the export's rows, the stored vectors and rejections read back
page by page, and the questions a notebook asks (a protein's vector, its neighbours).

Pages are keyset pages on the id, so they stay fast and correct while others write;
nodes may share an id, and a run of equal ids is never cut at a page's end.
"""

from collections.abc import Iterator

import numpy as np

from ..errors import UserError
from ..names import identifier
from .records import ExportRow, VectorIndex, VectorStatus
from .schema import GraphSchema


class GraphReads(GraphSchema):
    """What the graph holds, read page by page, and the questions asked of it."""

    def export_rows(self, page_size: int) -> Iterator[ExportRow]:
        """Every protein with a string id and a sequence, in id order, one page at a time.

        Keyset pages (`id > last`, served in order by the id's range index) stay fast and
        correct while others write to the graph, unlike SKIP/LIMIT, and each page is its own
        short read transaction. Nodes may share an id: a full page's last id is read whole
        by an index seek, so no run of equal ids is cut at a page boundary. A page travels
        as one collected list: Bolt's per-record messages cost more on both ends
        (BENCHMARKS.md).
        """
        self._need_vector_property()
        where = f"p.{self.sequence_property} IS NOT NULL"
        for row in self._keyset_pages("export_row", where, page_size):
            yield ExportRow(*row)

    def _keyset_pages(self, row_name: str, where: str, page_size: int) -> Iterator[list]:
        """The rows (QUERIES[row_name]) of every node matching `where`, in id order."""
        row = self._query(row_name, cypher="")
        page_query = self._query("keyset_page", row=row, where=where)
        id_query = self._query("keyset_id", row=row, where=where)

        def fetch(query: str, **parameters) -> list[list]:
            records, _, _ = self._execute(query, read=True, **parameters)
            return records[0]["page"]

        # `id > ""` would skip the empty id, which sorts first.
        yield from fetch(id_query, id="")
        after = ""
        while True:
            page = fetch(page_query, after=after, limit=page_size)
            if len(page) < page_size:
                yield from page
                return
            after = page[-1][0]
            yield from (row for row in page if row[0] != after)
            yield from fetch(id_query, id=after)

    def without_string_id(self) -> list[tuple[str, str]]:
        """(elementId, reason) of proteins with a sequence but no string id: they cannot be
        written back."""
        return [
            (
                record["node"],
                f"{self.id_property} is missing"
                if record["missing"]
                else f"{self.id_property} is not a string",
            )
            for record in self._read("without_string_id")
        ]

    def count_with_sequence(self) -> int:
        return self._read("count_with_sequence")[0]["n"]

    def nearest_neighbours(self, protein_id: str, k: int = 10) -> list[tuple[str, float]]:
        """The k proteins most similar to `protein_id` by the model's vector index, best
        first (the SEARCH clause where the server has it, else db.index.vector.queryNodes)."""
        index = self._index_or_error()
        if self.server.has_search_clause:
            query = self._query("neighbours_search", index=identifier(index.name, "index"))
        else:
            query = self._query("neighbours_procedure")
        records, _, _ = self._execute(query, read=True, id=protein_id, index=index.name, k=k)
        return [(record["id"], record["score"]) for record in records]

    def stored_vectors(self, page_size: int = 5000) -> Iterator[tuple[np.ndarray, list]]:
        """Every vector the property holds, in id order, a page at a time: (float32 matrix,
        rows of STORED_COLUMNS). One page in memory at a time, whatever the graph's size."""
        prop = self._need_vector_property()
        page: list = []
        for row in self._keyset_pages("vector_row", f"p.{prop} IS NOT NULL", page_size):
            page.append(row)
            if len(page) == page_size:
                yield _vector_page(page)
                page = []
        if page:
            yield _vector_page(page)

    def stored_rejections(self, page_size: int = 5000) -> Iterator[list]:
        """(id, reason, sequence_sha256, model, residues) of every protein this property's
        model rejected, in id order."""
        prop = self._need_vector_property()
        yield from self._keyset_pages("rejection_row", f"p.{prop}_rejected IS NOT NULL", page_size)

    def vector(self, protein_id: str) -> np.ndarray:
        """The protein's vector (PyEED's get_embedding); a UserError says why there is none:
        no such protein, rejected (with the reason), not embedded yet, or several nodes
        sharing the id with different vectors."""
        self._need_vector_property()
        records = self._read("stored_for_id", id=protein_id)
        where = f"{self.label} {protein_id!r}"
        if not records:
            raise UserError(f"no {where} in the graph (graph.id_property {self.id_property})")
        vectors = [np.asarray(r["vector"], np.float32) for r in records if r["vector"] is not None]
        if not vectors:
            reasons = [r["rejected"] for r in records if r["rejected"] is not None]
            if reasons:
                raise UserError(f"{where} has no vector: the model rejected it ({reasons[0]})")
            raise UserError(f"{where} has no {self.vector_property} yet; run the workflow")
        if any(not np.array_equal(v, vectors[0]) for v in vectors[1:]):
            raise UserError(
                f"{len(vectors)} nodes share {where} and hold different vectors (their "
                "sequences differ); read them all with read_embeddings"
            )
        return vectors[0]

    def nearest_to(self, vector, k: int = 10) -> list[tuple[str, float]]:
        """The k proteins nearest to any query vector of the property's width, by the
        vector index, best first."""
        index = self._index_or_error()
        query = np.asarray(vector, dtype=np.float64).ravel()
        if index.dimension is not None and len(query) != index.dimension:
            raise UserError(
                f"the query vector has {len(query)} values; {self.label}.{self.vector_property} "
                f"holds {index.dimension}"
            )
        if self.server.has_search_clause:
            cypher = self._query("nearest_search", index=identifier(index.name, "index"))
        else:
            cypher = self._query("nearest_procedure")
        records, _, _ = self._execute(cypher, read=True, vector=query, index=index.name, k=k)
        return [(record["id"], record["score"]) for record in records]

    def _index_or_error(self) -> "VectorIndex":
        index = self.vector_index()
        if index is None:
            raise UserError(
                f"no vector index on {self.label}.{self.vector_property}; run the workflow"
            )
        return index

    def vector_status(self, protein_id: str) -> VectorStatus:
        """How the nodes with this id stand with the model's vector: how many there are,
        hold a sequence, hold a vector; the reasons they were rejected for, if any."""
        self._need_vector_property()
        return VectorStatus(**self._read("vector_status", id=protein_id)[0])

    def count_with_vector(self) -> int:
        self._need_vector_property()
        return self._read("count_with_vector")[0]["n"]

    def property_values(self, name: str, ids: list[str], batch_size: int = 10000) -> dict:
        """{id: the node's `name` property} for the proteins with these ids (None where a
        node lacks it; ids no node has are left out)."""
        query = self._query("property_values", property=identifier(name, "report.color_by"))
        values = {}
        for start in range(0, len(ids), batch_size):
            records, _, _ = self._execute(query, read=True, ids=ids[start : start + batch_size])
            values.update((record["id"], record["value"]) for record in records)
        return values


def _vector_page(rows: list) -> tuple[np.ndarray, list]:
    matrix = np.array([row[1] for row in rows], dtype=np.float32)
    return matrix, [[row[0], *row[2:]] for row in rows]
