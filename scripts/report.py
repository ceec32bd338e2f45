"""Snakemake script of rule report: see protembed.report.build."""

from protembed.jobs import snakemake_job
from protembed.report import build

with snakemake_job(snakemake):
    params = snakemake.params
    build(params.graph, params.model, params.report, dict(snakemake.input), dict(snakemake.output))
