"""Model apps on Ray Serve: deploy, smoke-test, retune, delete ``<project>--<model>--v<N>``."""

from __future__ import annotations

import numpy as np
from ray import serve
from ray.serve.api import _run

from mlray.config import PlatformConfig
from mlray.errors import NotFound
from mlray.registry.types import ModelVersion
from mlray.serving.model_app import model_app
from mlray.serving.model_names import app_name
from mlray.serving.settings import ModelServing

__all__ = ["ServeDeployer", "running_serve_port", "usable_apps"]

_RUNNING = "RUNNING"
_USABLE = frozenset({"RUNNING", "DEPLOYING", "UNHEALTHY"})


def _apps_in(states: frozenset[str] | None) -> frozenset[str]:
    """Names of the Serve apps in one of ``states`` (None: every app)."""
    apps = serve.status().applications
    return frozenset(name for name, app in apps.items() if states is None or app.status in states)


def running_serve_port() -> int | None:
    """The HTTP port of the Serve running in this Ray cluster, or None (never starts it)."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return None
    return int(ray.get(controller.get_http_config.remote(), timeout=60).port)


def usable_apps() -> frozenset[str]:
    """Apps that can take requests: running, or replacing a replica (still serving).

    ``serve.status()`` costs its caller about 100 ms of Python (it rebuilds and pickles
    router configs; seen with py-spy): the ``deployments`` actor calls it for the ingress
    replicas, which never do.
    """
    return _apps_in(_USABLE)


class ServeDeployer:
    """The :class:`mlray.serving.rollout.Deployer` port over Ray Serve."""

    def __init__(self, config: PlatformConfig, smoke_timeout_s: float = 60.0) -> None:
        self.config = config
        self.smoke_timeout_s = smoke_timeout_s

    def deploy(self, version: ModelVersion, serving: ModelServing, wait: bool = True) -> None:
        """Deploy (or update in place) the version's app; with ``wait``, until it runs.

        Redeploying with only new batch tuning reconfigures the live replicas.
        """
        # serve.run always waits; its internal twin lets a controller poll instead.
        _run(model_app(self.config, version, serving), _blocking=wait,
             name=app_name(version.project, version.model, version.version), route_prefix=None)

    def status(self, project: str, model: str, version: int) -> tuple[str, str]:
        """The app's Serve status and message (``NOT_STARTED`` when there is no app)."""
        app = serve.status().applications.get(app_name(project, model, version))
        if app is None:
            return "NOT_STARTED", "no such application"
        return str(getattr(app.status, "value", app.status)), app.message or ""

    def smoke(self, project: str, model: str, version: int) -> None:
        """One prediction through the app's batching path; raises unless it is sane."""
        handle = serve.get_app_handle(app_name(project, model, version))
        out = handle.smoke.remote().result(timeout_s=self.smoke_timeout_s)
        if not np.isfinite(np.asarray(out)).all():
            raise RuntimeError(f"{model} v{version} answered the smoke test with {out!r}")

    def delete(self, project: str, model: str, version: int) -> None:
        """Remove the version's app (returns before it is gone)."""
        if app_name(project, model, version) in self.running(all_states=True):
            serve.delete(app_name(project, model, version), _blocking=False)

    def on_platform_port(self) -> bool:
        """Whether Serve runs in this cluster on the platform's ``serve_port`` (never
        starts Serve)."""
        return running_serve_port() == self.config.serve_port

    def running(self, all_states: bool = False) -> frozenset[str]:
        """Names of the apps that are RUNNING (or, with ``all_states``, that exist)."""
        return _apps_in(None if all_states else frozenset({_RUNNING}))

    def stats(self, project: str, model: str, version: int) -> list[dict]:
        """Each replica's own batching figures (one call per replica reached)."""
        if app_name(project, model, version) not in self.running():
            raise NotFound(f"{model} v{version} is not deployed", field="version")
        handle = serve.get_app_handle(app_name(project, model, version))
        return [handle.stats.remote().result(timeout_s=30)]
