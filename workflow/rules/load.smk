rule load_vectors:
    input:
        embeddings=rules.merge_shards.output.embeddings,
        rejects=rules.merge_shards.output.rejects,
    output:
        receipt=RUN.receipt,
    log:
        RUN.log("load"),
    localrule: LOCAL_GRAPH_STEPS
    conda:
        "../../envs/graph.yaml"
    resources:
        mem_mb=grows_with_attempt(4000),
        runtime=grows_with_attempt(240),
    params:
        graph=SETTINGS.graph,
        model=SETTINGS.model,
    script:
        "../../scripts/load.py"
