"""Serving settings: how model versions are deployed, the ingress's limits, rollout gates.

Defaults live here and are mirrored by ``configs/serving.yaml`` (a test pins the two
together); a deployment reads the file the platform config names (``serving_config``).
Per-model overrides sit under ``models.<name>``; what a :class:`ModelServing` calls
``user_config`` can be changed on a live deployment without a redeploy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlray._private.placement import CustomResources
from mlray.config.files import load_yaml_model
from mlray.serving.breaker import BreakerConfig

__all__ = [
    "Autoscaling",
    "BatchTuning",
    "CacheSettings",
    "IngressSettings",
    "ModelServing",
    "RateLimitSettings",
    "RolloutSettings",
    "ServingConfig",
    "load_serving_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchTuning(_Strict):
    """The part of a model app that is retuned live (Serve ``user_config``)."""

    max_batch_size: int = Field(64, ge=1, le=65_536, description="Requests per batch.")
    batch_wait_timeout_s: float = Field(0.002, ge=0, le=10,
                                        description="How long a batch waits to fill.")


class Autoscaling(_Strict):
    """Serve autoscaling of a model app's replicas."""

    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(2, ge=1, le=1000)
    target_ongoing_requests: float = Field(32, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas {self.max_replicas} < min_replicas "
                             f"{self.min_replicas}")
        return self


class CacheSettings(_Strict):
    """The per-replica prediction cache (off unless a model turns it on)."""

    enabled: bool = False
    max_entries: int = Field(10_000, ge=1, le=10_000_000)
    ttl_s: float = Field(60.0, gt=0)


class ModelServing(_Strict):
    """How one model's versions are deployed."""

    tuning: BatchTuning = BatchTuning()
    num_replicas: int = Field(1, ge=1, le=1000, description="Fixed replicas (no autoscaling).")
    autoscaling: Autoscaling | None = None
    max_ongoing_requests: int = Field(256, ge=1, le=100_000)
    max_queued_requests: int = Field(
        256, ge=-1, le=1_000_000,
        description="Requests each ingress replica queues for a version once its replicas "
                    "hold max_ongoing_requests; beyond, 503 with Retry-After at once "
                    "(Serve's max_queued_requests; -1: no bound).")
    num_cpus: float = Field(0.5, ge=0, le=256, description="CPUs per model replica.")
    num_gpus: float = Field(0.0, ge=0, le=16)
    replica_resources: CustomResources = Field(
        default_factory=dict,
        description="Custom Ray resources each replica asks for, which places the replicas "
                    "on the nodes that have them (e.g. {mlray-model: 0.01}).")
    quantize: bool = Field(False, description="torch dynamic int8 quantization of Linear layers.")
    cache: CacheSettings = CacheSettings()
    timeout_s: float = Field(5.0, gt=0, le=600,
                             description="Deadline of a whole request from when the ingress "
                                         "takes it (body, queueing, model): 504 beyond.")
    monitor: bool = Field(True, description="Sketch answered inputs for drift and append "
                                            "them to the prediction log (metrics always).")
    colocate: bool = Field(False, description="Also answer from a copy loaded in each ingress "
                                              "replica (no hop; small CPU models).")

    @model_validator(mode="after")
    def _colocate_on_cpu(self) -> ModelServing:
        if self.colocate and self.num_gpus > 0:
            raise ValueError("colocate is for CPU models: the ingress has no GPU "
                             "(set num_gpus: 0 or colocate: false)")
        return self


class RateLimitSettings(_Strict):
    """Token bucket per authenticated API key (per client address with auth: none)."""

    requests_per_s: float = Field(gt=0)
    burst: float = Field(gt=0)


