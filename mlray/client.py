"""The Python client: typed facades over the control-plane services.

    import mlray
    client = mlray.connect()
    with client.experiments.run("fraud") as run:
        client.experiments.log_metric(run.run_id, "loss", 0.3, step=1)
    client.registry.register("fraud", "model.pt", run_id=run.run_id)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from mlray._private.transport import ActorTransport, Transport
from mlray._private.validation import build
from mlray.abtest.client import AbTestsClient
from mlray.alerts.rules import AlertRule
from mlray.alerts.types import AlertStatus, Notification, Silence
from mlray.auth import resolve as resolve_key
from mlray.auth.book import ApiKey, IssuedKey
from mlray.auth.tokens import platform_credential
from mlray.config import PlatformConfig, adopt_running, config_differences, load_config
from mlray.errors import (
    AlreadyExists,
    BackendUnavailable,
    ConfigError,
    DeadlineExceeded,
    InvalidInput,
    NotFound,
)
from mlray.features.offline import OfflineStore
from mlray.features.online import OnlineStore, open_online_store
from mlray.features.registry import ApplyResult, Materialization
from mlray.features.repo import FeatureRepo, check_sources, load_repo, resolve_sources
from mlray.features.serving import FeatureReader, OnlineFeatures
from mlray.identity import Caller
from mlray.monitoring.drift import DriftReport
from mlray.monitoring.monitor import IngestResult
from mlray.monitoring.performance import PerformanceReport
from mlray.monitoring.quality import QualityReport
from mlray.pipelines.client import PipelinesClient
from mlray.quotas.types import QuotaLimits, UsageReport
from mlray.registry.gates import GateSpec
from mlray.registry.types import (
    Lineage,
    ModelSpec,
    ModelVersion,
    RegisteredModel,
    Stage,
    TensorSpec,
    VersionSpec,
)
from mlray.serving.board import VersionStats
from mlray.serving.breaker import BreakerSnapshot
from mlray.serving.rollout import Rollout, RolloutStatus
from mlray.serving.settings import BatchTuning, ModelServing
from mlray.serving.traffic import TrafficPolicy
from mlray.storage.artifacts import ArtifactStore
from mlray.storage.base import AuditEntry
from mlray.storage.idempotency import new_key
from mlray.tracking.jobs import JobStatus, TrainingJob
from mlray.tracking.types import (
    Experiment,
    MetricPoint,
    Run,
    RunArtifact,
    RunComparison,
    RunPage,
    RunStatus,
)

__all__ = ["Client", "ExperimentsClient", "FeaturesClient", "JobsClient", "KeysClient",
           "MonitoringClient", "QuotasClient", "RegistryClient", "ServingClient", "connect"]


#: Who a call is made as: a :class:`Caller` in this process (local mode), else the
#: credential the actors authenticate (an API key or token; None: the platform's
#: anonymous caller, the local admin under ``auth: none``).
Who = Caller | str | None


class _Facade:
    def __init__(self, service: str, transport: Transport, who: Who, project: str) -> None:
        self._service = service
        self._transport = transport
        self._who = who
        self.project = project

    def _call(self, method: str, *args: Any, read: bool = False, **kwargs: Any) -> Any:
        return self._transport.call(self._service, method, self._who, self.project, *args,
                                    idempotent=read, **kwargs)

    def _create(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A create that is safe to retry: one fresh idempotency key for every attempt of
        it, so the transport retries it when the actor or the store was lost and the
        service answers a repeat with the first result."""
        return self._transport.call(self._service, method, self._who, self.project, *args,
                                    idempotency_key=new_key(), **kwargs)


