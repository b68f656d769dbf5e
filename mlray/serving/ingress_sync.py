"""The background work of one ingress replica: its view of the control plane, kept fresh.

An :class:`IngressSync` loads the replica's copy of the served models (policies, versions,
schemas), the running model apps and the feature definitions when the replica starts, then
refreshes them every ``policy_refresh_s`` in a task started with the replica (every route
also makes sure it runs, so no endpoint can see a stale view for long). Every
``sync_interval_s`` it also flushes the prediction log, ships drift sketches to the
``monitor`` actor, exchanges breaker states and outcomes with the ``breakers`` actor,
lets colocated copies follow their app's tuning, and exports breaker gauges.

No request waits on an actor, except one shared, rate-limited ``usable_apps`` call when a
request misses a version deployed since the last refresh (:meth:`IngressSync.refresh_apps`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray
from ray import serve

from mlray.auth.tokens import platform_credential
from mlray.config import PlatformConfig
from mlray.features.repo import FeatureRepo
from mlray.monitoring.buffer import SketchBuffer
from mlray.monitoring.prediction_log import PredictionLog
from mlray.registry.types import ModelVersion
from mlray.serving.batched import BatchedVersion, load_runner
from mlray.serving.colocated import LocalVersions
from mlray.serving.model_names import app_name, project_apps
from mlray.serving.router import Router
from mlray.serving.settings import BatchTuning, IngressSettings, ModelServing
from mlray.serving.telemetry import ServingMetrics

__all__ = ["IngressSync"]

log = logging.getLogger("mlray.ingress")
CALL_TIMEOUT_S = 10.0  # background calls to actors and apps


class IngressSync:
    """What one ingress replica keeps in step with the control plane, and the task doing it.

    It shares ``router`` and ``metrics`` with the replica's request path; the request path
    reads :attr:`feature_repo`, :attr:`local`, and appends to :attr:`log` and
    :attr:`sketches`.
    """

    def __init__(self, config: PlatformConfig, settings: IngressSettings, router: Router,
                 metrics: ServingMetrics) -> None:
        self.config, self.settings = config, settings
        self.router, self.metrics = router, metrics
        #: What the replica's own calls present: the platform's internal credential.
        self.credential = platform_credential(config)
        self._registry = ray.get_actor("registry", namespace=config.namespace)
        self._breakers = ray.get_actor("breakers", namespace=config.namespace)
        self._features = ray.get_actor("features", namespace=config.namespace)
        self._deployments = ray.get_actor("deployments", namespace=config.namespace)
        self._monitor = ray.get_actor("monitor", namespace=config.namespace)
        self.feature_repo = FeatureRepo()
        self.local = LocalVersions(self._load_local)
        assert config.offline_uri is not None
        self.log = PredictionLog(config.offline_uri, config.project, settings.log_sample)
        self.sketches = SketchBuffer()
        self._handles: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._opening: asyncio.Task[None] | None = None
        self._apps_checked_at = 0.0
        self._apps_reload: asyncio.Task[bool] | None = None
        #: Monotonic time of the last complete refresh of the served models (None: never).
        self.refreshed_at: float | None = None

    # -- the view ----------------------------------------------------------------------------

    def load(self) -> None:
        """Load the view once, blocking (the replica's constructor; raises on failure)."""
        view = ray.get(self._registry.invoke.remote("serving_view", self.credential,
                                                    self.config.project), timeout=60)
        self.feature_repo = ray.get(self._features.invoke.remote(
            "repo", self.credential, self.config.project), timeout=60)
        self.router.update(view, ray.get(self._deployments.usable_apps.remote(), timeout=60))
        self.refreshed_at = time.monotonic()

    @property
    def loaded(self) -> bool:
        """Has the replica's view of the served models been loaded?"""
        return self.refreshed_at is not None

    async def reload_repo(self) -> FeatureRepo:
        """Fetch the feature definitions now (a request named one not known yet)."""
        self.feature_repo = await self._features.invoke.remote("repo", self.credential,
                                                               self.config.project)
        return self.feature_repo

    async def refresh_apps(self, min_interval_s: float = 0.25) -> bool:
        """Reload which apps run, at most every ``min_interval_s``; True if it changed.

        Requests that miss while a reload is under way wait for that same reload."""
        if self._apps_reload is None or self._apps_reload.done():
            now = time.monotonic()
            if now - self._apps_checked_at < min_interval_s:
                return False
            self._apps_checked_at = now
            self._apps_reload = asyncio.get_running_loop().create_task(self._reload_apps())
        return await asyncio.shield(self._apps_reload)

    async def _reload_apps(self) -> bool:
        running = await asyncio.wait_for(self._deployments.usable_apps.remote(0.1),
                                         CALL_TIMEOUT_S)
        if project_apps(running, self.router.project) == self.router.ready_apps:
            return False
        self.router.update(self.router.models, running)
        return True

    # -- model app handles and colocated copies -------------------------------------------

    def handle(self, model: str, version: int) -> Any:
        """The Serve handle of the version's app (opened on first use)."""
        name = app_name(self.router.project, model, version)
        found = self._handles.get(name)
        if found is None:
            found = self._handles[name] = serve.get_app_handle(name)
        return found

    async def _open_handles(self) -> None:
        """Open the handles of running versions the policies name before a request needs
        one (opening costs a blocking controller call; a canary's first requests would
        otherwise pay it)."""
        for model, served in self.router.models.items():
            for version in served.versions:
                name = app_name(self.router.project, model, version)
                if name not in self._handles and self.router.is_ready(model, version):
                    try:
                        self._handles[name] = await asyncio.wait_for(
                            asyncio.to_thread(serve.get_app_handle, name), CALL_TIMEOUT_S)
                    except Exception:  # a request opens it when it comes
                        log.warning("could not open %s yet", name, exc_info=True)

    async def _load_local(self, version: ModelVersion) -> BatchedVersion:
        """A colocated copy of ``version`` with its app's effective settings (deploy-time
        overrides and retuning included), loaded off the event loop."""
        handle = self.handle(version.model, version.version)
        serving = ModelServing.model_validate(
            await asyncio.wait_for(handle.serving.remote(), CALL_TIMEOUT_S))
        runner = await asyncio.to_thread(load_runner, self.config, version, serving)
        return BatchedVersion(version.model, version.version, runner, serving.tuning,
                              project=version.project)

    async def _sync_local(self) -> None:
        """Drop colocated copies no longer served; let the rest follow their app's
        batch tuning (``mlray retune`` reconfigures the app)."""
        self.local.keep_only((m, v) for m, s in self.router.models.items()
                             for v in s.versions)
        for (model, version), local in self.local.loaded().items():
            if not self.router.is_ready(model, version):
                continue
            try:
                serving = await asyncio.wait_for(
                    self.handle(model, version).serving.remote(), CALL_TIMEOUT_S)
                local.retune(BatchTuning.model_validate(serving["tuning"]))
            except Exception:  # the app may be restarting; the next sync tries again
                log.warning("tuning of %s v%d not read", model, version, exc_info=True)

    # -- monitoring and breakers -------------------------------------------------------------

    async def _ship_sketches(self) -> None:
        """Sketch what was answered since the last call (off the event loop) and send the
        sketches to the ``monitor`` actor; versions without a baseline are skipped."""
        for model, version in self.sketches.unknown():
            mv = await self._registry.invoke.remote("get_version", self.credential,
                                                    self.config.project, model, version)
            self.sketches.set_baseline(model, version, mv.baseline)
        envelopes = await asyncio.to_thread(self.sketches.drain, self.config.project)
        if envelopes:
            await self._monitor.invoke.remote("ingest", self.credential, envelopes)

    async def _sync_breakers(self) -> None:
        merged = await self._breakers.invoke.remote(
            "sync", self.credential, self.router.snapshots(), self.router.drain_outcomes())
        self.router.merge(merged)

    def _export_breaker_gauges(self) -> None:
        for name, served in self.router.models.items():
            for number in served.versions:
                self.metrics.breaker_state(name, number,
                                           self.router.breaker(name, number).state.value)

    # -- the loops ----------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the background loops if they are not running (needs the event loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._refresh_forever())
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_forever())

    def start_if_in_loop(self) -> None:
        """Start the loops now when called on a running event loop (a Serve replica's
        constructor is); otherwise the first request starts them."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.ensure_started()

    async def refresh(self) -> None:
        """One refresh of the served models, running apps and feature repo; then open the
        handles of new versions (in the background: a slow controller never delays the
        next refresh)."""
        view = await asyncio.wait_for(self._registry.invoke.remote(
            "serving_view", self.credential, self.config.project), CALL_TIMEOUT_S)
        running = await asyncio.wait_for(self._deployments.usable_apps.remote(),
                                         CALL_TIMEOUT_S)
        self.router.update(view, running)
        self.refreshed_at = time.monotonic()
        if self._opening is None or self._opening.done():
            self._opening = asyncio.get_running_loop().create_task(self._open_handles())
        await asyncio.wait_for(self.reload_repo(), CALL_TIMEOUT_S)

    async def sync(self) -> None:
        """One exchange with the monitoring and breaker actors, and the local copies."""
        if self.log.pending():
            await asyncio.to_thread(self.log.flush)
        await asyncio.wait_for(self._ship_sketches(), CALL_TIMEOUT_S)
        await asyncio.wait_for(self._sync_breakers(), CALL_TIMEOUT_S)
        await self._sync_local()
        self._export_breaker_gauges()

    async def _refresh_forever(self) -> None:
        """The view, every ``policy_refresh_s`` (at most 2 s: what every endpoint sees)."""
        while True:
            try:
                await self.refresh()
            except Exception:  # the control plane may be restarting; keep the last copy
                log.warning("background refresh failed; serving from the last copy",
                            exc_info=True)
            await asyncio.sleep(self.settings.policy_refresh_s)

    async def _sync_forever(self) -> None:
        """Logs, sketches, breakers and colocated copies, every ``sync_interval_s`` (apart
        from the view's refresh, so a slow actor never makes the view stale)."""
        while True:
            try:
                await self.sync()
            except Exception:  # the next round tries again
                log.warning("background sync failed", exc_info=True)
            await asyncio.sleep(self.settings.sync_interval_s)
