"""Alert evaluation with Prometheus semantics: a plain state machine over a sample source.

Per rule and label set (one *alert*, identified by the fingerprint of its labels)::

    inactive --(condition true)--> PENDING --(true for `for`)--> FIRING
    PENDING  --(condition false)--> dropped, nothing notified
    FIRING   --(false for keep_firing_for)--> RESOLVED: notified, then dropped

A firing alert is notified when it starts firing and again every ``repeat_interval``
while it fires (deduplication: one notification per alert per interval, however many
evaluations and replicas report it). Silences mute notifications and actions of the
alerts they match; the alerts still change state, and one that is still firing when
its silence ends is notified then. A rule's ``action`` is started once per firing.

The ``alerts`` actor calls :meth:`AlertEngine.evaluate` on an interval and persists
:meth:`AlertEngine.to_dict` (a restart restores when each alert was last notified, so
nothing already notified is sent again). Windows of recent samples are not persisted:
after a restart, windowed rules see only samples taken since.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mlray.alerts.rules import AlertRule, Matcher, compare
from mlray.alerts.types import AlertState, AlertStatus, Notification, Silence, fingerprint
from mlray.errors import InvalidInput, NotFound

__all__ = ["ActionHook", "AlertEngine", "Sample", "SampleSource"]

logger = logging.getLogger("mlray.alerts")

#: One current value: (metric, labels, value, timestamp in epoch seconds).
Sample = tuple[str, Mapping[str, str], float, float]
#: Returns the current series; called once per evaluation.
SampleSource = Callable[[], Iterable[Sample]]
#: Starts the named action for a firing alert; must return quickly (e.g. submit a task).
ActionHook = Callable[[str, Notification], None]

_STATE_VERSION = 1
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class _Alert:
    rule: str
    labels: dict[str, str]
    state: AlertState
    active_at: float
    value: float | None
    fired_at: float | None = None
    keep_firing_since: float | None = None
    notified_at: float | None = None
    action_started: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Alert:
        return cls(**{**data, "state": AlertState(data["state"])})


def _key(metric: str, labels: Mapping[str, str]) -> SeriesKey:
    return metric, tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def _increase(points: Sequence[tuple[float, float]]) -> float:
    """Counter increase over ``points``, treating a drop as a reset (as Prometheus does)."""
    total = 0.0
    for (_, prev), (_, cur) in itertools.pairwise(points):
        total += cur - prev if cur >= prev else cur
    return total


class AlertEngine:
    """Evaluates rules over ``source``; notifications go to ``notify`` (which must not block).

    Args:
        rules: the rules to evaluate (see :func:`mlray.alerts.rules.load_rules`).
        source: returns the current samples; an error skips the evaluation (alerts keep
            their state: missing data does not resolve anything).
        notify: receives each notification, e.g. a
            :class:`mlray.alerts.channels.Dispatcher`; its errors are logged, never raised.
        repeat_interval: seconds between notifications of a still-firing alert.
        on_action: starts a rule's named action; its errors are logged.
        clock: epoch seconds (injected in tests).
        state: what :meth:`to_dict` returned before a restart.
    """

    def __init__(self, rules: Sequence[AlertRule], source: SampleSource, *,
                 notify: Callable[[Notification], None] | None = None,
                 repeat_interval: float = 4 * 3600.0,
                 on_action: ActionHook | None = None,
                 clock: Callable[[], float] = time.time,
                 state: Mapping[str, Any] | None = None) -> None:
        if repeat_interval <= 0:
            raise InvalidInput("repeat_interval must be > 0", field="repeat_interval")
        self._source, self._notify, self._on_action = source, notify, on_action
        self.repeat_interval = repeat_interval
        self._clock = clock
        self._lock = threading.RLock()
        self._rules: dict[str, AlertRule] = {}
        self._alerts: dict[str, _Alert] = {}
        self._silences: dict[str, Silence] = {}
        self._history: dict[SeriesKey, deque[tuple[float, float]]] = {}
        self._windows: dict[str, float] = {}
        self.evaluations = 0
        self.source_errors = 0
        self.set_rules(rules)
        if state:
            self.restore(state)

    # Rules.

    @property
    def rules(self) -> list[AlertRule]:
        """The rules being evaluated."""
        return list(self._rules.values())

    def set_rules(self, rules: Sequence[AlertRule]) -> None:
        """Replace the rules; alerts of rules that are gone are dropped without notice."""
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise InvalidInput("rule names must be unique", field="rules")
        with self._lock:
            self._rules = {r.name: r for r in rules}
            self._alerts = {fp: a for fp, a in self._alerts.items() if a.rule in self._rules}
            self._windows = {}
            for r in rules:
                if r.window > 0:
                    self._windows[r.metric] = max(self._windows.get(r.metric, 0.0), r.window)

    # Silences.

    def add_silence(self, matchers: Mapping[str, str], ends_at: float, *,
                    starts_at: float | None = None, created_by: str = "unknown",
                    comment: str = "") -> Silence:
        """Mute alerts whose labels match ``matchers`` until ``ends_at`` (epoch seconds).

        Raises:
            InvalidInput: no matchers, a bad matcher, or an end not after the start.
        """
        if not matchers:
            raise InvalidInput("a silence needs at least one label matcher", field="matchers")
        try:
            for raw in matchers.values():
                Matcher(raw)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="matchers") from None
        now = self._clock()
        start = now if starts_at is None else starts_at
        if ends_at <= max(now, start):
            raise InvalidInput(f"ends_at ({ends_at}) must be after now and the start",
                               field="ends_at")
        silence = Silence(id=uuid.uuid4().hex[:12], matchers=dict(matchers), starts_at=start,
                          ends_at=ends_at, created_by=created_by, comment=comment)
        with self._lock:
            self._silences[silence.id] = silence
        return silence

    def expire_silence(self, silence_id: str) -> None:
        """End a silence now.

        Raises:
            NotFound: no such silence (or it already ended).
        """
        with self._lock:
            if self._silences.pop(silence_id, None) is None:
                raise NotFound(f"no silence {silence_id!r}", field="silence_id")

    def silences(self) -> list[Silence]:
        """Silences not yet ended (including ones that start later)."""
        now = self._clock()
        with self._lock:
            return [s for s in self._silences.values() if s.ends_at > now]

    def _silenced_by(self, labels: Mapping[str, str], now: float) -> list[str]:
        return [s.id for s in self._silences.values()
                if s.active(now) and Matcher.match_all(s.matchers, labels)]

    # Evaluation.

    def alerts(self) -> list[AlertStatus]:
        """Pending and firing alerts, oldest first."""
        now = self._clock()
        with self._lock:
            out = []
            for a in sorted(self._alerts.values(), key=lambda a: a.active_at):
                rule = self._rules[a.rule]
                out.append(AlertStatus(
                    alertname=a.rule, state=a.state, labels=a.labels,
                    annotations=rule.render_annotations(a.labels, a.value or 0.0),
                    value=a.value, active_at=a.active_at, fired_at=a.fired_at,
                    silenced_by=self._silenced_by(a.labels, now)))
            return out

    def evaluate(self) -> list[Notification]:
        """One evaluation of every rule; returns the notifications it handed to ``notify``."""
        now = self._clock()
        try:
            samples = list(self._source())
        except Exception:
            self.source_errors += 1
            logger.warning("alerts: the sample source failed; evaluation skipped",
                           exc_info=True)
            return []
        with self._lock:
            self.evaluations += 1
            current = self._ingest(samples, now)
            self._silences = {k: s for k, s in self._silences.items() if s.ends_at > now}
            out: list[Notification] = []
            for rule in self._rules.values():
                out.extend(self._evaluate_rule(rule, current, now))
        for n in out:
            self._send(n)
        return out

    def _ingest(self, samples: Iterable[Sample],
                now: float) -> dict[SeriesKey, tuple[float, float]]:
        """The newest sample per series (duplicates collapse); windows get the samples."""
        current: dict[SeriesKey, tuple[float, float]] = {}
        for metric, labels, value, ts in samples:
            key = _key(metric, labels)
            if key not in current or current[key][1] <= ts:
                current[key] = (float(value), float(ts))
        for key, (value, ts) in current.items():
            if key[0] in self._windows:
                points = self._history.setdefault(key, deque())
                if not points or points[-1][0] < ts:
                    points.append((ts, value))
        for key in list(self._history):
            points = self._history[key]
            horizon = now - self._windows.get(key[0], 0.0)
            while points and points[0][0] < horizon:
                points.popleft()
            if not points:
                del self._history[key]
        return current

    def _values(self, rule: AlertRule, current: Mapping[SeriesKey, tuple[float, float]],
                now: float) -> dict[SeriesKey, float]:
        """The rule's value per matching series."""
        out: dict[SeriesKey, float] = {}
        if rule.window <= 0:
            for key, (value, _) in current.items():
                if key[0] == rule.metric and Matcher.match_all(rule.labels, dict(key[1])):
                    out[key] = value
            return out
        horizon = now - rule.window
        for key, points in self._history.items():
            if key[0] != rule.metric or not Matcher.match_all(rule.labels, dict(key[1])):
                continue
            inside = [p for p in points if p[0] >= horizon]
            if not inside:
                continue
            values = [v for _, v in inside]
            if rule.aggregate == "last":
                out[key] = values[-1]
            elif rule.aggregate == "avg":
                out[key] = sum(values) / len(values)
            elif rule.aggregate == "min":
                out[key] = min(values)
            elif rule.aggregate == "max":
                out[key] = max(values)
            elif len(inside) >= 2:
                increase = _increase(inside)
                span = inside[-1][0] - inside[0][0]
                if rule.aggregate == "increase":
                    out[key] = increase
                elif span > 0:
                    out[key] = increase / span
        return out

    def _evaluate_rule(self, rule: AlertRule,
                       current: Mapping[SeriesKey, tuple[float, float]],
                       now: float) -> list[Notification]:
        true_now: set[str] = set()
        for key, value in self._values(rule, current, now).items():
            if not compare(value, rule.operator, rule.threshold):
                continue
            labels = {**dict(key[1]), "alertname": rule.name, "severity": rule.severity}
            fp = fingerprint(labels)
            true_now.add(fp)
            alert = self._alerts.get(fp)
            if alert is None:
                alert = self._alerts[fp] = _Alert(rule=rule.name, labels=labels,
                                                  state=AlertState.PENDING, active_at=now,
                                                  value=value)
            alert.value, alert.keep_firing_since = value, None
            if alert.state is AlertState.PENDING and now - alert.active_at >= rule.for_:
                alert.state, alert.fired_at = AlertState.FIRING, now
        out: list[Notification] = []
        for fp, alert in list(self._alerts.items()):
            if alert.rule != rule.name or fp in true_now:
                continue
            if alert.state is AlertState.PENDING:
                del self._alerts[fp]  # a pending alert that clears is dropped silently
                continue
            if alert.keep_firing_since is None:
                alert.keep_firing_since = now
            if now - alert.keep_firing_since >= rule.keep_firing_for:
                del self._alerts[fp]
                if alert.notified_at is not None and not self._silenced_by(alert.labels, now):
                    out.append(self._notification(rule, alert, AlertState.RESOLVED, now))
        for alert in self._alerts.values():
            if alert.rule != rule.name or alert.state is not AlertState.FIRING:
                continue
            if self._silenced_by(alert.labels, now):
                continue
            if not alert.action_started and rule.action:
                alert.action_started = True
                self._start_action(rule.action, self._notification(
                    rule, alert, AlertState.FIRING, now))
            if alert.notified_at is None or now - alert.notified_at >= self.repeat_interval:
                alert.notified_at = now
                out.append(self._notification(rule, alert, AlertState.FIRING, now))
        return out

    def _notification(self, rule: AlertRule, alert: _Alert, state: AlertState,
                      now: float) -> Notification:
        return Notification(
            alertname=rule.name, state=state, severity=rule.severity, labels=alert.labels,
            annotations=rule.render_annotations(alert.labels, alert.value or 0.0),
            value=alert.value, threshold=rule.threshold,
            starts_at=alert.fired_at if alert.fired_at is not None else alert.active_at,
            ends_at=now if state is AlertState.RESOLVED else None,
            fingerprint=fingerprint(alert.labels), channels=list(rule.channels),
            action=rule.action)

    def _send(self, notification: Notification) -> None:
        if self._notify is None:
            return
        try:
            self._notify(notification)
        except Exception:
            logger.exception("alerts: handing %s (%s) to the channels failed",
                             notification.alertname, notification.state)

    def _start_action(self, name: str, notification: Notification) -> None:
        if self._on_action is None:
            logger.warning("alerts: %s wants action %r but no action hook is set",
                           notification.alertname, name)
            return
        try:
            self._on_action(name, notification)
        except Exception:
            logger.exception("alerts: action %r for %s failed to start", name,
                             notification.alertname)

    # Persistence.

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (alerts and silences) for the actor to persist."""
        with self._lock:
            return {
                "version": _STATE_VERSION,
                "alerts": [a.to_dict() for a in self._alerts.values()],
                "silences": [s.model_dump(mode="json") for s in self._silences.values()],
            }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Adopt persisted state; alerts of rules that no longer exist are dropped.

        Raises:
            InvalidInput: ``state`` is not what :meth:`to_dict` writes.
        """
        if state.get("version") != _STATE_VERSION:
            raise InvalidInput(f"unknown alert state version {state.get('version')!r}",
                               field="state")
        try:
            alerts = [_Alert.from_dict(a) for a in state.get("alerts", [])]
            silences = [Silence.model_validate(s) for s in state.get("silences", [])]
        except (TypeError, ValueError, KeyError) as exc:
            raise InvalidInput(f"bad alert state: {exc}", field="state") from None
        with self._lock:
            self._alerts = {fingerprint(a.labels): a for a in alerts if a.rule in self._rules}
            self._silences = {s.id: s for s in silences}
