from protembed.adapters import environment as embed_environment


rule embed_shard:
    input:
        shard=RUN.shard("{shard}"),
    output:
        embeddings=RUN.shard_embeddings("{shard}"),
        rejects=RUN.shard_rejects("{shard}"),
        residues=RUN.shard_residues("{shard}"),
    log:
        RUN.log("embed/shard-{shard}"),
    conda:
        # ESM-3 needs the esm package's own environment (docs/models.md, Two environments).
        f"../../envs/{embed_environment(SETTINGS.model)}"
    threads: 4
    resources:
        gpu=1,
        mem_mb=grows_with_attempt(16000),
        runtime=grows_with_attempt(240),
        token_budget_divisor=token_budget_divisor,
    params:
        model=SETTINGS.model,
    script:
        "../../scripts/embed.py"
