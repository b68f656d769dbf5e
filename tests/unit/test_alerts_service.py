"""The alerts service over a real store: evaluations are persisted, so a restarted service
keeps firing alerts without notifying them again; silences are audited."""

from __future__ import annotations

from typing import Any

import pytest

from mlray.alerts.rules import parse_rules
from mlray.alerts.service import AlertsService
from mlray.errors import InvalidInput, PermissionDenied
from mlray.identity import Caller, Role
from mlray.storage import StateStore

ADMIN = Caller.local_admin()
RULES = parse_rules({"rules": [{"name": "DriftHigh", "metric": "mlray_drift_share",
                                "operator": ">", "threshold": 0.3, "for": 0,
                                "severity": "warning", "channels": ["log"]}],
                     "channels": {"log": {"type": "log"}}})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_state_survives_a_restart_and_silences_are_audited(store: StateStore) -> None:
    clock, sent = Clock(), []
    value = {"share": 0.5}

    def samples() -> list[Any]:
        return [("mlray_drift_share", {"model": "fraud", "version": "1"}, value["share"],
                 clock.now)]

    service = AlertsService(store, RULES, samples, notify=sent.append, clock=clock)
    service.evaluate()
    clock.now += 1
    service.evaluate()
    assert [a.state for a in service.alerts(ADMIN, "default")] == ["firing"]
    assert [n.state for n in sent] == ["firing"]

    restarted = AlertsService(store, RULES, samples, notify=sent.append, clock=clock)
    clock.now += 1
    restarted.evaluate()
    assert len(sent) == 1  # no second notification after the restart
    value["share"] = 0.1
    clock.now += 1
    restarted.evaluate()
    assert [n.state for n in sent] == ["firing", "resolved"]

    made = restarted.silence(ADMIN, "default", {"alertname": "DriftHigh"}, 3600, "deploy")
    assert [s.id for s in restarted.silences(ADMIN, "default")] == [made.id]
    assert any(e.action == "alerts.silence" for e in store.audit_log(project="default"))
    with pytest.raises(InvalidInput):
        restarted.silence(ADMIN, "default", {"alertname": "DriftHigh"}, -5)
    with pytest.raises(PermissionDenied):
        restarted.silence(Caller(user="v", roles={"default": Role.viewer}), "default",
                          {"alertname": "x"}, 60)


def test_refused_reads_are_audited(store: StateStore) -> None:
    service = AlertsService(store, RULES, list, notify=lambda _: None)
    outsider = Caller(user="eve", roles={"other": Role.admin})
    for read in (service.alerts, service.rules, service.silences):
        with pytest.raises(PermissionDenied):
            read(outsider, "default")
    denied = [e.target for e in store.audit_log(project="default") if e.action == "auth.denied"]
    assert denied == ["AlertsService.alerts", "AlertsService.rules", "AlertsService.silences"]
