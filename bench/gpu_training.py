"""The fraud MLP on a GPU against the CPU, same data, model, loop and epochs.

    python bench/gpu_training.py [--rows 200000] [--epochs 4] [--batches 512 4096]

Prints training samples/s (median of the epochs after the first) for the CPU with one
thread, the CPU with all threads, and CUDA, at two batch sizes. Uses mlray's data
generator, preprocessing and model and the benchmarks' plain loop, and no Ray, so it
runs where Ray is not installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from plain_loop import config_for, plain_loop, steady

from mlray.datasets import write_fraud


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batches", type=int, nargs="+", default=[512, 4096])
    args = parser.parse_args()
    data = write_fraud(Path(tempfile.mkdtemp()) / "fraud.parquet", args.rows, seed=0)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, GPU: {gpu}")
    print(f"{'batch':>6} {'setup':<22} {'samples/s':>12} {'vs 1 CPU thread':>16}")
    for batch in args.batches:
        config = config_for(data, 1, args.epochs, batch, False)
        torch.set_num_threads(1)
        base = steady(plain_loop(config, "cpu"))
        torch.set_num_threads(os.cpu_count() or 1)
        rows = [("CPU, 1 thread", base), (f"CPU, {os.cpu_count()} threads",
                                          steady(plain_loop(config, "cpu")))]
        if torch.cuda.is_available():
            rows.append(("CUDA", steady(plain_loop(config, "cuda"))))
        for name, rate in rows:
            print(f"{batch:>6} {name:<22} {rate:>12,.0f} {rate / base:>15.2f}x", flush=True)


if __name__ == "__main__":
    main()
