"""Serving's control logic without Ray: settings, the replica router, the breaker board,
the rollout state machine (over a real state store and registry), JSON inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mlray.errors import ConfigError, Conflict, InvalidInput, NotFound, PayloadTooLarge
from mlray.identity import Caller, Role
from mlray.registry.service import ModelRegistry
from mlray.registry.types import ModelSpec, ModelVersion, ServedModel, Stage, TensorSpec
from mlray.serving.breaker import BreakerConfig, BreakerState
from mlray.serving.breaker_board import BreakerBoard
from mlray.serving.inputs import columns_from_mapping, columns_from_rows
from mlray.serving.model_names import INGRESS_APP, app_name, parse_app_name
from mlray.serving.reconcile import Pass, Reconciler
from mlray.serving.rollout import RolloutController, RolloutStatus, Strategy
from mlray.serving.router import Router, VersionOutcomes
from mlray.serving.settings import BatchTuning, ServingConfig, load_serving_config
from mlray.serving.traffic import NoHealthyVersion, TrafficPolicy
from mlray.storage import ArtifactStore, StateStore
from tests.unit.helpers import artifact_spec

ROOT = Path(__file__).resolve().parents[2]
ADMIN = Caller.local_admin()
SCHEMA = [TensorSpec(name="amount", dtype="float64"), TensorSpec(name="country", dtype="string")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_serving_yaml_holds_exactly_the_defaults() -> None:
    assert load_serving_config(ROOT / "configs" / "serving.yaml") == ServingConfig()


def test_serve_yaml_is_a_valid_serve_config_for_the_ingress() -> None:
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(
        yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text()))
    app = schema.applications[0]
    assert (app.name, app.route_prefix) == ("mlray", "/")
    assert app.import_path == "mlray.serving.ingress:build_app"


def test_a_model_timeout_must_stay_below_the_proxy_cap() -> None:
    with pytest.raises(ValueError, match=r"models\.slow.timeout_s 40 must be below "
                                         r"ingress\.proxy_timeout_s 30"):
        ServingConfig.model_validate({"models": {"slow": {"timeout_s": 40}}})
    uncapped = ServingConfig.model_validate({"models": {"slow": {"timeout_s": 40}},
                                             "ingress": {"proxy_timeout_s": 0}})
    assert uncapped.for_model("slow").timeout_s == 40


def test_bad_serving_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "serving.yaml"
    path.write_text("rollout: {canary_steps: [50, 10]}\n")
    with pytest.raises(ConfigError, match="rollout"):
        load_serving_config(path)
    path.write_text("models: {fraud: {num_replicas: 0}}\n")
    with pytest.raises(ConfigError, match="models"):
        load_serving_config(path)


def test_per_model_overrides_merge_deeply() -> None:
    config = ServingConfig.model_validate(
        {"models": {"fraud": {"tuning": {"max_batch_size": 8}, "cache": {"enabled": True}}}})
    fraud = config.for_model("fraud")
    assert fraud.tuning.max_batch_size == 8 and fraud.tuning.batch_wait_timeout_s == 0.002
    assert fraud.cache.enabled and not config.for_model("other").cache.enabled


def test_app_names_round_trip() -> None:
    assert parse_app_name(app_name("team-a", "fraud-x", 12)) == ("team-a", "fraud-x", 12)
    # a project may hold '--' and a model may end in '-': the model's own '--' is the split
    assert parse_app_name(app_name("a--b-", "m-", 3)) == ("a--b-", "m-", 3)
    assert app_name("a", "fraud", 1) != app_name("b", "fraud", 1)
    for other in ("mlray", "fraud--v1", "p--m--v01", "p--m--vx", "--m--v1"):
        assert parse_app_name(other) is None, other


def test_router_routes_only_to_its_own_projects_apps() -> None:
    """Project b running a model of the same name and version is not project a's app."""
    router = Router("a")
    router.update({"m": _served({1: 100})}, frozenset({app_name("b", "m", 1)}))
    assert router.ready_apps == frozenset() and not router.is_ready("m", 1)
    with pytest.raises(NoHealthyVersion):
        router.route("m")
    router.update(router.models, frozenset({app_name("a", "m", 1), app_name("b", "m", 1)}))
    assert router.ready_apps == {app_name("a", "m", 1)} and router.route("m").version == 1


