"""``python -m mlray.datasets OUT.parquet [--rows N] [--seed S] [--drift D]``."""

from __future__ import annotations

import argparse

from mlray.datasets.fraud import write_fraud


def main() -> None:
    """Write the generated fraud dataset."""
    parser = argparse.ArgumentParser(description="Write the generated fraud dataset.")
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drift", type=float, default=0.0)
    args = parser.parse_args()
    path = write_fraud(args.out, args.rows, seed=args.seed, drift=args.drift)
    print(f"wrote {args.rows} rows to {path}")


main()
