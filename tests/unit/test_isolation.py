"""Project isolation (#13 part 4) through the Python client, in-process.

Project ``team-a`` holds one object of every resource kind. A caller with roles only in
``team-b`` (admin there: the most it can hold) then tries every client call against
``team-a``: each is refused with PermissionDenied, and with the very same answer whether
the object it names exists or not, so nothing about ``team-a`` can be read, listed,
changed or inferred. Working in its own project with the same names, the caller sees
none of ``team-a``'s rows, logs, alerts or keys either.

The services run in this process behind :class:`LocalTransport` (the same services the
actors wrap); serving's rollout controller and reconciler are driven as plain services
(their denials come before any Serve call). What lives in Ray itself (Serve app names,
stream actors) is checked in tests/integration/test_isolation_ray.py, the CLI in
tests/test_cli_isolation.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlray._private.transport import LocalTransport
from mlray._private.validation import build
from mlray.alerts.rules import parse_rules
from mlray.alerts.service import AlertsService
from mlray.client import Client
from mlray.composition import local_services
from mlray.config import PlatformConfig
from mlray.errors import NotFound, PermissionDenied
from mlray.features import FeatureRepo
from mlray.features.online import FeatureStatus
from mlray.identity import Caller, Role
from mlray.monitoring.prediction_log import FeedbackLog, PredictionLog
from mlray.serving.breaker_board import BreakerBoard
from mlray.serving.deployer import ServeDeployer
from mlray.serving.reconcile import Reconciler
from mlray.serving.rollout import RolloutController, Strategy
from mlray.serving.settings import BatchTuning
from mlray.storage import StateStore
from tests.conftest import OwnRay

A, B = "team-a", "team-b"
ALICE = Caller(user="alice", roles={A: Role.admin})
MALLORY = Caller(user="mallory", roles={B: Role.admin})  # the most a B caller can hold
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
RULES = parse_rules({"rules": [{"name": "DriftHigh", "metric": "mlray_drift_share",
                                "operator": ">", "threshold": 0.3, "for": 0,
                                "severity": "warning", "channels": ["log"]}],
                     "channels": {"log": {"type": "log"}}})


def _repo() -> FeatureRepo:
    return build(FeatureRepo, entities=[{"name": "user", "join_keys": [{"name": "user_id"}]}],
                 feature_views=[{"name": "stats", "entities": ["user"], "ttl": "1d",
                                 "source": {"type": "push"},
                                 "fields": [{"name": "clicks", "dtype": "int64"}]}])


def _rows(clicks: int) -> pa.Table:
    return pa.table({"user_id": [1], "event_timestamp": pa.array([T0], pa.timestamp("us", "UTC")),
                     "clicks": [clicks]})


class World:
    """Team A's objects, and clients for Alice (A) and Mallory (B) on one platform."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = build(PlatformConfig, "", home=tmp / "home")
        services = local_services(self.config)
        self.store: StateStore = services["registry"]._store
        self.transport = LocalTransport(services)
        self.alice = self.client(ALICE, A)
        self.intruder = self.client(MALLORY, A)  # Mallory, aiming at team A
        self.mallory = self.client(MALLORY, B)  # Mallory in her own project
        weights = tmp / "model.bin"
        weights.write_bytes(b"weights of team a")
        self.artifact = weights
        self.alice.registry.register("fraud", weights, metrics={"auc": 0.9})
        self.alice.registry.set_alias("fraud", "champion", 1)
        self.alice.registry.set_traffic("fraud", {1: 100.0})
        self.alice.experiments.create_experiment("exp")
        run = self.alice.experiments.start_run("exp")
        self.alice.experiments.log_metric(run.run_id, "loss", 0.5)
        self.run_id = run.run_id
        self.job_id = self.alice.jobs.create("train", "nightly").job_id
        self.alice.features.apply(_repo())
        self.alice.features.push("stats", _rows(7))
        log = PredictionLog(str(self.config.offline_uri), A)
        log.add("req-1", "fraud", 1, {"x": np.array([1.0])}, np.array([0.9]), 1.0)
        log.flush()
        FeedbackLog(str(self.config.offline_uri), A).write([("req-1", 1.0, 0)])
        self.key_id = self.alice.keys.create("svc", {A: "viewer"}).info.key_id
        self.registry = services["registry"]
        self.rollouts = RolloutController(self.store, self.registry, ServeDeployer(self.config),
                                          BreakerBoard(self.store))
        self.reconciler = Reconciler(self.registry, self.rollouts, ServeDeployer(self.config))
        self.alerts = AlertsService(self.store, RULES, lambda: [
            ("mlray_drift_share", {"project": A, "model": "fraud", "version": "1"}, 0.9,
             T0.timestamp())], notify=lambda _: None, clock=T0.timestamp)
        self.alerts.evaluate()

    def client(self, caller: Caller, project: str) -> Client:
        return Client(self.config, self.transport, caller, project, mode="local")

    @staticmethod
    def ident(which: str, existing: str) -> str:
        """Team A's id for the existing variant, else a well-formed id nobody holds."""
        return existing if which == "fraud" else "0" * len(existing)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("isolation"))


