rule merge_shards:
    input:
        manifest=RUN / "export" / "manifest.json",
        embeddings=expand(RUN / "embed" / "shard-{shard}.parquet", shard=SHARDS),
        rejects=expand(RUN / "embed" / "shard-{shard}.rejects.parquet", shard=SHARDS),
    output:
        embeddings=RUN / "embeddings.parquet",
        rejects=RUN / "rejects.parquet",
        summary=RUN / "summary.json",
    log:
        RUN / "logs" / "merge.log",
    conda:
        "../../envs/graph.yaml"
    script:
        "../../scripts/merge.py"
