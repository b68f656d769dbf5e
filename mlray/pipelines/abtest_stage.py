"""The ``abtest`` stage kind: start an A/B experiment of a candidate version against the
version that serves, wait until it concludes, and say what happened.

Params: ``model`` (required), ``min_effect`` (required), optional ``version`` (else the
upstream stage's), ``control`` (else the version taking most of the model's traffic, the
Production version when none), ``weights`` (control and candidate shares, default
``[50, 50]``), ``guardrails`` (``["error_ratio<=0.05"]``), ``poll_s`` (default 5),
``wait_s`` (default 3600) and any :class:`~mlray.abtest.experiment.ExperimentSpec` field
(``metric``, ``kind``, ``alpha``, ``power``, ``sequential``, ``max_samples``, ...). The
experiment itself promotes the winner or rolls back; the output says which (``winner``
is the version kept, ``decision`` the experiment's status).
"""

from __future__ import annotations

from typing import Any

from mlray.errors import InvalidInput

__all__ = ["abtest"]

_OWN = frozenset({"model", "min_effect", "version", "control", "weights", "guardrails",
                  "poll_s", "wait_s"})


def _control(client: Any, model: str, candidate: int) -> int:
    policy = client.registry.get_traffic(model)
    others = [(w, v) for v, w in policy.weights.items() if v != candidate and w > 0]
    if not others:
        raise InvalidInput(f"no version of {model} but the candidate v{candidate} serves; "
                           "set params.control", field="params.control")
    return max(others)[1]


def abtest(ctx: Any) -> dict[str, Any]:
    """Run the experiment to its end (see the module docstring)."""
    from mlray.pipelines.kinds import _param, _version

    model, min_effect = _param(ctx, "model"), float(_param(ctx, "min_effect"))
    candidate = _version(ctx)
    client = ctx.client()
    control = int(ctx.params.get("control") or _control(client, model, candidate))
    if control == candidate:
        raise InvalidInput(f"the candidate v{candidate} is the control", field="params.control")
    w_control, w_candidate = ctx.params.get("weights", [50, 50])
    fields = {k: v for k, v in ctx.params.items() if k not in _OWN}
    exp = client.abtests.start(model, {control: float(w_control),
                                       candidate: float(w_candidate)},
                               min_effect=min_effect,
                               guardrails=list(ctx.params.get("guardrails", [])), **fields)
    done = client.abtests.wait(model, timeout_s=float(ctx.params.get("wait_s", 3600)),
                               poll_s=float(ctx.params.get("poll_s", 5)))
    decision = done.last.decision if done.last else None
    result = done.last.result if done.last else None
    return {"model": model, "version": candidate, "control": control, "experiment": exp.id,
            "decision": done.status, "winner": done.winner,
            "rolled_back": done.status != "promoted", "outcome": done.outcome,
            "reason": decision.reason if decision else "",
            "p_value": result.p_value if result else None,
            "e_value": result.e_value if result else None}
