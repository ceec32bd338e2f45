rule load_vectors:
    input:
        embeddings=RUN / "embeddings.parquet",
        rejects=RUN / "rejects.parquet",
    output:
        receipt=RUN / "load" / "receipt.json",
    log:
        RUN / "logs" / "load.log",
    localrule: LOCAL_GRAPH_STEPS
    conda:
        "../../envs/graph.yaml"
    resources:
        mem_mb=grows_with_attempt(4000),
        runtime=grows_with_attempt(240),
    script:
        "../../scripts/load.py"
