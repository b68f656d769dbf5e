"""Whether a Redis server keeps what it acknowledged when it crashes.

mlray reports a write as done once Redis answered it. What survives a crash then depends
on the server's persistence:

* ``appendonly no``: only the last RDB snapshot (``save``) survives; with ``save ""`` a
  crash loses everything, otherwise every write since the last snapshot. Warned.
* ``appendonly yes`` + ``appendfsync always``: every acknowledged write is on disk. Safe.
* ``appendonly yes`` + ``appendfsync everysec``: Redis writes the log before it answers, so
  a Redis process crash (SIGKILL, OOM kill) loses nothing; a machine crash loses at most
  about the last second. Accepted (the rendered Redis runs this way).
* ``appendonly yes`` + ``appendfsync no``: the kernel flushes the log when it likes (tens of
  seconds on Linux), so a machine crash can lose that much. Warned.

Managed Redis services often refuse ``CONFIG``; then mlray cannot tell and says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

import redis

from mlray._private.redact import redact

__all__ = ["durability_risk", "warn_if_not_durable"]

log = logging.getLogger(__name__)
_warned: set[str] = set()
_lock = threading.Lock()


def durability_risk(settings: Mapping[str, str]) -> str | None:
    """Why acknowledged writes could be lost with these ``CONFIG GET`` values, or None.

    Args:
        settings: ``appendonly``, ``appendfsync`` and ``save`` as the server reports them.
    """
    appendonly = settings.get("appendonly", "no")
    fsync = settings.get("appendfsync", "everysec")
    save = settings.get("save", "")
    named = f"appendonly {appendonly}, appendfsync {fsync}, save {save!r}"
    if appendonly != "yes":
        lost = ("every write (no snapshots either)" if not save.strip()
                else "every write since the last snapshot")
        return f"{named}: a Redis crash loses {lost}"
    if fsync not in ("always", "everysec"):
        return (f"{named}: the log reaches the disk when the kernel flushes it, so a machine "
                "crash loses the writes of the last tens of seconds")
    return None


def _read(client: redis.Redis) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in ("appendonly", "appendfsync", "save"):
        for key, value in client.config_get(name).items():
            values[key.decode() if isinstance(key, bytes) else key] = (
                value.decode() if isinstance(value, bytes) else str(value))
    return values


def warn_if_not_durable(client: redis.Redis, url: str) -> str | None:
    """Log one warning per state-store server (per process) when its persistence could lose
    acknowledged writes, or when ``CONFIG GET`` is refused; returns the line logged (None
    when the server is durable or was already reported)."""
    shown = redact(url)
    with _lock:
        if shown in _warned:
            return None
        _warned.add(shown)
    try:
        risk = durability_risk(_read(client))
    except redis.ResponseError as exc:
        line = (f"state_url {shown}: cannot read the server's persistence settings (CONFIG GET "
                f"refused: {exc}); make sure it runs with appendonly yes, or a crash may "
                "lose acknowledged writes")
        log.warning(line)
        return line
    if risk is None:
        return None
    line = (f"state_url {shown}: {risk}; run it with appendonly yes and appendfsync everysec "
            "(or always)")
    log.warning(line)
    return line
