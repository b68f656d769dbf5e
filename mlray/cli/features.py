"""``mlray features apply|sources|list|show|push|materialize``."""

from __future__ import annotations

from pathlib import Path

import typer

from mlray.cli._common import JsonOpt, emit, state
from mlray.errors import InvalidInput
from mlray.features.definitions import FeatureView
from mlray.features.describe import (
    FIELD_COLUMNS,
    KINDS,
    describe,
    field_rows,
    kind_label,
    parse_definition,
    ttl_text,
)
from mlray.features.materialize import parse_time

app = typer.Typer(help="Feature definitions, materialization and pushes.",
                  no_args_is_help=True)


@app.command("apply")
def apply(
    directory: Path = typer.Argument(..., help="Directory of feature YAML files."),
    force: bool = typer.Option(False, "--force", help="Allow breaking changes (admin)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the diff; change nothing."),
    as_json: bool = JsonOpt,
) -> None:
    """Register entities, views and services, printing what was added, changed or removed."""
    result = state.client().features.apply(directory, force=force, dry_run=dry_run)
    rows = [[line] for line in (*result.added, *result.changed, *result.removed)]
    title = ("dry run: would apply" if dry_run else
             "applied" if result.applied else "nothing to change")
    emit(result, as_json, ("change",), rows or [["(no changes)"]], title)


@app.command("sources")
def sources(
    allow: list[str] = typer.Option(None, "--allow", help="Path or URI prefix to allow (admin)."),
    revoke: list[str] = typer.Option(None, "--revoke", help="Prefix to stop allowing (admin)."),
    as_json: bool = JsonOpt,
) -> None:
    """List where Parquet sources may live besides each project's storage root
    (<offline_uri>/<project>); admins of every project add or remove prefixes (audited)."""
    client = state.client()
    listed = (client.features.allow_sources(allow=allow, revoke=revoke)
              if allow or revoke else client.features.allowed_sources())
    emit(listed, as_json, ("allowed source prefix",), [[p] for p in listed])


@app.command("list")
def list_definitions(as_json: bool = JsonOpt) -> None:
    """Entities, feature views, on-demand views and feature services."""
    repo = state.client().features.repo(fresh=True)
    rows: list[list[object]] = []
    for kind in KINDS:
        for item in getattr(repo, kind):
            detail = (", ".join(f.name for f in item.fields) if hasattr(item, "fields")
                      else ", ".join(getattr(item, "features", []))
                      or ", ".join(k.name for k in getattr(item, "join_keys", [])))
            ttl = ttl_text(item.ttl) if isinstance(item, FeatureView) else ""
            rows.append([kind_label(kind), item.name, ttl, detail])
    emit(repo, as_json, ("kind", "name", "ttl", "fields / keys / features"), rows, "features")


@app.command("show")
def show(name: str = typer.Argument(..., help="Entity, view or service name."),
         as_json: bool = JsonOpt) -> None:
    """One definition: its properties, then its fields (ttl 0 reads "never")."""
    found = state.client().features.show(name)
    if as_json:
        emit(found, True)
        return
    item = parse_definition(found["kind"], found["definition"])
    emit(found, False, ("property", "value"), describe(item),
         f"{kind_label(found['kind'])} {name}")
    fields = field_rows(item)
    if fields:
        emit(found, False, FIELD_COLUMNS, fields, "fields")


@app.command("push")
def push(
    view: str = typer.Argument(..., help="Feature view."),
    path: Path = typer.Argument(..., help="Rows as Parquet, CSV or JSON lines."),
    to: str = typer.Option("both", "--to", help="online, offline or both."),
    as_json: bool = JsonOpt,
) -> None:
    """Write rows to a view's stores (all checked first; none written if one fails)."""
    import pandas as pd

    if not path.exists():
        raise InvalidInput(f"{path} does not exist", field="path")
    readers = {".parquet": pd.read_parquet, ".csv": pd.read_csv,
               ".jsonl": lambda p: pd.read_json(p, lines=True),
               ".json": lambda p: pd.read_json(p, lines=True)}
    reader = readers.get(path.suffix)
    if reader is None:
        raise InvalidInput(f"{path}: use .parquet, .csv or .jsonl", field="path")
    frame = reader(path)
    written = state.client().features.push(view, frame, to=to)
    emit({"view": view, "rows": written, "to": to}, as_json, ("view", "rows", "to"),
         [[view, written, to]], "pushed")


@app.command("materialize")
def materialize(
    start: str = typer.Option(None, "--start", help="Window start (ISO, with time zone)."),
    end: str = typer.Option(None, "--end", help="Window end, exclusive (default: now)."),
    views: list[str] = typer.Option(None, "--view", help="Only these views."),
    incremental: bool = typer.Option(False, "--incremental",
                                     help="Start each view where its last run ended."),
    as_json: bool = JsonOpt,
) -> None:
    """Move the latest rows per entity in [start, end) from offline to online."""
    from rich.progress import Progress

    client = state.client()
    with Progress(transient=True) as bar:
        task = bar.add_task("materializing", total=None)

        def progress(view: str, rows: int) -> None:
            bar.update(task, description=f"{view}: {rows:,} rows", advance=rows)

        runs = client.features.materialize(start=parse_time(start, "start"),
                                           end=parse_time(end, "end"), views=views or None,
                                           incremental=incremental, progress=progress)
    emit(runs, as_json, ("view", "start", "end", "rows"),
         [[r.view, r.start.isoformat(), r.end.isoformat(), r.rows] for r in runs],
         "materialized")