Call = Callable[[World, str], Any]

#: (resource kind and call, the call given the name or id of team A's object; it is made
#: once with the existing object and once with a missing one).
ON_AN_OBJECT: list[tuple[str, Call]] = [
    ("model get", lambda w, m: w.intruder.registry.get_model(m)),
    ("model update", lambda w, m: w.intruder.registry.update_model(m, description="x")),
    ("model delete", lambda w, m: w.intruder.registry.delete_model(m, force=True)),
    ("model register", lambda w, m: w.intruder.registry.register(m, w.artifact)),
    ("model gates", lambda w, m: w.intruder.registry.required_gates(m)),
    ("model set gates", lambda w, m: w.intruder.registry.set_required_gates(m, [])),
    ("version get", lambda w, m: w.intruder.registry.get_version(m, 1)),
    ("version list", lambda w, m: w.intruder.registry.list_versions(m)),
    ("version promote", lambda w, m: w.intruder.registry.promote(m, 1, force=True)),
    ("version stage", lambda w, m: w.intruder.registry.transition_stage(m, 1, "Archived")),
    ("version delete", lambda w, m: w.intruder.registry.delete_version(m, 1)),
    ("version alias", lambda w, m: w.intruder.registry.set_alias(m, "mine", 1)),
    ("version unalias", lambda w, m: w.intruder.registry.delete_alias(m, "champion")),
    ("version resolve", lambda w, m: w.intruder.registry.resolve(f"models:/{m}@champion")),
    ("version download", lambda w, m: w.intruder.registry.download(f"models:/{m}/1",
                                                                   w.tmp / "stolen")),
    ("traffic get", lambda w, m: w.intruder.registry.get_traffic(m)),
    ("traffic set", lambda w, m: w.intruder.serving.traffic(m, {1: 100.0})),
    ("deployment breaker stats", lambda w, m: w.intruder.serving.stats(m, 1)),
    ("deployment retune", lambda w, m: w.intruder.serving.retune(m, 1, max_batch_size=2)),
    ("rollout start", lambda w, m: w.rollouts.start(MALLORY, A, m, 1, Strategy.DIRECT)),
    ("rollout list", lambda w, m: w.rollouts.list(MALLORY, A, m)),
    ("rollout rollback", lambda w, m: w.rollouts.rollback(MALLORY, A, m)),
    ("rollout retune", lambda w, m: w.rollouts.retune(MALLORY, A, m, 1, BatchTuning())),
    ("rollout get", lambda w, m: w.rollouts.get(MALLORY, A, f"{m}-rollout")),
    ("prediction log performance", lambda w, m: w.intruder.monitoring.performance(m, 1)),
    ("drift", lambda w, m: w.intruder.monitoring.drift(m, 1)),
    ("monitor quality", lambda w, m: w.intruder.monitoring.quality(m)),
    ("experiment get", lambda w, m: w.intruder.experiments.get_experiment(
        "exp" if m == "fraud" else "none")),
    ("run start", lambda w, m: w.intruder.experiments.start_run("exp" if m == "fraud"
                                                                else "none")),
    ("run get", lambda w, m: w.intruder.experiments.get_run(w.ident(m, w.run_id))),
    ("run log params", lambda w, m: w.intruder.experiments.log_params(
        w.ident(m, w.run_id), {"lr": 1})),
    ("run tags", lambda w, m: w.intruder.experiments.set_tags(w.ident(m, w.run_id), {"a": "b"})),
    ("run log metric", lambda w, m: w.intruder.experiments.log_metric(
        w.ident(m, w.run_id), "loss", 9.0)),
    ("run metric history", lambda w, m: w.intruder.experiments.metric_history(
        w.ident(m, w.run_id), "loss")),
    ("run artifact", lambda w, m: w.intruder.experiments.log_artifact(
        w.ident(m, w.run_id), w.artifact)),
    ("run end", lambda w, m: w.intruder.experiments.end_run(w.ident(m, w.run_id))),
    ("run compare", lambda w, m: w.intruder.experiments.compare_runs(
        [w.ident(m, w.run_id), w.ident(m, w.run_id)])),
    ("job get", lambda w, m: w.intruder.jobs.get(w.ident(m, w.job_id))),
    ("job update", lambda w, m: w.intruder.jobs.update(w.ident(m, w.job_id), status="FAILED")),
    ("job cancel", lambda w, m: w.intruder.jobs.cancel(w.ident(m, w.job_id))),
    ("feature view show", lambda w, m: w.intruder.features.show(
        "stats" if m == "fraud" else "none")),
    ("online rows read", lambda w, m: w.intruder.features.get_online_features(
        [{"user_id": 1}], ["stats:clicks" if m == "fraud" else "none:clicks"])),
    ("offline rows read", lambda w, m: w.intruder.features.get_historical_features(
        {"user_id": [1], "event_timestamp": [T0]},
        ["stats:clicks" if m == "fraud" else "none:clicks"])),
    ("feature push", lambda w, m: w.intruder.features.push(
        "stats" if m == "fraud" else "none", _rows(666))),
    ("stream stats", lambda w, m: w.intruder.features.stream_stats(
        "stats" if m == "fraud" else "none")),
    ("stream publish", lambda w, m: w.intruder.features.publish(
        "stats" if m == "fraud" else "none", [{"user_id": 1}])),
    ("alert silence", lambda w, m: w.alerts.silence(MALLORY, A, {"model": m}, 60)),
    ("key revoke", lambda w, m: w.intruder.keys.revoke(w.ident(m, w.key_id))),
]

