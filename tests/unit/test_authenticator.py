"""The authenticator without Ray: internal credential, tokens, and the per-process key cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlray.auth import KeyBook
from mlray.auth import keys as keymod
from mlray.auth.authenticator import Authenticator
from mlray.auth.tokens import PLATFORM_USER, platform_secret
from mlray.errors import Unauthenticated
from mlray.identity import Caller, Role
from mlray.storage import open_state_store
from tests._auth_helpers import Clock, Counting

ROOT = Caller.local_admin("root")
FAST = keymod.ScryptParams(n=2**10)




@pytest.fixture
def parts(tmp_path: Path) -> tuple[KeyBook, Counting, Clock, Authenticator]:
    store = open_state_store(f"sqlite:///{tmp_path / 's.db'}")
    clock = Clock()
    book = KeyBook(store, clock=clock, params=FAST)
    slow = Counting(book)
    auth = Authenticator(platform_secret(store), slow, book.record, anonymous=None,
                         ttl_s=5.0, clock=clock)
    return book, slow, clock, auth


def test_no_credential_is_refused_unless_an_anonymous_caller_is_set(parts) -> None:  # type: ignore[no-untyped-def]
    auth = parts[3]
    with pytest.raises(Unauthenticated, match="API key is required"):
        auth.caller(None)
    auth.anonymous = ROOT
    assert auth.caller(None) == ROOT and auth.caller("") == ROOT
    with pytest.raises(Unauthenticated):
        auth.caller(ROOT)  # type: ignore[arg-type]  # a client-built Caller is not trusted
    for junk in ("hello", "mlr_nothex_x", "mli_wrong", "mlt_abc.def"):
        with pytest.raises(Unauthenticated):
            auth.caller(junk)


def test_the_slow_hash_is_paid_once_and_a_revocation_lands_within_the_ttl(parts) -> None:  # type: ignore[no-untyped-def]
    book, slow, clock, auth = parts
    issued = book.create_key(ROOT, "default", "ana", {"fraud": "editor"})
    key = issued.key.get_secret_value()
    assert auth.caller(key).role_in("fraud") == Role.editor
    assert auth.cached(key) is not None and slow.calls == 1
    clock.now += 6  # past the TTL: the record is read again, the hash is not paid again
    assert auth.cached(key) is None
    assert auth.caller(key).user == "ana" and slow.calls == 1
    book.revoke_key(ROOT, "default", issued.info.key_id)
    assert auth.caller(key).user == "ana"  # still inside the TTL
    clock.now += 6
    with pytest.raises(Unauthenticated):
        auth.caller(key)
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    with pytest.raises(Unauthenticated):
        auth.caller(wrong)  # same id, other secret: never served from the cache


def test_internal_credential_and_tokens(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    book, _, clock, auth = parts
    secret = platform_secret(book.store)
    assert platform_secret(book.store).credential == secret.credential  # one per store
    assert auth.caller(secret.credential).user == PLATFORM_USER
    other = platform_secret(open_state_store(f"sqlite:///{tmp_path / 'other.db'}"))
    with pytest.raises(Unauthenticated):
        auth.caller(other.credential)
    issued = book.create_key(ROOT, "default", "ana", {"fraud": "editor", "ads": "admin"})
    ana = book.resolve(issued.key.get_secret_value())
    token = secret.mint(ana, 60, key_id=issued.info.key_id, project="fraud")
    seen = auth.caller(token)
    assert seen.user == "ana" and seen.roles == {"fraud": Role.editor}
    with pytest.raises(Unauthenticated):
        auth.caller(other.mint(ana, 60))  # signed by another platform
    with pytest.raises(Unauthenticated):
        auth.caller(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    book.revoke_key(ROOT, "default", issued.info.key_id)
    with pytest.raises(Unauthenticated):
        auth.caller(token)  # its key was revoked
    short, long = (auth.lifetime_left(secret.mint(ana, ttl)) for ttl in (60, 120))
    assert 59 < long - short < 61  # what a token minted from a token may live, at most
    assert auth.lifetime_left(secret.credential) == float("inf")
    fresh = secret.mint(ana, 60)
    clock.now = 1e12  # far past the token's expiry (minted on the wall clock)
    with pytest.raises(Unauthenticated, match="expired"):
        auth.caller(fresh)