class RegistryClient(_Facade):
    """Model registry operations for one project."""

    def __init__(self, transport: Any, who: Who, project: str,
                 artifacts: ArtifactStore) -> None:
        super().__init__("registry", transport, who, project)
        self._artifacts = artifacts

    def create_model(self, name: str, **spec: Any) -> RegisteredModel:
        """Register a model name; ``spec`` takes the fields of :class:`ModelSpec`."""
        return self._create("create_model", build(ModelSpec, "spec", name=name, **spec))

    def get_model(self, name: str) -> RegisteredModel:
        """The registered model ``name``."""
        return self._call("get_model", name, read=True)

    def update_model(self, name: str, *, description: str | None = None,
                     owner: str | None = None, tags: dict[str, str] | None = None,
                     feature_service: str | None = None) -> RegisteredModel:
        """Change description, owner, tags (merged; an empty value deletes) or the feature
        service the model reads by entity key ('' clears it)."""
        return self._call("update_model", name, description=description, owner=owner,
                          tags=tags, feature_service=feature_service)

    def list_models(self, *, name_like: str | None = None,
                    tags: dict[str, str] | None = None) -> list[RegisteredModel]:
        """Models of the project, optionally filtered."""
        return self._call("list_models", name_like=name_like, tags=tags, read=True)

    def delete_model(self, name: str, *, force: bool = False) -> int:
        """Delete a model and its versions; returns how many versions went."""
        return self._call("delete_model", name, force=force)

    def create_version(self, model: str, spec: VersionSpec) -> ModelVersion:
        """Add a version whose artifact is already in the artifact store."""
        return self._create("create_version", model, spec)

    def register(self, model: str, artifact_path: str | Path, *,
                 metrics: dict[str, float] | None = None,
                 params: dict[str, Any] | None = None, run_id: str | None = None,
                 data_fingerprint: str | None = None, description: str = "",
                 tags: dict[str, str] | None = None,
                 input_schema: list[TensorSpec] | None = None,
                 output_schema: list[TensorSpec] | None = None,
                 baseline: dict[str, Any] | None = None, **model_spec: Any) -> ModelVersion:
        """Upload a local file or directory and register it as the next version of ``model``.

        The model is created when it does not exist, from ``model_spec`` (the fields of
        :class:`ModelSpec`) and the schemas; the schemas and baseline go on the version.
        """
        try:
            self.get_model(model)
        except NotFound:
            with contextlib.suppress(AlreadyExists):  # another register() got there first
                self.create_model(model, input_schema=input_schema or [],
                                  output_schema=output_schema or [], **model_spec)
        ref = self._artifacts.put(artifact_path)
        spec = build(
            VersionSpec, "spec", artifact_uri=ref.uri, artifact_sha256=ref.sha256,
            artifact_size=ref.size, metrics=metrics or {}, params=params or {},
            description=description, tags=tags or {}, input_schema=input_schema or [],
            output_schema=output_schema or [], baseline=baseline,
            lineage=build(Lineage, "lineage", run_id=run_id, data_fingerprint=data_fingerprint))
        return self.create_version(model, spec)

    def get_version(self, model: str, version: int) -> ModelVersion:
        """One version."""
        return self._call("get_version", model, version, read=True)

    def list_versions(self, model: str, *, stage: Stage | str | None = None
                      ) -> list[ModelVersion]:
        """Versions of ``model``, oldest first."""
        return self._call("list_versions", model, stage=stage, read=True)

    def search_versions(self, *, filter: str | None = None, name_like: str | None = None,
                        stage: Stage | str | None = None, tags: dict[str, str] | None = None,
                        order_by: list[str] | None = None, limit: int = 100
                        ) -> list[ModelVersion]:
        """Versions across models, e.g. ``filter="metrics.auc >= 0.9"``."""
        return self._call("search_versions", filter=filter, name_like=name_like, stage=stage,
                          tags=tags, order_by=order_by, limit=limit, read=True)

    def transition_stage(self, model: str, version: int, stage: Stage | str, *,
                         archive_existing: bool = True, force: bool = False) -> ModelVersion:
        """Move a version to a stage (Production archives the previous one by default and
        needs passed critical gates, or ``force`` as an admin)."""
        return self._call("transition_stage", model, version, stage,
                          archive_existing=archive_existing, force=force)

    def promote(self, model: str, version: int, *, force: bool = False) -> ModelVersion:
        """Move a version to Production, archiving the current Production version."""
        return self.transition_stage(model, version, Stage.PRODUCTION, force=force)

    def validate(self, model: str, version: int, data: str | Path, *, label: str,
                 gates: list[GateSpec] | None = None) -> ModelVersion:
        """Have the platform evaluate a version on a labelled local Parquet file (uploaded to
        the artifact store) against the model's required gates plus ``gates``; the report
        it stores is the only one promotion counts."""
        ref = self._artifacts.put(data)
        return self._call("validate_version", model, version, ref.uri, ref.sha256, label,
                          gates=gates)

    def required_gates(self, model: str) -> list[GateSpec]:
        """The gates every validation of ``model`` evaluates."""
        return self._call("required_gates", model, read=True)

    def set_required_gates(self, model: str, gates: list[GateSpec]) -> list[GateSpec]:
        """Replace ``model``'s required gates (project admins; audited)."""
        return self._call("set_required_gates", model, gates)

    def delete_version(self, model: str, version: int) -> None:
        """Delete a version and its aliases."""
        self._call("delete_version", model, version)

    def set_alias(self, model: str, alias: str, version: int, *,
                  move: bool = False) -> RegisteredModel:
        """Point ``alias`` at ``version`` (``move`` to repoint an existing alias)."""
        return self._call("set_alias", model, alias, version, move=move)

    def delete_alias(self, model: str, alias: str) -> None:
        """Remove an alias."""
        self._call("delete_alias", model, alias)

    def resolve(self, uri: str) -> ModelVersion:
        """The version named by ``models:/name/3``, ``models:/name@alias`` or a stage."""
        return self._call("resolve", uri, read=True)

    def download(self, uri: str, dest_dir: str | Path | None = None) -> Path:
        """Fetch the artifact of the version ``uri`` names, verified by sha256."""
        version = self.resolve(uri)
        return self._artifacts.fetch(version.artifact_uri, version.artifact_sha256, dest_dir)

    def set_traffic(self, model: str, weights: dict[int, float], *,
                    shadows: list[int] | None = None, sticky: bool = True) -> TrafficPolicy:
        """Store how ``model``'s requests split between versions (e.g. ``{1: 90, 2: 10}``)."""
        policy = build(TrafficPolicy, "policy", weights=weights, shadows=shadows or [],
                       sticky=sticky)
        return self._call("set_traffic", model, policy)

    def get_traffic(self, model: str) -> TrafficPolicy:
        """``model``'s traffic policy (all to Production when none was set)."""
        return self._call("get_traffic", model, read=True)

    def audit_log(self, *, after_seq: int = 0, limit: int = 100) -> list[AuditEntry]:
        """The project's audit trail (admins)."""
        return self._call("audit_log", after_seq=after_seq, limit=limit, read=True)

    def allowed_architectures(self) -> list[str]:
        """The ``module:callable`` model architectures a platform admin allowed."""
        return self._call("allowed_architectures", read=True)

    def allow_architectures(self, allow: list[str] | None = None,
                            revoke: list[str] | None = None) -> list[str]:
        """Allow or revoke ``module:callable`` architectures (platform admins; audited)."""
        return self._call("allow_architectures", allow=allow, revoke=revoke)


