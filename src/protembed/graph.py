"""The one place that talks to Neo4j: `ProteinGraph`, the proteins of one label in one
database and, when a model is named, that model's vectors on them.

Labels and property names cannot be query parameters: they are checked once, against a
plain-identifier pattern, and spliced into the named query templates below, which are
whole Cypher statements so that a reader sees each query as the server gets it.

Users' graphs are not ours: an index or constraint on the id may exist under any name
(PyEED's neomodel schema makes `constraint_unique_Protein_accession_id`), ids may repeat
or be missing, and the server may be 5.26 LTS or a calendar release. Schema is found by
what it covers, never by the name we would have given it; a vector is written only to a
node that still holds the sequence it was made from.
"""

import difflib
import logging
import os
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import neo4j
import numpy as np
from neo4j.exceptions import AuthError, ClientError, ServiceUnavailable

from .config import GraphSettings, ModelSettings, VectorIndexSettings
from .errors import UserError
from .names import MAX_INDEX_DIMENSIONS, identifier

log = logging.getLogger(__name__)

# A server that does not answer a new connection within this is reported as unreachable.
CONNECT_TIMEOUT_S = 5


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
    "batching",
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
        parts = urllib.parse.urlsplit(uri)
        if parts.username is not None or parts.password is not None:
            # Snakemake and our logs print the URI; credentials in it would be printed too.
            host = parts.hostname or "HOST"
            raise UserError(
                f"NEO4J_URI holds credentials (user:password@); give only "
                f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''} there and "
                "the user and password in NEO4J_USERNAME and NEO4J_PASSWORD"
            )
        return cls(
            uri=uri,
            user=os.environ.get("NEO4J_USERNAME", "neo4j"),
            password=os.environ.get("NEO4J_PASSWORD", ""),
            database=os.environ.get("NEO4J_DATABASE") or None,
        )


def connect(connection: Connection) -> neo4j.Driver:
    """A driver whose server, credentials and database have been checked, or a UserError."""
    auth = (connection.user, connection.password) if connection.password else None
    try:
        driver = neo4j.GraphDatabase.driver(
            connection.uri,
            auth=auth,
            connection_timeout=CONNECT_TIMEOUT_S,
            # "property key does not exist" on every first run: noise, not news.
            notifications_disabled_classifications=["UNRECOGNIZED"],
        )
    except ValueError as error:
        raise UserError(
            f"NEO4J_URI {connection.uri!r} is not a valid Neo4j URI: {error}"
        ) from error
    try:
        # One query checks the server, the credentials and the database at once. An
        # auto-commit query, not execute_query: that one retries an unreachable server for
        # 30 s, which suits a blip in the middle of a run, not a server that is down.
        with driver.session(database=connection.database) as session:
            session.run(QUERIES["reachable"]).consume()
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
class Server:
    """What the server is, and so which Cypher it speaks best."""

    version: str
    edition: str

    @property
    def calendar_release(self) -> tuple[int, int] | None:
        """(year, month) of a calendar-versioned release (2025.01 on), else None (5.x)."""
        major, _, rest = self.version.partition(".")
        if not major.isdigit() or int(major) < 2025:
            return None
        return int(major), int(rest.partition(".")[0] or 0)

    @property
    def has_search_clause(self) -> bool:
        """Cypher 25's SEARCH clause (2026.01 on), which deprecates db.index.vector.queryNodes."""
        return (self.calendar_release or (0, 0)) >= (2026, 1)


@dataclass(frozen=True)
class ExportRow:
    id: str
    sequence: object  # str when the graph is sane; anything else is rejected
    stored_sha256: str | None  # hash of the sequence the stored vector or rejection is for
    settled: bool  # holds this model's vector, or the reason it was rejected
    node: str  # elementId: tells apart nodes that share an id


