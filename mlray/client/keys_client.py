"""API keys and tokens through the client."""

from __future__ import annotations

from typing import Any

from mlray.auth.book import ApiKey, IssuedKey
from mlray.client.facade import Who, _Facade

__all__ = ["KeysClient"]


class KeysClient(_Facade):
    """API keys: issue (admin of every project the key reaches), list and revoke."""

    def __init__(self, transport: Any, who: Who, project: str) -> None:
        super().__init__("keys", transport, who, project)

    def create(self, user: str, roles: dict[str, str], *, expires_in_s: float | None = None,
               description: str = "") -> IssuedKey:
        """A new key for ``user`` with ``roles`` ({project or '*': 'predict' | 'viewer' |
        'editor' | 'admin'}); ``.key`` holds the secret, shown this once."""
        return self._call("create_key", user, roles, expires_in_s=expires_in_s,
                          description=description)

    def list(self, *, all_projects: bool = False) -> list[ApiKey]:
        """Keys with a role in this project, or every key (admin of '*')."""
        return self._call("list_keys", all_projects=all_projects, read=True)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by its public id; it is refused from then on."""
        return self._call("revoke_key", key_id)

    def bootstrap(self, user: str) -> IssuedKey | None:
        """The first admin key, for ``user``, when the platform has no key yet (else None);
        only the platform itself may ask (``connect(as_platform=True)``)."""
        return self._transport.call("keys", "bootstrap", self._who, user)

    def token(self, ttl_s: float) -> str:
        """A token standing for this client's key in this project only, for ``ttl_s``
        seconds (at most a day): what a job or a Train controller presents."""
        return self._transport.call("keys", "token", self._who, self.project, ttl_s)
