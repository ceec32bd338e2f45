from protembed.adapters import environment as embed_environment


rule embed_shard:
    input:
        shard=RUN / "export" / "shards" / "shard-{shard}.parquet",
    output:
        embeddings=RUN / "embed" / "shard-{shard}.parquet",
        rejects=RUN / "embed" / "shard-{shard}.rejects.parquet",
        residues=RUN / "embed" / "shard-{shard}.residues.parquet",
    log:
        RUN / "logs" / "embed" / "shard-{shard}.log",
    conda:
        # ESM-3 needs the esm package's own environment (see the README's table).
        f"../../envs/{embed_environment(config['model'])}"
    threads: 4
    resources:
        gpu=1,
        mem_mb=grows_with_attempt(16000),
        runtime=grows_with_attempt(240),
        token_budget_divisor=token_budget_divisor,
    script:
        "../../scripts/embed.py"
