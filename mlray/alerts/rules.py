"""Alert rules and channel settings, as read from ``configs/alerts.yaml``.

A rule compares one monitored metric against a threshold, per label set (Prometheus
style)::

    - name: FraudDriftHigh
      metric: mlray_drift_share
      labels: {model: fraud}          # matchers: "x" equal, "!=x", "=~re", "!~re"
      operator: ">"
      threshold: 0.3
      window: 5m                      # optional; with aggregate avg|min|max|rate|increase
      for: 1m
      keep_firing_for: 2m
      severity: warning
      annotations: {summary: "drift share {{ $value }} on {{ $labels.model }}"}
      channels: [log, oncall]
      action: retrain                 # optional, started once per firing

Durations are seconds (a number) or Prometheus strings (``250ms``, ``30s``, ``1m``,
``1h30m``, ``1d``). :func:`load_rules` refuses unknown metrics, unknown channels,
duplicate rule names and templates other than ``{{ $value }}``, ``{{ $threshold }}``
and ``{{ $labels.NAME }}``; errors name the file and the key.
"""

from __future__ import annotations

import functools
import math
import operator as op
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from mlray._private.redact import MASK, redact, url_origin
from mlray._private.validation import check_name
from mlray.alerts.catalogue import METRIC_NAMES
from mlray.config.files import read_yaml
from mlray.errors import ConfigError

__all__ = [
    "AlertRule",
    "AlertsConfig",
    "ChannelConfig",
    "Duration",
    "LogChannelConfig",
    "Matcher",
    "RedisChannelConfig",
    "WebhookChannelConfig",
    "compare",
    "load_rules",
    "parse_duration",
    "parse_rules",
    "render",
]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_TEMPLATE_VAR = re.compile(r"^\s*\$(value|threshold|labels\.([A-Za-z_][A-Za-z0-9_]*))\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Prometheus duration string (``1m30s``); never negative.

    Raises:
        ValueError: not a duration, negative, or not finite.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"duration must not be negative (got {value!r})")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"not a duration: {value!r} (use seconds or e.g. 30s, 5m, 1h30m)"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"not a duration: {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"duration must be finite (got {value!r})")
    if seconds < 0:
        raise ValueError(f"duration must not be negative (got {value!r})")
    return seconds


#: Seconds, parsed from a number or a duration string; serialised as a number.
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(float)]

Operator = Literal[">", ">=", "<", "<=", "==", "!="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": op.gt, ">=": op.ge, "<": op.lt, "<=": op.le, "==": op.eq, "!=": op.ne,
}


def compare(value: float, operator: str, threshold: float) -> bool:
    """``value OPERATOR threshold``; NaN never satisfies a rule."""
    return not math.isnan(value) and _OPS[operator](value, threshold)


class Matcher:
    """One label matcher in the compact form: ``x`` equal, ``!=x``, ``=~regex``, ``!~regex``.

    Regexes are anchored, as in Prometheus. A missing label reads as the empty string.
    """

    __slots__ = ("kind", "raw", "regex", "value")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.kind, self.value = "=", raw
        for prefix in ("=~", "!~", "!="):
            if raw.startswith(prefix):
                self.kind, self.value = prefix, raw[len(prefix):]
                break
        self.regex: re.Pattern[str] | None = None
        if self.kind in ("=~", "!~"):
            try:
                self.regex = re.compile(f"(?:{self.value})")
            except re.error as exc:
                raise ValueError(f"bad regex in matcher {raw!r}: {exc}") from None

    def matches(self, actual: str | None) -> bool:
        """Whether a label value (None when the label is absent) satisfies the matcher."""
        text = actual or ""
        if self.kind == "=":
            return text == self.value
        if self.kind == "!=":
            return text != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(text) is not None
        return hit if self.kind == "=~" else not hit

    @staticmethod
    def match_all(matchers: Mapping[str, str], labels: Mapping[str, str]) -> bool:
        """Whether every matcher (label -> compact form) accepts ``labels``."""
        return all(_matcher(raw).matches(labels.get(name)) for name, raw in matchers.items())


_matcher = functools.lru_cache(maxsize=4096)(Matcher)


def _check_matchers(value: dict[str, str]) -> dict[str, str]:
    for name, raw in value.items():
        if not _LABEL.match(name):
            raise ValueError(f"invalid label name {name!r}")
        Matcher(raw)
    return value


def render(template: str, labels: Mapping[str, str], value: float, threshold: float) -> str:
    """Fill ``{{ $value }}``, ``{{ $threshold }}`` and ``{{ $labels.NAME }}`` in ``template``."""

    def fill(m: re.Match[str]) -> str:
        var = _TEMPLATE_VAR.match(m.group(1))
        if var is None:
            return m.group(0)
        if var.group(1) == "value":
            return f"{value:.6g}"
        if var.group(1) == "threshold":
            return f"{threshold:.6g}"
        return labels.get(var.group(2), "")

    return _TEMPLATE.sub(fill, template)


