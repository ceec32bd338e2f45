"""A real single-node SLURM cluster (Debian slurm-wlm + munge, no systemd) for tests.

The cluster runs as root on this machine with fake GPUs, so the Snakemake SLURM executor can be
exercised end to end without a site cluster. Only one cluster can run per machine at a time: the
client tools inside jobs find it through the shared ``/etc/slurm/slurm.conf``.

Typical use::

    ensure_installed()
    with SlurmCluster().start(tmp_path / "slurm", gpus=2) as cluster:
        subprocess.run([...snakemake...], env=cluster.env(), timeout=300, check=True)
        records = cluster.job_records()
        assert max_concurrency(r for r in records if r.gpus) <= cluster.gpus
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

APT_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
# Daemons live in /usr/sbin, which is often not on a non-login PATH.
_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
_REQUIRED_TOOLS = ("slurmctld", "slurmd", "munged", "sbatch")
# Used by this module itself; they ship in the same packages, so a partial install shows here.
_CLIENT_TOOLS = ("munge", "sinfo", "squeue", "scontrol", "scancel")

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN_DIR = Path("/run/munge")
MUNGE_PID_FILE = MUNGE_RUN_DIR / "munged.pid"

# Jobs stay visible to `scontrol show job` this long after they end; there is no slurmdbd, so
# this is the only record a test can read back.
MIN_JOB_AGE_S = 600
_TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{_SBIN_PATH}")


def missing_tools() -> list[str]:
    """Names of the SLURM/munge executables that cannot be found."""
    return [name for name in (*_REQUIRED_TOOLS, *_CLIENT_TOOLS) if _which(name) is None]


def ensure_installed(timeout: float = 900) -> None:
    """Install slurm-wlm and munge with apt-get unless they are already present."""
    missing = missing_tools()
    if not missing:
        return
    packages = " ".join(APT_PACKAGES)
    if os.geteuid() != 0:
        raise RuntimeError(
            f"SLURM tools missing ({', '.join(missing)}) and not running as root; "
            f"install them with: apt-get install -y --no-install-recommends {packages}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "-q", *APT_PACKAGES]
    update = ["apt-get", "update", "-q"]
    log: list[str] = []

    def attempt(cmd: list[str]) -> bool:
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.append(f"$ {' '.join(cmd)}\n{exc}")
            return False
        log.append(f"$ {' '.join(cmd)} -> {proc.returncode}\n{_tail(proc.stdout + proc.stderr)}")
        return proc.returncode == 0

    # Fresh container images have no package lists at all, so update first there; elsewhere try
    # the install as is and update only if it fails (stale lists give 404s).
    lists = Path("/var/lib/apt/lists")
    have_lists = lists.is_dir() and any(lists.glob("*Packages*"))
    updated = False
    if not have_lists:
        updated = attempt(update)
    if not attempt(install) and not updated and attempt(update):
        attempt(install)
    still_missing = missing_tools()
    if still_missing:
        raise RuntimeError(
            f"SLURM tools still missing after apt-get: {', '.join(still_missing)} "
            f"(packages: {packages}).\n" + "\n".join(log)
        )


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _file_tail(path: Path, lines: int = 30) -> str:
    try:
        return _tail(path.read_text(errors="replace"), lines)
    except OSError as exc:
        return f"<unreadable: {exc}>"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process_alive(pid: int) -> bool:
    # Daemons are reparented away from us, so waitpid cannot tell us they are gone, and a
    # container's PID 1 may never reap them: a zombie counts as dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _terminate(pid: int, expected_name: str, grace: float = 10) -> None:
    """SIGTERM, wait, then SIGKILL one daemon, unless the PID now belongs to something else."""
    # Guards against a stale pid file whose PID was reused by an unrelated process.
    if not _process_alive(pid) or not _process_name(pid).startswith(expected_name[:15]):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _process_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _parse_time(value: str | None) -> datetime | None:
    # SLURM prints local time without a zone, or Unknown/None/N/A for unset times.
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# `scontrol show job -o` prints space-separated Key=Value pairs, but some values (Command,
# WorkDir, Comment) may contain spaces: split only where a space is followed by a new key.
_FIELD_SPLIT = re.compile(r"\s+(?=[A-Z][A-Za-z0-9_:/]*=)")


def parse_scontrol_line(line: str) -> dict[str, str]:
    """Parse one line of ``scontrol show job -o`` into a dict (first value wins)."""
    fields: dict[str, str] = {}
    for token in _FIELD_SPLIT.split(line.strip()):
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def _gpu_count_from_tres_per(value: str | None) -> int:
    """GPU count in a TresPer* value such as ``gres:gpu:1``, ``gres/gpu:a100:2`` or ``gpu:1``."""
    if not value or value == "(null)":
        return 0
    total = 0
    for item in value.split(","):
        parts = item.split(":")
        # 22.05 writes "gres:gpu:1", newer releases "gres/gpu:1", and the count may follow a
        # GPU type ("gres:gpu:a100:2").
        if parts[0] in ("gres", "gres/gpu"):
            parts = (["gpu"] if parts[0] == "gres/gpu" else []) + parts[1:]
        if not parts or parts[0] != "gpu":
            continue
        total += int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return total


def _gpu_count_from_tres(value: str | None) -> int:
    """GPU count in a TRES value such as ``cpu=1,mem=1G,node=1,gres/gpu=1``."""
    if not value:
        return 0
    untyped = typed = 0
    for item in value.split(","):
        key, _, count = item.partition("=")
        if key == "gres/gpu" and count.isdigit():
            untyped += int(count)
        elif key.startswith("gres/gpu:") and count.isdigit():
            typed += int(count)
    # A typed allocation is listed both with and without its type; the untyped sum is the total.
    return untyped or typed


def _as_int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """What the controller remembers about one job (kept MinJobAge seconds after it ends)."""

    job_id: int
    name: str
    state: str
    comment: str
    #: GPUs requested by the job, whichever of --gpus/--gres/--gpus-per-task asked for them.
    gpus: int
    cpus: int
    tres_per_job: str | None
    tres_per_node: str | None
    tres_per_task: str | None
    tres: str | None
    submit: datetime | None
    #: None while the job has not started.
    start: datetime | None
    #: None until the job has ended; SLURM's EndTime for a running job is only its time limit.
    end: datetime | None
    std_out: str | None
    raw: Mapping[str, str]

    @property
    def ran(self) -> bool:
        """Whether the job was ever started (a job cancelled while pending was not)."""
        if self.start is None:
            return False
        if self.end is None:
            return True
        # A job cancelled while pending gets StartTime == EndTime and never had a batch host.
        return self.end > self.start or _none_if_null(self.raw.get("BatchHost")) is not None

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> JobRecord:
        state = fields.get("JobState", "UNKNOWN")
        tres_per_job = _none_if_null(fields.get("TresPerJob"))
        tres_per_node = _none_if_null(fields.get("TresPerNode"))
        tres_per_task = _none_if_null(fields.get("TresPerTask"))
        tres = _none_if_null(fields.get("TRES") or fields.get("ReqTRES"))
        num_nodes = _as_int(fields.get("NumNodes", "1").split("-")[0], 1)
        num_tasks = _as_int(fields.get("NumTasks"), 1)
        gpus = (
            _gpu_count_from_tres_per(tres_per_job)
            or _gpu_count_from_tres_per(tres_per_node) * max(num_nodes, 1)
            or _gpu_count_from_tres_per(tres_per_task) * max(num_tasks, 1)
            or _gpu_count_from_tres(tres)
        )
        start = _parse_time(fields.get("StartTime"))
        end = _parse_time(fields.get("EndTime"))
        if state == "PENDING":
            # For a pending job StartTime is only the backfill scheduler's forecast.
            start = None
        if state not in _TERMINAL_STATES:
            end = None
        return cls(
            job_id=int(fields["JobId"]),
            name=fields.get("JobName", ""),
            state=state,
            comment=_none_if_null(fields.get("Comment")) or "",
            gpus=gpus,
            cpus=_as_int(fields.get("NumCPUs")),
            tres_per_job=tres_per_job,
            tres_per_node=tres_per_node,
            tres_per_task=tres_per_task,
            tres=tres,
            submit=_parse_time(fields.get("SubmitTime")),
            start=start,
            end=end,
            std_out=_none_if_null(fields.get("StdOut")),
            raw=dict(fields),
        )


def _none_if_null(value: str | None) -> str | None:
    return None if value in (None, "", "(null)", "N/A") else value


def max_concurrency(records: Iterable[JobRecord], now: datetime | None = None) -> int:
    """Most jobs that ran at the same time, from their start/end intervals.

    Times have one-second resolution, so intervals are half-open: a job that ends in the same
    second another starts does not count as overlapping it (SLURM cannot start the second
    before the first has released its resources, so this never hides a real overlap).
    Jobs still running count as running until ``now``.
    """
    events: list[tuple[datetime, int]] = []
    for record in records:
        if not record.ran or record.start is None:
            continue
        end = record.end or now or datetime.now()
        if end <= record.start:
            continue
        events.append((record.start, 1))
        events.append((end, -1))
    # Ends (-1) sort before starts (+1) at the same instant, which makes intervals half-open.
    running = peak = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    return peak


class SlurmCluster:
    """slurmctld + slurmd (+ munged if needed) on this machine, with ``gpus`` fake GPUs.

    Use as a context manager so the daemons are stopped even when a test fails; ``start``
    returns the cluster, so ``with SlurmCluster().start(path) as cluster:`` works.
    """

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self.conf_path: Path | None = None
        self.gres_conf_path: Path | None = None
        self.node: str = ""
        self.gpus: int = 0
        self.cpus: int = 0
        self.gpu_devices: list[Path] = []
        self._pid_files: dict[str, Path] = {}
        self._pids: dict[str, int] = {}
        self._started_munged_pid: int | None = None
        # What /etc/slurm/slurm.conf was before we pointed it at our config: ("absent",),
        # ("symlink", target) or ("file", backup path).
        self._system_conf_before: tuple[str, ...] | None = None
        self._created_etc_slurm = False
        self._running = False

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> SlurmCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- public API ------------------------------------------------------------------------

    @property
    def log_dir(self) -> Path:
        assert self.workdir is not None, "cluster not started"
        return self.workdir / "log"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment (``os.environ`` by default) whose SLURM clients reach this cluster."""
        assert self.conf_path is not None, "cluster not started"
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf_path)
        return env

    def start(
        self,
        workdir: Path,
        gpus: int = 2,
        cpus: int = 8,
        *,
        timeout: float = 60,
    ) -> SlurmCluster:
        """Write the config into ``workdir``, start the daemons and wait for an idle node.

        ``cpus`` may exceed the machine's cores (the node overrides its detected hardware);
        ``timeout`` bounds the wait for the node to become idle.
        """
        if self._running:
            raise RuntimeError("cluster already started")
        if os.geteuid() != 0:
            raise RuntimeError("SlurmCluster needs root (SlurmUser=root, mknod, munged, /etc)")
        missing = missing_tools()
        if missing:
            raise RuntimeError(f"SLURM tools missing: {', '.join(missing)}; ensure_installed()")
        self.workdir = Path(workdir).resolve()
        self.gpus = gpus
        self.cpus = cpus
        self.node = subprocess.run(
            ["hostname", "-s"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        self._running = True
        # Register before anything is spawned so an interpreter exit mid-test still cleans up.
        atexit.register(self.stop)
        try:
            self._write_config()
            self._start_munged()
            self._link_system_conf()
            self._start_daemons()
            self._wait_for_idle(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel leftover jobs, stop the daemons we started and restore /etc/slurm."""
        if not self._running:
            return
        self._running = False
        atexit.unregister(self.stop)
        try:
            if "slurmctld" in self._pids:
                self._cancel_all_jobs()
        finally:
            for name in ("slurmd", "slurmctld"):
                pid = self._pids.pop(name, None) or _read_pid(self._pid_files.get(name, Path()))
                if pid:
                    _terminate(pid, name)
            if self._started_munged_pid is not None:
                _terminate(self._started_munged_pid, "munged")
                self._started_munged_pid = None
            self._restore_system_conf()

    def run(self, *args: str, timeout: float = 30, check: bool = True) -> str:
        """Run a SLURM client command against this cluster and return its stdout."""
        proc = subprocess.run(
            list(args), env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout

    def job_records(self, job_ids: Iterable[int] | None = None) -> list[JobRecord]:
        """Jobs the controller still remembers (all by default), sorted by job id."""
        ids = [str(j) for j in job_ids] if job_ids is not None else []
        out = self.run("scontrol", "show", "job", "-o", *ids, check=not ids)
        records = [
            JobRecord.from_fields(parse_scontrol_line(line))
            for line in out.splitlines()
            if line.startswith("JobId=")
        ]
        return sorted(records, key=lambda r: r.job_id)

    def wait_for_jobs(self, timeout: float = 120) -> None:
        """Block until no job is pending, running or completing."""
        deadline = time.monotonic() + timeout
        while True:
            active = self.run("squeue", "-h", "-o", "%i %T").strip()
            if not active:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still active after {timeout}s:\n{active}")
            time.sleep(0.5)

    def log_tails(self, lines: int = 30) -> str:
        parts = []
        for name in ("slurmctld", "slurmd"):
            path = self.log_dir / f"{name}.log"
            parts.append(f"--- {path} (last {lines} lines) ---\n{_file_tail(path, lines)}")
        return "\n".join(parts)

    # -- internals -------------------------------------------------------------------------

    def _real_memory_mb(self) -> int:
        slurmd = _which("slurmd")
        out = subprocess.run(
            [str(slurmd), "-C"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        match = re.search(r"RealMemory=(\d+)", out)
        if not match:
            raise RuntimeError(f"no RealMemory in `slurmd -C` output:\n{out}")
        # Declaring all of it makes the node drain as "Low RealMemory" when the kernel's view
        # shrinks slightly; keep a margin.
        return max(int(match.group(1)) - 512, 256)

    def _write_config(self) -> None:
        assert self.workdir is not None
        wd = self.workdir
        for sub in ("state/ctld", "state/d", "run", "log"):
            (wd / sub).mkdir(parents=True, exist_ok=True)
        self.gpu_devices = []
        for index in range(self.gpus):
            dev = wd / "run" / f"fakegpu{index}"
            if not dev.exists():
                # /dev/null's device numbers: a harmless char device SLURM accepts as a GPU file
                # (it rejects GresTypes without files via AutoDetect, and CountOnly leaves the
                # node INVAL).
                subprocess.run(
                    ["mknod", "-m", "666", str(dev), "c", "1", "3"],
                    check=True,
                    capture_output=True,
                    timeout=10,
                )
            self.gpu_devices.append(dev)

        ctld_port, slurmd_port = _free_port(), _free_port()
        while slurmd_port == ctld_port:
            slurmd_port = _free_port()
        self._pid_files = {
            "slurmctld": wd / "run" / "slurmctld.pid",
            "slurmd": wd / "run" / "slurmd.pid",
        }
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        lines = [
            "ClusterName=ci",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            # Fresh ports rather than 6817/6818, so a daemon leaked by a crashed earlier run
            # cannot answer for this cluster.
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "MpiDefault=none",
            f"StateSaveLocation={wd}/state/ctld",
            f"SlurmdSpoolDir={wd}/state/d",
            f"SlurmctldPidFile={self._pid_files['slurmctld']}",
            f"SlurmdPidFile={self._pid_files['slurmd']}",
            f"SlurmctldLogFile={wd}/log/slurmctld.log",
            f"SlurmdLogFile={wd}/log/slurmd.log",
            # No systemd and no cgroup delegation in containers: track and run tasks plainly.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            # A finished job's TRES then lists only cpu/node/billing, never its GPUs: tracking
            # gres/gpu (AccountingStorageTRES) needs slurmdbd, so read TresPer* instead.
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/backfill",
            # bf_min_prio_reserve above any priority stops backfill from reserving the node for
            # pending GPU jobs, which otherwise kept CPU-only jobs waiting behind them.
            "SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=5,"
            "bf_min_prio_reserve=4294967295",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            # Lets the node declare more CPUs than the machine has (tests want parallel slots).
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            f"MinJobAge={MIN_JOB_AGE_S}",
            "KillWait=5",
            "GresTypes=gpu",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self._real_memory_mb()}{gres} State=UNKNOWN",
            "PartitionName=main Nodes=ALL Default=YES DefaultTime=60 MaxTime=INFINITE State=UP",
        ]
        self.conf_path = wd / "slurm.conf"
        self.conf_path.write_text("\n".join(lines) + "\n")
        # slurmd reads gres.conf from the directory of the slurm.conf it was started with.
        self.gres_conf_path = wd / "gres.conf"
        gres_lines = ["AutoDetect=off"]
        gres_lines += [f"NodeName={self.node} Name=gpu File={dev}" for dev in self.gpu_devices]
        self.gres_conf_path.write_text("\n".join(gres_lines) + "\n")

    def _munge_works(self) -> bool:
        munge = _which("munge")
        try:
            proc = subprocess.run([str(munge), "-n"], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0

    def _start_munged(self) -> None:
        if self._munge_works():
            return
        MUNGE_RUN_DIR.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_RUN_DIR, "munge", "munge")
        if not MUNGE_KEY.exists():
            # The Debian postinst creates the key; recreate it if an image build removed it.
            subprocess.run(
                ["runuser", "-u", "munge", "--", str(_which("mungekey")), "--create"],
                check=True,
                capture_output=True,
                timeout=30,
            )
        # munged refuses to run as root without --force; run it as its packaged user.
        proc = subprocess.run(
            ["runuser", "-u", "munge", "--", str(_which("munged"))],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"munged failed to start: {proc.stdout}{proc.stderr}")
        deadline = time.monotonic() + 10
        while not self._munge_works():
            if time.monotonic() > deadline:
                raise RuntimeError("munged started but `munge -n` still fails")
            time.sleep(0.1)
        self._started_munged_pid = _read_pid(MUNGE_PID_FILE)

    def _link_system_conf(self) -> None:
        # The SLURM jobstep plugin strips every SLURM_* variable (SLURM_CONF too) before its
        # inner srun, so tools inside jobs only find this cluster through the default path.
        assert self.conf_path is not None
        if not SYSTEM_CONF.parent.exists():
            SYSTEM_CONF.parent.mkdir(parents=True)
            self._created_etc_slurm = True
        if SYSTEM_CONF.is_symlink():
            self._system_conf_before = ("symlink", os.readlink(SYSTEM_CONF))
            SYSTEM_CONF.unlink()
        elif SYSTEM_CONF.exists():
            backup = SYSTEM_CONF.with_name(f"slurm.conf.before-tests.{os.getpid()}")
            SYSTEM_CONF.rename(backup)
            self._system_conf_before = ("file", str(backup))
        else:
            self._system_conf_before = ("absent",)
        SYSTEM_CONF.symlink_to(self.conf_path)

    def _restore_system_conf(self) -> None:
        before = self._system_conf_before
        if before is None:
            return
        self._system_conf_before = None
        # Only undo our own link; if something else replaced it meanwhile, leave that alone.
        if SYSTEM_CONF.is_symlink() and Path(os.readlink(SYSTEM_CONF)) == self.conf_path:
            SYSTEM_CONF.unlink()
        if before[0] == "symlink" and not SYSTEM_CONF.exists() and not SYSTEM_CONF.is_symlink():
            SYSTEM_CONF.symlink_to(before[1])
        elif before[0] == "file" and not SYSTEM_CONF.exists():
            Path(before[1]).rename(SYSTEM_CONF)
        if self._created_etc_slurm:
            with contextlib.suppress(OSError):
                SYSTEM_CONF.parent.rmdir()
            self._created_etc_slurm = False

    def _start_daemons(self) -> None:
        assert self.conf_path is not None
        env = self.env()
        for name in ("slurmctld", "slurmd"):
            # -c on slurmctld: a reused workdir must not resurrect an earlier run's jobs.
            cmd = [str(_which(name)), "-f", str(self.conf_path)]
            if name == "slurmctld":
                cmd.append("-c")
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=60, check=False
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"{name} failed to start ({proc.returncode}): {proc.stdout}{proc.stderr}\n"
                    + self.log_tails()
                )
            # Both daemonise; the pid file is the only handle we get for stopping them.
            pid_file = self._pid_files[name]
            deadline = time.monotonic() + 15
            pid = _read_pid(pid_file)
            log = self.log_dir / f"{name}.log"
            while pid is None or not _process_alive(pid):
                # The launcher exits 0 once it has forked, so a config error only shows as a
                # "fatal:" line in the log; stop waiting as soon as one appears.
                if time.monotonic() > deadline or "fatal:" in _file_tail(log, 5):
                    raise RuntimeError(
                        f"{name} did not stay up (pid file {pid_file})\n" + self.log_tails()
                    )
                time.sleep(0.1)
                pid = _read_pid(pid_file)
            self._pids[name] = pid

    def _wait_for_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            proc = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%T"],
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            state = (proc.stdout + proc.stderr).strip()
            if proc.returncode == 0 and state == "idle":
                return
            # INVAL comes from a node/config mismatch (e.g. GPU count) and never clears by
            # itself, so waiting out the timeout would only delay the same error.
            if proc.returncode == 0 and state.startswith("inval"):
                reason = self.run("sinfo", "-h", "-N", "-o", "%E", check=False).strip()
                raise RuntimeError(
                    f"SLURM node is INVAL: {reason}\n{self.conf_path}:\n"
                    f"{self.conf_path.read_text()}\n" + self.log_tails()
                )
            for name, pid in self._pids.items():
                if not _process_alive(pid):
                    raise RuntimeError(f"{name} (pid {pid}) died during start\n" + self.log_tails())
            time.sleep(0.25)
        raise RuntimeError(
            f"SLURM node not idle after {timeout}s (sinfo says {state!r})\n" + self.log_tails()
        )

    def _cancel_all_jobs(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired, RuntimeError):
            ids = self.run("squeue", "-h", "-o", "%A").split()
            if ids:
                self.run("scancel", *ids, check=False)
                # Let slurmd kill the job processes; killing it first would orphan them.
                self.wait_for_jobs(timeout=20)