def _served(weights: dict[int, float], shadows: tuple[int, ...] = ()) -> ServedModel:
    versions = {v: ModelVersion(model="m", project="default", version=v, created_at=0,
                                updated_at=0, created_by="t", updated_by="t",
                                artifact_uri="file:///x", artifact_sha256="0" * 64,
                                input_schema=SCHEMA)
                for v in {*weights, *shadows}}
    return ServedModel(policy=TrafficPolicy(weights=weights, shadows=list(shadows),
                                            sticky=False), versions=versions)


def test_router_fails_over_when_a_breaker_opens_and_converges_with_the_cluster() -> None:
    clock = Clock()
    config = BreakerConfig(failure_threshold=2, recovery_timeout_s=5, success_threshold=1)
    a = Router("default", config, clock=clock, wall=clock, rng=lambda: 0.0)
    a.update({"m": _served({1: 50, 2: 50})}, frozenset({"default--m--v1", "default--m--v2"}))
    assert a.route("m").version == 1
    a.record("m", 1, False, 3.0)
    a.record("m", 1, False, 3.0)
    route = a.route("m")
    assert (route.version, route.failed_over) == (2, True)

    b = Router("default", config, clock=clock, wall=clock, rng=lambda: 0.0)
    b.update(a.models, a.ready_apps)
    clock.now += 1
    assert b.merge(a.snapshots()) == ["default/m/1"]
    assert b.route("m").version == 2
    clock.now += 5  # recovery timeout: half-open admits one trial
    assert b.route("m").version == 1
    b.record("m", 1, True, 2.0)
    assert b.breaker("m", 1).state is BreakerState.CLOSED
    outcomes = {o.key: o for o in a.drain_outcomes()}
    assert outcomes["default/m/1"].errors == 2 and a.drain_outcomes() == []


def test_router_needs_the_app_running_and_says_what_is_unknown() -> None:
    router = Router("default")
    router.update({"m": _served({1: 100})}, frozenset())
    with pytest.raises(NoHealthyVersion):
        router.route("m")
    with pytest.raises(NotFound, match="not served"):
        router.route("other")
    with pytest.raises(NotFound, match="does not serve version 4"):
        router.version("m", 4)


def test_board_keeps_the_later_state_persists_it_and_windows_outcomes(store: StateStore
                                                                         ) -> None:
    clock = Clock()
    board = BreakerBoard(store, clock=clock)
    router = Router("p", BreakerConfig(failure_threshold=1), wall=clock)
    router.update({"m": _served({1: 100})}, frozenset({"default--m--v1"}))
    router.record("m", 1, False, 10.0)
    merged = board.sync(router.snapshots(), router.drain_outcomes())
    assert merged["p/m/1"].state is BreakerState.OPEN
    assert BreakerBoard(store).states()["p/m/1"].state is BreakerState.OPEN  # survives
    board.sync({}, [VersionOutcomes(key="p/m/1", requests=9, errors=0,
                                    latencies_ms=[1.0] * 9)])
    stats = board.stats("p/m/1", 60)
    assert (stats.requests, stats.errors) == (10, 1) and stats.p99_ms is not None
    values = {(m, tuple(sorted(labels.items()))): v for m, labels, v, _ in
              board.values(ADMIN, "p")}
    mv = (("model", "m"), ("project", "p"), ("version", "1"))
    assert values[("mlray_request_error_ratio", mv)] == pytest.approx(0.1)
    assert values[("mlray_breaker_state", mv)] == 2  # open
    p99 = (("model", "m"), ("project", "p"), ("quantile", "0.99"), ("version", "1"))
    assert values[("mlray_request_latency_quantile_seconds", p99)] == pytest.approx(
        stats.p99_ms / 1e3)
    assert board.values(ADMIN, "other") == [] and board.projects() == {"p"}
    clock.now += 120
    assert board.stats("p/m/1", 60).requests == 0
    assert [m for m, *_ in board.values(ADMIN, "p")] == ["mlray_breaker_state"]
    assert board.breaker_states(ADMIN, "p") == {"m/1": merged["p/m/1"]}


