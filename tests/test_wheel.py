"""The demo from a wheel: built from this working tree, installed with the workflow extra
into an empty virtual environment and run from a directory outside the checkout, with a
cache of its own (so the Neo4j launcher is built from the sources in the wheel)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).with_name("uv")


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, check=False, **kwargs
    )
    assert done.returncode == 0, f"{command[:3]} failed:\n{(done.stdout + done.stderr)[-6000:]}"
    return done


def run_demo(python: Path, work: Path, env: dict) -> str:
    """The demo's output; on a timeout its whole process group (Snakemake, the jobs, Neo4j)
    is ended, not only the demo's own process."""
    demo = subprocess.Popen(
        [python, "-m", "protembed.demo"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = demo.communicate(timeout=2100)
    except subprocess.TimeoutExpired:
        os.killpg(demo.pid, signal.SIGKILL)
        output, _ = demo.communicate()
        pytest.fail(f"the demo ran past 35 minutes:\n{output[-6000:]}")
    assert demo.returncode == 0, f"the demo failed:\n{output[-6000:]}"
    return output


def copy_working_tree(destination: Path) -> None:
    """The files git sees (committed or not, ignored ones left out), links kept as links:
    a build's leftovers in the checkout cannot leak into the wheel."""
    listed = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO).stdout
    for name in filter(None, listed.split("\0")):
        source, target = REPO / name, destination / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet in the index
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)


def installed_files(package: Path) -> set[Path]:
    return {p.relative_to(package) for p in package.rglob("*") if "__pycache__" not in p.parts}


# The demo takes about 3 minutes on an idle 2-core machine; a shared one may take 20.
@pytest.mark.timeout(2400)
def test_the_demo_runs_from_a_wheel_in_an_empty_environment(tmp_path):
    if not UV.is_file():
        pytest.fail(f"{UV} is missing: tools/bootstrap.sh installs uv into .venv")
    source, dist, venv = tmp_path / "source", tmp_path / "dist", tmp_path / "venv"
    copy_working_tree(source)
    run([UV, "build", "--wheel", "--python", sys.executable, "--out-dir", dist], cwd=source)
    (wheel,) = dist.glob("protembed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "protembed/demo/project/workflow/Snakefile" in names
    assert "protembed/demo/project/neo4j-launcher/pom.xml" in names
    assert not [n for n in names if "/target/" in n or n.startswith("protembed/testing/")]

    # Versions as the lock pins them: the same as .venv's, so uv's cache serves them.
    run([UV, "venv", "--quiet", "--python", sys.executable, venv])
    python = venv / "bin" / "python"
    run(
        [UV, "pip", "install", "--quiet", "--python", python, f"{wheel}[workflow]"]
        + ["--constraint", REPO / "requirements.lock"]
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"PROTEMBED_CACHE": str(tmp_path / "cache"), "PATH": f"{venv / 'bin'}:{env['PATH']}"}
    where = run([python, "-c", "import protembed; print(protembed.__file__)"], env=env)
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(venv), f"protembed imported from {package}, not the wheel"
    before = installed_files(package)

    work = tmp_path / "work"
    work.mkdir()
    summary = run_demo(python, work, env)
    proteins = re.search(r"proteins\s+(\d+) loaded, (\d+) embedded, (\d+) rejected", summary)
    assert proteins, summary
    loaded, embedded, rejected = map(int, proteins.groups())
    assert loaded > 400 and embedded + rejected == loaded and embedded > 0.9 * loaded, summary
    recall = re.search(r"recall@\d+\s+([0-9.]+) of the vector index against exact", summary)
    assert recall and 0 < float(recall.group(1)) <= 1, summary
    report = Path(re.findall(r"^  report\s+(\S+)$", summary, re.M)[-1])
    assert report == work / "results" / "demo" / "report.html" and report.stat().st_size > 0
    assert (tmp_path / "cache" / "neo4j-launcher").is_dir()  # built from the wheel's sources
    assert installed_files(package) == before, "the demo wrote into site-packages"
