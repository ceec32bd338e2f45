"""Incremental runs of export, embed, merge and load (called directly, as the workflow's
scripts do) on the real local Neo4j, with the k-mer model: each run touches exactly the
nodes it should, duplicates share one computation, provenance is complete and right."""

import datetime
import hashlib
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from protembed import __version__, graph, provenance, steps
from protembed.config import load_config, load_settings
from protembed.errors import UserError

REPO = Path(__file__).resolve().parents[1]
KMER2 = "embedding_kmer_2"


def kmer_config(name: str = "kmer-2") -> dict:
    config = load_config(REPO / "config.yaml")
    config["model"].update(name=name, device="cpu")
    config["shards"] = 3
    config["min_proteins_per_shard"] = 1  # several shards even on a small graph
    config["graph"]["write_batch_size"] = 7  # several transactions even on a small graph
    return config


def run_steps(config: dict, directory: Path, load: bool = True) -> tuple[dict, dict | None]:
    """One workflow run: the manifest and the load receipt (None when not loaded)."""
    settings = load_settings(config)
    graph_settings, model = settings.graph, settings.model
    manifest = steps.export(
        graph_settings,
        model,
        settings.shards,
        directory / "export" / "manifest.json",
        directory / "export" / "shards",
    )
    shards = [shard["path"] for shard in manifest["shards"]]
    embedded = [directory / "embed" / f"shard-{i}.parquet" for i in range(len(shards))]
    rejects = [directory / "embed" / f"shard-{i}.rejects.parquet" for i in range(len(shards))]
    for shard, output, rejected in zip(shards, embedded, rejects, strict=True):
        steps.embed(model, str(shard), str(output), str(rejected))
    steps.merge(
        model,
        directory / "export" / "manifest.json",
        embedded,
        rejects,
        directory / "embeddings.parquet",
        directory / "rejects.parquet",
        directory / "summary.json",
    )
    if not load:
        return manifest, None
    receipt = steps.load(
        graph_settings,
        model,
        directory / "embeddings.parquet",
        directory / "rejects.parquet",
        directory / "receipt.json",
    )
    return manifest, receipt


def nodes(driver) -> dict[str, dict]:
    records = driver.execute_query(
        "MATCH (p:Protein) RETURN p.accession_id AS id, properties(p) AS props"
    ).records
    return {r["id"]: r["props"] for r in records}


def exported_ids(directory: Path) -> set[str]:
    return {
        protein_id
        for path in (directory / "export" / "shards").glob("shard-*.parquet")
        for ids in pq.read_table(path)["ids"].to_pylist()
        for protein_id in ids
    }


@pytest.fixture
def proteins(database, synechocystis) -> dict[str, str]:
    chosen = {p["accession_id"]: p["sequence"] for p in synechocystis[:40]}
    first = next(iter(chosen))
    chosen |= {"COPY_A": chosen[first], "COPY_B": chosen[first]}
    graph.add_proteins(
        graph.ProteinGraph(database),
        [{"accession_id": i, "sequence": s} for i, s in chosen.items()],
    )
    return chosen