class ExperimentsClient(_Facade):
    """Experiment tracking for one project."""

    def __init__(self, transport: Any, who: Who, project: str,
                 artifacts: ArtifactStore) -> None:
        super().__init__("experiments", transport, who, project)
        self._artifacts = artifacts

    def create_experiment(self, name: str, *, description: str = "",
                          tags: dict[str, str] | None = None) -> Experiment:
        """Create an experiment."""
        return self._create("create_experiment", name, description=description,
                            tags=tags)

    def get_experiment(self, name: str) -> Experiment:
        """One experiment."""
        return self._call("get_experiment", name, read=True)

    def list_experiments(self) -> list[Experiment]:
        """All experiments of the project."""
        return self._call("list_experiments", read=True)

    def start_run(self, experiment: str, *, name: str | None = None,
                  params: dict[str, Any] | None = None,
                  tags: dict[str, str] | None = None) -> Run:
        """Start a run (the experiment is created when missing)."""
        return self._create("start_run", experiment, name=name, params=params, tags=tags)

    @contextlib.contextmanager
    def run(self, experiment: str, **kwargs: Any) -> Iterator[Run]:
        """A run that ends FINISHED, or FAILED with the error when the block raises."""
        run = self.start_run(experiment, **kwargs)
        try:
            yield run
        except BaseException as exc:
            status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            self.end_run(run.run_id, status, error=f"{type(exc).__name__}: {exc}")
            raise
        self.end_run(run.run_id)

    def get_run(self, run_id: str) -> Run:
        """One run."""
        return self._call("get_run", run_id, read=True)

    def log_params(self, run_id: str, params: dict[str, Any]) -> Run:
        """Record params (write-once)."""
        return self._call("log_params", run_id, params)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> Run:
        """Merge tags into a run."""
        return self._call("set_tags", run_id, tags)

    def log_metric(self, run_id: str, key: str, value: float, step: int = 0,
                   timestamp: float | None = None) -> Run:
        """Log one metric point."""
        point = build(MetricPoint, "points.0", key=key, value=value, step=step,
                      timestamp=timestamp)
        return self.log_metrics(run_id, [point])

    def log_metrics(self, run_id: str, points: list[MetricPoint] | dict[str, float],
                    step: int = 0) -> Run:
        """Log a batch: a list of points, or ``{key: value}`` at one ``step``."""
        if isinstance(points, dict):
            points = [build(MetricPoint, f"points.{k}", key=k, value=v, step=step)
                      for k, v in points.items()]
        return self._call("log_metrics", run_id, points)

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """Every point of one metric."""
        return self._call("metric_history", run_id, key, read=True)

    def log_artifact(self, run_id: str, local_path: str | Path,
                     path: str | None = None) -> Run:
        """Upload a local file or directory and attach it to the run."""
        ref = self._artifacts.put(local_path)
        artifact = build(RunArtifact, "artifact", path=path or Path(local_path).name,
                         uri=ref.uri, sha256=ref.sha256, size=ref.size)
        return self._call("log_artifact", run_id, artifact)

    def end_run(self, run_id: str, status: RunStatus | str = RunStatus.FINISHED, *,
                error: str | None = None) -> Run:
        """End a run."""
        return self._call("end_run", run_id, status, error=error)

    def search_runs(self, *, experiments: list[str] | None = None, filter: str | None = None,
                    order_by: list[str] | None = None, limit: int = 100,
                    offset: int = 0) -> RunPage:
        """Search runs, e.g. ``filter="metrics.loss < 0.2"``, ``order_by=["metrics.loss"]``."""
        return self._call("search_runs", experiments=experiments, filter=filter,
                          order_by=order_by, limit=limit, offset=offset, read=True)

    def compare_runs(self, run_ids: list[str]) -> RunComparison:
        """Runs side by side."""
        return self._call("compare_runs", run_ids, read=True)


