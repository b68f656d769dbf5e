"""Quotas and usage through the client."""

from __future__ import annotations

from typing import Any

from mlray.client.facade import Who, _Facade
from mlray.quotas.types import QuotaLimits, UsageReport

__all__ = ["QuotasClient"]


class QuotasClient(_Facade):
    """Quotas and usage of one project."""

    def __init__(self, transport: Any, who: Who, project: str) -> None:
        super().__init__("quotas", transport, who, project)

    def set(self, *, replace: bool = False, **limits: float | None) -> QuotaLimits:
        """Set some quotas (``models=10``, ``requests_per_s=50``; None lifts one); the
        others stay unless ``replace`` (admin of every project; audited)."""
        return self._call("set_quotas", limits, replace=replace)

    def show(self) -> QuotaLimits:
        """The project's quotas (None: unlimited)."""
        return self._call("get_quotas", read=True)

    def usage(self, since: float | None = None) -> UsageReport:
        """What the project used since ``since`` (Unix time; default: ever)."""
        return self._call("usage", since, read=True)
