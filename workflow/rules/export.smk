# A checkpoint: how many shards (embed jobs) there are is known once the export has counted
# the proteins that need a vector, and the rules below it read that from the manifest.
checkpoint export_sequences:
    output:
        manifest=RUN / "export" / "manifest.json",
        shards=directory(RUN / "export" / "shards"),
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
