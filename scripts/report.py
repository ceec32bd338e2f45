"""Snakemake script of rule report: see protembed.report.build."""

from protembed.jobs import snakemake_job
from protembed.report import build

with snakemake_job(snakemake):
    build(snakemake.config, dict(snakemake.input), dict(snakemake.output))
