"""The API key itself: its format, its salted slow hash, and how it is checked.

A key reads ``mlr_<id>_<secret>``: ``mlr_`` makes a leaked key recognisable (secret
scanners, log redaction), ``<id>`` (12 hex digits) is public and finds the stored record,
``<secret>`` is 32 random bytes (``secrets.token_urlsafe``). Only a salted scrypt hash of
the whole key is stored, so the state store (or a dump of it) yields no usable key.

scrypt parameters (:data:`DEFAULT_PARAMS`): N=2**14, r=8, p=1 costs 16 MiB and some tens
of milliseconds per hash. A key carries 256 random bits, so guessing is hopeless anyway;
the slow hash is defence in depth against a stolen store, and its cost is paid once per
key and process (the client resolves its key when it connects), never per request. The
parameters are stored with each hash, so they can be raised later while older keys still verify.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets

from pydantic import BaseModel, ConfigDict, Field

from mlray.errors import InvalidInput

__all__ = ["DEFAULT_PARAMS", "KEY_ID_PATTERN", "KEY_PATTERN", "KEY_PREFIX", "KeyHash", "Refusal",
           "ScryptParams", "hash_key", "new_key", "parse_duration", "parse_key", "verify_key"]

KEY_PREFIX = "mlr_"
#: The public id: 12 hex digits.
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{12}")
#: ``mlr_`` + the public id + ``_`` + 43 url-safe characters (32 bytes).
KEY_PATTERN = re.compile(rf"^mlr_({KEY_ID_PATTERN.pattern})_([A-Za-z0-9_-]{{43}})$")
_SECRET_BYTES = 32
_SALT_BYTES = 16


class Refusal(enum.StrEnum):
    """Why a presented key was refused: logged, never told to the caller."""

    malformed = "malformed"
    unknown = "unknown"
    mismatch = "mismatch"
    revoked = "revoked"
    expired = "expired"


class ScryptParams(BaseModel):
    """scrypt cost: N (CPU/memory, a power of two), r (block size), p (parallelism)."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(2**14, ge=2, description="CPU/memory cost; memory is 128*n*r bytes.")
    r: int = Field(8, ge=1)
    p: int = Field(1, ge=1)
    dklen: int = Field(32, ge=16, le=64)


DEFAULT_PARAMS = ScryptParams()


class KeyHash(BaseModel):
    """A stored key hash: the parameters, the salt and the digest (base64)."""

    model_config = ConfigDict(frozen=True)

    alg: str = "scrypt"
    params: ScryptParams = DEFAULT_PARAMS
    salt: str = Field(repr=False)
    digest: str = Field(repr=False)


def new_key() -> tuple[str, str]:
    """A fresh ``(key_id, key)``; the key is shown once and never stored."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def parse_key(key: str) -> str | None:
    """The public id in ``key``, or None when it is not shaped like an mlray key."""
    found = KEY_PATTERN.match(key) if isinstance(key, str) else None
    return found.group(1) if found else None


def _scrypt(key: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(key.encode(), salt=salt, n=params.n, r=params.r, p=params.p,
                          dklen=params.dklen, maxmem=256 * params.n * params.r + 2**20)


def hash_key(key: str, params: ScryptParams = DEFAULT_PARAMS) -> KeyHash:
    """A new salted scrypt hash of ``key``."""
    salt = secrets.token_bytes(_SALT_BYTES)
    return KeyHash(params=params, salt=base64.b64encode(salt).decode(),
                   digest=base64.b64encode(_scrypt(key, salt, params)).decode())


def verify_key(key: str, stored: KeyHash) -> bool:
    """True when ``key`` hashes to ``stored``; the digests are compared in constant time."""
    salt = base64.b64decode(stored.salt)
    return hmac.compare_digest(_scrypt(key, salt, stored.params),
                               base64.b64decode(stored.digest))


_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_duration(text: str, field: str = "expires") -> float | None:
    """Seconds in ``30d``, ``12h``, ``90m`` or ``2w``; None for ``never``."""
    text = text.strip().lower()
    if text == "never":
        return None
    found = re.fullmatch(r"(\d+)([mhdw])", text)
    if not found or int(found.group(1)) == 0:
        raise InvalidInput(f"{field}: {text!r} is not a duration; use e.g. 90m, 12h, 30d, 2w "
                           "or never", field=field)
    return int(found.group(1)) * _UNITS[found.group(2)]
