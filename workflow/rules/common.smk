from pathlib import Path

from snakemake.utils import min_version, validate

from protembed.config import check_config
from protembed.names import vector_property
from protembed.parquet_io import read_json

min_version("9.14.1")


check_config(config)
validate(config, schema="../schemas/config.schema.yaml")

# All outputs of one model live under one directory named after its vector property, so
# several models can be run side by side from one checkout.
RUN = Path(config["results"]) / vector_property(config)


def embedded_shards(pattern):
    """An input function: the embed outputs named by `pattern`, one per shard of the export
    (a checkpoint: until it has run, the merge waits for it and no embed job is planned).
    """

    def files(wildcards):
        manifest = checkpoints.export_sequences.get().output.manifest
        shards = range(len(read_json(manifest)["shards"]))
        return expand(RUN / "embed" / pattern, shard=shards)

    return files


# Resources. A job that fails is retried (--retries, set in the profiles) with more memory
# and time and, for embedding, a smaller token budget: running out of memory or time are
# the usual reasons a job fails on a cluster.
def grows_with_attempt(first):
    """`first` on the first attempt, twice that on the second, three times on the third."""
    return lambda wildcards, attempt: first * attempt


def token_budget_divisor(wildcards, attempt):
    """The embed job divides its token budget by this: 1, then 2, 4, ... on retries."""
    return 2 ** (attempt - 1)


# Export, merge and load run where snakemake runs, not as cluster jobs, when compute nodes
# cannot reach Neo4j (execution.local_graph_steps).
LOCAL_GRAPH_STEPS = config["execution"]["local_graph_steps"]


# A user's mistake (a typo'd label, a model that is not there, a server that is down) is
# reported in one line before any job runs, so no profile's `retries` repeats it.
onstart:
    from protembed.cluster import check_array_slots
    from protembed.jobs import refuse_user_errors
    from protembed.preflight import check_before_run

    with refuse_user_errors():
        check_array_slots(
            config["shards"],
            getattr(workflow.executor_settings, "array_jobs", None),
            workflow.resource_settings.nodes,
        )
        check_before_run(config)


onsuccess:
    from protembed.jobs import say_what_the_graph_holds

    say_what_the_graph_holds(RUN / "summary.json", RUN / "graph" / "summary.json")
