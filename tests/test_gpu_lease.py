"""GPU leases with fake device lists and real flock on lock files, across real processes."""

import subprocess
import sys
import threading

import pytest

from protembed.errors import UserError
from protembed.gpu_lease import default_lock_dir, lease_gpu

# A job that leases one of the fake GPUs given on its command line, says which, and holds
# the lease until its stdin is closed.
JOB = """
import sys
from pathlib import Path
from protembed.errors import UserError
from protembed.gpu_lease import lease_gpu

environ = {}
try:
    lease = lease_gpu(environ=environ, installed=lambda: sys.argv[2].split(","),
                      lock_dir=Path(sys.argv[1]), wait_s=0)
except UserError as error:
    print("refused:", error, flush=True)
    sys.exit(3)
print(lease.device, environ["CUDA_VISIBLE_DEVICES"], flush=True)
sys.stdin.read()
"""


def start_job(lock_dir, gpus: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", JOB, str(lock_dir), gpus],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def leased_device(job: subprocess.Popen) -> str:
    device, visible = job.stdout.readline().split()
    assert device == visible
    return device


def end(job: subprocess.Popen) -> None:
    job.stdin.close()
    job.wait(timeout=60)


def never_installed():
    raise AssertionError("nvidia-smi must not be consulted here")


def test_two_jobs_never_get_the_same_gpu_and_a_third_is_refused(tmp_path):
    first, second = start_job(tmp_path, "0,1"), start_job(tmp_path, "0,1")
    try:
        assert {leased_device(first), leased_device(second)} == {"0", "1"}
        with pytest.raises(UserError, match="all GPUs 0,1 are leased"):
            lease_gpu(environ={}, installed=lambda: ["0", "1"], lock_dir=tmp_path, wait_s=0)
    finally:
        end(first)
        end(second)


def test_racing_jobs_split_the_gpus_and_the_surplus_job_is_refused(tmp_path):
    jobs = [start_job(tmp_path, "0,1") for _ in range(3)]
    try:
        lines = [job.stdout.readline().split() for job in jobs]
        leased = sorted(line[0] for line in lines if line[0] != "refused:")
        assert leased == ["0", "1"]
        assert sum(line[0] == "refused:" for line in lines) == 1
    finally:
        for job in jobs:
            end(job)


def test_a_killed_job_releases_its_gpu(tmp_path):
    job = start_job(tmp_path, "0")
    assert leased_device(job) == "0"
    with pytest.raises(UserError):
        lease_gpu(environ={}, installed=lambda: ["0"], lock_dir=tmp_path, wait_s=0)
    job.kill()
    job.wait(timeout=60)
    environ = {}
    with lease_gpu(environ=environ, installed=lambda: ["0"], lock_dir=tmp_path, wait_s=0) as lease:
        assert lease.device == "0" and environ["CUDA_VISIBLE_DEVICES"] == "0"
    # Released on leaving the block: the next job gets it at once.
    lease_gpu(environ={}, installed=lambda: ["0"], lock_dir=tmp_path, wait_s=0).release()


def test_a_job_waits_for_a_gpu_to_come_free(tmp_path):
    holder = start_job(tmp_path, "0")
    assert leased_device(holder) == "0"
    result = {}

    def wait_for_gpu():
        lease = lease_gpu(
            environ={}, installed=lambda: ["0"], lock_dir=tmp_path, wait_s=120, poll_s=0.05
        )
        result["device"] = lease.device
        lease.release()

    waiter = threading.Thread(target=wait_for_gpu)
    waiter.start()
    end(holder)
    waiter.join(timeout=120)
    assert result == {"device": "0"}


def test_a_device_set_by_slurm_is_kept(tmp_path):
    environ = {"CUDA_VISIBLE_DEVICES": "1", "SLURM_JOB_ID": "42"}
    lease = lease_gpu(environ=environ, installed=never_installed, lock_dir=tmp_path)
    assert lease.device == "1"
    assert environ == {"CUDA_VISIBLE_DEVICES": "1", "SLURM_JOB_ID": "42"}
    assert list(tmp_path.iterdir()) == []
    # Several jobs on one SLURM node may all see their GPU as "0": their locks are apart.
    assert default_lock_dir(environ).name == "slurm-job-42"


def test_devices_you_listed_are_shared_out_one_per_job(tmp_path):
    first_env, second_env = {"CUDA_VISIBLE_DEVICES": "2,3"}, {"CUDA_VISIBLE_DEVICES": "2,3"}
    first = lease_gpu(environ=first_env, installed=never_installed, lock_dir=tmp_path)
    second = lease_gpu(environ=second_env, installed=never_installed, lock_dir=tmp_path)
    assert (first_env["CUDA_VISIBLE_DEVICES"], second_env["CUDA_VISIBLE_DEVICES"]) == ("2", "3")
    # Your indices keep the meaning they had for you.
    assert "CUDA_DEVICE_ORDER" not in first_env
    first.release()
    second.release()


def test_installed_gpus_are_numbered_like_nvidia_smi(tmp_path):
    environ = {}
    lease = lease_gpu(environ=environ, installed=lambda: ["0", "1"], lock_dir=tmp_path)
    assert environ == {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    lease.release()


@pytest.mark.parametrize(
    "device, installed", [("auto", []), ("cpu", ["0", "1"]), ("cuda:1", ["0", "1"])]
)
def test_nothing_is_leased_without_a_gpu_or_when_the_device_is_chosen(tmp_path, device, installed):
    environ = {}
    lease = lease_gpu(device, environ=environ, installed=lambda: installed, lock_dir=tmp_path)
    assert lease.device is None and environ == {}
    assert list(tmp_path.iterdir()) == []
