"""The demo's closed loop: the drift alert starts the retraining pipeline by itself.

:func:`prepare` (before the drifted traffic) writes the pipeline's inputs under the demo's
home and applies ``configs/pipelines/retrain-fraud.yaml`` with its data paths pointed
there. When the monitoring step then fires ``FraudDriftShareHigh``, the ``alerts`` actor
hands the firing to the ``pipelines`` actor, which starts the run. :func:`follow` finds
that run, prints each stage as it moves, sends live traffic and the true labels of the
generated rows (``POST /v1/feedback``) while the A/B test runs (its metric is ``correct``:
how often each version's answer agrees with the label), prints each arm's running share
after every round, then the decision, the lineage and the traffic it left.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

import mlray
from mlray.abtest.experiment import Experiment
from mlray.datasets.fraud import generate_fraud
from mlray.pipelines.definitions import PipelineSpec, load_pipelines
from mlray.pipelines.state import PipelineRun
from mlray.training.config import TrainConfig

__all__ = ["PIPELINE", "follow", "prepare"]

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "configs" / "pipelines" / "retrain-fraud.yaml"
#: Requests per round of A/B traffic (each labelled right after its answer).
ROUND = 200
#: Epochs of the retrained model (the demo keeps the loop short).
EPOCHS = 3
#: The sequential A/B test stops with no difference past this many units per arm: at
#: ``ROUND // 2`` labelled requests per arm and round, at most 10 rounds. The mSPRT stops
#: early on evidence: 8 points more accuracy (0.70 -> 0.78) are found by then 9 times in 10
#: (half the time within 600 per arm); 150 per arm found even 10 points 1 time in 100.
AB_MAX_SAMPLES = 1000


def prepare(client: mlray.Client, console: Console, config: TrainConfig, data: Path,
            entities: Path) -> PipelineSpec:
    """Write the retraining inputs under ``<home>/loop`` and apply the pipeline."""
    loop = client.config.home / "loop"
    loop.mkdir(parents=True, exist_ok=True)
    train = config.model_copy(update={
        "promote": "none", "tune": None,
        "hyperparameters": config.hyperparameters.model_copy(update={"epochs": EPOCHS})})
    train_config = loop / "retrain-fraud.yaml"
    train_config.write_text(yaml.safe_dump(train.model_dump(mode="json", exclude_none=True)))
    holdout = loop / "holdout.parquet"
    generate_fraud(2_000, seed=21).to_parquet(holdout, index=False)
    [spec] = load_pipelines(PIPELINE)
    paths = {"transactions": str(data), "entities": str(entities),
             "train_config": str(train_config), "holdout": str(holdout),
             "max_samples": AB_MAX_SAMPLES}
    spec = spec.model_copy(update={"parameters": {
        name: p.model_copy(update={"default": paths.get(name, p.default)})
        for name, p in spec.parameters.items()}})
    result = client.pipelines.apply([spec])
    rule = next(t.rule for t in spec.triggers if t.type == "alert")
    console.print(f"pipelines: applied [cyan]{spec.name}[/] ({_changes(result)}): "
                  f"{' → '.join(s.name for s in spec.stages)}; it starts when the alert "
                  f"[cyan]{rule}[/] fires")
    return spec


def _changes(result: Any) -> str:
    return ", ".join(f"{k} {len(getattr(result, k))}" for k in ("added", "changed",
                                                                 "unchanged"))


def _started(client: mlray.Client, name: str, timeout_s: float) -> PipelineRun:
    deadline = time.monotonic() + timeout_s
    while not (runs := client.pipelines.runs(name, limit=1)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the drift alert did not start {name} within {timeout_s:g}s")
        time.sleep(0.5)
    return runs[0]


async def _ab_round(url: str, model: str, features: list[str], seed: int) -> dict[int, int]:
    """``ROUND`` single-row predictions, each with its own routing key, then the true
    labels of those rows as feedback; answers by version."""
    frame = generate_fraud(ROUND, seed=seed, drift=0.8)
    columns = [c for c in features if c in frame.columns]
    answered: dict[int, int] = {}
    labels: list[dict[str, Any]] = []

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        async def one(i: int) -> None:
            row = {c: _plain(frame[c].iloc[i]) for c in columns}
            reply = await http.post("/v1/predict", json={
                "modelName": model, "features": row, "routingKey": f"r{seed}-{i}"})
            if reply.status_code != 200:
                return
            body = reply.json()
            version = int(body["modelVersion"])
            answered[version] = answered.get(version, 0) + 1
            labels.append({"requestId": body["requestId"],
                           "label": float(frame["is_fraud"].iloc[i])})

        for start in range(0, ROUND, 20):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 20, ROUND))))
        if labels:
            await http.post("/v1/feedback", json={"feedback": labels})
    return answered


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _output(client: mlray.Client, run: PipelineRun, stage: str) -> Any:
    ref = run.stages[stage].output
    if ref is None or not ref.uri.endswith("output.json"):
        return None
    return json.loads(client.artifacts.read_bytes(ref.uri, ref.sha256))


def _experiment(client: mlray.Client, model: str) -> Experiment | None:
    """The model's running A/B experiment as last looked at (None before it starts)."""
    return next((e for e in reversed(client.abtests.list())
                 if e.spec.model == model and e.status == "running"), None)


