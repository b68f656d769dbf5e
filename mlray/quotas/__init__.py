"""Quotas and usage per project: count quotas checked where objects are created, a request
rate shared by every ingress replica, and usage counters that survive restarts."""

from mlray.quotas.guard import QuotaGuard, read_limits, storage_in_use
from mlray.quotas.rate import Lease, RateLedger
from mlray.quotas.service import Exchange, QuotaService
from mlray.quotas.types import COUNTED, Grant, QuotaLimits, UsageReport
from mlray.quotas.usage import UsageMeter

__all__ = ["COUNTED", "Exchange", "Grant", "Lease", "QuotaGuard", "QuotaLimits",
           "QuotaService", "RateLedger", "UsageMeter", "UsageReport", "read_limits",
           "storage_in_use"]
