"""Hiding credentials in text meant for people: messages, logs, status, HTTP bodies.

    >>> redact("Redis state at redis://app:s3cret@db:6379/0: refused")
    'Redis state at redis://app:***@db:6379/0: refused'

Imports nothing from mlray, so that ``mlray.errors`` can use it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "redact", "redact_all"]

MASK = "***"

# scheme://userinfo@ : the userinfo runs to the last "@" before the path (a password may
# hold a raw "@"), and never spans a "/", whitespace or a quote.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s'\"<>]*)@")
# ?password=... / &token=... / password: ... inside a URL's query or a key=value list.
_SECRET_PARAM = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api_key|apikey|access_key"
    r"|secret_access_key|secret_key|auth)=)(?P<value>[^&\s'\"<>,;]+)", re.IGNORECASE)


def _userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    if not match["userinfo"]:
        return match[0]
    # user:password@ keeps the user; a bare token@ (no colon) is all secret.
    shown = f"{user}:{MASK}" if colon else MASK
    return f"{match['scheme']}{shown}@"


def redact(text: str) -> str:
    """``text`` with every URL's password (``user:password@``, ``:password@``, a bare
    ``token@``) and every ``password=``-like parameter replaced by ``***``."""
    if not isinstance(text, str) or ("@" not in text and "=" not in text):
        return text
    text = _USERINFO.sub(_userinfo, text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}{MASK}", text)


def redact_all(value: Any) -> Any:
    """``value`` with :func:`redact` applied to every string inside dicts, lists, tuples."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_all(v) for v in value)
    return value
