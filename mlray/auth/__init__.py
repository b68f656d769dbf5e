"""API keys: who a caller is, proven by a secret the platform issued.

``mlray.auth.keys`` holds the key format and the slow hash; ``mlray.auth.book`` the keys
service over the state store; :func:`resolve` is what any process with a transport to the
control plane (the client, later the HTTP ingress) calls to turn a presented key into a
:class:`~mlray.identity.Caller`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlray.auth.book import ApiKey, IssuedKey, KeyBook
from mlray.auth.keys import KEY_PREFIX, Refusal, parse_duration
from mlray.errors import InvalidInput
from mlray.identity import Caller

__all__ = ["KEY_ENV", "KEY_FILE_ENV", "KEY_PREFIX", "ApiKey", "IssuedKey", "KeyBook",
           "Refusal", "api_key_from_env", "parse_duration", "resolve"]

KEY_ENV = "MLRAY_API_KEY"
#: A file holding the key (a mounted Kubernetes Secret), read when ``KEY_ENV`` is unset.
KEY_FILE_ENV = "MLRAY_API_KEY_FILE"


def api_key_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The API key this process acts as: ``MLRAY_API_KEY``, else the contents of the file
    ``MLRAY_API_KEY_FILE`` names, read at each call (a Secret created after the pod
    started shows up without a restart); None when neither gives one (a named file that
    does not exist yet gives none).

    Raises:
        InvalidInput: the named file exists but cannot be read.
    """
    env = os.environ if env is None else env
    if env.get(KEY_ENV):
        return env[KEY_ENV]
    name = env.get(KEY_FILE_ENV)
    if not name:
        return None
    try:
        return Path(name).read_text().strip() or None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{KEY_FILE_ENV}: {name} cannot be read: "
                           f"{getattr(exc, 'strerror', None) or exc}",
                           field=KEY_FILE_ENV) from None


def resolve(transport: Any, secret: str) -> Caller:
    """The :class:`Caller` a presented API key stands for, as the control plane's ``keys``
    service decides it (``transport`` is any :class:`~mlray._private.transport.Transport`).

    Raises:
        Unauthenticated: the key is malformed, unknown, wrong, expired or revoked (one
            public message; the reason is logged by the service with the key's public id).
    """
    return transport.call("keys", "resolve", secret, idempotent=True)
