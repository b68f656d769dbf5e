"""Quotas and usage as plain classes (no Ray): the arithmetic, the last slot under two
threads (SQLite and Redis, through the ``store`` fixture), the shared request rate."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mlray.errors import Conflict, PermissionDenied, QuotaExceeded
from mlray.identity import Caller, Role
from mlray.quotas import Lease, QuotaGuard, QuotaService, RateLedger, UsageMeter
from mlray.quotas.types import GUARDS
from mlray.quotas.usage import job_resources
from mlray.registry.service import ModelRegistry
from mlray.registry.types import ModelSpec, TrafficPolicy
from mlray.serving.rollout import RolloutController, RolloutStatus, Strategy
from mlray.storage import ArtifactStore, StateStore
from mlray.storage.base import Put
from mlray.tracking.service import ExperimentTracker
from mlray.tracking.types import RunArtifact
from tests.unit.helpers import artifact_spec
from tests.unit.test_serving_control import (  # noqa: F401 (the fixture)
    Clock,
    FakeServe,
    Stats,
    _run,
    rollouts,
)

ADMIN = Caller.local_admin("root")
OWNER = Caller(user="owner", roles={"team": Role.admin})


class Ticker:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def quotas(store: StateStore) -> QuotaService:
    return QuotaService(store)


@pytest.fixture
def registry(store: StateStore, tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(store, ArtifactStore(str(tmp_path / "art")))


def test_default_is_unlimited_and_adds_no_write(store: StateStore, quotas: QuotaService,
                                                registry: ModelRegistry) -> None:
    assert quotas.get_quotas(ADMIN, "team").model_dump() == {
        "models": None, "versions": None, "deployments": None, "replicas": None,
        "storage_bytes": None, "requests_per_s": None}
    for i in range(5):
        registry.create_model(ADMIN, "team", ModelSpec(name=f"m{i}"))
    assert store.list(GUARDS) == []


def test_models_quota_names_the_quota_its_limit_and_the_use(
        quotas: QuotaService, registry: ModelRegistry) -> None:
    quotas.set_quotas(ADMIN, "team", {"models": 2})
    registry.create_model(ADMIN, "team", ModelSpec(name="a"))
    registry.create_model(ADMIN, "team", ModelSpec(name="b"))
    with pytest.raises(QuotaExceeded) as err:
        registry.create_model(ADMIN, "team", ModelSpec(name="c"))
    assert err.value.field == "models" and err.value.http_status == 429
    assert "quota models of project 'team'" in err.value.message
    assert "limit 2" in err.value.message and "in use 2" in err.value.message
    registry.create_model(ADMIN, "other", ModelSpec(name="c"))  # another project: its own
    registry.delete_model(ADMIN, "team", "a")
    registry.create_model(ADMIN, "team", ModelSpec(name="c"))  # a slot freed


def test_versions_and_storage_quotas(quotas: QuotaService, registry: ModelRegistry,
                                     tmp_path: Path) -> None:
    artifacts = ArtifactStore(str(tmp_path / "art"))
    registry.create_model(ADMIN, "team", ModelSpec(name="m"))
    quotas.set_quotas(ADMIN, "team", {"versions": 2, "storage_bytes": 10})
    registry.create_version(ADMIN, "team", "m", artifact_spec(artifacts, tmp_path, b"12345"))
    with pytest.raises(QuotaExceeded) as err:
        registry.create_version(ADMIN, "team", "m",
                                artifact_spec(artifacts, tmp_path, b"123456"))
    assert err.value.field == "storage_bytes"
    assert "limit 10 bytes, in use 5 bytes, this would add 6 bytes" in err.value.message
    registry.create_version(ADMIN, "team", "m", artifact_spec(artifacts, tmp_path, b"abcd"))
    with pytest.raises(QuotaExceeded, match=r"quota versions .* limit 2, in use 2"):
        registry.create_version(ADMIN, "team", "m", artifact_spec(artifacts, tmp_path, b"x"))
    report = quotas.usage(ADMIN, "team")
    assert report.storage_bytes == 9
    assert report.in_use == {"models": 1, "versions": 2, "deployments": 0, "replicas": 0,
                             "storage_bytes": 9}


def test_run_artifacts_count_against_storage(store: StateStore, quotas: QuotaService,
                                             tmp_path: Path) -> None:
    artifacts = ArtifactStore(str(tmp_path / "art"))
    tracker = ExperimentTracker(store, artifacts)
    tracker.create_experiment(ADMIN, "team", "exp")
    run = tracker.start_run(ADMIN, "team", "exp")
    quotas.set_quotas(ADMIN, "team", {"storage_bytes": 8})

    def artifact(path: str, content: bytes) -> RunArtifact:
        src = tmp_path / f"{path}.bin"
        src.write_bytes(content)
        ref = artifacts.put(src)
        return RunArtifact(path=path, uri=ref.uri, sha256=ref.sha256, size=ref.size)

    tracker.log_artifact(ADMIN, "team", run.run_id, artifact("a", b"123456"))
    tracker.log_artifact(ADMIN, "team", run.run_id, artifact("a", b"1234567"))  # replaces
    with pytest.raises(QuotaExceeded, match="storage_bytes"):
        tracker.log_artifact(ADMIN, "team", run.run_id, artifact("b", b"123"))


def test_only_an_admin_of_every_project_sets_quotas_and_it_is_audited(
        store: StateStore, quotas: QuotaService) -> None:
    with pytest.raises(PermissionDenied):
        quotas.set_quotas(OWNER, "team", {"models": 100})
    quotas.set_quotas(ADMIN, "team", {"models": 3})
    limits = quotas.set_quotas(ADMIN, "team", {"versions": 9})
    assert (limits.models, limits.versions) == (3, 9)  # merged
    assert quotas.set_quotas(ADMIN, "team", {"models": None}).models is None
    assert quotas.get_quotas(OWNER, "team").versions == 9
    entries = [e for e in store.audit_log(project="team") if e.action == "quotas.set"]
    assert [e.after["models"] if e.after else None for e in entries] == [3, 3, None]
    assert entries[0].user == "root"


def test_guard_two_creates_racing_for_the_last_slot(store: StateStore) -> None:
    """Both read the guard and count before either writes: one write conflicts, and its
    retry counts again and is refused."""
    store.put("quotas", "team", {"models": 1})
    guard, both_counted = QuotaGuard(store), threading.Barrier(2)
    outcomes: list[str] = []

    def count() -> int:
        used = len(store.list("things", prefix="team/"))
        both_counted.wait(timeout=10)
        return used

    def create(name: str) -> None:
        ops = guard.admit("team", "models", count)
        try:
            store.apply([Put(collection="things", key=f"team/{name}", data={}), *ops])
            outcomes.append("created")
        except Conflict:
            try:  # the retry the services make: admit again (no barrier now)
                guard.admit("team", "models",
                            lambda: len(store.list("things", prefix="team/")))
                outcomes.append("created late")
            except QuotaExceeded:
                outcomes.append("refused")

    threads = [threading.Thread(target=create, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["created", "refused"]
    assert len(store.list("things", prefix="team/")) == 1


def test_registry_last_slot_under_two_threads(quotas: QuotaService,
                                              registry: ModelRegistry) -> None:
    for round_ in range(4):
        quotas.set_quotas(ADMIN, "team", {"models": 2 * round_ + 2})
        registry.create_model(ADMIN, "team", ModelSpec(name=f"base{round_}"))
        start, results = threading.Barrier(2), []

        def create(name: str, start: threading.Barrier = start,
                   results: list[str] = results) -> None:
            start.wait(timeout=10)
            try:
                registry.create_model(ADMIN, "team", ModelSpec(name=name))
                results.append("ok")
            except QuotaExceeded:
                results.append("quota")

        threads = [threading.Thread(target=create, args=(f"r{round_}{x}",)) for x in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(results) == ["ok", "quota"], round_
    assert len(registry.list_models(ADMIN, "team")) == 8


def test_deployments_and_replicas_quotas_hold_the_state_a_rollout_ends_in(
        rollouts: tuple[RolloutController, ModelRegistry, FakeServe, Stats, Clock],  # noqa: F811
        store: StateStore, tmp_path: Path) -> None:
    controller, registry, _, stats, clock = rollouts
    registry.create_model(ADMIN, "default", ModelSpec(name="n"))
    registry.create_version(ADMIN, "default", "n",
                            artifact_spec(ArtifactStore(str(tmp_path / "art")), tmp_path, b"n"))
    quotas = QuotaService(store)
    quotas.set_quotas(ADMIN, "default", {"deployments": 1, "replicas": 2})
    with pytest.raises(QuotaExceeded, match=r"quota replicas .* limit 2, in use 0, this "
                                            r"would add 3"):
        controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT, {"num_replicas": 3})
    controller.start(ADMIN, "default", "m", 1, Strategy.DIRECT, {"num_replicas": 2})
    # a second model while the first rollout has not yet changed any policy: refused
    with pytest.raises(QuotaExceeded, match=r"quota deployments .* limit 1, in use 1") as err:
        controller.start(ADMIN, "default", "n", 1, Strategy.DIRECT)
    assert err.value.field == "deployments"
    _run(controller, clock)
    # replacing m's version ends at one deployment: allowed, and so are its canary steps
    canary = controller.start(ADMIN, "default", "m", 2, Strategy.CANARY)
    _run(controller, clock)
    assert registry.get_traffic(ADMIN, "default", "m").weights == {1: 90.0, 2: 10.0}
    with pytest.raises(QuotaExceeded, match="deployments"):  # a third version by hand
        registry.set_traffic(ADMIN, "default", "m", TrafficPolicy(weights={1: 50, 3: 50}))
    stats.by_version = {1: (100, 0, 5.0), 2: (20, 1, 6.0)}
    _run(controller, clock, seconds=10)
    _run(controller, clock, seconds=10)
    assert controller.get(ADMIN, "default", canary.id).status is RolloutStatus.SUCCEEDED
    with pytest.raises(QuotaExceeded, match="deployments"):  # a shadow adds one
        controller.start(ADMIN, "default", "m", 3, Strategy.SHADOW)
    with pytest.raises(QuotaExceeded, match="deployments"):
        registry.set_traffic(ADMIN, "default", "n", TrafficPolicy(weights={1: 100}))
    quotas.set_quotas(ADMIN, "default", {"deployments": 2})
    registry.set_traffic(ADMIN, "default", "n", TrafficPolicy(weights={1: 100}))
    report = quotas.usage(ADMIN, "default")
    assert report.limits.deployments == 2 and report.in_use["deployments"] == 2


def test_the_rollout_collection_the_registry_reads_is_the_rollouts_own() -> None:
    from mlray.registry.served import ROLLOUTS as READ
    from mlray.serving.rollout import ROLLOUTS

    assert READ == ROLLOUTS


def test_the_ledger_holds_all_leases_to_the_rate() -> None:
    clock = Ticker()
    ledger = RateLedger(burst_s=1.0, clock=clock)
    a, b = Lease(clock), Lease(clock)
    for lease in (a, b):
        lease.limits = {"team": 10.0}
    admitted = 0
    for _ in range(50):  # 5 s, a sync every 0.1 s, 20 requests a sync at each replica
        for lease in (a, b):
            for project, want in lease.wants().items():
                lease.add(project, ledger.lease(project, want, 10.0))
            admitted += sum(lease.take("team") == 0.0 for _ in range(20))
        clock.now += 0.1
    assert 40 <= admitted <= 10 * 5 + 10  # the rate over 5 s plus one burst, not twice
    assert a.take("free") == 0.0  # a project without a rate quota is never held up
    admitted_counts, refused = a.drain_counts()
    assert admitted_counts["free"] == 1 and refused["team"] > 0
    assert a.drain_counts() == ({}, {})


def test_a_refusal_says_when_to_come_back_and_leases_expire() -> None:
    clock = Ticker()
    ledger, lease = RateLedger(clock=clock, ttl_s=1.0), Lease(clock)
    lease.limits = {"team": 2.0}
    lease.add("team", ledger.lease("team", 5, 2.0))  # the whole burst: 2 tokens
    assert [lease.take("team") for _ in range(2)] == [0.0, 0.0]
    assert lease.take("team") >= 0.5
    lease.add("team", ledger.lease("team", 1, 2.0))
    assert ledger.lease("team", 1, 2.0).tokens == 0
    clock.now += 1.5  # the unspent token's lease ran out
    assert lease.take("team") > 0


def test_usage_persists_across_restarts_and_counts_replica_seconds(store: StateStore) -> None:
    clock = Ticker(7200.0)
    meter = UsageMeter(store, clock)
    meter.add({"team": {"requests": 5}, "other": {"requests": 1}})
    assert meter.accrue_replicas({"team": 3}) == 0.0  # the first pass starts the clock
    clock.now += 10
    assert meter.accrue_replicas({"team": 3, "other": 0}) == 10
    clock.now += 3600
    restarted = UsageMeter(store, clock, max_gap_s=30)
    restarted.add({"team": {"requests": 2}})
    assert restarted.accrue_replicas({"team": 1}, {"team": 1}) == 30  # a long gap: max_gap_s
    assert restarted.deployed("team") == {"deployments": 1, "replicas": 1}
    assert restarted.totals("team") == {"requests": 7, "replica_seconds": 60}
    assert restarted.totals("team", since=clock.now) == {"requests": 2, "replica_seconds": 30}
    assert restarted.totals("other") == {"requests": 1}


def test_job_seconds_come_from_the_job_records(store: StateStore) -> None:
    from mlray.tracking.jobs import JobBook, JobStatus

    assert job_resources({"config": {"scaling": {"num_workers": 2, "use_gpu": True,
                                                 "resources_per_worker": {"CPU": 2}}}}) == (
        4.0, 2.0)
    assert job_resources({"config": {"scaling": {"num_workers": 4},
                                     "tune": {"max_concurrent_trials": 3}}}) == (3.0, 0.0)
    jobs = JobBook(store)
    job = jobs.create_job(ADMIN, "team", "train", "m",
                          {"config": {"scaling": {"num_workers": 2}}})
    jobs.update_job(ADMIN, "team", job.job_id, status=JobStatus.RUNNING)
    jobs.update_job(ADMIN, "team", job.job_id, status=JobStatus.COMPLETED)
    doc = store.get("jobs", job.job_id)
    assert doc is not None
    store.put("jobs", job.job_id, {**doc.data, "started_at": 100.0, "ended_at": 160.0})
    report = QuotaService(store).usage(ADMIN, "team")
    assert (report.job_cpu_seconds, report.job_gpu_seconds) == (120.0, 0.0)


def test_exchange_records_counts_and_leases(store: StateStore, quotas: QuotaService) -> None:
    first = quotas.exchange(["team"])
    assert first.limits == {"team": None} and first.grants == {}
    quotas.set_quotas(ADMIN, "team", {"requests_per_s": 4})
    quotas._limits.clear()  # as after LIMITS_TTL_S
    answer = quotas.exchange(["team"], {"team": 10}, {"team": 3}, {"team": 2})
    assert answer.limits == {"team": 4.0} and answer.grants["team"].tokens == 4
    assert "exchange" in QuotaService.PLATFORM  # the platform's feed: no caller takes it
    report = QuotaService(store).usage(Caller(user="v", roles={"team": Role.viewer}), "team")
    assert (report.requests, report.requests_refused) == (3, 2)
    assert report.limits.requests_per_s == 4


def test_quota_exceeded_keeps_its_retry_after_across_a_pickle() -> None:
    import pickle

    back = pickle.loads(pickle.dumps(QuotaExceeded("slow down", field="requests_per_s",
                                                   retry_after=0.4)))
    assert (back.field, back.retry_after, back.http_status) == ("requests_per_s", 0.4, 429)
    assert pickle.loads(pickle.dumps(QuotaExceeded("full", field="models"))).retry_after is None
