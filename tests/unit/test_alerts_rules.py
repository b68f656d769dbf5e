"""Alert rules: YAML loading, clear errors, matchers and templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlray.alerts.catalogue import METRIC_NAMES, METRICS, metric_info
from mlray.alerts.rules import (
    AlertsConfig,
    Matcher,
    RedisChannelConfig,
    WebhookChannelConfig,
    compare,
    load_rules,
    parse_duration,
    parse_rules,
    render,
)
from mlray.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def rule(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "DriftHigh", "metric": "mlray_drift_share",
                            "labels": {"model": "fraud"}, "operator": ">", "threshold": 0.3}
    return {**base, **fields}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_file_loads() -> None:
    config = load_rules(ROOT / "configs" / "alerts.yaml")
    names = {r.name for r in config.rules}
    assert {"FraudDriftShareHigh", "FraudErrorRateHigh", "FraudLatencyP99High"} <= names
    drift = next(r for r in config.rules if r.name == "FraudDriftShareHigh")
    assert (drift.operator, drift.threshold, drift.for_, drift.severity) == (">", 0.3, 60.0,
                                                                            "warning")
    assert drift.action == "retrain"
    errors = next(r for r in config.rules if r.name == "FraudErrorRateHigh")
    assert (errors.threshold, errors.for_, errors.severity) == (0.05, 30.0, "critical")
    assert isinstance(config.channels["events"], RedisChannelConfig)
    assert config.evaluation_interval == 15.0 and config.repeat_interval == 4 * 3600.0


def test_a_rule_round_trips_with_for_alias(tmp_path: Path) -> None:
    path = write(tmp_path, {"rules": [rule(**{"for": "1m30s", "keep_firing_for": 10})]})
    config = load_rules(path)
    r = config.rules[0]
    assert (r.for_, r.keep_firing_for, r.window, r.channels) == (90.0, 10.0, 0.0, ["log"])
    dumped = config.model_dump(by_alias=True)
    assert AlertsConfig.model_validate(dumped) == config


def test_unknown_metric_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, {"rules": [rule(), rule(name="Other", metric="mlray_made_up")]})
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    message = str(info.value)
    assert str(path) in message and "rules.1.metric" in message and "mlray_made_up" in message
    assert info.value.field == "rules.1.metric"


def test_known_metrics_is_a_parameter() -> None:
    data = {"rules": [rule(metric="custom_metric")]}
    assert parse_rules(data, known_metrics={"custom_metric"}).rules[0].metric == "custom_metric"
    with pytest.raises(ConfigError, match="unknown metric 'mlray_drift_share'"):
        parse_rules({"rules": [rule()]}, known_metrics={"custom_metric"})


@pytest.mark.parametrize(("fields", "key", "text"), [
    ({"operator": "=>"}, "rules.0.operator", "'>'"),
    ({"for": "-1m"}, "rules.0.for", "negative"),
    ({"keep_firing_for": -5}, "rules.0.keep_firing_for", "negative"),
    ({"window": "5 minutes"}, "rules.0.window", "not a duration"),
    ({"severity": "page"}, "rules.0.severity", "critical"),
    ({"labels": {"model": "=~(("}}, "rules.0.labels", "bad regex"),
    ({"labels": {"bad-name": "x"}}, "rules.0.labels", "invalid label name"),
    ({"annotations": {"summary": "{{ $valeu }}"}}, "rules.0.annotations", "unsupported"),
    ({"aggregate": "rate"}, "rules.0", "needs a window"),
    ({"name": "has space"}, "rules.0.name", "invalid rule name"),
    ({"threshhold": 1}, "rules.0.threshhold", "Extra inputs"),
    ({"channels": []}, "rules.0.channels", "at least 1"),
])
def test_bad_rules_are_refused_with_the_key(tmp_path: Path, fields: dict[str, Any], key: str,
                                            text: str) -> None:
    path = write(tmp_path, {"rules": [rule(**fields)]})
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert f"{path}: {key}" in str(info.value)
    assert text in str(info.value)


def test_unknown_channel_and_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"rules\.0\.channels\.1: unknown channel 'pager'"):
        parse_rules({"rules": [rule(channels=["log", "pager"])]})
    with pytest.raises(ConfigError, match=r"rules\.1\.name: duplicate rule name"):
        parse_rules({"rules": [rule(), rule()]})


def test_channels_are_typed() -> None:
    config = parse_rules({"channels": {
        "hook": {"type": "webhook", "url": "http://127.0.0.1:1/x", "max_retries": 2},
        "bus": {"type": "redis", "channel": "c"}}, "rules": [rule(channels=["hook", "bus"])]})
    assert isinstance(config.channels["hook"], WebhookChannelConfig)
    assert config.channels["hook"].max_retries == 2
    with pytest.raises(ConfigError, match=r"channels\.x"):
        parse_rules({"channels": {"x": {"type": "pigeon"}}})
    with pytest.raises(ConfigError, match=r"channels\.x\.webhook\.url"):
        parse_rules({"channels": {"x": {"type": "webhook", "url": "ftp://nope"}}})


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_rules(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rules(bad)
    with pytest.raises(ConfigError, match="evaluation_interval"):
        parse_rules({"evaluation_interval": 0})


@pytest.mark.parametrize(("text", "seconds"), [
    (30, 30.0), (0.5, 0.5), ("45", 45.0), ("250ms", 0.25), ("30s", 30.0), ("5m", 300.0),
    ("1h30m", 5400.0), ("1d", 86400.0), ("0s", 0.0)])
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["-1", "-5m", "5 m", "m", "1x", True, None, "inf"])
def test_bad_durations(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_matchers() -> None:
    assert Matcher("fraud").matches("fraud") and not Matcher("fraud").matches("fraudx")
    assert Matcher("!=fraud").matches("other") and Matcher("!=fraud").matches(None)
    assert Matcher("=~fr.*").matches("fraud") and not Matcher("=~fr").matches("fraud")
    assert Matcher("!~a|b").matches("c") and not Matcher("!~a|b").matches("a")
    assert Matcher("").matches(None)
    assert Matcher.match_all({"model": "fraud", "version": "=~1|2"},
                             {"model": "fraud", "version": "2"})
    assert not Matcher.match_all({"model": "fraud"}, {"version": "2"})


def test_compare_and_templates() -> None:
    assert compare(0.4, ">", 0.3) and not compare(0.3, ">", 0.3) and compare(0.3, ">=", 0.3)
    assert compare(2, "==", 2) and compare(1, "!=", 2) and compare(1, "<", 2)
    assert not compare(float("nan"), "!=", 1)
    text = render("{{ $value }} on {{$labels.model}} v{{ $labels.version }} > {{ $threshold }}"
                  " {{ $labels.missing }}.", {"model": "fraud", "version": "3"}, 0.4567, 0.3)
    assert text == "0.4567 on fraud v3 > 0.3 ."


def test_metric_catalogue_is_documented() -> None:
    assert len(METRIC_NAMES) == len(METRICS)
    for m in METRICS:
        assert m.name.startswith("mlray_") and m.help
        assert (m.kind == "counter") == m.name.endswith("_total")
        assert m.help.isascii()
    assert {"mlray_requests_total", "mlray_request_latency_seconds", "mlray_drift_psi",
            "mlray_drift_share", "mlray_model_roc_auc"} <= METRIC_NAMES
    info = metric_info("mlray_request_latency_seconds")
    assert info is not None and info.kind == "histogram"
    assert metric_info("nope") is None