class FakeServe:
    """The deployer port as a record of apps (Ray Serve itself runs in the integration
    tests); ``fail`` names versions whose app fails to deploy (a blocking deploy raises,
    as ``serve.run`` does), ``refuse`` versions whose deploy call itself raises."""

    def __init__(self) -> None:
        self.apps: dict[str, str] = {}
        self.fail: set[int] = set()
        self.refuse: set[int] = set()
        self.serving: dict[str, Any] = {}

    def deploy(self, version: ModelVersion, serving: Any, wait: bool) -> None:
        name = app_name(version.project, version.model, version.version)
        if version.version in self.refuse:
            raise RuntimeError(f"cannot reach Serve to deploy {name}")
        self.serving[name] = serving
        self.apps[name] = "DEPLOY_FAILED" if version.version in self.fail else (
            "RUNNING" if wait else "DEPLOYING")
        if wait and version.version in self.fail:
            raise RuntimeError(f"Deploying app '{name}' failed")

    def status(self, project: str, model: str, version: int) -> tuple[str, str]:
        name = app_name(project, model, version)
        if self.apps.get(name) == "DEPLOYING":
            self.apps[name] = "RUNNING"
            return "DEPLOYING", ""
        return self.apps.get(name, "NOT_STARTED"), "replica constructor raised"

    def smoke(self, project: str, model: str, version: int) -> None:
        assert self.apps[app_name(project, model, version)] == "RUNNING"

    def delete(self, project: str, model: str, version: int) -> None:
        self.apps.pop(app_name(project, model, version), None)

    def running(self, all_states: bool = False) -> frozenset[str]:
        return frozenset(n for n, s in self.apps.items() if all_states or s == "RUNNING")

    def on_platform_port(self) -> bool:
        return True  # the ingress app in `apps` says whether Serve is the platform's


class Stats:
    def __init__(self) -> None:
        self.by_version: dict[int, tuple[int, int, float]] = {}

    def stats(self, key: str, window_s: float = 60.0) -> Any:
        from mlray.serving.breaker_board import VersionStats

        requests, errors, p99 = self.by_version.get(int(key.rsplit("/", 1)[1]), (0, 0, 1.0))
        return VersionStats(key=key, window_s=window_s, requests=requests, errors=errors,
                            error_rate=errors / requests if requests else 0.0,
                            p50_ms=p99, p99_ms=p99)


@pytest.fixture
def rollouts(store: StateStore, tmp_path: Path) -> tuple[RolloutController, ModelRegistry,
                                                         FakeServe, Stats, Clock]:
    artifacts = ArtifactStore(str(tmp_path / "art"))
    registry = ModelRegistry(store, artifacts)
    registry.create_model(ADMIN, "default", ModelSpec(name="m"))
    for i in range(3):
        registry.create_version(ADMIN, "default", "m",
                                artifact_spec(artifacts, tmp_path, f"w{i}".encode()))
    clock, serve, stats = Clock(), FakeServe(), Stats()
    config = ServingConfig.model_validate({"rollout": {
        "canary_steps": [10, 50, 100], "step_duration_s": 10, "min_requests": 5,
        "max_error_rate": 0.1, "max_p99_ratio": 2, "max_step_wait_s": 60,
        "rollback_window_s": 100, "max_duration_s": 1000}})
    return RolloutController(store, registry, serve, stats, config, clock=clock), registry, \
        serve, stats, clock


def _run(controller: RolloutController, clock: Clock, seconds: float = 0, ticks: int = 6
         ) -> None:
    for _ in range(ticks):
        controller.tick()
    clock.now += seconds
    for _ in range(ticks):
        controller.tick()


def test_blue_green_switches_keeps_the_old_app_then_cleans_up(rollouts: Any) -> None:
    controller, registry, serve, _, clock = rollouts
    first = controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT)
    _run(controller, clock)
    assert controller.get(ADMIN, "default", first.id).status is RolloutStatus.SUCCEEDED
    clock.now += 1
    second = controller.start(ADMIN, "default", "m", 2, Strategy.BLUE_GREEN)
    _run(controller, clock)
    assert registry.get_traffic(ADMIN, "default", "m").weights == {2: 100.0}
    # v1 kept for the rollback window
    assert serve.running() == {"default--m--v1", "default--m--v2"}
    _run(controller, clock, seconds=101)
    assert serve.running() == {"default--m--v2"}
    assert controller.get(ADMIN, "default", second.id).old_apps_removed
    rolled = controller.rollback(ADMIN, "default", "m", "bad numbers")
    assert rolled.status is RolloutStatus.ROLLED_BACK and "bad numbers" in (rolled.reason or "")
    assert registry.get_traffic(ADMIN, "default", "m").weights == {1: 100.0}
    assert "default--m--v1" in serve.running()  # redeployed to take the traffic back


