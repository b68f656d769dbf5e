"""The alert state machine: pending, firing, resolved, silences, repeats and restarts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlray.alerts.engine import AlertEngine, Sample
from mlray.alerts.rules import AlertRule
from mlray.alerts.types import AlertState, Notification
from mlray.errors import InvalidInput, NotFound

V1 = {"model": "fraud", "version": "1"}
V2 = {"model": "fraud", "version": "2"}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


class Source:
    """Current series, set by the test; ``fail`` makes the next call raise."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.fail = False
        self.extra: list[Sample] = []

    def set(self, value: float | None, labels: dict[str, str] = V1,
            metric: str = "mlray_drift_share") -> None:
        key = (metric, tuple(sorted(labels.items())))
        if value is None:
            self.values.pop(key, None)
        else:
            self.values[key] = value

    def __call__(self) -> list[Sample]:
        if self.fail:
            raise ConnectionError("monitor unreachable")
        return [(m, dict(lbls), v, self.clock()) for (m, lbls), v in self.values.items()] + \
            self.extra


def make_rule(**fields: Any) -> AlertRule:
    base: dict[str, Any] = {"name": "DriftHigh", "metric": "mlray_drift_share",
                            "labels": {"model": "fraud"}, "operator": ">", "threshold": 0.3,
                            "for": 60, "annotations": {"summary": "{{ $value }} v{{ "
                                                                  "$labels.version }}"}}
    return AlertRule.model_validate({**base, **fields})


class Harness:
    def __init__(self, *rules: AlertRule, repeat: float = 3600.0,
                 state: dict[str, Any] | None = None) -> None:
        self.clock = Clock()
        self.source = Source(self.clock)
        self.sent: list[Notification] = []
        self.actions: list[tuple[str, str]] = []
        self.engine = self._engine(rules or (make_rule(),), repeat, state)

    def _engine(self, rules: tuple[AlertRule, ...], repeat: float,
                state: dict[str, Any] | None) -> AlertEngine:
        return AlertEngine(rules, self.source, notify=self.sent.append, repeat_interval=repeat,
                           on_action=lambda name, n: self.actions.append((name, n.alertname)),
                           clock=self.clock, state=state)

    def step(self, seconds: float = 15.0) -> list[Notification]:
        self.clock.tick(seconds)
        return self.engine.evaluate()

    def states(self) -> list[AlertState]:
        return [a.state for a in self.engine.alerts()]


def test_pending_then_firing_after_for() -> None:
    h = Harness()
    h.source.set(0.5)
    assert h.engine.evaluate() == []
    assert h.states() == [AlertState.PENDING]
    assert h.step(30) == []
    assert h.states() == [AlertState.PENDING]
    out = h.step(30)
    assert h.states() == [AlertState.FIRING]
    assert len(out) == 1 and h.sent == out
    n = out[0]
    assert (n.alertname, n.state, n.value, n.severity) == ("DriftHigh", "firing", 0.5, "warning")
    assert n.labels == {**V1, "alertname": "DriftHigh", "severity": "warning"}
    assert n.annotations == {"summary": "0.5 v1"}
    assert n.starts_at == h.clock() and n.ends_at is None and n.channels == ["log"]


def test_for_zero_fires_at_once() -> None:
    h = Harness(make_rule(**{"for": 0}))
    h.source.set(0.9)
    assert [n.state for n in h.engine.evaluate()] == ["firing"]


def test_pending_that_clears_is_dropped_silently() -> None:
    h = Harness()
    h.source.set(0.5)
    h.engine.evaluate()
    h.step(30)
    h.source.set(0.1)
    assert h.step(15) == []
    assert h.engine.alerts() == []
    h.source.set(0.5)  # a new episode starts its `for` from scratch
    h.step(15)
    assert h.step(45) == [] and h.states() == [AlertState.PENDING]
    assert len(h.step(15)) == 1
    assert h.sent and all(n.state == "firing" for n in h.sent)


def test_missing_series_counts_as_cleared() -> None:
    h = Harness(make_rule(**{"for": 0}))
    h.source.set(0.5)
    h.engine.evaluate()
    h.source.set(None)
    out = h.step()
    assert [n.state for n in out] == ["resolved"]


def test_firing_resolves_after_keep_firing_for() -> None:
    h = Harness(make_rule(**{"for": 0, "keep_firing_for": "1m"}))
    h.source.set(0.5)
    fired = h.engine.evaluate()[0]
    h.source.set(0.2)
    assert h.step(15) == [] and h.states() == [AlertState.FIRING]
    assert h.step(30) == [] and h.states() == [AlertState.FIRING]
    h.source.set(0.6)  # back above: the keep-firing clock restarts
    assert h.step(10) == []
    h.source.set(0.2)
    assert h.step(15) == []
    assert h.step(45) == [] and h.states() == [AlertState.FIRING]
    out = h.step(15)
    assert [n.state for n in out] == ["resolved"]
    assert out[0].starts_at == fired.starts_at and out[0].ends_at == h.clock()
    assert out[0].value == 0.6  # the last value that met the condition
    assert h.engine.alerts() == []
    assert h.step(15) == []