class JobsClient(_Facade):
    """Training and tuning job records for one project."""

    def __init__(self, transport: Any, who: Who, project: str) -> None:
        super().__init__("jobs", transport, who, project)

    def create(self, kind: str, name: str, details: dict[str, Any] | None = None
               ) -> TrainingJob:
        """Record a PENDING job."""
        return self._create("create_job", kind, name, details)

    def update(self, job_id: str, *, status: JobStatus | str | None = None,
               run_id: str | None = None, error: str | None = None,
               model_version: int | None = None, heartbeat: bool = False) -> TrainingJob:
        """Change a job's status or attach its run, error or model version."""
        return self._call("update_job", job_id, status=status, run_id=run_id, error=error,
                          model_version=model_version, heartbeat=heartbeat)

    def cancel(self, job_id: str) -> TrainingJob:
        """Cancel a job (a running one stops after its current epoch)."""
        return self._call("cancel_job", job_id)

    def get(self, job_id: str) -> TrainingJob:
        """One job."""
        return self._call("get_job", job_id, read=True)

    def list(self, *, status: JobStatus | str | None = None, limit: int = 100
             ) -> list[TrainingJob]:
        """The project's jobs, newest first."""
        return self._call("list_jobs", status=status, limit=limit, read=True)


class ServingClient(_Facade):
    """Deployments and rollouts (``deployments`` actor) and live breakers (``breakers``)."""

    def __init__(self, transport: Any, who: Who, project: str,
                 registry: RegistryClient) -> None:
        super().__init__("deployments", transport, who, project)
        self._registry = registry

    def _breakers(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._transport.call("breakers", method, self._who, self.project, *args,
                                    idempotent=True, **kwargs)

    def deploy(self, model: str, version: int, *, strategy: str = "canary",
               overrides: dict[str, Any] | None = None, wait: bool = False,
               timeout_s: float = 900.0, poll_s: float = 0.5,
               on_change: Callable[[Rollout], None] | None = None) -> Rollout:
        """Roll ``model`` v``version`` out (direct, blue-green, canary or shadow).

        With ``wait``, returns once the rollout has finished (succeeded, rolled back or
        failed), calling ``on_change`` whenever its history grows.
        """
        rollout = self._call("start", model, version, strategy, overrides)
        return self.wait(rollout.id, timeout_s, poll_s, on_change) if wait else rollout

    def wait(self, rollout_id: str, timeout_s: float = 900.0, poll_s: float = 0.5,
             on_change: Callable[[Rollout], None] | None = None) -> Rollout:
        """Poll a rollout until it stops running."""
        deadline = time.monotonic() + timeout_s
        seen = -1
        while True:
            rollout = self.rollout(rollout_id)
            if on_change and len(rollout.history) != seen:
                seen = len(rollout.history)
                on_change(rollout)
            if rollout.status is not RolloutStatus.RUNNING:
                return rollout
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"rollout {rollout_id} still running after "
                                       f"{timeout_s:g} s (phase {rollout.phase})")
            time.sleep(poll_s)

    def rollout(self, rollout_id: str) -> Rollout:
        """One rollout by id."""
        return self._call("get", rollout_id, read=True)

    def rollouts(self, model: str | None = None, *, limit: int = 50) -> list[Rollout]:
        """Rollouts, newest first."""
        return self._call("list", model, limit=limit, read=True)

    def rollback(self, model: str, reason: str = "rolled back by hand") -> Rollout:
        """Put back the traffic policy from before ``model``'s latest rollout."""
        return self._call("rollback", model, reason)

    def traffic(self, model: str, weights: dict[int, float], *,
                shadows: list[int] | None = None, sticky: bool = True) -> TrafficPolicy:
        """Set the traffic split by hand (e.g. ``{1: 90, 2: 10}``)."""
        return self._registry.set_traffic(model, weights, shadows=shadows, sticky=sticky)

    def retune(self, model: str, version: int, *, max_batch_size: int | None = None,
               batch_wait_timeout_s: float | None = None) -> ModelServing:
        """Change a live version's batching without a redeploy."""
        current = self._registry.get_version(model, version)  # NotFound early
        values = {k: v for k, v in {"max_batch_size": max_batch_size,
                                    "batch_wait_timeout_s": batch_wait_timeout_s}.items()
                  if v is not None}
        tuning = build(BatchTuning, "tuning", **{**BatchTuning().model_dump(), **values})
        return self._call("retune", current.model, current.version, tuning)

    def apps(self) -> list[dict[str, Any]]:
        """The model apps on Ray Serve with their status."""
        return self._call("apps", read=True)

    def breakers(self) -> dict[str, BreakerSnapshot]:
        """Circuit-breaker state per ``model/version``."""
        return self._breakers("breaker_states")

    def stats(self, model: str, version: int, window_s: float = 60.0) -> VersionStats:
        """Live requests, errors and latency of one version."""
        return self._breakers("version_stats", model, version, window_s)


