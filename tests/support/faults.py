"""Break a workflow run on purpose: start `snakemake` as a user would, wait for a marker in a
log file or in the graph, then kill a job, interrupt snakemake, or stop the database.

Every helper waits with a deadline and fails with a message naming what it waited for, so
a fault that never happened fails the test instead of passing it by accident.
"""

import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import neo4j
from workflow_runner import REPO, SNAKEMAKE


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class Run:
    """One `snakemake` run in its own process group (as a terminal's foreground job is, so
    that an interrupt reaches snakemake and its jobs alike, like Ctrl-C)."""

    def __init__(self, directory: Path, *args: str, env: dict):
        self.directory = Path(directory)
        self.out = self.directory / f"snakemake-{time.monotonic_ns()}.out"
        self.err = self.out.with_suffix(".err")
        command = [
            str(SNAKEMAKE),
            "--snakefile",
            str(REPO / "workflow" / "Snakefile"),
            "--directory",
            str(self.directory),
            "--cores",
            "2",
            *args,
        ]
        self.started = time.monotonic()
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=err,
                env={**os.environ, **env},
                start_new_session=True,
                preexec_fn=_default_interrupt,
            )

    def running(self) -> bool:
        return self.process.poll() is None

    def finish(self, timeout: float = 300) -> Outcome:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"snakemake did not finish within {timeout} s") from None
        return Outcome(
            self.process.returncode,
            self.out.read_text(),
            self.err.read_text(),
            time.monotonic() - self.started,
        )

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to snakemake and every job it started."""
        os.killpg(self.process.pid, signal.SIGINT)

    def job_pid(self, script: str, timeout: float = 120) -> int:
        """The process of the job running `script` (e.g. "embed.py"), once there is one."""
        found = wait_for(
            lambda: next(iter(_descendants_running(self.process.pid, script)), None),
            f"a job running {script}",
            timeout,
            while_running=self,
        )
        return found

    def kill_job(self, script: str) -> int:
        pid = self.job_pid(script)
        os.kill(pid, signal.SIGKILL)
        return pid

    def descendants(self) -> list[int]:
        return _descendants_running(self.process.pid, "")


def _default_interrupt() -> None:
    """SIGINT as a terminal gives it. An ignored or blocked SIGINT is inherited across exec
    (a suite started in the background runs with it ignored; a library may block it in the
    test's thread), and snakemake would then never see Ctrl-C: twice in full suite runs
    here it ran to the end through the interrupt, with no 'Terminating' line."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(directory: Path, *args: str, env: dict, timeout: float = 300) -> Outcome:
    return Run(directory, *args, env=env).finish(timeout)


def _descendants_running(root: int, needle: str) -> list[int]:
    children: dict[int, list[int]] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
            commands[int(entry.name)] = command.replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # a zombie has finished already
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        if needle in commands.get(pid, ""):
            found.append(pid)
    return sorted(found)


def wait_for(probe: Callable, what: str, timeout: float = 120, while_running: Run | None = None):
    """probe()'s first truthy value; fails after `timeout` s or once the run has ended."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if while_running is not None and not while_running.running():
            outcome = while_running.finish()
            raise AssertionError(
                f"the run ended (status {outcome.returncode}) before {what}:\n"
                f"{outcome.stderr[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what} in vain")
        time.sleep(0.05)


def wait_for_text(path: Path, text: str, run: Run, timeout: float = 120) -> None:
    wait_for(
        lambda: path.is_file() and text in path.read_text(errors="replace"),
        f"{text!r} in {path}",
        timeout,
        while_running=run,
    )


@contextmanager
def write_lock(driver: neo4j.Driver, query: str, **parameters):
    """Hold the locks a write takes, in a transaction left open (and finally rolled back):
    the run's transactions that touch the same nodes, label or index wait for it."""
    session = driver.session()
    transaction = session.begin_transaction()
    try:
        transaction.run(query, **parameters).consume()
        yield
    finally:
        try:
            transaction.rollback()
            session.close()
        except (neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError):
            pass  # the server went away, and the transaction with it


def transactions(driver: neo4j.Driver, query_part: str, blocked: bool = False) -> list[str]:
    """Statuses of the transactions running a query that holds `query_part` (SHOW
    TRANSACTIONS, Community too); only those waiting for a lock with `blocked`."""
    records, _, _ = driver.execute_query(
        "SHOW TRANSACTIONS YIELD status, currentQuery "
        "WHERE currentQuery CONTAINS $part AND NOT currentQuery STARTS WITH 'SHOW' "
        "RETURN status",
        part=query_part,
    )
    statuses = [r["status"] for r in records]
    return [s for s in statuses if s.startswith("Blocked")] if blocked else statuses


def crash(server) -> None:
    """SIGKILL the Neo4j server: no checkpoint, the next start recovers from its logs."""
    os.kill(server.pid, signal.SIGKILL)
    server.stop()


def restart(server, data_dir: Path) -> float:
    """Start the server again on the same store and port; returns the seconds it took."""
    port = int(server.uri.rsplit(":", 1)[1])
    started = time.monotonic()
    server.start(data_dir, password=server.password, port=port)
    return time.monotonic() - started


def files_holding(directory: Path, secret: str) -> list[Path]:
    """Every file under `directory` (results, logs, .snakemake metadata, captured output)
    whose bytes contain `secret`; asserts there were files to look at."""
    files = [path for path in Path(directory).rglob("*") if path.is_file()]
    assert files, f"nothing was written under {directory}"
    needle = secret.encode()
    return [path for path in files if needle in path.read_bytes()]


def process_with_open(run: Run, path: Path, timeout: float = 120) -> int:
    """The job process that holds `path` open (a job's log: which shard it embeds)."""
    target = str(Path(path).resolve())

    def probe():
        for pid in run.descendants():
            try:
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(fd) == target:
                        return pid
                except OSError:
                    continue
        return None

    return wait_for(probe, f"a job holding {path} open", timeout, while_running=run)


def process_group_alive(pgid: int) -> list[int]:
    """Processes still in the process group `pgid` (zombies excluded)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry.name))
    return alive
