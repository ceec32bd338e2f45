from snakemake.utils import min_version

from protembed.config import fill_and_check, settings_of
from protembed.parquet_io import read_json

min_version("9.14.1")


# Checked once, with the schema's defaults filled in: rules look settings up in `config`
# through params (a changed setting reruns the rules that read it), and the typed sections
# in SETTINGS name the run's files.
fill_and_check(config)
SETTINGS = settings_of(config)
# All outputs of one model live under one directory named after its vector property, so
# several models can be run side by side from one checkout.
RUN = SETTINGS.layout


def embedded_shards(pattern):
    """An input function: the embed outputs `pattern` names (a RunLayout method), one per
    shard of the export (a checkpoint: until it has run, the merge waits for it and no embed job is planned).
    """

    def files(wildcards):
        manifest = checkpoints.export_sequences.get().output.manifest
        shards = range(len(read_json(manifest)["shards"]))
        return [pattern(shard) for shard in shards]

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
LOCAL_GRAPH_STEPS = SETTINGS.local_graph_steps


# A user's mistake (a typo'd label, a model that is not there, a server that is down) is
# reported in one line before any job runs, so no profile's `retries` repeats it.
onstart:
    from protembed.cluster import check_array_slots
    from protembed.jobs import refuse_user_errors
    from protembed.preflight import check_before_run

    with refuse_user_errors():
        check_array_slots(
            SETTINGS.shards.most,
            getattr(workflow.executor_settings, "array_jobs", None),
            workflow.resource_settings.nodes,
        )
        check_before_run(SETTINGS)


onsuccess:
    from protembed.jobs import say_what_the_graph_holds

    say_what_the_graph_holds(RUN.summary, RUN.graph_summary)
