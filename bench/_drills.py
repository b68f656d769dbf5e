"""Node-loss drills on a multi-node Ray cluster on this machine (``ray.cluster_utils``).

Shared by ``bench/cluster.py`` (which prints the figures) and
``tests/lifecycle/test_multinode.py`` (which asserts on them). The layout:

- head: Serve's controller and proxy, and the ``mlray`` ingress (``mlray-ingress``);
- ``control``: the control-plane actors (``mlray-control``, from ``actor_resources``);
- ``models-a``, ``models-b``: one replica of each model each (``mlray-model``: a
  replica asks for 0.6 of a node's 1, so two never share a node);
- ``spare`` (added once all is placed): ``mlray-control`` and ``mlray-model``, where
  the work of a lost node goes.

State is on Redis under a prefix of its own; artifacts on a local directory every
node of this machine reads.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

os.environ.setdefault("RAY_AUTH_MODE", "token")

import mlray
from mlray.config import PlatformConfig, load_config
from mlray.datasets.fraud import FRAUD_CATEGORICAL, FRAUD_NUMERIC, generate_fraud
from mlray.errors import MlrayError
from mlray.models.predictor import save_model
from mlray.registry._documents import VERSIONS
from mlray.registry.types import TensorSpec, VersionSpec
from mlray.serving.model_names import app_name
from mlray.storage.artifacts import ArtifactStore
from mlray.storage.redis import RedisStateStore
from mlray.training.data import Preprocessor
from mlray.training.models import ModelArchitecture, build_model

__all__ = ["CONTROL", "MODEL", "Cluster", "Loader", "WriteResult", "Writer",
           "drill_config", "free_port", "register_small_model", "running", "serve_on_two_nodes",
           "until", "version_spec"]

CONTROL = "mlray-control"
MODEL = "mlray-model"
INGRESS = "mlray-ingress"
#: Node death noticed within about 3 s (Ray's default is 5 checks of 3 s each).
_FAST_NODE_DEATH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
                    "health_check_failure_threshold": 3}

_SERVING_YAML = f"""
defaults:
  num_cpus: 0
  num_replicas: 2
  replica_resources: {{{MODEL}: 0.6}}
  tuning: {{max_batch_size: 16, batch_wait_timeout_s: 0.002}}
  timeout_s: 10
  monitor: false
ingress:
  replica_resources: {{{INGRESS}: 0.5}}
  policy_refresh_s: 0.5
  sync_interval_s: 0.5
  breaker: {{failure_threshold: 1000, window_s: 30, recovery_timeout_s: 1, success_threshold: 1}}
