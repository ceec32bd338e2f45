"""A PyEED user's session, in one process of .venv-pyeed: neomodel 7 makes PyEED's schema
and saves proteins as PyEED does, protembed embeds them into PyEED's `embedding` property
and finds neighbours, and neomodel reads the vectors back. Prints what it saw as JSON.

    python use_protembed.py WORK_DIR
Connection from NEO4J_URI, NEO4J_USERNAME and NEO4J_PASSWORD, as everywhere else.
"""

import importlib.metadata
import json
import sys
from pathlib import Path

from make_schema import Protein
from neomodel import config, db

import protembed
from protembed import graph
from protembed.demo.offline_model import save_random_esm2
from protembed.demo.proteins import read_proteins

REPO = Path(__file__).resolve().parents[3]
FAMILIES = ("TEM", "SHV", "CTX-M", "KPC")
PER_FAMILY = 5


def proteins() -> list[dict]:
    every = read_proteins(
        REPO / "tests" / "data" / "betalactamase_families.fasta", attributes=("family",)
    )
    return [p for f in FAMILIES for p in [p for p in every if p.get("family") == f][:PER_FAMILY]]


def main(work: Path) -> dict:
    connection = graph.Connection.from_env()
    host = connection.uri.split("://", 1)[1]
    config.DATABASE_URL = f"bolt://{connection.user}:{connection.password}@{host}"
    db.install_labels(Protein)
    chosen = proteins()
    for p in chosen:
        Protein(
            accession_id=p["accession_id"], sequence=p["sequence"], seq_length=len(p["sequence"])
        ).save()

    # Built here, by this environment's transformers: ESM-2 650M's width, one layer.
    model = save_random_esm2(work / "esm2_1280", layers=1, hidden=1280, heads=20)
    summary = protembed.embed_graph(
        {
            "results": str(work / "results"),
            "shards": 2,
            "graph": {"export_page_size": 7},
            "model": {"name": str(model), "property": "embedding", "device": "cpu"},
        },
        progress=False,
    )
    query = chosen[0]["accession_id"]
    with graph.ProteinGraph.connect(vector_property="embedding") as found:
        neighbours = found.nearest_neighbours(query, k=5)
        server = found.server.version
    # PyEED's EmbeddingTool.find_nearest_neighbors_based_on_vector_index, through neomodel.
    pyeed_rows, _ = db.cypher_query(
        "MATCH (source:Protein {accession_id: $id}) WITH source.embedding AS embedding "
        "CALL db.index.vector.queryNodes('vector_index_Protein_embedding', 5, embedding) "
        "YIELD node AS fprotein, score RETURN fprotein.accession_id, score",
        {"id": query},
    )
    vector = Protein.nodes.get(accession_id=query).embedding
    db.close_connection()
    versions = {
        name: importlib.metadata.version(name)
        for name in ("neo4j", "neo4j-rust-ext", "neomodel", "biopython", "torch", "transformers")
    }
    return {
        "versions": versions,
        "protembed": protembed.__file__,
        "rust_extension_loaded": graph.rust_extension_loaded(),
        "server": server,
        "saved": [p["accession_id"] for p in chosen],
        "summary": summary,
        "query": query,
        "neighbours": neighbours,
        "pyeed_neighbours": pyeed_rows,
        "neomodel_vector": vector,
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
