rule export_sequences:
    output:
        manifest=RUN / "export" / "manifest.json",
        shards=expand(RUN / "export" / "shard-{shard}.parquet", shard=SHARDS),
    log:
        RUN / "logs" / "export.log",
    localrule: LOCAL_GRAPH_STEPS
    conda:
        "../../envs/graph.yaml"
    resources:
        mem_mb=grows_with_attempt(8000),
        runtime=grows_with_attempt(120),
    script:
        "../../scripts/export.py"
