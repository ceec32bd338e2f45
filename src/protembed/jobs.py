"""What every Snakemake script needs around a step: its log file and one-line errors."""

import logging
import sys
from contextlib import contextmanager

from .errors import UserError


@contextmanager
def snakemake_job(snakemake):
    """Log to the rule's `log:` file; turn a UserError into one clear line and exit 1.

    Anything else is a bug and keeps its traceback, in the log and on stderr.
    """
    log_path = snakemake.log[0]
    handler = logging.FileHandler(log_path, mode="w")
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
    except Exception:
        logging.getLogger("protembed").exception("the step failed")
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
