"""Alerts: rules over monitored metrics, Prometheus-style evaluation, and channels.

Plain classes, no Ray: the ``alerts`` actor loads :class:`AlertsConfig` with
:func:`load_rules`, runs an :class:`AlertEngine` on an interval and hands its
notifications to a :class:`Dispatcher`.
"""

from mlray.alerts.catalogue import METRIC_NAMES, METRICS, MetricInfo
from mlray.alerts.channels import (
                                   Dispatcher,
                                   LogChannel,
                                   RedisChannel,
                                   WebhookChannel,
                                   build_channel,
                                   build_dispatcher,
)
from mlray.alerts.engine import AlertEngine, Sample, SampleSource
from mlray.alerts.rules import AlertRule, AlertsConfig, load_rules, parse_rules
from mlray.alerts.types import AlertState, AlertStatus, Notification, Silence

__all__ = [
    "METRICS",
    "METRIC_NAMES",
    "AlertEngine",
    "AlertRule",
    "AlertState",
    "AlertStatus",
    "AlertsConfig",
    "Dispatcher",
    "LogChannel",
    "MetricInfo",
    "Notification",
    "RedisChannel",
    "Sample",
    "SampleSource",
    "Silence",
    "WebhookChannel",
    "build_channel",
    "build_dispatcher",
    "load_rules",
    "parse_rules",
]