#: Listings and project-wide reads: refused outright.
LISTINGS: list[tuple[str, Call]] = [
    ("models list", lambda w, _: w.intruder.registry.list_models()),
    ("versions search", lambda w, _: w.intruder.registry.search_versions()),
    ("audit log", lambda w, _: w.intruder.registry.audit_log()),
    ("experiments list", lambda w, _: w.intruder.experiments.list_experiments()),
    ("runs search", lambda w, _: w.intruder.experiments.search_runs()),
    ("jobs list", lambda w, _: w.intruder.jobs.list()),
    ("job create", lambda w, _: w.intruder.jobs.create("train", "evil")),
    ("model create", lambda w, _: w.intruder.registry.create_model("evil")),
    ("experiment create", lambda w, _: w.intruder.experiments.create_experiment("evil")),
    ("feature repo", lambda w, _: w.intruder.features.repo(fresh=True)),
    ("feature apply", lambda w, _: w.intruder.features.apply(_repo())),
    ("feature materializations", lambda w, _: w.intruder.features.materializations()),
    ("feature materialize", lambda w, _: w.intruder.features.materialize()),
    ("apps", lambda w, _: w.reconciler.apps(MALLORY, A)),
    ("breakers", lambda w, _: w.intruder.serving.breakers()),
    ("monitor values", lambda w, _: w.intruder.monitoring.values()),
    ("alerts list", lambda w, _: w.alerts.alerts(MALLORY, A)),
    ("alert rules", lambda w, _: w.alerts.rules(MALLORY, A)),
    ("silences list", lambda w, _: w.alerts.silences(MALLORY, A)),
    ("keys list", lambda w, _: w.intruder.keys.list()),
    ("key create", lambda w, _: w.intruder.keys.create("evil", {A: "admin"})),
]


