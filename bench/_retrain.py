"""The retraining pipeline's offline stages, first run against an identical re-run (the
``--retrain`` section of bench/pipelines.py).

The data is what ``make demo`` prepares, by the demo's own functions: generated
transactions, the feature repo (view and service) with the velocity history offline, the
entity rows, the training config and holdout of the closed loop, and a Production version
trained first. The pipeline is ``configs/pipelines/retrain-fraud.yaml`` as loaded, kept to
its stages up to ``gates``: ``canary``, ``abtest`` and ``conclude`` need live traffic.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import mlray
from jobs import _demo_features as features
from jobs import _demo_loop as loop
from jobs import demo
from mlray.datasets import write_fraud
from mlray.pipelines.definitions import PipelineSpec
from mlray.pipelines.state import PipelineRun, StageRun
from mlray.registry.types import Stage
from mlray.training.orchestrator import run_training

__all__ = ["OFFLINE", "bench", "measure", "offline", "prepare"]

#: The stages of retrain-fraud that run without live traffic.
OFFLINE = ("quality", "training_set", "train", "evaluate", "gates")


def offline(spec: PipelineSpec) -> PipelineSpec:
    """``spec`` kept to its :data:`OFFLINE` stages, with no triggers (nothing but the
    bench starts it)."""
    stages = [s for s in spec.stages if s.name in OFFLINE]
    missing = set(OFFLINE) - {s.name for s in stages}
    if missing:
        raise ValueError(f"{spec.name}: no stages {sorted(missing)} in the YAML")
    return PipelineSpec.model_validate(spec.model_dump() | {
        "stages": [s.model_dump() for s in stages], "triggers": []})


def prepare(client: mlray.Client, rows: int, console: Console) -> PipelineSpec:
    """The demo's data under the client's home, a Production version of the model, and
    retrain-fraud (offline stages) applied with its paths pointed there."""
    home = client.config.home
    now = dt.datetime.now(dt.UTC)
    data = write_fraud(home / "data" / "fraud.parquet", rows, seed=0,
                       start=now - dt.timedelta(days=30), days=29.9)
    entities, _ = features.prepare_features(client, data)
    config = demo._config(entities)
    # Production: trained as the candidate will be (loop.EPOCHS), so the candidate passes
    # the gates (roc_auc >= 0.7, no regression past 5% against Production).
    first = run_training(client, config.model_copy(update={
        "promote": "none", "tune": None,
        "hyperparameters": config.hyperparameters.model_copy(update={"epochs": loop.EPOCHS})}))
    assert first.version is not None, "the Production version was not registered"
    client.registry.transition_stage(config.name, first.version.version, Stage.STAGING)
    client.registry.promote(config.name, first.version.version)
    spec = offline(loop.prepare(client, console, config, data, entities))
    client.pipelines.apply([spec])
    return spec


def timed(client: mlray.Client, name: str) -> tuple[float, PipelineRun]:
    """(client wall s, the run) of one run of ``name`` waited for; it must succeed."""
    start = time.perf_counter()
    run = client.pipelines.run(name, wait=True, timeout_s=1200).run
    wall = time.perf_counter() - start
    if run.state != "SUCCEEDED" or run.finished_at is None:
        raise RuntimeError(f"run {run.run_id} of {name}: {run.state} {run.message} "
                           f"{run.summary()}")
    return wall, run


def _record_s(run: PipelineRun) -> float:
    """Seconds from the run's creation to its end, as its record stores them."""
    assert run.finished_at is not None
    return run.finished_at - run.created_at


def _stage_s(stage: StageRun) -> str:
    if stage.started_at is None or stage.finished_at is None:
        return "-"
    return f"{(stage.finished_at - stage.started_at) * 1000:.0f} ms"


def measure(client: mlray.Client, name: str, rows: int) -> list[Table]:
    """Run ``name`` twice with the same parameters; the totals table and the stage table."""
    first_wall, first = timed(client, name)
    again_wall, again = timed(client, name)
    totals = Table(title=f"retrain-fraud, offline stages only: {' -> '.join(OFFLINE)}\n"
                         "(canary, abtest, conclude need live traffic and are left out)\n"
                         f"{rows:,} transactions, {loop.EPOCHS} epochs; load "
                         f"{os.getloadavg()[0]:.1f}")
    for col in ("", "first run", "identical re-run", "speed-up", "target"):
        totals.add_column(col, justify="right")
    for label, a, b in (("client wall", first_wall, again_wall),
                        ("run record", _record_s(first), _record_s(again))):
        totals.add_row(label, f"{a * 1000:.0f} ms", f"{b * 1000:.0f} ms", f"{a / b:.1f}x",
                       ">= 10x")
    stages = Table(title="by stage (started -> finished; CACHED stages run no task)",
                   caption="cache off: the data's checks and the gates against the current "
                           "Production run every time")
    for col in ("stage", "cache", "first run", "", "re-run", ""):
        stages.add_column(col, justify="right")
    for spec in first.spec.stages:
        one, two = first.stages[spec.name], again.stages[spec.name]
        stages.add_row(spec.name, "on" if spec.cache else "off", str(one.state),
                       _stage_s(one), str(two.state), _stage_s(two))
    return [totals, stages]


def bench(client: mlray.Client, rows: int, console: Console, log: Path) -> None:
    """Prepare, measure and print (Ray's own output to ``log`` meanwhile, the demo's
    lines to the screen)."""
    with demo._ray_output_to(log):
        spec = prepare(client, rows, demo.console)
        tables = measure(client, spec.name, rows)
    for table in tables:
        console.print(table)
