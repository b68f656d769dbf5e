"""API keys: who a caller is, proven by a secret the platform issued.

``mlray.auth.keys`` holds the key format and the slow hash; ``mlray.auth.book`` the keys
service over the state store; :func:`resolve` is what any process with a transport to the
control plane (the client, later the HTTP ingress) calls to turn a presented key into a
:class:`~mlray.identity.Caller`.
"""

from __future__ import annotations

from typing import Any

from mlray.auth.book import ApiKey, IssuedKey, KeyBook
from mlray.auth.keys import KEY_PREFIX, Refusal, parse_duration
from mlray.identity import Caller

__all__ = ["KEY_PREFIX", "ApiKey", "IssuedKey", "KeyBook", "Refusal", "parse_duration",
           "resolve"]


def resolve(transport: Any, secret: str) -> Caller:
    """The :class:`Caller` a presented API key stands for, as the control plane's ``keys``
    service decides it (``transport`` is any :class:`~mlray._private.transport.Transport`).

    Raises:
        Unauthenticated: the key is malformed, unknown, wrong, expired or revoked (one
            public message; the reason is logged by the service with the key's public id).
    """
    return transport.call("keys", "resolve", secret, idempotent=True)
