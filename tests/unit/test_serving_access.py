"""HTTP authentication of the ingress without Ray: the endpoint table (against the routes
and the README), the Bearer header, 401/403 answers, the key cache, rate buckets, and the
refusal to serve ``auth: none`` beyond loopback."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from mlray._private.denials import DENIED
from mlray.auth import KeyBook
from mlray.auth import keys as keymod
from mlray.auth.authenticator import Authenticator
from mlray.auth.book import PUBLIC_REFUSAL
from mlray.auth.tokens import platform_secret
from mlray.config import load_config
from mlray.errors import ConfigError, Unauthenticated
from mlray.identity import Caller, Role
from mlray.serving.access import (
    ENDPOINT_ROLES,
    UNMATCHED_ROLE,
    Access,
    AccessMiddleware,
    bearer,
    endpoint_of,
    rate_bucket,
    route_path,
)
from mlray.storage import open_state_store
from tests._auth_helpers import Clock, Counting

ROOT = Caller.local_admin("root")
FAST = keymod.ScryptParams(n=2**10)
README = Path(__file__).resolve().parents[2] / "README.md"




class Setup:
    """A small app behind the middleware, over a real SQLite store of keys."""

    def __init__(self, tmp: Path) -> None:
        self.store = open_state_store(f"sqlite:///{tmp / 's.db'}")
        self.clock = Clock()
        self.book = KeyBook(self.store, clock=self.clock, params=FAST)
        self.slow = Counting(self.book)
        auth = Authenticator(platform_secret(self.store), self.slow, self.book.record,
                             anonymous=None, ttl_s=5.0, clock=self.clock)
        self.access = Access("fraud", auth, audit=lambda e: self.store.apply([], e),
                             clock=self.clock)
        app = FastAPI()

        async def echo(request: Request) -> dict[str, Any]:
            return {"bucket": rate_bucket(request)}

        for endpoint in ENDPOINT_ROLES:
            method, path = endpoint.split(" ", 1)
            if path not in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"):
                app.add_api_route(path, echo, methods=[method])
        app.add_middleware(AccessMiddleware, locate=lambda: self.access)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                      base_url="http://ingress")

    def key(self, role: str, project: str = "fraud", **kw: Any) -> str:
        issued = self.book.create_key(ROOT, project, f"u-{role}", {project: role}, **kw)
        return issued.key.get_secret_value()

    def call(self, method: str, path: str, key: str | None = None,
             header: str | None = None) -> httpx.Response:
        headers = {"Authorization": header or f"Bearer {key}"} if key or header else {}
        return asyncio.run(self.http.request(method, path, headers=headers))


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


# -- the table -----------------------------------------------------------------------------

def test_the_table_names_every_route_of_the_ingress_and_no_other() -> None:
    from mlray.serving.ingress import api  # the routes registered

    served = {f"{method.upper()} {path}" for path, operations in api.openapi()["paths"].items()
              for method in operations}
    served |= {f"GET {url}" for url in (api.openapi_url, api.docs_url, api.redoc_url,
                                        api.swagger_ui_oauth2_redirect_url)}
    assert served == set(ENDPOINT_ROLES)


def test_the_openapi_spec_declares_the_key_and_each_role() -> None:
    from mlray.serving.ingress import api  # the routes registered

    spec = api.openapi()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            role = ENDPOINT_ROLES[f"{method.upper()} {path}"]
            assert operation["x-mlray-role"] == (role.name if role else "public")
            assert operation["security"] == ([{"bearer": []}] if role else [])


def test_the_readme_table_is_the_code_table() -> None:
    text = README.read_text()
    section = text[text.index("## HTTP authentication"):]
    section = section[:section.index("\n## ", 1)]
    rows = re.findall(r"^\| `(GET|POST) ([^`]+)` \| (\w+) \|", section, re.MULTILINE)
    documented = {f"{m} {p}": (None if r == "public" else Role[r]) for m, p, r in rows}
    assert documented == ENDPOINT_ROLES


def test_paths_map_to_their_template_and_unknown_ones_need_a_key() -> None:
    assert endpoint_of("GET", "/v2/models/fraud") == ("GET /v2/models/{model}", Role.viewer)
    assert endpoint_of("HEAD", "/v1/models") == ("GET /v1/models", Role.viewer)
    assert endpoint_of("POST", "/v2/models/a/versions/3/infer")[1] == Role.predict
    assert endpoint_of("GET", "/v2/health/live")[1] is None
    for method, path in [("GET", "/v2/health/live/x"), ("POST", "/v1/models"),
                         ("GET", "/v2/models/a/b"), ("GET", "/nothing")]:
        assert endpoint_of(method, path)[1] == UNMATCHED_ROLE
    # behind a Serve route prefix the template is matched inside the app
    assert route_path({"path": "/secure/v1/models", "root_path": "/secure"}) == "/v1/models"
    assert route_path({"path": "/securex/v1", "root_path": "/secure"}) == "/securex/v1"


def test_bearer_parsing() -> None:
    assert bearer(None) is None
    assert bearer("Bearer mlr_abc") == "mlr_abc" and bearer("bearer  tok ") == "tok"
    for bad in ("Basic dXNlcjpwdw==", "Bearer", "Bearer ", "mlr_abc", "Bearer " + "x" * 5000):
        with pytest.raises(Unauthenticated) as err:
            bearer(bad)
        assert err.value.field == "authorization"


# -- answers -------------------------------------------------------------------------------

def test_no_key_bad_key_and_unknown_key_get_401_with_a_challenge(setup: Setup) -> None:
    missing = setup.call("POST", "/v1/predict")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="mlray"'
    assert missing.json()["code"] == "unauthenticated"
    for header in ("Basic dXNlcjpwdw==", "Bearer not-a-key",
                   "Bearer mlr_0123456789ab_" + "A" * 43):
        refused = setup.call("POST", "/v1/predict", header=header)
        assert refused.status_code == 401, header
        assert refused.headers["www-authenticate"] == 'Bearer realm="mlray", error="invalid_token"'
    # a path no route serves tells nothing either
    assert setup.call("GET", "/v2/models/x/y").status_code == 401


def test_health_probes_are_public(setup: Setup) -> None:
    assert setup.call("GET", "/v2/health/live").status_code == 200
    assert setup.call("GET", "/v2/health/ready", header="Bearer junk").status_code == 200


def test_roles_decide_and_a_403_names_no_model(setup: Setup) -> None:
    predict, viewer, editor = setup.key("predict"), setup.key("viewer"), setup.key("editor")
    other = setup.key("admin", project="ads")
    assert setup.call("POST", "/v2/models/secret/infer", predict).status_code == 200
    assert setup.call("GET", "/v1/models", predict).status_code == 403
    assert setup.call("GET", "/v1/models", viewer).status_code == 200
    assert setup.call("POST", "/v1/features/push", viewer).status_code == 403
    assert setup.call("POST", "/v1/features/push", editor).status_code == 200
    assert setup.call("POST", "/v1/feedback", editor).status_code == 200
    denied = setup.call("GET", "/v2/models/secret", other)
    assert denied.status_code == 403 and denied.json()["code"] == "permission_denied"
    assert "secret" not in denied.text and "fraud" in denied.text
    assert "www-authenticate" not in denied.headers
    # the refusal was audited once per user and endpoint within the TTL
    setup.call("GET", "/v2/models/other", other)
    entries = [(e.user, e.target) for e in setup.store.audit_entries() if e.action == DENIED]
    assert entries.count(("u-admin", "http:GET /v2/models/{model}")) == 1
    assert ("u-viewer", "http:POST /v1/features/push") in entries


def test_expired_and_revoked_keys_are_refused(setup: Setup) -> None:
    expiring, revoked = setup.key("viewer", expires_in_s=60), setup.key("viewer")
    assert setup.call("GET", "/v1/models", expiring).status_code == 200
    key_id = keymod.parse_key(revoked)
    assert key_id is not None
    setup.book.revoke_key(ROOT, "fraud", key_id)
    assert setup.call("GET", "/v1/models", revoked).status_code == 401
    setup.clock.now += 61
    assert setup.call("GET", "/v1/models", expiring).status_code == 401


def test_a_key_is_checked_in_full_once_and_revocation_lands_after_the_ttl(setup: Setup) -> None:
    key = setup.key("viewer")

    async def burst() -> list[int]:
        found = await asyncio.gather(*(setup.http.get("/v1/models", headers={
            "Authorization": f"Bearer {key}"}) for _ in range(16)))
        return [r.status_code for r in found]

    assert asyncio.run(burst()) == [200] * 16
    assert setup.slow.calls == 1  # concurrent first uses share one check
    key_id = keymod.parse_key(key)
    assert key_id is not None
    setup.book.revoke_key(ROOT, "fraud", key_id)
    assert setup.call("GET", "/v1/models", key).status_code == 200  # cached: within the TTL
    setup.clock.now += 5.0
    assert setup.call("GET", "/v1/models", key).status_code == 401
    assert setup.slow.calls == 1  # the record was re-read, the hash not paid again


def test_a_refused_key_is_remembered_for_the_ttl(setup: Setup) -> None:
    unknown = "Bearer mlr_0123456789ab_" + "B" * 43
    for _ in range(3):
        assert setup.call("GET", "/v1/models", header=unknown).status_code == 401
    assert setup.slow.calls == 1
    setup.clock.now += 5.0
    assert setup.call("GET", "/v1/models", header=unknown).status_code == 401
    assert setup.slow.calls == 2


def test_the_rate_bucket_is_the_key_never_a_client_header(setup: Setup) -> None:
    key = setup.key("predict")
    key_id = keymod.parse_key(key)
    for chosen in ("a", "b"):
        got = asyncio.run(setup.http.post("/v1/predict", headers={
            "Authorization": f"Bearer {key}", "x-api-key": chosen}))
        assert got.json() == {"bucket": f"key:{key_id}"}


def test_auth_none_serves_everyone_as_the_local_admin(tmp_path: Path) -> None:
    access = Access("fraud", None, anonymous=Caller.local_admin("me"))
    grant = asyncio.run(access.grant(None, "10.0.0.1", "POST /v1/feedback", Role.editor))
    assert grant.caller == Caller.local_admin("me") and grant.bucket == "client:10.0.0.1"
    with pytest.raises(ValueError):
        Access("fraud", None)


def test_open_access_reads_keys_from_the_platform_store_only_with_auth_keys(
        tmp_path: Path) -> None:
    from mlray.serving.access import open_access

    keyed = load_config(env={"MLRAY_HOME": str(tmp_path), "MLRAY_AUTH": "keys"})
    access = open_access(keyed, ttl_s=3.0)
    assert access.authenticator is not None and access.ttl_s == 3.0
    with pytest.raises(Unauthenticated):
        asyncio.run(access.grant(None, "127.0.0.1", "GET /v1/models", Role.viewer))
    with open_state_store(keyed.resolved_state_url) as store:
        key = KeyBook(store, params=FAST).create_key(
            ROOT, keyed.project, "svc", {keyed.project: "viewer"}).key.get_secret_value()
    grant = asyncio.run(access.grant(f"Bearer {key}", "127.0.0.1", "GET /v1/models",
                                     Role.viewer))
    assert grant.caller.user == "svc"
    open_ = open_access(load_config(env={"MLRAY_HOME": str(tmp_path / "none")}), ttl_s=3.0)
    assert open_.authenticator is None and open_.anonymous == Caller.local_admin("local")


def test_a_wrong_key_costs_the_same_refusal_message(setup: Setup) -> None:
    key = setup.key("viewer")
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    refused = setup.call("GET", "/v1/models", wrong)
    assert refused.status_code == 401 and refused.json()["error"] == PUBLIC_REFUSAL


# -- where auth none may run ------------------------------------------------------------------

def test_serving_beyond_loopback_without_auth_is_refused() -> None:
    from mlray.serving.launch import is_loopback, start_serving

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    config = load_config(env={"MLRAY_AUTH": "none"})
    with pytest.raises(ConfigError, match="auth: none") as refused:
        start_serving(config, host="0.0.0.0")
    assert refused.value.field == "auth"
