"""Stages of the standard retraining pipeline (``configs/pipelines/retrain-fraud.yaml``)
that the generic kinds do not cover: ``evaluate`` (the candidate beside the live version on
one holdout), ``gates`` (``validate``, stopping the run on a failed gate) and ``conclude``
(after the ``abtest`` kind: promote the candidate or keep the live version, and write
lineage). "The live version" is what answers most of the model's requests now (the
Production version when nothing is deployed), as the ``abtest`` kind's control.

Lineage links four things and is written in two places: the pipeline run's output of
``conclude`` (``run_id``, ``data_fingerprint``, ``model``/``version``, ``rollout``) and the
tags of the tracking run that trained the version (``pipeline``, ``pipeline_run``,
``data_fingerprint``, ``rollout``, ``decision``), reachable from the version's ``run_id``.
"""

from __future__ import annotations

from typing import Any

from mlray.errors import InvalidInput, InvalidTransition, NotFound
from mlray.pipelines.kinds import _param, _version, validate

__all__ = ["conclude", "decide", "evaluate", "gates", "lineage"]


def _production(client: Any, model: str) -> int | None:
    from mlray.registry.types import Stage

    found = client.registry.list_versions(model, stage=Stage.PRODUCTION)
    return found[0].version if found else None


def _live(client: Any, model: str, besides: int) -> int | None:
    """The version answering most of ``model``'s traffic other than ``besides``; else the
    Production version; None when there is neither."""
    try:
        weights = client.registry.get_traffic(model).weights
    except NotFound:
        weights = {}
    serving = sorted((w, v) for v, w in weights.items() if v != besides and w > 0)
    return serving[-1][1] if serving else _production(client, model)


def evaluate(ctx: Any) -> dict[str, Any]:
    """Score the candidate (upstream ``version``) and the live version on one labelled
    Parquet holdout (params: ``model``, ``data``, ``label``); their metrics."""
    import pandas as pd

    from mlray.models import load
    from mlray.training.evaluation import classification_metrics

    model, label = _param(ctx, "model"), _param(ctx, "label")
    frame = pd.read_parquet(_param(ctx, "data"))
    if label not in frame.columns:
        raise InvalidInput(f"stage {ctx.stage!r}: {_param(ctx, 'data')} has no label column "
                           f"{label!r}", field="params.label")
    client = ctx.client()
    candidate = _version(ctx)
    production = _live(client, model, candidate)
    metrics = {}
    for version in {candidate, production} - {None}:
        prob = load(f"models:/{model}/{version}", client).predict(frame)
        metrics[str(version)] = classification_metrics(frame[label].to_numpy(), prob)
    return {"model": model, "version": candidate, "production": production,
            "rows": len(frame), "metrics": metrics}


def gates(ctx: Any) -> dict[str, Any]:
    """The ``validate`` kind, failing the stage when a gate fails: nothing after it (the
    canary, the A/B test) runs and Production stays as it is."""
    out = validate(ctx)
    if not out["passed"]:
        report = ctx.client().registry.get_version(out["model"], out["version"]).validation
        failed = ", ".join(report.failed_critical) if report is not None else "no report"
        raise InvalidTransition(f"{out['model']} v{out['version']} failed its gates "
                                f"({failed}); Production is kept", field="gates")
    return out


def decide(abtest: dict[str, Any] | None, candidate: int) -> tuple[str, str]:
    """``("promote" | "rollback", why)`` from an A/B stage's output: promote only when the
    test named the candidate the winner (``winner``; a rolled-back test names the control)
    or, naming none, said ``promote``/``promoted`` (``decision``)."""
    if not abtest:
        return "rollback", "no A/B result"
    winner = abtest.get("winner")
    if winner is not None and int(winner) == candidate:
        return "promote", f"A/B winner v{candidate}"
    if abtest.get("decision") in ("promote", "promoted") and winner is None:
        return "promote", "A/B decision promote"
    return "rollback", f"A/B: {abtest.get('decision') or 'no winner'}" + (
        f" (winner v{winner})" if winner is not None else "")


def lineage(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """The links of this run: run id, training-data fingerprint (the sha256 of the
    ``data_stage`` output, param default ``training_set``), model version and rollout."""
    data_stage = ctx.params.get("data_stage", "training_set")
    ref = ctx.task.inputs.get(data_stage)
    if ref is None:
        raise NotFound(f"stage {ctx.stage!r} needs the output of {data_stage!r} for the data "
                       f"fingerprint; it has {sorted(ctx.task.inputs)}", field="params.data_stage")
    rollout = next((v["rollout"] for v in inputs.values()
                    if isinstance(v, dict) and v.get("rollout")), None)
    return {"pipeline": ctx.task.pipeline, "run_id": ctx.run_id,
            "data_fingerprint": f"sha256:{ref.sha256}", "rollout": rollout}


def conclude(ctx: Any) -> dict[str, Any]:
    """Promote the candidate to Production and send it all traffic, or keep Production
    and send all traffic back to it; write the lineage (params: ``model``, optional
    ``abtest`` stage name, default ``abtest``)."""
    from mlray.registry.types import Stage

    model = _param(ctx, "model")
    inputs = {}
    for stage in ctx.task.inputs:
        try:
            inputs[stage] = ctx.input(stage)
        except InvalidInput:  # a file output (the training set)
            continue
    candidate = _version(ctx)
    decision, why = decide(inputs.get(ctx.params.get("abtest", "abtest")), candidate)
    client = ctx.client()
    production = _production(client, model)
    ab = inputs.get(ctx.params.get("abtest", "abtest")) or {}
    if decision == "promote":
        stage = client.registry.get_version(model, candidate).stage
        if stage == Stage.NONE:
            client.registry.transition_stage(model, candidate, Stage.STAGING)
        if stage != Stage.PRODUCTION:
            client.registry.promote(model, candidate)
        client.serving.traffic(model, {candidate: 100.0})
    elif (control := ab.get("control") or _live(client, model, candidate)) is not None:
        client.serving.traffic(model, {int(control): 100.0})
    links = {**lineage(ctx, inputs), "model": model, "version": candidate,
             "production_before": production, "decision": decision, "why": why}
    run_id = next((v["run_id"] for v in inputs.values()
                   if isinstance(v, dict) and v.get("run_id")), None)
    if run_id:
        client.experiments.set_tags(run_id, {k: str(links[k]) for k in (
            "pipeline", "run_id", "data_fingerprint", "rollout", "decision")} | {
            "pipeline_run": str(links["run_id"])})
    return links | {"training_run": run_id}
