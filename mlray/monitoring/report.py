"""Drift and data-quality results as CLI table rows and as a self-contained HTML page.

:func:`drift_table` gives one row of strings per feature (and the predictions) for
``mlray drift``; :func:`html_report` a single page with inline CSS and an inline SVG
bar chart of the baseline and live distributions per feature: no scripts, no fonts, no
network.
"""

from __future__ import annotations

import datetime as dt
import math
from html import escape

from mlray.monitoring.drift import DriftReport, FeatureDrift
from mlray.monitoring.quality import QualityReport

__all__ = ["DRIFT_COLUMNS", "bar_chart", "drift_table", "html_report"]

#: The keys of each :func:`drift_table` row, in display order.
DRIFT_COLUMNS = ("feature", "kind", "rows", "psi", "kl", "js", "ks", "ks_p", "chi2",
                 "chi2_p", "test", "drifted")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;
color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}h3{font-size:1em;margin:0 0 .3em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}
tr.bad td{background:#fde8e8}
.summary{font-size:.95em}.ok{color:#1a7f37}.bad{color:#c62828}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{border:1px solid #ddd;padding:8px;border-radius:4px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""

_BASE_COLOR = "#9e9e9e"
_LIVE_COLOR = "#1f77b4"


def _num(value: float | None, fmt: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def _verdict(drifted: bool | None) -> str:
    return "n/a" if drifted is None else ("yes" if drifted else "no")


def _row(f: FeatureDrift) -> dict[str, str]:
    return {"feature": f.feature, "kind": f.kind, "rows": str(f.rows),
            "psi": _num(f.statistic("psi")), "kl": _num(f.statistic("kl")),
            "js": _num(f.statistic("js")), "ks": _num(f.statistic("ks")),
            "ks_p": _num(f.p_value("ks"), ".3g"), "chi2": _num(f.statistic("chi2")),
            "chi2_p": _num(f.p_value("chi2"), ".3g"), "test": f.test,
            "drifted": _verdict(f.drifted)}


def drift_table(report: DriftReport) -> list[dict[str, str]]:
    """One row per feature, then the predictions; keys are :data:`DRIFT_COLUMNS`."""
    rows = [_row(f) for f in report.features]
    if report.predictions is not None:
        rows.append(_row(report.predictions))
    return rows


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(header: list[str], rows: list[list[str]], bad: list[bool]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        ('<tr class="bad">' if b else "<tr>") + "".join(f"<td>{escape(c)}</td>" for c in r)
        + "</tr>" for r, b in zip(rows, bad, strict=True))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bar_chart(f: FeatureDrift, width: int = 460, height: int = 170) -> str:
    """Inline SVG: baseline (grey) and live (blue) share per bin of one feature."""
    n = len(f.labels)
    left, bottom, top = 34, 34, 10
    plot_w, plot_h = width - left - 6, height - bottom - top
    peak = max([*f.expected, *f.actual, 1e-12])
    parts = [f'<svg width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(f.feature)}: baseline vs current">']
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
                 f'y2="{top + plot_h}" stroke="#888"/>')
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<text x="{left - 3}" y="{y + 3:.1f}" font-size="9" '
                     f'text-anchor="end">{frac * peak:.2f}</text>')
    if n == 0:
        parts.append(f'<text x="{left + 10}" y="{top + plot_h / 2:.1f}" font-size="11">'
                     "no data</text></svg>")
        return "".join(parts)
    group = plot_w / n
    bar = max(group * 0.4, 0.5)
    every = max(1, math.ceil(n / 12))
    for i, label in enumerate(f.labels):
        x0 = left + i * group + group * 0.1
        for j, (values, color, who) in enumerate(((f.expected, _BASE_COLOR, "baseline"),
                                                  (f.actual, _LIVE_COLOR, "current"))):
            share = values[i] if i < len(values) else 0.0
            h = plot_h * share / peak
            parts.append(f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" '
                         f'width="{bar:.1f}" height="{h:.1f}" fill="{color}">'
                         f"<title>{escape(label)} {who}: {share:.4f}</title></rect>")
        if i % every == 0:
            short = label if len(label) <= 14 else label[:13] + "..."
            cx = left + i * group + group / 2
            parts.append(f'<text x="{cx:.1f}" y="{top + plot_h + 12}" font-size="8" '
                         f'text-anchor="end" transform="rotate(-25 {cx:.1f} '
                         f'{top + plot_h + 12})">{escape(short)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _chart_card(f: FeatureDrift) -> str:
    verdict = _verdict(f.drifted)
    cls = "bad" if f.drifted else "ok"
    decider = f.tests.get(f.test)
    score = "" if decider is None else f" ({escape(f.test)} = {decider.statistic:.4g})"
    return (f'<div class="chart"><h3>{escape(f.feature)} <small>{escape(f.kind)}</small> '
            f'<span class="{cls}">drifted: {verdict}</span>{score}</h3>{bar_chart(f)}</div>')


def html_report(drift: DriftReport, quality: QualityReport | None = None, *,
                title: str = "mlray drift report") -> str:
    """A self-contained HTML page of ``drift`` (and ``quality``), as a string."""
    verdict = "drifted" if drift.dataset_drifted else "no dataset drift"
    cls = "bad" if drift.dataset_drifted else "ok"
    out = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>',
           f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{escape(title)}</h1>",
           f'<p class="summary">Window {_when(drift.start)} to {_when(drift.end)}, '
           f"{drift.rows} rows. Drifted features: {len(drift.drifted_features)} of "
           f"{drift.evaluated} evaluated (share {drift.drift_share:.2f}, dataset threshold "
           f'{drift.dataset_drift_share:.2f}): <strong class="{cls}">{verdict}</strong>.</p>',
           '<p class="legend">Legend:<span style="background:' + _BASE_COLOR
           + '"></span>baseline<span style="background:' + _LIVE_COLOR
           + '"></span>current</p>']
    rows = drift_table(drift)
    every = [*drift.features, *([drift.predictions] if drift.predictions else [])]
    out.append("<h2>Drift</h2>")
    out.append(_table(list(DRIFT_COLUMNS), [[r[c] for c in DRIFT_COLUMNS] for r in rows],
                      [bool(f.drifted) for f in every]))
    if quality is not None:
        out.append(f"<h2>Data quality</h2><p class=\"summary\">{quality.rows} rows, "
                   f"{len(quality.checks) - len(quality.failed)} of {len(quality.checks)} "
                   f"checks passed (score {quality.score:.2f}).</p>")
        qrows = [[c.feature, c.check, str(c.count), str(c.total), f"{c.score:.4f}",
                  f"{c.threshold:.4f}", "pass" if c.passed else "FAIL"]
                 for c in quality.checks]
        out.append(_table(["feature", "check", "count", "total", "score", "threshold",
                           "result"], qrows, [not c.passed for c in quality.checks]))
    out.append('<h2>Distributions</h2><div class="charts">')
    out.extend(_chart_card(f) for f in every)
    out.append("</div></body></html>\n")
    return "".join(out)
