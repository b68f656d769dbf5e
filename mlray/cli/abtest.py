"""``mlray abtest start|status|stop|list``: A/B experiments and bandits over model versions."""

from __future__ import annotations

import typer

from mlray.abtest.experiment import Experiment
from mlray.cli._common import JsonOpt, emit, state, when

app = typer.Typer(help="A/B experiments: split traffic between versions, decide from "
                       "feedback, promote or roll back.", no_args_is_help=True)

ProjectOpt = typer.Option(None, "--project", "-P", help="The project (default: the config's).")


def _use_project(project: str | None) -> None:
    if project:
        state.project = project


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _show(exp: Experiment, as_json: bool) -> None:
    spec, look = exp.spec, exp.last
    rows = []
    for version, weight in spec.arms.items():
        t = look.totals.get(f"v{version}") if look else None
        role = "control" if version == spec.control else "treatment"
        rows.append([f"v{version}", role, f"{weight:g}", t.requests if t else 0,
                     t.labelled if t else 0, _fmt(t.mean) if t else ""])
    size = exp.sample_size.control if exp.sample_size else None
    title = (f"{spec.model} experiment {exp.id}: {exp.status} ({spec.metric}, "
             f"{'sequential' if spec.sequential else 'fixed horizon'}"
             f"{', ' + spec.bandit + ' bandit' if spec.bandit else ''}"
             f"{', planned ' + str(size) + ' per arm' if size else ''}; started "
             f"{when(exp.created_at)} by {exp.created_by})")
    emit(exp, as_json, ("arm", "role", "weight", "requests", "labelled", spec.metric), rows,
         title=title, whole=("arm",))
    if as_json or look is None:
        if exp.outcome and not as_json:
            typer.echo(exp.outcome)
        return
    r = look.result
    if r is not None:
        ci = f" [{_fmt(r.diff_ci.low)}, {_fmt(r.diff_ci.high)}]" if r.diff_ci else ""
        lift = f", lift {r.lift:+.2%}" if r.lift is not None else ""
        evidence = (f"e-value {_fmt(r.e_value)}, p {_fmt(r.p_value)}" if r.e_value is not None
                    else f"p-value {_fmt(r.p_value)}")
        typer.echo(f"effect {r.diff:+.4g}{ci} ({int((1 - r.alpha) * 100)}% interval){lift}; "
                   f"{evidence} ({r.method})")
    _show_metrics(exp)
    if look.srm is not None:
        typer.echo(f"SRM: p {_fmt(look.srm.p_value)}"
                   f"{' - MISMATCH' if look.srm.flagged else ' - ok'}")
    for g in look.guardrails:
        typer.echo(f"guardrail {g.name}: {'BREACHED' if g.breached else 'ok'} ({g.detail})")
    if look.decision is not None:
        typer.echo(f"decision: {look.decision.outcome} - {look.decision.reason}")
    if exp.outcome:
        typer.echo(exp.outcome)


def _show_metrics(exp: Experiment) -> None:
    """Each metric's effect, interval, p-value and corrected p-value; CUPED; warnings."""
    look = exp.last
    if look is None:
        return
    if look.cuped is not None:
        c, raw = look.cuped, look.cuped.unadjusted
        ci = f" [{_fmt(raw.diff_ci.low)}, {_fmt(raw.diff_ci.high)}]" if raw.diff_ci else ""
        typer.echo(f"CUPED (fixed horizon, {c.units} units, {c.with_pre} with a pre-period): "
                   f"variance reduced {c.reduction:.1%} (theta {_fmt(c.theta)}); "
                   f"unadjusted effect {raw.diff:+.4g}{ci}, p-value {_fmt(raw.p_value)}")
    elif exp.spec.cuped and exp.status == "running":
        typer.echo("CUPED: waiting for two units per arm")
    if look.metrics:
        rows = [[m.metric + (" (primary)" if m.primary else ""),
                 "higher" if m.higher_is_better else "lower", f"{m.result.diff:+.4g}",
                 (f"[{_fmt(m.result.diff_ci.low)}, {_fmt(m.result.diff_ci.high)}]"
                  if m.result.diff_ci else ""), _fmt(m.result.p_value), _fmt(m.adjusted_p),
                 "WORSE" if m.worse else ("yes" if m.significant else "no")]
                for m in look.metrics]
        emit(look.metrics, False, ("metric", "better", "effect", "interval", "p-value",
                                   f"{exp.spec.correction} p", "significant"), rows,
             title=f"metrics ({exp.spec.correction}-corrected over {len(rows)})",
             whole=("metric",))
    for warning in look.warnings:
        typer.echo(f"WARNING: {warning}")


