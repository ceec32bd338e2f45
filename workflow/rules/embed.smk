rule embed_shard:
    input:
        shard=RUN / "export" / "shard-{shard}.parquet",
    output:
        embeddings=RUN / "embed" / "shard-{shard}.parquet",
        rejects=RUN / "embed" / "shard-{shard}.rejects.parquet",
    log:
        RUN / "logs" / "embed" / "shard-{shard}.log",
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/embed.yaml"
    script:
        "../../scripts/embed.py"
