"""The mlray error hierarchy.

    MlrayError
    ├── InvalidInput          bad argument or payload (names the field)
    ├── ConfigError           bad configuration value (names the key and the file)
    ├── NotFound              unknown model, version, run, alias, artifact, ...
    ├── AlreadyExists         a name that is taken
    ├── Conflict              compare-and-set lost, alias points elsewhere
    ├── InvalidTransition     a stage or status change the rules refuse
    ├── Unauthenticated       no or unknown credentials
    ├── PermissionDenied      the caller's role does not allow it
    ├── QuotaExceeded         the project is at one of its quotas (names it, limit and use)
    ├── IntegrityError        stored bytes do not match their sha256
    └── BackendUnavailable    state store or control-plane actor unreachable

Each class carries an HTTP status and a CLI exit code, and pickles (so it crosses
Ray task boundaries intact). A message never carries a credential: URL passwords and
``password=``-like parameters are masked when the error is built (a last line of
defence for logs, the CLI and HTTP error bodies).
"""

from __future__ import annotations

from typing import Any, ClassVar

from mlray._private.redact import redact

__all__ = [
    "AlreadyExists",
    "BackendUnavailable",
    "ConfigError",
    "Conflict",
    "DeadlineExceeded",
    "IntegrityError",
    "InvalidInput",
    "InvalidTransition",
    "MlrayError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PredictionFailed",
    "QuotaExceeded",
    "RateLimited",
    "Unauthenticated",
]


class MlrayError(Exception):
    """Base of every error mlray raises on purpose."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, field: str | None = None) -> None:
        message = redact(str(message))
        super().__init__(message)
        self.message = message
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.message,), {"field": self.field})

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: ``{"error", "code"}`` plus the field when known."""
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.field:
            body["field"] = self.field
        return body


class UserError(MlrayError):
    """Errors the caller can fix; the CLI exits 2 on them."""

    exit_code: ClassVar[int] = 2


class InvalidInput(UserError):
    """An argument or payload is malformed; ``field`` says which."""

    code = "invalid_input"
    http_status = 400


class ConfigError(UserError):
    """A configuration value is invalid; the message names the key and its source."""

    code = "config_error"
    http_status = 400


class NotFound(UserError):
    """The named object does not exist."""

    code = "not_found"
    http_status = 404


class AlreadyExists(UserError):
    """An object with this name already exists."""

    code = "already_exists"
    http_status = 409


class Conflict(UserError):
    """The object changed underneath the caller, or a name points elsewhere."""

    code = "conflict"
    http_status = 409


class InvalidTransition(UserError):
    """The requested stage or status change is not allowed from the current one."""

    code = "invalid_transition"
    http_status = 409


class Unauthenticated(UserError):
    """No credentials, or credentials mlray does not know."""

    code = "unauthenticated"
    http_status = 401


class PermissionDenied(UserError):
    """The caller's role in the project does not allow this action."""

    code = "permission_denied"
    http_status = 403


class IntegrityError(UserError):
    """Stored bytes do not match their recorded sha256; nothing was loaded."""

    code = "integrity_error"
    http_status = 422


class BackendUnavailable(MlrayError):
    """The state store or a control-plane actor cannot be reached right now."""

    code = "backend_unavailable"
    http_status = 503


class PayloadTooLarge(UserError):
    """A request body or batch is larger than the endpoint accepts."""

    code = "payload_too_large"
    http_status = 413


class RateLimited(UserError):
    """The caller spent its request budget; ``retry_after`` says when to come back."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, field: str | None = None,
                 retry_after: float = 1.0) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.__class__, self.message, self.field, self.retry_after))


class QuotaExceeded(UserError):
    """The project is at one of its quotas; the message names it, its limit and the use.

    ``field`` is the quota's name; ``retry_after`` is set for the request rate only (a count
    quota frees up when something is deleted, not with time).
    """

    code = "quota_exceeded"
    http_status = 429

    def __init__(self, message: str, *, field: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_quota, (self.message, self.field, self.retry_after))


class DeadlineExceeded(MlrayError):
    """The model did not answer within the request's timeout."""

    code = "timeout"
    http_status = 504


class PredictionFailed(MlrayError):
    """The model version raised while predicting (its breaker counts it)."""

    code = "prediction_failed"
    http_status = 500


def _rebuild(cls: type[RateLimited], message: str, field: str | None,
             retry_after: float) -> RateLimited:
    return cls(message, field=field, retry_after=retry_after)


def _rebuild_quota(message: str, field: str | None, retry_after: float | None
                   ) -> QuotaExceeded:
    return QuotaExceeded(message, field=field, retry_after=retry_after)
