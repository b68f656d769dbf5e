"""``mlray drift`` and ``mlray alerts rules|list|silence``: monitoring from the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from mlray.alerts.rules import load_rules
from mlray.cli._common import JsonOpt, emit, err_console, parse_pairs, state, when
from mlray.monitoring.report import DRIFT_COLUMNS, drift_table, html_report

__all__ = ["alerts_app", "drift", "list_alerts", "performance", "rules", "silence"]

alerts_app = typer.Typer(help="Alert rules, alerts and silences.", no_args_is_help=True)


def drift(
    model: str = typer.Argument(..., help="Registered model name."),
    version: int = typer.Option(None, "--version", "-v", min=1,
                                help="Version (default: the newest with monitored traffic)."),
    window_s: float = typer.Option(None, "--window-s", min=1,
                                   help="Seconds of traffic to compare (default: the "
                                        "monitor's window)."),
    html: Path = typer.Option(None, "--html", help="Also write a self-contained HTML report."),
    as_json: bool = JsonOpt,
) -> None:
    """Drift of a model version's live traffic against its training baseline."""
    monitoring = state.client().monitoring
    report = monitoring.drift(model, version, window_s=window_s)
    if html is not None:
        quality = monitoring.quality(model, version, window_s=window_s)
        title = f"Drift of {model}" + (f" v{version}" if version else "")
        html.write_text(html_report(report, quality, title=title), encoding="utf-8")
        if not as_json:
            err_console.print(f"wrote {html}")
    rows = [[r[c] for c in DRIFT_COLUMNS] for r in drift_table(report)]
    verdict = "drifted" if report.dataset_drifted else "no dataset drift"
    emit(report, as_json, DRIFT_COLUMNS, rows,
         f"drift of {model}: {report.rows} rows, share {report.drift_share:.2f} ({verdict})")


@alerts_app.command("rules")
def rules(
    file: Path = typer.Option(Path("configs/alerts.yaml"), "--file", "-f",
                              help="Alerts YAML (rules naming unknown metrics are refused)."),
    as_json: bool = JsonOpt,
) -> None:
    """Load, check and print the alert rules."""
    config = load_rules(file)
    rows = [[r.name, r.metric, ", ".join(f"{k}={v}" for k, v in r.labels.items()),
             f"{r.aggregate}{'' if not r.window else f'[{r.window:g}s]'} {r.operator} "
             f"{r.threshold:g}", f"{r.for_:g}s", r.severity, ", ".join(r.channels)]
            for r in config.rules]
    emit(config.model_dump(mode="json", by_alias=True), as_json,
         ("name", "metric", "labels", "condition", "for", "severity", "channels"), rows,
         f"alert rules in {file}")


@alerts_app.command("list")
def list_alerts(as_json: bool = JsonOpt) -> None:
    """Pending and firing alerts (from the alerts actor; needs a cluster)."""
    found = state.cluster_client().alerts.list()
    emit(found, as_json, ("alert", "state", "labels", "value", "silenced by"),
         [[a.alertname, a.state, ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items())),
           "" if a.value is None else f"{a.value:.4g}", ", ".join(a.silenced_by)]
          for a in found], "alerts")


@alerts_app.command("silence")
def silence(
    matchers: list[str] = typer.Argument(..., help="Label matchers: alertname=X model=fraud."),
    duration: float = typer.Option(3600.0, "--for", min=1, help="Seconds to stay silent."),
    comment: str = typer.Option("", "--comment"),
    as_json: bool = JsonOpt,
) -> None:
    """Mute notifications of matching alerts for a while."""
    parsed = parse_pairs(matchers, "matchers")
    made = state.cluster_client().alerts.silence(parsed, duration, comment)
    emit(made, as_json, ("id", "matchers", "ends"),
         [[made.id, ", ".join(f"{k}={v}" for k, v in made.matchers.items()),
           when(made.ends_at)]], "silence")


def performance(
    model: str = typer.Argument(..., help="Registered model name."),
    version: int = typer.Option(..., "--version", "-v", min=1),
    window_s: float = typer.Option(86_400.0, "--window-s", min=1),
    as_json: bool = JsonOpt,
) -> None:
    """Live metrics from feedback joined to logged predictions, beside training's."""
    report = state.client().monitoring.performance(model, version, window_s=window_s)
    rows = [[k, f"{v:.4f}", f"{report.evaluation[k]:.4f}" if k in report.evaluation else ""]
            for k, v in sorted(report.metrics.items())]
    rows += [["predictions logged", report.predictions, ""],
             ["with feedback", report.labelled, ""],
             ["feedback for unknown ids", report.unknown_feedback, ""]]
    emit(report, as_json, ("metric", "live", "at training"), rows, f"{model} v{version}")
