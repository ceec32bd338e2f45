"""Snakemake script of rule merge_shards: see protembed.steps.merge."""

from protembed.jobs import snakemake_job
from protembed.steps import merge

with snakemake_job(snakemake):
    merge(
        snakemake.params.model,
        snakemake.input.manifest,
        list(snakemake.input.embeddings),
        list(snakemake.input.rejects),
        snakemake.output.embeddings,
        snakemake.output.rejects,
        snakemake.output.summary,
        snakemake.output.run_record,
    )
