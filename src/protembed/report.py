"""The run's report: a summary table, plots, the rejects and a check of the vector index.

`build` writes the pieces that `snakemake --report` assembles (workflow/rules/report.smk):
HTML tables, PNG plots and report.json holding every number shown. It reads the run's
own files (manifest, summary, run record, merged Parquet, rejects, load receipt) and asks
the graph only two things: the property named by report.color_by, and the vector index's
neighbours of a sample of proteins, which it compares with exact search over the Parquet.
"""

import html
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np

from . import graph, parquet_io
from .parquet_io import write_json

log = logging.getLogger(__name__)

# Points drawn in the projection (a fixed random sample beyond it): PCA of a million
# 1,280-dimensional vectors would cost more than the rest of the report.
PROJECTION_POINTS = 20000
# Labels with their own colour in the projection; the rest are drawn grey as "other".
COLOURED_LABELS = 20
# Labelled points whose neighbours in the plane are compared (pairwise distances).
SEPARATION_POINTS = 5000
REJECTS_PER_PAGE = 50
# Shards and labels are drawn with the same fixed seed on every build of the report.
SEED = 0


def build(config: dict, run: dict, out: dict) -> dict:
    """Write the report's pieces to the paths in `out` and return its numbers.

    `run` names the run's files: manifest, summary, run_record, embeddings, rejects,
    receipt. `out` names summary, rejects, neighbours (HTML), lengths, throughput,
    projection (PNG) and numbers (JSON).
    """
    manifest, summary, record, receipt = (
        parquet_io.read_json(run[name]) for name in ("manifest", "summary", "run_record", "receipt")
    )
    metadata = parquet_io.read_metadata(run["embeddings"])
    table = parquet_io.read_table(run["embeddings"])
    ids = table["id"].to_pylist()
    vectors = _vectors(table)
    rejects = parquet_io.read_table(run["rejects"]).to_pylist()
    settings = config["report"]
    color_by = settings["color_by"]

    with graph.ProteinGraph.from_config(config) as proteins:
        labels = proteins.property_values(color_by, ids) if color_by else {}
        index = proteins.vector_index()
        in_graph = proteins.count_with_vector()
        neighbours = neighbour_quality(
            proteins, ids, vectors, labels, k=settings["neighbours"], sample=settings["sample"]
        )
    neighbours["index"] = _index_settings(index)
    neighbours["vectors_in_graph"] = in_graph
    neighbours["vectors_in_run"] = len(ids)

    lengths = [len(s) for s in table["sequence"].to_pylist()]
    lengths += [len(r["sequence"]) for r in rejects if isinstance(r.get("sequence"), str)]
    window = metadata.get("max_residues")
    plot_lengths(lengths, window, out["lengths"])
    plot_throughput(summary["throughput"]["shards"], out["throughput"])
    projection = plot_projection(vectors, [labels.get(i) for i in ids], color_by, out["projection"])

    rows = summary_rows(manifest, summary, record, metadata, table, rejects, receipt)
    _write_html(out["summary"], "Run summary", _table(["", "value"], rows))
    _write_html(out["rejects"], "Rejected proteins", rejects_html(rejects))
    _write_html(
        out["neighbours"], "Neighbour quality", neighbours_html(neighbours, projection, color_by)
    )
    numbers = {
        "summary": dict(rows),
        "rejects": len(rejects),
        "neighbours": neighbours,
        "projection": projection,
        "lengths": {"sequences": len(lengths), "window": window},
    }
    write_json(numbers, out["numbers"])
    return numbers


def _vectors(table) -> np.ndarray:
    column = table["vector"]
    if table.num_rows == 0:
        return np.zeros((0, 0), np.float32)
    return column.combine_chunks().flatten().to_numpy().reshape(len(column), -1)


# -- the summary ----------------------------------------------------------------------