def test_label_sets_are_separate_alerts_and_matchers_filter() -> None:
    h = Harness(make_rule(**{"for": 0, "labels": {"model": "fraud", "version": "!=3"}}))
    h.source.set(0.5, V1)
    h.source.set(0.5, V2)
    h.source.set(0.5, {"model": "fraud", "version": "3"})
    h.source.set(0.9, {"model": "churn", "version": "1"})
    out = h.engine.evaluate()
    assert sorted(n.labels["version"] for n in out) == ["1", "2"]
    assert len({n.fingerprint for n in out}) == 2


def test_repeat_interval_and_dedup() -> None:
    h = Harness(make_rule(**{"for": 0}), repeat=600)
    h.source.set(0.5)
    h.source.extra = [("mlray_drift_share", dict(V1), 0.4, h.clock.now - 5)]  # older duplicate
    out = h.engine.evaluate()
    assert len(out) == 1 and out[0].value == 0.5
    for _ in range(39):  # 585 s of evaluations: deduplicated
        assert h.step(15) == []
    again = h.step(15)
    assert [n.state for n in again] == ["firing"]
    assert again[0].starts_at == out[0].starts_at
    assert len(h.sent) == 2


def test_silence_mutes_notifications_but_not_state() -> None:
    h = Harness(make_rule(**{"for": 0}))
    silence = h.engine.add_silence({"version": "1"}, ends_at=h.clock() + 100,
                                   created_by="ops", comment="known drift")
    h.source.set(0.5, V1)
    h.source.set(0.5, V2)
    out = h.engine.evaluate()
    assert [n.labels["version"] for n in out] == ["2"]
    status = {a.labels["version"]: a for a in h.engine.alerts()}
    assert status["1"].state is AlertState.FIRING and status["1"].silenced_by == [silence.id]
    assert h.step(50) == []
    # The silence ends while the alert still fires: it is notified then.
    out = h.step(60)
    assert [(n.state, n.labels["version"]) for n in out] == [("firing", "1")]
    assert h.engine.silences() == []


def test_resolution_during_a_silence_is_not_notified() -> None:
    h = Harness(make_rule(**{"for": 0}))
    h.source.set(0.5)
    assert len(h.engine.evaluate()) == 1
    h.engine.add_silence({"alertname": "DriftHigh"}, ends_at=h.clock() + 3600)
    h.source.set(0.1)
    assert h.step() == []
    assert h.engine.alerts() == []


def test_a_silence_that_starts_later_and_expiring_one() -> None:
    h = Harness(make_rule(**{"for": 0}))
    later = h.engine.add_silence({"model": "=~fr.*"}, starts_at=h.clock() + 30,
                                 ends_at=h.clock() + 90)
    assert [s.id for s in h.engine.silences()] == [later.id]
    h.source.set(0.5)
    assert len(h.engine.evaluate()) == 1  # not active yet
    h.engine.expire_silence(later.id)
    with pytest.raises(NotFound):
        h.engine.expire_silence(later.id)


def test_bad_silences_are_refused() -> None:
    h = Harness()
    with pytest.raises(InvalidInput, match="at least one"):
        h.engine.add_silence({}, ends_at=h.clock() + 10)
    with pytest.raises(InvalidInput, match="bad regex"):
        h.engine.add_silence({"model": "=~(("}, ends_at=h.clock() + 10)
    with pytest.raises(InvalidInput, match="ends_at"):
        h.engine.add_silence({"model": "fraud"}, ends_at=h.clock() - 1)


def test_action_starts_once_per_firing() -> None:
    h = Harness(make_rule(**{"for": 0, "action": "retrain"}), repeat=30)
    h.source.set(0.5)
    h.engine.evaluate()
    h.step(30)
    h.step(30)
    assert h.actions == [("retrain", "DriftHigh")]
    assert len(h.sent) == 3  # repeats notify, the action is not restarted
    h.source.set(0.1)
    h.step()
    h.source.set(0.5)
    h.step()
    assert h.actions == [("retrain", "DriftHigh")] * 2


def test_action_waits_for_a_silence_to_end() -> None:
    h = Harness(make_rule(**{"for": 0, "action": "retrain"}))
    h.engine.add_silence({"model": "fraud"}, ends_at=h.clock() + 20)
    h.source.set(0.5)
    h.engine.evaluate()
    assert h.actions == []
    h.step(30)
    assert h.actions == [("retrain", "DriftHigh")]


