"""Long-lived control-plane actors: thin shells over mlray's services."""

from __future__ import annotations

from typing import Any

from mlray._private.services import SERVICE_NAMES
from mlray.config import PlatformConfig

__all__ = ["ACTORS", "actor_names", "start_actors"]

#: One actor per control-plane service, in start order; ``deployments`` drives Ray Serve and
#: ``alerts`` evaluates rules over the ``monitor``'s values.
ACTORS = (*SERVICE_NAMES, "deployments", "alerts")


def _classes() -> dict[str, Any]:
    from actors.alerts import AlertsActor
    from actors.breakers import BreakersActor
    from actors.deployments import DeploymentsActor
    from actors.experiments import ExperimentsActor
    from actors.features import FeaturesActor
    from actors.jobs import JobsActor
    from actors.monitor import MonitorActor
    from actors.registry import RegistryActor

    classes = {cls.NAME: cls for cls in (RegistryActor, ExperimentsActor, JobsActor,
                                         BreakersActor, FeaturesActor, MonitorActor,
                                         DeploymentsActor, AlertsActor)}
    return {name: classes[name] for name in ACTORS}


def actor_names() -> tuple[str, ...]:
    """Names of the control-plane actors, in start order."""
    return ACTORS


def start_actors(config: PlatformConfig, timeout_s: float = 120.0) -> dict[str, Any]:
    """Create (or find) every control-plane actor and wait until each answers ``ping``."""
    import ray

    from actors._shell import actor_options

    handles = {name: cls.options(**actor_options(name, config)).remote(config)
               for name, cls in _classes().items()}
    ray.get([h.ping.remote() for h in handles.values()], timeout=timeout_s)
    return handles
