"""Snakemake script of checkpoint export_sequences: see protembed.steps.export."""

from protembed.jobs import snakemake_job
from protembed.steps import export

with snakemake_job(snakemake):
    export(snakemake.config, snakemake.output.manifest, snakemake.output.shards)