def summary_rows(manifest, summary, record, metadata, table, rejects, receipt) -> list:
    """(what, value) pairs of the summary table, counts first, then what made the vectors."""
    counts = record["counts"]
    rows = [
        ("proteins with a sequence", counts["proteins_with_sequence"]),
        ("up to date (not embedded again)", counts["up_to_date"]),
        ("exported", counts["exported"]),
        ("unique sequences", counts["unique_sequences"]),
        ("embedded", counts["embedded"]),
        ("rejected", counts["rejected"]),
    ]
    rows += [(f"rejected: {reason}", n) for reason, n in reasons(rejects).most_common()]
    handling = Counter(h.split(":")[0] for h in table["long_sequence_handling"].to_pylist())
    rows += [(f"long-sequence handling: {h}", n) for h, n in sorted(handling.items())]
    model = record["model"]
    vectors = record["vectors"]
    rows += [
        ("model", model["name"]),
        ("revision", model["revision"]),
        ("family", model["family"]),
        ("kind", vectors["embedding"]),
        ("pooling", metadata.get("pooling")),
        ("dimension", vectors["dimension"]),
        ("long sequences", metadata.get("long_sequences")),
        ("window (residues)", metadata.get("max_residues")),
        ("precision", record["compute"]["precision"]),
        ("device", record["compute"]["device"]),
        ("property", record["property"]),
        ("vector type in the graph", receipt.get("vector_type")),
        ("Neo4j", _server(record.get("neo4j_server"))),
        ("residues per second (model time)", summary["throughput"]["residues_per_s"]),
    ]
    rows += [(f"version: {name}", v) for name, v in sorted(record["versions"].items())]
    return rows


def reasons(rejects: list[dict]) -> Counter:
    """Rejections by reason, numbers in the reason left out so that alike ones add up."""
    return Counter(re.sub(r"\d+", "N", r["reason"]) for r in rejects)


def _server(server: dict | None) -> str | None:
    return f"{server['version']} {server['edition']}" if server else None


def _index_settings(index: graph.VectorIndex | None) -> dict | None:
    if index is None:
        return None
    return {
        "name": index.name,
        "similarity_function": index.similarity,
        "hnsw_m": index.hnsw_m,
        "hnsw_ef_construction": index.hnsw_ef_construction,
        "quantization": index.quantization,
        "quantization_type": index.quantization_type,
    }


# -- neighbours -----------------------------------------------------------------------


def exact_neighbours(vectors: np.ndarray, query: int, similarity: str) -> np.ndarray:
    """Every row's similarity to row `query` as the index scores it (higher is nearer)."""
    if similarity == "euclidean":
        return -np.linalg.norm(vectors - vectors[query], axis=1)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1
    unit = vectors / norms[:, None]
    return unit @ unit[query]


def neighbour_quality(
    proteins: graph.ProteinGraph, ids, vectors, labels: dict, *, k: int, sample: int
) -> dict:
    """recall@k of the vector index against exact search over the run's vectors, and the
    share of the k nearest neighbours (by the index, and exactly) sharing the query's label.

    Identical sequences make ties: an index neighbour counts as found when its exact
    similarity reaches the k-th best, whichever of the tied proteins the index returned.
    """
    result = {"k": k, "sampled": 0, "recall_at_k": None}
    index = proteins.vector_index()
    if index is None or len(ids) <= k:
        result["note"] = "no vector index" if index is None else f"{len(ids)} vectors, k={k}"
        return result
    similarity = index.similarity or "cosine"
    row_of = {protein: row for row, protein in enumerate(ids)}
    rng = np.random.default_rng(SEED)
    queries = rng.choice(len(ids), size=min(sample, len(ids)), replace=False)
    found = 0
    same = {"index": [], "exact": []}
    for query in queries:
        scores = exact_neighbours(vectors, query, similarity)
        scores[query] = -np.inf
        exact = np.argsort(-scores, kind="stable")[:k]
        kth = scores[exact[-1]]
        returned = [row_of[p] for p, _ in proteins.nearest_neighbours(ids[query], k) if p in row_of]
        found += sum(scores[row] >= kth - 1e-6 for row in returned)
        label = labels.get(ids[query])
        if label is not None:
            same["index"].append(np.mean([labels.get(ids[r]) == label for r in returned]))
            same["exact"].append(np.mean([labels.get(ids[r]) == label for r in exact]))
    result.update(sampled=len(queries), recall_at_k=round(found / (k * len(queries)), 4))
    if labels:
        counts = Counter(v for v in labels.values() if v is not None)
        total = sum(counts.values())
        result["same_label"] = {
            "index": round(float(np.mean(same["index"])), 4) if same["index"] else None,
            "exact": round(float(np.mean(same["exact"])), 4) if same["exact"] else None,
            # What a random neighbour would give: the chance two proteins share a label.
            "chance": round(sum((n / total) ** 2 for n in counts.values()), 4) if total else None,
            "queries_with_label": len(same["index"]),
        }
    return result


# -- plots ----------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path) -> None:
    temporary = Path(f"{path}.tmp.png")
    figure.savefig(temporary, dpi=110, bbox_inches="tight")
    temporary.replace(path)


def plot_lengths(lengths: list[int], window: int | None, path) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.hist(lengths or [0], bins=60, color="#4c72b0")
    axes.set_xlabel("sequence length (residues)")
    axes.set_ylabel("sequences")
    longest = max(lengths, default=0)
    if window and window <= 1.5 * longest:
        axes.axvline(window, color="#c44e52", linestyle="--", label=f"model window {window}")
        axes.legend()
        axes.set_title("Sequence lengths")
    else:
        axes.set_title(f"Sequence lengths (model window {window or '?'}: beyond the longest)")
    _save(figure, path)
    plt.close(figure)


def plot_throughput(shards: list[dict], path) -> None:
    plt = _pyplot()
    figure, (speed, time) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = [s["shard"].removesuffix(".parquet") for s in shards]
    speed.bar(names, [s["residues_per_s"] or 0 for s in shards], color="#55a868")
    speed.set_ylabel("residues / s")
    speed.set_title("Throughput per shard")
    time.bar(names, [s["seconds"] for s in shards], color="#8172b2")
    time.set_ylabel("seconds (model time)")
    time.set_title("Time per shard")
    for axes in (speed, time):
        axes.tick_params(axis="x", rotation=45)
    _save(figure, path)
    plt.close(figure)


def pca(vectors: np.ndarray, components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The vectors projected on their first principal axes, and each axis' share of the
    variance."""
    centred = vectors - vectors.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    share = variance[:components] / variance.sum() if variance.sum() else variance[:components]
    return centred @ axes[:components].T, share


def plot_projection(vectors: np.ndarray, labels: list, color_by: str | None, path) -> dict:
    """A 2-D PCA of the vectors, coloured by label; returns how well the labels separate
    in it (see _separation)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 6))
    result = {"points": 0}
    if len(vectors) >= 2:
        rows = np.arange(len(vectors))
        if len(rows) > PROJECTION_POINTS:
            rows = np.sort(np.random.default_rng(SEED).choice(rows, PROJECTION_POINTS, False))
        points, share = pca(vectors[rows].astype(np.float64))
        shown = [labels[r] for r in rows]
        result = {"points": len(rows), "variance_explained": [round(float(s), 4) for s in share]}
        frequent = [lab for lab, _ in Counter(x for x in shown if x is not None).most_common()]
        coloured = frequent[:COLOURED_LABELS]
        palette = plt.get_cmap("tab20" if len(coloured) > 10 else "tab10")
        keys = np.array([str(x) if x in coloured else "" for x in shown])
        if "" in keys:
            mask = keys == ""
            other = "no label" if not coloured else "other / no label"
            axes.scatter(*points[mask].T, s=8, c="#bbbbbb", label=other)
        for number, label in enumerate(coloured):
            mask = keys == str(label)
            axes.scatter(*points[mask].T, s=10, color=palette(number), label=str(label))
        if coloured:
            axes.legend(
                title=color_by,
                fontsize="small",
                markerscale=1.5,
                loc="upper left",
                bbox_to_anchor=(1.01, 1),
            )
            result["separation"] = _separation(points, keys, coloured)
        axes.set_xlabel(f"PC 1 ({share[0]:.0%} of the variance)")
        axes.set_ylabel(f"PC 2 ({share[1]:.0%} of the variance)" if len(share) > 1 else "PC 2")
    title = f"PCA of the vectors, coloured by {color_by}" if color_by else "PCA of the vectors"
    axes.set_title(title)
    _save(figure, path)
    plt.close(figure)
    return result


def _separation(points: np.ndarray, keys: np.ndarray, labels: list, k: int = 5) -> dict:
    """Share of labelled points whose k nearest labelled points in the plane mostly carry
    their own label (leave-one-out, up to SEPARATION_POINTS of them): 1 when the labels
    form clouds of their own, even a label split into several."""
    names = [str(label) for label in labels]
    rows = np.flatnonzero(keys != "")
    if len(rows) > SEPARATION_POINTS:
        rows = np.sort(np.random.default_rng(SEED).choice(rows, SEPARATION_POINTS, False))
    if len(rows) <= k:
        return {"overall": None, "per_label": {}}
    plane, own = points[rows], keys[rows]
    predicted = []
    for start in range(0, len(rows), 1000):
        block = np.linalg.norm(plane[start : start + 1000, None] - plane[None], axis=2)
        block[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nearest = np.argsort(block, axis=1, kind="stable")[:, :k]
        predicted += [Counter(own[r]).most_common(1)[0][0] for r in nearest]
    right = np.array(predicted) == own
    per_label = {name: round(float(right[own == name].mean()), 4) for name in names}
    return {"overall": round(float(right.mean()), 4), "k": k, "per_label": per_label}


# -- HTML -----------------------------------------------------------------------------

STYLE = """
body { font-family: sans-serif; font-size: 14px; margin: 1em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
.page { display: none; }
.page:target, .pages:not(:has(.page:target)) .page:first-of-type { display: block; }
nav a { margin-right: 0.5em; }
"""


def _write_html(path, title: str, body: str) -> None:
    document = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h2>{html.escape(title)}</h2>{body}</body></html>\n"
    )
    temporary = Path(f"{path}.tmp")
    temporary.write_text(document)
    temporary.replace(path)


def _table(header: list[str], rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_text(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def rejects_html(rejects: list[dict]) -> str:
    """The rejects table, REJECTS_PER_PAGE rows a page (pages switch by link, no script)."""
    if not rejects:
        return "<p>No protein was rejected.</p>"
    rows = [(r["id"], r["reason"]) for r in rejects]
    pages = [rows[i : i + REJECTS_PER_PAGE] for i in range(0, len(rows), REJECTS_PER_PAGE)]
    intro = f"<p>{len(rows):,} rejected proteins"
    if len(pages) == 1:
        return intro + ".</p>" + _table(["id", "reason"], rows)
    links = " ".join(f'<a href="#page-{n}">{n}</a>' for n in range(1, len(pages) + 1))
    sections = "".join(
        f'<section class="page" id="page-{n}"><p>page {n} of {len(pages)}</p>'
        + _table(["id", "reason"], page)
        + "</section>"
        for n, page in enumerate(pages, start=1)
    )
    return f"{intro}, {REJECTS_PER_PAGE} a page.</p><nav>pages: {links}</nav>" + (
        f'<div class="pages">{sections}</div>'
    )


def neighbours_html(neighbours: dict, projection: dict, color_by: str | None) -> str:
    k = neighbours["k"]
    index = neighbours.get("index") or {}
    rows = [
        ("vector index", index.get("name")),
        ("similarity function", index.get("similarity_function")),
        ("vector.hnsw.m", index.get("hnsw_m")),
        ("vector.hnsw.ef_construction", index.get("hnsw_ef_construction")),
        ("vector.quantization.enabled", index.get("quantization")),
        ("quantization type (2026.x servers)", index.get("quantization_type")),
        ("vectors in this run's Parquet (exact search)", neighbours.get("vectors_in_run")),
        ("vectors in the graph (index search)", neighbours.get("vectors_in_graph")),
        ("proteins sampled", neighbours["sampled"]),
        (f"recall@{k} of the index against exact search", neighbours["recall_at_k"]),
    ]
    same = neighbours.get("same_label")
    if same:
        rows += [
            (f"share of the {k} index neighbours with the same {color_by}", same["index"]),
            (f"share of the {k} exact neighbours with the same {color_by}", same["exact"]),
            (f"chance that two proteins share a {color_by}", same["chance"]),
            (f"sampled proteins with a {color_by}", same["queries_with_label"]),
        ]
    note = neighbours.get("note")
    text = (
        "<p>For a fixed random sample of proteins, the vector index's k nearest neighbours "
        "(as nearest_neighbours returns them) are compared with exact search over the "
        "run's merged Parquet, with the index's similarity function. The index is "
        "approximate (HNSW, optionally quantized); this measures how approximate.</p>"
    )
    if neighbours.get("vectors_in_graph") != neighbours.get("vectors_in_run"):
        text += (
            "<p><b>The graph holds other vectors than this run's</b> (earlier runs): the "
            "index searches them all, exact search only this run's.</p>"
        )
    if note:
        text += f"<p>Not measured: {html.escape(note)}.</p>"
    text += _table(["", "value"], rows)
    separation = projection.get("separation")
    if separation:
        text += (
            f"<h3>The {html.escape(str(color_by))} labels in the PCA plane</h3><p>Share of "
            f"the projection's labelled points whose {separation['k']} nearest points in the "
            "plane mostly carry their own label (1: the label forms clouds of its own).</p>"
        )
        rows = [("all labelled points", separation["overall"])]
        text += _table([str(color_by), "share"], rows + list(separation["per_label"].items()))
    return text
