# A checkpoint: how many shards (embed jobs) there are is known once the export has counted
# the proteins that need a vector, and the rules below it read that from the manifest.
checkpoint export_sequences:
    output:
        manifest=RUN.manifest,
        shards=directory(RUN.shards),
    log:
        RUN.log("export"),
    localrule: LOCAL_GRAPH_STEPS
    conda:
        "../../envs/graph.yaml"
    resources:
        mem_mb=grows_with_attempt(8000),
        runtime=grows_with_attempt(120),
    params:
        graph=SETTINGS.graph,
        model=SETTINGS.model,
        shards=SETTINGS.shards,
    script:
        "../../scripts/export.py"
