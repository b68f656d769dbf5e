"""The importable Grafana dashboard over mlray's metrics, generated from code.

Regenerate the committed file after changing metric names or panels::

    python -m mlray.monitoring.grafana configs/grafana/mlray-overview.json

Every query uses names from :data:`mlray.alerts.catalogue.METRICS` (a unit test parses
them out of the PromQL), behind a prefix: metrics recorded through Ray's metrics
pipeline (``ray.util.metrics``) reach Prometheus as ``ray_<name>``, e.g.
``ray_mlray_requests_total``, so the default prefix is ``"ray_"``. Pass
``--prefix ""`` for metrics exported by prometheus-client directly.

The dashboard declares a ``DS_PROMETHEUS`` input, so Grafana asks for the Prometheus
data source on import, and has ``model`` and ``version`` variables.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlray.alerts.catalogue import METRIC_NAMES

__all__ = ["DEFAULT_PREFIX", "DRIFT_SHARE_THRESHOLD", "ERROR_RATE_THRESHOLD", "dashboard", "main",
           "render"]

#: What Ray's metrics pipeline puts in front of every metric name.
DEFAULT_PREFIX = "ray_"
#: The error-rate line drawn on the error panel (matches configs/alerts.yaml).
ERROR_RATE_THRESHOLD = 0.05
#: The drift-share line (matches configs/alerts.yaml).
DRIFT_SHARE_THRESHOLD = 0.3

_DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
_SEL = 'model=~"$model", version=~"$version"'
_RATE = "$__rate_interval"


class _Builder:
    """Lays panels out on Grafana's 24-column grid and names metrics with the prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = 0
        self._row_h = 0

    def m(self, name: str, suffix: str = "") -> str:
        """The Prometheus name of an exported metric (``suffix``: _bucket, _sum, _count)."""
        if name not in METRIC_NAMES:
            raise KeyError(f"{name} is not an exported mlray metric")
        return f"{self.prefix}{name}{suffix}"

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False,
                            "id": len(self.panels) + 1,
                            "gridPos": {"x": 0, "y": self._y, "w": 24, "h": 1}, "panels": []})
        self._y += 1

    def _newline(self) -> None:
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0

    def add(self, panel: dict[str, Any], w: int = 12, h: int = 8) -> None:
        if self._x + w > 24:
            self._newline()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self._x, "y": self._y, "w": w, "h": h}
        panel.setdefault("datasource", _DS)
        self.panels.append(panel)
        self._x += w
        self._row_h = max(self._row_h, h)


def _target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "datasource": _DS, "expr": expr, "legendFormat": legend,
            "range": True}


def _timeseries(title: str, description: str, targets: list[dict[str, Any]], *,
                unit: str = "short", thresholds: list[tuple[float, str]] | None = None,
                minimum: float | None = None, maximum: float | None = None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in thresholds or []]
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                   "showPoints": "never",
                   "thresholdsStyle": {"mode": "line" if thresholds else "off"}},
        "thresholds": {"mode": "absolute", "steps": steps},
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    return {"type": "timeseries", "title": title, "description": description,
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom",
                                   "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": _DS,
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1}


