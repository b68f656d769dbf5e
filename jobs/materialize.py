"""Materialize feature views offline → online with Ray Data.

    python -m jobs.materialize --start 2026-03-01T00:00:00Z --end 2026-03-02T00:00:00Z \
        [--views a,b] [--incremental] [--engine ray|local|auto] [--config platform.yaml]

Connects to the platform (joining or starting Ray and its actors), reads the applied
definitions from the ``features`` actor, opens the online and offline stores the
platform config names, moves the latest row per entity in ``[start, end)`` of each view
online (see :mod:`mlray.features.materialize`), and records each finished view with the
actor, so ``--incremental`` runs start where the last one ended. Works the same under
``ray job submit --working-dir . -- python -m jobs.materialize …``. Exit status 0 on
success; an mlray error prints its reason and exits with its code.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from jobs._entry import run_or_exit
from mlray.errors import InvalidInput
from mlray.features.materialize import parse_time

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.materialize",
        description="Move the latest rows per entity in [start, end) offline -> online.")
    parser.add_argument("--start", help="Window start, inclusive (ISO 8601 with time zone). "
                        "Needed unless --incremental.")
    parser.add_argument("--end", help="Window end, exclusive (ISO 8601 with time zone; "
                        "default: now).")
    parser.add_argument("--views", help="Comma-separated views (default: every online view).")
    parser.add_argument("--incremental", action="store_true",
                        help="Start each view where its last recorded run ended.")
    parser.add_argument("--engine", choices=["ray", "local", "auto"], default="ray",
                        help="Ray Data (default), this process, or Ray Data for large views.")
    parser.add_argument("--batch-rows", type=int, default=10_000, help="Rows per online write.")
    parser.add_argument("--config", type=Path, default=None, help="Platform YAML.")
    parser.add_argument("--address", default=None,
                        help="Ray address (default: the job's cluster, or a local Ray).")
    return parser


def _run(args: argparse.Namespace) -> list[Any]:
    start = parse_time(args.start, "start")
    end = parse_time(args.end, "end")
    if start is None and not args.incremental:
        raise InvalidInput("give --start, or --incremental to resume each view", field="start")
    views = [v.strip() for v in args.views.split(",") if v.strip()] if args.views else None

    import mlray
    from mlray.config import load_config
    from mlray.features import OfflineStore, open_online_store
    from mlray.features.materialize import materialize

    config = load_config(args.config) if args.config else None
    client = mlray.connect(args.address, config=config)
    transport, caller, project = client.transport, client.who, client.project
    repo = transport.call("features", "repo", caller, project, idempotent=True)
    previous = transport.call("features", "materializations", caller, project,
                              idempotent=True) if args.incremental else {}
    cfg = client.config
    assert cfg.online_url is not None and cfg.offline_uri is not None  # resolved defaults
    online = open_online_store(cfg.online_url, project=project, redis_prefix=cfg.redis_prefix)
    offline = OfflineStore(cfg.offline_uri, repo, project=project)
    totals: dict[str, int] = {}

    def progress(view: str, rows: int) -> None:
        totals[view] = totals.get(view, 0) + rows
        print(f"{view}: {totals[view]:,} rows", flush=True)

    def record(run: Any) -> None:
        transport.call("features", "record_materialization", caller, project, run)

    try:
        return materialize(repo, offline, online, record=record, previous=previous,
                           views=views, start=start, end=end, incremental=args.incremental,
                           progress=progress, engine=args.engine, batch_rows=args.batch_rows)
    finally:
        online.close()


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, materialize, print a summary; exit 0, or the error's code."""
    args = _parser().parse_args(argv)
    began = time.perf_counter()
    runs = run_or_exit(lambda: _run(args))
    took = time.perf_counter() - began
    print(f"{'view':<24} {'start':<26} {'end':<26} {'rows':>12}")
    for run in runs:
        print(f"{run.view:<24} {run.start.isoformat():<26} {run.end.isoformat():<26} "
              f"{run.rows:>12,}")
    total = sum(r.rows for r in runs)
    print(f"materialized {total:,} rows of {len(runs)} view(s) in {took:.1f} s")


if __name__ == "__main__":
    main()
