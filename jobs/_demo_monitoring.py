"""The demo's monitoring part: replay traffic, inject drift, watch an alert fire.

Served predictions are sketched in the ingress and shipped to the ``monitor`` actor each
second; the demo compares the newest rows with the training baseline, drives the
``alerts`` actor's evaluation by hand (its rules: ``configs/demo/alerts.yaml``) so the
drift alert is seen pending, then firing, and writes the HTML drift report.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

import mlray
from mlray.datasets.fraud import generate_fraud
from mlray.monitoring.report import drift_table, html_report

__all__ = ["watch"]

ORDINARY, DRIFTED, BATCH = 1_000, 3_000, 100
WINDOW_S = 3600.0


def replay(url: str, model: str, features: list[str], *, rows: int, drift: float,
           seed: int) -> int:
    """POST ``rows`` generated transactions in column batches; the rows answered."""
    frame = generate_fraud(rows, seed=seed, drift=drift)
    columns = [c for c in features if c in frame.columns]
    answered = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for start in range(0, rows, BATCH):
            part = frame.iloc[start:start + BATCH]
            reply = http.post("/v1/predict/batch", json={
                "modelName": model, "columns": {c: part[c].tolist() for c in columns}})
            answered += len(part) if reply.status_code == 200 else 0
    return answered


def _settled_rows(client: mlray.Client, model: str, version: int) -> int:
    """Rows in the monitor's window once earlier traffic has arrived (two equal readings
    a second and a half apart; sketches ship every second)."""
    rows = client.monitoring.drift(model, version, window_s=WINDOW_S).rows
    for _ in range(20):
        time.sleep(1.5)
        again = client.monitoring.drift(model, version, window_s=WINDOW_S).rows
        if again == rows:
            break
        rows = again
    return rows


def _alert_states(client: mlray.Client, model: str, version: int) -> str:
    client.alerts.evaluate()
    found = [f"{a.alertname} {a.state}" for a in client.alerts.list()
             if a.labels.get("model") == model and a.labels.get("version") == str(version)]
    return ", ".join(found) or "none"


def watch(client: mlray.Client, console: Console, url: str, model: str, version: int,
          reports: Path) -> None:
    """Normal then drifted traffic; the drift table, the alert and the HTML report."""
    features = [s.name for s in client.registry.get_version(model, version).input_schema]
    before = _settled_rows(client, model, version)
    normal = replay(url, model, features, rows=ORDINARY, drift=0.0, seed=11)
    drifted = replay(url, model, features, rows=DRIFTED, drift=0.8, seed=12)
    console.print(f"monitoring: replayed {normal:,} ordinary, then {drifted:,} drifted "
                  f"transactions to {model} v{version}")
    deadline = time.monotonic() + 60  # sketches reach the monitor each second
    while client.monitoring.drift(model, version, window_s=WINDOW_S).rows < (
            before + normal + drifted):
        if time.monotonic() > deadline:
            raise RuntimeError("the monitor did not receive the replayed traffic in 60 s")
        time.sleep(1)
    report = client.monitoring.drift(model, version, rows=drifted)
    table = Table(title=f"drift of the newest {report.rows:,} rows against the training "
                        f"baseline (share {report.drift_share:.2f})")
    shown = ("feature", "psi", "js", "ks", "chi2_p", "test", "drifted")
    for col in shown:
        table.add_column(col)
    for row in drift_table(report):
        table.add_row(*(row[c] for c in shown))
    console.print(table)

    console.print(f"alerts on v{version} after one evaluation: "
                  f"{_alert_states(client, model, version)}")
    time.sleep(3.5)  # the rule's `for`
    console.print(f"alerts on v{version} 3.5 s later:         "
                  f"{_alert_states(client, model, version)}")
    quality = client.monitoring.quality(model, version, rows=drifted)
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"drift-{model}-v{version}.html"
    path.write_text(html_report(report, quality, title=f"Drift of {model} v{version}"),
                    encoding="utf-8")
    console.print(f"HTML drift report: {path}  (also: mlray drift {model} --html FILE)")
