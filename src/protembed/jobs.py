"""What every Snakemake script needs around a step: its log file and one-line errors."""

import logging
import sys
from contextlib import contextmanager

from neo4j.exceptions import DriverError, Neo4jError

from .errors import UserError


@contextmanager
def snakemake_job(snakemake):
    """Log to the rule's `log:` file; turn a UserError into one clear line and exit 1.

    Anything else is a bug and keeps its traceback, in the log and on stderr.
    """
    log_path = snakemake.log[0]
    open(log_path, "w").close()  # one log per attempt
    # Both writers append: with one at its own offset, each log line overwrote the bar.
    handler = logging.FileHandler(log_path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("neo4j").setLevel(logging.WARNING)
    try:
        with open(log_path, "a") as progress:
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
    finally:
        root.removeHandler(handler)
        handler.close()
