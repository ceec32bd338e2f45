# The run's report. Not part of `all`: it is built only when asked for, with
#   snakemake report --report report.html --report-after-run
# so that a plain run pays nothing for it.


rule report:
    input:
        manifest=RUN / "export" / "manifest.json",
        summary=RUN / "summary.json",
        run_record=RUN / "run.json",
        embeddings=RUN / "embeddings.parquet",
        rejects=RUN / "rejects.parquet",
        receipt=RUN / "load" / "receipt.json",
    output:
        summary=report(
            RUN / "report" / "summary.html",
            caption="../report/summary.rst",
            category="1. Run",
            labels={"table": "summary"},
        ),
        lengths=report(
            RUN / "report" / "lengths.png",
            caption="../report/lengths.rst",
            category="2. Plots",
            labels={"plot": "sequence lengths"},
        ),
        throughput=report(
            RUN / "report" / "throughput.png",
            caption="../report/throughput.rst",
            category="2. Plots",
            labels={"plot": "throughput per shard"},
        ),
        projection=report(
            RUN / "report" / "projection.png",
            caption="../report/projection.rst",
            category="2. Plots",
            labels={"plot": "PCA projection"},
        ),
        rejects=report(
            RUN / "report" / "rejects.html",
            caption="../report/rejects.rst",
            category="3. Rejects",
            labels={"table": "rejects"},
        ),
        neighbours=report(
            RUN / "report" / "neighbours.html",
            caption="../report/neighbours.rst",
            category="4. Neighbour quality",
            labels={"table": "recall and same-label share"},
        ),
        numbers=RUN / "report" / "report.json",
    log:
        RUN / "logs" / "report.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/report.py"
