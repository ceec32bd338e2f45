"""The `protembed` command: questions to the graph once the workflow has filled it.

    protembed neighbours P14835 -k 10 [--config config.yaml] [--property NAME]

The connection comes from NEO4J_URI, NEO4J_USERNAME, NEO4J_PASSWORD and NEO4J_DATABASE;
label, id property and vector property from the workflow's config file.
"""

import argparse
import sys

from . import graph
from .config import load_settings
from .errors import UserError
from .names import identifier


def neighbours(args: argparse.Namespace) -> None:
    settings = load_settings(args.config)
    model = settings.model
    if args.property:
        model = model._replace(property=identifier(args.property, "--property"))
    with graph.ProteinGraph.from_settings(settings.graph, model) as proteins:
        found = proteins.nearest_neighbours(args.accession, args.k)
        if not found:
            raise UserError(_no_neighbours(proteins, args.accession))
    for protein_id, score in found:
        print(f"{protein_id}\t{score:.4f}")


def _no_neighbours(proteins: graph.ProteinGraph, accession: str) -> str:
    """Why a protein has no neighbours, as the graph tells it."""
    protein = f"{proteins.label} {accession!r}"
    vector = proteins.vector_property
    status = proteins.vector_status(accession)
    if status.nodes == 0:
        return f"no {proteins.label} has {proteins.id_property} {accession!r}; is the id right?"
    if status.embedded:
        return f"{protein} has a {vector} vector, but no other {proteins.label} has one"
    if status.rejected:
        reasons = "; ".join(status.rejected)
        return f"{protein} has no {vector} vector: the model rejected its sequence ({reasons})"
    if not status.with_sequence:
        return f"{protein} has no {proteins.sequence_property}, so nothing to embed"
    return (
        f"{protein} has no {vector} vector yet (added, or its sequence changed, since this "
        "model's last run): run the workflow (snakemake --forcerun export_sequences)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="protembed", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    near = commands.add_parser(
        "neighbours",
        help="the k proteins most similar to one protein, by the model's vector index",
        description="Print the k nearest proteins (id and cosine score, best first).",
    )
    near.add_argument("accession", help="id of the query protein (graph.id_property)")
    near.add_argument("-k", type=int, default=10, help="how many neighbours (default 10)")
    near.add_argument(
        "--config", default="config.yaml", help="the workflow's config (default config.yaml)"
    )
    near.add_argument(
        "--property",
        help="vector property to search (default: the one config's model writes)",
    )
    near.set_defaults(run=neighbours)
    args = parser.parse_args(argv)
    if getattr(args, "k", 1) < 1:
        parser.error("-k must be at least 1")
    try:
        args.run(args)
    except UserError as error:
        print(f"protembed: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
