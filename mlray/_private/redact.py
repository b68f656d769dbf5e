"""Hiding credentials in text meant for people: messages, logs, status, HTTP bodies.

    >>> redact("Redis state at redis://app:s3cret@db:6379/0: refused")
    'Redis state at redis://app:***@db:6379/0: refused'

Imports nothing from mlray, so that ``mlray.errors`` can use it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["MASK", "install_log_redaction", "redact", "redact_all", "url_origin"]

MASK = "***"

# scheme://userinfo@ : the userinfo runs to the last "@" before the path (a password may
# hold a raw "@"), and never spans a "/", whitespace or a quote.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s'\"<>]*)@")
# ?password=... / &token=... / password: ... inside a URL's query or a key=value list.
_SECRET_PARAM = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api_key|apikey|access_key"
    r"|secret_access_key|secret_key|auth)=)(?P<value>[^&\s'\"<>,;]+)", re.IGNORECASE)

# An mlray API key (mlray.auth.keys): the public id stays, the secret goes.
_API_KEY = re.compile(r"\b(?P<id>mlr_[0-9a-f]{12}_)[A-Za-z0-9_-]+")
# A token minted from a key (mlt_<claims>.<signature>) and the platform's internal
# credential (mli_<secret>) are secrets whole: only their prefix stays.
_BEARER = re.compile(r"\b(?P<id>ml[ti]_)[A-Za-z0-9_.-]+")


def _userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    if not match["userinfo"]:
        return match[0]
    # user:password@ keeps the user; a bare token@ (no colon) is all secret.
    shown = f"{user}:{MASK}" if colon else MASK
    return f"{match['scheme']}{shown}@"


def redact(text: str) -> str:
    """``text`` with every URL's password (``user:password@``, ``:password@``, a bare
    ``token@``), every ``password=``-like parameter, every mlray API key's secret and every
    mlray token or internal credential replaced by ``***``."""
    if not isinstance(text, str):
        return text
    if "mlr_" in text:
        text = _API_KEY.sub(lambda m: f"{m['id']}{MASK}", text)
    if "mlt_" in text or "mli_" in text:
        text = _BEARER.sub(lambda m: f"{m['id']}{MASK}", text)
    if "@" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(_userinfo, text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}{MASK}", text)


def url_origin(url: str) -> str:
    """``url`` cut to ``scheme://host[:port]`` (userinfo dropped), ``/***`` standing for any
    path or query: for URLs whose path is the secret (webhooks carry their token there)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return MASK
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    host = authority.rsplit("@", 1)[-1]
    return f"{scheme}://{host}" + (f"/{MASK}" if rest[len(authority):].strip("/") else "")


def redact_all(value: Any) -> Any:
    """``value`` with :func:`redact` applied to every string inside dicts, lists, tuples."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_all(v) for v in value)
    return value


def install_log_redaction() -> None:
    """Mask credentials in every log record this process makes from now on (its message
    and its traceback), whatever logger or handler it goes through. Idempotent.

    Called by the actors, the Serve apps and the CLI: a record is formatted once, when it
    is made, and only for loggers enabled at its level.
    """
    make = logging.getLogRecordFactory()
    if getattr(make, "_mlray_redacts", False):
        return

    def redacting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    redacting._mlray_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting)