class MonitoringClient(_Facade):
    """Live drift and data quality of served versions (``monitor`` actor), and live model
    metrics from feedback (read straight from the prediction and feedback logs)."""

    def __init__(self, transport: Any, who: Who, project: str,
                 config: PlatformConfig | None = None,
                 registry: RegistryClient | None = None) -> None:
        super().__init__("monitor", transport, who, project)
        self._config, self._registry = config, registry

    def performance(self, model: str, version: int, *, window_s: float = 86_400.0
                    ) -> PerformanceReport:
        """Accuracy, F1, ROC AUC (or RMSE/MAE) of ``model`` v``version`` on the feedback
        received for its logged predictions of the last ``window_s``, beside its
        evaluation metrics; feedback for unknown request ids is counted."""
        from mlray.monitoring.performance import live_performance, version_task

        assert self._config is not None and self._registry is not None
        mv = self._registry.get_version(model, version)
        return live_performance(self._config.offline_uri or "", self.project, model, version,
                                task=version_task(mv), window_s=window_s,
                                evaluation=dict(mv.metrics))

    def ingest(self, sketches: list[dict[str, Any]]) -> IngestResult:
        """Ship sketch envelopes (what ingress replicas do in the background)."""
        return self._transport.call("monitor", "ingest", self._who, sketches)

    def drift(self, model: str, version: int | None = None, *, window_s: float | None = None,
              rows: int | None = None) -> DriftReport:
        """Drift of live traffic against the version's training baseline.

        ``version`` None: the newest version with monitored traffic; ``window_s`` None:
        the monitor's default window; ``rows``: the newest buckets holding that many rows.
        """
        return self._call("drift", model, version, window_s=window_s, rows=rows, read=True)

    def quality(self, model: str, version: int | None = None, *,
                window_s: float | None = None, rows: int | None = None) -> QualityReport:
        """Data-quality checks of live inputs over the same windows as :meth:`drift`."""
        return self._call("quality", model, version, window_s=window_s, rows=rows, read=True)

    def values(self, window_s: float | None = None
               ) -> list[tuple[str, dict[str, str], float, float]]:
        """The project's monitored values as alert-engine samples."""
        return self._call("values", window_s=window_s, read=True)


