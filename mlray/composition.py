"""The composition root: the control-plane services and the stores they run on, built
in one place.

The top floor of the package: it imports every domain (registry, tracking, features,
monitoring, serving's breaker board, keys, quotas, pipelines, A/B tests) and nothing
imports it but the actors (one service each) and the in-process client (all of them on
one store).
"""

from __future__ import annotations

from typing import Any

from mlray.config import PlatformConfig
from mlray.storage import ArtifactStore, StateStore, open_state_store

__all__ = ["SERVICE_NAMES", "build_service", "local_services", "open_stores"]

SERVICE_NAMES = ("registry", "experiments", "jobs", "breakers", "features", "monitor", "keys",
                 "quotas", "pipelines", "abtests")


def open_stores(config: PlatformConfig) -> tuple[StateStore, ArtifactStore]:
    """The state and artifact stores the config names."""
    store = open_state_store(config.resolved_state_url, redis_prefix=config.redis_prefix)
    return store, ArtifactStore(config.resolved_artifact_uri)


def build_service(name: str, store: StateStore, artifacts: ArtifactStore,
                  offline_uri: str | None = None) -> Any:
    """The plain service called ``name`` over the given stores (the monitor and the
    abtests also read the prediction and feedback logs under ``offline_uri``)."""
    from mlray.auth.book import KeyBook
    from mlray.features.service import FeatureRegistry
    from mlray.monitoring.monitor import Monitor
    from mlray.registry.service import ModelRegistry
    from mlray.serving.breaker_board import BreakerBoard
    from mlray.tracking.jobs import JobBook
    from mlray.tracking.service import ExperimentTracker

    if name == "registry":
        return ModelRegistry(store, artifacts, evaluator=_evaluate)
    if name == "experiments":
        return ExperimentTracker(store, artifacts)
    if name == "jobs":
        return JobBook(store)
    if name == "breakers":
        return BreakerBoard(store)
    if name == "features":
        return FeatureRegistry(store, offline_uri)
    if name == "keys":
        return KeyBook(store)
    if name == "quotas":
        from mlray.quotas.service import QuotaService

        return QuotaService(store)
    if name == "pipelines":  # stages in threads of this process (the actor runs Ray tasks)
        from mlray.pipelines.executors import ThreadExecutor
        from mlray.pipelines.service import PipelineService

        return PipelineService(store, artifacts, ThreadExecutor(), offline_uri=offline_uri,
                               autodrive=True)
    if name == "abtests":  # in-process: no live serving stats (the actor wires the breakers')
        from mlray.abtest.service import AbTestService

        return AbTestService(store, ModelRegistry(store, artifacts), offline_uri)
    if name == "monitor":
        return Monitor.over_registry(store, ModelRegistry(store, artifacts), offline_uri)
    raise ValueError(f"no service {name!r}; there are {SERVICE_NAMES}")


def _evaluate(*args: Any) -> Any:
    """The platform's model evaluator, imported on first use (torch loads only when a
    version is validated, not whenever a registry starts)."""
    from mlray.models.validation import evaluate_artifact

    return evaluate_artifact(*args)


def local_services(config: PlatformConfig) -> dict[str, Any]:
    """Every service, in this process, sharing one store."""
    store, artifacts = open_stores(config)
    return {name: build_service(name, store, artifacts, config.offline_uri)
            for name in SERVICE_NAMES}
