"""API keys without Ray: format, slow hash, refusals, rights, and the store round trip."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mlray._private.redact import redact
from mlray.auth import KeyBook, Refusal, parse_duration
from mlray.auth import keys as keymod
from mlray.auth.book import COLLECTION, PUBLIC_REFUSAL
from mlray.errors import InvalidInput, NotFound, PermissionDenied, Unauthenticated
from mlray.identity import Caller, Role
from mlray.storage import StateStore, open_state_store
from tests._auth_helpers import Clock

ROOT = Caller.local_admin("root")
#: Cheap scrypt for the logic tests (the default cost is exercised in the store test).
FAST = keymod.ScryptParams(n=2**10)



@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(tmp_path: Path, clock: Clock) -> KeyBook:
    return KeyBook(open_state_store(f"sqlite:///{tmp_path / 'keys.db'}"), clock=clock,
                   params=FAST)


def _secret(issued) -> str:  # type: ignore[no-untyped-def]
    return str(issued.key.get_secret_value())


def test_a_key_is_prefixed_random_and_only_its_salted_hash_is_kept() -> None:
    key_id, key = keymod.new_key()
    assert key.startswith(f"mlr_{key_id}_") and keymod.parse_key(key) == key_id
    assert keymod.new_key()[1] != key
    first, second = keymod.hash_key(key, FAST), keymod.hash_key(key, FAST)
    assert first.salt != second.salt and first.digest != second.digest
    assert keymod.verify_key(key, first) and keymod.verify_key(key, second)
    assert not keymod.verify_key(key[:-1] + ("A" if key[-1] != "A" else "B"), first)
    assert first.digest not in repr(first) and first.salt not in repr(first)
    for bad in ("", "mlr_", key + "x", key.replace("mlr_", "mlk_"), "mlr_XYZ_abc", None):
        assert keymod.parse_key(bad) is None  # type: ignore[arg-type]


def test_digests_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = keymod.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keymod.hmac, "compare_digest", spy)
    key = keymod.new_key()[1]
    assert keymod.verify_key(key, keymod.hash_key(key, FAST))
    assert len(seen) == 1


def test_resolve_gives_the_keys_caller_and_refuses_each_bad_key_alike(
        book: KeyBook, clock: Clock) -> None:
    issued = book.create_key(ROOT, "a", "svc", {"a": "predict", "b": "editor"},
                             expires_in_s=3600)
    key = _secret(issued)
    caller = book.resolve(key)
    assert caller == Caller(user="svc", roles={"a": Role.predict, "b": Role.editor})
    wrong = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
    other_id = "mlr_" + "0" * 12 + key[len("mlr_") + 12:]
    assert book.check("not-a-key") is Refusal.malformed
    assert book.check(other_id) is Refusal.unknown
    assert book.check(wrong) is Refusal.mismatch
    clock.now += 3600
    assert book.check(key) is Refusal.expired
    clock.now -= 1
    book.revoke_key(ROOT, "a", issued.info.key_id)
    assert book.check(key) is Refusal.revoked
    messages = set()
    for bad in ("not-a-key", other_id, wrong, key):
        with pytest.raises(Unauthenticated) as err:
            book.resolve(bad)
        messages.add(err.value.message)
    assert messages == {PUBLIC_REFUSAL}


def test_the_secret_is_never_stored_logged_or_shown(
        book: KeyBook, caplog: pytest.LogCaptureFixture) -> None:
    issued = book.create_key(ROOT, "a", "svc", {"a": "viewer"})
    key = _secret(issued)
    assert key not in repr(issued) and key not in str(issued)
    assert key not in issued.model_dump_json()
    listed = book.list_keys(ROOT, "a")
    assert key not in repr(listed) and "digest" not in json.dumps(
        [k.model_dump(mode="json") for k in listed])
    doc = book.store.get(COLLECTION, issued.info.key_id)
    assert doc is not None and key not in json.dumps(doc.data)
    assert key not in repr(book.store.audit_log(limit=10))
    book.revoke_key(ROOT, "a", issued.info.key_id)
    with caplog.at_level(logging.DEBUG, logger="mlray.auth"), pytest.raises(Unauthenticated):
        book.resolve(key)
    assert "revoked" in caplog.text and issued.info.key_id in caplog.text
    assert key not in caplog.text
    refused = book.store.audit_log(limit=10)[-1]  # the refusal is audited, by id and reason
    assert refused.action == "auth.unauthenticated" and refused.after == {"reason": "revoked"}
    assert refused.target == f"api_keys/{issued.info.key_id}" and key not in repr(refused)


def test_only_admins_of_every_granted_project_issue_list_and_revoke(book: KeyBook) -> None:
    admin_a = Caller(user="ann", roles={"a": Role.admin, "b": Role.editor})
    with pytest.raises(PermissionDenied):
        book.create_key(admin_a, "a", "x", {"a": "viewer", "b": "viewer"})
    with pytest.raises(PermissionDenied):
        book.create_key(admin_a, "a", "x", {"*": "viewer"})
    with pytest.raises(PermissionDenied):
        book.create_key(Caller(user="ed", roles={"a": Role.editor}), "a", "x", {"a": "viewer"})
    in_a = book.create_key(admin_a, "a", "x", {"a": "viewer"})
    in_b = book.create_key(ROOT, "b", "y", {"b": "admin"})
    everywhere = book.create_key(ROOT, "a", "ops", {"*": "admin"})
    # a project's admin does not see the keys of every project ('*')
    assert [k.key_id for k in book.list_keys(admin_a, "a")] == [in_a.info.key_id]
    assert everywhere.info.key_id in {k.key_id for k in book.list_keys(ROOT, "a")}
    for reserved in ("mlray-platform", "mlray-bootstrap"):
        with pytest.raises(InvalidInput, match="reserved"):
            book.create_key(ROOT, "a", reserved, {"a": "viewer"})
    with pytest.raises(PermissionDenied):
        book.list_keys(admin_a, "b")
    with pytest.raises(PermissionDenied):
        book.list_keys(admin_a, "a", all_projects=True)
    assert len(book.list_keys(ROOT, "a", all_projects=True)) == 3
    with pytest.raises(PermissionDenied) as existing:
        book.revoke_key(admin_a, "a", in_b.info.key_id)
    missing_id = "0" * len(in_b.info.key_id)
    with pytest.raises(PermissionDenied) as missing:  # the same answer: no existence leak
        book.revoke_key(admin_a, "a", missing_id)
    assert (str(existing.value).replace(in_b.info.key_id, "K")
            == str(missing.value).replace(missing_id, "K"))
    with pytest.raises(PermissionDenied):  # a project the caller has no role in
        book.revoke_key(admin_a, "b", in_b.info.key_id)
    with pytest.raises(NotFound):
        book.revoke_key(ROOT, "a", "0" * 12)


def test_bad_roles_and_durations_name_the_field(book: KeyBook) -> None:
    with pytest.raises(InvalidInput, match=r"roles\.a: 'owner' is not a role"):
        book.create_key(ROOT, "a", "x", {"a": "owner"})
    with pytest.raises(InvalidInput, match="roles"):
        book.create_key(ROOT, "a", "x", {"Bad Name": "viewer"})
    with pytest.raises(InvalidInput, match="roles"):
        book.create_key(ROOT, "a", "x", {})
    with pytest.raises(InvalidInput, match="user"):
        book.create_key(ROOT, "a", "", {"a": "viewer"})
    assert parse_duration("30d") == 30 * 86400 and parse_duration("never") is None
    with pytest.raises(InvalidInput, match="expires"):
        parse_duration("soon")


def test_predict_sits_below_viewer() -> None:
    caller = Caller(user="svc", roles={"a": Role.predict})
    caller.require("a", Role.predict)
    with pytest.raises(PermissionDenied):
        caller.require("a", Role.viewer)
    Caller(user="v", roles={"a": Role.viewer}).require("a", Role.predict)


def test_keys_round_trip_the_store_and_bootstrap_once(store: StateStore) -> None:
    book = KeyBook(store)  # default scrypt cost, on each backend
    first = book.bootstrap("ops")
    assert first is not None and book.bootstrap("ops") is None
    assert book.resolve(_secret(first)) == Caller(user="ops", roles={"*": Role.admin})
    issued = book.create_key(ROOT, "a", "svc", {"a": "predict"}, expires_in_s=60)
    again = KeyBook(store)  # a restarted service reads the same records
    stored = {k.key_id: k for k in again.list_keys(ROOT, "a", all_projects=True)}
    assert stored[issued.info.key_id].roles == {"a": Role.predict}
    assert stored[first.info.key_id].last_used_at is not None
    assert again.resolve(_secret(issued)).roles == {"a": Role.predict}
    again.revoke_key(ROOT, "a", issued.info.key_id)
    assert book.check(_secret(issued)) is Refusal.revoked
    actions = [e.action for e in store.audit_log(limit=10)]
    assert actions == ["keys.create", "keys.create", "keys.revoke"]


def test_a_key_in_an_error_or_log_line_shows_only_its_id() -> None:
    key_id, key = keymod.new_key()
    assert redact(f"sent {key} to the ingress") == f"sent mlr_{key_id}_*** to the ingress"
    assert key not in Unauthenticated(f"bad {key}").message


def test_a_key_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    from mlray.auth import api_key_from_env

    assert api_key_from_env({}) is None
    (tmp_path / "empty").write_text("\n")
    assert api_key_from_env({"MLRAY_API_KEY_FILE": str(tmp_path / "empty")}) is None
    with pytest.raises(InvalidInput) as caught:
        api_key_from_env({"MLRAY_API_KEY_FILE": str(tmp_path)})  # a folder
    assert caught.value.field == "MLRAY_API_KEY_FILE" and str(tmp_path) in str(caught.value)
