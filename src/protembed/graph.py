"""The one place that talks to Neo4j: connection, export, load, vector index, neighbours.

Labels and property names cannot be query parameters, so every one of them is checked
against a plain-identifier pattern before it is spliced into Cypher.
"""

import logging
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import neo4j
import numpy as np
from neo4j.exceptions import AuthError, ClientError, ServiceUnavailable

from .errors import UserError
from .names import identifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Connection:
    """Where the graph is. Built from the environment only, so secrets stay out of files."""

    uri: str
    user: str
    password: str = field(repr=False)
    database: str | None

    @classmethod
    def from_env(cls) -> "Connection":
        uri = os.environ.get("NEO4J_URI")
        if not uri:
            raise UserError(
                "NEO4J_URI is not set; export NEO4J_URI=bolt://HOST:7687 (and NEO4J_USERNAME, "
                "NEO4J_PASSWORD, optionally NEO4J_DATABASE) before running snakemake"
            )
        return cls(
            uri=uri,
            user=os.environ.get("NEO4J_USERNAME", "neo4j"),
            password=os.environ.get("NEO4J_PASSWORD", ""),
            database=os.environ.get("NEO4J_DATABASE") or None,
        )


@dataclass(frozen=True)
class ProteinGraph:
    """Names of the protein label and properties, checked once."""

    label: str
    id_property: str
    sequence_property: str

    @classmethod
    def from_config(cls, config: dict) -> "ProteinGraph":
        g = config["graph"]
        return cls(g["label"], g["id_property"], g["sequence_property"])

    def __post_init__(self):
        identifier(self.label, "graph.label")
        identifier(self.id_property, "graph.id_property")
        identifier(self.sequence_property, "graph.sequence_property")


# Provenance stored beside each vector as <property>_<suffix>: these are the same for
# every vector of a run (from the embeddings' Parquet metadata); sequence_sha256 and
# long_sequence_handling are per protein; a rejection leaves only the hash and the reason.
RUN_PROVENANCE = (
    "model",
    "model_revision",
    "embedding",
    "pooling",
    "dimension",
    "precision",
    "created",
    "pipeline",
)


# What makes two vectors comparable: the same weights, embedding kind and size. One
# property (and its index) holds one such space; precision and time may vary within it,
# and so may the pooling statement's wording from one protembed release to the next.
SPACE_PROVENANCE = ("model_revision", "embedding", "dimension")
# A rejection says which model's rules rejected the protein, so that it guards the
# property too (a property may hold nothing but rejections).
REJECTION_PROVENANCE = ("model", "model_revision", "embedding")


def provenance_property(vector_property: str, suffix: str) -> str:
    return identifier(f"{vector_property}_{suffix}", "provenance property")


def connect(connection: Connection) -> neo4j.Driver:
    """A driver whose server, credentials and database have been checked, or a UserError."""
    auth = (connection.user, connection.password) if connection.password else None
    try:
        driver = neo4j.GraphDatabase.driver(
            connection.uri,
            auth=auth,
            # "property key does not exist" on every first run: noise, not news.
            notifications_disabled_classifications=["UNRECOGNIZED"],
        )
    except ValueError as error:
        raise UserError(
            f"NEO4J_URI {connection.uri!r} is not a valid Neo4j URI: {error}"
        ) from error
    try:
        # One query checks the server, the credentials and the database at once.
        driver.execute_query("RETURN 1", database_=connection.database)
    except AuthError as error:
        driver.close()
        raise UserError(
            f"Neo4j at {connection.uri} refused the credentials of user {connection.user!r}; "
            "check NEO4J_USERNAME and NEO4J_PASSWORD"
        ) from error
    except ServiceUnavailable as error:
        driver.close()
        if "SSLCertVerificationError" in str(error):
            raise UserError(
                f"Neo4j at {connection.uri} presented a TLS certificate that could not be "
                "verified; for a self-signed certificate use bolt+ssc:// or neo4j+ssc://, "
                "else add its CA to the system's trust store"
            ) from error
        raise UserError(
            f"cannot reach Neo4j at {connection.uri}: is the server running and NEO4J_URI right?"
        ) from error
    except ClientError as error:
        driver.close()
        if error.code == "Neo.ClientError.Database.DatabaseNotFound":
            raise UserError(
                f"database {connection.database!r} does not exist on {connection.uri}; set "
                "NEO4J_DATABASE to an existing database (or unset it for the default)"
            ) from error
        raise UserError(f"Neo4j at {connection.uri} answered: {error.message}") from error
    return driver