def test_incremental_runs_touch_exactly_the_nodes_they_should(tmp_path, database, proteins):
    config = kmer_config()
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    manifest, receipt = run_steps(config, tmp_path / "run1")
    assert manifest["exported"] == receipt["written"] == len(proteins)
    first = next(iter(proteins))
    # Three copies of one sequence: one row in one shard, one vector for all three.
    assert manifest["unique_sequences"] == len(proteins) - 2
    shard_rows = [
        ids
        for path in (tmp_path / "run1" / "export" / "shards").glob("shard-*.parquet")
        for ids in pq.read_table(path)["ids"].to_pylist()
    ]
    assert sorted([first, "COPY_A", "COPY_B"]) in [sorted(ids) for ids in shard_rows]
    after_first = nodes(database)
    assert after_first[first][KMER2] == after_first["COPY_A"][KMER2] == after_first["COPY_B"][KMER2]

    # Provenance beside every vector, and right.
    for protein_id, sequence in proteins.items():
        props = after_first[protein_id]
        assert len(props[KMER2]) == 400
        assert props[f"{KMER2}_sequence_sha256"] == hashlib.sha256(sequence.encode()).hexdigest()
        assert props[f"{KMER2}_model"] == "kmer-2"
        assert props[f"{KMER2}_model_revision"] == "kmer-counting-1"
        assert props[f"{KMER2}_embedding"] == "mean_last"
        assert "2-mer" in props[f"{KMER2}_pooling"]
        assert props[f"{KMER2}_dimension"] == 400
        assert props[f"{KMER2}_precision"] == "float32"
        assert props[f"{KMER2}_long_sequence_handling"] == "whole"
        assert props[f"{KMER2}_pipeline"] == f"protembed {__version__}"
        created = props[f"{KMER2}_created"].to_native()
        assert started <= created <= datetime.datetime.now(datetime.UTC)

    # Unchanged graph: nothing exported, nothing written.
    manifest, receipt = run_steps(config, tmp_path / "run2")
    assert manifest["exported"] == receipt["written"] == 0
    assert nodes(database) == after_first

    # Two proteins added, one sequence changed, one changed into something unembeddable.
    changed = next(i for i in proteins if i not in (first, "COPY_A", "COPY_B"))
    broken = list(proteins)[5]
    graph.add_proteins(
        graph.ProteinGraph(database),
        [
            {"accession_id": "NEW_1", "sequence": "MKTAYIAKQRQISFVKSHFSRQ"},
            {"accession_id": "NEW_2", "sequence": proteins[first]},  # a fourth copy
            {"accession_id": changed, "sequence": proteins[changed][::-1]},
            {"accession_id": broken, "sequence": "X"},  # no countable 2-mer
        ],
    )
    before = nodes(database)
    manifest, receipt = run_steps(config, tmp_path / "run3")
    touched = {"NEW_1", "NEW_2", changed, broken}
    assert exported_ids(tmp_path / "run3") == touched
    assert receipt["written"] == 3 and receipt["rejections_written"] == 1
    after = nodes(database)
    assert {i for i in after if after[i] != before[i]} == touched
    assert after["NEW_2"][KMER2] == after[first][KMER2]
    assert after[changed][KMER2] != after_first[changed][KMER2]
    assert KMER2 not in after[broken] and f"{KMER2}_pooling" not in after[broken]
    assert after[broken][f"{KMER2}_model"] == "kmer-2"  # which model's rules rejected it
    assert after[broken][f"{KMER2}_rejected"].startswith("no 2-mer")

    # A second model lives beside the first: its own property, the first untouched.
    manifest, receipt = run_steps(kmer_config("kmer-1"), tmp_path / "run4")
    assert receipt["written"] == len(after) - 1 and receipt["property"] == "embedding_kmer_1"
    final = nodes(database)
    for protein_id, props in final.items():
        first_model = {k: v for k, v in props.items() if not k.startswith("embedding_kmer_1")}
        assert first_model == after[protein_id]
        assert protein_id == broken or len(props["embedding_kmer_1"]) == 20
    indexes = {r["name"] for r in database.execute_query("SHOW VECTOR INDEXES YIELD name").records}
    assert indexes == {"Protein_embedding_kmer_2", "Protein_embedding_kmer_1"}

    # Another model's vectors into the first one's property: refused before any embedding.
    mixed = kmer_config("kmer-1")
    mixed["model"]["property"] = KMER2
    with pytest.raises(UserError, match=f"Protein.{KMER2} already holds .*model 'kmer-2' there"):
        run_steps(mixed, tmp_path / "run5")
    assert nodes(database) == final
    assert not (tmp_path / "run5" / "embed").exists()


def test_the_load_refuses_vectors_from_another_space(tmp_path, database, proteins):
    # What the export cannot see, the load still catches: here a kmer-1 dataset made for
    # its own property, then loaded as if it were kmer-2's.
    run_steps(kmer_config(), tmp_path / "kmer2")
    stored = nodes(database)
    graph.add_proteins(
        graph.ProteinGraph(database), [{"accession_id": "NEW", "sequence": "MKTAYW"}]
    )
    config = kmer_config("kmer-1")
    directory = tmp_path / "kmer1"
    run_steps(config, directory, load=False)
    config["model"]["property"] = KMER2
    with pytest.raises(UserError, match=f"{KMER2} already holds .*dimension 400 there, 20 now"):
        settings = load_settings(config)
        steps.load(
            settings.graph,
            settings.model,
            directory / "embeddings.parquet",
            directory / "rejects.parquet",
            directory / "receipt.json",
        )
    assert {i: p for i, p in nodes(database).items() if i != "NEW"} == stored


def test_new_weights_under_an_old_property_are_refused(tmp_path, database, proteins, tiny_esm2):
    model = tmp_path / "esm2_tiny"
    shutil.copytree(tiny_esm2, model)
    config = kmer_config(str(model))
    manifest, receipt = run_steps(config, tmp_path / "run1")
    assert receipt["written"] == len(proteins)
    stored = nodes(database)
    # Fine-tuned in place: same directory, same name, other weights. Without the check
    # every protein would look up to date and the run would change nothing.
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x80\x3f")
    with pytest.raises(UserError, match="already holds .*model_revision '[0-9a-f]{40}' there"):
        run_steps(config, tmp_path / "run2")
    assert nodes(database) == stored


def test_model_revision_names_the_weights(tmp_path, tiny_esm2):
    # A hub cache snapshot is named by its commit: the same revision as loading by name.
    commit = "4f3e2b1a" * 5
    snapshot = tmp_path / "models--facebook--esm2_t6_8M_UR50D" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    assert provenance.model_revision(str(snapshot)) == commit
    # A plain directory: a digest of its files, which changes when the weights do, at the
    # start or the end of a file larger than the two MiB read of it.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_esm2, copy)
    assert provenance.model_revision(str(copy)) == provenance.model_revision(str(tiny_esm2))
    weights = copy / "model-00002-of-00002.safetensors"
    weights.write_bytes(bytes(3 << 20))
    revisions = {provenance.model_revision(str(copy))}
    for offset in (0, (3 << 20) - 1):
        changed = bytearray(bytes(3 << 20))
        changed[offset] = 1
        weights.write_bytes(changed)
        revisions.add(provenance.model_revision(str(copy)))
    assert len(revisions) == 3 and provenance.model_revision(str(tiny_esm2)) not in revisions
