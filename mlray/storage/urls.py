"""State-store URL schemes, kept apart so configuration can check them without a backend."""

from __future__ import annotations

from urllib.parse import urlparse

__all__ = ["STATE_SCHEMES", "check_state_url"]

STATE_SCHEMES = ("sqlite", "redis", "rediss")


def check_state_url(url: str) -> str:
    """Return ``url`` if its scheme names a state backend, else raise ``ValueError``."""
    scheme = urlparse(url).scheme
    if scheme not in STATE_SCHEMES:
        known = ", ".join(f"{s}://" for s in STATE_SCHEMES)
        shown = scheme or "(none)"
        raise ValueError(f"unknown state store scheme {shown!r} in {url!r}; use {known}")
    if scheme == "sqlite" and not url.startswith("sqlite:///"):
        raise ValueError(f"{url!r}: a SQLite URL is sqlite:///<path> (three slashes)")
    return url