def test_failing_hooks_and_source_never_raise() -> None:
    clock = Clock()
    source = Source(clock)

    def broken(_: Any, *__: Any) -> None:
        raise RuntimeError("boom")

    engine = AlertEngine([make_rule(**{"for": 0, "action": "retrain"})], source, notify=broken,
                         on_action=broken, clock=clock)
    source.set(0.5)
    assert len(engine.evaluate()) == 1
    source.fail = True
    clock.tick(15)
    assert engine.evaluate() == []  # skipped: the alert keeps firing, nothing resolves
    assert engine.source_errors == 1
    assert [a.state for a in engine.alerts()] == [AlertState.FIRING]


def test_restart_from_state_does_not_renotify() -> None:
    h = Harness(make_rule(), make_rule(name="P99", metric="mlray_request_latency_quantile_seconds",
                                       threshold=0.2, **{"for": 0}), repeat=600)
    h.source.set(0.5)
    h.source.set(0.25, {**V1, "quantile": "0.99"}, "mlray_request_latency_quantile_seconds")
    h.engine.evaluate()
    h.step(60)
    assert sorted(n.alertname for n in h.sent) == ["DriftHigh", "P99"]
    h.engine.add_silence({"version": "2"}, ends_at=h.clock() + 1000)
    state = json.loads(json.dumps(h.engine.to_dict()))

    restarted = Harness(*h.engine.rules, repeat=600, state=state)
    restarted.clock.now, restarted.source.values = h.clock.now, h.source.values
    assert restarted.step(15) == []
    assert {a.alertname for a in restarted.engine.alerts()} == {"DriftHigh", "P99"}
    assert len(restarted.engine.silences()) == 1
    out = restarted.step(600)
    assert sorted(n.alertname for n in out) == ["DriftHigh", "P99"]  # repeat interval kept


def test_restart_keeps_pending_progress_and_drops_removed_rules() -> None:
    h = Harness(make_rule(), make_rule(name="Gone", **{"for": 0}))
    h.source.set(0.5)
    h.engine.evaluate()
    h.step(45)
    state = h.engine.to_dict()
    restarted = Harness(make_rule(), state=state)
    restarted.clock.now, restarted.source.values = h.clock.now, h.source.values
    assert [a.alertname for a in restarted.engine.alerts()] == ["DriftHigh"]
    assert [n.alertname for n in restarted.step(15)] == ["DriftHigh"]  # 60 s since active
    with pytest.raises(InvalidInput):
        restarted.engine.restore({"version": 99})


def test_set_rules_drops_alerts_of_removed_rules() -> None:
    h = Harness(make_rule(**{"for": 0}))
    h.source.set(0.5)
    h.engine.evaluate()
    h.engine.set_rules([make_rule(name="Other", **{"for": 0})])
    assert h.engine.alerts() == []
    with pytest.raises(InvalidInput):
        h.engine.set_rules([make_rule(), make_rule()])


def test_windowed_average_and_rate() -> None:
    avg = make_rule(name="P99", metric="mlray_request_latency_quantile_seconds", threshold=0.25,
                    aggregate="avg", window="1m", **{"for": 0})
    rate = make_rule(name="ErrorsPerSecond", metric="mlray_request_errors_total", threshold=1,
                     aggregate="rate", window="1m", **{"for": 0})
    h = Harness(avg, rate)
    p99 = {**V1, "quantile": "0.99"}
    for value in (0.1, 0.1, 0.5):  # one slow sample does not lift the 1-minute mean
        h.source.set(value, p99, "mlray_request_latency_quantile_seconds")
        assert h.step(20) == []
    h.source.set(0.5, p99, "mlray_request_latency_quantile_seconds")
    out = h.step(20)
    assert [n.alertname for n in out] == ["P99"]
    assert out[0].value == pytest.approx(0.3)  # mean of 0.1, 0.1, 0.5, 0.5
    errors = {**V1, "code": "timeout"}
    for total in (100, 110, 5):  # a counter reset counts as an increase of 5
        h.source.set(total, errors, "mlray_request_errors_total")
        assert "ErrorsPerSecond" not in {n.alertname for n in h.step(20)}
    h.source.set(100, errors, "mlray_request_errors_total")
    out = [n for n in h.step(20) if n.alertname == "ErrorsPerSecond"]
    assert len(out) == 1 and out[0].value == pytest.approx((10 + 5 + 95) / 60)


def test_notification_serialises() -> None:
    h = Harness(make_rule(**{"for": 0, "action": "retrain", "severity": "critical"}))
    h.source.set(0.5)
    n = h.engine.evaluate()[0]
    data = json.loads(n.model_dump_json())
    assert data["state"] == "firing" and data["action"] == "retrain"
    assert Notification.model_validate(data) == n
