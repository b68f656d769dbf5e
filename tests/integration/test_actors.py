"""The client over real named actors on the shared Ray, on SQLite and on Redis."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import ray

import mlray
from mlray import BackendUnavailable, InvalidInput, NotFound, PlatformConfig, Stage
from mlray.registry.types import VersionSpec
from tests.conftest import OwnRay, wait_for


def _restarts(own: OwnRay, name: str, namespace: str) -> int:
    found = own.list_actors(filters=[("name", "=", name), ("ray_namespace", "=", namespace)],
                            detail=True)
    return max(a.num_restarts for a in found)


@pytest.fixture
def client(mlray_env: PlatformConfig) -> mlray.Client:
    return mlray.connect(config=mlray_env)


@pytest.fixture
def spec(client: mlray.Client, tmp_path: Path) -> VersionSpec:
    src = tmp_path / "weights.bin"
    src.write_bytes(b"weights")
    ref = client.artifacts.put(src)
    return VersionSpec(artifact_uri=ref.uri, artifact_sha256=ref.sha256)


def test_round_trip_and_typed_errors(client: mlray.Client, tmp_path: Path) -> None:
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"\x00" * 64)
    with client.experiments.run("fraud", params={"lr": 0.1}) as run:
        client.experiments.log_metrics(run.run_id, {"loss": 0.4, "acc": 0.9}, step=1)
        client.experiments.log_artifact(run.run_id, weights)
    v1 = client.registry.register("fraud", weights, metrics={"auc": 0.9}, run_id=run.run_id,
                                  description="first")
    v2 = client.registry.register("fraud", weights, metrics={"auc": 0.95})
    assert (v1.version, v2.version) == (1, 2)
    client.registry.promote("fraud", 1)
    client.registry.promote("fraud", 2)
    client.registry.set_alias("fraud", "champion", 2)
    assert client.registry.resolve("models:/fraud@champion").stage is Stage.PRODUCTION
    assert client.registry.get_version("fraud", 1).stage is Stage.ARCHIVED
    assert client.registry.get_version("fraud", 1).lineage.run_id == run.run_id
    client.registry.set_traffic("fraud", {2: 100})
    assert client.registry.get_traffic("fraud").weights == {2: 100.0}
    fetched = client.registry.download("models:/fraud/Production", tmp_path / "dl")
    assert fetched.read_bytes() == b"\x00" * 64
    done = client.experiments.get_run(run.run_id)
    assert done.status.value == "FINISHED" and done.artifacts[0].path == "model.pt"
    assert client.experiments.search_runs(filter="metrics.loss < 0.5").total == 1
    with pytest.raises(NotFound) as err:
        client.registry.get_version("fraud", 99)
    assert err.value.field == "version"
    with pytest.raises(InvalidInput) as bad:
        client.registry.search_versions(filter="metrics.auc >>> 1")
    assert bad.value.field == "filter"
    with pytest.raises(InvalidInput, match="points"):
        client.experiments.log_metric(run.run_id, "loss", float("nan"))


def test_failed_block_marks_the_run_failed(client: mlray.Client) -> None:
    with pytest.raises(ZeroDivisionError), client.experiments.run("e") as run:
        _ = 1 / 0
    failed = client.experiments.get_run(run.run_id)
    assert failed.status.value == "FAILED" and "ZeroDivisionError" in (failed.error or "")


def test_fifty_concurrent_create_version_calls(client: mlray.Client, spec: VersionSpec) -> None:
    client.registry.create_model("m")
    with ThreadPoolExecutor(max_workers=50) as pool:
        versions = list(pool.map(lambda _: client.registry.create_version("m", spec).version,
                                 range(50)))
    assert sorted(versions) == list(range(1, 51))
    assert [v.version for v in client.registry.list_versions("m")] == list(range(1, 51))


def test_killing_the_registry_mid_stream_loses_no_acknowledged_write(
        client: mlray.Client, mlray_env: PlatformConfig, spec: VersionSpec,
        ray_shared: OwnRay) -> None:
    client.registry.create_model("m")
    acked: list[int] = []
    lost_in_flight: list[str] = []
    unexpected: list[BaseException] = []

    def writer() -> None:
        while len(acked) < 40:
            try:
                acked.append(client.registry.create_version("m", spec).version)
            except BackendUnavailable as exc:
                lost_in_flight.append(str(exc))
            except BaseException as exc:
                unexpected.append(exc)
                return

    thread = threading.Thread(target=writer)
    thread.start()
    wait_for(lambda: len(acked) >= 10)
    handle = ray.get_actor("registry", namespace=mlray_env.namespace)
    ray.kill(handle, no_restart=False)
    thread.join(timeout=120)
    assert not thread.is_alive() and not unexpected and len(acked) == 40
    stored = [v.version for v in client.registry.list_versions("m")]
    assert stored == list(range(1, len(stored) + 1)), "no gaps, no duplicates"
    # Each create carries an idempotency key and is retried across the restart: none is
    # lost, none reported lost, none applied twice.
    assert lost_in_flight == []
    assert sorted(acked) == stored
    assert _restarts(ray_shared, "registry", mlray_env.namespace) >= 1


def test_killing_the_tracker_mid_stream_loses_no_acknowledged_metric(
        client: mlray.Client, mlray_env: PlatformConfig, ray_shared: OwnRay) -> None:
    run = client.experiments.start_run("e")
    acked: list[int] = []
    unexpected: list[BaseException] = []

    def writer() -> None:
        step = 0
        while len(acked) < 60:
            try:
                client.experiments.log_metrics(run.run_id, {"loss": 1.0 / (step + 1)}, step=step)
                acked.append(step)
            except BackendUnavailable:
                pass
            except BaseException as exc:
                unexpected.append(exc)
                return
            step += 1

    thread = threading.Thread(target=writer)
    thread.start()
    wait_for(lambda: len(acked) >= 15)
    ray.kill(ray.get_actor("experiments", namespace=mlray_env.namespace), no_restart=False)
    thread.join(timeout=120)
    assert not thread.is_alive() and not unexpected and len(acked) == 60
    history = {p.step for p in client.experiments.metric_history(run.run_id, "loss")}
    assert set(acked) <= history
    assert _restarts(ray_shared, "experiments", mlray_env.namespace) >= 1


def test_actors_are_named_detached_and_reused(client: mlray.Client,
                                              mlray_env: PlatformConfig) -> None:
    again = mlray.connect(config=mlray_env)
    again.registry.create_model("shared")
    assert client.registry.get_model("shared").name == "shared"
    for name in ("registry", "keys"):  # what a client starts at once
        assert ray.get_actor(name, namespace=mlray_env.namespace) is not None
    with pytest.raises(ValueError):  # the others when first used
        ray.get_actor("quotas", namespace=mlray_env.namespace)
    again.quotas.show()
    assert ray.get_actor("quotas", namespace=mlray_env.namespace) is not None
