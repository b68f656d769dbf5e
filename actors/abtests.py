"""The ``abtests`` actor: a thin shell over :class:`mlray.abtest.service.AbTestService`
that looks at every running experiment every :data:`EVALUATION_INTERVAL_S` (concluding
them, moving bandit traffic) and reads live error ratio and latency from the ``breakers``
actor for the guardrails."""

from __future__ import annotations

import logging
import threading
from typing import Any

import ray

from actors._shell import ServiceActor
from mlray._private.redact import install_log_redaction
from mlray.abtest.service import AbTestService
from mlray.auth.tokens import platform_secret
from mlray.composition import open_stores
from mlray.config import PlatformConfig
from mlray.registry.service import ModelRegistry
from mlray.serving.model_names import breaker_key

__all__ = ["EVALUATION_INTERVAL_S", "AbTestsActor"]

log = logging.getLogger("mlray.abtests")

#: How often running experiments are looked at (``status`` also looks, on demand).
EVALUATION_INTERVAL_S = 30.0


@ray.remote(max_concurrency=4)
class AbTestsActor(ServiceActor):
    """A/B experiments and bandits."""

    NAME = "abtests"
    API = frozenset({"start", "status", "stop", "list_abtests", "evaluate_all"})

    def __init__(self, config: PlatformConfig) -> None:
        install_log_redaction()
        store, artifacts = open_stores(config)
        self._config = config
        self._authenticate(store)
        self._credential = platform_secret(store).credential
        self._service = AbTestService(store, ModelRegistry(store, artifacts),
                                      config.offline_uri, stats=self._live_stats)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True, name="abtests").start()

    def _live_stats(self, project: str, model: str, version: int, window_s: float) -> Any:
        """The breakers' figures of one version (None while the breakers actor is away)."""
        try:
            breakers = ray.get_actor("breakers", namespace=self._config.namespace)
            return ray.get(breakers.invoke.remote(
                "stats", self._credential, breaker_key(project, model, version), window_s),
                timeout=30)
        except (ValueError, ray.exceptions.RayError):
            log.warning("no live stats for %s v%s: the breakers actor did not answer", model,
                        version)
            return None

    def invoke(self, method: str, credential: str | None = None, *args: Any,
               **kwargs: Any) -> Any:
        """As the base shell, one call at a time with the evaluation loop."""
        with self._lock:
            return self._call(self._service, method, credential, args, kwargs)

    def _loop(self) -> None:
        while not self._stop.wait(EVALUATION_INTERVAL_S):
            try:
                with self._lock:
                    self._service.evaluate_all()
            except Exception:  # a store or log hiccup: look again next interval
                log.exception("A/B evaluation failed")
