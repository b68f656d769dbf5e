"""The alerts service (the ``alerts`` actor's logic): the engine, its persisted state, and
the calls people make (list alerts, list rules, silence).

The engine's state (alert states, notification times, silences) is stored after every
evaluation and every silence, so a restarted actor neither forgets a firing alert nor
notifies it again.

Alerts and silences belong to a project: every sample carries a ``project`` label, a
project's callers see only the alerts with their project's label, and a silence is
always limited to the project it was made in (its ``project`` matcher is set, whatever
the caller asked), so no project can read or mute another's alerts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import Field

from mlray._private.types import Project
from mlray._private.validation import boundary
from mlray.alerts.engine import AlertEngine, SampleSource
from mlray.alerts.rules import AlertRule, AlertsConfig
from mlray.alerts.types import AlertStatus, Notification, Silence
from mlray.identity import Caller, Role
from mlray.storage.base import AuditEntry, Put, StateStore

__all__ = ["AlertsService"]

STATE = "alerts_state"
#: The label naming the project of a sample, an alert and a silence.
PROJECT_LABEL = "project"
_KEY = "engine"


class AlertsService:
    """Evaluates the configured rules over ``source`` and keeps the state durable."""

    #: Methods that take no caller and answer only the platform (admin of every project).
    PLATFORM = frozenset({"evaluate"})

    def __init__(self, store: StateStore, config: AlertsConfig, source: SampleSource, *,
                 notify: Callable[[Notification], None] | None = None,
                 on_action: Callable[[str, Notification], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.config = config
        doc = store.get(STATE, _KEY)
        self.engine = AlertEngine(config.rules, source, notify=notify,
                                  repeat_interval=config.repeat_interval, on_action=on_action,
                                  clock=clock, state=doc.data if doc else None)

    def _save(self, audit: AuditEntry | None = None) -> None:
        self._store.apply([Put(collection=STATE, key=_KEY, data=self.engine.to_dict())], audit)

    def evaluate(self) -> list[Notification]:
        """One evaluation of every rule; the new state is stored before it returns."""
        notes = self.engine.evaluate()
        self._save()
        return notes

    @boundary
    def alerts(self, caller: Caller, project: Project) -> list[AlertStatus]:
        """The project's pending and firing alerts."""
        caller.require(project, Role.viewer)
        return [a for a in self.engine.alerts() if a.labels.get(PROJECT_LABEL) == project]

    @boundary
    def rules(self, caller: Caller, project: Project) -> list[AlertRule]:
        """The rules being evaluated."""
        caller.require(project, Role.viewer)
        return self.engine.rules

    @boundary
    def silence(self, caller: Caller, project: Project, matchers: dict[str, str],
                duration_s: float = Field(gt=0, le=90 * 86_400), comment: str = "") -> Silence:
        """Mute notifications of the project's alerts whose labels match, for
        ``duration_s`` seconds (a ``project`` matcher is replaced by this project)."""
        caller.require(project, Role.editor)
        matchers = {**matchers, PROJECT_LABEL: project}
        silence = self.engine.add_silence(matchers, time.time() + duration_s,
                                          created_by=caller.user, comment=comment)
        self._save(AuditEntry(user=caller.user, project=project, action="alerts.silence",
                              target=silence.id, after=silence.model_dump(mode="json")))
        return silence

    @boundary
    def silences(self, caller: Caller, project: Project) -> list[Silence]:
        """The project's active and future silences."""
        caller.require(project, Role.viewer)
        return [s for s in self.engine.silences() if s.matchers.get(PROJECT_LABEL) == project]
