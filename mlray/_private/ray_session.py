"""Joining or starting Ray."""

from __future__ import annotations

import logging
import os

__all__ = ["ensure_ray"]

_dashboard_url: str | None = None


def ensure_ray(address: str | None, namespace: str) -> str | None:
    """Make sure this process is connected to Ray; return the dashboard URL if known.

    With an address, join it (``"local"`` always starts a new local Ray). Without, join
    a running cluster (``auto``), and when there is none, start a local Ray.
    """
    # A cluster with token auth only accepts clients that say so before ray is imported.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    global _dashboard_url
    if ray.is_initialized():
        return _dashboard_url
    quiet = {"namespace": namespace, "logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        context = ray.init(address=address, **quiet)
    else:
        try:
            context = ray.init(address="auto", **quiet)
        except ConnectionError:
            context = ray.init(**quiet)
    url = getattr(context, "dashboard_url", None)
    _dashboard_url = f"http://{url}" if url and not url.startswith("http") else url
    return _dashboard_url
