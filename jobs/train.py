"""Train one model on Ray Train: ``python -m jobs.train --config configs/train/fraud.yaml``.

Works the same under ``ray job submit --working-dir . -- python -m jobs.train --config …``.
"""

from __future__ import annotations

from typing import Any

from jobs._entry import run_job
from mlray._private.quiet import quiet_ray_env
from mlray.training.config import TrainConfig
from mlray.training.orchestrator import run_training


def _train(client: Any, config: TrainConfig) -> None:
    quiet_ray_env()  # our own progress lines, without Tune's box or Ray Data's bars
    outcome = run_training(client, config, progress=lambda epoch, m: print(
        f"epoch {epoch}: " + " ".join(f"{k}={v:.4g}" for k, v in sorted(m.items())), flush=True))
    version = outcome.version
    print(f"job {outcome.job_id} COMPLETED; run {outcome.run_id}; epochs {outcome.epochs}")
    print("test metrics: " + " ".join(f"{k}={v:.4f}" for k, v in outcome.test_metrics.items()))
    if version is not None:
        gates = "no gates" if outcome.gates is None else (
            "gates passed" if outcome.gates.passed else
            f"gates FAILED: {outcome.gates.failed_critical}")
        print(f"registered {version.uri} stage={version.stage.value} ({gates})")


if __name__ == "__main__":
    run_job("Train a model on Ray Train.", _train)
