"""A throwaway Neo4j server that the project starts itself, for the demo and the tests.

The server is embedded Neo4j Community with a Bolt connector on 127.0.0.1, built with
Maven (no Docker) from the launcher's sources shipped in this package (in a checkout,
tools/neo4j-launcher), in either line users run: 5.26 LTS (Java 17 or 21) or the newest
calendar release (Java 21+)::

    with LocalNeo4j(LATEST).start(tmp_path / "neo4j", password="a-long-secret") as neo:
        driver = neo4j.GraphDatabase.driver(neo.uri, auth=(neo.user, neo.password))
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Self

from .paths import LAUNCHER_SOURCES, cache_dir

JAR_NAME = "neo4j-launcher.jar"

# The two lines users run: the LTS, and the newest calendar release on Maven Central.
LTS = "5.26.30"
LATEST = "2026.08.1"
VERSIONS = (LTS, LATEST)


def java_majors(version: str) -> range:
    """The Java feature releases a Neo4j version runs on: 17 and 21 for 5.x, 21 on later."""
    return range(17, 22) if version.startswith("5.") else range(21, 100)


def build_launcher(version: str = LTS) -> Path:
    """Build the launcher jar for one Neo4j version into the user's cache (the sources may
    sit in a read-only site-packages), unless the jar there was built from the same pom and
    Java sources; return its path."""
    pom = LAUNCHER_SOURCES / "pom.xml"
    build_root = cache_dir() / "neo4j-launcher"
    target = build_root / version
    jar = target / JAR_NAME
    # A digest, not mtimes: a checkout and a wheel install may share one cache.
    built_from = target / "sources.sha256"
    digest = _sources_digest()
    if jar.is_file() and built_from.is_file() and built_from.read_text() == digest:
        return jar
    if shutil.which("mvn") is None:
        raise RuntimeError(
            f"`mvn` is not on PATH; the local Neo4j server needs Maven and a JDK to build {pom}"
        )
    build_root.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-Dstyle.color=never",
            "--file",
            str(pom),
            f"-Dlauncher.build.root={build_root}",
            f"-Dneo4j.version={version}",
            f"-Dmaven.compiler.release={java_majors(version).start}",
            "package",
        ],
        cwd=build_root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "JAVA_HOME": str(find_java_home(version))},
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"`mvn package` for Neo4j {version} failed ({pom}):\n{tail}")
    built_from.write_text(digest)
    return jar


def _sources_digest() -> str:
    digest = hashlib.sha256()
    sources = [LAUNCHER_SOURCES / "pom.xml", *sorted((LAUNCHER_SOURCES / "src").rglob("*.java"))]
    for path in sources:
        digest.update(path.relative_to(LAUNCHER_SOURCES).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def find_java_home(version: str) -> Path:
    """A JDK that Neo4j `version` runs on: JAVA_HOME, the `java` on PATH, or one under
    /usr/lib/jvm, in that order of preference."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    if shutil.which("java"):
        candidates.append(Path(shutil.which("java")).resolve().parents[1])
    candidates += sorted(Path("/usr/lib/jvm").glob("*"))
    wanted, found = java_majors(version), []
    for home in candidates:
        major = _java_major(home)
        if major is None:
            continue
        if major in wanted and (home / "bin" / "javac").is_file():
            return home
        found.append(f"{home} (Java {major})")
    needs = (
        f"Java {wanted.start} to {wanted.stop - 1}"
        if wanted.stop < 100
        else (f"Java {wanted.start} or newer")
    )
    raise RuntimeError(
        f"Neo4j {version} needs a JDK of {needs}; found {', '.join(found) or 'no JDK'}. "
        "Install one (e.g. Eclipse Temurin, or Debian's openjdk-NN-jdk-headless) or point "
        "JAVA_HOME at it"
    )


def _java_major(home: Path) -> int | None:
    """The feature release of the JDK at `home`, from its `release` file."""
    release = home / "release"
    if not (home / "bin" / "java").is_file() or not release.is_file():
        return None
    for line in release.read_text().splitlines():
        if line.startswith("JAVA_VERSION="):
            number = line.partition("=")[2].strip('"').split(".")[0]
            return int(number) if number.isdigit() else None
    return None


class LocalNeo4j:
    """One Neo4j server process; ``start`` it, use ``uri``/``user``/``password``, ``stop`` it."""

    user = "neo4j"
    database = "neo4j"

    def __init__(
        self,
        version: str = LTS,
        heap: str = "1g",
        page_cache_mib: int = 256,
        ready_timeout: float = 180.0,
        stop_timeout: float = 60.0,
    ) -> None:
        self.version = version
        self.heap = heap
        self.page_cache_mib = page_cache_mib
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.uri: str | None = None
        self.password: str | None = None
        self.pid: int | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(
        self, data_dir: Path, password: str, port: int | None = None, tls_dir: Path | None = None
    ) -> Self:
        """Start a server keeping its files in ``data_dir``; return once Bolt accepts logins.

        With ``port=None`` the kernel picks a free loopback port (the launcher binds port 0 and
        reports the real one), so parallel runs cannot race for the same port. ``tls_dir``
        (holding ``private.key`` and ``public.crt``) makes Bolt accept TLS only: connect with
        ``bolt+ssc://`` to a self-signed certificate, ``bolt+s://`` to a trusted one.
        """
        if self._proc is not None:
            raise RuntimeError(f"this server is already running (pid {self.pid})")
        if len(password) < 8:
            # Neo4j's own rule (dbms.security.auth_minimum_password_length); fail before the JVM.
            raise ValueError("a Neo4j password must be at least 8 characters")
        jar = build_launcher(self.version)
        data_dir = Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "neo4j-launcher.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        log_start = self._log.tell()
        command = [
            str(find_java_home(self.version) / "bin" / "java"),
            f"-Xmx{self.heap}",
            # C1 only: starts Neo4j in about 60 % of the time; tests and the demo are tiny loads.
            "-XX:TieredStopAtLevel=1",
            f"-Dprotembed.pagecache.mib={self.page_cache_mib}",
            "-Dprotembed.exitOnStdinEof=true",
            *([f"-Dprotembed.bolt.tls.dir={Path(tls_dir).resolve()}"] if tls_dir else []),
            "-jar",
            str(jar),
            str(data_dir),
            str(port or 0),
        ]
        # The password travels in the environment, never in argv where `ps` would show it.
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,  # held open; its end tells the server we are gone
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NEO4J_PASSWORD": password},
        )
        self.pid = self._proc.pid
        self.password = password
        try:
            self.uri = self._wait_ready(log_start)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, log_start: int) -> str:
        assert self._proc is not None and self.log_path is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            with open(self.log_path, "rb") as log:
                log.seek(log_start)
                for line in log.read().decode(errors="replace").splitlines():
                    if line.startswith("READY "):
                        return line.removeprefix("READY ").strip()
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"Neo4j exited with status {self._proc.returncode} before it was ready; "
                    f"end of {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Neo4j was not ready after {self.ready_timeout:.0f} s; "
                    f"end of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's stdout/stderr (its own debug log is under data_dir/logs)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-chars:].decode(errors="replace")

    def stop(self) -> None:
        """SIGTERM (the server checkpoints and shuts down), then SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def env(self) -> dict[str, str]:
        """The connection settings as environment variables, for subprocesses."""
        if self.uri is None or self.password is None:
            raise RuntimeError("the server has not been started")
        return {
            "NEO4J_URI": self.uri,
            "NEO4J_USERNAME": self.user,
            "NEO4J_PASSWORD": self.password,
            "NEO4J_DATABASE": self.database,
        }

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
