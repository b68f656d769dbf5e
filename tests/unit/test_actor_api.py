"""Every service method a client facade calls is one its actor lets through."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import actors
from actors.registry import RegistryActor
from mlray import client
from mlray.client import RegistryClient
from mlray.client.facade import _Facade


def _called(facade: type) -> set[str]:
    return set(re.findall(r"self\._(?:call|create)\(\s*\"(\w+)\"", inspect.getsource(facade)))


def _actor_apis() -> dict[str, frozenset[str]]:
    """Each actor shell's service name and the methods it lets through."""
    apis = {}
    for found in pkgutil.iter_modules(actors.__path__):
        for value in vars(importlib.import_module(f"actors.{found.name}")).values():
            shell = getattr(value, "__ray_actor_class__", None)
            if shell is not None and hasattr(shell, "NAME"):
                apis[shell.NAME] = shell.API
    return apis


def test_registry_client_calls_only_methods_the_actor_exposes() -> None:
    called = _called(RegistryClient)
    assert {"allow_architectures", "allowed_architectures"} <= called
    assert called - RegistryActor.API == set()


FACADES = [f for f in vars(client).values()
           if inspect.isclass(f) and issubclass(f, _Facade) and f is not _Facade]


@pytest.mark.parametrize("facade", FACADES, ids=lambda f: f.__name__)
def test_every_client_calls_only_methods_its_actor_exposes(facade: type) -> None:
    service = re.search(r'super\(\).__init__\("(\w+)"', inspect.getsource(facade))
    assert service is not None, f"{facade.__name__} names no service"
    assert _called(facade) - _actor_apis()[service.group(1)] == set()
