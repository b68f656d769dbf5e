"""The ``keys`` actor: a thin shell over :class:`mlray.auth.book.KeyBook`.

It alone reads key hashes for other processes: a client asks it to ``resolve`` a
presented key, and to mint a ``token`` (a job's short-lived stand-in for its key).
"""

from __future__ import annotations

from typing import Any

import ray

from actors._shell import ServiceActor
from mlray.auth.tokens import platform_secret
from mlray.errors import InvalidInput, PermissionDenied

__all__ = ["KeysActor"]

#: The longest a minted token may live (a job that runs longer mints a new one).
MAX_TOKEN_TTL_S = 24 * 3600.0


@ray.remote
class KeysActor(ServiceActor):
    """Issues, lists, revokes and resolves API keys; mints tokens from them."""

    NAME = "keys"
    API = frozenset({"create_key", "list_keys", "revoke_key", "resolve", "bootstrap"})

    def invoke(self, method: str, credential: str | None = None, *args: Any,
               **kwargs: Any) -> Any:
        """As the base shell, plus ``token(project, ttl_s)``."""
        if method == "token":
            return self._token(credential, *args, **kwargs)
        return super().invoke(method, credential, *args, **kwargs)

    def _token(self, credential: str | None, project: str, ttl_s: float) -> str:
        """A token for the caller, holding only its role in ``project``, for ``ttl_s``."""
        if not isinstance(ttl_s, int | float) or not 0 < ttl_s <= MAX_TOKEN_TTL_S:
            raise InvalidInput(f"ttl_s must be in (0, {MAX_TOKEN_TTL_S:.0f}] seconds",
                               field="ttl_s")
        caller = self._auth.caller(credential)
        if caller.role_in(project) is None:
            raise PermissionDenied(f"user {caller.user!r} has no role in project {project!r}")
        store = self._service.store
        # a token minted from a token ends no later than it (no renewal without a key)
        ttl_s = min(float(ttl_s), self._auth.lifetime_left(credential))
        return platform_secret(store).mint(caller, ttl_s,
                                           key_id=self._auth.key_id(credential),
                                           project=project)