@app.command()
def start(model: str,
          arms: str = typer.Option(..., "--arms", help="vN=WEIGHT pairs, the control first: "
                                                      "v1=50,v2=50."),
          metric: str = typer.Option("conversion", "--metric",
                                     help="correct (prediction agrees with the label) or "
                                          "caught (labelled-1 requests scored >= 0.5): "
                                          "the model's answer, binary; any other name "
                                          "(conversion, loss_amount): the label itself."),
          kind: str = typer.Option("binary", "--kind", help="binary or continuous."),
          min_effect: float = typer.Option(..., "--min-effect",
                                           help="Smallest absolute difference to detect."),
          alpha: float = typer.Option(0.05, "--alpha"),
          power: float = typer.Option(0.8, "--power"),
          sequential: bool = typer.Option(False, "--sequential",
                                          help="mSPRT: valid at any look."),
          baseline: float = typer.Option(None, "--baseline",
                                         help="Control's expected mean (binary default 0.5)."),
          sd: float = typer.Option(None, "--sd", help="Continuous: the metric's sd."),
          lower_is_better: bool = typer.Option(False, "--lower-is-better",
                                               help="The metric is a cost (loss amount)."),
          max_samples: int = typer.Option(None, "--max-samples",
                                          help="Sequential: stop past this many per arm."),
          guardrail: list[str] = typer.Option(None, "--guardrail",
                                              help="error_ratio<=0.05, p99_ms<=250, "
                                                   "accuracy>=0.8 (repeatable)."),
          bandit: str = typer.Option(None, "--bandit", help="thompson or epsilon."),
          epsilon: float = typer.Option(0.1, "--epsilon"),
          secondary: str = typer.Option(None, "--secondary",
                                        help="Metrics reported beside the primary, comma-"
                                             "separated (name:lower for a cost): "
                                             "conversion,correct."),
          correction: str = typer.Option("holm", "--correction",
                                         help="holm or bh, over all metrics."),
          cuped: bool = typer.Option(False, "--cuped",
                                     help="Adjust the primary with each routing key's "
                                          "pre-period outcome (fixed horizon)."),
          project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """Split MODEL's traffic between the arms (sticky by routing key) and start the test;
    prints the sample size needed per arm."""
    _use_project(project)
    exp = state.client().abtests.start(
        model, arms, min_effect=min_effect, guardrails=guardrail, metric=metric, kind=kind,
        alpha=alpha, power=power, sequential=sequential, baseline=baseline, sd=sd,
        higher_is_better=not lower_is_better, max_samples=max_samples, bandit=bandit,
        epsilon=epsilon, secondary=secondary or [], correction=correction, cuped=cuped)
    if as_json:
        emit(exp, True)
        return
    size = exp.sample_size
    typer.echo(f"started experiment {exp.id} on {model}: "
               + ", ".join(f"v{v}={w:g}" for v, w in exp.spec.arms.items()))
    if size is not None:
        typer.echo(f"required sample size: {size.control} per arm (control) and "
                   f"{size.treatment} (treatment), {size.total} in all, to detect "
                   f"{size.baseline:g} -> {size.target:g} at alpha {size.alpha:g}, power "
                   f"{size.power:g}")


@app.command()
def status(model: str, project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """Arms, counts, effect, interval, p-value or e-value, every metric's corrected
    p-value, CUPED's variance reduction, warnings, SRM and the decision."""
    _use_project(project)
    _show(state.client().abtests.status(model), as_json)


@app.command()
def stop(model: str, project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """End MODEL's running experiment without a verdict: all traffic to the control."""
    _use_project(project)
    _show(state.client().abtests.stop(model), as_json)


@app.command("list")
def list_(project: str = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """The project's experiments."""
    _use_project(project)
    found = state.client().abtests.list()
    rows = [[e.id, e.spec.model, ",".join(f"v{v}={w:g}" for v, w in e.spec.arms.items()),
             e.status, when(e.created_at), e.outcome] for e in found]
    emit(found, as_json, ("id", "model", "arms", "status", "started", "outcome"), rows,
         whole=("id",))
