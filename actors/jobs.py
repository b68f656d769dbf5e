"""The ``jobs`` actor: a thin shell over :class:`mlray.tracking.jobs.JobBook`."""

from __future__ import annotations

import ray

from actors._shell import ServiceActor, open_stores
from mlray.config import PlatformConfig
from mlray.tracking.jobs import JobBook

__all__ = ["JobsActor"]


@ray.remote
class JobsActor(ServiceActor):
    """Owns training and tuning job records."""

    NAME = "jobs"
    API = frozenset({"create_job", "update_job", "cancel_job", "get_job", "list_jobs"})

    def build(self, config: PlatformConfig) -> JobBook:
        store, _ = open_stores(config)
        return JobBook(store)
