"""One GPU per embedding job on a multi-GPU machine, chosen before CUDA starts.

No Snakemake version gives a local job a GPU of its own (snakemake#281). The workstation
profile caps how many embed jobs run at once (`--resources gpu=N`) and each job leases a
free device here: a non-blocking `flock` on one lock file per GPU, then
`CUDA_VISIBLE_DEVICES` set to that device. CUDA reads that variable once, when it starts,
so the lease must come before torch touches CUDA (scripts/embed.py leases before it
imports torch). The kernel drops the lock when the process ends, however it ends.

A single device already named in `CUDA_VISIBLE_DEVICES` (what SLURM's `--gpus=1` gives a
job, or a device you chose) is kept as it is. Without a GPU nothing happens.
"""

import errno
import fcntl
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path

from .errors import UserError

log = logging.getLogger(__name__)


def installed_gpus() -> list[str]:
    """Indices of the machine's NVIDIA GPUs, without starting CUDA (empty when none)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def default_lock_dir(environ: MutableMapping[str, str]) -> Path:
    # Inside a SLURM allocation device indices are renumbered per job, so two jobs on one
    # node may both call their GPU "0": their locks must not meet.
    base = Path(tempfile.gettempdir()) / "protembed-gpu-locks"
    job = environ.get("SLURM_JOB_ID")
    return base / f"slurm-job-{job}" if job else base


class GpuLease:
    """The device this process may use (None: no GPU) and the lock that holds it."""

    def __init__(self, device: str | None, lock_fd: int | None = None):
        self.device = device
        self._lock_fd = lock_fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "GpuLease":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def lease_gpu(
    device: str = "auto",
    *,
    environ: MutableMapping[str, str] = os.environ,
    installed: Callable[[], list[str]] = installed_gpus,
    lock_dir: Path | None = None,
    wait_s: float = 600,
    poll_s: float = 2,
) -> GpuLease:
    """Lease one GPU for this process and point `CUDA_VISIBLE_DEVICES` at it.

    `device` is the config's model.device: only `auto` and `cuda` lease; `cpu` or a
    device you named (`cuda:1`) is left to you. When every candidate GPU is held by
    another job, wait up to `wait_s` seconds for one, then fail with a UserError.
    """
    if device not in ("auto", "cuda"):
        log.info("model.device is %r: no GPU lease", device)
        return GpuLease(None)
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    listed = [d.strip() for d in visible.split(",") if d.strip()] if visible is not None else None
    if listed is not None and len(listed) <= 1:
        log.info("CUDA_VISIBLE_DEVICES=%r was set for this job (by SLURM or you): kept", visible)
        return GpuLease(listed[0] if listed else None)
    candidates = listed if listed is not None else installed()
    if not candidates:
        log.info("no GPU found: the job runs on the CPU")
        return GpuLease(None)
    if listed is None:
        # nvidia-smi numbers GPUs by PCI bus; make CUDA use the same numbers.
        environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")

    directory = lock_dir or default_lock_dir(environ)
    _make_shared_dir(directory)
    deadline = time.monotonic() + wait_s
    while True:
        for candidate in candidates:
            fd = _try_lock(directory / f"gpu-{candidate}.lock")
            if fd is not None:
                environ["CUDA_VISIBLE_DEVICES"] = candidate
                log.info("leased GPU %s of %s (lock in %s)", candidate, candidates, directory)
                return GpuLease(candidate, fd)
        if time.monotonic() >= deadline:
            raise UserError(
                f"all GPUs {','.join(candidates)} are leased by other protembed jobs "
                f"(locks in {directory}) after waiting {wait_s:.0f} s; lower the gpu "
                "resource (--resources gpu=N) to the GPUs this run may use"
            )
        time.sleep(poll_s)


def _make_shared_dir(directory: Path) -> None:
    # Sticky and world-writable like /tmp: every user's jobs on this machine share the locks.
    missing = [part for part in (directory, *directory.parents) if not part.exists()]
    for part in reversed(missing):
        try:
            part.mkdir()
        except FileExistsError:  # another job made it a moment ago
            continue
        part.chmod(0o1777)


def _try_lock(path: Path) -> int | None:
    # Read-only is enough for flock, and lets another user's job lock a file we created.
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd
