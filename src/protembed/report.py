"""The report: what the graph holds for the property, this run's share beside it, plots,
the rejects, and a check of the vector index.

`build` writes the pieces that `snakemake --report` assembles (workflow/rules/report.smk):
HTML tables, PNG plots and report.json holding every number shown. Its subject is the
graph, whichever runs put the vectors there: it reads the snapshot the workflow takes of
the property after each load (steps.snapshot: every vector, every rejection and their
provenance), streaming the vectors so that memory stays flat, and it asks the graph for the
vector index's neighbours of a sample and for the property named by report.color_by.
"""

import html
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from . import graph, parquet_io
from .config import GraphSettings, ModelSettings, ReportSettings
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
# Rejected proteins listed in the report (200 pages); every one is in graph/rejects.parquet
# and counted by reason in the plot.
REJECTS_SHOWN = 10000
# Sampled proteins whose neighbour lists are shown.
EXAMPLES = 5
# Vectors read from the snapshot per step of the streaming passes.
BATCH_ROWS = 20000
# Colours of the projection when report.color_by names no property: the length.
LENGTH_BINS = (200, 400, 800)
# Shards and labels are drawn with the same fixed seed on every build of the report.
SEED = 0


def build(
    graph_settings: GraphSettings,
    model: ModelSettings,
    settings: ReportSettings,
    inputs: dict,
    out: dict,
) -> dict:
    """Write the report's pieces to the paths in `out` and return its numbers.

    `inputs` names the files read: graph_vectors, graph_rejects, graph_summary (the snapshot),
    and this run's summary, run_record and receipt. `out` names summary, rejects,
    neighbours (HTML), lengths, throughput, projection, reasons, scores (PNG) and numbers
    (JSON).
    """
    held, summary, record, receipt = (
        parquet_io.read_json(inputs[name])
        for name in ("graph_summary", "summary", "run_record", "receipt")
    )
    rejects = first_rows(inputs["graph_rejects"], REJECTS_SHOWN)
    rejected = parquet_io.count_rows(inputs["graph_rejects"])
    color_by, k = settings.color_by, settings.neighbours
    sample = Sample.draw(inputs["graph_vectors"], settings.sample)

    with graph.ProteinGraph.from_settings(graph_settings, model) as proteins:
        wanted = sample.ids + sample.query_ids
        labels = proteins.property_values(color_by, wanted) if color_by else {}
        index = proteins.vector_index()
        neighbours = neighbour_quality(proteins, index, inputs["graph_vectors"], sample, labels, k)
    neighbours["index"] = _index_settings(index)

    lengths = _add_counts(sample.length_counts, _rejected_lengths(inputs["graph_rejects"]))
    window = record["settings"]["model"].get("max_residues")
    plot_lengths(lengths, window, out["lengths"])
    plot_throughput(summary["throughput"]["shards"], out["throughput"])
    plot_reasons(reasons_of(held["rejected_by_reason"]), out["reasons"])
    plot_scores(neighbours.pop("scores"), out["scores"])
    if color_by:
        shown, title = [labels.get(i) for i in sample.ids], color_by
    else:
        shown, title = [_length_bin(n) for n in sample.point_residues], "length (residues)"
    projection = plot_projection(sample.points, shown, title, out["projection"], sample.total)

    rows = summary_rows(held, summary, record, receipt)
    _write_html(out["summary"], "What the graph holds", _table(["", "graph", "this run"], rows))
    _write_html(out["rejects"], "Rejected proteins", rejects_html(rejects, rejected))
    _write_html(
        out["neighbours"], "Neighbour quality", neighbours_html(neighbours, projection, color_by)
    )
    numbers = {
        "graph": held,
        "summary": {row[0]: row[1] for row in rows},
        "this_run": {row[0]: row[2] for row in rows if row[2] is not None},
        "rejects": rejected,
        "neighbours": neighbours,
        "projection": projection,
        "lengths": {"sequences": int(lengths.sum()), "window": window},
    }
    write_json(numbers, out["numbers"])
    return numbers


def _length_bin(residues: int) -> str:
    low = 0
    for high in LENGTH_BINS:
        if residues < high:
            return f"{low}-{high - 1}"
        low = high
    return f">= {low}"


def first_rows(path, rows: int) -> list[dict]:
    """The file's first `rows` rows, read no further."""
    kept = []
    for batch in parquet_io.iter_batches(path, min(rows, BATCH_ROWS) or 1):
        kept += batch.slice(0, rows - len(kept)).to_pylist()
        if len(kept) >= rows:
            break
    return kept


def _rejected_lengths(path) -> np.ndarray:
    """Proteins per sequence length among the rejections that have one."""
    counts = np.zeros(0, np.int64)
    for batch in parquet_io.iter_batches(path, BATCH_ROWS):
        residues = batch["residues"].drop_null().to_numpy(zero_copy_only=False)
        counts = _add_counts(counts, np.bincount(residues.astype(np.int64)))
    return counts


def _add_counts(counts: np.ndarray, more: np.ndarray) -> np.ndarray:
    """Two per-length counts added, the shorter padded with zeros."""
    if len(more) > len(counts):
        counts, more = more, counts
    counts = counts.copy()
    counts[: len(more)] += more
    return counts


@dataclass
class Sample:
    """What the report reads of the graph's vectors, in one streaming pass: how many
    proteins have each length (every vector counted, one integer a length), a fixed random
    sample of points for the projection and one of queries for the neighbour check.
    Memory: the samples and the counts, not the vectors, whatever the graph's size."""

    total: int
    length_counts: np.ndarray  # [n]: vectors of proteins of n residues
    ids: list[str]  # the projection's points
    points: np.ndarray
    point_residues: list[int]
    query_rows: np.ndarray  # row numbers in the snapshot
    query_ids: list[str]
    queries: np.ndarray

    @property
    def sampled(self) -> int:
        return len(self.ids)

    @classmethod
    def draw(cls, path, queries: int) -> "Sample":
        total = parquet_io.count_rows(path)
        rng = np.random.default_rng(SEED)
        point_rows = _choose(rng, total, PROJECTION_POINTS)
        query_rows = _choose(rng, total, queries)
        lengths, points, asked = np.zeros(0, np.int64), _Picked(), _Picked()
        for start, batch in _batches(path):
            residues = batch["residues"].drop_null().to_numpy(zero_copy_only=False)
            lengths = _add_counts(lengths, np.bincount(residues.astype(np.int64)))
            vectors = _matrix(batch)
            points.take(batch, vectors, point_rows - start)
            asked.take(batch, vectors, query_rows - start)
        return cls(
            total,
            lengths,
            points.ids,
            points.matrix(),
            points.residues,
            query_rows,
            asked.ids,
            asked.matrix(),
        )


@dataclass
class _Picked:
    """The chosen rows of a stream of snapshot batches."""

    ids: list[str] = field(default_factory=list)
    residues: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)

    def take(self, batch, vectors: np.ndarray, rows: np.ndarray) -> None:
        rows = rows[(rows >= 0) & (rows < batch.num_rows)]
        self.ids += batch["id"].take(rows).to_pylist()
        self.residues += batch["residues"].take(rows).to_pylist()
        self.vectors.append(vectors[rows])

    def matrix(self) -> np.ndarray:
        kept = [v for v in self.vectors if len(v)]
        return np.concatenate(kept) if kept else np.zeros((0, 0), np.float32)


def _choose(rng, total: int, size: int) -> np.ndarray:
    if total <= size:
        return np.arange(total)
    return np.sort(rng.choice(total, size, replace=False))


def _batches(path):
    start = 0
    for batch in parquet_io.iter_batches(path, BATCH_ROWS):
        yield start, batch
        start += batch.num_rows


