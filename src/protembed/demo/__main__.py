"""The whole workflow on a throwaway local Neo4j and ~500 real proteins:
`python -m protembed.demo` (`make demo` in a checkout).

Starts Neo4j, loads every 7th protein of the Synechocystis proteome, runs `snakemake`
end to end and writes the run's report, prints a short summary with a nearest-neighbour
query and the report's path, stops Neo4j. The run's files go to results/demo under the
working directory.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import yaml

from .. import graph
from ..parquet_io import count_rows
from .local_neo4j import LocalNeo4j
from .paths import DEMO_PROTEINS, SNAKEFILE, cache_dir
from .proteins import read_proteins

DEMO_MODEL = "facebook/esm2_t6_8M_UR50D"


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """One quick connection attempt: without it an unreachable hub costs half a minute of
    the hub client's retries, in the demo and again in every job."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the hub client knows how to go through the proxy
    url = urllib.parse.urlsplit(constants.ENDPOINT)
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def resolve_model(name: str) -> tuple[str, bool]:
    """The hub model if it can be fetched (or is cached), else the same architecture with
    random weights."""
    from huggingface_hub import constants
    from transformers import AutoConfig

    if not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"  # the workflow's jobs inherit it
        constants.HF_HUB_OFFLINE = True  # this process read the environment at import
    try:
        AutoConfig.from_pretrained(name)
        return name, False
    except OSError:
        from .offline_model import cached_random_esm2

        local = cache_dir() / "models" / "esm2_t6_8M_UR50D_random_weights"
        return str(cached_random_esm2(local, layers=6, hidden=320, heads=20)), True


def main() -> int:
    started = time.monotonic()
    snakemake = Path(sys.executable).with_name("snakemake")
    if not snakemake.is_file():
        sys.exit(
            f"the demo runs the Snakemake workflow, and {snakemake} is missing: "
            "install protembed[workflow]"
        )
    run_dir = Path("results", "demo").resolve()
    report = run_dir / "report.html"
    model, random_weights = resolve_model(DEMO_MODEL)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    # The rest is the schema's defaults, as config.yaml shows them.
    demo_settings = {"model": {"name": model, "device": "cpu"}, "shards": 2}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(demo_settings))
    proteins = read_proteins(DEMO_PROTEINS)

    with tempfile.TemporaryDirectory(prefix="protembed-demo-neo4j-") as data_dir:
        server = LocalNeo4j().start(Path(data_dir), password=secrets.token_urlsafe(16))
        try:
            os.environ.update(server.env())
            with graph.ProteinGraph.connect() as protein_graph:
                graph.add_proteins(protein_graph, proteins)
            workflow_started = time.monotonic()
            subprocess.run(
                [
                    snakemake,
                    "--snakefile",
                    SNAKEFILE,
                    "--directory",
                    run_dir,
                    "--cores",
                    "2",
                    # the run and its report (the report is never part of a plain run)
                    "report",
                    "--report",
                    report,
                    "--report-after-run",
                    "--quiet",
                    "rules",
                ],
                check=True,
            )
            seconds = time.monotonic() - workflow_started
            summary = yaml.safe_load(next(run_dir.glob("results/*/summary.json")).read_text())
            checked = yaml.safe_load(next(run_dir.glob("results/*/report/report.json")).read_text())
            query = proteins[0]["accession_id"]
            with graph.ProteinGraph.connect(vector_property=summary["property"]) as vectors:
                neighbours = vectors.nearest_neighbours(query, k=3)
                with_vector = vectors.count_with_vector()
        finally:
            server.stop()

    print("\nprotembed demo")
    print(f"  Neo4j          local server on {server.uri} (stopped)")
    print(f"  model          {model}")
    if random_weights:
        print(f"  !!! WARNING    {DEMO_MODEL} could not be fetched (no model hub here): the demo")
        print("                 used the same architecture with RANDOM weights. The pipeline is")
        print("                 real; the vectors carry no biology.")
    print(
        f"  proteins       {len(proteins)} loaded, {summary['embedded']} embedded, "
        f"{summary['rejected']} rejected, {with_vector} with a vector in the graph"
    )
    print(f"  shards         {summary['shards']}")
    print(f"  dimension      {summary['dimension']} in property {summary['property']}")
    print(f"  seconds        {seconds:.1f} workflow, {time.monotonic() - started:.1f} in all")
    embeddings = run_dir / summary["embeddings"]
    print(f"  parquet        {embeddings} ({count_rows(embeddings)} rows)")
    print(f"  neighbours of {query} by the vector index:")
    for protein_id, score in neighbours:
        print(f"                 {protein_id}  score {score:.4f}")
    quality = checked["neighbours"]
    print(
        f"  recall@{quality['k']}      {quality['recall_at_k']} of the vector index against exact "
        f"search ({quality['sampled']} proteins)"
    )
    print(f"  report         {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
