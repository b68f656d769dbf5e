"""``mlray deploy|traffic|rollback|rollouts|retune``: serving from the command line."""

from __future__ import annotations

import typer

from mlray.cli._common import JsonOpt, emit, err_console, state, when
from mlray.errors import InvalidInput
from mlray.serving.rollout import Rollout, RolloutStatus, Strategy
from mlray.serving.traffic import TrafficPolicy

__all__ = ["deploy", "retune", "rollback", "rollouts", "traffic"]


def _rollout_rows(rollout: Rollout) -> list[list[object]]:
    rows: list[list[object]] = [["rollout", rollout.id], ["model", rollout.model],
                                ["version", rollout.version], ["strategy", rollout.strategy],
                                ["status", rollout.status], ["phase", rollout.phase]]
    if rollout.reason:
        rows.append(["reason", rollout.reason])
    rows += [[when(e.ts), e.message] for e in rollout.history]
    return rows


def deploy(
    model: str = typer.Argument(..., help="Registered model name."),
    version: int = typer.Option(..., "--version", "-v", min=1, help="Version to roll out."),
    strategy: Strategy = typer.Option(Strategy.CANARY, "--strategy", "-s",
                                      help="direct, blue-green, canary or shadow."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow it until it finishes."),
    timeout: float = typer.Option(900.0, "--timeout", min=1, help="Seconds to follow it."),
    as_json: bool = JsonOpt,
) -> None:
    """Roll a model version out on Ray Serve (needs a cluster: `mlray up`)."""
    serving = state.cluster_client().serving

    def progress(rollout: Rollout) -> None:
        if not as_json and rollout.history:
            err_console.print(f"[dim]{when(rollout.history[-1].ts)}[/dim] "
                              f"{rollout.history[-1].message}")

    rollout = serving.deploy(model, version, strategy=strategy.value, wait=wait,
                             timeout_s=timeout, on_change=progress)
    emit(rollout, as_json, ("", ""), _rollout_rows(rollout), f"rollout of {model} v{version}")
    if rollout.status in (RolloutStatus.ROLLED_BACK, RolloutStatus.FAILED):
        raise typer.Exit(1)


def _policy_rows(policy: TrafficPolicy) -> list[list[object]]:
    total = sum(policy.weights.values())
    rows: list[list[object]] = [[f"v{v}", f"{w:g}", f"{100 * w / total:.3g}%"]
                                for v, w in sorted(policy.weights.items())]
    rows += [[f"v{v}", "shadow", "copies"] for v in policy.shadows]
    rows.append(["placement", "sticky (routing key)" if policy.sticky else "random", ""])
    return rows


def traffic(
    model: str = typer.Argument(..., help="Registered model name."),
    weights: list[str] = typer.Argument(
        None, help="Shares per version: v1=90 v2=10; none shows the current policy."),
    shadow: list[int] = typer.Option(None, "--shadow", help="Versions that get copies."),
    sticky: bool = typer.Option(True, "--sticky/--random",
                                help="Place requests by their routing key, or at random."),
    as_json: bool = JsonOpt,
) -> None:
    """Show how a model's requests split between its versions, or set it."""
    if not weights:
        if shadow:
            raise InvalidInput("--shadow needs the shares too (e.g. v1=100 --shadow 2)",
                               field="weights")
        policy = state.client().registry.get_traffic(model)
        emit(policy, as_json, ("version", "weight", "share"), _policy_rows(policy),
             f"traffic of {model}")
        return
    parsed: dict[int, float] = {}
    for pair in weights:
        key, sep, value = pair.partition("=")
        number = key.lstrip("vV")
        try:
            if not sep or not number.isdigit():
                raise ValueError
            parsed[int(number)] = float(value)
        except ValueError:
            raise InvalidInput(f"weights are vN=share (e.g. v1=90), got {pair!r}",
                               field="weights") from None
    policy = state.client().serving.traffic(model, parsed, shadows=shadow or [], sticky=sticky)
    emit(policy, as_json, ("version", "weight", "share"), _policy_rows(policy),
         f"traffic of {model}")


def rollback(
    model: str = typer.Argument(..., help="Registered model name."),
    reason: str = typer.Option("rolled back by hand", "--reason", help="Recorded with it."),
    as_json: bool = JsonOpt,
) -> None:
    """Put back the traffic policy from before the model's latest rollout."""
    rollout = state.cluster_client().serving.rollback(model, reason)
    emit(rollout, as_json, ("", ""), _rollout_rows(rollout), f"rollback of {model}")


def rollouts(
    model: str = typer.Argument(None, help="Only this model."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000),
    as_json: bool = JsonOpt,
) -> None:
    """Recent rollouts, newest first."""
    found = state.cluster_client().serving.rollouts(model, limit=limit)
    emit(found, as_json, ("id", "model", "version", "strategy", "status", "phase", "reason"),
         [[r.id, r.model, r.version, r.strategy, r.status, r.phase, r.reason or ""]
          for r in found], "rollouts")


def retune(
    model: str = typer.Argument(..., help="Registered model name."),
    version: int = typer.Option(..., "--version", "-v", min=1),
    max_batch_size: int = typer.Option(None, "--max-batch-size", min=1),
    batch_wait: float = typer.Option(None, "--batch-wait-s", min=0),
    as_json: bool = JsonOpt,
) -> None:
    """Change a live version's batching (Serve user_config; no redeploy)."""
    serving = state.cluster_client().serving.retune(model, version, max_batch_size=max_batch_size,
                                                batch_wait_timeout_s=batch_wait)
    emit(serving, as_json, ("", ""), [["max_batch_size", serving.tuning.max_batch_size],
                                      ["batch_wait_timeout_s",
                                       serving.tuning.batch_wait_timeout_s]],
         f"{model} v{version}")
