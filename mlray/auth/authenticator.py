"""Who a presented credential stands for, decided in the process that serves the call.

A control-plane actor or an ingress replica holds one :class:`Authenticator`. It accepts:

- nothing: the local admin while the platform runs with ``auth: none``, else refused;
- the internal credential (``mli_...``): the platform itself, admin of every project;
- a token (``mlt_...``): checked by its signature and expiry (cheap);
- an API key (``mlr_...``): the slow hash is paid once per key and process. After that a
  keyed digest of the key is remembered with its caller, and the key's record is read
  again (cheap: no hash) once ``ttl_s`` has passed, so a revocation or expiry takes effect
  within ``ttl_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlray.auth.book import PUBLIC_REFUSAL, ApiKey, KeyBook
from mlray.auth.keys import KEY_PREFIX, parse_key
from mlray.auth.tokens import (
    INTERNAL_PREFIX,
    TOKEN_PREFIX,
    PlatformSecret,
    platform_caller,
    platform_secret,
)
from mlray.errors import Unauthenticated
from mlray.identity import Caller
from mlray.storage.base import StateStore

__all__ = ["NO_KEY", "Authenticator", "store_authenticator"]

#: What a call without a credential hears where keys are required.
NO_KEY = ("an API key is required: pass api_key= to mlray.connect or set MLRAY_API_KEY "
          "(or MLRAY_API_KEY_FILE)")
DEFAULT_TTL_S = 5.0


@dataclass
class _Known:
    digest: bytes
    caller: Caller
    checked_at: float


class Authenticator:
    """Credential → :class:`Caller`, with a per-process cache of verified keys.

    Args:
        secret: the platform's secret (internal credential and token signatures).
        resolve: the slow path for a key (verifies its hash; raises Unauthenticated).
        record: a key's record by public id, or None (no hash: cheap).
        anonymous: who a call without a credential is (None: such calls are refused).
        ttl_s: how long a verified key's record is trusted before it is read again.
    """

    def __init__(self, secret: PlatformSecret, resolve: Callable[[str], Caller],
                 record: Callable[[str], ApiKey | None], *, anonymous: Caller | None,
                 ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._resolve = resolve
        self._record = record
        self.anonymous = anonymous
        self.ttl_s = ttl_s
        self._clock = clock
        self._pepper = secrets.token_bytes(32)
        self._known: dict[str, _Known] = {}
        self._lock = threading.Lock()

    def caller(self, credential: str | None) -> Caller:
        """The caller ``credential`` stands for.

        Raises:
            Unauthenticated: no credential where one is required, or one that is
                malformed, unknown, wrong, expired or revoked.
        """
        if credential is None or credential == "":
            if self.anonymous is None:
                raise Unauthenticated(NO_KEY)
            return self.anonymous
        if not isinstance(credential, str):
            raise Unauthenticated("a credential is an API key or token string, not "
                                  f"{type(credential).__name__}")
        if credential.startswith(INTERNAL_PREFIX):
            if not self._secret.is_internal(credential):
                raise Unauthenticated(PUBLIC_REFUSAL)
            return platform_caller()
        if credential.startswith(TOKEN_PREFIX):
            claims = self._secret.verify(credential, self._clock())
            if claims.key_id is not None:
                self._check_record(claims.key_id)
            return claims.caller()
        if credential.startswith(KEY_PREFIX):
            return self.cached(credential) or self._verify(credential)
        raise Unauthenticated(PUBLIC_REFUSAL)

    def key_id(self, credential: str | None) -> str | None:
        """The API key a credential is or was minted from (None: no key behind it)."""
        if not credential:
            return None
        if credential.startswith(TOKEN_PREFIX):
            return self._secret.verify(credential, self._clock()).key_id
        return parse_key(credential)

    def lifetime_left(self, credential: str | None) -> float:
        """Seconds until a token expires; infinity for anything else."""
        if credential and credential.startswith(TOKEN_PREFIX):
            return max(0.0, self._secret.verify(credential, self._clock()).expires_at
                       - self._clock())
        return float("inf")

    def cached(self, key: str) -> Caller | None:
        """The caller of an API key verified here within ``ttl_s``, else None (no I/O:
        safe on an event loop; on None call :meth:`caller` off the loop)."""
        key_id = parse_key(key)
        known = self._known.get(key_id) if key_id else None
        if known is None or not hmac.compare_digest(known.digest, self._digest(key)):
            return None
        if self._clock() - known.checked_at >= self.ttl_s:
            return None
        return known.caller

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (its next use is checked again in full)."""
        with self._lock:
            self._known.pop(key_id, None)

    def _verify(self, key: str) -> Caller:
        key_id = parse_key(key)
        if key_id is None:
            raise Unauthenticated(PUBLIC_REFUSAL)
        known = self._known.get(key_id)
        digest = self._digest(key)
        if known is not None and hmac.compare_digest(known.digest, digest):
            caller = self._check_record(key_id)  # seen before: re-read, no slow hash
        else:
            caller = self._resolve(key)
        with self._lock:
            self._known[key_id] = _Known(digest, caller, self._clock())
        return caller

    def _check_record(self, key_id: str) -> Caller:
        info = self._record(key_id)
        if info is None or info.state(self._clock()) != "active":
            self.forget(key_id)
            raise Unauthenticated(PUBLIC_REFUSAL)
        return info.caller()

    def _digest(self, key: str) -> bytes:
        return hmac.new(self._pepper, key.encode(), hashlib.sha256).digest()


def store_authenticator(store: StateStore, auth: str, user: str,
                        ttl_s: float = DEFAULT_TTL_S) -> Authenticator:
    """An authenticator reading keys straight from ``store`` (a control-plane process);
    with ``auth == "none"`` a call without a credential is the local admin ``user``."""
    book = KeyBook(store)
    anonymous = Caller.local_admin(user) if auth == "none" else None
    return Authenticator(platform_secret(store), book.resolve, book.record,
                         anonymous=anonymous, ttl_s=ttl_s)
