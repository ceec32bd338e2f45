"""Snakemake script of rule embed_shard: see protembed.steps.embed."""

import logging

from protembed.gpu_lease import lease_gpu
from protembed.jobs import snakemake_job

with snakemake_job(snakemake) as progress, lease_gpu(snakemake.params.model.device):
    # torch only now: CUDA reads CUDA_VISIBLE_DEVICES once, when it starts, and the lease
    # has just set it.
    import torch

    from protembed.steps import embed

    resources = snakemake.resources
    logging.getLogger("protembed.embed").info(
        "shard %s: %d threads, mem_mb=%s, runtime=%s min, token budget divided by %d",
        snakemake.wildcards.shard,
        snakemake.threads,
        resources.get("mem_mb"),
        resources.get("runtime"),
        resources.token_budget_divisor,
    )
    torch.set_num_threads(snakemake.threads)
    embed(
        snakemake.params.model,
        snakemake.input.shard,
        snakemake.output.embeddings,
        snakemake.output.rejects,
        progress=progress,
        token_budget_divisor=resources.token_budget_divisor,
        residues_path=snakemake.output.residues,
    )
