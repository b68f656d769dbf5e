"""Shared argument handling for the job entrypoints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlray.errors import MlrayError
from mlray.training.config import TrainConfig, load_train_config

__all__ = ["run_job"]


def run_job(description: str, body: Callable[[Any, TrainConfig], Any]) -> None:
    """Parse ``--config`` (and ``--address``), connect, run ``body``, exit 0/1/2."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, type=Path, help="Training YAML.")
    parser.add_argument("--address", default=None,
                        help="Ray address (default: the job's cluster, or a local Ray).")
    args = parser.parse_args()
    try:
        config = load_train_config(args.config)
        import mlray

        client = mlray.connect(args.address)
        body(client, config)
    except MlrayError as exc:
        where = f" [{exc.field}]" if exc.field else ""
        print(f"error{where}: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
