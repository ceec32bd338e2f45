# What the graph holds for the property after the load, whichever runs put it there: the
# report, read_embeddings and a parent workflow's rules read these, not this run's share.
rule snapshot_graph:
    input:
        receipt=rules.load_vectors.output.receipt,
        run_summary=rules.merge_shards.output.summary,
    output:
        vectors=RUN.graph_vectors,
        rejects=RUN.graph_rejects,
        summary=RUN.graph_summary,
    log:
        RUN.log("snapshot"),
    localrule: LOCAL_GRAPH_STEPS
    conda:
        "../../envs/graph.yaml"
    resources:
        mem_mb=grows_with_attempt(4000),
        runtime=grows_with_attempt(120),
    params:
        graph=SETTINGS.graph,
        model=SETTINGS.model,
    script:
        "../../scripts/snapshot.py"
