"""``mlray quotas set|show`` and ``mlray usage``: what a project may hold and what it used."""

from __future__ import annotations

import datetime as dt
import time

import typer

from mlray.auth import parse_duration
from mlray.cli._common import JsonOpt, emit, state, when
from mlray.errors import InvalidInput
from mlray.quotas.types import QuotaLimits, UsageReport

app = typer.Typer(help="Quotas per project (admins of every project set them).",
                  no_args_is_help=True)

ProjectOpt = typer.Option(None, "--project", "-P", help="The project (default: the config's).")
_COUNTED = ("models", "versions", "deployments", "replicas", "storage_bytes")


def _use_project(project: str | None) -> None:
    if project:
        state.project = project


def _limit(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g}"


def _quota_rows(report: UsageReport) -> list[list[object]]:
    rows: list[list[object]] = [[q, _limit(report.limits.limit(q)), f"{report.in_use[q]:g}"]
                                for q in _COUNTED if q in report.in_use]
    rows.append(["requests_per_s", _limit(report.limits.requests_per_s), ""])
    return rows


@app.command("set")
def set_(
    project: str = ProjectOpt,
    models: int = typer.Option(None, "--models", min=0),
    versions: int = typer.Option(None, "--versions", min=0),
    deployments: int = typer.Option(None, "--deployments", min=0),
    replicas: int = typer.Option(None, "--replicas", min=0),
    storage_bytes: int = typer.Option(None, "--storage-bytes", min=0),
    requests_per_s: float = typer.Option(None, "--rps", "--requests-per-s", min=0.001),
    unlimited: list[str] = typer.Option(None, "--unlimited",
                                        help="Lift a quota (e.g. --unlimited models)."),
    as_json: bool = JsonOpt,
) -> None:
    """Set some of a project's quotas; the others stay as they are."""
    _use_project(project)
    given = {"models": models, "versions": versions, "deployments": deployments,
             "replicas": replicas, "storage_bytes": storage_bytes,
             "requests_per_s": requests_per_s}
    limits: dict[str, float | None] = {k: v for k, v in given.items() if v is not None}
    for name in unlimited or []:
        name = name.replace("-", "_")
        if name not in QuotaLimits.model_fields:
            raise InvalidInput(f"--unlimited: no quota {name!r}; there are "
                               f"{', '.join(QuotaLimits.model_fields)}", field="unlimited")
        limits[name] = None
    if not limits:
        raise InvalidInput("name at least one quota (e.g. --models 10, --rps 50)",
                           field="quota")
    client = state.client()
    updated = client.quotas.set(**limits)
    emit(updated, as_json, ("quota", "limit"),
         [[k, _limit(v)] for k, v in updated.model_dump().items()],
         title=f"quotas of {client.project}")


@app.command()
def show(project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """A project's quotas and what it uses of each now."""
    _use_project(project)
    client = state.client()
    report = client.quotas.usage()
    emit({"limits": report.limits, "in_use": report.in_use}, as_json,
         ("quota", "limit", "in use"), _quota_rows(report),
         title=f"quotas of {client.project}")


def parse_since(text: str | None) -> float | None:
    """``--since``: a duration back from now (``24h``, ``7d``), an ISO date or time, or
    Unix seconds; None for ever."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        seconds = parse_duration(text, field="since")
        return None if seconds is None else time.time() - seconds
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def usage(
    project: str = ProjectOpt,
    since: str = typer.Option(None, "--since",
                              help="From when: 24h, 7d (back from now), 2026-12-01 or Unix "
                                   "seconds; default: ever."),
    as_json: bool = JsonOpt,
) -> None:
    """What a project used: requests, replica-seconds, job CPU/GPU-seconds, storage."""
    _use_project(project)
    client = state.client()
    report = client.quotas.usage(parse_since(since))
    rows = [["requests", f"{report.requests:,}"],
            ["requests refused (429)", f"{report.requests_refused:,}"],
            ["replica-seconds", f"{report.replica_seconds:,.1f}"],
            ["job CPU-seconds", f"{report.job_cpu_seconds:,.1f}"],
            ["job GPU-seconds", f"{report.job_gpu_seconds:,.1f}"],
            ["storage bytes", f"{report.storage_bytes:,}"]]
    emit(report, as_json, ("usage", "amount"), rows,
         title=f"usage of {client.project} since {when(report.since) or 'the start'}")
