rule merge_shards:
    input:
        manifest=RUN / "export" / "manifest.json",
        embeddings=embedded_shards("shard-{shard}.parquet"),
        rejects=embedded_shards("shard-{shard}.rejects.parquet"),
    output:
        embeddings=RUN / "embeddings.parquet",
        rejects=RUN / "rejects.parquet",
        summary=RUN / "summary.json",
        run_record=RUN / "run.json",
    log:
        RUN / "logs" / "merge.log",
    localrule: LOCAL_GRAPH_STEPS
    conda:
        "../../envs/graph.yaml"
    resources:
        mem_mb=grows_with_attempt(4000),
        runtime=grows_with_attempt(60),
    script:
        "../../scripts/merge.py"
