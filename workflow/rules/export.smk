rule export_sequences:
    output:
        manifest=RUN / "export" / "manifest.json",
        shards=expand(RUN / "export" / "shard-{shard}.parquet", shard=SHARDS),
    log:
        RUN / "logs" / "export.log",
    conda:
        "../../envs/graph.yaml"
    script:
        "../../scripts/export.py"
