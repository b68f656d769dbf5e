"""Durable state and artifacts: one interface each, the backend picked by URL."""

from mlray.storage.artifacts import ArtifactRef, ArtifactStore
from mlray.storage.base import AuditEntry, Delete, Document, Put, StateStore
from mlray.storage.urls import STATE_SCHEMES, check_state_url

__all__ = [
    "STATE_SCHEMES",
    "ArtifactRef",
    "ArtifactStore",
    "AuditEntry",
    "Delete",
    "Document",
    "Put",
    "StateStore",
    "open_state_store",
]


def open_state_store(url: str, *, redis_prefix: str = "mlray") -> StateStore:
    """Open the state store named by ``url`` (``sqlite:///path`` or ``redis://host:port/db``).

    Raises:
        ConfigError: the scheme names no backend (the message lists those that exist).
        BackendUnavailable: the backend cannot be reached.
    """
    from mlray.errors import ConfigError

    try:
        check_state_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc), field="state_url") from None
    if url.startswith("sqlite:"):
        from mlray.storage.sqlite import SQLiteStateStore

        return SQLiteStateStore(url)
    from mlray.storage.redis import RedisStateStore

    return RedisStateStore(url, prefix=redis_prefix)
