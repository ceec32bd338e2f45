"""Snakemake script of rule snapshot_graph: see protembed.steps.snapshot."""

from protembed.jobs import snakemake_job
from protembed.steps import snapshot

with snakemake_job(snakemake):
    out, params = snakemake.output, snakemake.params
    snapshot(
        params.graph,
        params.model,
        out.vectors,
        out.rejects,
        out.summary,
        snakemake.input.run_summary,
    )
