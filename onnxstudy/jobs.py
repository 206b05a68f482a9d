"""What every workflow job does around its work: a log of its own and atomic JSON records."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from onnxstudy.errors import StudyError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def job_log(log_path: str | Path) -> Iterator[logging.Logger]:
    """Send logging and stderr to the job's log; on failure, say why on the terminal too.

    A StudyError's sentence (model, variant, cause, cure) goes to the original stderr as well,
    so the person running the study sees it without opening the log; any other exception is
    logged with its traceback before it propagates.
    """
    terminal = sys.stderr
    with open(log_path, "w", buffering=1) as stream:
        sys.stderr = stream
        logging.basicConfig(stream=stream, level=logging.INFO, format=LOG_FORMAT, force=True)
        logging.captureWarnings(True)
        logger = logging.getLogger("onnxstudy")
        try:
            yield logger
        except StudyError as error:
            logger.error("%s", error)
            print(f"onnxstudy error: {error}", file=terminal)
            raise
        except Exception:
            # An unexpected failure: its traceback belongs in the job's log, not only on stderr.
            logger.exception("the job failed")
            raise
        finally:
            sys.stderr = terminal


def write_json(path: str | Path, record: dict) -> None:
    """Write `record` as indented JSON, atomically (a killed job leaves no half file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
