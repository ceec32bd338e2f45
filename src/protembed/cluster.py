"""What a run on a SLURM cluster must get right before snakemake submits anything."""

from .errors import UserError


def check_array_slots(shards: int, array_rules: str | None, job_slots: int | None) -> None:
    """Refuse more shards than job slots while the embed jobs go to SLURM as arrays.

    The SLURM plugin (2.8.0) submits a rule's jobs as an array only once it holds every
    ready one; jobs handed to it in a smaller batch are held back for good, and with fewer
    slots (--jobs) than ready embed jobs the run hangs (the plugin's issue 473).
    """
    rules = {name.strip() for name in (array_rules or "").replace(";", ",").split(",")}
    if rules & {"all", "embed_shard"} and job_slots is not None and shards > job_slots:
        raise UserError(
            f"shards: {shards} is more than the {job_slots} jobs snakemake may have at once "
            "(--jobs) while embed jobs go to SLURM as arrays (--slurm-array-jobs); the SLURM "
            f"plugin would wait for the rest forever: set --jobs to at least {shards}, or "
            "lower shards"
        )