class FeaturesClient(_Facade):
    """Feature definitions (``features`` actor) and the stores themselves (no actor hop).

    Reads and pushes go straight to the online and offline stores the platform config
    names; the definitions come from the actor, cached for ``repo_ttl_s``.
    """

    def __init__(self, transport: Any, who: Who, project: str,
                 config: PlatformConfig, repo_ttl_s: float = 5.0) -> None:
        super().__init__("features", transport, who, project)
        self._config = config
        self._repo_ttl_s = repo_ttl_s
        self._repo: tuple[float, FeatureRepo] | None = None
        self._online: OnlineStore | None = None

    def apply(self, definitions: str | Path | FeatureRepo, *, force: bool = False,
              dry_run: bool = False) -> ApplyResult:
        """Register the definitions of a directory of YAML files (or a repo), with a diff.

        Source paths are stored absolute: relative ones in YAML resolve against their
        file's directory, in a repo built in Python against the working directory now.

        Raises:
            NotFound: a local Parquet source that does not exist (naming view and path).
        """
        repo = (resolve_sources(definitions, Path.cwd()) if isinstance(definitions, FeatureRepo)
                else load_repo(definitions))
        check_sources(repo)
        result = self._call("apply", repo, force=force, dry_run=dry_run)
        self._repo = None
        return result

    def allowed_sources(self) -> list[str]:
        """Source prefixes a platform admin allowed beyond each project's storage root."""
        return self._call("allowed_sources", read=True)

    def allow_sources(self, allow: list[str] | None = None,
                      revoke: list[str] | None = None) -> list[str]:
        """Allow (or stop allowing) Parquet sources below these prefixes, for every project
        (admins of every project; audited)."""
        return self._call("allow_sources", allow=allow, revoke=revoke)

    def repo(self, fresh: bool = False) -> FeatureRepo:
        """The applied definitions."""
        if fresh or self._repo is None or time.monotonic() - self._repo[0] > self._repo_ttl_s:
            self._repo = (time.monotonic(), self._call("repo", read=True))
        return self._repo[1]

    def show(self, name: str) -> dict[str, Any]:
        """One definition by name, with its kind."""
        return self._call("show", name, read=True)

    def materializations(self) -> dict[str, Materialization]:
        """The last finished materialization per view."""
        return self._call("materializations", read=True)

    def online_store(self) -> OnlineStore:
        """The online store (opened once)."""
        if self._online is None:
            assert self._config.online_url is not None
            self._online = open_online_store(self._config.online_url, project=self.project,
                                             redis_prefix=self._config.redis_prefix)
        return self._online

    def offline_store(self) -> OfflineStore:
        """The offline store over the applied definitions."""
        assert self._config.offline_uri is not None
        return OfflineStore(self._config.offline_uri, self.repo(), project=self.project)

    def get_online_features(self, entity_rows: Any, features: list[str] | str, *,
                            full_feature_names: bool = False) -> OnlineFeatures:
        """Latest values per entity with statuses (PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE)."""
        return FeatureReader(self.repo(), self.online_store()).get_online_features(
            entity_rows, features, full_feature_names=full_feature_names)

    def get_historical_features(self, entity_rows: Any, features: list[str] | str, *,
                                full_feature_names: bool = False, as_pandas: bool = False,
                                output: str | None = None) -> Any:
        """Point-in-time correct features for training (an Arrow table, or pandas).

        Given a Ray Dataset of entity rows (for inputs larger than memory), the join runs
        on Ray Data and returns a Dataset, written to the Parquet directory ``output``
        when given (:mod:`mlray.features.offline_ray`).
        """
        store = self.offline_store()
        if type(entity_rows).__module__.startswith("ray.data"):
            if as_pandas:
                raise InvalidInput("as_pandas applies to in-memory entity rows; a Ray Dataset "
                                   "of entity rows gives a Dataset", field="as_pandas")
            from mlray.features.offline_ray import get_historical_features_ray

            return get_historical_features_ray(store, entity_rows, features,
                                               full_feature_names=full_feature_names,
                                               output=output)
        if output is not None:
            raise InvalidInput("output applies to a Ray Dataset of entity rows",
                               field="output")
        return store.get_historical_features(
            entity_rows, features, full_feature_names=full_feature_names, as_pandas=as_pandas)

    def push(self, view: str, rows: Any, *, to: str = "both") -> int:
        """Write rows of ``view`` to the ``online``, ``offline`` or ``both`` stores.

        Every row is checked first; nothing is written when one fails.
        """
        if to not in ("online", "offline", "both"):
            raise InvalidInput(f"to must be online, offline or both, not {to!r}", field="to")
        repo = self.repo()
        bound = repo.bind(view)
        written = 0
        if to in ("offline", "both"):
            written = OfflineStore(self._config.offline_uri or "", repo,
                                   project=self.project).write(view, rows)
        if to in ("online", "both"):
            online = self.online_store().write(bound, rows)
            written = max(written, online)
        return written


    def materialize(self, *, start: dt.datetime | None = None, end: dt.datetime | None = None,
                    views: list[str] | None = None, incremental: bool = False,
                    progress: Callable[[str, int], None] | None = None,
                    engine: str = "auto") -> list[Materialization]:
        """Move the latest rows per entity in ``[start, end)`` offline → online, per view;
        each finished view is recorded (``incremental`` starts where the last run ended)."""
        from mlray.features.materialize import materialize

        repo = self.repo(fresh=True)
        return materialize(
            repo, OfflineStore(self._config.offline_uri or "", repo, project=self.project),
            self.online_store(),
            record=lambda run: self._call("record_materialization", run),
            previous=self.materializations() if incremental else None, views=views,
            start=start, end=end, incremental=incremental, progress=progress, engine=engine)

    def streaming_views(self) -> list[str]:
        """The views fed by a stream."""
        return [v.name for v in self.repo().feature_views if v.source.type == "stream"]

    def start_streams(self, views: list[str] | None = None) -> dict[str, Any]:
        """Start (or find) a stream processor actor per streaming view; needs a cluster."""
        if not isinstance(self._transport, ActorTransport):
            raise BackendUnavailable("stream processors are actors; connect to a Ray cluster")
        from actors.stream import start_stream_processors

        wanted = views or self.streaming_views()
        return start_stream_processors(self._config, self.project, wanted)

    def stream_stats(self, view: str) -> dict[str, Any]:
        """What a view's stream processor has handled (and what is pending).

        The caller's role in the project is checked first (reading its definitions), so
        another project's caller is refused whether or not such a processor runs."""
        import ray

        from actors.stream import processor_name

        self.repo(fresh=True)  # PermissionDenied without a role in the project
        try:
            actor = ray.get_actor(processor_name(self.project, view),
                                  namespace=self._config.namespace)
        except ValueError:
            raise NotFound(f"no stream processor for view {view!r}", field="view") from None
        return ray.get(actor.stats.remote(), timeout=30)

    def publish(self, view: str, events: list[dict[str, Any]]) -> list[str]:
        """Append events to a streaming view's Redis Stream (as a producer would)."""
        import redis

        from mlray.features.stream import publish

        source = self.repo().feature_view(view).source
        if source.type != "stream":
            raise InvalidInput(f"view {view!r} is not fed by a stream", field="view")
        if not self._config.stream_url:
            raise BackendUnavailable("stream_url is not set; streams need a Redis")
        client = redis.Redis.from_url(self._config.stream_url)
        try:
            return publish(client, source.stream, events)
        finally:
            client.close()