def _refusal(world: World, call: Call, name: str) -> str:
    with pytest.raises(PermissionDenied) as denied:
        call(world, name)
    return str(denied.value)


@pytest.mark.parametrize(("kind", "call"), ON_AN_OBJECT, ids=[k for k, _ in ON_AN_OBJECT])
def test_another_projects_object_is_refused_alike_whether_it_exists(
        world: World, kind: str, call: Call) -> None:
    existing = _refusal(world, call, "fraud")
    missing = _refusal(world, call, "nosuch")
    assert existing == missing, kind
    assert repr(A) in existing and "mallory" in existing


@pytest.mark.parametrize(("kind", "call"), LISTINGS, ids=[k for k, _ in LISTINGS])
def test_another_projects_listings_and_writes_are_refused(world: World, kind: str,
                                                          call: Call) -> None:
    assert repr(A) in _refusal(world, call, ""), kind


def test_team_a_is_intact_after_the_attempts(world: World) -> None:
    """Nothing the refused calls tried landed (they run before this in file order)."""
    mv = world.alice.registry.get_version("fraud", 1)
    assert (mv.stage.value, mv.aliases) == ("None", ["champion"])
    assert world.alice.registry.get_traffic("fraud").weights == {1: 100.0}
    assert [m.name for m in world.alice.registry.list_models()] == ["fraud"]
    assert world.alice.jobs.get(world.job_id).status.value == "PENDING"
    assert world.alice.experiments.get_run(world.run_id).status.value == "RUNNING"
    read = world.alice.features.get_online_features([{"user_id": 1}], ["stats:clicks"])
    assert read.column("clicks").to_pylist() == [7]
    assert [k.revoked_at for k in world.alice.keys.list()
            if k.key_id == world.key_id] == [None]
    assert world.alerts.silences(ALICE, A) == []


def test_own_project_with_the_same_names_sees_nothing_of_team_a(world: World,
                                                                ray_shared: OwnRay) -> None:
    """Mallory in team B, with a view and ids of the same names, reads none of team A's
    data: A's objects are missing as any missing object is, A's rows are NOT_FOUND. (B's
    apps are read from Serve: a Ray of the tests' own, never one found on the host.)"""
    own = world.mallory
    assert own.registry.list_models() == [] and own.experiments.search_runs().runs == []
    assert own.jobs.list() == [] and world.reconciler.apps(MALLORY, B) == []
    answers = []
    for name in ("fraud", "nosuch"):
        with pytest.raises(NotFound) as gone:
            own.registry.get_model(name)
        answers.append(str(gone.value).replace(name, "M"))
    assert answers[0] == answers[1]
    with pytest.raises(NotFound):
        own.experiments.get_run(world.run_id)
    with pytest.raises(NotFound):
        own.jobs.get(world.job_id)
    with pytest.raises(NotFound):
        own.monitoring.performance("fraud", 1)
    own.features.apply(_repo())  # the same view name in B
    read = own.features.get_online_features([{"user_id": 1}], ["stats:clicks"])
    assert read.statuses("clicks") == [FeatureStatus.NOT_FOUND]
    offline = own.features.get_historical_features(
        {"user_id": [1], "event_timestamp": pa.array([T0], pa.timestamp("us", "UTC"))},
        ["stats:clicks"])
    assert offline["clicks"].to_pylist() == [None]
    assert world.alerts.alerts(MALLORY, B) == [] and world.alerts.silences(MALLORY, B) == []
    assert world.key_id not in {k.key_id for k in own.keys.list()}
    assert own.serving.breakers() == {}
