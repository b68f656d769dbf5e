"""The :class:`Client` and :func:`connect`."""

from __future__ import annotations

import sys
from typing import Any, Literal

from mlray._private.transport import ActorTransport, Transport
from mlray._private.validation import build
from mlray.abtest.client import AbTestsClient
from mlray.auth import api_key_from_env
from mlray.auth import resolve as resolve_key
from mlray.auth.tokens import platform_credential
from mlray.client.alerts_client import AlertsClient
from mlray.client.facade import Who
from mlray.client.features_client import FeaturesClient
from mlray.client.keys_client import KeysClient
from mlray.client.monitoring_client import MonitoringClient
from mlray.client.quotas_client import QuotasClient
from mlray.client.registry_client import RegistryClient
from mlray.client.serving_client import ServingClient
from mlray.client.tracking_client import ExperimentsClient, JobsClient
from mlray.config import PlatformConfig, adopt_running, config_differences, load_config
from mlray.errors import (
    ConfigError,
    InvalidInput,
)
from mlray.identity import Caller
from mlray.pipelines.client import PipelinesClient
from mlray.storage.artifacts import ArtifactStore

__all__ = ["Client", "connect"]


class Client:
    """Entry point to a platform: ``client.registry``, ``.experiments`` and ``.jobs``.

    ``caller`` is who the platform takes this client for; ``who`` is what each call
    presents (see :data:`Who`).
    """

    def __init__(self, config: PlatformConfig, transport: Any, caller: Caller,
                 project: str | None = None, mode: str = "ray", who: Who = None) -> None:
        self.config = config
        self.caller = caller
        self.mode = mode
        self.transport = transport
        self.who: Who = caller if mode == "local" else who
        project = project or config.project
        self.artifacts = ArtifactStore(config.resolved_artifact_uri)
        who = self.who
        self.registry = RegistryClient(transport, who, project, self.artifacts)
        self.experiments = ExperimentsClient(transport, who, project, self.artifacts)
        self.jobs = JobsClient(transport, who, project)
        self.serving = ServingClient(transport, who, project, self.registry)
        self.features = FeaturesClient(transport, who, project, config)
        self.alerts = AlertsClient(transport, who, project)
        self.monitoring = MonitoringClient(transport, who, project, config, self.registry)
        self.keys = KeysClient(transport, who, project)
        self.quotas = QuotasClient(transport, who, project)
        self.pipelines = PipelinesClient(transport, who, project)
        self.abtests = AbTestsClient(transport, who, project)

    @property
    def project(self) -> str:
        """The project this client works in."""
        return self.registry.project

    def delegate(self, ttl_s: float) -> str | None:
        """A credential for work this client hands to another process (a Train controller,
        a Tune trial): a token minted from its key that reaches only this project and
        expires after ``ttl_s`` seconds; None when the client presents no credential."""
        if not isinstance(self.who, str):
            return None
        return self.keys.token(ttl_s)


def connect(address: str | None = None, *, namespace: str | None = None,
            config: PlatformConfig | None = None, project: str | None = None,
            caller: Caller | None = None, local: bool = False,
            on_mismatch: Literal["raise", "adopt"] | None = None,
            api_key: str | None = None, as_platform: bool = False) -> Client:
    """Connect to an mlray platform and return a :class:`Client`.

    The running actors are the source of truth for where the platform keeps its state
    (``state_url``, ``artifact_uri``, ``online_url``, ``offline_uri``, ...: see
    ``SHARED_KEYS``); actors that do not run yet are created with this config: the
    ``registry`` and ``keys`` at once, the others when first used.

    Args:
        address: Ray address to join; ``"local"`` starts a new local Ray; None joins a
            running cluster if there is one (``"auto"``), else starts a local Ray.
        namespace: Ray namespace of the actors (default from config).
        config: platform config (default :func:`load_config`).
        project: project to work in (default from config).
        caller: identity, in local mode only (default: the local admin named by
            ``config.user``). Over Ray the actors decide who calls, from the API key.
        api_key: an mlray API key or token (default: ``MLRAY_API_KEY``, else the file
            ``MLRAY_API_KEY_FILE`` names, as a cluster's pods have it). Without one the
            platform takes the call for its local admin where it runs ``auth: none``, and
            refuses it where it runs ``auth: keys``.
        local: run the services in this process, without Ray (one process at a time).
        on_mismatch: when the running actors' config differs from this one: ``"adopt"``
            uses theirs and prints one line per differing key on stderr; ``"raise"``
            raises :class:`ConfigError`. Default: raise when ``config`` is given (a
            program that names its stores must not write elsewhere), adopt when the
            config comes from the environment (e.g. a job from ``ray job submit``).
        as_platform: act as the platform itself (admin of every project) with the secret
            kept in the state store: for ``mlray up``, which can open that store anyway.

    Raises:
        ConfigError: ``on_mismatch="raise"`` and the running platform's config differs
            (the message names the key and both values), or the running actors disagree.
        Unauthenticated: the API key is malformed, unknown, expired or revoked, or the
            platform requires one and none was given.
    """
    if api_key is not None and caller is not None:
        raise InvalidInput("give api_key or caller, not both", field="api_key")
    if caller is not None and not local:
        raise InvalidInput("caller= works only with local=True: over Ray the actors decide "
                           "who calls, from api_key (or MLRAY_API_KEY)", field="caller")
    if caller is None and not as_platform:
        api_key = api_key or api_key_from_env()
    on_mismatch = on_mismatch or ("raise" if config is not None else "adopt")
    config = config or load_config()
    if namespace:
        config = build(PlatformConfig, "", **{**config.model_dump(), "namespace": namespace})
    if local:
        from mlray._private.transport import LocalTransport
        from mlray.composition import local_services

        transport: Transport = LocalTransport(local_services(config))
        if api_key:
            caller = resolve_key(transport, api_key)
        return Client(config, transport, caller or Caller.local_admin(config.user), project,
                      mode="local")
    from actors import CORE, ActorHandles, actors_config, start_actors
    from mlray._private.ray_session import ensure_ray

    ensure_ray(address or config.ray_address, config.namespace, config.local_num_cpus)
    started = start_actors(config, CORE)
    config = _reconcile(config, actors_config(started), on_mismatch)
    transport = ActorTransport(ActorHandles(config, started))
    who = platform_credential(config) if as_platform else api_key
    return Client(config, transport, transport.call("keys", "whoami", who, idempotent=True),
                  project, who=who)


def _reconcile(local: PlatformConfig, running: PlatformConfig,
               on_mismatch: Literal["raise", "adopt"]) -> PlatformConfig:
    """``local``, or the running platform's config when they differ (see :func:`connect`)."""
    differences = config_differences(local, running)
    if not differences:
        return local
    if on_mismatch == "raise":
        key, line = next(iter(differences.items()))
        raise ConfigError(f"{line}; the platform keeps its own (use it: connect "
                          "without config=; or restart the platform to change it)", field=key)
    for line in differences.values():
        print(f"mlray: {line}; using the running platform's", file=sys.stderr, flush=True)
    return adopt_running(local, running)