class AlertsClient(_Facade):
    """Alert states, rules and silences (the ``alerts`` actor)."""

    def __init__(self, transport: Any, who: Who, project: str) -> None:
        super().__init__("alerts", transport, who, project)

    def list(self) -> list[AlertStatus]:
        """Pending and firing alerts."""
        return self._call("alerts", read=True)

    def rules(self) -> list[AlertRule]:
        """The rules being evaluated."""
        return self._call("rules", read=True)

    def silence(self, matchers: dict[str, str], duration_s: float, comment: str = ""
                ) -> Silence:
        """Mute notifications of matching alerts for ``duration_s`` seconds."""
        return self._call("silence", matchers, duration_s, comment)

    def silences(self) -> list[Silence]:
        """Active and future silences."""
        return self._call("silences", read=True)

    def evaluate(self) -> list[Notification]:
        """Evaluate every rule now (the actor also does it on its interval)."""
        return self._transport.call("alerts", "evaluate", self._who)


class KeysClient(_Facade):
    """API keys: issue (admin of every project the key reaches), list and revoke."""

    def __init__(self, transport: Any, who: Who, project: str) -> None:
        super().__init__("keys", transport, who, project)

    def create(self, user: str, roles: dict[str, str], *, expires_in_s: float | None = None,
               description: str = "") -> IssuedKey:
        """A new key for ``user`` with ``roles`` ({project or '*': 'predict' | 'viewer' |
        'editor' | 'admin'}); ``.key`` holds the secret, shown this once."""
        return self._call("create_key", user, roles, expires_in_s=expires_in_s,
                          description=description)

    def list(self, *, all_projects: bool = False) -> list[ApiKey]:
        """Keys with a role in this project, or every key (admin of '*')."""
        return self._call("list_keys", all_projects=all_projects, read=True)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by its public id; it is refused from then on."""
        return self._call("revoke_key", key_id)

    def bootstrap(self, user: str) -> IssuedKey | None:
        """The first admin key, for ``user``, when the platform has no key yet (else None);
        only the platform itself may ask (``connect(as_platform=True)``)."""
        return self._transport.call("keys", "bootstrap", self._who, user)

    def token(self, ttl_s: float) -> str:
        """A token standing for this client's key in this project only, for ``ttl_s``
        seconds (at most a day): what a job or a Train controller presents."""
        return self._transport.call("keys", "token", self._who, self.project, ttl_s)


class QuotasClient(_Facade):
    """Quotas and usage of one project."""

    def __init__(self, transport: Any, who: Who, project: str) -> None:
        super().__init__("quotas", transport, who, project)

    def set(self, *, replace: bool = False, **limits: float | None) -> QuotaLimits:
        """Set some quotas (``models=10``, ``requests_per_s=50``; None lifts one); the
        others stay unless ``replace`` (admin of every project; audited)."""
        return self._call("set_quotas", limits, replace=replace)

    def show(self) -> QuotaLimits:
        """The project's quotas (None: unlimited)."""
        return self._call("get_quotas", read=True)

    def usage(self, since: float | None = None) -> UsageReport:
        """What the project used since ``since`` (Unix time; default: ever)."""
        return self._call("usage", since, read=True)


class Client:
    """Entry point to a platform: ``client.registry``, ``.experiments`` and ``.jobs``.

    ``caller`` is who the platform takes this client for; ``who`` is what each call
    presents (see :data:`Who`).
    """

    def __init__(self, config: PlatformConfig, transport: Any, caller: Caller,
                 project: str | None = None, mode: str = "ray", who: Who = None) -> None:
        self.config = config
        self.caller = caller
        self.mode = mode
        self.transport = transport
        self.who: Who = caller if mode == "local" else who
        project = project or config.project
        self.artifacts = ArtifactStore(config.resolved_artifact_uri)
        who = self.who
        self.registry = RegistryClient(transport, who, project, self.artifacts)
        self.experiments = ExperimentsClient(transport, who, project, self.artifacts)
        self.jobs = JobsClient(transport, who, project)
        self.serving = ServingClient(transport, who, project, self.registry)
        self.features = FeaturesClient(transport, who, project, config)
        self.alerts = AlertsClient(transport, who, project)
        self.monitoring = MonitoringClient(transport, who, project, config, self.registry)
        self.keys = KeysClient(transport, who, project)
        self.quotas = QuotasClient(transport, who, project)
        self.pipelines = PipelinesClient(transport, who, project)
        self.abtests = AbTestsClient(transport, who, project)

    @property
    def project(self) -> str:
        """The project this client works in."""
        return self.registry.project

    def delegate(self, ttl_s: float) -> str | None:
        """A credential for work this client hands to another process (a Train controller,
        a Tune trial): a token minted from its key that reaches only this project and
        expires after ``ttl_s`` seconds; None when the client presents no credential."""
        if not isinstance(self.who, str):
            return None
        return self.keys.token(ttl_s)


