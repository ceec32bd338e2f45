"""Writing the graph: vectors and rejections, each only to the nodes that still hold the
sequence it was made from, several transactions in flight over disjoint proteins."""

from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import neo4j
import numpy as np
from neo4j.exceptions import ClientError

from .queries import QUERIES, REJECTION_PROVENANCE, RUN_PROVENANCE
from .records import VectorBatch, WriteResult
from .session import GraphSession


class GraphWrites(GraphSession):
    """Vectors and rejections written where their sequence still is."""

    def stores_native_vectors(self) -> bool:
        """Whether the database can store Cypher 25 VECTOR values: Neo4j 2025.10+ with a
        block-format store (Enterprise, Aura). Elsewhere vectors are float32 lists."""
        try:
            self._execute(QUERIES["vector_type"], read=True)
        except ClientError:
            return False  # before 2025.10 the version, the function or the type is unknown
        records, _, _ = self._execute(QUERIES["database_name"], read=True)
        stores, _, _ = self._execute(QUERIES["store_format"], read=True, name=records[0]["name"])
        return bool(stores) and str(stores[0]["store"]).startswith("block")

    def write_vectors(
        self,
        batches: Iterable[VectorBatch],
        provenance: dict,
        *,
        writers: int = 1,
        native: bool = False,
    ) -> WriteResult:
        """Store float32 vectors with their provenance, one transaction per batch, `writers`
        transactions at a time (batches hold disjoint ids).

        `provenance` maps RUN_PROVENANCE names to the values every vector of this run
        shares. execute_query retries transient errors (deadlocks, leader switches) itself.
        """
        prop = self._need_vector_property()
        store = self._query("store_native" if native else "store_list", cypher="")
        # The VECTOR type is Cypher 25's.
        query = self._query("write_vectors", "CYPHER 25 " if native else None, store=store)
        properties = {f"{prop}_{k}": v for k, v in provenance.items()}

        def write(batch: VectorBatch) -> WriteResult:
            # One float64 matrix, not lists: the driver formats every RUN's parameters with
            # repr() even when debug logging is off, and a numpy array's repr is abbreviated.
            records, _, _ = self._execute(
                query,
                ids=batch.ids,
                sequences=batch.sequences,
                sha256=batch.sequence_sha256,
                handling=batch.long_sequence_handling,
                vectors=np.asarray(batch.vectors, dtype=np.float64),
                dimension=batch.vectors.shape[1],
                property=prop,
                provenance=properties,
            )
            return _result(records[0], batch.ids)

        return WriteResult.total(_in_parallel(write, batches, writers))

    def write_rejections(self, rows: list[dict], provenance: dict) -> WriteResult:
        """Record on each node that still holds the row's sequence why this model gave it
        no vector (and which model: the REJECTION_PROVENANCE of `provenance`), so the next
        run skips it until its sequence changes, and drop a vector made from an earlier
        sequence. Rows: dicts of id, sequence, sha256 and reason."""
        prop = self._need_vector_property()
        stale = ", ".join(
            [f"p.{prop}"]
            + [
                f"p.{prop}_{k}"
                for k in (*RUN_PROVENANCE, "long_sequence_handling")
                if k not in REJECTION_PROVENANCE
            ]
        )
        records, _, _ = self._execute(
            self._query("write_rejections", stale=stale),
            rows=rows,
            who={f"{prop}_{k}": provenance[k] for k in REJECTION_PROVENANCE},
        )
        return _result(records[0], [row["id"] for row in rows])


def _result(record: neo4j.Record, ids: list[str]) -> WriteResult:
    found = set(record["found"])
    return WriteResult(
        record["written"] or 0, [protein for i, protein in enumerate(ids) if i not in found]
    )


def _in_parallel(write, batches: Iterable, writers: int) -> Iterator:
    """write(batch) for each batch, `writers` at a time, reading no further ahead than the
    writers can take, so that memory stays bounded."""
    if writers == 1:
        yield from map(write, batches)
        return
    with ThreadPoolExecutor(writers) as pool:
        pending: set[Future] = set()
        for batch in batches:
            if len(pending) > writers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
            pending.add(pool.submit(write, batch))
        yield from (future.result() for future in pending)


def add_proteins(graph: GraphSession, proteins: list[dict], batch_size: int = 1000) -> None:
    """Create or update protein nodes from dicts holding the id and sequence properties
    (MERGE on the id): how the demo and the tests fill a graph."""
    query = graph._query("add_proteins")
    for start in range(0, len(proteins), batch_size):
        graph._execute(query, rows=proteins[start : start + batch_size])
