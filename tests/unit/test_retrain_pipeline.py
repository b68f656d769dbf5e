"""The standard retraining pipeline (configs/pipelines/retrain-fraud.yaml) and the drift
alert that starts it: the YAML loads, its DAG is valid, every stage kind has code; a
firing of the alert rule starts the pipeline once and a firing during the run joins it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlray.abtest.experiment import ExperimentSpec, ModelMetric
from mlray.alerts.actions import pipeline_action
from mlray.alerts.rules import load_rules, parse_rules
from mlray.alerts.service import AlertsService
from mlray.identity import Caller, Role
from mlray.pipelines.definitions import (
    AlertFired,
    PipelineSpec,
    load_pipelines,
    topological_order,
)
from mlray.pipelines.executors import ThreadExecutor
from mlray.pipelines.kinds import target_of
from mlray.pipelines.retraining import decide
from mlray.pipelines.service import PipelineService
from mlray.pipelines.stage import resolve
from mlray.storage import ArtifactStore, StateStore

ROOT = Path(__file__).resolve().parents[2]
RETRAIN = ROOT / "configs" / "pipelines" / "retrain-fraud.yaml"
ORDER = ["quality", "training_set", "train", "evaluate", "gates", "canary", "abtest",
         "conclude"]


def test_retrain_fraud_loads_in_order_and_every_kind_has_code() -> None:
    [spec] = load_pipelines(RETRAIN)
    assert spec.name == "retrain-fraud"
    assert topological_order(spec.stages) == ORDER
    for stage in spec.stages:
        target = target_of(stage.kind)
        assert target is not None, stage.name
        assert callable(resolve(target)), stage.name
    params = spec.run_params({})  # an alert trigger starts it with the defaults alone
    assert params["model"] == "fraud"
    assert spec.stage_params(spec.stage("canary"), params)["strategy"] == "shadow"


def test_the_ab_stage_tests_the_models_answers_not_the_label() -> None:
    """Whether a transaction is fraud does not depend on the version that answered: the
    A/B stage compares how often each version is right, a spec the service accepts."""
    [spec] = load_pipelines(RETRAIN)
    params = spec.stage_params(spec.stage("abtest"), spec.run_params({}))
    assert params["metric"] in ModelMetric.__members__
    experiment = ExperimentSpec(model=params["model"], arms={1: 50, 2: 50},
                                min_effect=params["min_effect"], metric=params["metric"],
                                sequential=params["sequential"],
                                max_samples=params["max_samples"])
    assert experiment.kind == "binary" and experiment.sequential


def test_the_shipped_drift_rule_has_an_action_and_the_pipeline_listens_to_it() -> None:
    [spec] = load_pipelines(RETRAIN)
    [trigger] = [t for t in spec.triggers if isinstance(t, AlertFired)]
    rules = {r.name: r for r in load_rules(ROOT / "configs" / "alerts.yaml").rules}
    assert rules[trigger.rule].action
    assert rules[trigger.rule].metric == "mlray_drift_share"
    demo = {r.name: r for r in load_rules(ROOT / "configs" / "demo" / "alerts.yaml").rules}
    assert demo[trigger.rule].action


def test_decide_promotes_only_the_named_winner() -> None:
    assert decide({"winner": 3, "decision": "promote"}, 3)[0] == "promote"
    assert decide({"winner": 2, "decision": "promote"}, 3)[0] == "rollback"
    assert decide({"winner": None, "decision": "no_difference"}, 3)[0] == "rollback"
    assert decide(None, 3)[0] == "rollback"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_drift_alert_firing_starts_the_pipeline_once_and_coalesces(
        store: StateStore, artifacts: ArtifactStore, tmp_path: Path) -> None:
    clock, executor = Clock(), ThreadExecutor()
    pipelines = PipelineService(store, artifacts, executor, clock=clock)
    editor = Caller(user="ed", roles={"p": Role.editor})
    pipelines.allow_code(Caller.local_admin(), "p", allow=["tests.pipeline_stages"])
    gate = tmp_path / "gate"
    pipelines.apply(editor, "p", [PipelineSpec.model_validate({
        "name": "retrain", "triggers": [{"type": "alert", "rule": "DriftHigh"}],
        "stages": [{"name": "wait", "kind": "tests.pipeline_stages:block",
                    "params": {"gate": str(gate)}}]})])
    rules = parse_rules({"channels": {"log": {"type": "log"}}, "rules": [
        {"name": "DriftHigh", "metric": "mlray_drift_share", "operator": ">",
         "threshold": 0.3, "for": 1, "severity": "warning", "channels": ["log"],
         "action": "retrain"}]})
    versions = ["1"]

    def samples() -> list[Any]:
        return [("mlray_drift_share", {"project": "p", "model": "fraud", "version": v}, 0.8,
                 clock.now) for v in versions]

    alerts = AlertsService(store, rules, samples, clock=clock,
                           on_action=pipeline_action(pipelines.alert_fired))
    alerts.evaluate()
    assert pipelines.runs(editor, "p") == []  # pending: nothing starts
    clock.now += 1
    alerts.evaluate()
    [run] = pipelines.runs(editor, "p")
    assert (run.pipeline, run.trigger, run.created_by) == ("retrain", "alert DriftHigh", "ed")
    clock.now += 1
    alerts.evaluate()  # still firing: the action is not started again
    assert pipelines.get_run(editor, "p", run.run_id).coalesced == 0
    versions.append("2")  # another series of the rule fires while the run is in progress
    for _ in range(2):
        clock.now += 1
        alerts.evaluate()
    assert pipelines.get_run(editor, "p", run.run_id).coalesced == 1
    assert len(pipelines.runs(editor, "p")) == 1
    gate.write_text("open")
    executor.shutdown()


def test_train_takes_its_rows_from_the_training_set_stage(tmp_path: Path) -> None:
    """The train stage trains on the training_set stage's output itself (fetched, sha256
    checked), not on a second join of the config's entity rows: its lineage is true."""
    import pandas as pd

    from mlray.pipelines import kinds
    from mlray.pipelines.stage import StageContext, StageTask

    [spec] = load_pipelines(RETRAIN)
    assert spec.stage("train").params["data_from"] == "training_set"
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    rows = tmp_path / "training_set.parquet"
    pd.DataFrame({"amount": [1.0, 2.0], "is_fraud": [0, 1]}).to_parquet(rows)
    ref = artifacts.put(rows)
    config = ROOT / "configs" / "train" / "fraud.yaml"

    def context(params: dict[str, Any]) -> StageContext:
        task = StageTask(project="p", pipeline="retrain", run_id="r1", stage="train",
                         target="mlray.pipelines.kinds:train", params=params, run_params={},
                         inputs={"training_set": ref}, artifact_uri=artifacts.address)
        return StageContext(task, artifacts)

    trained = kinds._train_config(context({"config": str(config),
                                           "data_from": "training_set"}))
    assert pd.read_parquet(trained.data.path).equals(pd.read_parquet(rows))
    assert trained.data.feature_service is None
    as_written = kinds._train_config(context({"config": str(config)}))
    assert as_written.data.path != trained.data.path  # without data_from: the config's own
