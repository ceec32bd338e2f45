"""The workflow as a module of someone else's: the parent Snakefile of
docs/reproducibility.md, run end to end from a directory outside the repository, against the
real local Neo4j, with the weight-free k-mer model."""

import hashlib
import re

import doc_pages
import yaml
from workflow_runner import REPO, read_json, run_workflow

from protembed import __version__, graph, parquet_io

PROPERTY = "embedding_kmer_2"


def parent_snakefile() -> str:
    """The parent Snakefile exactly as docs/reproducibility.md shows it, pointed at this
    checkout."""
    snakefile = doc_pages.block("parent-snakefile")
    assert '"/path/to/protembed/workflow/Snakefile"' in snakefile
    return snakefile.replace("/path/to/protembed", str(REPO))


def parent_workflow(directory, shards: int = 2):
    (directory / "Snakefile").write_text(parent_snakefile())
    # One embed job per 20 proteins: the test graph's 40 fill both shards.
    settings = {"results": "results/protembed", "shards": shards, "min_proteins_per_shard": 20}
    config = {"protembed": settings | {"model": {"name": "kmer-2"}}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    return directory / "Snakefile"


def test_parent_workflow_runs_ours_as_a_module_and_consumes_its_outputs(
    tmp_path, database, synechocystis
):
    proteins = synechocystis[:40]
    graph.add_proteins(graph.ProteinGraph(database), proteins)
    parent = tmp_path / "paper"
    parent.mkdir()
    snakefile = parent_workflow(parent)

    done = run_workflow(parent, snakefile=snakefile)
    assert done.returncode == 0, done.stderr[-4000:]

    # Ours ran under the parent's names, with the parent's config section.
    assert "checkpoint protembed_export_sequences:" in done.stderr
    for rule in ("embed_shard", "merge_shards", "load_vectors", "snapshot_graph"):
        assert f"rule protembed_{rule}:" in done.stderr
    run = parent / "results" / "protembed" / PROPERTY
    assert sorted(p.name for p in (run / "embed").glob("shard-?.parquet")) == [
        "shard-0.parquet",
        "shard-1.parquet",
    ]
    stored, _, _ = database.execute_query(
        f"MATCH (p:Protein) WHERE p.{PROPERTY} IS NOT NULL "
        f"RETURN p.accession_id AS id, p.{PROPERTY}_pipeline AS pipeline"
    )
    assert {r["id"] for r in stored} == {p["accession_id"] for p in proteins}
    assert {r["pipeline"] for r in stored} == {f"protembed {__version__}"}

    # The parent's own rules read our outputs through `rules.protembed_*`.
    rows = (parent / "analysis" / "vectors.tsv").read_text().splitlines()
    assert len(rows) == len(proteins)
    for row in rows:
        _, dimension, total = row.split("\t")
        # k-mer frequencies: 400 of them, summing to 1.
        assert dimension == "400" and abs(float(total) - 1) < 1e-5
    methods = (parent / "analysis" / "methods.txt").read_text()
    assert f"protembed {__version__} (kmer-2, revision kmer-counting-1" in methods
    assert f"float32) for {len(proteins)} proteins" in methods

    # The merged Parquet names the run record beside it, which says what made the vectors.
    metadata = parquet_io.read_metadata(run / "embeddings.parquet")
    assert (run / metadata["run_record"]).resolve() == (run / "run.json").resolve()
    record = read_json(run / "run.json")
    manifest = read_json(run / "export" / "manifest.json")
    assert record["protembed"] == record["versions"]["protembed"] == __version__
    assert record["model"] == {
        "name": "kmer-2",
        "revision": "kmer-counting-1",
        "family": "kmer",
        "implementation": metadata["implementation"],
    }
    assert record["vectors"]["dimension"] == 400 and record["vectors"]["embedding"] == "mean_last"
    assert record["compute"]["device"] == "cpu" and record["compute"]["precision"] == "float32"
    assert record["compute"]["batching"] == "padded"
    assert record["settings"]["model"]["name"] == "kmer-2" and record["graph"]["label"] == "Protein"
    assert {"python", "numpy", "pyarrow", "neo4j", "snakemake"} <= record["versions"].keys()
    assert record["neo4j_server"] == manifest.get("server")
    n = len(proteins)
    assert record["counts"] == {
        "proteins_with_sequence": n,
        "up_to_date": 0,
        "exported": n,
        "unique_sequences": n,
        "embedded": n,
        "rejected": 0,
    }
    assert [shard["device"] for shard in record["compute"]["shards"]] == ["cpu", "cpu"]
    merged = (run / "embeddings.parquet").read_bytes()
    assert record["embeddings"]["sha256"] == hashlib.sha256(merged).hexdigest()

    # A rerun with nothing left to embed still records itself, and the Parquet names it.
    again = run_workflow(parent, "--forcerun", "protembed_export_sequences", snakefile=snakefile)
    assert again.returncode == 0, again.stderr[-4000:]
    record = read_json(run / "run.json")
    assert record["counts"]["exported"] == 0 and record["counts"]["up_to_date"] == n
    assert record["compute"]["shards"] == [] and record["versions"]["protembed"] == __version__
    metadata = parquet_io.read_metadata(run / "embeddings.parquet")
    assert metadata == {"run_record": "run.json"}
    # The parent's outputs still describe the graph: every protein, not this run's none.
    assert len((parent / "analysis" / "vectors.tsv").read_text().splitlines()) == n
    assert f"for {n} proteins" in (parent / "analysis" / "methods.txt").read_text()


def test_module_paths_resolve_from_the_module_not_the_working_directory(tmp_path):
    """A dry run from elsewhere, and the conda environment files its jobs would use."""
    parent = tmp_path / "elsewhere"
    parent.mkdir()
    snakefile = parent_workflow(parent, shards=3)
    # Snakemake's own resolution of each rule's `conda:`, as --sdm conda would use it (no
    # conda here to build them).
    with snakefile.open("a") as extra:
        extra.write(
            "\nfor r in workflow.rules:\n"
            "    if r.conda_env:\n"
            "        env = r.expand_conda_env({}).file.get_path_or_uri(secret_free=True)\n"
            '        print("conda env of", r.name, os.path.realpath(env))\n'
        )
    dry = run_workflow(parent, "--dry-run", snakefile=snakefile)
    assert dry.returncode == 0, dry.stderr[-4000:]
    # The export, a checkpoint, decides the embed jobs: the plan has it and the merge.
    assert "checkpoint protembed_export_sequences:" in dry.stdout, dry.stdout[-4000:]
    assert "rule protembed_merge_shards:" in dry.stdout
    assert "rule protembed_embed_shard:" not in dry.stdout
    envs = dict(re.findall(r"conda env of (\S+) (\S+)", dry.stdout))
    graph_env, embed_env = str(REPO / "envs" / "graph.yaml"), str(REPO / "envs" / "embed.yaml")
    assert envs == {
        "protembed_export_sequences": graph_env,
        "protembed_embed_shard": embed_env,
        "protembed_merge_shards": graph_env,
        "protembed_load_vectors": graph_env,
        "protembed_snapshot_graph": graph_env,
        "protembed_report": str(REPO / "envs" / "report.yaml"),
    }
