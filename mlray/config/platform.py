"""The typed platform configuration and its loader.

Only this module and the CLI read configuration files; everything further in takes a
:class:`PlatformConfig`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlray._private.placement import CustomResources
from mlray._private.redact import redact
from mlray.config.files import beside, read_yaml
from mlray.errors import ConfigError
from mlray.identity import check_project_name
from mlray.storage.urls import check_state_url

__all__ = ["CALLER_KEYS", "ENV_PREFIX", "SHARED_KEYS", "PlatformConfig", "adopt_running",
           "config_differences", "load_config"]

ENV_PREFIX = "MLRAY_"
CONFIG_ENV = "MLRAY_CONFIG"


class PlatformConfig(BaseModel):
    """Where mlray keeps its state and how it joins Ray. Fields mirror ``configs/platform.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    home: Path = Field(Path("~/.mlray"), description="Root directory of the embedded platform.")
    namespace: str = Field(
        "mlray", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Ray namespace of the actors."
    )
    project: str = Field("default", description="Project used when a call names none.")
    user: str = Field("local", min_length=1, max_length=128,
                      description="Identity of the local caller.")
    state_url: str | None = Field(None, description="sqlite:///path or redis://host:port/db.")
    artifact_uri: str | None = Field(None, description="Local path or pyarrow.fs URI.")
    online_url: str | None = Field(
        None, description="Online feature store: sqlite:///path or redis://host:port/db.")
    offline_uri: str | None = Field(
        None, description="Offline feature store (Parquet): local path or pyarrow.fs URI.")
    storage_uri: str | None = Field(
        None, description="Ray Train / Tune storage (runs, checkpoints): local path or "
                          "pyarrow.fs URI.")
    allow_local_storage: bool = Field(
        False, description="Accept node-local stores on a Ray cluster of several nodes.")
    stream_url: str | None = Field(
        None, description="Redis holding the feature streams (redis://...); none = push only.")
    redis_prefix: str = Field("mlray", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    ray_address: str | None = Field(None, description="Ray cluster to join (None = auto/local).")
    ray_head_port: int = Field(6390, ge=1024, le=65535, description="GCS port for `mlray up`.")
    ray_dashboard_port: int = Field(8265, ge=1024, le=65535)
    serve_port: int = Field(8000, ge=1024, le=65535, description="HTTP port of Ray Serve.")
    serving_config: Path | None = Field(
        None, description="Serving settings YAML (None = built-in defaults, configs/serving.yaml).")
    alerts_config: Path | None = Field(
        None, description="Alert rules YAML (configs/alerts.yaml is an example); none = no rules.")
    actor_num_cpus: float = Field(0.0, ge=0, le=64, description="CPUs each actor reserves.")
    actor_resources: CustomResources = Field(
        default_factory=dict,
        description="Custom Ray resources each control-plane actor asks for, which places "
                    "the actors on the nodes that have them (e.g. {mlray-control: 0.01}).")
    auth: Literal["none", "keys"] = Field(
        "none",
        description="'keys': every control-plane call and HTTP request must present an API "
                    "key (or a token minted from one). 'none' (the embedded default): a call "
                    "without a key acts as the local admin, allowed only while Serve binds "
                    "loopback.")
    local_num_cpus: int = Field(
        0, ge=0, le=4096,
        description="Logical CPUs of a local Ray mlray starts (0 = machine cores, at least 4).")

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, home: Path) -> Path:
        return Path(os.path.expandvars(str(home))).expanduser().absolute()

    @field_validator("serving_config", "alerts_config", mode="after")
    @classmethod
    def _absolute_file(cls, path: Path | None) -> Path | None:
        # Actors read these files in their own processes: never relative to a cwd.
        return None if path is None else path.expanduser().absolute()

    @field_validator("actor_resources", mode="before")
    @classmethod
    def _resources_from_json(cls, value: Any) -> Any:
        # MLRAY_ACTOR_RESOURCES='{"mlray-control": 0.01}' arrives as a string.
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON object of resource amounts: {exc}") from None
        return value

    @field_validator("project")
    @classmethod
    def _check_project(cls, project: str) -> str:
        return check_project_name(project)

    @field_validator("state_url")
    @classmethod
    def _check_state_url(cls, url: str | None) -> str | None:
        return None if url in (None, "") else check_state_url(url)

    @model_validator(mode="after")
    def _fill_locations(self) -> PlatformConfig:
        if self.state_url is None:
            object.__setattr__(self, "state_url", f"sqlite:///{self.home / 'state.db'}")
        if not self.artifact_uri:
            object.__setattr__(self, "artifact_uri", str(self.home / "artifacts"))
        if not self.online_url:
            object.__setattr__(self, "online_url", f"sqlite:///{self.home / 'online.db'}")
        if not self.offline_uri:
            object.__setattr__(self, "offline_uri", str(self.home / "offline"))
        if not self.storage_uri:
            object.__setattr__(self, "storage_uri", str(self.home / "ray-train"))
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Field values as ``repr`` shows them: credentials in URLs masked."""
        for name, value in super().__repr_args__():
            yield name, redact(value) if isinstance(value, str) else value

    @property
    def resolved_state_url(self) -> str:
        """The state URL after defaults were filled in."""
        assert self.state_url is not None
        return self.state_url

    @property
    def resolved_artifact_uri(self) -> str:
        """The artifact root after defaults were filled in."""
        assert self.artifact_uri is not None
        return self.artifact_uri


#: Where the platform keeps its state and how it serves: every process of one platform must
#: agree with its running actors on these (the actors' values win).
SHARED_KEYS = ("state_url", "redis_prefix", "artifact_uri", "online_url", "offline_uri",
               "storage_uri", "stream_url", "serving_config", "alerts_config", "serve_port",
               "auth")
#: What belongs to the calling process (who it is, which project, how it joins Ray).
CALLER_KEYS = ("project", "user", "ray_address", "local_num_cpus", "ray_head_port",
               "ray_dashboard_port")


def config_differences(local: PlatformConfig, running: PlatformConfig) -> dict[str, str]:
    """Each shared key on which ``local`` and the ``running`` actors' config differ, with a
    line naming the key and both values (credentials masked), in ``SHARED_KEYS`` order."""
    lines = {}
    for key in SHARED_KEYS:
        mine, theirs = getattr(local, key), getattr(running, key)
        if mine != theirs:
            shown = [redact(str(v)) if v is not None else "(unset)" for v in (theirs, mine)]
            lines[key] = (f"{key}: the running platform uses {shown[0]}, this process's "
                          f"config says {shown[1]}")
    return lines


def adopt_running(local: PlatformConfig, running: PlatformConfig) -> PlatformConfig:
    """The running platform's config, with the calling process's own keys kept."""
    return running.model_copy(update={key: getattr(local, key) for key in CALLER_KEYS})


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    fields = PlatformConfig.model_fields
    values: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key in fields:
            values[key] = value
    return values


_PATH_KEYS = ("home", "serving_config", "alerts_config", "artifact_uri", "offline_uri",
              "storage_uri")
_SQLITE_KEYS = ("state_url", "online_url")


def _beside(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """A config file's values with relative local paths (and ``sqlite:///`` paths) made
    absolute against ``base``, the file's directory, rather than the working directory."""
    out = dict(values)
    for key in (*_PATH_KEYS, *_SQLITE_KEYS):
        value = out.get(key)
        if not isinstance(value, str) or not value:
            continue
        if key in _SQLITE_KEYS:
            path = value.removeprefix("sqlite:///")
            if path != value and path not in ("", ":memory:"):
                out[key] = f"sqlite:///{beside(path, base)}"
        else:
            out[key] = beside(value, base)
    return out


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> PlatformConfig:
    """Build the platform config: defaults < file (``path`` or ``$MLRAY_CONFIG``) < ``MLRAY_*``.

    Relative paths in the file (``home``, ``serving_config``, ``alerts_config``, local
    ``artifact_uri`` / ``offline_uri``, ``sqlite:///`` URLs) resolve against the file's
    directory; those from the environment against the working directory.

    Raises:
        ConfigError: naming the key, its source and the reason, for any bad value.
    """
    env = os.environ if env is None else env
    layers: list[tuple[str, dict[str, Any]]] = []
    file = path or env.get(CONFIG_ENV)
    if file:
        layers.append((str(file), _beside(read_yaml(Path(file)), Path(file).parent)))
    # Actors run in other processes, from other directories: no path stays relative
    # (Path(".") is the working directory, asked only for a relative value).
    layers.append(("environment", _beside(_from_env(env), Path("."))))
    merged: dict[str, Any] = {}
    source_of: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            merged[key] = value
            source_of[key] = source
    try:
        return PlatformConfig.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "config"
        source = source_of.get(str(err["loc"][0]) if err["loc"] else "", "config")
        where = f"{ENV_PREFIX}{key.upper()}" if source == "environment" else f"{source}: {key}"
        raise ConfigError(f"{where}: {err['msg']}", field=key) from None