def connect(address: str | None = None, *, namespace: str | None = None,
            config: PlatformConfig | None = None, project: str | None = None,
            caller: Caller | None = None, local: bool = False,
            on_mismatch: Literal["raise", "adopt"] | None = None,
            api_key: str | None = None, as_platform: bool = False) -> Client:
    """Connect to an mlray platform and return a :class:`Client`.

    The running actors are the source of truth for where the platform keeps its state
    (``state_url``, ``artifact_uri``, ``online_url``, ``offline_uri``, ...: see
    ``SHARED_KEYS``); actors that do not run yet are created with this config.

    Args:
        address: Ray address to join; ``"local"`` starts a new local Ray; None joins a
            running cluster if there is one (``"auto"``), else starts a local Ray.
        namespace: Ray namespace of the actors (default from config).
        config: platform config (default :func:`load_config`).
        project: project to work in (default from config).
        caller: identity, in local mode only (default: the local admin named by
            ``config.user``). Over Ray the actors decide who calls, from the API key.
        api_key: an mlray API key or token (default: ``MLRAY_API_KEY``). Without one the
            platform takes the call for its local admin where it runs ``auth: none``, and
            refuses it where it runs ``auth: keys``.
        local: run the services in this process, without Ray (one process at a time).
        on_mismatch: when the running actors' config differs from this one: ``"adopt"``
            uses theirs and prints one line per differing key on stderr; ``"raise"``
            raises :class:`ConfigError`. Default: raise when ``config`` is given (a
            program that names its stores must not write elsewhere), adopt when the
            config comes from the environment (e.g. a job from ``ray job submit``).
        as_platform: act as the platform itself (admin of every project) with the secret
            kept in the state store: for ``mlray up``, which can open that store anyway.

    Raises:
        ConfigError: ``on_mismatch="raise"`` and the running platform's config differs
            (the message names the key and both values), or the running actors disagree.
        Unauthenticated: the API key is malformed, unknown, expired or revoked, or the
            platform requires one and none was given.
    """
    if api_key is not None and caller is not None:
        raise InvalidInput("give api_key or caller, not both", field="api_key")
    if caller is not None and not local:
        raise InvalidInput("caller= works only with local=True: over Ray the actors decide "
                           "who calls, from api_key (or MLRAY_API_KEY)", field="caller")
    if caller is None and not as_platform:
        api_key = api_key or os.environ.get("MLRAY_API_KEY") or None
    on_mismatch = on_mismatch or ("raise" if config is not None else "adopt")
    config = config or load_config()
    if namespace:
        config = build(PlatformConfig, "", **{**config.model_dump(), "namespace": namespace})
    if local:
        from mlray._private.services import local_services
        from mlray._private.transport import LocalTransport

        transport: Transport = LocalTransport(local_services(config))
        if api_key:
            caller = resolve_key(transport, api_key)
        return Client(config, transport, caller or Caller.local_admin(config.user), project,
                      mode="local")
    from actors import actors_config, start_actors
    from mlray._private.ray_session import ensure_ray
    from mlray._private.transport import ActorTransport

    ensure_ray(address or config.ray_address, config.namespace, config.local_num_cpus)
    handles = start_actors(config)
    config = _reconcile(config, actors_config(handles), on_mismatch)
    transport = ActorTransport(handles)
    who = platform_credential(config) if as_platform else api_key
    return Client(config, transport, transport.call("keys", "whoami", who, idempotent=True),
                  project, who=who)


def _reconcile(local: PlatformConfig, running: PlatformConfig,
               on_mismatch: Literal["raise", "adopt"]) -> PlatformConfig:
    """``local``, or the running platform's config when they differ (see :func:`connect`)."""
    differences = config_differences(local, running)
    if not differences:
        return local
    if on_mismatch == "raise":
        key, line = next(iter(differences.items()))
        raise ConfigError(f"{line}; the platform keeps its own (use it: connect "
                          "without config=; or restart the platform to change it)", field=key)
    for line in differences.values():
        print(f"mlray: {line}; using the running platform's", file=sys.stderr, flush=True)
    return adopt_running(local, running)
