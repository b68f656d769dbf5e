"""The platform's own secret, and the short-lived tokens signed with it.

Every process that can open the state store is part of the platform (it could write any
record anyway). They share one random secret, kept in the store: presented as the
*internal credential* it makes a call the platform's own (admin of every project), and
it signs *tokens*: a user, roles and an expiry, handed to a job so that it acts for the
user who submitted it without holding that user's key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlray.errors import Conflict, Unauthenticated
from mlray.identity import ALL_PROJECTS, Caller, Role
from mlray.storage import open_state_store
from mlray.storage.base import StateStore

if TYPE_CHECKING:
    from mlray.config import PlatformConfig

__all__ = ["INTERNAL_PREFIX", "PLATFORM_USER", "TOKEN_PREFIX", "PlatformSecret", "TokenClaims",
           "platform_caller", "platform_credential", "platform_secret"]

INTERNAL_PREFIX = "mli_"
TOKEN_PREFIX = "mlt_"
#: The user the internal credential stands for (audit entries name it).
PLATFORM_USER = "mlray-platform"
_DOC = ("auth_meta", "platform_secret")


class TokenClaims(BaseModel):
    """What a token says: who, with which roles, until when, derived from which key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(min_length=1, max_length=128)
    roles: dict[str, Role]
    expires_at: float
    key_id: str | None = Field(None, description="The API key it was minted from, if any.")

    def caller(self) -> Caller:
        """The identity the token stands for."""
        return Caller(user=self.user, roles=self.roles)


class PlatformSecret:
    """The shared secret: checks the internal credential, mints and verifies tokens."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._signing = hmac.new(secret.encode(), b"mlray-token-v1", hashlib.sha256).digest()

    @property
    def credential(self) -> str:
        """The internal credential: presenting it makes a call the platform's own."""
        return INTERNAL_PREFIX + self._secret

    def is_internal(self, presented: str) -> bool:
        """True when ``presented`` is the internal credential (constant-time compare)."""
        return hmac.compare_digest(presented.encode(), self.credential.encode())

    def mint(self, caller: Caller, ttl_s: float, *, key_id: str | None = None,
             project: str | None = None) -> str:
        """A token for ``caller`` valid ``ttl_s`` seconds; with ``project``, it carries only
        the caller's role there (a job's token reaches no other project)."""
        roles = dict(caller.roles)
        if project is not None:
            held = caller.role_in(project)
            roles = {project: held} if held is not None else {}
        claims = TokenClaims(user=caller.user, roles=roles, expires_at=time.time() + ttl_s,
                             key_id=key_id)
        body = _b64(json.dumps(claims.model_dump(mode="json"), sort_keys=True).encode())
        return f"{TOKEN_PREFIX}{body}.{_b64(self._sign(body))}"

    def verify(self, token: str, now: float | None = None) -> TokenClaims:
        """The claims of a token this platform signed and that has not expired.

        Raises:
            Unauthenticated: malformed, forged or expired.
        """
        body, _, signature = token.removeprefix(TOKEN_PREFIX).partition(".")
        try:
            good = hmac.compare_digest(_unb64(signature), self._sign(body))
            claims = TokenClaims.model_validate_json(_unb64(body)) if good else None
        except (ValueError, ValidationError):
            claims = None
        if claims is None:
            raise Unauthenticated("invalid token")
        if (now if now is not None else time.time()) >= claims.expires_at:
            raise Unauthenticated("expired token: mint a new one from your API key")
        return claims

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._signing, body.encode(), hashlib.sha256).digest()


def platform_secret(store: StateStore) -> PlatformSecret:
    """The platform's secret from ``store``, created on first use (one per store)."""
    for _ in range(3):
        doc = store.get(*_DOC)
        if doc is not None:
            return PlatformSecret(str(doc.data["secret"]))
        try:
            store.put(*_DOC, {"secret": secrets.token_urlsafe(32)}, expected_version=0)
        except Conflict:  # another process created it first: read theirs
            continue
    raise Conflict("could not read or create the platform secret")


def platform_credential(config: PlatformConfig) -> str:
    """The internal credential of the platform whose state store ``config`` names."""
    store = open_state_store(config.resolved_state_url, redis_prefix=config.redis_prefix)
    try:
        return platform_secret(store).credential
    finally:
        store.close()


def platform_caller() -> Caller:
    """Who the internal credential stands for: admin of every project."""
    return Caller(user=PLATFORM_USER, roles={ALL_PROJECTS: Role.admin})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