@dataclass(frozen=True)
class ExportRow:
    id: str
    sequence: object  # str when the graph is sane; anything else is rejected
    stored_sha256: str | None  # hash of the sequence the stored vector or rejection is for
    settled: bool  # holds this model's vector, or the reason it was rejected


def ensure_id_index(
    driver: neo4j.Driver, database: str | None, graph: ProteinGraph, timeout_s: float = 600
) -> None:
    """A range index on the id property makes keyset export pages and load lookups fast.

    Never a uniqueness constraint: the user's data may hold duplicate ids.
    """
    name = identifier(f"protembed_{graph.label}_{graph.id_property}", "index name")
    try:
        driver.execute_query(
            f"CREATE INDEX {name} IF NOT EXISTS FOR (p:{graph.label}) ON (p.{graph.id_property})",
            database_=database,
        )
    except ClientError as error:
        # An equivalent index or constraint of the user's already serves the lookups.
        log.info(
            "kept the existing index on %s.%s: %s", graph.label, graph.id_property, error.message
        )
        return
    # A new index on a large graph populates in the background; pages scan without it.
    driver.execute_query(
        "CALL db.awaitIndex($name, $timeout)", name=name, timeout=timeout_s, database_=database
    )


def export_rows(
    driver: neo4j.Driver,
    database: str | None,
    graph: ProteinGraph,
    vector_property: str,
    page_size: int,
) -> Iterator[ExportRow]:
    """Every protein with a string id and a sequence, in id order, one page at a time.

    Keyset pages (`id > last`, served in order by the id's range index) stay fast and
    correct while others write to the graph, unlike SKIP/LIMIT, and each page is its own
    short read transaction. A page travels as one collected list: record by record, Bolt's
    per-record messages cost 4 to 10 times more on both ends.
    """
    p, pid, seq = graph.label, graph.id_property, graph.sequence_property
    sha = provenance_property(identifier(vector_property, "model.property"), "sequence_sha256")
    rejected = provenance_property(vector_property, "rejected")
    query = (
        f"MATCH (p:{p}) WHERE p.{pid} > $after AND p.{seq} IS NOT NULL "
        f"WITH p ORDER BY p.{pid} LIMIT $limit "
        f"RETURN collect([p.{pid}, p.{seq}, p.{sha}, "
        f"p.{vector_property} IS NOT NULL OR p.{rejected} IS NOT NULL]) AS page"
    )
    after = ""
    while True:
        records, _, _ = driver.execute_query(
            query,
            after=after,
            limit=page_size,
            database_=database,
            routing_=neo4j.RoutingControl.READ,
        )
        page = records[0]["page"]
        for row in page:
            yield ExportRow(*row)
        if len(page) < page_size:
            return
        after = page[-1][0]


def unaddressable_proteins(
    driver: neo4j.Driver, database: str | None, graph: ProteinGraph
) -> list[str]:
    """Element ids of proteins with a sequence but no string id: they cannot be written back."""
    p, pid, seq = graph.label, graph.id_property, graph.sequence_property
    records, _, _ = driver.execute_query(
        f"MATCH (p:{p}) WHERE p.{seq} IS NOT NULL AND NOT p.{pid} IS :: STRING NOT NULL "
        "RETURN elementId(p) AS element_id",
        database_=database,
        routing_=neo4j.RoutingControl.READ,
    )
    return [record["element_id"] for record in records]


