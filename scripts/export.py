"""Snakemake script of checkpoint export_sequences: see protembed.steps.export."""

from protembed.jobs import snakemake_job
from protembed.steps import export

with snakemake_job(snakemake):
    params = snakemake.params
    export(
        params.graph,
        params.model,
        params.shards,
        snakemake.output.manifest,
        snakemake.output.shards,
    )
