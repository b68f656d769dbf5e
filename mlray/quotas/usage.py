"""Usage per project: counters that accrue (requests, replica-seconds) and figures read
from what the project holds (job run time, artifact bytes).

Accruing counters live in hourly documents ``usage/<project>/<hour>``; every addition is
a compare-and-set on them, written before the call that reported it returns, so a
restarted actor loses nothing it acknowledged. Replica-seconds accrue from the
deployments actor's passes; the time since its last pass is kept in the same atomic write
(``usage_clock/replicas``), so a restart neither skips nor counts twice (a gap longer than
``max_gap_s``, when nothing ran the passes, counts as ``max_gap_s``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from mlray.errors import Conflict
from mlray.quotas.types import UsageReport
from mlray.storage.base import ABSENT, Op, Put, StateStore

__all__ = ["USAGE", "UsageMeter", "job_resources"]

USAGE = "usage"
CLOCK = "usage_clock"
HOUR_S = 3600
_RETRIES = 32


def _hour(ts: float) -> int:
    return int(ts // HOUR_S) * HOUR_S


def job_resources(details: Mapping[str, Any]) -> tuple[float, float]:
    """CPUs and GPUs a job held while it ran, from its recorded training config."""
    config = details.get("config") or {}
    scaling = config.get("scaling") or {}
    per_worker = scaling.get("resources_per_worker") or {"CPU": 1.0}
    workers = int(scaling.get("num_workers", 1))
    tune = config.get("tune")
    if tune:  # a sweep places max_concurrent_trials * workers_per_trial workers at once
        workers = int(tune.get("max_concurrent_trials", 1)) * int(
            tune.get("workers_per_trial", 1))
    gpus = float(per_worker.get("GPU", 1.0 if scaling.get("use_gpu") else 0.0))
    return workers * float(per_worker.get("CPU", 1.0)), workers * gpus


class UsageMeter:
    """Adds to and reads the accruing usage counters over a :class:`StateStore`."""

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time,
                 max_gap_s: float = 30.0) -> None:
        self._store, self._clock, self._max_gap_s = store, clock, max_gap_s

    def _additions(self, counts: Mapping[str, Mapping[str, float]], ts: float) -> list[Op]:
        hour = _hour(ts)
        keys = [(USAGE, f"{project}/{hour:012d}") for project in counts]
        ops: list[Op] = []
        for (collection, key), doc, (project, add) in zip(
                keys, self._store.get_many(keys), counts.items(), strict=True):
            data = dict(doc.data) if doc else {"project": project, "hour": hour}
            for name, amount in add.items():
                data[name] = data.get(name, 0) + amount
            ops.append(Put(collection=collection, key=key, data=data,
                           expected_version=doc.version if doc else ABSENT))
        return ops

    def add(self, counts: Mapping[str, Mapping[str, float]]) -> None:
        """Add ``{project: {counter: amount}}`` to the current hour, durably."""
        counts = {p: {k: v for k, v in c.items() if v} for p, c in counts.items()}
        counts = {p: c for p, c in counts.items() if c}
        if not counts:
            return
        for attempt in range(_RETRIES):
            try:
                self._store.apply(self._additions(counts, self._clock()))
                return
            except Conflict:  # another writer added to the same hour: read and add again
                if attempt == _RETRIES - 1:
                    raise

    def accrue_replicas(self, replicas: Mapping[str, int],
                        deployments: Mapping[str, int] | None = None) -> float:
        """Add replica-seconds for the time since the last pass (``replicas`` per project
        ran all along) and keep what is deployed now (:meth:`deployed`); returns the
        seconds counted."""
        for attempt in range(_RETRIES):
            ts = self._clock()
            clock = self._store.get(CLOCK, "replicas")
            last = clock.data["at"] if clock else ts
            elapsed = min(max(0.0, ts - last), self._max_gap_s)
            ops = self._additions({p: {"replica_seconds": n * elapsed}
                                   for p, n in replicas.items() if n and elapsed}, ts)
            now_deployed = {"replicas": dict(replicas), "deployments": dict(deployments or {})}
            ops.append(Put(collection=CLOCK, key="replicas", data={"at": ts, **now_deployed},
                           expected_version=clock.version if clock else ABSENT))
            try:
                self._store.apply(ops)
                return elapsed
            except Conflict:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def deployed(self, project: str) -> dict[str, int]:
        """Deployments and replicas the project had at the deployments actor's last pass."""
        clock = self._store.get(CLOCK, "replicas")
        data = clock.data if clock else {}
        return {name: int(data.get(name, {}).get(project, 0))
                for name in ("deployments", "replicas")}

    def totals(self, project: str, since: float = 0.0) -> dict[str, float]:
        """The project's accrued counters from the hour holding ``since`` on."""
        out: dict[str, float] = {}
        for doc in self._store.list(USAGE, prefix=f"{project}/"):
            if doc.data["hour"] + HOUR_S <= since:
                continue
            for name, value in doc.data.items():
                if name not in ("project", "hour"):
                    out[name] = out.get(name, 0) + value
        return out

    def report(self, project: str, since: float, jobs: list[Mapping[str, Any]],
               storage_bytes: int) -> UsageReport:
        """Everything :class:`UsageReport` holds; ``jobs`` are the project's job records."""
        totals = self.totals(project, since)
        now = self._clock()
        cpu = gpu = 0.0
        for job in jobs:
            start = job.get("started_at")
            if start is None:
                continue
            end = job.get("ended_at") or now
            seconds = max(0.0, end - max(start, since))
            cpus, gpus = job_resources(job.get("details") or {})
            cpu, gpu = cpu + cpus * seconds, gpu + gpus * seconds
        return UsageReport(project=project, since=since,
                           requests=int(totals.get("requests", 0)),
                           requests_refused=int(totals.get("requests_refused", 0)),
                           replica_seconds=totals.get("replica_seconds", 0.0),
                           job_cpu_seconds=cpu, job_gpu_seconds=gpu,
                           storage_bytes=storage_bytes)