class IngressSettings(_Strict):
    """Limits and background work of the ``mlray`` ingress app."""

    num_replicas: int = Field(1, ge=1, le=1000)
    max_ongoing_requests: int = Field(
        256, ge=1, le=100_000,
        description="Requests one ingress replica holds at once (more only starve its event "
                    "loop: every request's deadline runs while it waits there).")
    max_queued_requests: int = Field(
        64, ge=-1, le=1_000_000,
        description="Requests Serve's HTTP proxy queues for the ingress once its replicas "
                    "hold max_ongoing_requests; beyond, 503 with Retry-After at once (-1: no "
                    "bound).")
    retry_after_s: float = Field(1.0, ge=0, le=3600,
                                 description="Retry-After of a request shed for load (503).")
    proxy_timeout_s: float = Field(
        30.0, ge=0, le=3600,
        description="Serve's HTTP proxy answers 408 to a request older than this, time "
                    "queued before the ingress included (0: no cap). Above every model's "
                    "timeout_s, which the ingress answers with 504 first.")
    num_cpus: float = Field(0.0, ge=0, le=256)
    replica_resources: CustomResources = Field(
        default_factory=dict,
        description="Custom Ray resources each ingress replica asks for (placement).")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    drain_body_bytes: int = Field(
        64 * 1024 * 1024, ge=0,
        description="Bytes of a too-large body read and discarded before its 413, so the "
                    "client has sent it and reads the answer (beyond: answered at once, the "
                    "connection closed).")
    max_rows: int = Field(10_000, ge=1, description="Rows in one request (400 beyond).")
    rate_limit: RateLimitSettings | None = None
    auth_cache_ttl_s: float = Field(
        5.0, gt=0, le=300,
        description="With auth: keys, how long a replica trusts a verified API key before "
                    "reading its record again: a revoked or expired key is refused within "
                    "this (the slow hash is paid once per key and replica).")
    policy_refresh_s: float = Field(1.0, gt=0, le=2.0,
                                    description="Traffic policy refresh (changes land ≤ 2 s).")
    sync_interval_s: float = Field(1.0, gt=0, le=60,
                                   description="Breaker and outcome sync with the actor.")
    breaker: BreakerConfig = BreakerConfig()
    log_sample: float = Field(1.0, ge=0, le=1,
                              description="Share of predictions written to the log.")


class RolloutSettings(_Strict):
    """Canary steps and the gates each step must pass; blue-green's rollback window."""

    canary_steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])
    step_duration_s: float = Field(30.0, gt=0, description="Live time at each canary step.")
    min_requests: int = Field(20, ge=0, description="Canary requests a step needs to judge.")
    max_error_rate: float = Field(0.05, ge=0, le=1, description="Canary error-rate gate.")
    max_p99_ratio: float = Field(2.0, gt=0, description="Canary p99 / stable p99 gate.")
    max_step_wait_s: float = Field(600.0, gt=0,
                                   description="A step with too few requests fails after this.")
    rollback_window_s: float = Field(600.0, ge=0,
                                     description="How long the old app stays after a switch.")
    ready_timeout_s: float = Field(300.0, gt=0, description="Wait for a new app to be ready.")
    max_duration_s: float = Field(3600.0, gt=0,
                                  description="A rollout still running after this fails and "
                                              "the previous policy is restored.")

    @model_validator(mode="after")
    def _steps(self) -> RolloutSettings:
        steps = self.canary_steps
        if not steps or any(s <= 0 or s > 100 for s in steps) or steps != sorted(set(steps)):
            raise ValueError("canary_steps must rise strictly within (0, 100]")
        if steps[-1] != 100:
            raise ValueError("canary_steps must end at 100")
        return self


class ServingConfig(_Strict):
    """Everything serving reads from ``configs/serving.yaml``."""

    defaults: ModelServing = ModelServing()
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-model overrides of `defaults` (partial).")
    ingress: IngressSettings = IngressSettings()
    rollout: RolloutSettings = RolloutSettings()

    @model_validator(mode="after")
    def _overrides_are_valid(self) -> ServingConfig:
        for name in self.models:
            try:
                self.for_model(name)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise ValueError(f"models.{name}.{where}: {err['msg']}") from None
        cap = self.ingress.proxy_timeout_s
        if cap:
            for name, model in [("defaults", self.defaults),
                                *((f"models.{n}", self.for_model(n)) for n in self.models)]:
                if model.timeout_s >= cap:
                    raise ValueError(f"{name}.timeout_s {model.timeout_s:g} must be below "
                                     f"ingress.proxy_timeout_s {cap:g}")
        return self

    def for_model(self, name: str, **overrides: Any) -> ModelServing:
        """``defaults`` with the model's overrides, then ``overrides``, applied."""
        merged = _deep_merge(self.defaults.model_dump(), self.models.get(name, {}))
        return ModelServing.model_validate(_deep_merge(merged, overrides))


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_serving_config(path: str | Path | None) -> ServingConfig:
    """The serving config at ``path``; the built-in defaults when ``path`` is None.

    Raises:
        ConfigError: naming the file, the key and the reason.
    """
    return ServingConfig() if path is None else load_yaml_model(path, ServingConfig)
