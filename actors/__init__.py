"""Long-lived control-plane actors: thin shells over mlray's services."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mlray.composition import SERVICE_NAMES
from mlray.config import PlatformConfig
from mlray.errors import ConfigError

__all__ = ["ACTORS", "CORE", "ActorHandles", "actor_names", "actors_config", "find_or_start",
           "running_config", "start_actors"]

#: One actor per control-plane service, in start order; ``deployments`` drives Ray Serve and
#: ``alerts`` evaluates rules over the ``monitor``'s values.
ACTORS = (*SERVICE_NAMES, "deployments", "alerts")
#: What a client needs at once: the platform's config (``registry``) and who calls
#: (``keys``). The others start on first use (:class:`ActorHandles`); ``mlray up`` and
#: serving start them all.
CORE = ("registry", "keys")


def _classes() -> dict[str, Any]:
    from actors.abtests import AbTestsActor
    from actors.alerts import AlertsActor
    from actors.breakers import BreakersActor
    from actors.deployments import DeploymentsActor
    from actors.experiments import ExperimentsActor
    from actors.features import FeaturesActor
    from actors.jobs import JobsActor
    from actors.keys import KeysActor
    from actors.monitor import MonitorActor
    from actors.pipelines import PipelinesActor
    from actors.quotas import QuotasActor
    from actors.registry import RegistryActor

    classes = {cls.NAME: cls for cls in (RegistryActor, ExperimentsActor, JobsActor,
                                         BreakersActor, FeaturesActor, MonitorActor,
                                         DeploymentsActor, AlertsActor, KeysActor,
                                         QuotasActor, PipelinesActor, AbTestsActor)}
    return {name: classes[name] for name in ACTORS}


def actor_names() -> tuple[str, ...]:
    """Names of the control-plane actors, in start order."""
    return ACTORS


def start_actors(config: PlatformConfig, names: Iterable[str] = ACTORS,
                 timeout_s: float = 300.0) -> dict[str, Any]:
    """Create (or find) the control-plane actors called ``names`` (default: all) and wait
    until each answers ``ping`` (a process each: minutes on a busy two-core machine).

    Raises:
        ConfigError: the Ray cluster has several alive nodes and a store in ``config`` is
            node-local (see :func:`mlray.storage.locality.check_shared_storage`).
    """
    import ray

    from actors._shell import actor_options
    from mlray.storage.locality import check_shared_storage

    check_shared_storage(config, [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]])

    classes = _classes()
    handles = {name: classes[name].options(**actor_options(name, config)).remote(config)
               for name in names}
    ray.get([h.ping.remote() for h in handles.values()], timeout=timeout_s)
    return handles


class ActorHandles(Mapping[str, Any]):
    """The control-plane actors of one platform by name, each created (or found) the first
    time it is asked for, with the platform's config."""

    def __init__(self, config: PlatformConfig, started: dict[str, Any]) -> None:
        self._config = config
        self._handles = dict(started)
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Any:
        found = self._handles.get(name)
        if found is not None:
            return found
        if name not in ACTORS:
            raise KeyError(name)
        with self._lock:
            if name not in self._handles:
                self._handles.update(start_actors(self._config, (name,)))
            return self._handles[name]

    def __iter__(self) -> Iterator[str]:
        return iter(ACTORS)

    def __len__(self) -> int:
        return len(ACTORS)


def find_or_start(name: str, namespace: str) -> Any:
    """The handle of control-plane actor ``name`` in ``namespace``; started with the
    running platform's own config when it has not started yet (actors start on first use).

    Raises:
        ValueError: no platform runs in ``namespace`` (its ``registry`` is not there).
    """
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        config = running_config(namespace)
        if config is None:
            raise
        return start_actors(config, (name,))[name]


def actors_config(handles: dict[str, Any], timeout_s: float = 60.0) -> PlatformConfig:
    """The config the running actors were created with; they must all agree.

    Raises:
        ConfigError: two actors run on different configs (state split between stores),
            naming the key and both values.
    """
    import ray

    from mlray.config import config_differences

    names = list(handles)
    configs = ray.get([handles[n].config.remote() for n in names], timeout=timeout_s)
    first = configs[0]
    for name, other in zip(names[1:], configs[1:], strict=True):
        split = config_differences(other, first)
        if split:
            key, line = next(iter(split.items()))
            raise ConfigError(f"the running actors disagree: {names[0]} vs {name}: {line} "
                              "(restart them: `mlray down`, then `mlray up`)", field=key)
    return first


def running_config(namespace: str, timeout_s: float = 30.0) -> PlatformConfig | None:
    """The config of the platform running in ``namespace`` (its ``registry`` actor's), or
    None when no actors run there; creates nothing."""
    import ray

    try:
        actor = ray.get_actor(ACTORS[0], namespace=namespace)
    except ValueError:
        return None
    return ray.get(actor.config.remote(), timeout=timeout_s)