def _matrix(batch) -> np.ndarray:
    column = batch["vector"]
    if batch.num_rows == 0:
        return np.zeros((0, 0), np.float32)
    return column.flatten().to_numpy().reshape(batch.num_rows, -1)


# -- the summary ----------------------------------------------------------------------


def summary_rows(held: dict, summary: dict, record: dict, receipt: dict) -> list:
    """(what, in the graph, this run) rows: counts first, then what made the vectors."""
    run = held.get("this_run") or {}
    rows = [
        ("proteins with a sequence", held["proteins_with_sequence"], None),
        ("vectors", held["vectors"], run.get("embedded")),
        ("rejected", held["rejected"], run.get("rejected")),
        ("without a vector yet", held["without_vector"], None),
        ("exported by this run", None, run.get("exported")),
        ("up to date at this run's export", None, run.get("up_to_date")),
    ]
    rows += [
        (f"rejected: {reason}", n, None)
        for reason, n in reasons_of(held["rejected_by_reason"]).most_common()
    ]
    space = held.get("space") or {}
    rows += [(f"precision: {name}", n, None) for name, n in sorted(held["precision"].items())]
    rows += [(f"batching: {name}", n, None) for name, n in sorted(held["batching"].items())]
    rows += [(f"pipeline: {name}", n, None) for name, n in sorted(held["pipeline"].items())]
    model = record["model"]
    rows += [
        ("model", space.get("model"), model["name"]),
        ("revision", space.get("model_revision"), model["revision"]),
        ("kind", space.get("embedding"), record["vectors"]["embedding"]),
        ("pooling", space.get("pooling"), record["vectors"]["pooling"]),
        ("dimension", held.get("dimension"), record["vectors"]["dimension"]),
        ("vectors created", _span(held.get("created")), None),
        ("property", held["property"], record["property"]),
        ("vector type in the graph", receipt.get("vector_type"), None),
        ("Neo4j", None, _server(record.get("neo4j_server"))),
        ("precision", None, record["compute"]["precision"]),
        ("device", None, record["compute"]["device"]),
        ("residues per second (model time)", None, summary["throughput"]["residues_per_s"]),
    ]
    rows += [(f"version: {name}", None, v) for name, v in sorted(record["versions"].items())]
    return rows


def _span(created: dict | None) -> str | None:
    if not created or not created.get("first"):
        return None
    first, last = created["first"][:19], created["last"][:19]
    return first if first == last else f"{first} to {last}"


def reasons_of(counts: dict) -> Counter:
    """Rejections by reason, so that alike ones add up: numbers in the reason (lengths,
    token counts) become N, but what is quoted (the characters a model cannot read, '1'
    among them) stays as it is."""
    grouped = Counter()
    for reason, n in counts.items():
        grouped[re.sub(r"'[^']*'|\d+", lambda m: m[0] if m[0][0] == "'" else "N", reason)] += n
    return grouped


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


def similarities(vectors: np.ndarray, queries: np.ndarray, similarity: str) -> np.ndarray:
    """(rows, queries) similarities as the index scores them (higher is nearer)."""
    if similarity == "euclidean":
        # |a - b|^2 = |a|^2 + |b|^2 - 2ab: no (rows, queries, dimension) difference array.
        squared = (vectors**2).sum(1)[:, None] + (queries**2).sum(1)[None] - 2 * vectors @ queries.T
        return -np.sqrt(np.maximum(squared, 0))
    return _unit(vectors) @ _unit(queries).T


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1
    return vectors / norms[:, None]


def neighbour_quality(proteins, index, path, sample: Sample, labels: dict, k: int) -> dict:
    """recall@k of the vector index against exact search over every vector the property
    holds, and the share of the k nearest neighbours (by the index, and exactly) that share
    the query's label.

    Exact search streams the snapshot once, keeping each query's k best; identical
    sequences make ties, so an index neighbour counts as found when its exact similarity
    reaches the k-th best, whichever of the tied proteins the index returned.
    """
    result = {"k": k, "sampled": 0, "recall_at_k": None, "vectors": sample.total, "scores": []}
    if index is None or sample.total <= k:
        result["note"] = "no vector index" if index is None else f"{sample.total} vectors, k={k}"
        return result
    similarity = index.similarity or "cosine"
    returned = [proteins.nearest_neighbours(q, k) for q in sample.query_ids]
    exact = _exact_search(path, sample, returned, k, similarity)
    found, same = 0, {"index": [], "exact": []}
    for q, query in enumerate(sample.query_ids):
        kth = exact["best"][q][-1][0]
        found += sum(exact["score"][q].get(p, -np.inf) >= kth - 1e-6 for p, _ in returned[q])
        label = labels.get(query)
        if label is not None:
            same["index"].append(np.mean([labels.get(p) == label for p, _ in returned[q]]))
            same["exact"].append(np.mean([labels.get(p) == label for _, p in exact["best"][q]]))
    result.update(
        sampled=len(sample.query_ids),
        recall_at_k=round(found / (k * len(sample.query_ids)), 4),
        scores=[score for neighbours in returned for _, score in neighbours],
        examples=[
            {"query": query, "neighbours": [[p, round(s, 4), labels.get(p)] for p, s in found_]}
            for query, found_ in list(zip(sample.query_ids, returned, strict=True))[:EXAMPLES]
        ],
    )
    if labels:
        counts = Counter(labels.get(i) for i in sample.ids if labels.get(i) is not None)
        total = sum(counts.values())
        result["same_label"] = {
            "index": round(float(np.mean(same["index"])), 4) if same["index"] else None,
            "exact": round(float(np.mean(same["exact"])), 4) if same["exact"] else None,
            # What a random neighbour would give: the chance two proteins share a label.
            "chance": round(sum((n / total) ** 2 for n in counts.values()), 4) if total else None,
            "queries_with_label": len(same["index"]),
        }
    return result


def _exact_search(path, sample: Sample, returned: list, k: int, similarity: str) -> dict:
    """Each query's k best (score, id) over the snapshot, leaving the query's own row out,
    and the exact score of each protein the index returned for it."""
    wanted = [{p for p, _ in neighbours} for neighbours in returned]
    best = [[] for _ in sample.query_ids]
    score = [{} for _ in sample.query_ids]
    for start, batch in _batches(path):
        ids = batch["id"].to_pylist()
        rows_of = defaultdict(list)  # nodes may share an id
        for row, protein in enumerate(ids):
            rows_of[protein].append(row)
        scores = similarities(_matrix(batch), sample.queries, similarity)
        own = sample.query_rows - start
        inside = (own >= 0) & (own < len(ids))
        scores[own[inside], np.flatnonzero(inside)] = -np.inf
        # Each query's k best rows of the batch, in one call (not a sort per query).
        tops = np.argpartition(-scores, k - 1, axis=0)[:k] if len(ids) > k else None
        for q in range(len(best)):
            column = scores[:, q]
            top = range(len(ids)) if tops is None else tops[:, q]
            merged = best[q] + [(float(column[r]), ids[r]) for r in top]
            best[q] = sorted(merged, key=lambda pair: -pair[0])[:k]
            for protein in wanted[q]:
                for row in rows_of.get(protein, ()):
                    score[q][protein] = max(score[q].get(protein, -np.inf), float(column[row]))
    return {"best": best, "score": score}


# -- plots ----------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path) -> None:
    with parquet_io.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")


