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
        return [("mlray_drift_share", {"project": "default", "model": "fraud", "version": "1"},
                 value["share"], clock.now)]

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


def test_projects_see_and_silence_only_their_own_alerts(store: StateStore) -> None:
    """The same rule fires for a model of one name in projects a and b: each project's
    admin lists only its alert, and a silence made in b (even one naming project a)
    mutes only b's."""
    clock = Clock()

    def samples() -> list[Any]:
        return [("mlray_drift_share", {"project": p, "model": "fraud", "version": "1"}, 0.5,
                 clock.now) for p in ("a", "b")]

    service = AlertsService(store, RULES, samples, notify=lambda _: None, clock=clock)
    service.evaluate()
    clock.now += 1
    service.evaluate()
    a_admin = Caller(user="ann", roles={"a": Role.admin})
    b_admin = Caller(user="bob", roles={"b": Role.admin})
    assert [x.labels["project"] for x in service.alerts(a_admin, "a")] == ["a"]
    assert [x.labels["project"] for x in service.alerts(b_admin, "b")] == ["b"]
    made = service.silence(b_admin, "b", {"alertname": "DriftHigh", "project": "a"}, 3600)
    assert made.matchers["project"] == "b"
    assert service.silences(a_admin, "a") == []
    assert [s.id for s in service.silences(b_admin, "b")] == [made.id]
    assert service.alerts(a_admin, "a")[0].silenced_by == []
    assert service.alerts(b_admin, "b")[0].silenced_by == [made.id]
    with pytest.raises(PermissionDenied):
        service.alerts(b_admin, "a")


def test_refused_reads_are_audited(store: StateStore) -> None:
    service = AlertsService(store, RULES, list, notify=lambda _: None)
    outsider = Caller(user="eve", roles={"other": Role.admin})
    for read in (service.alerts, service.rules, service.silences):
        with pytest.raises(PermissionDenied):
            read(outsider, "default")
    denied = [e.target for e in store.audit_log(project="default") if e.action == "auth.denied"]
    assert denied == ["AlertsService.alerts", "AlertsService.rules", "AlertsService.silences"]
