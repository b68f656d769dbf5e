"""How a client reaches the services: over actor handles, or in-process (no Ray)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from mlray.errors import BackendUnavailable, MlrayError
from mlray.identity import ALL_PROJECTS, Role

__all__ = ["ActorTransport", "LocalTransport", "Transport", "service_arguments", "task_error"]


def service_arguments(service: Any, method: str, caller: Any,
                      args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The positional arguments of ``service.method`` for an authenticated ``caller``.

    Most methods take the caller first. Those in the service's ``PLATFORM`` set take none
    and answer only the platform itself (admin of every project).

    Raises:
        PermissionDenied: a ``PLATFORM`` method and a caller that is not admin of ``*``.
    """
    if method in getattr(service, "PLATFORM", ()):
        caller.require(ALL_PROJECTS, Role.admin)
        return args
    return (caller, *args)


def task_error(service: str, method: str, exc: BaseException, *,
               detail: bool = True) -> MlrayError:
    """The mlray error an actor call's failed task stands for: the service's own error as
    it was raised, else an internal error naming the call and the error's type (and, with
    ``detail``, its text: not for answers that leave the cluster)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, MlrayError):
        return cause
    text = f": {cause}" if detail else ""
    return MlrayError(f"internal error in {service}.{method}: {type(cause).__name__}{text}")


class Transport(Protocol):
    """Calls ``method`` of the service named ``service``."""

    def call(self, service: str, method: str, *args: Any, idempotent: bool = False,
             **kwargs: Any) -> Any:
        """Invoke and return the result, raising :class:`MlrayError` subclasses."""


class LocalTransport:
    """Services in this process: the CLI's embedded mode and tests without Ray. The first
    argument of a call is the :class:`~mlray.identity.Caller` (trusted: same process)."""

    def __init__(self, services: dict[str, Any]) -> None:
        self.services = services

    def call(self, service: str, method: str, *args: Any, idempotent: bool = False,
             **kwargs: Any) -> Any:
        found = self.services.get(service)
        if found is None:
            raise BackendUnavailable(f"{service} needs a Ray cluster (Ray Serve); start one "
                                     "with `mlray up`")
        if method in getattr(found, "PUBLIC", ()):
            return getattr(found, method)(*args, **kwargs)
        caller, *rest = args
        return getattr(found, method)(*service_arguments(found, method, caller, tuple(rest)),
                                      **kwargs)


class ActorTransport:
    """Named control-plane actors; Ray errors become mlray errors.

    Reads are retried while an actor restarts. So are writes that carry an
    ``idempotency_key`` (the service answers a repeat with the first result), also when
    the service reports its store unavailable. Other writes are not retried (one that
    was in flight when the actor died may or may not have been applied; the caller is
    told).
    """

    def __init__(self, handles: Mapping[str, Any], timeout_s: float = 60.0,
                 read_retries: int = 20) -> None:
        self.handles = handles
        self.timeout_s = timeout_s
        self.read_retries = read_retries

    def call(self, service: str, method: str, *args: Any, idempotent: bool = False,
             **kwargs: Any) -> Any:
        import ray
        from ray import exceptions as rex

        keyed = kwargs.get("idempotency_key") is not None
        safe = idempotent or keyed
        attempts = self.read_retries + 1 if safe else 1
        for attempt in range(attempts):
            again = attempt + 1 < attempts
            try:
                ref = self.handles[service].invoke.remote(method, *args, **kwargs)
                return ray.get(ref, timeout=self.timeout_s)
            except rex.RayTaskError as exc:
                if isinstance(getattr(exc, "cause", None), BackendUnavailable) and keyed \
                        and again:
                    time.sleep(_backoff_s(attempt))
                    continue
                raise task_error(service, method, exc) from None
            except (rex.RayActorError, rex.ActorUnavailableError) as exc:
                if again:
                    time.sleep(_backoff_s(attempt))
                    continue
                what = "" if safe else "; the write may or may not have been applied"
                raise BackendUnavailable(
                    f"the {service} actor was lost during {method}{what}: {exc}") from None
            except rex.GetTimeoutError:
                what = "" if safe else "; the write may or may not have been applied"
                raise BackendUnavailable(
                    f"the {service} actor did not answer {method} within "
                    f"{self.timeout_s}s{what}") from None
        raise AssertionError("unreachable")


def _backoff_s(attempt: int) -> float:
    """Seconds to wait before retry ``attempt + 1``: 0.1 s doubling, at most 2 s."""
    return min(0.1 * 2**attempt, 2.0)
