"""One ingress replica's request-rate quota gate: no request waits on an actor.

Each project's rate is one budget for every replica together, held by the ``quotas``
actor (:mod:`mlray.quotas.rate`). A :class:`QuotaGate` spends its replica's leased slice
per request (:meth:`QuotaGate.admit`: 429 with ``Retry-After`` when it has none) and, in a
background task, exchanges with the actor every ``interval_s`` (sooner after a refusal):
it reports the requests counted since the last exchange (the actor stores them before it
answers: ``mlray usage``), leases fresh slices, and learns each project's rate quota. A
report that fails is sent again with the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import ray

from mlray.errors import QuotaExceeded
from mlray.quotas.rate import Lease

__all__ = ["QuotaGate"]

log = logging.getLogger("mlray.ingress")
CALL_TIMEOUT_S = 10.0
#: Exchanges a second while a project has a rate quota, and without one.
LIMITED_INTERVAL_S = 0.1
IDLE_INTERVAL_S = 1.0
MIN_GAP_S = 0.02


class QuotaGate:
    """The request-rate gate of one replica serving ``projects``.

    Args:
        namespace: where the ``quotas`` actor runs.
        credential: what the replica's calls present (the platform's own).
        projects: the projects this replica answers for.
    """

    def __init__(self, namespace: str, credential: str | None, projects: list[str]) -> None:
        self._namespace, self._credential = namespace, credential
        self._projects = list(projects)
        self.lease = Lease()
        self._actor: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    def _quotas(self) -> Any:
        if self._actor is None:
            self._actor = ray.get_actor("quotas", namespace=self._namespace)
        return self._actor

    def load(self) -> None:
        """Learn the rate quotas once, blocking (the replica's constructor); a platform
        without the ``quotas`` actor leaves every project unlimited."""
        try:
            answer = ray.get(self._quotas().invoke.remote("exchange", self._credential,
                                                          self._projects),
                             timeout=CALL_TIMEOUT_S)
        except Exception:
            log.warning("no rate quotas yet (the quotas actor did not answer); the "
                        "background exchange keeps trying", exc_info=True)
            return
        self.lease.limits = {p: r for p, r in answer.limits.items() if r is not None}

    def admit(self, project: str) -> None:
        """Count one request of ``project``; within a running event loop.

        Raises:
            QuotaExceeded: the project's rate is spent for now (``retry_after`` set).
        """
        self.ensure_started()
        wait = self.lease.take(project)
        if wait > 0:
            if self._wake is not None:
                self._wake.set()  # lease again now, not at the next tick
            rps = self.lease.limits[project]
            raise QuotaExceeded(
                f"quota requests_per_s of project {project!r} reached: limit {rps:g} "
                "requests/s across all ingress replicas; retry later",
                field="requests_per_s", retry_after=wait)

    def ensure_started(self) -> None:
        """Start the background exchange if it is not running (needs the event loop)."""
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._exchange_forever())

    async def exchange(self) -> None:
        """One exchange: report the counts, lease what is running low, learn the limits."""
        admitted, refused = self.lease.drain_counts()
        try:
            answer = await asyncio.wait_for(self._quotas().invoke.remote(
                "exchange", self._credential, self._projects, self.lease.wants(), admitted,
                refused), CALL_TIMEOUT_S)
        except BaseException:
            self.lease.restore_counts(admitted, refused)  # sent with the next exchange
            raise
        self.lease.limits = {p: r for p, r in answer.limits.items() if r is not None}
        for project, grant in answer.grants.items():
            self.lease.add(project, grant)

    async def _exchange_forever(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await self.exchange()
            except Exception:  # the actor may be restarting; leases run out meanwhile
                log.warning("quota exchange failed", exc_info=True)
            interval = LIMITED_INTERVAL_S if self.lease.limits else IDLE_INTERVAL_S
            await asyncio.sleep(MIN_GAP_S)  # refusals in a burst wake it once
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval - MIN_GAP_S)
