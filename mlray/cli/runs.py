"""``mlray runs``: list, show, compare."""

from __future__ import annotations

import typer

from mlray.cli._common import JsonOpt, console, emit, state, when

app = typer.Typer(help="Experiment runs.", no_args_is_help=True)


@app.command("list")
def list_runs(
    experiment: list[str] = typer.Option(None, "--experiment", "-e", help="Repeatable."),
    filter: str = typer.Option(None, "--filter", "-f",
                               help="e.g. \"metrics.loss < 0.2 and params.lr = 0.01\""),
    order_by: list[str] = typer.Option(None, "--order-by", "-o",
                                       help="e.g. 'metrics.loss ASC'; repeatable."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = JsonOpt,
) -> None:
    """Search runs."""
    client = state.client()
    page = client.experiments.search_runs(experiments=experiment or None, filter=filter,
                                          order_by=order_by or None, limit=limit,
                                          offset=offset)
    rows = [[r.run_id, r.experiment, r.name, r.status.value, when(r.start_time),
             " ".join(f"{k}={v}" for k, v in sorted(r.params.items())),
             " ".join(f"{k}={m.value:.4g}" for k, m in sorted(r.metrics.items()))]
            for r in page.runs]
    more = f", next --offset {page.next_offset}" if page.next_offset is not None else ""
    emit(page, as_json, ("run", "experiment", "name", "status", "started", "params", "metrics"),
         rows, f"{len(page.runs)} of {page.total} runs{more}", whole=("run",))


@app.command("show")
def show(run_id: str = typer.Argument(...), as_json: bool = JsonOpt) -> None:
    """Show one run."""
    run = state.client().experiments.get_run(run_id)
    if as_json:
        emit(run, True)
        return
    console.print_json(run.model_dump_json())


@app.command("compare")
def compare(run_ids: list[str] = typer.Argument(..., help="Two or more run ids."),
            as_json: bool = JsonOpt) -> None:
    """Params and metrics of runs side by side; differing params are marked."""
    cmp = state.client().experiments.compare_runs(run_ids)
    rows = [[f"params.{k}" + (" *" if k in cmp.differing_params else ""), *vals]
            for k, vals in cmp.params.items()]
    rows += [[f"metrics.{k}", *(None if v is None else f"{v:.4g}" for v in vals)]
             for k, vals in cmp.metrics.items()]
    emit(cmp, as_json, ("", *(r[:12] for r in cmp.run_ids)), rows, "* = differs")
