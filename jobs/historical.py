"""Build a point-in-time training set with Ray Data, for entity rows larger than memory.

    python -m jobs.historical --entities PATH --features SERVICE_OR_REFS --output PATH \
        [--full-feature-names] [--timestamp-field event_timestamp] [--partitions N] \
        [--config platform.yaml]

Connects to the platform, reads the applied definitions from the ``features`` actor,
reads the entity rows (a Parquet file or directory, local or a ``pyarrow.fs`` URI) with
Ray Data, joins every feature as of each row's timestamp (see
:mod:`mlray.features.offline_ray`) and writes the result as Parquet to ``--output``.
``--features`` is a feature service's name or comma-separated ``view:feature`` refs.
Works the same under ``ray job submit --working-dir . -- python -m jobs.historical …``.
Exit status 0 on success; an mlray error prints its reason and exits with its code.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from jobs._entry import run_or_exit

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.historical",
        description="Point-in-time features for entity rows, on Ray Data, to Parquet.")
    parser.add_argument("--entities", required=True,
                        help="Entity rows: a Parquet file or directory (local or a URI).")
    parser.add_argument("--features", required=True,
                        help="A feature service, or comma-separated view:feature refs.")
    parser.add_argument("--output", required=True, help="Parquet directory to write.")
    parser.add_argument("--full-feature-names", action="store_true",
                        help="Name columns view__feature.")
    parser.add_argument("--timestamp-field", default="event_timestamp",
                        help="The entity rows' timestamp column.")
    parser.add_argument("--partitions", type=int, default=None,
                        help="Key-hash partitions (default: from the row counts).")
    parser.add_argument("--config", type=Path, default=None, help="Platform YAML.")
    parser.add_argument("--address", default=None,
                        help="Ray address (default: the job's cluster, or a local Ray).")
    return parser


def _run(args: argparse.Namespace) -> int:
    import ray

    import mlray
    from mlray.config import load_config
    from mlray.features import OfflineStore
    from mlray.features.offline_ray import get_historical_features_ray

    config = load_config(args.config) if args.config else None
    client = mlray.connect(args.address, config=config)
    repo = client.transport.call("features", "repo", client.who, client.project,
                                 idempotent=True)
    assert client.config.offline_uri is not None  # resolved default
    features: str | list[str] = (args.features if ":" not in args.features
                                 else [f.strip() for f in args.features.split(",")
                                       if f.strip()])
    entities = ray.data.read_parquet(args.entities)
    result = get_historical_features_ray(
        OfflineStore(client.config.offline_uri, repo, project=client.project), entities, features,
        full_feature_names=args.full_feature_names, timestamp_field=args.timestamp_field,
        partitions=args.partitions, output=args.output)
    return result.count()


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run the join, print a summary; exit 0, or the error's code."""
    args = _parser().parse_args(argv)
    began = time.perf_counter()
    rows = run_or_exit(lambda: _run(args))
    print(f"wrote {rows:,} rows to {args.output} in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
