"""``client.abtests``: start, watch and stop A/B experiments of one project."""

from __future__ import annotations

import time
from typing import Any

from mlray.abtest.experiment import Experiment, ExperimentSpec, parse_arms, parse_guardrail
from mlray.errors import DeadlineExceeded

__all__ = ["AbTestsClient"]


class AbTestsClient:
    """A/B experiments of one project, through the ``abtests`` actor."""

    def __init__(self, transport: Any, who: Any, project: str) -> None:
        self._transport = transport
        self._who = who
        self.project = project

    def _call(self, method: str, *args: Any, read: bool = False, **kwargs: Any) -> Any:
        return self._transport.call("abtests", method, self._who, self.project, *args,
                                    idempotent=read, **kwargs)

    def start(self, model: str, arms: dict[int, float] | str, *, min_effect: float,
              guardrails: list[str] | None = None, **fields: Any) -> Experiment:
        """Split ``model``'s traffic between ``arms`` (``{1: 50, 2: 50}`` or
        ``"v1=50,v2=50"``, the control first) and start the experiment; the other fields
        are :class:`ExperimentSpec`'s (``metric``, ``kind``, ``alpha``, ``power``,
        ``sequential``, ``baseline``, ``sd``, ``bandit``, ``secondary`` (``"correct,
        loss_amount:lower"``), ``correction`` (``holm`` or ``bh``), ``cuped``...).
        ``guardrails`` are ``"error_ratio<=0.05"`` strings."""
        spec = ExperimentSpec(
            model=model, arms=parse_arms(arms) if isinstance(arms, str) else dict(arms),
            min_effect=min_effect, guardrails=[parse_guardrail(g) for g in guardrails or []],
            **fields)
        return self._call("start", spec)

    def status(self, model: str) -> Experiment:
        """The model's running experiment after a fresh look (it may conclude), or its
        latest one."""
        return self._call("status", model)

    def stop(self, model: str) -> Experiment:
        """End the running experiment without a verdict: all traffic to the control."""
        return self._call("stop", model)

    def list(self) -> list[Experiment]:
        """The project's experiments, oldest first."""
        return self._call("list_abtests", read=True)

    def wait(self, model: str, timeout_s: float = 3600.0, poll_s: float = 5.0) -> Experiment:
        """The experiment once it concluded (looking every ``poll_s`` seconds).

        Raises:
            DeadlineExceeded: still running after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            exp = self.status(model)
            if exp.status != "running":
                return exp
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"experiment {exp.id} of {model} still runs after "
                                       f"{timeout_s:g}s", field="timeout_s")
            time.sleep(poll_s)
