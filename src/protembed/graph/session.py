"""A connected graph and the names it is read by: the base every part of ProteinGraph
shares (the driver, the checked label and property names, the query helpers)."""

import neo4j

from ..config import GraphSettings, ModelSettings
from ..names import identifier
from .connection import Connection, Server, connect
from .queries import QUERIES


class GraphSession:
    """The proteins of one label in one Neo4j database, and one model's vector property."""

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
    def connect(cls, connection: Connection | None = None, **names) -> "GraphSession":
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
    ) -> "GraphSession":
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

    def __enter__(self) -> "GraphSession":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

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
