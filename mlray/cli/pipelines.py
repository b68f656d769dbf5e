"""``mlray pipelines apply|run|list|runs|show|resume|cancel|approve|code``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mlray.cli._common import JsonOpt, emit, state, when
from mlray.errors import InvalidInput
from mlray.pipelines.definitions import load_pipelines
from mlray.pipelines.state import PipelineRun

app = typer.Typer(help="Pipelines: stage DAGs run on Ray, cached, resumable, triggered.",
                  no_args_is_help=True)

ProjectOpt = typer.Option(None, "--project", "-P", help="The project (default: the config's).")
WaitOpt = typer.Option(False, "--wait", help="Return once the run stops moving (finished, "
                                             "or waiting for an approval).")


def _use_project(project: str | None) -> None:
    if project:
        state.project = project


def _params(pairs: list[str] | None) -> dict[str, object]:
    """``k=v`` pairs; a value that parses as JSON (numbers, true, lists) is taken as such."""
    out: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--param expects key=value, got {pair!r}", field="param")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _show_run(run: PipelineRun, as_json: bool, note: str = "") -> None:
    rows = [[name, str(s.state), s.attempt, when(s.started_at), when(s.finished_at),
             s.message] for name, s in run.stages.items()]
    title = (f"{run.pipeline} run {run.run_id}: {run.state} ({run.trigger}, by "
             f"{run.created_by}{', ' + str(run.coalesced) + ' coalesced' if run.coalesced else ''})"
             f"{note}")
    emit(run, as_json, ("stage", "state", "tries", "started", "finished", "message"), rows,
         title=title, whole=("stage",))
    if run.message and not as_json:
        typer.echo(run.message, err=True)


@app.command()
def apply(path: Path = typer.Argument(..., help="A YAML file or a directory of them."),
          prune: bool = typer.Option(False, "--prune", help="Remove the project's other "
                                                            "pipelines."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Show the diff only."),
          project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """Register pipeline definitions; prints what was added, changed or removed."""
    _use_project(project)
    specs = load_pipelines(path)
    result = state.client().pipelines.apply(specs, prune=prune, dry_run=dry_run)
    rows = [[n, what] for what in ("added", "changed", "removed", "unchanged")
            for n in getattr(result, what)]
    emit(result, as_json, ("pipeline", "change"), rows,
         title="applied" if result.applied else "nothing applied" + (" (dry run)" if dry_run
                                                                      else ""))


@app.command()
def run(name: str, param: list[str] = typer.Option(None, "--param", "-p",
                                                   help="A run parameter, key=value."),
        wait: bool = WaitOpt, project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """Start a run (a run already active for the pipeline takes it in: coalesced)."""
    _use_project(project)
    started = state.client().pipelines.run(name, _params(param), wait=wait)
    _show_run(started.run, as_json,
              " - coalesced into the active run" if started.coalesced else "")


@app.command("list")
def list_(project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """The project's pipelines and their latest runs."""
    _use_project(project)
    found = state.client().pipelines.list()
    emit(found, as_json, ("pipeline", "stages", "triggers", "last run", "state", "runs"),
         [[p.spec.name, len(p.spec.stages), ", ".join(t.type for t in p.spec.triggers),
           p.last_run or "", p.last_state or "", p.runs] for p in found],
         whole=("pipeline", "last run"))


@app.command()
def runs(pipeline: str = typer.Argument(None), limit: int = typer.Option(20, "--limit"),
         project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """Runs, newest first."""
    _use_project(project)
    found = state.client().pipelines.runs(pipeline, limit)
    emit(found, as_json, ("run", "pipeline", "state", "trigger", "by", "created"),
         [[r.run_id, r.pipeline, r.state, r.trigger, r.created_by, when(r.created_at)]
          for r in found], whole=("run",))


@app.command()
def show(run_id: str, project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """A run and its stages (state, tries, times, cache hits, errors)."""
    _use_project(project)
    _show_run(state.client().pipelines.show(run_id), as_json)


@app.command()
def resume(run_id: str, wait: bool = WaitOpt, project: str = ProjectOpt,
           as_json: bool = JsonOpt) -> None:
    """Run a failed or cancelled run again from where it stopped (what succeeded stays)."""
    _use_project(project)
    client = state.client()
    resumed = client.pipelines.resume(run_id)
    _show_run(client.pipelines.wait(run_id) if wait else resumed, as_json)


@app.command()
def cancel(run_id: str, project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """Stop a run: running stages are cancelled, the others never start."""
    _use_project(project)
    _show_run(state.client().pipelines.cancel(run_id), as_json)


@app.command()
def approve(run_id: str, stage: str = typer.Option(..., "--stage", "-s"),
            reject: bool = typer.Option(False, "--reject", help="Fail the stage instead."),
            comment: str = typer.Option("", "--comment", "-m"), wait: bool = WaitOpt,
            project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """Answer a waiting approval stage (editor or admin; audited)."""
    _use_project(project)
    client = state.client()
    answered = client.pipelines.approve(run_id, stage, reject=reject, comment=comment)
    _show_run(client.pipelines.wait(run_id) if wait else answered, as_json)


@app.command()
def code(
    allow: list[str] = typer.Option(None, "--allow",
                                    help="module:callable or module to allow (admin)."),
    revoke: list[str] = typer.Option(None, "--revoke", help="An entry to remove (admin)."),
    project: str = ProjectOpt, as_json: bool = JsonOpt,
) -> None:
    """List the stage code pipelines may run besides the built-in kinds; platform admins
    add or remove module:callable or module entries (audited)."""
    _use_project(project)
    client = state.client()
    listed = (client.pipelines.allow_code(allow=allow, revoke=revoke)
              if allow or revoke else client.pipelines.allowed_code())
    emit(listed, as_json, ("allowed stage code",), [[e] for e in listed])
