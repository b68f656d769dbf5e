"""Every registry method the client calls is one the registry actor lets through."""

from __future__ import annotations

import inspect
import re

from actors.registry import RegistryActor
from mlray.client import RegistryClient


def test_registry_client_calls_only_methods_the_actor_exposes() -> None:
    called = set(re.findall(r"self\._(?:call|create)\(\s*\"(\w+)\"",
                            inspect.getsource(RegistryClient)))
    assert {"allow_architectures", "allowed_architectures"} <= called
    assert called - RegistryActor.API == set()
