"""The ``deployments`` actor: model apps on Ray Serve and the rollouts that move traffic.

A thin shell over :class:`mlray.serving.rollout.RolloutController`. A background thread
advances running rollouts every half second; the rollouts live in the state store, so
a restarted actor carries on where the last one stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray

from actors._shell import ServiceActor
from mlray._private.services import open_stores
from mlray.config import PlatformConfig
from mlray.errors import InvalidInput
from mlray.registry.service import ModelRegistry
from mlray.serving.board import VersionStats
from mlray.serving.rollout import RolloutController
from mlray.serving.settings import load_serving_config

__all__ = ["DeploymentsActor"]

log = logging.getLogger("mlray.deployments")
TICK_S = 0.5
APPS_MAX_AGE_S = 0.5


class _BreakersStats:
    """The rollout's stats port over the ``breakers`` actor."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace

    def stats(self, key: str, window_s: float = 60.0) -> VersionStats:
        actor = ray.get_actor("breakers", namespace=self._namespace)
        return ray.get(actor.invoke.remote("stats", key, window_s), timeout=30)


@ray.remote(max_concurrency=4, concurrency_groups={"apps": 1})
class DeploymentsActor(ServiceActor):
    """Deploys model versions, retunes them and runs rollouts."""

    NAME = "deployments"
    API = frozenset({"start", "get", "list", "rollback", "retune", "apps"})

    def __init__(self, config: PlatformConfig) -> None:
        from mlray.serving.deployer import ServeDeployer

        store, artifacts = open_stores(config)
        self._service = RolloutController(
            store, ModelRegistry(store, artifacts), ServeDeployer(config),
            _BreakersStats(config.namespace), load_serving_config(config.serving_config))
        self._lock = threading.RLock()
        self._apps: frozenset[str] = frozenset()
        self._apps_at = float("-inf")
        self._stop = threading.Event()
        threading.Thread(target=self._tick_forever, name="rollouts", daemon=True).start()

    def invoke(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """As the base shell, one call at a time with the rollout ticks."""
        if method not in self.API:
            raise InvalidInput(f"{self.NAME} has no method {method!r}", field="method")
        with self._lock:
            return getattr(self._service, method)(*args, **kwargs)

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
        while not self._stop.wait(TICK_S):
            try:
                with self._lock:
                    self._service.tick()
            except Exception:  # keep ticking; the next tick retries from the stored state
                log.exception("rollout tick failed")
