"""The ``keys`` actor: a thin shell over :class:`mlray.auth.book.KeyBook`.

It alone reads key hashes; every other process asks it to ``resolve`` a presented key.
"""

from __future__ import annotations

import ray

from actors._shell import ServiceActor

__all__ = ["KeysActor"]


@ray.remote
class KeysActor(ServiceActor):
    """Issues, lists, revokes and resolves API keys."""

    NAME = "keys"
    API = frozenset({"create_key", "list_keys", "revoke_key", "resolve", "bootstrap"})
