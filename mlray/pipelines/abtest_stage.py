"""The ``abtest`` stage kind: start an A/B experiment of a candidate version against the
version that serves, wait until it concludes, and say what happened.

Params: ``model`` (required), ``min_effect`` (required), optional ``version`` (else the
upstream stage's), ``control`` (else the version taking most of the model's traffic, the
Production version when none), ``weights`` (control and candidate shares, default
``[50, 50]``), ``guardrails`` (``["error_ratio<=0.05"]``), ``poll_s`` (default 5),
``wait_s`` (default 3600) and any :class:`~mlray.abtest.experiment.ExperimentSpec` field
(``metric``, ``kind``, ``alpha``, ``power``, ``sequential``, ``max_samples``, ...). The
experiment itself promotes the winner or rolls back; the output says which (``winner``
is the version kept, ``decision`` the experiment's status). An experiment the run's
stage started before (``ctx.task.since``) is adopted on resume; a cancelled run stops it
(:func:`stop_experiment`).
"""

from __future__ import annotations

from typing import Any

from mlray.errors import InvalidInput

__all__ = ["abtest", "own_experiment", "stop_experiment"]

_OWN = frozenset({"model", "min_effect", "version", "control", "weights", "guardrails",
                  "poll_s", "wait_s"})


def _control(client: Any, model: str, candidate: int) -> int:
    policy = client.registry.get_traffic(model)
    others = [(w, v) for v, w in policy.weights.items() if v != candidate and w > 0]
    if not others:
        raise InvalidInput(f"no version of {model} but the candidate v{candidate} serves; "
                           "set params.control", field="params.control")
    return max(others)[1]


def own_experiment(experiments: list[Any], model: str, candidate: int,
                   control: int | None, since: float | None, *,
                   running_only: bool = False) -> Any | None:
    """The experiment a run's ``abtest`` stage started: of ``model`` with the candidate
    (and ``control``, when given) among its arms, created since the stage first started,
    running or ended with a verdict (a stopped one was cancelled: a new try starts
    anew); the newest."""
    from mlray.pipelines.kinds import newest_own

    wanted = ("running",) if running_only else ("running", "promoted", "rolled_back")
    return newest_own(experiments, since, lambda e: (
        e.spec.model == model and candidate in e.spec.arms
        and (control is None or control in e.spec.arms) and e.status in wanted))


def _given_control(ctx: Any) -> int | None:
    return int(ctx.params["control"]) if ctx.params.get("control") else None


def abtest(ctx: Any) -> dict[str, Any]:
    """Run the experiment to its end (see the module docstring); one this run's stage
    started already (before a crash or a cancel) is adopted, not started twice."""
    from mlray.pipelines.kinds import _param, _version

    model, min_effect = _param(ctx, "model"), float(_param(ctx, "min_effect"))
    candidate = _version(ctx)
    client = ctx.client()
    exp = own_experiment(client.abtests.list(), model, candidate, _given_control(ctx),
                         ctx.task.since)
    if exp is None:
        exp = _start(ctx, client, model, candidate, min_effect)
    control = exp.spec.control
    done = exp if exp.status != "running" else client.abtests.wait(
        model, timeout_s=float(ctx.params.get("wait_s", 3600)),
        poll_s=float(ctx.params.get("poll_s", 5)))
    decision = done.last.decision if done.last else None
    result = done.last.result if done.last else None
    return {"model": model, "version": candidate, "control": control, "experiment": exp.id,
            "decision": done.status, "winner": done.winner,
            "rolled_back": done.status != "promoted", "outcome": done.outcome,
            "reason": decision.reason if decision else "",
            "p_value": result.p_value if result else None,
            "e_value": result.e_value if result else None}


def _start(ctx: Any, client: Any, model: str, candidate: int, min_effect: float) -> Any:
    control = _given_control(ctx) or _control(client, model, candidate)
    if control == candidate:
        raise InvalidInput(f"the candidate v{candidate} is the control", field="params.control")
    w_control, w_candidate = ctx.params.get("weights", [50, 50])
    fields = {k: v for k, v in ctx.params.items() if k not in _OWN}
    return client.abtests.start(model, {control: float(w_control),
                                        candidate: float(w_candidate)},
                                min_effect=min_effect,
                                guardrails=list(ctx.params.get("guardrails", [])), **fields)


def stop_experiment(ctx: Any) -> dict[str, Any]:
    """Undo of ``abtest``: stop the experiment the cancelled stage started, if it still
    runs (its traffic goes back to the control)."""
    from mlray.pipelines.kinds import _param, _version

    model, candidate = _param(ctx, "model"), _version(ctx)
    client = ctx.client()
    exp = own_experiment(client.abtests.list(), model, candidate, _given_control(ctx),
                         ctx.task.since, running_only=True)
    if exp is None:
        return {"model": model, "stopped": None}
    client.abtests.stop(model)
    return {"model": model, "stopped": exp.id}