def test_canary_walks_its_steps_when_the_gates_pass(rollouts: Any) -> None:
    controller, registry, _, stats, clock = rollouts
    controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT)
    _run(controller, clock)
    canary = controller.start(ADMIN, "default", "m", 2, Strategy.CANARY)
    _run(controller, clock)
    assert registry.get_traffic(ADMIN, "default", "m").weights == {1: 90.0, 2: 10.0}
    stats.by_version = {1: (100, 0, 5.0), 2: (20, 1, 6.0)}
    _run(controller, clock, seconds=10)
    assert registry.get_traffic(ADMIN, "default", "m").weights == {1: 50.0, 2: 50.0}
    _run(controller, clock, seconds=10)
    final = controller.get(ADMIN, "default", canary.id)
    assert final.status is RolloutStatus.SUCCEEDED
    assert registry.get_traffic(ADMIN, "default", "m").weights == {2: 100.0}


@pytest.mark.parametrize(("canary", "why"), [((40, 10, 5.0), "error rate"),
                                             ((40, 0, 50.0), "p99"),
                                             ((3, 3, 5.0), "error rate")])
def test_a_bad_canary_rolls_back_by_itself_and_records_why(
        rollouts: Any, canary: tuple[int, int, float], why: str) -> None:
    controller, registry, serve, stats, clock = rollouts
    controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT)
    _run(controller, clock)
    started = controller.start(ADMIN, "default", "m", 2, Strategy.CANARY)
    _run(controller, clock)
    stats.by_version = {1: (100, 0, 5.0), 2: canary}
    _run(controller, clock, seconds=10)
    final = controller.get(ADMIN, "default", started.id)
    assert final.status is RolloutStatus.ROLLED_BACK and why in (final.reason or "")
    assert registry.get_traffic(ADMIN, "default", "m").weights == {1: 100.0}
    assert "default--m--v2" not in serve.running()
    entries = registry.audit_log(ADMIN, "default", limit=1000)
    assert any(e.action == "rollout.rollback" and why in str(e.after) for e in entries)


def test_a_canary_without_traffic_fails_after_the_step_wait(rollouts: Any) -> None:
    controller, _, _, _, clock = rollouts
    controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT)
    _run(controller, clock)
    started = controller.start(ADMIN, "default", "m", 2, Strategy.CANARY)
    _run(controller, clock, seconds=30)
    assert controller.get(ADMIN, "default", started.id).status is RolloutStatus.RUNNING
    _run(controller, clock, seconds=40)
    final = controller.get(ADMIN, "default", started.id)
    assert final.status is RolloutStatus.ROLLED_BACK and "fewer than" in (final.reason or "")


def test_a_version_that_cannot_deploy_fails_and_leaves_traffic_alone(rollouts: Any) -> None:
    controller, registry, serve, _, clock = rollouts
    controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT)
    _run(controller, clock)
    serve.fail.add(2)
    started = controller.start(ADMIN, "default", "m", 2, Strategy.BLUE_GREEN)
    _run(controller, clock)
    final = controller.get(ADMIN, "default", started.id)
    assert final.status is RolloutStatus.ROLLED_BACK and "failed to deploy" in final.reason
    assert registry.get_traffic(ADMIN, "default", "m").weights == {1: 100.0}


def test_rollout_requests_are_checked(rollouts: Any) -> None:
    controller, registry, _, _, _ = rollouts
    with pytest.raises(InvalidInput, match="needs a version already serving"):
        controller.start(ADMIN, "default", "m", 1, Strategy.CANARY)
    with pytest.raises(NotFound):
        controller.start(ADMIN, "default", "m", 9, Strategy.DIRECT)
    with pytest.raises(InvalidInput, match="overrides"):
        controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT, {"num_replicas": 0})
    controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT)
    with pytest.raises(Conflict, match="still running"):
        controller.start(ADMIN, "default", "m", 2, Strategy.DIRECT)
    with pytest.raises(NotFound, match="first deployment"):
        controller.rollback(ADMIN, "default", "m")
    viewer = Caller(user="v", roles={"default": Role.viewer})
    with pytest.raises(Exception, match="editor"):
        controller.start(viewer, "default", "m", 2, Strategy.DIRECT)
    assert registry.get_version(ADMIN, "default", "m", 1).stage is Stage.NONE


