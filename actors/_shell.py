"""What every control-plane actor shares: options, construction and dispatch.

An actor builds its service from the platform config in ``__init__`` (so a restarted
actor reloads its state from the store) and forwards calls to the service's public
methods. The service persists every change before it returns, so an answer from the
actor means the change is durable.

The actor is where a call is authenticated: every call presents a credential (an API key,
a token minted from one, the platform's internal credential, or None where the platform
runs with ``auth: none``) and the actor derives the :class:`~mlray.identity.Caller` the
service checks. A ``Caller`` built by the client is never taken on trust.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mlray._private.redact import install_log_redaction
from mlray._private.transport import service_arguments
from mlray.auth.authenticator import Authenticator, store_authenticator
from mlray.composition import build_service, open_stores
from mlray.config import PlatformConfig
from mlray.errors import InvalidInput
from mlray.storage.base import StateStore

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
    """Base of the actor shells: ``invoke`` authenticates the call and forwards it to one
    of the service's public methods.

    ``API`` methods take the :class:`Caller` first, except those the service lists in its
    ``PLATFORM`` set (data-plane feeds and housekeeping: they take no caller and answer
    only the platform itself, i.e. admin of every project) and in its ``PUBLIC`` set
    (no credential at all); see :func:`mlray._private.transport.service_arguments`.
    """

    NAME: ClassVar[str]
    API: ClassVar[frozenset[str]]

    def __init__(self, config: PlatformConfig) -> None:
        install_log_redaction()
        self._config = config
        store, artifacts = open_stores(config)
        self._service = build_service(self.NAME, store, artifacts, config.offline_uri)
        self._authenticate(store)

    def _authenticate(self, store: StateStore) -> None:
        """Set up who calls may come from (a subclass's ``__init__`` must call it)."""
        self._auth: Authenticator = store_authenticator(store, self._config.auth,
                                                        self._config.user)

    def invoke(self, method: str, credential: str | None = None, *args: Any,
               **kwargs: Any) -> Any:
        """Call ``method`` on the service as the caller ``credential`` stands for
        (``whoami`` answers that caller); unknown names are refused."""
        return self._call(self._service, method, credential, args, kwargs)

    def _call(self, target: Any, method: str, credential: str | None, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
        """``target.method`` called as :meth:`invoke` describes."""
        if method == "whoami":
            return self._auth.caller(credential)
        if method not in self.API:
            raise InvalidInput(f"{self.NAME} has no method {method!r}", field="method")
        if method in getattr(target, "PUBLIC", ()):  # no credential: the args as given
            return getattr(target, method)(credential, *args, **kwargs)
        caller = self._auth.caller(credential)
        return getattr(target, method)(*service_arguments(target, method, caller, args),
                                       **kwargs)

    def ping(self) -> str:
        """Liveness probe: answers once the service has loaded its state."""
        return "ok"

    def config(self) -> PlatformConfig:
        """The platform config this actor was created with: the cluster's source of truth
        for where state lives (a subclass's ``__init__`` must set ``self._config``)."""
        return self._config
