"""The base of the client facades: one service, one project, one identity."""

from __future__ import annotations

from typing import Any

from mlray._private.transport import Transport
from mlray.identity import Caller
from mlray.storage.idempotency import new_key

__all__ = ["Who"]


#: Who a call is made as: a :class:`Caller` in this process (local mode), else the
#: credential the actors authenticate (an API key or token; None: the platform's
#: anonymous caller, the local admin under ``auth: none``).
Who = Caller | str | None


class _Facade:
    def __init__(self, service: str, transport: Transport, who: Who, project: str) -> None:
        self._service = service
        self._transport = transport
        self._who = who
        self.project = project

    def _call(self, method: str, *args: Any, read: bool = False, **kwargs: Any) -> Any:
        return self._transport.call(self._service, method, self._who, self.project, *args,
                                    idempotent=read, **kwargs)

    def _create(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A create that is safe to retry: one fresh idempotency key for every attempt of
        it, so the transport retries it when the actor or the store was lost and the
        service answers a repeat with the first result."""
        return self._transport.call(self._service, method, self._who, self.project, *args,
                                    idempotency_key=new_key(), **kwargs)
