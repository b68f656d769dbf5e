"""The ``alerts`` actor: evaluates the alert rules over the ``monitor`` actor's values
(drift, quality, live model metrics) and the ``breakers`` actor's (error ratio, latency
quantiles, breaker states) on the configured interval and notifies the channels; a thin shell over
:class:`mlray.alerts.service.AlertsService` (state stored after every evaluation)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import ray

from actors._shell import ServiceActor
from mlray._private.redact import install_log_redaction
from mlray.alerts.actions import pipeline_action
from mlray.alerts.channels import build_dispatcher
from mlray.alerts.engine import Sample
from mlray.alerts.rules import AlertsConfig, load_rules
from mlray.alerts.service import AlertsService
from mlray.auth.tokens import platform_secret
from mlray.composition import open_stores
from mlray.config import PlatformConfig

__all__ = ["AlertsActor"]

log = logging.getLogger("mlray.alerts")


@ray.remote(max_concurrency=4)
class AlertsActor(ServiceActor):
    """Alert rules, their states, silences and notifications."""

    NAME = "alerts"
    API = frozenset({"alerts", "rules", "silence", "silences", "evaluate"})

    def __init__(self, config: PlatformConfig) -> None:
        install_log_redaction()
        store, _ = open_stores(config)
        rules = (load_rules(config.alerts_config) if config.alerts_config
                 else AlertsConfig())
        self._config = config
        self._authenticate(store)
        self._credential = platform_secret(store).credential
        self._service = AlertsService(store, rules, self._samples,
                                      notify=build_dispatcher(rules, redis_url=config.stream_url),
                                      on_action=pipeline_action(self._start_pipelines))
        self._lock = threading.RLock()
        self._stop = threading.Event()
        threading.Thread(target=self._loop, args=(rules.evaluation_interval,), daemon=True,
                         name="alerts").start()

    def _samples(self) -> list[Sample]:
        """The monitor's values (drift, quality) and the breakers' (error ratio, latency
        quantiles, breaker states) of every project they hold; each sample's ``project``
        label says whose it is."""
        sources = []
        for name in ("monitor", "breakers"):
            try:
                sources.append(ray.get_actor(name, namespace=self._config.namespace))
            except ValueError:  # not started yet (actors start on first use): no values
                continue
        held = ray.get([a.invoke.remote("projects", self._credential) for a in sources],
                       timeout=30)
        refs = [a.invoke.remote("values", self._credential, project)
                for a, projects in zip(sources, held, strict=True) for project in projects]
        return [s for found in ray.get(refs, timeout=30) for s in found]

    def _start_pipelines(self, project: str, rule: str) -> None:
        """Hand a firing of ``rule`` to the ``pipelines`` actor (its pipelines with an alert
        trigger on it start, or join their run in progress); does not wait for it."""
        actor = ray.get_actor("pipelines", namespace=self._config.namespace)
        ref = actor.invoke.remote("alert_fired", self._credential, project, rule)

        def report(done: Any) -> None:
            try:
                log.info("alert %s in %s started pipeline run(s) %s", rule, project,
                         done.result())
            except Exception:
                log.exception("alert %s in %s: starting its pipelines failed", rule, project)

        ref.future().add_done_callback(report)

    def invoke(self, method: str, credential: str | None = None, *args: Any,
               **kwargs: Any) -> Any:
        """As the base shell, one call at a time with the evaluation loop."""
        with self._lock:
            return self._call(self._service, method, credential, args, kwargs)

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                with self._lock:
                    self._service.evaluate()
            except Exception:  # the monitor may be restarting; try again next interval
                log.exception("alert evaluation failed")
