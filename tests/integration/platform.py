"""The serving platform the integration tests share: actors, Serve on a free port, the
ingress, a Redis for feature streams. See the ``platform`` fixture in conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from mlray.config import PlatformConfig
from mlray.datasets.fraud import FRAUD_CATEGORICAL, FRAUD_NUMERIC, generate_fraud
from tests.conftest import wait_for
from tests.integration.serving_models import register_model


class Platform:
    """What the serving tests drive."""

    def __init__(self, config: PlatformConfig, client: Any, url: str, tmp: Path,
                 env: dict[str, str]) -> None:
        self.config, self.client, self.url, self.tmp = config, client, url, tmp
        self.env = env
        self.http = httpx.Client(base_url=url, timeout=30)

    @property
    def project(self) -> str:
        """The platform's project (its ingress serves this project's apps only)."""
        return self.config.project

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``mlray`` against this platform (its cluster, namespace and home)."""
        import ray

        env = {**os.environ, **self.env,
               "MLRAY_RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        return subprocess.run([sys.executable, "-m", "mlray.cli", *args], env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    def model(self, *, model_type: str = "mlp", versions: int = 1) -> str:
        """A fresh model name with ``versions`` registered versions."""
        name = f"m{uuid.uuid4().hex[:8]}"
        for seed in range(versions):
            register_model(self.client, name, self.tmp, seed=seed, model_type=model_type)
        return name

    def deploy(self, model: str, version: int, strategy: str = "direct") -> Any:
        rollout = self.client.serving.deploy(model, version, strategy=strategy, wait=True,
                                             timeout_s=240)
        assert rollout.status == "succeeded", rollout.history
        self.wait_served(model, {version})
        return rollout

    def wait_served(self, model: str, versions: set[int], timeout: float = 30) -> None:
        """Until the ingress has the model's policy with these versions ready."""
        def ready() -> bool:
            listed = self.http.get("/v1/models").json()["models"]
            found = [m for m in listed if m["name"] == model]
            return bool(found) and {v["version"] for v in found[0]["versions"]
                                    if v["ready"]} >= versions
        wait_for(ready, timeout=timeout, interval=0.2)

    def predict(self, model: str, rows: int = 1, headers: dict[str, str] | None = None,
                **extra: Any) -> httpx.Response:
        frame = generate_fraud(rows, seed=7)
        columns = {c: frame[c].tolist() for c in [*FRAUD_NUMERIC, *FRAUD_CATEGORICAL]}
        return self.http.post("/v1/predict/batch", json={"modelName": model, "columns": columns,
                                                         **extra}, headers=headers or {})


def tamper(artifact_root: str, artifact_uri: str) -> None:
    """Append bytes to every file of an artifact, on whatever filesystem the store at
    ``artifact_root`` uses, so it no longer hashes to its sha256."""
    import pyarrow.fs as pafs

    from mlray.storage.fsuri import open_uri

    fs, _ = open_uri(artifact_root)
    path = artifact_uri.split("://", 1)[1]
    files = [path]
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        files = [i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                 if i.type == pafs.FileType.File]
    for name in files:
        with fs.open_input_stream(name) as src:
            data = src.read()
        with fs.open_output_stream(name) as out:
            out.write(data + b"tampered")


def serving_yaml(tmp: Path) -> Path:
    path = tmp / "serving.yaml"
    path.write_text("""
defaults:
  num_cpus: 0.25
  tuning: {max_batch_size: 32, batch_wait_timeout_s: 0.005}
  timeout_s: 5
models:
  cachedmodel: {cache: {enabled: true, ttl_s: 60}}
  slowmodel: {timeout_s: 0.1}
  localmodel: {colocate: true}
  # A slow (faulty) model with room for 4 calls at once and 8 queued: the rest is shed.
  overloadmodel: {max_ongoing_requests: 4, max_queued_requests: 8, timeout_s: 2}
ingress:
  policy_refresh_s: 0.5
  sync_interval_s: 0.5
  max_rows: 1000
  max_body_bytes: 200000
  drain_body_bytes: 1000000
  breaker: {failure_threshold: 3, window_s: 30, recovery_timeout_s: 2, success_threshold: 2}
rollout:
  canary_steps: [10, 50, 100]
  step_duration_s: 1.5
  min_requests: 10
  max_error_rate: 0.2
  max_p99_ratio: 10  # a loaded 2-core machine is noisy; the unit tests pin the p99 gate
  max_step_wait_s: 60
  rollback_window_s: 0
""")
    return path


def alerts_yaml(tmp: Path) -> Path:
    """Rules for the platform's alerts actor that fire as soon as a version has drift
    values or latencies (so tests see them fire without waiting for real drift)."""
    path = tmp / "alerts.yaml"
    path.write_text("""
evaluation_interval: 3600s
channels:
  log: {type: log}
rules:
  - name: DriftMeasured
    metric: mlray_drift_share
    operator: ">="
    threshold: 0
    for: 0s
    severity: info
    annotations: {summary: "drift share {{ $value }} for {{ $labels.model }}"}
    channels: [log]
  - name: LatencyMeasured
    metric: mlray_request_latency_quantile_seconds
    labels: {quantile: "0.99"}
    operator: ">"
    threshold: 0
    for: 0s
    severity: info
    annotations: {summary: "p99 {{ $value }}s for {{ $labels.model }}"}
    channels: [log]
""")
    return path
