rule load_vectors:
    input:
        embeddings=RUN / "embeddings.parquet",
        rejects=RUN / "rejects.parquet",
    output:
        receipt=RUN / "load" / "receipt.json",
    log:
        RUN / "logs" / "load.log",
    conda:
        "../../envs/graph.yaml"
    script:
        "../../scripts/load.py"