def stores_native_vectors(driver: neo4j.Driver, database: str | None) -> bool:
    """Whether the database can store Cypher 25 VECTOR values: Neo4j 2025.10+ with a
    block-format store (Enterprise, Aura). Elsewhere vectors are float32 lists."""
    try:
        driver.execute_query(
            "CYPHER 25 RETURN vector([1.0], 1, FLOAT32) AS v",
            database_=database,
            routing_=neo4j.RoutingControl.READ,
        )
    except ClientError:
        return False  # before 2025.10 the version, the function or the type is unknown
    records, _, _ = driver.execute_query(
        "CALL db.info() YIELD name", database_=database, routing_=neo4j.RoutingControl.READ
    )
    stores, _, _ = driver.execute_query(
        "SHOW DATABASES YIELD name, store WHERE name = $name RETURN store",
        name=records[0]["name"],
        database_=database,
        routing_=neo4j.RoutingControl.READ,
    )
    return bool(stores) and str(stores[0]["store"]).startswith("block")


def rust_extension_loaded() -> bool:
    """Whether the driver packs and unpacks Bolt messages with neo4j-rust-ext."""
    from neo4j._codec.packstream import v1  # private, but the one place the driver says so

    return getattr(v1, "_rust_pack", None) is not None


@dataclass(frozen=True)
class VectorBatch:
    """Vectors for one write transaction, column by column."""

    ids: list[str]
    sequence_sha256: list[str]
    long_sequence_handling: list[str]
    vectors: np.ndarray  # (rows, dimension) float32


def _vector_query(graph: ProteinGraph, vector_property: str, native: bool) -> str:
    """A node whose stored vector was made from the same sequence is left alone, so loading
    the same dataset twice changes nothing (and a retried transaction is harmless)."""
    p, pid = graph.label, graph.id_property
    prop = identifier(vector_property, "model.property")
    sha = provenance_property(prop, "sequence_sha256")
    handling = provenance_property(prop, "long_sequence_handling")
    rejected = provenance_property(prop, "rejected")
    store = (
        f"SET p.{prop} = vector($vectors[i], $dimension, FLOAT32) "
        if native
        else "CALL db.create.setNodeVectorProperty(p, $property, $vectors[i]) "
    )
    return (
        ("CYPHER 25 " if native else "")
        + f"UNWIND range(0, size($ids) - 1) AS i MATCH (p:{p} {{{pid}: $ids[i]}}) "
        f"WHERE p.{prop} IS NULL OR p.{sha} IS NULL OR p.{sha} <> $sha256[i] "
        + store
        + f"SET p += $provenance, p.{sha} = $sha256[i], p.{handling} = $handling[i], "
        f"p.{rejected} = null "
        "RETURN count(p) AS written"
    )


def write_vectors(
    driver: neo4j.Driver,
    database: str | None,
    graph: ProteinGraph,
    vector_property: str,
    batches: Iterable[VectorBatch],
    provenance: dict,
    *,
    writers: int = 1,
    native: bool = False,
) -> int:
    """Store float32 vectors with their provenance, one transaction per batch, `writers`
    transactions at a time (batches hold disjoint ids); returns how many nodes changed.

    `provenance` maps RUN_PROVENANCE names to the values every vector of this run shares.
    execute_query retries transient errors (deadlocks, leader switches) itself.
    """
    query = _vector_query(graph, vector_property, native)
    properties = {provenance_property(vector_property, k): v for k, v in provenance.items()}

    def write(batch: VectorBatch) -> int:
        # One float64 matrix, not lists: the driver formats every RUN's parameters with
        # repr() even when debug logging is off, and a numpy array's repr is abbreviated.
        records, _, _ = driver.execute_query(
            query,
            ids=batch.ids,
            sha256=batch.sequence_sha256,
            handling=batch.long_sequence_handling,
            vectors=np.asarray(batch.vectors, dtype=np.float64),
            dimension=batch.vectors.shape[1],
            property=vector_property,
            provenance=properties,
            database_=database,
        )
        return records[0]["written"]

    if writers == 1:
        return sum(map(write, batches))
    written = 0
    with ThreadPoolExecutor(writers) as pool:
        pending: set[Future] = set()
        for batch in batches:
            # Read no further ahead than the writers can take: memory stays bounded.
            if len(pending) > writers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                written += sum(future.result() for future in done)
            pending.add(pool.submit(write, batch))
        written += sum(future.result() for future in pending)
    return written


