"""Where the graph is and what serves it: the connection (from the environment only, so
secrets stay out of files), the checked driver, and the server's version."""

import os
import urllib.parse
from dataclasses import dataclass, field

import neo4j
from neo4j.exceptions import AuthError, ClientError, ServiceUnavailable

from ..errors import UserError
from .queries import QUERIES

# A server that does not answer a new connection within this is reported as unreachable.
CONNECT_TIMEOUT_S = 5


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


def rust_extension_loaded() -> bool:
    """Whether the driver packs and unpacks Bolt messages with neo4j-rust-ext."""
    from neo4j._codec.packstream import v1  # private, but the one place the driver says so

    return getattr(v1, "_rust_pack", None) is not None