# What read-back returns of each stored vector besides the vector itself (the order of
# QUERIES["vector_row"]); residues: of the node's sequence now.
STORED_COLUMNS = ("id", "sequence_sha256", "long_sequence_handling", *RUN_PROVENANCE, "residues")


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
QUERIES = {
    "server": "CALL dbms.components() YIELD name, versions, edition "
    "WHERE name = 'Neo4j Kernel' RETURN versions[0] AS version, edition",
    "range_indexes": "SHOW INDEXES YIELD name, type, labelsOrTypes, properties, state "
    "WHERE type = 'RANGE' AND labelsOrTypes = [$label] AND properties = [$property] "
    "RETURN name, state",
    "vector_indexes": "SHOW VECTOR INDEXES YIELD name, labelsOrTypes, properties, options, state "
    "WHERE labelsOrTypes = [$label] AND properties = [$property] RETURN name, options, state",
    "create_id_index": "CREATE INDEX {index} IF NOT EXISTS FOR (p:{label}) ON (p.{id})",
    "await_index": "CALL db.awaitIndex($name, $timeout)",
    # Keyset pages in id order, served by the id's range index with the limit pushed down.
    "keyset_page": "MATCH (p:{label}) WHERE p.{id} > $after AND {where} "
    "WITH p ORDER BY p.{id} LIMIT $limit RETURN collect({row}) AS page",
    # All nodes holding one id: a run of equal ids may straddle a page's end.
    "keyset_id": "MATCH (p:{label}) WHERE p.{id} = $id AND {where} RETURN collect({row}) AS page",
    "export_row": "[p.{id}, p.{sequence}, p.{vector}_sequence_sha256, "
    "p.{vector} IS NOT NULL OR p.{vector}_rejected IS NOT NULL, elementId(p)]",
    # A stored vector and what the graph says of it (STORED_COLUMNS, in this order).
    "vector_row": "[p.{id}, p.{vector}, p.{vector}_sequence_sha256, "
    "p.{vector}_long_sequence_handling, p.{vector}_model, p.{vector}_model_revision, "
    "p.{vector}_embedding, p.{vector}_pooling, p.{vector}_dimension, p.{vector}_precision, "
    "p.{vector}_batching, toString(p.{vector}_created), p.{vector}_pipeline, "
    "size(p.{sequence})]",
    "rejection_row": "[p.{id}, p.{vector}_rejected, p.{vector}_sequence_sha256, "
    "p.{vector}_model, size(p.{sequence})]",
    # A label scan on purpose: on 5.26 the planner answers `NOT p.id IS :: STRING NOT NULL`
    # from the id's range index, which holds no node that lacks the id.
    "without_string_id": "MATCH (p:{label}) USING SCAN p:{label} "
    "WHERE p.{sequence} IS NOT NULL AND NOT p.{id} IS :: STRING NOT NULL "
    "RETURN elementId(p) AS node, p.{id} IS NULL AS missing",
    "reachable": "RETURN 1",
    "vector_type": "CYPHER 25 RETURN vector([1.0], 1, FLOAT32) AS v",
    "database_name": "CALL db.info() YIELD name",
    "store_format": "SHOW DATABASES YIELD name, store WHERE name = $name RETURN store",
    "has_label": "MATCH (p:{label}) RETURN 1 AS found LIMIT 1",
    "has_property": "MATCH (p:{label}) WHERE p.{property} IS NOT NULL RETURN 1 AS found LIMIT 1",
    # The property keys of a sample of the label's nodes: the names a typo was meant to be.
    "label_keys": "MATCH (p:{label}) WITH p LIMIT 1000 UNWIND keys(p) AS key "
    "RETURN collect(DISTINCT key) AS keys",
    "labels": "CALL db.labels() YIELD label RETURN collect(label) AS labels",
    "count_with_sequence": "MATCH (p:{label}) WHERE p.{sequence} IS NOT NULL RETURN count(p) AS n",
    "count_with_vector": "MATCH (p:{label}) WHERE p.{vector} IS NOT NULL RETURN count(p) AS n",
    "stored_space": "MATCH (p:{label}) "
    "WHERE p.{vector} IS NOT NULL OR p.{vector}_rejected IS NOT NULL "
    "RETURN p.{id} AS id, {{model: p.{vector}_model, model_revision: p.{vector}_model_revision, "
    "embedding: p.{vector}_embedding, dimension: p.{vector}_dimension}} AS space LIMIT 1",
    # Only nodes that still hold the row's sequence; a node whose vector was made from that
    # sequence already is left alone, so loading twice changes nothing.
    "write_vectors": "UNWIND range(0, size($ids) - 1) AS i "
    "MATCH (p:{label} {{{id}: $ids[i]}}) WHERE p.{sequence} = $sequences[i] "
    "CALL (p, i) {{ "
    "WITH p, i WHERE p.{vector} IS NULL OR p.{vector}_sequence_sha256 IS NULL "
    "OR p.{vector}_sequence_sha256 <> $sha256[i] "
    "{store} "
    "SET p += $provenance, p.{vector}_sequence_sha256 = $sha256[i], "
    "p.{vector}_long_sequence_handling = $handling[i], p.{vector}_rejected = null "
    "RETURN count(*) AS changed }} "
    "RETURN collect(DISTINCT i) AS found, sum(changed) AS written",
    "store_list": "CALL db.create.setNodeVectorProperty(p, $property, $vectors[i])",
    "store_native": "SET p.{vector} = vector($vectors[i], $dimension, FLOAT32)",
    "write_rejections": "UNWIND range(0, size($rows) - 1) AS i WITH i, $rows[i] AS row "
    "MATCH (p:{label} {{{id}: row.id}}) WHERE p.{sequence} = row.sequence "
    "CALL (p, row) {{ "
    "WITH p, row WHERE p.{vector}_sequence_sha256 IS NULL "
    "OR p.{vector}_sequence_sha256 <> row.sha256 "
    "OR coalesce(p.{vector}_rejected, '') <> row.reason "
    "SET p += $who, p.{vector}_sequence_sha256 = row.sha256, p.{vector}_rejected = row.reason "
    "REMOVE {stale} "
    "RETURN count(*) AS changed }} "
    "RETURN collect(DISTINCT i) AS found, sum(changed) AS written",
    "create_vector_index": "CREATE VECTOR INDEX {index} IF NOT EXISTS FOR (p:{label}) "
    "ON p.{vector} OPTIONS {{indexConfig: {{`vector.dimensions`: $dimension, "
    "`vector.similarity_function`: $similarity, `vector.hnsw.m`: $hnsw_m, "
    "`vector.hnsw.ef_construction`: $hnsw_ef_construction, "
    "`vector.quantization.enabled`: $quantization}}}}",
    "neighbours_search": "MATCH (q:{label} {{{id}: $id}}) WHERE q.{vector} IS NOT NULL "
    "MATCH (node:{label}) SEARCH node IN (VECTOR INDEX {index} FOR q.{vector} LIMIT $k + 1) "
    "SCORE AS score WITH node, score WHERE node <> q "
    "RETURN node.{id} AS id, score ORDER BY score DESC LIMIT $k",
    "neighbours_procedure": "MATCH (q:{label} {{{id}: $id}}) WHERE q.{vector} IS NOT NULL "
    "CALL db.index.vector.queryNodes($index, $k + 1, q.{vector}) "
    "YIELD node, score WITH node, score WHERE node <> q "
    "RETURN node.{id} AS id, score ORDER BY score DESC LIMIT $k",
    "nearest_search": "MATCH (node:{label}) "
    "SEARCH node IN (VECTOR INDEX {index} FOR $vector LIMIT $k) SCORE AS score "
    "RETURN node.{id} AS id, score ORDER BY score DESC",
    "nearest_procedure": "CALL db.index.vector.queryNodes($index, $k, $vector) "
    "YIELD node, score RETURN node.{id} AS id, score ORDER BY score DESC",
    "stored_for_id": "MATCH (p:{label} {{{id}: $id}}) "
    "RETURN p.{vector} AS vector, p.{vector}_rejected AS rejected",
    # Why a protein has no vector: every node with the id (ids may repeat) says its part.
    "vector_status": "MATCH (p:{label} {{{id}: $id}}) "
    "RETURN count(p) AS nodes, count(p.{sequence}) AS with_sequence, "
    "count(p.{vector}) AS embedded, collect(DISTINCT p.{vector}_rejected) AS rejected",
    # {property} is a checked name too: the node property the report colours by.
    "property_values": "UNWIND $ids AS wanted MATCH (p:{label} {{{id}: wanted}}) "
    "RETURN p.{id} AS id, p.{property} AS value",
    "add_proteins": "UNWIND $rows AS row MERGE (p:{label} {{{id}: row.{id}}}) SET p += row",
}


