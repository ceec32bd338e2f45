"""A throwaway Neo4j server that the project starts itself, for tests and the demo.

The server is embedded Neo4j Community with a Bolt connector on 127.0.0.1, built from
``tools/neo4j-launcher`` with Maven (needs ``java`` 17+ and ``mvn``; no Docker)::

    with LocalNeo4j().start(tmp_path / "neo4j", password="a-long-secret") as neo:
        driver = neo4j.GraphDatabase.driver(neo.uri, auth=(neo.user, neo.password))
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Self

LAUNCHER_DIR = Path("tools") / "neo4j-launcher"
JAR_NAME = "neo4j-launcher.jar"
REPO_ROOT = Path(__file__).resolve().parents[2]


def build_launcher(repo_root: Path = REPO_ROOT) -> Path:
    """Build the launcher jar unless it is newer than the pom and Java sources; return its path."""
    project = Path(repo_root) / LAUNCHER_DIR
    jar = project / "target" / JAR_NAME
    sources = [project / "pom.xml", *sorted((project / "src").rglob("*.java"))]
    newest_source = max(path.stat().st_mtime for path in sources)
    built = jar.is_file() and (project / "target" / "lib").is_dir()
    if built and jar.stat().st_mtime > newest_source:
        return jar
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise RuntimeError(
                f"`{tool}` is not on PATH; the local Neo4j server needs a JDK (17+) and Maven "
                f"to build {project}"
            )
    result = subprocess.run(
        ["mvn", "-q", "-B", "-Dstyle.color=never", "package"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"`mvn package` failed in {project}:\n{tail}")
    # Maven leaves an unchanged jar alone; touch it so a touched pom does not rebuild each time.
    jar.touch()
    return jar


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("`java` (17+) is not on PATH; the local Neo4j server needs it")
    return java


class LocalNeo4j:
    """One Neo4j server process; ``start`` it, use ``uri``/``user``/``password``, ``stop`` it."""

    user = "neo4j"
    database = "neo4j"

    def __init__(
        self,
        repo_root: Path = REPO_ROOT,
        heap: str = "1g",
        page_cache_mib: int = 256,
        ready_timeout: float = 180.0,
        stop_timeout: float = 60.0,
    ) -> None:
        self.repo_root = Path(repo_root)
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
        jar = build_launcher(self.repo_root)
        data_dir = Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "neo4j-launcher.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        log_start = self._log.tell()
        command = [
            _java(),
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
