"""Sweep hyperparameters on Ray Tune: ``python -m jobs.tune --config configs/train/fraud.yaml``."""

from __future__ import annotations

from typing import Any

from jobs._entry import run_job
from mlray._private.quiet import quiet_ray_env
from mlray.training.config import TrainConfig
from mlray.training.tuning import run_tuning


def _tune(client: Any, config: TrainConfig) -> None:
    quiet_ray_env()  # our own progress lines, without Tune's box or Ray Data's bars
    outcome = run_tuning(client, config, progress=lambda done, total: print(
        f"trials finished: {done}/{total}", flush=True))
    print(f"job {outcome.job_id} COMPLETED; sweep {outcome.sweep_id}: "
          + ", ".join(f"{r[:8]}={s}" for r, s in outcome.trials.items()))
    print(f"best trial run {outcome.best_run_id}: {outcome.best_config}")
    print("test metrics: " + " ".join(f"{k}={v:.4f}" for k, v in outcome.test_metrics.items()))
    if outcome.version is not None:
        print(f"registered {outcome.version.uri} stage={outcome.version.stage.value}")


if __name__ == "__main__":
    run_job("Sweep hyperparameters on Ray Tune and register the best model.", _tune)
