"""Shared argument handling for the job entrypoints."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mlray._private.redact import install_log_redaction, redact
from mlray.errors import MlrayError
from mlray.training.config import TrainConfig, load_train_config

__all__ = ["run_job", "run_or_exit"]

T = TypeVar("T")


def run_job(description: str, body: Callable[[Any, TrainConfig], Any]) -> None:
    """Parse ``--config`` (and ``--address``), connect, run ``body``, exit 0/1/2."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, type=Path, help="Training YAML.")
    parser.add_argument("--address", default=None,
                        help="Ray address (default: the job's cluster, or a local Ray).")
    args = parser.parse_args()

    def connect_and_run() -> None:
        config = load_train_config(args.config)
        import mlray

        # No config= here: where the platform keeps its state comes from the running
        # actors (the cluster), not from the submitting shell's environment; connect says
        # so on stderr when this process's own config differs.
        body(mlray.connect(args.address), config)

    run_or_exit(connect_and_run)


def run_or_exit(body: Callable[[], T]) -> T:
    """``body()`` with credentials masked in every log line; an mlray error prints its
    reason (and field) to stderr and exits with the error's code, any other error its
    traceback, credentials masked, and exits 1."""
    install_log_redaction()
    try:
        return body()
    except MlrayError as exc:
        where = f" [{exc.field}]" if exc.field else ""
        print(f"error{where}: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception:
        print(redact(traceback.format_exc()), file=sys.stderr, end="")
        sys.exit(1)