def dashboard(prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """The dashboard as a JSON-ready dict; ``prefix`` goes in front of every metric name."""
    b = _Builder(prefix)
    req, err = b.m("mlray_requests_total"), b.m("mlray_request_errors_total")

    b.row("Traffic and errors")
    b.add(_timeseries(
        "Requests/s per model version", "Prediction requests per second.",
        [_target(f"sum by (model, version) (rate({req}{{{_SEL}}}[{_RATE}]))",
                 "{{model}} v{{version}}")], unit="reqps", minimum=0))
    b.add(_timeseries(
        "Error rate", f"Errors / requests; the line is the alert threshold "
                      f"({ERROR_RATE_THRESHOLD:.0%}).",
        [_target(f"sum by (model, version) (rate({err}{{{_SEL}}}[{_RATE}])) / "
                 f"sum by (model, version) (rate({req}{{{_SEL}}}[{_RATE}]))",
                 "{{model}} v{{version}}")],
        unit="percentunit", thresholds=[(ERROR_RATE_THRESHOLD, "red")], minimum=0))
    b.add(_timeseries(
        "Errors/s by code", "Failed requests per second by error code.",
        [_target(f"sum by (model, version, code) (rate({err}{{{_SEL}}}[{_RATE}]))",
                 "{{model}} v{{version}} {{code}}")], unit="reqps", minimum=0))
    b.add(_timeseries(
        "Rate-limited requests/s", "Requests refused with 429 by the ingress.",
        [_target(f'sum by (model) (rate({b.m("mlray_rate_limited_total")}'
                 f'{{model=~"$model"}}[{_RATE}]))', "{{model}}")], unit="reqps", minimum=0))

    b.row("Latency and batching")
    bucket = b.m("mlray_request_latency_seconds", "_bucket")
    b.add(_timeseries(
        "Latency percentiles per version", "p50, p95 and p99 of end-to-end latency.",
        [_target(f"histogram_quantile({q}, sum by (le, model, version) "
                 f"(rate({bucket}{{{_SEL}}}[{_RATE}])))", f"p{p} {{{{model}}}} v{{{{version}}}}",
                 ref)
         for q, p, ref in ((0.5, "50", "A"), (0.95, "95", "B"), (0.99, "99", "C"))],
        unit="s", thresholds=[(0.2, "red")], minimum=0))
    bsum, bcount = b.m("mlray_batch_size", "_sum"), b.m("mlray_batch_size", "_count")
    b.add(_timeseries(
        "Mean batch size", "Rows per batch handed to the model.",
        [_target(f"sum by (model, version) (rate({bsum}{{{_SEL}}}[{_RATE}])) / "
                 f"sum by (model, version) (rate({bcount}{{{_SEL}}}[{_RATE}]))",
                 "{{model}} v{{version}}")], minimum=0))
    hits, misses = b.m("mlray_cache_hits_total"), b.m("mlray_cache_misses_total")
    b.add(_timeseries(
        "Cache hit ratio", "Share of lookups answered by the prediction cache.",
        [_target(f"sum by (model, version) (rate({hits}{{{_SEL}}}[{_RATE}])) / "
                 f"(sum by (model, version) (rate({hits}{{{_SEL}}}[{_RATE}])) + "
                 f"sum by (model, version) (rate({misses}{{{_SEL}}}[{_RATE}])))",
                 "{{model}} v{{version}}")], unit="percentunit", minimum=0, maximum=1))
    b.add({
        "type": "state-timeline", "title": "Circuit breaker state",
        "description": "0 closed, 1 half-open, 2 open.",
        "targets": [_target(f'max by (model, version) ({b.m("mlray_breaker_state")}'
                            f"{{{_SEL}}})", "{{model}} v{{version}}")],
        "fieldConfig": {"defaults": {
            "mappings": [{"type": "value", "options": {
                "0": {"text": "closed", "color": "green", "index": 0},
                "1": {"text": "half-open", "color": "yellow", "index": 1},
                "2": {"text": "open", "color": "red", "index": 2}}}],
            "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
        }, "overrides": []},
        "options": {"showValue": "never", "mergeValues": True},
    })

    b.row("Drift and data quality")
    b.add({
        "type": "heatmap", "title": "Drift heat map (PSI by feature)",
        "description": "Population stability index per feature against the training "
                       "baseline; above 0.25 is usually read as a shift.",
        "targets": [_target(f'max by (feature) ({b.m("mlray_drift_psi")}{{{_SEL}}})',
                            "{{feature}}")],
        "options": {"calculate": False, "yAxis": {"axisPlacement": "left"},
                    "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64,
                              "min": 0, "max": 0.5},
                    "cellGap": 1, "legend": {"show": True},
                    "tooltip": {"mode": "single", "yHistogram": False}},
        "fieldConfig": {"defaults": {}, "overrides": []},
    }, w=24, h=10)
    b.add(_timeseries(
        "Drift share", "Share of drifted features; the line is the alert threshold.",
        [_target(f'max by (model, version) ({b.m("mlray_drift_share")}{{{_SEL}}})',
                 "{{model}} v{{version}}")],
        unit="percentunit", thresholds=[(DRIFT_SHARE_THRESHOLD, "orange")], minimum=0,
        maximum=1))
    b.add(_timeseries(
        "Missing values by feature", "Share of live rows with the feature missing.",
        [_target(f'max by (feature) ({b.m("mlray_quality_missing_ratio")}{{{_SEL}}})',
                 "{{feature}}")], unit="percentunit", minimum=0, maximum=1))

    b.row("Model performance (ground truth)")
    b.add(_timeseries(
        "Accuracy, F1 and ROC AUC", "Over the monitor's window, once labels arrive.",
        [_target(f'max by (model, version) ({b.m(name)}{{{_SEL}}})',
                 f"{label} {{{{model}}}} v{{{{version}}}}", ref)
         for name, label, ref in (("mlray_model_accuracy", "accuracy", "A"),
                                  ("mlray_model_f1", "F1", "B"),
                                  ("mlray_model_roc_auc", "AUC", "C"))],
        unit="percentunit", minimum=0, maximum=1), w=24)

    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus",
                      "description": "The Prometheus that scrapes the Ray cluster.",
                      "type": "datasource", "pluginId": "prometheus",
                      "pluginName": "Prometheus"}],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus",
             "version": "1.0.0"}],
        "uid": "mlray-overview",
        "title": "mlray overview",
        "description": "Serving traffic, latency, drift and model performance per version. "
                       "Generated by mlray.monitoring.grafana; do not edit by hand.",
        "tags": ["mlray"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            _variable("model", "Model", f"label_values({req}, model)"),
            _variable("version", "Version",
                      f'label_values({req}{{model=~"$model"}}, version)'),
        ]},
        "panels": b.panels,
    }


def render(prefix: str = DEFAULT_PREFIX) -> str:
    """The dashboard as the JSON text committed in configs/grafana/mlray-overview.json."""
    return json.dumps(dashboard(prefix), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboard to the path given on the command line."""
    parser = argparse.ArgumentParser(description="Write mlray's Grafana dashboard JSON.")
    parser.add_argument("path", type=Path, help="where to write the JSON")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX,
                        help=f"in front of every metric name (default {DEFAULT_PREFIX!r}, "
                             "as Ray's metrics pipeline exports them)")
    args = parser.parse_args(argv)
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(render(args.prefix))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
