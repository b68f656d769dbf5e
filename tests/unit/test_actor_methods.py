"""Every method an actor exposes is authenticated: it takes the caller first, or its
service lists it as answering only the platform (``PLATFORM``) or needing no credential
(``PUBLIC``). A method added without either would reach a service unchecked."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from actors import _classes
from mlray.abtest.service import AbTestService
from mlray.alerts.service import AlertsService
from mlray.auth.book import KeyBook
from mlray.features.service import FeatureRegistry
from mlray.monitoring.monitor import Monitor
from mlray.pipelines.service import PipelineService
from mlray.quotas.service import QuotaService
from mlray.registry.service import ModelRegistry
from mlray.serving.breaker_board import BreakerBoard
from mlray.serving.reconcile import Reconciler
from mlray.serving.rollout import RolloutController
from mlray.tracking.jobs import JobBook
from mlray.tracking.service import ExperimentTracker

SERVICES: dict[str, Any] = {
    "registry": ModelRegistry, "experiments": ExperimentTracker, "jobs": JobBook,
    "breakers": BreakerBoard, "features": FeatureRegistry, "monitor": Monitor,
    "keys": KeyBook, "alerts": AlertsService, "deployments": RolloutController,
    "pipelines": PipelineService, "quotas": QuotaService, "abtests": AbTestService,
}


def _target(actor: str, method: str) -> Any:
    return Reconciler if (actor, method) == ("deployments", "apps") else SERVICES[actor]


@pytest.mark.parametrize("actor", sorted(SERVICES))
def test_each_exposed_method_checks_its_caller(actor: str) -> None:
    shell = _classes()[actor].__ray_metadata__.modified_class
    assert shell.API, actor
    for method in sorted(shell.API):
        service = _target(actor, method)
        exempt = set(getattr(service, "PLATFORM", ())) | set(getattr(service, "PUBLIC", ()))
        params = list(inspect.signature(getattr(service, method)).parameters)
        if method in exempt:
            assert "caller" not in params, f"{actor}.{method}: exempt but takes a caller"
        else:
            assert params[1:2] == ["caller"], (
                f"{actor}.{method} takes no caller first and is not in its service's "
                f"PLATFORM or PUBLIC set: {params}")
