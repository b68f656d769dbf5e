"""Names that tie serving pieces together: Serve application names and breaker keys.

A model app's name carries its project, so two projects serving a model of the same name
never share (or replace) an app, and an ingress reaches only its own project's apps.
"""

from __future__ import annotations

__all__ = ["INGRESS_APP", "app_name", "breaker_key", "parse_app_name", "project_apps"]

#: The Serve application of the HTTP ingress.
INGRESS_APP = "mlray"

_SEP = "--"


def app_name(project: str, model: str, version: int) -> str:
    """The Serve application of a model version: ``<project>--<model>--v<N>``.

    Model names hold no ``--`` and start with a letter or digit, so the last ``--`` before
    the model is the separator even when the project name holds one. Serve refuses only an
    empty app name, and its replica actors are ``SERVE_REPLICA::<app>#...``: neither a
    project (``[a-z0-9_-]``, 63 at most) nor a model name (128 at most) holds a ``#``.
    """
    return f"{project}{_SEP}{model}{_SEP}v{version}"


def parse_app_name(name: str) -> tuple[str, str, int] | None:
    """(project, model, version) of a model app's name; None for other applications."""
    rest, sep, version = name.rpartition(f"{_SEP}v")
    if not sep or not version.isdigit():
        return None
    project, sep, model = rest.rpartition(_SEP)
    if not sep or not project or not model:
        return None
    parsed = (project, model, int(version))
    return parsed if app_name(*parsed) == name else None


def project_apps(names: frozenset[str], project: str) -> frozenset[str]:
    """The model apps among ``names`` that belong to ``project``."""
    return frozenset(n for n in names
                     if (parsed := parse_app_name(n)) is not None and parsed[0] == project)


def breaker_key(project: str, model: str, version: int) -> str:
    """The key of a (model, version) breaker across replicas: ``project/model/version``."""
    return f"{project}/{model}/{version}"
