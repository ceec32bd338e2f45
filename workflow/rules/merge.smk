rule merge_shards:
    input:
        manifest=rules.export_sequences.output.manifest,
        embeddings=embedded_shards(RUN.shard_embeddings),
        rejects=embedded_shards(RUN.shard_rejects),
    output:
        embeddings=RUN.embeddings,
        rejects=RUN.rejects,
        summary=RUN.summary,
        run_record=RUN.run_record,
    log:
        RUN.log("merge"),
    localrule: LOCAL_GRAPH_STEPS
    conda:
        "../../envs/graph.yaml"
    resources:
        mem_mb=grows_with_attempt(4000),
        runtime=grows_with_attempt(60),
    params:
        model=SETTINGS.model,
    script:
        "../../scripts/merge.py"
