"""What a paper cites: one version everywhere, and the licence pyproject.toml declares."""

import importlib.metadata
import re
import tomllib
from pathlib import Path

import yaml

from protembed import __version__, provenance

REPO = Path(__file__).resolve().parents[1]


def test_one_version_in_the_package_its_metadata_the_citation_and_the_changelog():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in pyproject and "version" in pyproject["dynamic"]
    # The installed distribution's version, as pip and importlib see it, is __init__'s
    # (stale only until tools/bootstrap.sh reinstalls, which it does when pyproject changes).
    assert importlib.metadata.version("protembed") == __version__
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["version"] == __version__
    released = re.findall(
        r"^## \[(\d[^\]]*)\] - (\d{4}-\d\d-\d\d)$", (REPO / "CHANGELOG.md").read_text(), re.M
    )
    assert released, "CHANGELOG.md has no released version"
    assert released[0] == (__version__, str(citation["date-released"]))


def test_the_licence_file_is_the_one_pyproject_and_the_citation_declare():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert pyproject["license"] == citation["license"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")


def test_every_vector_carries_the_package_version():
    metadata = {
        "model": "kmer-2",
        "embedding": "mean_last",
        "pooling": "k-mer frequencies",
        "dimension": 400,
        "precision": "float32",
        "versions": provenance.versions(),
    }
    assert provenance.graph_provenance(metadata)["pipeline"] == f"protembed {__version__}"
