"""Custom Ray resources that pin work to nodes (e.g. ``{"mlray-control": 0.01}``).

A node started with ``--resources '{"mlray-control": 1}'`` takes the control-plane
actors that ask for a share of it; model replicas can ask for a worker-group resource
the same way. CPUs, GPUs and memory have their own settings, so they are refused here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["CustomResources", "check_custom_resources"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/-]{0,63}$")
_BUILT_IN = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
_MAX_AMOUNT = 1_000_000.0


def check_custom_resources(resources: dict[str, float]) -> dict[str, float]:
    """Return ``resources`` when each name is a custom resource and each amount is in
    (0, 1e6]; otherwise raise ``ValueError`` naming the entry."""
    for name, amount in resources.items():
        if name in _BUILT_IN:
            raise ValueError(f"{name!r} is a built-in resource; use its own setting "
                             "(num_cpus, num_gpus), not a custom resource")
        if not _NAME.match(name):
            raise ValueError(f"resource name {name!r}: 1-64 letters, digits, '_', '.', ':', "
                             "'/', '-', starting with a letter")
        if not 0 < amount <= _MAX_AMOUNT:
            raise ValueError(f"resource {name!r}: amount {amount:g} must be above 0 and at "
                             f"most {_MAX_AMOUNT:g}")
    return resources


#: A validated map of custom resource name -> amount.
CustomResources = Annotated[dict[str, float], AfterValidator(check_custom_resources)]
