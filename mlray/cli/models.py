"""``mlray models``: register, list, show, validate, gates, promote, alias, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mlray.cli._common import JsonOpt, emit, parse_pairs, state, when
from mlray.registry.gates import GateSpec
from mlray.registry.types import ModelVersion, Stage, TensorSpec
from mlray.registry.validation import trusted_report

app = typer.Typer(help="Registered models and their versions.", no_args_is_help=True)


def _version_rows(versions: list[ModelVersion]) -> list[list[object]]:
    return [[v.model, v.version, v.stage.value, ",".join(v.aliases),
             " ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items())),
             v.lineage.run_id or ""] for v in versions]


def _schema(specs: list[TensorSpec]) -> str:
    return ", ".join(f"{s.name}: {s.dtype}" for s in specs) or "none"


def _baseline(baseline: dict[str, Any] | None) -> str:
    """A training baseline in one line (the bins themselves are in --json)."""
    if not baseline:
        return "none (no drift detection)"
    rows = baseline.get("rows")
    parts = [f"{rows:,} training rows" if isinstance(rows, int) else "rows unknown",
             f"{len(baseline.get('numeric') or {})} numeric feature(s) binned",
             f"{len(baseline.get('categorical') or {})} categorical"]
    if baseline.get("predictions"):
        parts.append("prediction distribution")
    return "; ".join(parts) + " (bins with --json)"


def version_summary(v: ModelVersion) -> list[list[object]]:
    """The rows ``mlray models show NAME --version N`` prints: what a reader checks first."""
    rows: list[list[object]] = [
        ["model", f"{v.model} v{v.version}"], ["stage", v.stage.value],
        ["aliases", ", ".join(v.aliases) or "none"],
        ["created", f"{when(v.created_at)} by {v.created_by}"]]
    if v.description:
        rows.append(["description", v.description])
    rows += [[f"metric {k}", f"{val:.4g}"] for k, val in sorted(v.metrics.items())]
    if v.params:
        rows.append(["params", " ".join(f"{k}={val}" for k, val in sorted(v.params.items()))])
    if v.tags:
        rows.append(["tags", " ".join(f"{k}={val}" for k, val in sorted(v.tags.items()))])
    rows += [["input schema", _schema(v.input_schema)],
             ["output schema", _schema(v.output_schema)],
             ["lineage run", v.lineage.run_id or "none"],
             ["lineage data", v.lineage.data_fingerprint or "none"]]
    if v.lineage.source:
        rows.append(["lineage source", v.lineage.source])
    rows += [["artifact", v.artifact_uri],
             ["artifact sha256", f"{v.artifact_sha256} ({v.artifact_size:,} bytes)"],
             ["baseline", _baseline(v.baseline)]]
    if v.validation is None:
        rows.append(["gates", "not evaluated"])
    elif trusted_report(v) is None:
        rows.append(["gates", "not counted: the report was not computed by the platform "
                              f"(run `mlray validate {v.model} {v.version}`)"])
    else:
        rows.append(["gates", "passed" if v.validation.passed else
                     f"FAILED: {', '.join(v.validation.failed_critical)}"])
        rows.append(["gates evaluated", f"{when(v.validation.evaluated_at)} by the platform "
                     f"for {v.validation.requested_by} on {v.validation.data_uri}"])
        rows += [["gate", f"{r.name}: {'passed' if r.passed else 'FAILED'} ({r.severity}); "
                          f"{r.message}"] for r in v.validation.results]
    return rows


_VERSION_COLUMNS = ("model", "version", "stage", "aliases", "metrics", "run")
_WHOLE = ("run",)


@app.command("register")
def register(
    name: str = typer.Argument(..., help="Model name."),
    artifact: Path = typer.Option(..., "--artifact", "-a", help="File or directory to store."),
    metric: list[str] = typer.Option(None, "--metric", "-m", help="key=value, repeatable."),
    param: list[str] = typer.Option(None, "--param", "-p", help="key=value, repeatable."),
    tag: list[str] = typer.Option(None, "--tag", "-t", help="key=value, repeatable."),
    run_id: str = typer.Option(None, "--run-id", help="Run that produced it."),
    description: str = typer.Option("", "--description", "-d"),
    as_json: bool = JsonOpt,
) -> None:
    """Upload an artifact and register it as the next version (creating the model)."""
    client = state.client()
    version = client.registry.register(
        name, artifact, metrics=parse_pairs(metric, "metric", numeric=True),
        params=parse_pairs(param, "param"), tags=parse_pairs(tag, "tag"), run_id=run_id,
        description=description)
    emit(version, as_json, _VERSION_COLUMNS, _version_rows([version]), "registered")


@app.command("list")
def list_models(
    name_like: str = typer.Option(None, "--name", help="Substring of the name."),
    stage: Stage = typer.Option(None, "--stage", help="Only versions in this stage."),
    metric_filter: str = typer.Option(None, "--filter", help="e.g. 'metrics.auc >= 0.9'"),
    as_json: bool = JsonOpt,
) -> None:
    """List models, or versions when --stage or --filter is given."""
    client = state.client()
    if stage or metric_filter:
        versions = client.registry.search_versions(filter=metric_filter, name_like=name_like,
                                                   stage=stage)
        emit(versions, as_json, _VERSION_COLUMNS, _version_rows(versions), "versions",
             whole=_WHOLE)
        return
    models = client.registry.list_models(name_like=name_like)
    emit(models, as_json, ("model", "latest", "aliases", "owner", "description"),
         [[m.name, m.latest_version, " ".join(f"{a}→v{v}" for a, v in sorted(m.aliases.items())),
           m.owner, m.description] for m in models], f"models in {client.project}")


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Model name or models:/ URI."),
    version: int = typer.Option(None, "--version", "-v", help="Show this version."),
    as_json: bool = JsonOpt,
) -> None:
    """Show a model with its versions, or one version."""
    client = state.client()
    if name.startswith("models:/") or version is not None:
        v = (client.registry.resolve(name) if name.startswith("models:/")
             else client.registry.get_version(name, version))
        emit(v, as_json, ("", ""), version_summary(v), f"{v.model} v{v.version}")
        return
    model = client.registry.get_model(name)
    versions = client.registry.list_versions(name)
    emit({"model": model, "versions": versions}, as_json, _VERSION_COLUMNS,
         _version_rows(versions), f"{name} ({model.framework}) {model.description}",
         whole=_WHOLE)


@app.command("promote")
def promote(
    name: str = typer.Argument(...),
    version: int = typer.Argument(...),
    stage: Stage = typer.Argument(Stage.PRODUCTION, help="Target stage."),
    keep_existing: bool = typer.Option(False, "--keep-existing",
                                       help="Do not archive the current Production version."),
    force: bool = typer.Option(False, "--force",
                               help="Promote despite failed critical gates (admin, audited)."),
    as_json: bool = JsonOpt,
) -> None:
    """Move a version to a stage (default Production)."""
    client = state.client()
    v = client.registry.transition_stage(name, version, stage,
                                         archive_existing=not keep_existing, force=force)
    emit(v, as_json, _VERSION_COLUMNS, _version_rows([v]), "promoted")


@app.command("alias")
def alias(
    name: str = typer.Argument(...),
    alias_name: str = typer.Argument(..., metavar="ALIAS"),
    version: int = typer.Argument(None, help="Version to point at (omit with --delete)."),
    move: bool = typer.Option(False, "--move", help="Repoint an alias that exists."),
    delete: bool = typer.Option(False, "--delete", help="Remove the alias."),
    as_json: bool = JsonOpt,
) -> None:
    """Set, move or delete an alias."""
    client = state.client()
    if delete:
        client.registry.delete_alias(name, alias_name)
        emit({"deleted": alias_name}, as_json, ("deleted",), [[alias_name]])
        return
    if version is None:
        raise typer.BadParameter("give a VERSION, or --delete", param_hint="VERSION")
    model = client.registry.set_alias(name, alias_name, version, move=move)
    emit(model, as_json, ("alias", "version"), sorted(model.aliases.items()), name)


@app.command("delete")
def delete(
    name: str = typer.Argument(...),
    version: int = typer.Option(None, "--version", "-v", help="Delete only this version."),
    force: bool = typer.Option(False, "--force", help="Also when in Production (admin)."),
    as_json: bool = JsonOpt,
) -> None:
    """Delete a version, or a whole model."""
    client = state.client()
    if version is not None:
        client.registry.delete_version(name, version)
        emit({"deleted": f"{name}/{version}"}, as_json, ("deleted",), [[f"{name} v{version}"]])
        return
    count = client.registry.delete_model(name, force=force)
    emit({"deleted": name, "versions": count}, as_json, ("deleted", "versions"),
         [[name, count]])


@app.command("architectures")
def architectures(
    allow: list[str] = typer.Option(None, "--allow", help="module:callable to allow (admin)."),
    revoke: list[str] = typer.Option(None, "--revoke", help="module:callable to remove (admin)."),
    as_json: bool = JsonOpt,
) -> None:
    """List the model architectures replicas may load besides the built-ins; platform
    admins add or remove module:callable entries (audited)."""
    client = state.client()
    listed = (client.registry.allow_architectures(allow=allow, revoke=revoke)
              if allow or revoke else client.registry.allowed_architectures())
    emit(listed, as_json, ("allowed architecture",), [[a] for a in listed])


def _gates_for(path: Path | None, model: str) -> list[GateSpec]:
    """The gates ``path`` (a validation.yaml) names for ``model``; none without a file."""
    if path is None:
        return []
    from mlray.config.files import load_yaml_model
    from mlray.training.config import ValidationFile

    return load_yaml_model(path, ValidationFile).gates_for(model)


GatesFileOpt = typer.Option(None, "--gates", exists=True, dir_okay=False,
                            help="validation.yaml (configs/validation.yaml's shape).")


@app.command("validate")
def validate(
    name: str = typer.Argument(...),
    version: int = typer.Argument(...),
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False,
                              help="Labelled Parquet file to evaluate on (uploaded)."),
    label: str = typer.Option(..., "--label", help="The column holding the truth."),
    gates: Path = GatesFileOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Have the platform evaluate a version on labelled data against the model's required
    gates plus those of --gates; the report it records is the only one promotion counts."""
    v = state.client().registry.validate(name, version, data, label=label,
                                         gates=_gates_for(gates, name))
    report = v.validation
    assert report is not None
    rows = [[k, f"{val:.4g}"] for k, val in sorted(report.metrics.items())]
    rows += [[r.name, f"{'passed' if r.passed else 'FAILED'} ({r.severity}); {r.message}"]
             for r in report.results]
    emit(report, as_json, ("", ""), rows,
         f"{name} v{version}: gates {'passed' if report.passed else 'FAILED'}")


@app.command("gates")
def gates_command(
    name: str = typer.Argument(...),
    set_from: Path = typer.Option(None, "--set", exists=True, dir_okay=False,
                                  help="Make this validation.yaml's gates for the model its "
                                       "required gates (project admin, audited)."),
    as_json: bool = JsonOpt,
) -> None:
    """The gates every validation of a model evaluates, whoever asks for it."""
    client = state.client()
    listed = (client.registry.set_required_gates(name, _gates_for(set_from, name))
              if set_from is not None else client.registry.required_gates(name))
    emit(listed, as_json, ("required gate", "severity"), [[g.name, g.severity] for g in listed])
