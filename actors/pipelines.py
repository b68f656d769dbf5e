"""The ``pipelines`` actor: a thin shell over :class:`mlray.pipelines.service.PipelineService`
that runs stages as Ray tasks and drives runs and triggers from background threads.

A stage's module is imported only in Ray tasks (its code version, for the cache key, is
worked out in one too), never in this actor, which holds the platform's secret. Its
:class:`~mlray.pipelines.driver.Driver` advances every active run when a stage task
ends (``ray.wait``) or a call came in, and checks schedules, new data and feedback every
:data:`TRIGGER_INTERVAL_S`. Every state is stored before it is reported, so a restarted
actor reloads its runs; stages it was running are marked interrupted and
``mlray pipelines resume`` runs them again. Each run is also a Ray job, named after its
pipeline, that follows it (:mod:`mlray.pipelines.run_job`).
"""

from __future__ import annotations

import ray

from actors._shell import ServiceActor
from mlray._private.redact import install_log_redaction
from mlray.auth.tokens import platform_secret
from mlray.composition import open_stores
from mlray.config import PlatformConfig
from mlray.identity import Caller
from mlray.pipelines.executors import RayExecutor
from mlray.pipelines.run_job import RunJobs
from mlray.pipelines.service import PipelineService

__all__ = ["TRIGGER_INTERVAL_S", "PipelinesActor"]

#: How often schedules, new data and feedback counts are checked.
TRIGGER_INTERVAL_S = 15.0
#: How long a stage's token is valid (a stage that runs longer must not need a new one).
STAGE_TOKEN_TTL_S = 7 * 86_400.0


def _dashboard_url() -> str | None:
    """The cluster's job server (its dashboard), or None when it runs without one."""
    try:
        return ray._private.worker.get_dashboard_url() or None
    except Exception:
        return None


@ray.remote(max_concurrency=4)
class PipelinesActor(ServiceActor):
    """Pipeline definitions, runs, approvals and triggers."""

    NAME = "pipelines"
    API = frozenset({"apply", "pipelines", "pipeline", "run", "runs", "get_run", "resume",
                     "cancel", "approve", "check_triggers", "alert_fired", "allowed_code",
                     "allow_code"})

    def __init__(self, config: PlatformConfig) -> None:
        install_log_redaction()
        store, artifacts = open_stores(config)
        self._config = config
        self._authenticate(store)
        secret = platform_secret(store)

        def mint(caller: Caller, project: str) -> str:
            return secret.mint(caller, STAGE_TOKEN_TTL_S, project=project)

        executor = RayExecutor()
        jobs = RunJobs(config.namespace, _dashboard_url)
        self._service = PipelineService(store, artifacts, executor,
                                        offline_uri=config.offline_uri, mint=mint,
                                        namespace=config.namespace,
                                        versions=executor.code_versions, on_run=jobs.submit)
        self._service.start_driver(TRIGGER_INTERVAL_S)
