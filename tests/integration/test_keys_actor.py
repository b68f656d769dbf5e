"""API keys through the ``keys`` actor on the shared Ray: connect(api_key=) acts as the key."""

from __future__ import annotations

import pytest

import mlray
from mlray import Caller, PermissionDenied, PlatformConfig, Role, Unauthenticated
from tests.conftest import wait_for


@pytest.mark.parametrize("backend", ["redis"])
def test_connect_with_a_key_gets_its_roles_until_it_is_revoked(
        mlray_env: PlatformConfig, backend: str) -> None:
    admin = mlray.connect(config=mlray_env)
    issued = admin.keys.create("svc", {mlray_env.project: "editor"}, expires_in_s=3600)
    key = issued.key.get_secret_value()

    as_key = mlray.connect(config=mlray_env, api_key=key)
    assert as_key.caller == Caller(user="svc", roles={mlray_env.project: Role.editor})
    as_key.registry.create_model("fraud")  # an editor may
    with pytest.raises(PermissionDenied):  # the actors see the editor, not an admin
        as_key.keys.list()

    admin.keys.revoke(issued.info.key_id)
    refusals: list[Unauthenticated] = []

    def refused() -> bool:  # within the actors' key cache TTL (a few seconds)
        try:
            mlray.connect(config=mlray_env, api_key=key)
        except Unauthenticated as exc:
            refusals.append(exc)
            return True
        return False

    wait_for(refused, timeout=120)
    assert key not in str(refusals[0])