def test_json_inputs_become_typed_columns_or_name_the_field() -> None:
    cols = columns_from_mapping({"amount": [1, 2.5, None], "country": ["DE", None, "FR"]},
                                SCHEMA, max_rows=10)
    assert cols["amount"].dtype == np.float64 and np.isnan(cols["amount"][2])
    assert list(columns_from_rows([{"amount": 1, "country": "DE"}], SCHEMA, 10)["country"]) \
        == ["DE"]
    bad = [({"amount": ["1"], "country": ["DE"]}, "amount"),
           ({"amount": [True], "country": ["DE"]}, "amount"),
           ({"amount": [1.0], "country": [3]}, "country"),
           ({"amount": [1.0, 2.0], "country": ["DE"]}, "country"),
           ({"amount": [[1.0]], "country": ["DE"]}, "amount"),
           ({"country": ["DE"]}, "amount")]
    for data, field in bad:
        with pytest.raises(InvalidInput) as err:
            columns_from_mapping(data, SCHEMA, max_rows=10)
        assert err.value.field == field, data
    with pytest.raises(PayloadTooLarge):
        columns_from_mapping({"amount": [1.0] * 11, "country": ["x"] * 11}, SCHEMA, 10)
    with pytest.raises(InvalidInput) as err:
        columns_from_rows([{"amount": 1, "country": "DE"}, {"amount": 1}], SCHEMA, 10)
    assert err.value.field == "country" and "instances[1]" in str(err.value)


def test_deploying_the_production_version_starts_its_app_once(rollouts: Any) -> None:
    controller, registry, serve, _, clock = rollouts
    registry.transition_stage(ADMIN, "default", "m", 1, Stage.STAGING)
    registry.transition_stage(ADMIN, "default", "m", 1, Stage.PRODUCTION)
    assert registry.get_traffic(ADMIN, "default", "m").weights == {1: 1.0}  # implied
    controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT)
    _run(controller, clock)
    assert serve.running() == {"default--m--v1"}
    with pytest.raises(InvalidInput, match="already takes all traffic"):
        controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT)


def test_the_data_plane_records_only_catalogued_metrics() -> None:
    from mlray.alerts.catalogue import METRIC_NAMES
    from mlray.serving.telemetry import RECORDED

    assert set(RECORDED) <= set(METRIC_NAMES)


def _live(controller: RolloutController, clock: Clock, version: int = 1) -> None:
    controller.start(ADMIN, "default", "m", version, Strategy.DIRECT)
    _run(controller, clock)
    clock.now += 1


def _weights(registry: ModelRegistry) -> dict[int, float]:
    return registry.get_traffic(ADMIN, "default", "m").weights


def test_rollback_restores_an_archived_version_and_a_canary_over_it_moves(rollouts: Any
                                                                           ) -> None:
    """The issue's stuck canary: the version that served was archived under it."""
    controller, registry, serve, stats, clock = rollouts
    _live(controller, clock)
    controller.start(ADMIN, "default", "m", 2, Strategy.BLUE_GREEN)
    _run(controller, clock)
    registry.transition_stage(ADMIN, "default", "m", 1, Stage.ARCHIVED)  # v1 has no traffic
    back = controller.rollback(ADMIN, "default", "m", "v2 answers worse")
    assert back.status is RolloutStatus.ROLLED_BACK
    assert _weights(registry) == {1: 100.0}  # the last policy that served, v1 Archived
    assert "default--m--v2" not in serve.running()
    clock.now += 1
    canary = controller.start(ADMIN, "default", "m", 3, Strategy.CANARY)
    _run(controller, clock)
    assert _weights(registry) == {1: 90.0, 3: 10.0}
    stats.by_version = {1: (100, 0, 5.0), 3: (40, 10, 5.0)}
    _run(controller, clock, seconds=10)
    final = controller.get(ADMIN, "default", canary.id)
    assert final.status is RolloutStatus.ROLLED_BACK and "error rate" in (final.reason or "")
    assert _weights(registry) == {1: 100.0} and "default--m--v3" not in serve.running()


