"""The ``jobs`` actor: a thin shell over :class:`mlray.tracking.jobs.JobBook`."""

from __future__ import annotations

import ray

from actors._shell import ServiceActor

__all__ = ["JobsActor"]


@ray.remote
class JobsActor(ServiceActor):
    """Owns training and tuning job records."""

    NAME = "jobs"
    API = frozenset({"create_job", "update_job", "cancel_job", "get_job", "list_jobs"})
