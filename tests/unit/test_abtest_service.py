"""The ``abtests`` service without Ray: real SQLite state, a real registry, real Parquet
prediction and feedback logs with known outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlray.abtest.experiment import ExperimentSpec, parse_arms, parse_guardrail
from mlray.abtest.power import sample_size_binary
from mlray.abtest.service import AbTestService
from mlray.errors import AlreadyExists, BackendUnavailable, Conflict, InvalidInput, NotFound
from mlray.identity import Caller
from mlray.monitoring.prediction_log import FeedbackLog, PredictionLog
from mlray.registry import ModelRegistry, ModelSpec, Stage
from mlray.registry.served import ROLLOUTS
from mlray.serving.breaker_board import BreakerBoard
from mlray.serving.model_names import breaker_key
from mlray.serving.router import VersionOutcomes
from mlray.storage import ArtifactStore, StateStore, open_state_store
from tests.unit.helpers import artifact_spec

ADMIN = Caller.local_admin("alice")
P = "default"
T0 = 1_700_000_000.0


class Clock:
    """A settable clock (the experiment's start and each look)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StateStore]:
    store = open_state_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def registry(sqlite_store: StateStore, tmp_path: Path) -> ModelRegistry:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    registry = ModelRegistry(sqlite_store, artifacts)
    registry.create_model(ADMIN, P, ModelSpec(name="fraud"))
    for i in range(3):
        registry.create_version(ADMIN, P, "fraud",
                                artifact_spec(artifacts, tmp_path, f"w{i}".encode()))
    registry.transition_stage(ADMIN, P, "fraud", 1, Stage.PRODUCTION)
    return registry


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def board(clock: Clock, sqlite_store: StateStore) -> BreakerBoard:
    return BreakerBoard(sqlite_store, clock=clock)


@pytest.fixture
def service(sqlite_store: StateStore, registry: ModelRegistry, tmp_path: Path, clock: Clock,
            board: BreakerBoard) -> AbTestService:
    return AbTestService(sqlite_store, registry, str(tmp_path / "offline"),
                         stats=lambda p, m, v, w: board.stats(breaker_key(p, m, v), w),
                         clock=clock)


def feed(root: Path, version: int, outcomes: list[float], *, prefix: str = "",
         prediction: float = 0.9, model: str = "fraud", at: float = T0 + 1) -> None:
    """Log one request per outcome answered by ``version`` and post its feedback."""
    log = PredictionLog(str(root), P, clock=lambda: at)
    ids = [f"{prefix}v{version}-{i}" for i in range(len(outcomes))]
    for rid in ids:
        log.add(rid, model, version, {"x": np.array([0.5])}, np.array([prediction]), 2.0)
    log.flush()
    FeedbackLog(str(root), P, clock=lambda: at + 1).write(
        [(rid, float(y), 0) for rid, y in zip(ids, outcomes, strict=True)])


def rate(n: int, successes: int) -> list[float]:
    return [1.0] * successes + [0.0] * (n - successes)


def spec(**fields: object) -> ExperimentSpec:
    base: dict[str, object] = {"model": "fraud", "arms": {1: 50, 2: 50}, "min_effect": 0.1,
                               "baseline": 0.1}
    return ExperimentSpec(**{**base, **fields})  # type: ignore[arg-type]


def test_start_splits_traffic_sticky_and_plans_the_size(service: AbTestService,
                                                        registry: ModelRegistry) -> None:
    exp = service.start(ADMIN, P, spec())
    policy = registry.get_traffic(ADMIN, P, "fraud")
    assert policy.weights == {1: 50.0, 2: 50.0} and policy.sticky
    assert exp.sample_size == sample_size_binary(0.1, 0.1, alpha=0.05, power=0.8)
    assert exp.status == "running" and exp.previous_policy == {
        "weights": {"1": 1.0}, "shadows": [], "sticky": True}
    with pytest.raises(AlreadyExists, match="already runs experiment"):
        service.start(ADMIN, P, spec())


def test_start_refuses_unknown_undeployed_and_bad_arms(service: AbTestService) -> None:
    with pytest.raises(NotFound, match="version 9"):
        service.start(ADMIN, P, spec(arms={1: 50, 9: 50}))
    with pytest.raises(InvalidInput, match=r"control v2 .* is not deployed"):
        service.start(ADMIN, P, spec(arms={2: 50, 3: 50}))
    with pytest.raises(InvalidInput, match="positive weight"):
        service.start(ADMIN, P, {"model": "fraud", "arms": {1: 50, 2: 0},  # type: ignore[arg-type]
                                 "min_effect": 0.1})
    with pytest.raises(InvalidInput, match="arms"):
        parse_arms("v1=50,v1=50")
    with pytest.raises(InvalidInput, match="expected metric<=value"):
        parse_guardrail("errors<0.1")
    with pytest.raises(InvalidInput, match="one of error_ratio, p99_ms, accuracy"):
        parse_guardrail("errors<=0.1")


def test_arm_totals_and_a_better_treatment_is_promoted(service: AbTestService,
                                                       registry: ModelRegistry,
                                                       sqlite_store: StateStore,
                                                       tmp_path: Path, clock: Clock) -> None:
    service.start(ADMIN, P, spec())
    feed(tmp_path / "offline", 1, rate(300, 30))
    feed(tmp_path / "offline", 2, rate(300, 75))
    clock.now = T0 + 60
    exp = service.status(ADMIN, P, "fraud")
    totals = exp.last.totals  # type: ignore[union-attr]
    assert (totals["v1"].requests, totals["v1"].labelled, totals["v1"].total) == (300, 300, 30)
    assert (totals["v2"].requests, totals["v2"].total) == (300, 75)
    assert exp.last.srm is not None and not exp.last.srm.flagged  # type: ignore[union-attr]
    assert exp.status == "promoted" and exp.winner == 2
    assert exp.last.result.diff == pytest.approx(0.15)  # type: ignore[union-attr]
    assert registry.get_traffic(ADMIN, P, "fraud").weights == {2: 100.0}
    assert registry.get_version(ADMIN, P, "fraud", 2).stage is Stage.PRODUCTION
    assert registry.get_version(ADMIN, P, "fraud", 1).stage is Stage.ARCHIVED
    entry = [e for e in sqlite_store.audit_log(limit=100) if e.action == "abtest.promote"]
    assert len(entry) == 1
    after = entry[0].after or {}
    assert after["winner"] == 2 and after["result"]["p_value"] < 0.05
    assert after["totals"]["v2"]["total"] == 75 and "srm" in after


def test_a_worse_treatment_is_rolled_back(service: AbTestService, registry: ModelRegistry,
                                          sqlite_store: StateStore, tmp_path: Path) -> None:
    service.start(ADMIN, P, spec())
    feed(tmp_path / "offline", 1, rate(300, 75))
    feed(tmp_path / "offline", 2, rate(300, 30))
    exp = service.status(ADMIN, P, "fraud")
    assert exp.status == "rolled_back" and exp.winner == 1
    assert registry.get_traffic(ADMIN, P, "fraud").weights == {1: 100.0}
    assert registry.get_version(ADMIN, P, "fraud", 1).stage is Stage.PRODUCTION
    # The decision is stored (and audited) before the traffic changes.
    actions = [e.action for e in sqlite_store.audit_log(limit=100)]
    assert actions[-2:] == ["abtest.rollback", "traffic.set"]


def test_a_decision_stored_before_a_crash_sets_its_traffic_at_the_next_look(
        service: AbTestService, registry: ModelRegistry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    service.start(ADMIN, P, spec())
    feed(tmp_path / "offline", 1, rate(300, 30))
    feed(tmp_path / "offline", 2, rate(300, 75))
    real = registry.set_traffic

    def down(*args: object, **kwargs: object) -> None:
        raise BackendUnavailable("the registry's store is away")

    monkeypatch.setattr(registry, "set_traffic", down)  # the process dies mid-conclusion
    with pytest.raises(BackendUnavailable):
        service.status(ADMIN, P, "fraud")
    stored = service.list_abtests(ADMIN, P)[-1]
    assert stored.status == "promoted" and stored.pending_traffic == {2: 100.0}
    assert registry.get_traffic(ADMIN, P, "fraud").weights == {1: 50.0, 2: 50.0}
    monkeypatch.setattr(registry, "set_traffic", real)
    service.evaluate_all()  # the actor's next look finishes what was decided
    assert registry.get_traffic(ADMIN, P, "fraud").weights == {2: 100.0}
    assert registry.get_version(ADMIN, P, "fraud", 2).stage is Stage.PRODUCTION
    assert service.list_abtests(ADMIN, P)[-1].pending_traffic is None


def test_below_the_planned_size_it_keeps_running(service: AbTestService,
                                                 tmp_path: Path) -> None:
    service.start(ADMIN, P, spec(min_effect=0.02))
    feed(tmp_path / "offline", 1, rate(100, 10))
    feed(tmp_path / "offline", 2, rate(100, 40))
    exp = service.status(ADMIN, P, "fraud")
    assert exp.status == "running"
    assert exp.last.decision.outcome == "keep_running"  # type: ignore[union-attr]


def test_a_breached_guardrail_stops_the_test(service: AbTestService, board: BreakerBoard,
                                             registry: ModelRegistry, tmp_path: Path,
                                             clock: Clock) -> None:
    service.start(ADMIN, P, spec(min_effect=0.02, guardrails=[
        parse_guardrail("error_ratio<=0.05"), parse_guardrail("accuracy>=0.5")]))
    feed(tmp_path / "offline", 1, rate(50, 5))
    feed(tmp_path / "offline", 2, rate(50, 30))
    clock.now = T0 + 30
    board.sync({}, [VersionOutcomes(key=breaker_key(P, "fraud", 2), requests=100, errors=3,
                                    latencies_ms=[5.0])])
    assert service.status(ADMIN, P, "fraud").status == "running"
    board.sync({}, [VersionOutcomes(key=breaker_key(P, "fraud", 2), requests=100, errors=40,
                                    latencies_ms=[5.0])])
    exp = service.status(ADMIN, P, "fraud")
    assert exp.status == "rolled_back"
    assert "guardrail breached: error_ratio of v2" in exp.last.decision.reason  # type: ignore[union-attr]
    assert registry.get_traffic(ADMIN, P, "fraud").weights == {1: 100.0}


def test_live_accuracy_guardrail(service: AbTestService, tmp_path: Path) -> None:
    service.start(ADMIN, P, spec(min_effect=0.02, guardrails=[parse_guardrail("accuracy>=0.8")]))
    feed(tmp_path / "offline", 2, rate(40, 0), prediction=0.9)  # always wrong
    exp = service.status(ADMIN, P, "fraud")
    assert exp.status == "rolled_back"
    assert "accuracy of v2 (0 against accuracy>=0.8)" in exp.last.decision.reason  # type: ignore[union-attr]


def test_sequential_concludes_before_the_fixed_size(service: AbTestService,
                                                    tmp_path: Path) -> None:
    exp = service.start(ADMIN, P, spec(sequential=True, min_effect=0.05))
    feed(tmp_path / "offline", 1, rate(400, 40))
    feed(tmp_path / "offline", 2, rate(400, 120))
    exp = service.status(ADMIN, P, "fraud")
    assert exp.status == "promoted"
    assert exp.last.result.e_value > 20  # type: ignore[union-attr,operator]
    assert exp.sequential is not None and exp.sequential.looks == 1


def test_stop_sends_traffic_back_to_the_control(service: AbTestService,
                                                registry: ModelRegistry,
                                                sqlite_store: StateStore) -> None:
    service.start(ADMIN, P, spec())
    stopped = service.stop(ADMIN, P, "fraud")
    assert stopped.status == "stopped"
    assert registry.get_traffic(ADMIN, P, "fraud").weights == {1: 100.0}
    assert [e.action for e in sqlite_store.audit_log(limit=100)][-2:] == [
        "abtest.stop", "traffic.set"]  # stored first, then the traffic
    with pytest.raises(NotFound, match="runs no A/B experiment"):
        service.stop(ADMIN, P, "fraud")
    assert service.start(ADMIN, P, spec()).status == "running"  # a new one may start


def test_bandit_weights_move_toward_the_better_arm(service: AbTestService,
                                                   registry: ModelRegistry,
                                                   sqlite_store: StateStore,
                                                   tmp_path: Path) -> None:
    service.start(ADMIN, P, spec(bandit="thompson", arms={1: 1, 2: 1, 3: 1}))
    feed(tmp_path / "offline", 1, rate(100, 10))
    feed(tmp_path / "offline", 2, rate(100, 40))
    feed(tmp_path / "offline", 3, rate(100, 12))
    [exp] = service.evaluate_all()
    weights = registry.get_traffic(ADMIN, P, "fraud").weights
    assert exp.status == "running" and weights[2] > 90 and weights[1] < 5 and weights[3] < 5
    writes = [e.action for e in sqlite_store.audit_log(limit=100)].count("traffic.set")
    service.evaluate_all()  # nothing new: the policy is not rewritten
    assert [e.action for e in sqlite_store.audit_log(limit=100)].count("traffic.set") == writes


def test_epsilon_greedy_gives_the_best_arm_one_minus_epsilon(service: AbTestService,
                                                             registry: ModelRegistry,
                                                             tmp_path: Path) -> None:
    service.start(ADMIN, P, spec(bandit="epsilon", epsilon=0.2))
    feed(tmp_path / "offline", 1, rate(50, 30))
    feed(tmp_path / "offline", 2, rate(50, 10))
    service.evaluate_all()
    assert registry.get_traffic(ADMIN, P, "fraud").weights == {1: 90.0, 2: 10.0}


def test_a_continuous_cost_metric_promotes_the_cheaper_arm(service: AbTestService,
                                                           tmp_path: Path) -> None:
    service.start(ADMIN, P, spec(metric="loss_amount", kind="continuous", baseline=100.0,
                                 sd=20.0, min_effect=10.0, higher_is_better=False))
    rng = np.random.default_rng(0)
    feed(tmp_path / "offline", 1, list(rng.normal(100.0, 20.0, 300)), prediction=50.0)
    feed(tmp_path / "offline", 2, list(rng.normal(85.0, 20.0, 300)), prediction=50.0)
    exp = service.status(ADMIN, P, "fraud")
    assert exp.last.result.method == "Welch t-test"  # type: ignore[union-attr]
    assert exp.last.totals["v2"].mean == pytest.approx(85.0, abs=3)  # type: ignore[union-attr]
    assert (exp.status, exp.winner) == ("promoted", 2)


def test_the_control_is_stored_not_inferred_from_order() -> None:
    first = spec(arms={2: 50, 1: 50})
    assert (first.control, first.treatments) == (2, [1])
    stored = ExperimentSpec.model_validate(first.model_dump(mode="json"))
    assert stored.control == 2
    assert spec(arms={2: 50, 1: 50}, control=1).treatments == [2]
    with pytest.raises(ValueError, match="control: v5 is not an arm"):
        spec(control=5)


def test_start_waits_for_a_running_rollout_of_the_model(service: AbTestService,
                                                       sqlite_store: StateStore) -> None:
    sqlite_store.put(ROLLOUTS, f"{P}/fraud/r1", {"model": "fraud", "version": 2,
                                                 "status": "running", "strategy": "canary",
                                                 "created_at": T0})
    with pytest.raises(Conflict, match=r"a rollout of fraud \(v2\) is running"):
        service.start(ADMIN, P, spec())