def test_a_rollout_whose_rollback_fails_still_ends_and_can_be_rolled_back_again(
        rollouts: Any) -> None:
    controller, registry, serve, stats, clock = rollouts
    _live(controller, clock)
    started = controller.start(ADMIN, "default", "m", 2, Strategy.CANARY)
    _run(controller, clock)
    del serve.apps["default--m--v1"]  # v1's app is gone and cannot come back for now
    serve.fail.add(1)
    stats.by_version = {1: (100, 0, 5.0), 2: (40, 10, 5.0)}
    _run(controller, clock, seconds=10)
    final = controller.get(ADMIN, "default", started.id)
    assert final.status is RolloutStatus.FAILED
    assert "canary gate failed" in (final.reason or "")
    assert "restoring the previous policy failed" in (final.reason or "")
    assert [e.message for e in final.history].count(f"failed: {final.reason}") == 1
    serve.fail.clear()
    back = controller.rollback(ADMIN, "default", "m")  # tries the restore again
    assert back.id == started.id and back.status is RolloutStatus.ROLLED_BACK
    assert _weights(registry) == {1: 100.0} and "default--m--v1" in serve.running()


def test_a_failed_rollback_by_hand_ends_the_rollout_so_a_new_one_can_start(rollouts: Any
                                                                          ) -> None:
    controller, _, serve, _, clock = rollouts
    _live(controller, clock)
    started = controller.start(ADMIN, "default", "m", 2, Strategy.CANARY)
    _run(controller, clock)
    del serve.apps["default--m--v1"]
    serve.fail.add(1)
    with pytest.raises(RuntimeError, match="default--m--v1"):
        controller.rollback(ADMIN, "default", "m")
    ended = controller.get(ADMIN, "default", started.id)
    assert ended.status is RolloutStatus.FAILED and "by local" in (ended.reason or "")
    assert controller.start(ADMIN, "default", "m", 3, Strategy.CANARY).status \
        is RolloutStatus.RUNNING


def test_a_rollout_past_its_deadline_fails_and_restores_the_previous_policy(rollouts: Any
                                                                           ) -> None:
    controller, registry, serve, _, clock = rollouts
    controller.serving = controller.serving.model_copy(update={
        "rollout": controller.settings.model_copy(update={"max_duration_s": 30})})
    _live(controller, clock)
    started = controller.start(ADMIN, "default", "m", 2, Strategy.CANARY)
    _run(controller, clock, seconds=25)  # too few requests, but within the step wait
    assert controller.get(ADMIN, "default", started.id).status is RolloutStatus.RUNNING
    _run(controller, clock, seconds=10)
    final = controller.get(ADMIN, "default", started.id)
    assert final.status is RolloutStatus.ROLLED_BACK
    assert "did not finish within 30 s" in (final.reason or "")
    assert _weights(registry) == {1: 100.0} and "default--m--v2" not in serve.running()


def test_a_new_app_lost_while_starting_is_deployed_again(rollouts: Any) -> None:
    controller, registry, serve, _, clock = rollouts
    _live(controller, clock)
    started = controller.start(ADMIN, "default", "m", 2, Strategy.BLUE_GREEN)
    controller.tick()  # deploying
    del serve.apps["default--m--v2"]  # Serve restarted under it
    _run(controller, clock)
    assert controller.get(ADMIN, "default", started.id).status is RolloutStatus.SUCCEEDED
    assert _weights(registry) == {2: 100.0}


def test_reconciling_brings_back_every_wanted_app_with_its_settings(rollouts: Any) -> None:
    """After a cluster restart the registry survives and the apps do not."""
    controller, registry, serve, _, clock = rollouts
    serve.apps[INGRESS_APP] = "RUNNING"
    reconciler = Reconciler(registry, controller, serve, clock=clock)
    controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT, {"num_replicas": 2})
    _run(controller, clock)
    controller.retune(ADMIN, "default", "m", 1, BatchTuning(max_batch_size=8))
    assert serve.serving["default--m--v1"].num_replicas == 2  # a retune keeps the overrides
    clock.now += 1
    controller.start(ADMIN, "default", "m", 2, Strategy.SHADOW)
    _run(controller, clock)
    assert reconciler.reconcile() == Pass()
    serve.apps, serve.serving = {INGRESS_APP: "RUNNING"}, {}
    assert sorted(reconciler.reconcile().deployed) == ["default--m--v1", "default--m--v2"]
    restored = serve.serving["default--m--v1"]
    assert (restored.num_replicas, restored.tuning.max_batch_size) == (2, 8)
    assert reconciler.reconcile() == Pass()  # idempotent


