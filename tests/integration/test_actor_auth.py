"""The actors decide who calls (issue 13, part 2): on a platform with ``auth: keys`` a
call without a key, or with a client-built Caller, is refused; a key gets its own roles on
every actor, data-plane methods included; a minted token reaches one project only."""

from __future__ import annotations

import pytest
import ray

import mlray
from mlray import Caller, PermissionDenied, PlatformConfig, Role, Unauthenticated
from mlray.auth.tokens import PLATFORM_USER
from mlray.errors import InvalidInput


@pytest.fixture
def keyed(mlray_env: PlatformConfig) -> PlatformConfig:
    return mlray_env.model_copy(update={"auth": "keys"})


def _invoke(config: PlatformConfig, actor: str, method: str, *args: object) -> object:
    from actors import start_actors

    handle = start_actors(config, (actor,))[actor]  # found, or started (on first use)
    try:
        return ray.get(handle.invoke.remote(method, *args), timeout=60)
    except ray.exceptions.RayTaskError as exc:
        raise exc.cause from None


@pytest.mark.parametrize("backend", ["sqlite"])
def test_keys_mode_refuses_anonymous_and_client_built_callers(keyed: PlatformConfig,
                                                               backend: str) -> None:
    root = mlray.connect(config=keyed, as_platform=True)
    assert root.caller.user == PLATFORM_USER
    issued = root.keys.create("ana", {keyed.project: "viewer"})
    viewer_key = issued.key.get_secret_value()

    with pytest.raises(Unauthenticated, match="API key is required"):
        mlray.connect(config=keyed)
    with pytest.raises(InvalidInput, match="local=True"):
        mlray.connect(config=keyed, caller=Caller.local_admin())
    forged = Caller.local_admin("mallory")
    for actor, method, args in [
            ("registry", "create_model", (forged, keyed.project, "fraud")),
            ("registry", "create_model", (None, keyed.project, "fraud")),
            ("monitor", "ingest", (None, [])),
            ("breakers", "sync", ("mlr_0123456789ab_" + "x" * 43, [], []))]:
        with pytest.raises(Unauthenticated):
            _invoke(keyed, actor, method, *args)

    viewer = mlray.connect(config=keyed, api_key=viewer_key)
    assert viewer.caller == Caller(user="ana", roles={keyed.project: Role.viewer})
    assert viewer.registry.list_models() == []
    with pytest.raises(PermissionDenied):
        viewer.registry.create_model("fraud")
    with pytest.raises(PermissionDenied):  # data-plane feeds answer only the platform
        _invoke(keyed, "monitor", "ingest", viewer_key, [])
    with pytest.raises(PermissionDenied):
        _invoke(keyed, "breakers", "sync", viewer_key, [], [])
    assert _invoke(keyed, "monitor", "ingest", root.who, []) is not None


@pytest.mark.parametrize("backend", ["redis"])
def test_a_token_stands_for_its_key_in_one_project_until_the_key_is_revoked(
        keyed: PlatformConfig, backend: str) -> None:
    root = mlray.connect(config=keyed, as_platform=True)
    issued = root.keys.create("svc", {keyed.project: "editor", "other": "admin"})
    svc = mlray.connect(config=keyed, api_key=issued.key.get_secret_value())
    token = svc.delegate(600)
    assert token is not None and token.startswith("mlt_")
    as_token = mlray.connect(config=keyed, api_key=token)
    assert as_token.caller.roles == {keyed.project: Role.editor}  # "other" is not carried
    as_token.registry.create_model("fraud")
    assert [m.name for m in svc.registry.list_models()] == ["fraud"]
    with pytest.raises(PermissionDenied):
        mlray.connect(config=keyed, project="other", api_key=token).registry.list_models()
    with pytest.raises(InvalidInput, match="ttl_s"):
        svc.keys.token(10**9)

    root.keys.revoke(issued.info.key_id)
    from tests.conftest import wait_for

    def refused() -> bool:
        try:
            as_token.registry.list_models()
        except Unauthenticated:
            return True
        return False

    wait_for(refused, timeout=120)  # within the actors' cache TTL


@pytest.mark.parametrize("backend", ["sqlite"])
def test_auth_none_takes_a_keyless_call_for_the_local_admin(mlray_env: PlatformConfig,
                                                            backend: str) -> None:
    client = mlray.connect(config=mlray_env)
    assert client.who is None and client.caller == Caller.local_admin(mlray_env.user)
    client.registry.create_model("fraud")
    with pytest.raises(Unauthenticated):  # a bad key is still refused
        mlray.connect(config=mlray_env, api_key="mlr_0123456789ab_" + "x" * 43)