def stored_space(
    driver: neo4j.Driver, database: str | None, graph: ProteinGraph, vector_property: str
) -> tuple[str, dict] | None:
    """One stored vector's or rejection's protein id and its model and SPACE_PROVENANCE
    (None where a rejection has none), or None when the property holds neither. Every load
    passes check_same_space, so one stands for all."""
    prop = identifier(vector_property, "model.property")
    rejected = provenance_property(prop, "rejected")
    fields = ", ".join(
        f"{k}: p.{provenance_property(prop, k)}" for k in ("model", *SPACE_PROVENANCE)
    )
    records, _, _ = driver.execute_query(
        f"MATCH (p:{graph.label}) WHERE p.{prop} IS NOT NULL OR p.{rejected} IS NOT NULL "
        f"RETURN p.{graph.id_property} AS id, {{{fields}}} AS space LIMIT 1",
        database_=database,
        routing_=neo4j.RoutingControl.READ,
    )
    return (records[0]["id"], records[0]["space"]) if records else None


def check_same_space(
    driver: neo4j.Driver,
    database: str | None,
    graph: ProteinGraph,
    vector_property: str,
    provenance: dict,
    keys: Iterable[str] = SPACE_PROVENANCE,
) -> None:
    """Refuse vectors that would not be comparable with those the property holds."""
    stored = stored_space(driver, database, graph, vector_property)
    if stored is None:
        return
    protein_id, space = stored
    differs = [k for k in keys if space[k] is not None and space[k] != provenance[k]]
    if differs:
        details = "; ".join(f"{k} {space[k]!r} there, {provenance[k]!r} now" for k in differs)
        raise UserError(
            f"{graph.label}.{vector_property} already holds vectors that this run's would not "
            f"be comparable with (e.g. {protein_id}: {details}); nothing was written. Set "
            "model.property to a new name, or remove the old vectors first"
        )


def write_rejections(
    driver: neo4j.Driver,
    database: str | None,
    graph: ProteinGraph,
    vector_property: str,
    rows: list[dict],
    provenance: dict,
) -> int:
    """Record on each node why this model gave it no vector (and which model: the
    REJECTION_PROVENANCE of `provenance`), so the next run skips it until its sequence
    changes, and drop a vector made from an earlier sequence. Returns how many nodes changed."""
    p, pid = graph.label, graph.id_property
    prop = identifier(vector_property, "model.property")
    sha = provenance_property(prop, "sequence_sha256")
    rejected = provenance_property(prop, "rejected")
    stale = ", ".join(
        [f"p.{prop}"]
        + [
            f"p.{provenance_property(prop, k)}"
            for k in (*RUN_PROVENANCE, "long_sequence_handling")
            if k not in REJECTION_PROVENANCE
        ]
    )
    records, _, _ = driver.execute_query(
        f"UNWIND $rows AS row MATCH (p:{p} {{{pid}: row.id}}) "
        f"WHERE p.{sha} IS NULL OR p.{sha} <> row.sha256 "
        f"OR coalesce(p.{rejected}, '') <> row.reason "
        f"SET p += $who, p.{sha} = row.sha256, p.{rejected} = row.reason REMOVE {stale} "
        "RETURN count(p) AS written",
        rows=rows,
        who={provenance_property(prop, k): provenance[k] for k in REJECTION_PROVENANCE},
        database_=database,
    )
    return records[0]["written"]


def vector_index_name(graph: ProteinGraph, vector_property: str) -> str:
    return identifier(f"{graph.label}_{vector_property}", "vector index name")


