"""Joining or starting Ray."""

from __future__ import annotations

import logging
import os

__all__ = ["ensure_ray"]

_dashboard_url: str | None = None


def local_cpus(configured: int = 0) -> int:
    """Logical CPUs for a local Ray: ``configured``, else the cores but at least 4."""
    return configured or max(os.cpu_count() or 1, 4)


def ensure_ray(address: str | None, namespace: str, num_cpus: int = 0) -> str | None:
    """Make sure this process is connected to Ray; return the dashboard URL if known.

    With an address, join it (``"local"`` always starts a new local Ray). Without, join
    a running cluster (``auto``), and when there is none, start a local Ray.
    """
    import ray  # RAY_AUTH_MODE was set when mlray was imported (mlray/__init__.py)

    global _dashboard_url
    if ray.is_initialized():
        return _dashboard_url
    quiet = {"namespace": namespace, "logging_level": logging.WARNING, "log_to_driver": False}
    if address == "local":
        context = ray.init(address="local", num_cpus=local_cpus(num_cpus), **quiet)
    elif address:
        context = ray.init(address=address, **quiet)
    else:
        try:
            context = ray.init(address="auto", **quiet)
        except ConnectionError:
            context = ray.init(num_cpus=local_cpus(num_cpus), **quiet)
    url = getattr(context, "dashboard_url", None)
    _dashboard_url = f"http://{url}" if url and not url.startswith("http") else url
    return _dashboard_url