"""


def drill_config(tmp: Path, redis_url: str, serve_port: int) -> PlatformConfig:
    """A platform whose control-plane actors ask for ``mlray-control`` and whose
    replicas ask for ``mlray-model``; Redis state under a fresh prefix."""
    serving = tmp / "serving.yaml"
    serving.write_text(_SERVING_YAML)
    return load_config(env={
        "MLRAY_HOME": str(tmp / "home"), "MLRAY_STATE_URL": redis_url,
        "MLRAY_REDIS_PREFIX": f"drill-{uuid.uuid4().hex[:10]}",
        "MLRAY_NAMESPACE": f"d{uuid.uuid4().hex[:10]}", "MLRAY_SERVE_PORT": str(serve_port),
        "MLRAY_SERVING_CONFIG": str(serving),
        # Every node of this cluster runs on this machine and reads its disk.
        "MLRAY_ALLOW_LOCAL_STORAGE": "true",
        "MLRAY_ACTOR_RESOURCES": f'{{"{CONTROL}": 0.01}}'})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A head and named worker nodes, each its own raylet, on this machine."""

    def __init__(self, head_cpus: int = 4) -> None:
        from ray.cluster_utils import Cluster as RayCluster

        for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
            os.environ.pop(name, None)
        self._cluster = RayCluster(initialize_head=True, connect=False, head_node_args={
            "num_cpus": head_cpus, "resources": {INGRESS: 1}, "include_dashboard": True,
            "dashboard_port": free_port(), "_system_config": _FAST_NODE_DEATH})
        self.nodes: dict[str, Any] = {}
        self.dashboard_url = ""

    @property
    def address(self) -> str:
        return self._cluster.address

    def connect(self, namespace: str) -> None:
        """Join the cluster from this process."""
        import logging

        import ray

        context = ray.init(address=self.address, namespace=namespace, log_to_driver=False,
                           logging_level=logging.WARNING)
        url = context.dashboard_url
        self.dashboard_url = url if url.startswith("http") else f"http://{url}"

    def add(self, role: str, resources: dict[str, float], num_cpus: int = 1) -> str:
        """Start a worker node with ``resources``; returns its node id."""
        node = self._cluster.add_node(num_cpus=num_cpus, resources=resources)
        self._cluster.wait_for_nodes()
        self.nodes[role] = node
        return node.node_id

    def node_id(self, role: str) -> str:
        return self.nodes[role].node_id

    def kill(self, role: str) -> float:
        """Stop a worker node's raylet and everything on it at once; returns when."""
        node = self.nodes.pop(role)
        at = time.monotonic()
        self._cluster.remove_node(node, allow_graceful=False)
        return at

    def actors(self, class_prefix: str) -> list[Any]:
        """Alive actors whose class name starts with ``class_prefix``, with their nodes."""
        from ray.util.state import list_actors

        found = list_actors(address=self.dashboard_url, filters=[("state", "=", "ALIVE")],
                            limit=10_000, detail=True)
        return [a for a in found if a.class_name.startswith(class_prefix)]

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
        self._cluster.shutdown()