def _plan(exp: Experiment) -> str:
    spec, size = exp.spec, exp.sample_size
    design = (f"sequential (mSPRT): stops on evidence, or with no difference at "
              f"{spec.max_samples} labelled requests per arm" if spec.sequential
              else "fixed horizon")
    planned = (f"; a fixed horizon needs {size.control} per arm to detect "
               f"{spec.min_effect:g}" if size is not None else "")
    return (f"  A/B test {exp.id}: metric [cyan]{spec.metric}[/], "
            f"v{spec.control_version} (control) vs "
            f"{', '.join(f'v{v}' for v in spec.treatments)}; {design}{planned}")


def _running_totals(exp: Experiment | None) -> str:
    if exp is None or exp.last is None:
        return ""
    shares = ", ".join(f"{arm} {t.mean:.3f} of {t.labelled}"
                       for arm, t in exp.last.totals.items())
    return f"; {exp.spec.metric} so far: {shares}"


def follow(client: mlray.Client, console: Console, url: str, model: str,
           name: str, timeout_s: float = 900.0) -> PipelineRun:
    """Wait for the run the alert started; print its stages; feed the A/B test."""
    run = _started(client, name, 60.0)
    console.print(f"pipelines: run [cyan]{run.run_id}[/] of {name} started by itself "
                  f"(trigger: [cyan]{run.trigger}[/])")
    features = [s.name for s in client.registry.get_version(
        model, client.registry.get_traffic(model).serving[0]).input_schema]
    seen: dict[str, str] = {}
    deadline, rounds, planned = time.monotonic() + timeout_s, 0, False
    while True:
        run = client.pipelines.show(run.run_id)
        for stage, state in run.stages.items():
            if seen.get(stage) != state.state:
                seen[stage] = state.state
                if state.state != "PENDING":
                    note = f" ({state.message})" if state.message else ""
                    console.print(f"  {stage:<13} {state.state}{note}")
        if run.state not in ("PENDING", "RUNNING"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"pipeline run {run.run_id} still {run.state} after "
                               f"{timeout_s:g}s")
        if run.stages["abtest"].state == "RUNNING":
            exp = _experiment(client, model)
            if exp is None:  # the stage has not started it yet: traffic would not count
                time.sleep(1.0)
                continue
            if not planned:
                planned = True
                console.print(_plan(exp))
            rounds += 1
            answered = asyncio.run(_ab_round(url, model, features, seed=1000 + rounds))
            split = {f"v{v}": n for v, n in sorted(answered.items())}
            console.print(f"  A/B traffic round {rounds}: {ROUND} requests with labels fed "
                          f"back, answered by {split}{_running_totals(exp)}")
        else:
            time.sleep(1.0)
    _summary(client, console, run, model)
    return run


def _summary(client: mlray.Client, console: Console, run: PipelineRun, model: str) -> None:
    evaluated = _output(client, run, "evaluate") if "evaluate" in run.stages else None
    if evaluated:
        table = Table(title=f"evaluate: {model} on {evaluated['rows']:,} fresh labelled rows")
        for col in ("version", "role", "roc_auc", "f1", "log_loss"):
            table.add_column(col)
        for version, m in evaluated["metrics"].items():
            role = "candidate" if int(version) == evaluated["version"] else "live"
            table.add_row(f"v{version}", role, f"{m['roc_auc']:.4f}", f"{m['f1']:.4f}",
                          f"{m['log_loss']:.4f}")
        console.print(table)
    tested = _output(client, run, "abtest") if "abtest" in run.stages else None
    if tested:
        stats = ", ".join(f"{k.split('_')[0]}={tested[k]:.3g}" for k in ("p_value", "e_value")
                          if tested.get(k) is not None)
        console.print(f"A/B test {tested.get('experiment')}: v{tested.get('control')} "
                      f"(control) vs v{tested.get('version')}: {tested.get('outcome')}"
                      + (f" ({tested['reason']}" + (f"; {stats}" if stats else "") + ")"
                         if tested.get("reason") else ""))
    concluded = _output(client, run, "conclude")
    if concluded:
        console.print(f"decision: [bold]{concluded['decision']}[/] v{concluded['version']} "
                      f"({concluded['why']})")
        console.print(f"lineage: pipeline run {concluded['run_id']} → data "
                      f"{concluded['data_fingerprint'][:19]}… → {model} "
                      f"v{concluded['version']} (training run "
                      f"{str(concluded['training_run'])[:12]}) → rollout {concluded['rollout']}")
    else:
        console.print(f"[yellow]pipeline run {run.run_id} {run.state}: {run.message}[/]")
    production = client.registry.list_versions(model, stage="Production")
    policy = client.registry.get_traffic(model)
    console.print(f"Production: {model} v{production[0].version if production else '-'}; "
                  f"traffic { {f'v{v}': w for v, w in policy.weights.items()} }")
