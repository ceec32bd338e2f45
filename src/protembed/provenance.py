"""Which model made the vectors, and how: one vocabulary for the Parquet metadata and the
graph's provenance properties (`model`, `model_revision`, `embedding`, `pooling`,
`dimension`, `precision`, `created`, `pipeline`).
"""

import contextlib
import datetime
import hashlib
import importlib.metadata
import platform
from pathlib import Path

from . import __version__
from .config import ModelSettings, as_dict


def versions() -> dict:
    names = ("torch", "transformers", "numpy", "pyarrow", "neo4j")
    own = {"protembed": __version__, "python": platform.python_version()}
    return own | {n: importlib.metadata.version(n) for n in names}


def expected_space(model: ModelSettings) -> tuple[dict, list[str]]:
    """What the export can tell about the run's vectors before a model is loaded, and which
    of it to compare: the weights' revision where it is known here (a local directory, a
    hub model in the cache), otherwise the model's name."""
    expected = {
        "model": model.name,
        "model_revision": model_revision(model.name),
        "embedding": model.kind,
    }
    known = "model_revision" if expected["model_revision"] != "unknown" else "model"
    return expected, ["embedding", known]


def embedding_metadata(model: ModelSettings, adapter, kind, *, per_residue: bool = False) -> dict:
    """What the vectors are, exactly: the kind's name (also stored in the graph) and, in
    words, which tokens and which layers (before or after the final norm) they come from."""
    extras = {}
    # esm lives in envs/esm.yaml only; snakemake where a job runs under it
    for package in ("esm", "sentencepiece", "snakemake"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            extras[package] = importlib.metadata.version(package)
    metadata = {
        "model": model.name,
        "model_revision": model_revision(model.name, adapter),
        "family": adapter.family,
        "implementation": getattr(adapter, "implementation", None),
        "embedding": kind.name,
        "pooling": kind.describe(adapter),
        "layers": kind.layers(adapter.num_layers),
        "num_layers": adapter.num_layers,
        "normalized": kind.normalize,
        "dimension": adapter.dimension,
        "precision": adapter.precision,
        "attention": adapter.attention,
        "batching": adapter.batching,
        "max_residues": model.max_residues or adapter.max_residues,
        "long_sequences": model.long_sequences,
        "chunk_overlap": model.chunk_overlap,
        "device": str(adapter.device),
        "versions": versions() | extras,
        "created": now(),
    }
    if per_residue:
        metadata["residue_pooling"] = kind.describe_residues(adapter)
    return metadata


def model_revision(name: str, adapter=None) -> str:
    """Which weights made the vectors: the hub commit they were loaded from, or for a local
    directory 40 hex digits of a SHA-256 over its JSON files (config, weight index) and each
    weight file's name, size, first and last MiB (hashing whole weights would cost every
    job minutes)."""
    if getattr(adapter, "revision", None):
        return adapter.revision
    directory = Path(name)
    if directory.parent.name == "snapshots" and directory.parent.parent.name.startswith("models--"):
        return directory.name  # a hub cache snapshot, named by its commit: same as by name
    if directory.is_dir():
        digest = hashlib.sha256()
        for path in sorted(directory.iterdir()):
            if path.suffix == ".json":
                digest.update(path.name.encode() + path.read_bytes())
            elif path.suffix in (".safetensors", ".bin", ".pt", ".pth"):
                size = path.stat().st_size
                with path.open("rb") as weights:
                    head = weights.read(1 << 20)
                    weights.seek(max(size - (1 << 20), 0))
                    tail = weights.read()
                digest.update(f"{path.name}:{size}:".encode() + head + tail)
        return digest.hexdigest()[:40]
    from .adapters import hub_snapshot

    snapshot = hub_snapshot(name)
    return snapshot.name if snapshot else "unknown"


def run_record(
    model: ModelSettings,
    manifest: dict,
    metadata: dict | None,
    shard_metadata: list[dict],
    summary: dict,
    embeddings_path: str,
) -> dict:
    """What a methods section cites about one run: which weights, settings, software and
    server made the vectors, how many there are, and the merged file's checksum.

    `metadata` is the first embedded shard's (None: nothing needed embedding this run);
    where each shard ran, and in which precision, is listed per shard.
    """
    embedded = metadata or {}
    digest = hashlib.sha256()
    with open(embeddings_path, "rb") as merged:
        for block in iter(lambda: merged.read(1 << 20), b""):
            digest.update(block)
    return {
        "protembed": __version__,
        "model": {
            "name": model.name,
            # The hub commit, or for a local directory a fingerprint of its files (see
            # model_revision); "kmer-counting-N" for the weight-free k-mer baseline.
            "revision": embedded.get("model_revision", model_revision(model.name)),
            "family": embedded.get("family"),
            "implementation": embedded.get("implementation"),
        },
        "vectors": {
            key: embedded.get(key)
            for key in ("embedding", "pooling", "dimension", "layers", "normalized")
        },
        "compute": {
            key: embedded.get(key) for key in ("device", "precision", "attention", "batching")
        }
        | {
            "shards": [
                {
                    key: m["throughput"].get(key)
                    for key in ("shard", "device", "precision", "batching")
                }
                for m in shard_metadata
                if "throughput" in m
            ]
        },
        "settings": {"model": as_dict(model)},
        "graph": {key: manifest[key] for key in ("label", "id_property", "sequence_property")},
        "versions": embedded.get("versions", {"protembed": __version__}),
        "neo4j_server": manifest.get("server"),
        "property": manifest["property"],
        "counts": {
            "proteins_with_sequence": manifest["proteins_with_sequence"],
            "up_to_date": manifest["up_to_date"],
            "exported": manifest["exported"],
            "unique_sequences": manifest["unique_sequences"],
            "embedded": summary["embedded"],
            "rejected": summary["rejected"],
        },
        "embeddings": {"path": str(embeddings_path), "sha256": digest.hexdigest()},
        "exported_at": manifest["created"],
        "created": now(),
    }


def graph_provenance(metadata: dict) -> dict:
    """What every vector of the run shares, as the graph stores it, from the embed step's
    Parquet metadata (the same names: model_revision, embedding, pooling, ...)."""
    created = metadata.get("created") or now()
    return {
        "model": metadata["model"],
        "model_revision": metadata.get("model_revision", "unknown"),
        "embedding": metadata["embedding"],
        "pooling": metadata["pooling"],
        "dimension": metadata["dimension"],
        "precision": metadata["precision"],
        # Packed and padded batches give the same vectors up to rounding (tests/test_packing.py)
        "batching": metadata.get("batching", "padded"),
        "created": datetime.datetime.fromisoformat(created),
        "pipeline": f"protembed {metadata.get('versions', {}).get('protembed', __version__)}",
    }


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
