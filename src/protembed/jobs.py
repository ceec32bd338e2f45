"""What every Snakemake script needs around a step: its log file and one-line errors."""

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from neo4j.exceptions import DriverError, Neo4jError

from .errors import UserError


@contextmanager
def snakemake_job(snakemake):
    """Log to the rule's `log:` file; turn a UserError into one clear line and exit 1.

    Anything else is a bug and keeps its traceback, in the log and on stderr.
    """
    log_path = snakemake.log[0]
    logging.getLogger("neo4j").setLevel(logging.WARNING)
    try:
        with log_file(log_path, logging.getLogger()), open(log_path, "a") as progress:
            yield progress
    except UserError as error:
        logging.getLogger("protembed").error("%s", error)
        print(f"protembed: error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    except (DriverError, Neo4jError) as error:
        # The server went away or gave up mid-step (after the driver's own retries): the
        # traceback goes to the log, one line to the user. Every write is idempotent.
        logging.getLogger("protembed").exception("Neo4j failed during the step")
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"protembed: error: Neo4j failed during {snakemake.rule} "
            f"({type(error).__name__}: {first_line}); what was committed stays, rerun the "
            "same command once the server is back",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)
    except Exception:
        logging.getLogger("protembed").exception("the step failed")
        raise


@contextmanager
def log_file(path, logger: logging.Logger):
    """`logger`'s INFO and up into `path`, new for each attempt, for the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    open(path, "w").close()
    # The handler appends: a job's progress bar goes to the same file through another
    # handle, and at its own offset each log line would overwrite the bar.
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


@contextmanager
def refuse_user_errors():
    """Where snakemake itself runs a check: a UserError is one line and exit status 1."""
    try:
        yield
    except UserError as error:
        print(f"protembed: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def say_what_the_graph_holds(run_summary, graph_summary) -> None:
    """One line on the console after a run: this run's counts and what the graph holds,
    so that a run with nothing to embed says so."""
    import json
    from pathlib import Path

    if not (Path(run_summary).is_file() and Path(graph_summary).is_file()):
        return  # a run of other targets (e.g. a dry run of one rule)
    run = json.loads(Path(run_summary).read_text())
    held = json.loads(Path(graph_summary).read_text())
    nothing = "nothing needed a vector: " if run["exported"] == 0 else ""
    print(
        f"protembed: {nothing}this run embedded {run['embedded']}, rejected {run['rejected']}, "
        f"found {run['up_to_date']} up to date; {held['label']}.{held['property']} now holds "
        f"{held['vectors']} vectors and {held['rejected']} rejections "
        f"({held['without_vector']} of {held['proteins_with_sequence']} proteins with a "
        "sequence still without)",
        file=sys.stderr,
        flush=True,
    )