def until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    """Return once ``predicate()`` holds; ``TimeoutError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout:g} s")
        time.sleep(interval)


def serve_on_two_nodes(cluster: Cluster, config: PlatformConfig, model: str,
                       tmp: Path) -> tuple[Any, str]:
    """Add ``control``, ``models-a`` and ``models-b``, join the cluster, start Serve (one
    proxy, on the head: every node shares one IP address) and the ingress, and deploy
    ``model`` version 1 with one replica on each model node. Returns (client, url); the
    spare is left to the caller, to add once it has seen where things run."""
    from ray import serve

    from mlray.serving.launch import start_serving

    cluster.add("control", {CONTROL: 1})
    cluster.add("models-a", {MODEL: 1})
    cluster.add("models-b", {MODEL: 1})
    cluster.connect(config.namespace)
    serve.start(proxy_location="HeadOnly",
                http_options={"host": "127.0.0.1", "port": config.serve_port})
    client = mlray.connect(config=config)  # creates the actors, on the control node
    url = start_serving(config)
    register_small_model(client, model, tmp)
    rollout = client.serving.deploy(model, 1, strategy="direct", wait=True, timeout_s=300)
    if rollout.status != "succeeded":
        raise RuntimeError(f"deploy of {model} failed: {rollout.history}")
    replicas = f"ServeReplica:{app_name(config.project, model, 1)}"
    until(lambda: len(cluster.actors(replicas)) == 2, 120, "two replicas", 0.5)
    return client, url


def register_small_model(client: Any, name: str, tmp: Path) -> int:
    """Register an (untrained, seeded) fraud MLP; returns its version number."""
    frame = generate_fraud(500, seed=1)
    pre = Preprocessor.fit(frame, FRAUD_NUMERIC, FRAUD_CATEGORICAL)
    arch = ModelArchitecture(type="mlp", task="classification", in_features=pre.width,
                             hidden=[16])
    torch.manual_seed(0)
    model_dir = save_model(tmp / name, build_model(arch), arch, pre)
    schema = ([TensorSpec(name=c, dtype="float64") for c in FRAUD_NUMERIC]
              + [TensorSpec(name=c, dtype="string") for c in FRAUD_CATEGORICAL])
    version = client.registry.register(
        name, model_dir, input_schema=schema, framework="torch",
        output_schema=[TensorSpec(name="probability", dtype="float32")])
    return version.version


# -- writes during a node loss --------------------------------------------------------------


@dataclass
class WriteResult:
    """What a :class:`Writer` saw and what the store holds afterwards."""

    acknowledged: list[int]
    errors: list[str]
    stored: set[int]
    longest_stall_s: float  # longest time between two answers (the actor's way back)

    @property
    def lost(self) -> set[int]:
        """Acknowledged versions the store does not hold."""
        return set(self.acknowledged) - self.stored

    @property
    def unacknowledged(self) -> set[int]:
        """Stored versions no call was answered with (a duplicate or an error's write)."""
        return self.stored - set(self.acknowledged)


class Writer(threading.Thread):
    """Adds versions of one model back to back through the client (each call with its
    own idempotency key, retried on actor loss) until stopped."""

    def __init__(self, client: Any, model: str, spec: VersionSpec) -> None:
        super().__init__(daemon=True)
        self._client, self._model, self._spec = client, model, spec
        self._stop_flag = threading.Event()
        self.acknowledged: list[int] = []
        self.errors: list[str] = []
        self.answered_at: list[float] = []

    def run(self) -> None:
        while not self._stop_flag.is_set():
            try:
                version = self._client.registry.create_version(self._model, self._spec)
                self.acknowledged.append(version.version)
            except MlrayError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.answered_at.append(time.monotonic())

    def count(self) -> int:
        return len(self.acknowledged)

    def finish(self, config: PlatformConfig) -> WriteResult:
        """Stop, then read what the store holds for the model."""
        self._stop_flag.set()
        self.join(timeout=300)
        store = RedisStateStore(config.resolved_state_url, prefix=config.redis_prefix)
        try:
            docs = store.list(VERSIONS, prefix=f"{config.project}/{self._model}/")
        finally:
            store.close()
        gaps = np.diff(self.answered_at) if len(self.answered_at) > 1 else np.zeros(1)
        return WriteResult(list(self.acknowledged), list(self.errors),
                           {d.data["version"] for d in docs}, float(gaps.max()))


def version_spec(client: Any, tmp: Path) -> VersionSpec:
    """A version spec over one small uploaded artifact (every version shares it)."""
    path = tmp / "weights.bin"
    path.write_bytes(os.urandom(1024))
    ref = ArtifactStore(client.config.resolved_artifact_uri).put(path)
    return VersionSpec(artifact_uri=ref.uri, artifact_sha256=ref.sha256,
                       artifact_size=ref.size)


# -- predictions during a node loss ---------------------------------------------------------


class Loader:
    """``clients`` threads, each sending one prediction at a time (so at most
    ``clients`` are in flight), counting answers and failures."""

    def __init__(self, url: str, model: str, clients: int = 4) -> None:
        frame = generate_fraud(2, seed=3)
        self._body = {"modelName": model,
                      "columns": {c: frame[c].tolist()
                                  for c in [*FRAUD_NUMERIC, *FRAUD_CATEGORICAL]}}
        self._url = url
        self._stop_flag = threading.Event()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.ok = 0
        self.failed: list[str] = []
        self._threads = [threading.Thread(target=self._loop, daemon=True)
                         for _ in range(clients)]

    def _loop(self) -> None:
        with httpx.Client(base_url=self._url, timeout=60) as http:
            while not self._stop_flag.is_set():
                with self._lock:
                    self.in_flight += 1
                try:
                    answer = http.post("/v1/predict/batch", json=self._body)
                    outcome = "" if answer.status_code == 200 else (
                        f"{answer.status_code} {answer.text[:200]}")
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.in_flight -= 1
                    if outcome:
                        self.failed.append(outcome)
                    else:
                        self.ok += 1

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def snapshot(self) -> tuple[int, int, int]:
        """(answered ok, failed, in flight) now."""
        with self._lock:
            return self.ok, len(self.failed), self.in_flight

    def stop(self) -> None:
        self._stop_flag.set()
        for thread in self._threads:
            thread.join(timeout=120)


@contextlib.contextmanager
def running(loader: Loader) -> Iterator[Loader]:
    """Load while the block runs."""
    loader.start()
    try:
        yield loader
    finally:
        loader.stop()
