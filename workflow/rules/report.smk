# The report of what the graph holds. Not part of `all`: it is built only when asked for,
# with (docs/report.md's command, run by tests/test_report.py)
#   snakemake --cores 8 report --report report.html --report-after-run
# so that a plain run pays nothing for it.


rule report:
    input:
        graph_vectors=rules.snapshot_graph.output.vectors,
        graph_rejects=rules.snapshot_graph.output.rejects,
        graph_summary=rules.snapshot_graph.output.summary,
        summary=rules.merge_shards.output.summary,
        run_record=rules.merge_shards.output.run_record,
        receipt=rules.load_vectors.output.receipt,
    output:
        summary=report(
            RUN.report / "summary.html",
            caption="../report/summary.rst",
            category="1. Run",
            labels={"table": "summary"},
        ),
        lengths=report(
            RUN.report / "lengths.png",
            caption="../report/lengths.rst",
            category="2. Plots",
            labels={"plot": "sequence lengths"},
        ),
        throughput=report(
            RUN.report / "throughput.png",
            caption="../report/throughput.rst",
            category="2. Plots",
            labels={"plot": "throughput per shard"},
        ),
        projection=report(
            RUN.report / "projection.png",
            caption="../report/projection.rst",
            category="2. Plots",
            labels={"plot": "PCA projection"},
        ),
        reasons=report(
            RUN.report / "reasons.png",
            caption="../report/reasons.rst",
            category="3. Rejects",
            labels={"plot": "reasons"},
        ),
        scores=report(
            RUN.report / "scores.png",
            caption="../report/scores.rst",
            category="4. Neighbour quality",
            labels={"plot": "neighbour scores"},
        ),
        rejects=report(
            RUN.report / "rejects.html",
            caption="../report/rejects.rst",
            category="3. Rejects",
            labels={"table": "rejects"},
        ),
        neighbours=report(
            RUN.report / "neighbours.html",
            caption="../report/neighbours.rst",
            category="4. Neighbour quality",
            labels={"table": "recall and same-label share"},
        ),
        numbers=RUN.report / "report.json",
    log:
        RUN.log("report"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        graph=SETTINGS.graph,
        model=SETTINGS.model,
        report=SETTINGS.report,
    script:
        "../../scripts/report.py"
