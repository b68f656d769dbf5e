"""The ``quotas`` actor: a thin shell over :class:`mlray.quotas.service.QuotaService`.

It is the one holder of every project's request-rate budget (in memory: a restart only
refills the buckets); ingress replicas lease slices of it in the background.
"""

from __future__ import annotations

import ray

from actors._shell import ServiceActor

__all__ = ["QuotasActor"]


@ray.remote
class QuotasActor(ServiceActor):
    """Sets and shows quotas, reports usage, leases request budgets to ingress replicas."""

    NAME = "quotas"
    API = frozenset({"set_quotas", "get_quotas", "usage", "exchange"})
