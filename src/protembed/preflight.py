"""A user's mistakes, caught in seconds, before any work and before any write to their graph.

The workflow runs `check_before_run` once when it starts (common.smk's onstart, where
Snakemake runs no job yet, so no profile's `retries` can repeat a user error), and
`embed_graph` does the same. The export step repeats the checks that guard the graph's
schema, so that no path creates an index for a label or property no node has.

What it checks, each failing in one line that says which case it is:
- the model: a local directory that does not exist, a hub name that is neither cached nor
  on a reachable hub (asked once, within 5 s, no retries), a family it cannot tell;
- the server: reachable, credentials, database (graph.connect: no retries here);
- the graph's names: the label, id and sequence properties, and report.color_by, each held
  by at least one node; otherwise the names that exist, nearest first.
"""

import os
from pathlib import Path

from neo4j.exceptions import DriverError, Neo4jError

from . import graph
from .adapters import hub_snapshot, resolve_family
from .config import ModelSettings, Settings
from .errors import UserError

HUB_TIMEOUT_S = 5


def check_before_run(settings: Settings) -> None:
    check_model(settings.model)
    connection = graph.Connection.from_env()
    try:
        with graph.ProteinGraph.from_settings(
            settings.graph, settings.model, connection
        ) as proteins:
            proteins.check_names(extra={"report.color_by": settings.report.color_by})
    except (DriverError, Neo4jError) as error:  # the server went away while we asked
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise UserError(
            f"cannot reach Neo4j at {connection.uri} ({type(error).__name__}: {first_line}); "
            "rerun once the server is back"
        ) from error


def check_model(model: ModelSettings) -> None:
    """The model named by model.name can be loaded from where it is said to be."""
    name, family = model.name, model.family
    path = Path(name).expanduser()
    if path.is_dir():
        if family == "auto" and not (path / "config.json").is_file():
            raise UserError(
                f"model.name {name} is a directory without a config.json; set model.family "
                "or point model.name at the directory that holds the model's files"
            )
    elif _looks_like_a_path(name):
        raise UserError(f"model.name {name} is a local directory that does not exist")
    elif name.count("/") == 1 and not name.lower().startswith("kmer"):
        _check_hub(name)
    resolve_family(name, family)


def _looks_like_a_path(name: str) -> bool:
    """A hub name is `owner/model`: one slash, no leading dot, slash or tilde."""
    return (
        name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    )


def _check_hub(name: str) -> None:
    if hub_snapshot(name) is not None:
        return  # in the local hub cache: from_pretrained reads it without the network
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise UserError(
            f"model.name {name} is not in the hub cache and HF_HUB_OFFLINE is set; download "
            "it first, or set model.name to a local directory that holds the weights"
        )
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:  # the graph-only environment: the embed job will say
        return
    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except GatedRepoError as error:
        raise UserError(
            f"model.name {name} is gated on the model hub: accept its terms there and set "
            "HF_TOKEN, or set model.name to a local directory that holds the weights"
        ) from error
    except RepositoryNotFoundError as error:
        raise UserError(
            f"model.name {name} is not a model on the hub (nor a local directory); check the name"
        ) from error
    except Exception as error:  # noqa: BLE001 - any network failure means the same here
        raise UserError(
            f"model.name {name} is not in the hub cache and the model hub cannot be reached "
            f"({type(error).__name__}); set model.name to a local directory that holds the "
            "weights"
        ) from error
