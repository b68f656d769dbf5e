"""Training throughput: Ray Train (1 and 2 workers) against a plain torch loop.

    python bench/training.py [--rows 100000] [--epochs 4] [--batch-size 512] [--gpu]

The same fraud MLP, data (preprocessed the same way), batch size, epochs and a fresh
shuffle each epoch. Each
figure is training samples per second of an epoch (training plus the validation
pass, as the Ray Train loop measures it), the median over epochs after the first.
Ray Train's figures come from the loop's own per-epoch report (worker start-up
excluded; the end-to-end wall time is printed beside it). The ratio to the plain loop
is the figure. Not asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "token")

import torch
from rich.console import Console
from rich.table import Table

import mlray
from mlray.config import load_config
from mlray.datasets import write_fraud
from mlray.training.config import TrainConfig
from mlray.training.orchestrator import run_training

sys.path.insert(0, str(Path(__file__).parent))
from plain_loop import config_for, plain_loop, steady

console = Console(width=120)


def ray_train(client: mlray.Client, config: TrainConfig) -> tuple[list[float], float]:
    """Samples/s per epoch as the Ray Train loop reported it, and the job's wall time."""
    start = time.perf_counter()
    outcome = run_training(client, config)
    wall = time.perf_counter() - start
    history = client.experiments.metric_history(outcome.run_id, "samples_per_s")
    return [p.value for p in history], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--gpu", action="store_true", help="Also train with use_gpu: true.")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mlray-bench-train-"))
    data = write_fraud(home / "fraud.parquet", args.rows, seed=0)
    client = mlray.connect("local", config=load_config(env={"MLRAY_HOME": str(home)}))
    table = Table(title=f"training throughput, {args.rows:,} rows, {args.epochs} epochs, "
                        f"batch {args.batch_size} (ratio = samples/s / plain loop on CPU)")
    for col in ("setup", "samples/s (steady epochs)", "ratio", "job wall time"):
        table.add_column(col)
    cpu_config = config_for(data, 1, args.epochs, args.batch_size, False)
    torch.set_num_threads(1)
    baseline = steady(plain_loop(cpu_config, "cpu"))
    table.add_row("plain torch loop, 1 thread (baseline)", f"{baseline:,.0f}", "1.00", "")
    torch.set_num_threads(os.cpu_count() or 1)
    threads = steady(plain_loop(cpu_config, "cpu"))
    table.add_row(f"plain torch loop, {os.cpu_count()} threads", f"{threads:,.0f}",
                  f"{threads / baseline:.2f}", "")
    setups = [(w, False) for w in (1, 2)]
    if args.gpu:
        setups.append((1, True))
        gpu_plain = steady(plain_loop(cpu_config, "cuda"))
        table.add_row("plain torch loop on the GPU", f"{gpu_plain:,.0f}",
                      f"{gpu_plain / baseline:.2f}", "")
    for workers, gpu in setups:
        rates, wall = ray_train(client, config_for(data, workers, args.epochs, args.batch_size,
                                                   gpu))
        label = f"Ray Train, {workers} worker{'s' if workers > 1 else ''}" + (
            ", use_gpu" if gpu else "")
        table.add_row(label, f"{steady(rates):,.0f}", f"{steady(rates) / baseline:.2f}",
                      f"{wall:.1f} s")
    console.print(table)


if __name__ == "__main__":
    main()
