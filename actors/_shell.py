"""What every control-plane actor shares: options, construction and dispatch.

An actor builds its service from the platform config in ``__init__`` (so a restarted
actor reloads its state from the store) and forwards calls to the service's public
methods. The service persists every change before it returns, so an answer from the
actor means the change is durable.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mlray._private.redact import install_log_redaction
from mlray._private.services import build_service, open_stores
from mlray.config import PlatformConfig
from mlray.errors import InvalidInput

__all__ = ["ServiceActor", "actor_options"]


def actor_options(name: str, config: PlatformConfig) -> dict[str, Any]:
    """Options for a named, detached, always-restarted control-plane actor."""
    return {
        "name": name,
        "namespace": config.namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        "max_task_retries": 0,
        "num_cpus": config.actor_num_cpus,
        "resources": dict(config.actor_resources),
    }


class ServiceActor:
    """Base of the actor shells: ``invoke`` calls one of the service's public methods."""

    NAME: ClassVar[str]
    API: ClassVar[frozenset[str]]

    def __init__(self, config: PlatformConfig) -> None:
        install_log_redaction()
        self._config = config
        store, artifacts = open_stores(config)
        self._service = build_service(self.NAME, store, artifacts, config.offline_uri)

    def invoke(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on the service; unknown names are refused."""
        if method not in self.API:
            raise InvalidInput(f"{self.NAME} has no method {method!r}", field="method")
        return getattr(self._service, method)(*args, **kwargs)

    def ping(self) -> str:
        """Liveness probe: answers once the service has loaded its state."""
        return "ok"

    def config(self) -> PlatformConfig:
        """The platform config this actor was created with: the cluster's source of truth
        for where state lives (a subclass's ``__init__`` must set ``self._config``)."""
        return self._config
