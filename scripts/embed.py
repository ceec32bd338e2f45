"""Snakemake script of rule embed_shard: see protembed.steps.embed."""

import torch

from protembed.jobs import snakemake_job
from protembed.steps import embed

with snakemake_job(snakemake) as progress:
    torch.set_num_threads(snakemake.threads)
    embed(
        snakemake.config,
        snakemake.input.shard,
        snakemake.output.embeddings,
        snakemake.output.rejects,
        progress=progress,
    )
