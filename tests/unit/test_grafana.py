"""The committed Grafana dashboard is what the generator writes, over exported metrics only."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mlray.alerts.catalogue import METRICS
from mlray.monitoring import grafana

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "configs" / "grafana" / "mlray-overview.json"

# PromQL words that are not metric names.
_PROMQL = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "rate", "irate", "increase", "delta", "idelta", "histogram_quantile", "label_values",
    "avg_over_time", "max_over_time", "min_over_time", "clamp_min", "clamp_max", "abs",
    "offset", "bool", "vector", "scalar", "time",
}
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (or a label_values() variable query).

    Strings, label matchers ``{...}``, ranges ``[...]``, ``by (...)`` groupings and the
    label argument of label_values() are removed first; what is left that is neither a
    PromQL keyword nor a number is a metric name.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r",\s*[A-Za-z_][A-Za-z0-9_]*\s*\)", ")", text)  # label_values(m, label)
    return {t for t in _IDENT.findall(text) if t not in _PROMQL}


def exported(prefix: str) -> set[str]:
    """Every Prometheus series name mlray exports, with ``prefix``."""
    names = set()
    for m in METRICS:
        suffixes = ("_bucket", "_sum", "_count") if m.kind == "histogram" else ("",)
        names |= {f"{prefix}{m.name}{s}" for s in suffixes}
    return names


def queries(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"]]
    return exprs


def test_committed_dashboard_is_generated() -> None:
    assert COMMITTED.read_text() == grafana.render(), (
        "configs/grafana/mlray-overview.json is stale: run "
        "`python -m mlray.monitoring.grafana configs/grafana/mlray-overview.json`")


@pytest.mark.parametrize("prefix", ["ray_", ""])
def test_every_query_names_exported_metrics_only(prefix: str) -> None:
    board = grafana.dashboard(prefix)
    allowed = exported(prefix)
    exprs = queries(board)
    assert len(exprs) >= 10
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        assert names <= allowed, f"{expr!r} names unknown metrics {names - allowed}"
        used |= names
    for needed in ("requests_total", "request_errors_total", "request_latency_seconds_bucket",
                   "drift_psi", "model_accuracy", "model_f1", "model_roc_auc",
                   "breaker_state"):
        assert f"{prefix}mlray_{needed}" in used


def test_the_parser_catches_unknown_and_unprefixed_names() -> None:
    assert metric_names('rate(ray_mlray_requests_total{model=~"a|b"}[5m])') == {
        "ray_mlray_requests_total"}
    assert metric_names("sum by (le) (rate(foo_bucket[1m])) / bar") == {"foo_bucket", "bar"}
    assert metric_names('label_values(ray_mlray_requests_total{model=~"$model"}, version)') \
        == {"ray_mlray_requests_total"}
    assert "mlray_requests_total" not in exported("ray_")


def test_dashboard_is_importable_json() -> None:
    board = json.loads(COMMITTED.read_text())
    assert board["uid"] == "mlray-overview"
    assert board["__inputs"][0]["name"] == "DS_PROMETHEUS"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
    titles = {p["title"] for p in board["panels"]}
    assert {"Requests/s per model version", "Error rate", "Latency percentiles per version",
            "Drift heat map (PSI by feature)", "Accuracy, F1 and ROC AUC",
            "Circuit breaker state"} <= titles
    error = next(p for p in board["panels"] if p["title"] == "Error rate")
    steps = error["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == grafana.ERROR_RATE_THRESHOLD
    assert error["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"


def test_generator_refuses_a_name_mlray_does_not_export() -> None:
    with pytest.raises(KeyError):
        grafana._Builder("ray_").m("mlray_not_a_metric")


def test_main_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "board.json"
    assert grafana.main([str(out), "--prefix", ""]) == 0
    assert "rate(mlray_requests_total" in out.read_text()
