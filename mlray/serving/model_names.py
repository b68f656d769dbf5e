"""Names that tie serving pieces together: Serve application names and breaker keys."""

from __future__ import annotations

__all__ = ["INGRESS_APP", "app_name", "breaker_key", "parse_app_name"]

#: The Serve application of the HTTP ingress.
INGRESS_APP = "mlray"


def app_name(model: str, version: int) -> str:
    """The Serve application of a model version: ``<model>--v<N>``."""
    return f"{model}--v{version}"


def parse_app_name(name: str) -> tuple[str, int] | None:
    """(model, version) of a model app's name; None for other applications."""
    model, sep, version = name.rpartition("--v")
    return (model, int(version)) if sep and model and version.isdigit() else None


def breaker_key(project: str, model: str, version: int) -> str:
    """The key of a (model, version) breaker across replicas: ``project/model/version``."""
    return f"{project}/{model}/{version}"