class AlertRule(BaseModel):
    """One alert rule: ``aggregate(metric{labels}[window]) OPERATOR threshold`` for ``for``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(description="Alert name (the alertname label of its alerts).")
    metric: str = Field(description="An exported metric name (see mlray.alerts.catalogue).")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Label matchers: 'x' equal, '!=x', '=~regex', '!~regex'.")
    operator: Operator = Field(description="How the value is compared with the threshold.")
    threshold: float = Field(description="The bound the value is compared with.")
    aggregate: Literal["last", "avg", "min", "max", "rate", "increase"] = Field(
        "last", description="How samples within `window` become one value "
                            "(last: the newest sample; rate/increase: for counters).")
    window: Duration = Field(0.0, description="How far back samples count (0: newest only).")
    for_: Duration = Field(0.0, alias="for",
                           description="How long the condition holds before firing.")
    keep_firing_for: Duration = Field(
        0.0, description="How long a firing alert stays firing after the condition clears.")
    severity: Literal["info", "warning", "critical"] = "warning"
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Text such as summary/description; may use {{ $value }}, "
                    "{{ $threshold }} and {{ $labels.NAME }}.")
    channels: list[str] = Field(default_factory=lambda: ["log"], min_length=1,
                                description="Names of channels (see AlertsConfig.channels).")
    action: str | None = Field(None, description="Named action started once per firing.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "rule name")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_matchers(value)

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: float) -> float:
        if math.isnan(value):
            raise ValueError("threshold must be a number, not NaN")
        return value

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            for m in _TEMPLATE.finditer(text):
                if not _TEMPLATE_VAR.match(m.group(1)):
                    raise ValueError(
                        f"annotation {key!r}: unsupported template {m.group(0)!r} (use "
                        "{{ $value }}, {{ $threshold }} or {{ $labels.NAME }})")
        return value

    @model_validator(mode="after")
    def _window(self) -> AlertRule:
        if self.aggregate != "last" and self.window <= 0:
            raise ValueError(f"aggregate {self.aggregate!r} needs a window > 0")
        return self

    def render_annotations(self, labels: Mapping[str, str], value: float) -> dict[str, str]:
        """The annotations with templates filled for one alert."""
        return {k: render(v, labels, value, self.threshold) for k, v in self.annotations.items()}


class LogChannelConfig(BaseModel):
    """Notifications go to Python logging (logger ``mlray.alerts``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["log"] = "log"
    logger: str = "mlray.alerts"


class WebhookChannelConfig(BaseModel):
    """Notifications are POSTed as JSON to ``url``, retried with exponential backoff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", description="http(s) URL receiving the POST.")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(5.0, gt=0, description="Per-attempt timeout.")
    max_retries: int = Field(3, ge=0, description="Retries after the first attempt.")
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry.")
    max_backoff_s: float = Field(30.0, ge=0, description="Cap on one retry delay.")
    queue_size: int = Field(1000, ge=1, description="Pending notifications kept; oldest "
                                                    "dropped beyond.")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """As ``repr`` shows it: the URL cut to its origin (a webhook's path or query is its
        token) and header values masked (they carry credentials)."""
        for name, value in super().__repr_args__():
            if name == "url":
                value = url_origin(value)
            elif name == "headers":
                value = dict.fromkeys(value, MASK)
            yield name, value


class RedisChannelConfig(BaseModel):
    """Notifications are PUBLISHed as JSON on a Redis pub/sub channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["redis"]
    url: str | None = Field(None, pattern=r"^rediss?://",
                            description="Redis URL; None: the platform's Redis.")
    channel: str = Field("mlray:alerts", min_length=1)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """As ``repr`` shows it: the URL's password masked."""
        for name, value in super().__repr_args__():
            yield name, redact(value) if isinstance(value, str) else value


ChannelConfig = Annotated[LogChannelConfig | WebhookChannelConfig | RedisChannelConfig,
                          Field(discriminator="type")]


class AlertsConfig(BaseModel):
    """The whole ``alerts.yaml``: evaluation settings, channels and rules (changeable live)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluation_interval: Duration = Field(15.0, gt=0, description="Seconds between "
                                                                   "evaluations.")
    repeat_interval: Duration = Field(
        14400.0, gt=0, description="How often a still-firing alert is notified again.")
    channels: dict[str, ChannelConfig] = Field(
        default_factory=lambda: {"log": LogChannelConfig()})
    rules: list[AlertRule] = Field(default_factory=list)


def _error(source: str, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return ConfigError(f"{source}: {key}: {msg}", field=key)


def parse_rules(data: Mapping[str, Any], known_metrics: Iterable[str] = METRIC_NAMES,
                source: str = "alerts config") -> AlertsConfig:
    """Validate an alerts mapping; ``source`` names it in errors.

    Raises:
        ConfigError: a bad value, an unknown metric or channel, or a duplicate rule name;
            the message names ``source`` and the key (``rules.2.metric``).
    """
    try:
        config = AlertsConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise _error(source, exc) from None
    known = frozenset(known_metrics)
    seen: set[str] = set()
    for i, rule in enumerate(config.rules):
        if rule.metric not in known:
            raise ConfigError(
                f"{source}: rules.{i}.metric: unknown metric {rule.metric!r} in rule "
                f"{rule.name!r} (mlray exports: {', '.join(sorted(known))})",
                field=f"rules.{i}.metric")
        if rule.name in seen:
            raise ConfigError(f"{source}: rules.{i}.name: duplicate rule name {rule.name!r}",
                              field=f"rules.{i}.name")
        seen.add(rule.name)
        for j, channel in enumerate(rule.channels):
            if channel not in config.channels:
                raise ConfigError(
                    f"{source}: rules.{i}.channels.{j}: unknown channel {channel!r} in rule "
                    f"{rule.name!r} (defined: {', '.join(sorted(config.channels))})",
                    field=f"rules.{i}.channels.{j}")
    return config


def load_rules(path: str | Path, known_metrics: Iterable[str] = METRIC_NAMES) -> AlertsConfig:
    """Read and validate an alerts YAML file (see :func:`parse_rules`).

    Raises:
        ConfigError: the file is missing or invalid; the message names the file and key.
    """
    return parse_rules(read_yaml(path), known_metrics, source=str(path))
