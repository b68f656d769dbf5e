"""HTTP authentication on real Serve (issue 13, parts 3 and 8): every endpoint of an
``auth: keys`` ingress against every kind of caller, revocation within the key cache's
TTL, and schemathesis with and without a key.

The ingress under test is a second app of the session platform (``mlray-secure`` at
``/secure``, no CPUs reserved) over the same actors, model apps and state store, with
``auth: keys`` and a 2 s key cache; keys are real, issued in the platform's store.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mlray.auth import KeyBook
from mlray.auth.keys import parse_key
from mlray.identity import Caller, Role
from mlray.serving.access import ENDPOINT_ROLES
from tests.conftest import wait_for
from tests.integration.platform import Platform
from tests.integration.test_serving import _fuzz
from tests.integration.test_serving_v2 import _columns, _v2_inputs

pytestmark = pytest.mark.slow
PREFIX = "/secure"
TTL_S = 2.0
ROOT = Caller.local_admin("test-root")
PUBLIC_STATUS = 200
KINDS = ("none", "bad", "expired", "revoked", "predict", "viewer", "editor", "admin", "other")


@dataclass
class Secure:
    """The auth: keys ingress, one served model and a key (or header) per kind of caller."""

    url: str
    model: str
    project: str
    book: KeyBook
    headers: dict[str, dict[str, str]]

    def issue(self, role: str, project: str, **kw: Any) -> str:
        issued = self.book.create_key(ROOT, project, f"{role}-{uuid.uuid4().hex[:6]}",
                                      {project: role}, **kw)
        return issued.key.get_secret_value()


@pytest.fixture(scope="module")
def secure(platform: Platform) -> Iterator[Secure]:
    from ray import serve

    from mlray.serving.ingress import ingress_app
    from mlray.serving.settings import load_serving_config
    from mlray.storage import open_state_store

    config = platform.config.model_copy(update={"auth": "keys"})
    serving = load_serving_config(config.serving_config)
    serving = serving.model_copy(update={"ingress": serving.ingress.model_copy(
        update={"auth_cache_ttl_s": TTL_S})})
    serve.run(ingress_app(config, serving), name="mlray-secure", route_prefix=PREFIX)
    model = platform.model()
    platform.deploy(model, 1)
    store = open_state_store(config.resolved_state_url, redis_prefix=config.redis_prefix)
    book = KeyBook(store)
    project = config.project
    found = Secure(f"{platform.url}{PREFIX}", model, project, book, {})
    keys = {role: found.issue(role, project) for role in ("predict", "viewer", "editor",
                                                          "admin")}
    keys["other"] = found.issue("admin", "someone-else")
    keys["expired"] = found.issue("admin", project, expires_in_s=0.5)
    keys["revoked"] = found.issue("admin", project)
    revoked_id = parse_key(keys["revoked"])
    assert revoked_id is not None
    book.revoke_key(ROOT, project, revoked_id)
    expired_id = parse_key(keys["expired"])
    assert expired_id is not None
    wait_for(lambda: book.record(expired_id).state(time.time()) == "expired",  # type: ignore[union-attr]
             timeout=10)
    found.headers = {kind: {"Authorization": f"Bearer {key}"} for kind, key in keys.items()}
    found.headers["none"] = {}
    found.headers["bad"] = {"Authorization": f"Bearer {keys['admin'][:-6]}XXXXXX"}

    def served() -> bool:
        got = httpx.get(f"{found.url}/v1/models", headers=found.headers["admin"], timeout=10)
        return got.status_code == 200 and any(
            m["name"] == model and any(v["ready"] for v in m["versions"])
            for m in got.json()["models"])
    wait_for(served, timeout=60, interval=0.3)
    yield found
    store.close()
    if serve.status().applications:  # (the platform's teardown may have stopped Serve)
        serve.delete("mlray-secure")


def _request(endpoint: str, model: str) -> tuple[str, str, Any, int]:
    """Method, path, JSON body and the status a caller with the role gets."""
    columns = _columns(1)
    method, template = endpoint.split(" ", 1)
    path = (template.replace("{model}", model).replace("{version}", "1")
            .replace("{name}", "no-such-pipeline").replace("{run_id}", "000000000000"))
    bodies: dict[str, tuple[Any, int]] = {
        "POST /v1/predict": ({"modelName": model, "features": {k: v[0] for k, v in
                                                               columns.items()}}, 200),
        "POST /v1/predict/batch": ({"modelName": model, "columns": columns}, 200),
        "POST /v2/models/{model}/infer": ({"inputs": _v2_inputs(columns)}, 200),
        "POST /v2/models/{model}/versions/{version}/infer": ({"inputs": _v2_inputs(columns)},
                                                             200),
        # no feature definitions in this project: the caller gets as far as the lookup
        "POST /v1/features": ({"entities": {"user_id": [1]}, "features": ["nope:x"]}, 404),
        "POST /v1/features/push": ({"view": "nope", "rows": [{"user_id": 1}]}, 404),
        "POST /v1/feedback": ({"feedback": [{"requestId": "r1", "label": 1.0}]}, 200),
        # no such pipeline or run: the caller gets as far as the pipelines actor
        "POST /v1/pipelines/{name}/runs": ({"params": {}}, 404),
        "GET /v1/pipelines/runs/{run_id}": (None, 404),
    }
    body, allowed = bodies.get(endpoint, (None, 200))
    return method, path, body, allowed


def _expected(kind: str, needed: Role | None, allowed: int) -> int:
    if needed is None:
        return PUBLIC_STATUS
    if kind in ("none", "bad", "expired", "revoked"):
        return 401
    if kind == "other" or Role[kind] < needed:
        return 403
    return allowed


def test_every_endpoint_against_every_kind_of_caller(secure: Secure) -> None:
    wrong: list[str] = []
    seen: Counter[int] = Counter()
    with httpx.Client(base_url=secure.url, timeout=30) as http:
        for endpoint, needed in ENDPOINT_ROLES.items():
            method, path, body, allowed = _request(endpoint, secure.model)
            for kind in KINDS:
                got = http.request(method, path, json=body, headers=secure.headers[kind])
                seen[got.status_code] += 1
                want = _expected(kind, needed, allowed)
                if got.status_code != want:
                    wrong.append(f"{kind} {endpoint}: {got.status_code} (want {want}) "
                                 f"{got.text[:120]}")
                if got.status_code == 401:
                    challenge = got.headers["www-authenticate"]
                    assert challenge.startswith('Bearer realm="mlray"'), challenge
                    assert ('error="invalid_token"' in challenge) == (kind != "none"), kind
    assert not wrong, wrong
    assert seen[401] and seen[403] and seen[200], seen


def test_a_403_does_not_tell_whether_a_model_exists(secure: Secure) -> None:
    with httpx.Client(base_url=secure.url, timeout=30) as http:
        for kind in ("other", "predict"):
            there = http.get(f"/v2/models/{secure.model}", headers=secure.headers[kind])
            absent = http.get("/v2/models/no-such-model", headers=secure.headers[kind])
            assert there.status_code == absent.status_code == 403
            assert there.json() == absent.json() and secure.model not in there.text
        bad = secure.headers["bad"]
        assert (http.post(f"/v2/models/{secure.model}/infer", json={}, headers=bad).json()
                == http.post("/v2/models/no-such-model/infer", json={}, headers=bad).json())


def test_a_revoked_key_is_refused_within_the_ttl(secure: Secure) -> None:
    key = secure.issue("viewer", secure.project)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=secure.url, timeout=30) as http:
        assert http.get("/v1/models", headers=headers).status_code == 200  # cached now
        key_id = parse_key(key)
        assert key_id is not None
        secure.book.revoke_key(ROOT, secure.project, key_id)
        start = time.monotonic()
        wait_for(lambda: http.get("/v1/models", headers=headers).status_code == 401,
                 timeout=60, interval=0.1)
        elapsed = time.monotonic() - start
    print(f"revocation took effect after {elapsed:.2f} s (TTL {TTL_S} s)")
    assert elapsed <= TTL_S + 8.0  # loose: the bound is the TTL; the slack absorbs load


@pytest.mark.parametrize("kind", ["admin", "none"])
def test_fuzzing_the_secure_ingress_finds_no_5xx(secure: Secure, kind: str) -> None:
    import schemathesis

    admin = secure.headers["admin"]
    schema = schemathesis.openapi.from_url(f"{secure.url}/openapi.json", headers=admin)
    failures: list[str] = []
    calls: Counter[str] = Counter()
    for result in schema.get_all_operations():
        _fuzz(result.ok(), secure.url, calls, failures, headers=secure.headers[kind],
              max_examples=10)
    print(f"fuzzed {sum(calls.values())} requests over {len(calls)} operations as {kind}")
    assert len(calls) >= 10
    assert not failures, failures[:5]