def plot_lengths(counts: np.ndarray, window: int | None, path) -> None:
    """The length histogram from `counts[n]`, the proteins of n residues."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.5))
    lengths = np.flatnonzero(counts)
    shown = counts[lengths] if len(lengths) else [1]
    axes.hist(lengths if len(lengths) else [0], bins=60, weights=shown, color="#4c72b0")
    axes.set_xlabel("sequence length (residues)")
    axes.set_ylabel("sequences")
    longest = int(lengths.max()) if len(lengths) else 0
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


def plot_reasons(counts: Counter, path) -> None:
    """Rejections by reason, the most frequent on top."""
    plt = _pyplot()
    shown = counts.most_common(15)
    figure, axes = plt.subplots(figsize=(8, 0.6 + 0.35 * max(len(shown), 1)))
    if shown:
        names = [name if len(name) <= 70 else name[:67] + "..." for name, _ in shown]
        axes.barh(names[::-1], [n for _, n in shown][::-1], color="#c44e52")
        axes.set_xlabel("proteins")
        axes.set_title("Why proteins have no vector")
    else:
        axes.set_axis_off()
        axes.set_title("No protein was rejected")
    _save(figure, path)
    plt.close(figure)


def plot_scores(scores: list[float], path) -> None:
    """The similarity scores of the index's neighbours of the sampled proteins."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.hist(scores or [0], bins=50, color="#8172b2")
    axes.set_xlabel("score of an index neighbour (as the index reports it)")
    axes.set_ylabel("neighbours")
    axes.set_title(f"Similarity of the sampled proteins' neighbours ({len(scores):,})")
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


def plot_projection(
    vectors: np.ndarray, labels: list, color_by: str | None, path, total: int | None = None
) -> dict:
    """A 2-D PCA of the vectors (a sample of `total`, when given), coloured by label;
    returns how well the labels separate in it (see _separation)."""
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
        coloured = sorted(frequent[:COLOURED_LABELS], key=str)  # the legend in order
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
    title = "PCA of the vectors"
    shown = result["points"]
    total = max(total or 0, len(vectors))
    if shown < total:
        title = f"PCA of a random sample of {shown:,} of the {total:,} vectors"
    result["vectors"] = total
    axes.set_title(f"{title}, coloured by {color_by}" if color_by else title)
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
    with parquet_io.atomic_path(path) as temporary:
        temporary.write_text(document)


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


def rejects_html(rejects: list[dict], total: int | None = None) -> str:
    """The rejects table, REJECTS_PER_PAGE rows a page (pages switch by link, no script);
    `rejects` may be the first of `total`."""
    if not rejects:
        return "<p>No protein was rejected.</p>"
    rows = [(r["id"], r["reason"]) for r in rejects]
    pages = [rows[i : i + REJECTS_PER_PAGE] for i in range(0, len(rows), REJECTS_PER_PAGE)]
    total = max(total or 0, len(rows))
    intro = f"<p>{total:,} rejected proteins"
    if total > len(rows):
        intro += (
            f" (the first {len(rows):,} listed here; every one is in the run's "
            "graph/rejects.parquet, and counted by reason in the plot)"
        )
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
        ("vectors in the graph (searched both ways)", neighbours.get("vectors")),
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
        "(as nearest_neighbours returns them) are compared with exact search over every "
        "vector the graph holds for the property, with the index's similarity function. The "
        "index is approximate (HNSW, optionally quantized); this measures how approximate.</p>"
    )
    if note:
        text += f"<p>Not measured: {html.escape(note)}.</p>"
    text += _table(["", "value"], rows)
    examples = neighbours.get("examples") or []
    if examples:
        text += f"<h3>Examples: the index's {k} nearest neighbours of sampled proteins</h3>"
        header = ["query", "neighbour", "score"] + ([str(color_by)] if color_by else [])
        lines = [
            [example["query"] if n == 0 else "", *entry[:2]] + ([entry[2]] if color_by else [])
            for example in examples
            for n, entry in enumerate(example["neighbours"])
        ]
        text += _table(header, lines)
    separation = projection.get("separation")
    if separation and color_by:
        text += (
            f"<h3>The {html.escape(str(color_by))} labels in the PCA plane</h3><p>Share of "
            f"the projection's labelled points whose {separation['k']} nearest points in the "
            "plane mostly carry their own label (1: the label forms clouds of its own).</p>"
        )
        rows = [("all labelled points", separation["overall"])]
        text += _table([str(color_by), "share"], rows + list(separation["per_label"].items()))
    return text
