"""The threads that drive a :class:`~mlray.pipelines.service.PipelineService`: one advances
runs whenever a stage may have ended (or a call woke it), one checks triggers on an
interval. The ``pipelines`` actor starts both; an embedded (no Ray) client starts the run
thread with its first run and it ends once no stage runs or waits to start, so the
process that asked is the run's driver (stop it and the run waits for ``resume``; an
approval is answered, and times out, in whichever process drives the run next)."""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["Driver"]

log = logging.getLogger("mlray.pipelines")


class Driver:
    """Background threads over ``service`` (its methods lock themselves)."""

    def __init__(self, service: Any, trigger_interval_s: float | None = None, *,
                 until_idle: bool = False) -> None:
        self._service = service
        self._trigger_interval_s = trigger_interval_s
        self._until_idle = until_idle
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Driver:
        """Start the threads (once)."""
        if self._threads:
            return self
        self._threads.append(threading.Thread(target=self._runs, daemon=True,
                                              name="pipeline-runs"))
        if self._trigger_interval_s is not None:
            self._threads.append(threading.Thread(target=self._triggers, daemon=True,
                                                  name="pipeline-triggers"))
        for thread in self._threads:
            thread.start()
        return self

    def wake(self) -> None:
        """Advance runs now (a call changed something)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the current pass."""
        self._stop.set()
        self._wake.set()

    def _runs(self) -> None:
        while not self._stop.is_set():
            try:
                if self._service.engine.running():
                    self._service.wait(0.1)
                else:
                    self._wake.wait(0.5)
                self._wake.clear()
                if not self._stop.is_set():
                    self._service.tick()
                if self._until_idle and self._service.release_idle(self):
                    return
            except Exception:  # a store hiccup: the next pass tries again
                log.exception("advancing pipeline runs failed")

    def _triggers(self) -> None:
        assert self._trigger_interval_s is not None
        while not self._stop.wait(self._trigger_interval_s):
            try:
                self._service.check_triggers()
            except Exception:
                log.exception("checking pipeline triggers failed")
