"""The ``deployments`` actor: model apps on Ray Serve and the rollouts that move traffic.

A thin shell over :class:`mlray.serving.rollout.RolloutController` and
:class:`mlray.serving.reconcile.Reconciler`. A background thread advances running
rollouts every half second and, at start and every few seconds, reconciles Serve's model
apps to the desired state (stored policies and rollouts). Both live in the state store,
so a restarted actor, or a restarted cluster, carries on where the last one stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray

from actors._shell import ServiceActor
from mlray._private.redact import install_log_redaction
from mlray.auth.tokens import platform_secret
from mlray.composition import open_stores
from mlray.config import PlatformConfig
from mlray.quotas.usage import UsageMeter
from mlray.registry.service import ModelRegistry
from mlray.serving.breaker_board import VersionStats
from mlray.serving.deployed import deployed_replicas, per_project
from mlray.serving.reconcile import Reconciler
from mlray.serving.rollout import RolloutController
from mlray.serving.settings import load_serving_config

__all__ = ["DeploymentsActor"]

log = logging.getLogger("mlray.deployments")
TICK_S = 0.5
RECONCILE_S = 3.0
APPS_MAX_AGE_S = 0.5


class _BreakersStats:
    """The rollout's stats port over the ``breakers`` actor."""

    def __init__(self, namespace: str, credential: str) -> None:
        self._namespace = namespace
        self._credential = credential

    def stats(self, key: str, window_s: float = 60.0) -> VersionStats:
        actor = ray.get_actor("breakers", namespace=self._namespace)
        return ray.get(actor.invoke.remote("stats", self._credential, key, window_s),
                       timeout=30)


@ray.remote(max_concurrency=4, concurrency_groups={"apps": 1})
class DeploymentsActor(ServiceActor):
    """Deploys model versions, retunes them, runs rollouts and keeps Serve's model apps
    as the stored state wants them."""

    NAME = "deployments"
    API = frozenset({"start", "get", "list", "rollback", "retune", "apps"})

    def __init__(self, config: PlatformConfig) -> None:
        from mlray.serving.deployer import ServeDeployer

        install_log_redaction()
        self._config = config  # what ServiceActor.config() answers
        store, artifacts = open_stores(config)
        registry, deployer = ModelRegistry(store, artifacts), ServeDeployer(config)
        stats = _BreakersStats(config.namespace, platform_secret(store).credential)
        self._service = RolloutController(store, registry, deployer, stats,
                                          load_serving_config(config.serving_config))
        self._reconciler = Reconciler(registry, self._service, deployer)
        self._store, self._usage = store, UsageMeter(store)
        self._authenticate(store)
        self._lock = threading.RLock()
        self._apps: frozenset[str] = frozenset()
        self._apps_at = float("-inf")
        self._stop = threading.Event()
        threading.Thread(target=self._tick_forever, name="rollouts", daemon=True).start()

    def invoke(self, method: str, credential: str | None = None, *args: Any,
               **kwargs: Any) -> Any:
        """As the base shell, one call at a time with the rollout ticks."""
        target = self._reconciler if method == "apps" else self._service
        with self._lock:
            return self._call(target, method, credential, args, kwargs)

    @ray.method(concurrency_group="apps")
    def usable_apps(self, max_age_s: float = APPS_MAX_AGE_S) -> frozenset[str]:
        """Model apps that can take requests, at most ``max_age_s`` old (what every
        ingress replica polls; outside the rollout lock, in its own thread so calls
        waiting on that lock never hold it up)."""
        from mlray.serving.deployer import usable_apps

        if time.monotonic() - self._apps_at > max_age_s:
            self._apps, self._apps_at = usable_apps(), time.monotonic()
        return self._apps

    def _tick_forever(self) -> None:
        next_reconcile = time.monotonic()  # at once on start
        while True:
            try:
                with self._lock:
                    self._service.tick()
            except Exception:  # keep ticking; the next tick retries from the stored state
                log.exception("rollout tick failed")
            if time.monotonic() >= next_reconcile:
                next_reconcile = time.monotonic() + RECONCILE_S
                self._reconcile()
            if self._stop.wait(TICK_S):
                return

    def _reconcile(self) -> None:
        try:
            with self._lock:
                done = self._reconciler.reconcile()
        except Exception:  # Serve or the store unreachable: the next pass tries again
            log.exception("reconciling Serve failed")
            return
        self._accrue(done.skipped is None)
        for name in done.deployed:
            log.info("reconcile: deployed %s (wanted, missing from Serve)", name)
        for name in done.removed:
            log.info("reconcile: removed %s (no policy or rollout wants it)", name)
        for name, error in done.errors.items():
            log.warning("reconcile: could not deploy %s: %s", name, error)

    def _accrue(self, serving: bool) -> None:
        """Replica-seconds since the last pass for what is deployed (nothing while Serve
        does not run this platform's apps); see :mod:`mlray.quotas.usage`."""
        try:
            with self._lock:
                deployed = deployed_replicas(self._store, self._service) if serving else {}
            self._usage.accrue_replicas(*per_project(deployed))
        except Exception:  # the store unreachable: the next pass counts the time (capped)
            log.exception("counting replica-seconds failed")
