"""Send a Snakemake script job's output and any traceback to the rule's log file."""

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def logged(log_path: str | Path) -> Iterator[logging.Logger]:
    """Redirect stdout/stderr to ``log_path`` for the block; log and re-raise any exception.

    Snakemake keeps a failed job's log, so the traceback is where the user looks for it.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as fh:
        logger = logging.getLogger("scnf.workflow")
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                yield logger
        except BaseException:
            fh.write(traceback.format_exc())
            fh.flush()
            print(f"error: see {log_path}", file=sys.stderr)
            raise
        finally:
            logger.removeHandler(handler)
