"""Snakemake script of rule load_vectors: see protembed.steps.load."""

from protembed.jobs import snakemake_job
from protembed.steps import load

with snakemake_job(snakemake):
    load(
        snakemake.params.graph,
        snakemake.params.model,
        snakemake.input.embeddings,
        snakemake.input.rejects,
        snakemake.output.receipt,
    )
