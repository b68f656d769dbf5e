"""The built-in stage kinds: one table from kind to the code that runs it.

Each entry is a ``module:callable`` taking a :class:`~mlray.pipelines.stage.StageContext`,
exactly like a user's stage. Adding a kind (``abtest``, ``evaluate``) is one line here;
``approval`` runs no code: the engine holds it until someone approves.

The built-ins call the platform through ``ctx.client()`` (the run's requester, by a
project-scoped token). A model version is taken from ``params.version`` or else from the
first upstream output that carries one (``train`` and ``tune`` return it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlray.errors import InvalidInput

__all__ = ["KINDS", "target_of"]

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
    from mlray.training.config import load_train_config

    return load_train_config(_param(ctx, "config"))


def train(ctx: Any) -> dict[str, Any]:
    """Train, register and gate a model from a training config (params: ``config``)."""
    from mlray.training.runner import run_training

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


def deploy(ctx: Any) -> dict[str, Any]:
    """Roll a version out and wait for the rollout (params: ``model``, optional
    ``version``, ``strategy``)."""
    model = _param(ctx, "model")
    rollout = ctx.client().serving.deploy(model, _version(ctx),
                                          strategy=ctx.params.get("strategy", "canary"),
                                          wait=True)
    return {"model": model, "version": rollout.version, "rollout": rollout.id,
            "status": str(rollout.status)}


def promote(ctx: Any) -> dict[str, Any]:
    """Move a version to Production (params: ``model``, optional ``version``)."""
    model = _param(ctx, "model")
    version = ctx.client().registry.promote(model, _version(ctx))
    return {"model": model, "version": version.version, "stage": str(version.stage)}
