"""Several Ray nodes on this machine (``ray.cluster_utils.Cluster``, one for the module):
placement from the config, and losing a node while writes or predictions go on.

Layout and drivers: ``bench/_drills.py``. The tests run in order on one cluster: the
placement is checked first, then the control node is killed, then a model node.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench._drills import (
    CONTROL,
    MODEL,
    Cluster,
    Loader,
    Writer,
    drill_config,
    running,
    serve_on_two_nodes,
    version_spec,
)
from mlray.config import PlatformConfig
from mlray.datasets import FRAUD_CATEGORICAL, FRAUD_NUMERIC, write_fraud
from mlray.serving.model_names import app_name
from mlray.tracking.jobs import JobStatus
from mlray.training.config import TrainConfig
from tests.conftest import free_port, wait_for
from tests.integration.test_training import _train_in_thread

pytestmark = [pytest.mark.lifecycle, pytest.mark.slow]

MODEL_NAME = "fraud"
REPLICAS = f"ServeReplica:{app_name('default', MODEL_NAME, 1)}"  # drill_config's project


@dataclass
class Drill:
    cluster: Cluster
    config: PlatformConfig
    client: Any
    url: str
    tmp: Path
    placed: dict[str, set[str]]  # what ran where before anything was killed


def _control_nodes(cluster: Cluster, config: PlatformConfig) -> dict[str, str]:
    from actors import actor_names

    return {a.name: a.node_id for a in cluster.actors("")
            if a.name in actor_names() and a.ray_namespace == config.namespace}


def _replica_nodes(cluster: Cluster) -> list[str]:
    return [a.node_id for a in cluster.actors(REPLICAS)]


@pytest.fixture(scope="module")
def drill(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    from mlray.storage.redis import RedisStateStore

    tmp = tmp_path_factory.mktemp("multinode")
    cluster = Cluster(head_cpus=4)
    config = drill_config(tmp, redis_url, free_port())
    try:
        client, url = serve_on_two_nodes(cluster, config, MODEL_NAME, tmp)
        placed = {"control": set(_control_nodes(cluster, config).values()),
                  "replicas": set(_replica_nodes(cluster)),
                  "ingress": {a.node_id for a in cluster.actors("ServeReplica:mlray:")}}
        cluster.add("spare", {CONTROL: 1, MODEL: 1})  # where a lost node's work goes
        yield Drill(cluster, config, client, url, tmp, placed)
    finally:
        RedisStateStore(config.resolved_state_url, prefix=config.redis_prefix).drop_all()
        cluster.shutdown()


def test_control_plane_and_replicas_run_where_the_config_says(drill: Drill) -> None:
    cluster = drill.cluster
    assert drill.placed["control"] == {cluster.node_id("control")}
    assert drill.placed["replicas"] == {cluster.node_id("models-a"),
                                        cluster.node_id("models-b")}
    assert drill.placed["ingress"] == {cluster._cluster.head_node.node_id}


def test_losing_the_control_node_loses_and_duplicates_no_acknowledged_write(
        drill: Drill) -> None:
    client, cluster = drill.client, drill.cluster
    client.registry.create_model("writes")
    writer = Writer(client, "writes", version_spec(client, drill.tmp))
    writer.start()
    wait_for(lambda: writer.count() >= 20, timeout=60, interval=0.1)
    cluster.kill("control")
    killed_at = writer.count()
    wait_for(lambda: writer.count() >= killed_at + 50, timeout=180, interval=0.2)
    result = writer.finish(drill.config)
    assert result.errors == []
    assert result.lost == set()
    assert result.unacknowledged == set()  # a retried write was never applied twice
    assert len(result.acknowledged) == len(set(result.acknowledged))
    assert sorted(result.acknowledged) == list(range(1, len(result.acknowledged) + 1))
    spare = cluster.node_id("spare")
    # The registry answers first; the other control-plane actors may still be restarting
    # (listed on the dead node) for a moment: all of them end up on the spare.
    wait_for(lambda: set(_control_nodes(cluster, drill.config).values()) == {spare},
             timeout=120, interval=0.5)


def test_losing_a_model_node_under_load_fails_at_most_the_requests_in_flight(
        drill: Drill) -> None:
    cluster = drill.cluster
    loader = Loader(drill.url, MODEL_NAME, clients=4)
    with running(loader):
        wait_for(lambda: loader.snapshot()[0] >= 40, timeout=120, interval=0.1)
        cluster.kill("models-a")
        _, failed_at_kill, in_flight = loader.snapshot()
        wait_for(lambda: sorted(_replica_nodes(cluster)) == sorted(
            [cluster.node_id("models-b"), cluster.node_id("spare")]), timeout=180,
            interval=0.5)
        answered = loader.snapshot()[0]
        wait_for(lambda: loader.snapshot()[0] >= answered + 40, timeout=120, interval=0.1)
    assert failed_at_kill == 0
    assert len(loader.failed) <= in_flight, loader.failed


def _val_steps(client: Any) -> list[int]:
    runs = client.experiments.search_runs(experiments=["trained"]).runs
    return sorted(p.step for p in client.experiments.metric_history(runs[0].run_id,
                                                                    "val_loss")) if runs else []


def test_training_whose_worker_node_dies_resumes_from_its_last_checkpoint(
        drill: Drill) -> None:
    cluster, client = drill.cluster, drill.client
    for role in ("train-a", "train-b"):
        cluster.add(role, {"mlray-train": 1})
    data = write_fraud(drill.tmp / "fraud.parquet", 2000, seed=5)
    epochs = 4
    config = TrainConfig.model_validate({
        "name": "trained",
        "data": {"path": str(data), "label": "is_fraud", "numeric": FRAUD_NUMERIC,
                 "categorical": FRAUD_CATEGORICAL},
        "model": {"type": "mlp_classifier", "hidden": [8]},
        "hyperparameters": {"lr": 0.01, "batch_size": 256, "epochs": epochs},
        # One worker per training node (0.6 of each node's 1).
        "scaling": {"num_workers": 2, "resources_per_worker": {"CPU": 1, "mlray-train": 0.6}},
        "failure": {"max_failures": 2, "checkpoint_every": 1}})
    box = _train_in_thread(client, config)
    thread = box["thread"]
    wait_for(lambda: len(_val_steps(client)) >= 2 or not thread.is_alive(), timeout=300,
             interval=0.5)
    doomed = cluster.node_id("train-a")
    assert any(a.node_id == doomed for a in cluster.actors("RayTrainWorker"))
    cluster.kill("train-a")
    logged_before = _val_steps(client)
    cluster.add("train-c", {"mlray-train": 1})  # room for the restarted worker group
    thread.join(timeout=600)
    assert "error" not in box, box.get("error")
    outcome = box["outcome"]
    assert outcome.epochs == epochs
    steps = _val_steps(client)
    assert set(steps) == set(range(epochs))
    # Resumed, not restarted: the epochs logged before the kill were not trained again.
    assert all(steps.count(step) == 1 for step in logged_before[:-1])
    assert client.experiments.search_runs(experiments=["trained"]).total == 1
    assert client.jobs.get(outcome.job_id).status is JobStatus.COMPLETED
