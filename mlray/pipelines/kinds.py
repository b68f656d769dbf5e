"""The built-in stage kinds: one table from kind to the code that runs it.

Each entry is a ``module:callable`` taking a :class:`~mlray.pipelines.stage.StageContext`,
exactly like a user's stage; a kind that starts something outliving its task (a rollout,
an experiment) adopts what its run started before (``ctx.task.since``) and has an undo in
:data:`UNDO`, run when the run is cancelled. Adding a kind (``abtest``, ``evaluate``) is
one line here; ``approval`` runs no code: the engine holds it until someone approves.

The built-ins call the platform through ``ctx.client()`` (the run's requester, by a
project-scoped token). A model version is taken from ``params.version`` or else from the
first upstream output that carries one (``train`` and ``tune`` return it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlray.errors import InvalidInput

__all__ = ["KINDS", "UNDO", "newest_own", "own_rollout", "started_since", "target_of",
           "undo_of"]

_HERE = "mlray.pipelines.kinds"

#: kind -> ``module:callable`` of its implementation.
KINDS: dict[str, str] = {
    "data_validation": f"{_HERE}:data_validation",
    "training_set": f"{_HERE}:training_set",
    "train": f"{_HERE}:train",
    "tune": f"{_HERE}:tune",
    "validate": f"{_HERE}:validate",
    "evaluate": "mlray.pipelines.retraining:evaluate",
    "deploy": f"{_HERE}:deploy",
    "abtest": "mlray.pipelines.abtest_stage:abtest",
    "promote": f"{_HERE}:promote",
}


#: kind -> ``module:callable`` that stops what a cancelled stage of that kind started.
UNDO: dict[str, str] = {
    "deploy": f"{_HERE}:stop_rollout",
    "abtest": "mlray.pipelines.abtest_stage:stop_experiment",
}
#: Seconds of clock difference between two actors' clocks that :func:`started_since`
#: allows for.
CLOCK_SLACK_S = 5.0


def undo_of(kind: str) -> str | None:
    """The code that undoes what a stage of ``kind`` started; None when it starts nothing
    that outlives it."""
    return UNDO.get(kind)


def started_since(created_at: float, since: float | None) -> bool:
    """True when something created at ``created_at`` was created since a run's stage
    first started (``since``; None: it never started before, nothing is its own)."""
    return since is not None and created_at >= since - CLOCK_SLACK_S


def target_of(kind: str) -> str | None:
    """The code a stage of ``kind`` runs; None for ``approval``.

    Raises:
        InvalidInput: a built-in kind that has no implementation yet.
    """
    from mlray.pipelines.definitions import BUILTIN_KINDS

    if kind == "approval":
        return None
    if kind in KINDS:
        return KINDS[kind]
    if kind in BUILTIN_KINDS:
        raise InvalidInput(f"stage kind {kind!r} is not implemented yet; use a "
                           "'module:callable' stage", field="kind")
    return kind


def _param(ctx: Any, name: str) -> Any:
    if name not in ctx.params:
        raise InvalidInput(f"stage {ctx.stage!r} ({ctx.task.target}) needs param {name!r}",
                           field=f"params.{name}")
    return ctx.params[name]


def _version(ctx: Any) -> int:
    if "version" in ctx.params:
        return int(ctx.params["version"])
    for stage in ctx.task.inputs:
        try:
            value = ctx.input(stage)
        except InvalidInput:
            continue
        if isinstance(value, dict) and isinstance(value.get("version"), int):
            return int(value["version"])
    raise InvalidInput(f"stage {ctx.stage!r} needs params.version or an upstream stage "
                       "that returns one", field="params.version")


def data_validation(ctx: Any) -> dict[str, Any]:
    """Check a Parquet file against a feature view's fields and validators
    (params: ``path``, ``view``); fails naming the first bad column and rows."""
    import pyarrow.parquet as pq

    from mlray.features.validate import check_fields

    path, view = _param(ctx, "path"), _param(ctx, "view")
    table = pq.read_table(path)
    fields = ctx.client().features.repo().feature_view(view).fields
    check_fields(table, fields, f"{path} (view {view!r})")
    return {"path": str(path), "rows": table.num_rows, "view": view}


def training_set(ctx: Any) -> Path:
    """Point-in-time training rows (params: ``entity_rows`` Parquet path, ``features``:
    refs or a feature service name); the output is a Parquet file."""
    import pyarrow.parquet as pq

    rows = pq.read_table(_param(ctx, "entity_rows"))
    table = ctx.client().features.get_historical_features(rows, _param(ctx, "features"))
    out = ctx.workdir / "training_set.parquet"
    pq.write_table(table, out)
    return out


def _train_config(ctx: Any) -> Any:
    """The stage's training config (param ``config``). With ``data_from`` (an upstream
    stage, e.g. ``training_set``), its rows are that stage's output, as fetched and
    sha256-checked, with no second feature join: the model is trained on exactly the
    rows whose fingerprint the lineage records."""
    from mlray.training.config import load_train_config

    config = load_train_config(_param(ctx, "config"))
    upstream = ctx.params.get("data_from")
    if not upstream:
        return config
    rows = ctx.input_path(str(upstream))
    data = config.data.model_copy(update={"path": str(rows), "feature_service": None})
    return config.model_copy(update={"data": data})


def train(ctx: Any) -> dict[str, Any]:
    """Train, register and gate a model from a training config (params: ``config``,
    optional ``data_from``: the upstream stage whose output rows it trains on)."""
    from mlray.training.orchestrator import run_training

    outcome = run_training(ctx.client(), _train_config(ctx))
    return {"model": outcome.version.model if outcome.version else None,
            "version": outcome.version.version if outcome.version else None,
            "run_id": outcome.run_id, "test_metrics": outcome.test_metrics}


def tune(ctx: Any) -> dict[str, Any]:
    """Sweep (the config's ``tune`` section), register the best trial's model."""
    from mlray.training.tuning import run_tuning

    outcome = run_tuning(ctx.client(), _train_config(ctx))
    return {"model": outcome.version.model if outcome.version else None,
            "version": outcome.version.version if outcome.version else None,
            "run_id": outcome.best_run_id, "test_metrics": outcome.test_metrics}


def validate(ctx: Any) -> dict[str, Any]:
    """Have the platform validate a version on labelled data (params: ``model``, ``data``,
    ``label``, optional ``version``)."""
    model = _param(ctx, "model")
    version = ctx.client().registry.validate(model, _version(ctx), _param(ctx, "data"),
                                             label=_param(ctx, "label"))
    report = version.validation
    return {"model": model, "version": version.version,
            "passed": bool(report and report.passed)}


def newest_own(found: list[Any], since: float | None, keep: Callable[[Any], bool]
               ) -> Any | None:
    """The newest of ``found`` (experiments, rollouts) that ``keep`` accepts and was
    created since a run's stage first started it: what that stage started."""
    mine = [x for x in found if keep(x) and started_since(x.created_at, since)]
    return max(mine, key=lambda x: x.created_at) if mine else None


def own_rollout(rollouts: list[Any], model: str, version: int, strategy: str,
                since: float | None, *, running_only: bool = False) -> Any | None:
    """The rollout a run's ``deploy`` stage started (of ``model`` v``version`` with
    ``strategy``), running or succeeded (a rolled back or failed one is not adopted: a new
    try deploys again)."""
    wanted = ("running",) if running_only else ("running", "succeeded")
    return newest_own(rollouts, since, lambda r: (
        r.model == model and r.version == version and str(r.strategy) == strategy
        and str(r.status) in wanted))


def deploy(ctx: Any) -> dict[str, Any]:
    """Roll a version out and wait for the rollout (params: ``model``, optional
    ``version``, ``strategy``). A rollout this run's stage already started (before a
    crash or a cancel) is adopted, not started twice."""
    model, version = _param(ctx, "model"), _version(ctx)
    strategy = str(ctx.params.get("strategy", "canary"))
    client = ctx.client()
    mine = own_rollout(client.serving.rollouts(model), model, version, strategy,
                       ctx.task.since)
    if mine is None:
        rollout = client.serving.deploy(model, version, strategy=strategy, wait=True)
    elif str(mine.status) == "running":
        rollout = client.serving.wait(mine.id)
    else:
        rollout = mine
    return {"model": model, "version": rollout.version, "rollout": rollout.id,
            "status": str(rollout.status)}


def stop_rollout(ctx: Any) -> dict[str, Any]:
    """Undo of ``deploy``: roll back the rollout the cancelled stage started, if it still
    runs."""
    model, version = _param(ctx, "model"), _version(ctx)
    strategy = str(ctx.params.get("strategy", "canary"))
    client = ctx.client()
    mine = own_rollout(client.serving.rollouts(model), model, version, strategy,
                       ctx.task.since, running_only=True)
    if mine is None:
        return {"model": model, "rolled_back": None}
    client.serving.rollback(model, f"pipeline run {ctx.run_id} cancelled")
    return {"model": model, "rolled_back": mine.id}


def promote(ctx: Any) -> dict[str, Any]:
    """Move a version to Production (params: ``model``, optional ``version``)."""
    model = _param(ctx, "model")
    version = ctx.client().registry.promote(model, _version(ctx))
    return {"model": model, "version": version.version, "stage": str(version.stage)}
