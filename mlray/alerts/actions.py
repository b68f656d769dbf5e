"""What a rule's ``action`` starts: the alert's project's pipelines that have an ``alert``
trigger on that rule (see :class:`mlray.pipelines.definitions.AlertFired`).

The engine calls the hook once per firing, inside an evaluation, so the hook only hands
the firing on (the actor submits a call to the ``pipelines`` actor and does not wait);
the pipelines service coalesces a firing into a run of the same pipeline in progress.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mlray.alerts.engine import ActionHook
from mlray.alerts.service import PROJECT_LABEL
from mlray.alerts.types import Notification

__all__ = ["pipeline_action"]

logger = logging.getLogger("mlray.alerts")


def pipeline_action(fire: Callable[[str, str], object]) -> ActionHook:
    """An action hook that calls ``fire(project, rule)`` for each firing; a firing
    without a ``project`` label is logged and dropped (no pipeline of all projects)."""

    def on_action(action: str, note: Notification) -> None:
        project = note.labels.get(PROJECT_LABEL)
        if not project:
            logger.warning("alerts: %s (action %r) has no %r label; no pipeline started",
                           note.alertname, action, PROJECT_LABEL)
            return
        logger.info("alerts: %s fired in %s; action %r starts its pipelines",
                    note.alertname, project, action)
        fire(project, note.alertname)

    return on_action