class ProteinGraph:
    """The proteins of one label in one Neo4j database, and one model's vectors on them.

    >>> with ProteinGraph.connect(vector_property="embedding") as proteins:
    ...     proteins.nearest_neighbours("P12345", k=5)
    """

    def __init__(
        self,
        driver: neo4j.Driver,
        database: str | None = None,
        *,
        label: str = "Protein",
        id_property: str = "accession_id",
        sequence_property: str = "sequence",
        vector_property: str | None = None,
    ):
        self.driver = driver
        self.database = database
        self.label = identifier(label, "graph.label")
        self.id_property = identifier(id_property, "graph.id_property")
        self.sequence_property = identifier(sequence_property, "graph.sequence_property")
        self.vector_property = (
            identifier(vector_property, "model.property") if vector_property else None
        )
        records, _, _ = self._execute(QUERIES["server"])
        self.server = Server(records[0]["version"], records[0]["edition"])
        # On releases that have it, every query is Cypher 25: what the server deprecates
        # least, whatever language the user's database defaults to.
        self._cypher = "CYPHER 25 " if self.server.has_search_clause else ""

    @classmethod
    def connect(cls, connection: Connection | None = None, **names) -> "ProteinGraph":
        """Connect (to the environment's NEO4J_* settings unless given a Connection)."""
        connection = connection or Connection.from_env()
        driver = connect(connection)
        try:
            return cls(driver, connection.database, **names)
        except BaseException:
            driver.close()
            raise

    @classmethod
    def from_settings(
        cls,
        graph: GraphSettings,
        model: ModelSettings | None = None,
        connection: Connection | None = None,
    ) -> "ProteinGraph":
        """The graph the settings name, and the model's vector property, connected."""
        return cls.connect(
            connection,
            label=graph.label,
            id_property=graph.id_property,
            sequence_property=graph.sequence_property,
            vector_property=model.property if model else None,
        )

    def close(self) -> None:
        self.driver.close()

    def __enter__(self) -> "ProteinGraph":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- queries ----------------------------------------------------------------------

    def _query(self, name: str, cypher: str | None = None, **extra: str) -> str:
        """QUERIES[name] with our names, in Cypher `cypher` (default: the server's best)."""
        names = {
            "label": self.label,
            "id": self.id_property,
            "sequence": self.sequence_property,
            "vector": self.vector_property or "_no_vector_property_",
        }
        prefix = self._cypher if cypher is None else cypher
        return prefix + QUERIES[name].format(**names, **extra)

    def _execute(self, query: str, read: bool = False, **parameters):
        return self.driver.execute_query(
            query,
            parameters_=parameters,
            database_=self.database,
            routing_=neo4j.RoutingControl.READ if read else neo4j.RoutingControl.WRITE,
        )

    def _read(self, name: str, **parameters) -> list[neo4j.Record]:
        return self._execute(self._query(name), read=True, **parameters)[0]

    def _need_vector_property(self) -> str:
        if self.vector_property is None:
            raise ValueError("this ProteinGraph names no vector_property")
        return self.vector_property

    # -- names ------------------------------------------------------------------------

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

    # -- schema -----------------------------------------------------------------------

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

    # -- export -----------------------------------------------------------------------

    def export_rows(self, page_size: int) -> Iterator[ExportRow]:
        """Every protein with a string id and a sequence, in id order, one page at a time.

        Keyset pages (`id > last`, served in order by the id's range index) stay fast and
        correct while others write to the graph, unlike SKIP/LIMIT, and each page is its own
        short read transaction. Nodes may share an id: a full page's last id is read whole
        by an index seek, so no run of equal ids is cut at a page boundary. A page travels
        as one collected list: record by record, Bolt's per-record messages cost 4 to 10
        times more on both ends.
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

    # -- one property, one vector space -----------------------------------------------

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

    # -- load -------------------------------------------------------------------------

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

    # -- questions --------------------------------------------------------------------

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

    def add_proteins(self, proteins: list[dict], batch_size: int = 1000) -> None:
        """Create or update protein nodes from dicts holding the id and sequence properties."""
        query = self._query("add_proteins")
        for start in range(0, len(proteins), batch_size):
            self._execute(query, rows=proteins[start : start + batch_size])


def _nearest(what: str, name: str, names: list[str]) -> str:
    """`what`: the names, the most similar to `name` first."""
    if not names:
        return f"there are no {what}"
    ranked = sorted(
        names, key=lambda n: -difflib.SequenceMatcher(None, name.lower(), n.lower()).ratio()
    )
    shown = ", ".join(ranked[:8]) + (", ..." if len(ranked) > 8 else "")
    return f"{what}, nearest first: {shown}"


def _vector_page(rows: list) -> tuple[np.ndarray, list]:
    matrix = np.array([row[1] for row in rows], dtype=np.float32)
    return matrix, [[row[0], *row[2:]] for row in rows]


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


def rust_extension_loaded() -> bool:
    """Whether the driver packs and unpacks Bolt messages with neo4j-rust-ext."""
    from neo4j._codec.packstream import v1  # private, but the one place the driver says so

    return getattr(v1, "_rust_pack", None) is not None