def test_reconciling_removes_only_model_apps_that_nothing_wants(rollouts: Any) -> None:
    controller, _, serve, _, clock = rollouts
    serve.apps.update({INGRESS_APP: "RUNNING", "other-app": "RUNNING", "default--m--v3": "RUNNING",
                       "default--gone--v1": "DEPLOY_FAILED"})
    reconciler = Reconciler(rollouts[1], controller, serve, clock=clock)
    _live(controller, clock)
    serve.delete = lambda project, model, version: None  # type: ignore[method-assign]  # slow Serve
    assert reconciler.reconcile().removed == ["default--gone--v1", "default--m--v3"]
    assert reconciler.reconcile() == Pass()  # asked once while Serve deletes them
    del serve.apps["default--gone--v1"], serve.apps["default--m--v3"]
    assert reconciler.reconcile() == Pass()
    assert set(serve.apps) == {INGRESS_APP, "other-app", "default--m--v1"}


def test_reconciling_leaves_a_running_rollout_alone_and_keeps_its_rollback_window(
        rollouts: Any) -> None:
    controller, _, serve, _, clock = rollouts
    serve.apps[INGRESS_APP] = "RUNNING"
    reconciler = Reconciler(rollouts[1], controller, serve, clock=clock)
    _live(controller, clock)
    controller.start(ADMIN, "default", "m", 2, Strategy.BLUE_GREEN)
    assert reconciler.reconcile() == Pass()  # the rollout deploys v2 itself
    controller.tick()
    # not in a policy yet
    assert reconciler.reconcile() == Pass() and "default--m--v2" in serve.apps
    _run(controller, clock)  # switched; v1 kept for the rollback window
    serve.apps = {INGRESS_APP: "RUNNING"}
    assert sorted(reconciler.reconcile().deployed) == ["default--m--v1", "default--m--v2"]
    _run(controller, clock, seconds=101)  # the window is over: v1 goes, and stays gone
    assert reconciler.reconcile() == Pass() and "default--m--v1" not in serve.apps


def test_reconciling_waits_for_serve_retries_and_shows_desired_against_running(
        rollouts: Any) -> None:
    controller, registry, serve, _, clock = rollouts
    reconciler = Reconciler(registry, controller, serve, clock=clock, retry_s=5)
    registry.set_traffic(ADMIN, "default", "m", TrafficPolicy(weights={1: 75, 2: 25}))
    assert reconciler.reconcile().skipped and serve.apps == {}  # Serve is not up for us
    v1, v2, v3 = (app_name("default", "m", v) for v in (1, 2, 3))
    serve.apps.update({INGRESS_APP: "RUNNING", v3: "RUNNING"})
    serve.refuse.add(2)
    done = reconciler.reconcile()
    assert done.deployed == [v1] and "cannot reach Serve" in done.errors[v2]
    serve.apps[v3] = "RUNNING"
    rows = {r["app"]: r for r in reconciler.apps(ADMIN, "default")}
    assert set(rows) == {v1, v2, v3}  # never the ingress
    assert (rows[v1]["desired"], rows[v1]["why"]) == (True, "75% of traffic")
    assert rows[v2]["status"] == "NOT_STARTED" and rows[v2]["desired"]
    assert "cannot reach Serve" in rows[v2]["message"]
    assert not rows[v3]["desired"] and "being removed" in rows[v3]["why"]
    serve.refuse.clear()
    assert reconciler.reconcile().deployed == []  # waits before it retries
    clock.now += 5
    assert reconciler.reconcile().deployed == ["default--m--v2"]
    # Another project sees none of this project's apps, strays included (each has an owner).
    assert reconciler.apps(ADMIN, "other") == []
    serve.apps["other--m--v1"] = "RUNNING"  # the same model name in another project
    assert [r["app"] for r in reconciler.apps(ADMIN, "other")] == ["other--m--v1"]
    assert "other--m--v1" not in {r["app"] for r in reconciler.apps(ADMIN, "default")}