def ensure_vector_index(
    driver: neo4j.Driver,
    database: str | None,
    graph: ProteinGraph,
    vector_property: str,
    dimension: int,
    timeout_s: float,
) -> str:
    """Create (if missing) the cosine vector index on the property and wait until ONLINE."""
    existing = _vector_index_on(driver, database, graph, vector_property)
    if existing is None:
        name = vector_index_name(graph, vector_property)
        driver.execute_query(
            f"CREATE VECTOR INDEX {name} IF NOT EXISTS FOR (p:{graph.label}) "
            f"ON p.{vector_property} OPTIONS {{indexConfig: {{"
            "`vector.dimensions`: $dimension, `vector.similarity_function`: 'cosine'}}",
            dimension=dimension,
            database_=database,
        )
    else:
        name, existing_dimension = existing
        if existing_dimension not in (None, dimension):
            raise UserError(
                f"vector index {name} on {graph.label}.{vector_property} has "
                f"{existing_dimension} dimensions but the model makes {dimension}; drop the "
                "index or choose another model.property"
            )
    deadline = time.monotonic() + timeout_s
    while True:
        records, _, _ = driver.execute_query(
            "SHOW VECTOR INDEXES YIELD name, state, populationPercent "
            "WHERE name = $name RETURN state, populationPercent",
            name=name,
            database_=database,
            routing_=neo4j.RoutingControl.READ,
        )
        state = records[0]["state"] if records else "MISSING"
        if state == "ONLINE":
            return name
        if state == "FAILED" or time.monotonic() > deadline:
            raise UserError(f"vector index {name} is {state}, not ONLINE, after {timeout_s} s")
        time.sleep(0.2)


def _vector_index_on(
    driver: neo4j.Driver, database: str | None, graph: ProteinGraph, vector_property: str
) -> tuple[str, int | None] | None:
    records, _, _ = driver.execute_query(
        "SHOW VECTOR INDEXES YIELD name, labelsOrTypes, properties, options "
        "WHERE labelsOrTypes = [$label] AND properties = [$property] "
        "RETURN name, options",
        label=graph.label,
        property=vector_property,
        database_=database,
        routing_=neo4j.RoutingControl.READ,
    )
    if not records:
        return None
    config = (records[0]["options"] or {}).get("indexConfig", {})
    return records[0]["name"], config.get("vector.dimensions")


def nearest_neighbours(
    driver: neo4j.Driver,
    database: str | None,
    graph: ProteinGraph,
    vector_property: str,
    protein_id: str,
    k: int = 10,
) -> list[tuple[str, float]]:
    """The k proteins most similar to `protein_id` by the model's vector index, best first."""
    existing = _vector_index_on(driver, database, graph, identifier(vector_property, "property"))
    if existing is None:
        raise UserError(f"no vector index on {graph.label}.{vector_property}; run the workflow")
    p, pid = graph.label, graph.id_property
    records, _, _ = driver.execute_query(
        f"MATCH (q:{p} {{{pid}: $id}}) WHERE q.{vector_property} IS NOT NULL "
        "CALL db.index.vector.queryNodes($index, $k + 1, q." + vector_property + ") "
        "YIELD node, score WHERE node <> q "
        f"RETURN node.{pid} AS id, score ORDER BY score DESC LIMIT $k",
        id=protein_id,
        index=existing[0],
        k=k,
        database_=database,
        routing_=neo4j.RoutingControl.READ,
    )
    return [(record["id"], record["score"]) for record in records]


def count_with_vector(
    driver: neo4j.Driver, database: str | None, graph: ProteinGraph, vector_property: str
) -> int:
    records, _, _ = driver.execute_query(
        f"MATCH (p:{graph.label}) WHERE p.{identifier(vector_property, 'property')} IS NOT NULL "
        "RETURN count(p) AS n",
        database_=database,
        routing_=neo4j.RoutingControl.READ,
    )
    return records[0]["n"]


def add_proteins(
    driver: neo4j.Driver,
    database: str | None,
    graph: ProteinGraph,
    proteins: list[dict],
    batch_size: int = 1000,
) -> None:
    """Create or update protein nodes from dicts holding the id and sequence properties."""
    query = (
        f"UNWIND $rows AS row MERGE (p:{graph.label} {{{graph.id_property}: "
        f"row.{graph.id_property}}}) SET p += row"
    )
    for start in range(0, len(proteins), batch_size):
        driver.execute_query(query, rows=proteins[start : start + batch_size], database_=database)
