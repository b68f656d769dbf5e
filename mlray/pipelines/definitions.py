"""Pipeline definitions: stages, their DAG, typed parameters and triggers.

A :class:`PipelineSpec` validates on construction: stage names are unique, every
``depends_on`` names a stage of the pipeline, the graph has no cycle (each refused in one
line that names the stages), and every ``$param`` reference in a stage's ``params`` names
a declared parameter. Definitions come from YAML (``configs/pipelines/*.yaml``, see
:func:`load_pipelines`) or are built in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlray._private.types import Name
from mlray.config.files import beside, load_yaml_model
from mlray.errors import ConfigError, InvalidInput

__all__ = [
    "BUILTIN_KINDS",
    "Approval",
    "Parameter",
    "PipelineFile",
    "PipelineSpec",
    "Retry",
    "StageSpec",
    "Trigger",
    "load_pipelines",
    "topological_order",
]

#: Stage kinds with a built-in implementation name (see :mod:`mlray.pipelines.kinds`);
#: any other kind must be ``module:callable``.
BUILTIN_KINDS = ("data_validation", "training_set", "train", "tune", "evaluate", "validate",
                 "approval", "deploy", "abtest", "promote")

#: Params of the built-in kinds that name local files: a relative one in a YAML file is
#: taken against that file's directory (as feature sources are), never the working dir.
PATH_PARAMS = frozenset({"config", "path", "data", "entity_rows"})

_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float),
                                       "bool": (bool,), "list": (list,), "dict": (dict,)}


class Parameter(BaseModel):
    """A typed run parameter; a stage refers to it as ``"$name"`` in its ``params``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["str", "int", "float", "bool", "list", "dict"] = "str"
    default: Any = None
    description: str = ""

    def coerce(self, name: str, value: Any) -> Any:
        """``value`` checked against the type (an int is a float; a bool is not an int).

        Raises:
            InvalidInput: the value has another type (names the parameter).
        """
        wanted = _TYPES[self.type]
        bad = isinstance(value, bool) and self.type in ("int", "float")
        if bad or not isinstance(value, wanted):
            raise InvalidInput(f"parameter {name!r} must be {self.type}, got {value!r}",
                               field=f"params.{name}")
        return float(value) if self.type == "float" else value


class Retry(BaseModel):
    """How often a failed stage is tried again, waiting ``backoff_s * 2**attempt``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(0, ge=0, le=10, description="Retries after the first try.")
    backoff_s: float = Field(1.0, ge=0, le=3600)


class Approval(BaseModel):
    """What an ``approval`` stage waits for and what happens when nobody answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(86_400, gt=0, le=30 * 86_400)
    on_timeout: Literal["fail", "skip"] = Field(
        "fail", description="fail: the run fails; skip: this stage and those after it skip.")


class StageSpec(BaseModel):
    """One stage: what runs (``kind``), after what, with which parameters and resources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    kind: str = Field(description="A built-in kind or 'module:callable'.")
    depends_on: list[Name] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Literal values; '$name' is a run parameter.")
    num_cpus: float = Field(1.0, ge=0, le=512)
    num_gpus: float = Field(0.0, ge=0, le=64)
    retry: Retry = Retry()
    timeout_s: float | None = Field(None, gt=0, le=7 * 86_400)
    cache: bool = Field(True, description="Reuse the output of an identical earlier run.")
    version: str | None = Field(None, max_length=128,
                                description="Code version for the cache key (default: a "
                                            "hash of the callable's source).")
    approval: Approval | None = None

    @field_validator("kind")
    @classmethod
    def _check_kind(cls, kind: str) -> str:
        if kind in BUILTIN_KINDS:
            return kind
        module, _, attr = kind.partition(":")
        if not module or not attr or not all(p.isidentifier() for p in
                                              [*module.split("."), *attr.split(".")]):
            raise ValueError(f"kind {kind!r} is neither one of {', '.join(BUILTIN_KINDS)} "
                             "nor 'module:callable'")
        return kind

    @model_validator(mode="after")
    def _check_approval(self) -> StageSpec:
        if self.approval is not None and self.kind != "approval":
            raise ValueError(f"stage {self.name!r}: 'approval' settings need kind: approval")
        return self

    @property
    def gate(self) -> Approval:
        """The approval settings (the defaults when none are given)."""
        return self.approval or Approval()


class Schedule(BaseModel):
    """Start a run on a cron schedule (5 fields, UTC)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["schedule"] = "schedule"
    cron: str

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, cron: str) -> str:
        from mlray.pipelines.cron import CronSchedule

        CronSchedule.parse(cron)
        return cron


class NewData(BaseModel):
    """Start a run when a new partition (file or directory) appears under ``path``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["new_data"] = "new_data"
    path: str = Field(min_length=1)


class NewFeedback(BaseModel):
    """Start a run once ``rows`` new feedback rows were logged for the project."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["feedback"] = "feedback"
    rows: int = Field(ge=1)


class AlertFired(BaseModel):
    """Start a run when the alert rule ``rule`` fires in the project (the rule needs an
    ``action``, so the alerts service hands its firing on)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["alert"] = "alert"
    rule: str = Field(min_length=1)


Trigger = Annotated[Schedule | NewData | NewFeedback | AlertFired, Field(discriminator="type")]


class PipelineSpec(BaseModel):
    """A pipeline: parameters, stages forming a DAG, and what starts it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    description: str = ""
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    stages: list[StageSpec] = Field(min_length=1)
    triggers: list[Trigger] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_graph(self) -> PipelineSpec:
        topological_order(self.stages)
        for stage in self.stages:
            for key, value in stage.params.items():
                ref = _param_ref(value)
                if ref is not None and ref not in self.parameters:
                    raise ValueError(f"stage {stage.name!r} param {key!r} refers to unknown "
                                     f"parameter {ref!r}")
        return self

    def stage(self, name: str) -> StageSpec:
        """The stage called ``name``.

        Raises:
            InvalidInput: no such stage (names the ones there are).
        """
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise InvalidInput(f"pipeline {self.name!r} has no stage {name!r}; it has "
                           f"{[s.name for s in self.stages]}", field="stage")

    def run_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters of a run: ``given`` checked and typed, defaults filled in.

        Raises:
            InvalidInput: an unknown parameter, a wrong type, or a missing value.
        """
        unknown = sorted(set(given) - set(self.parameters))
        if unknown:
            raise InvalidInput(f"pipeline {self.name!r} has no parameter(s) {unknown}",
                               field="params")
        out: dict[str, Any] = {}
        for name, spec in self.parameters.items():
            value = given.get(name, spec.default)
            if value is None:
                raise InvalidInput(f"parameter {name!r} of pipeline {self.name!r} has no "
                                   "value and no default", field=f"params.{name}")
            out[name] = spec.coerce(name, value)
        return out

    def stage_params(self, stage: StageSpec, run_params: Mapping[str, Any]) -> dict[str, Any]:
        """``stage``'s params with each ``"$name"`` replaced by the run's value."""
        return {key: (run_params[ref] if (ref := _param_ref(value)) is not None else value)
                for key, value in stage.params.items()}


def _param_ref(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("$") and value[1:].isidentifier():
        return value[1:]
    return None


def topological_order(stages: Sequence[StageSpec]) -> list[str]:
    """Stage names with every stage after those it depends on.

    Raises:
        ValueError: a duplicate name, an unknown dependency or a cycle, in one line that
            names them.
    """
    names = [s.name for s in stages]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate stage name(s): {', '.join(dupes)}")
    deps = {s.name: list(dict.fromkeys(s.depends_on)) for s in stages}
    for name, needs in deps.items():
        unknown = [d for d in needs if d not in deps]
        if unknown:
            raise ValueError(f"stage {name!r} depends on unknown stage(s): "
                             f"{', '.join(unknown)}")
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name):], name]
            raise ValueError(f"cycle in depends_on: {' -> '.join(cycle)}")
        state[name] = 1
        for dep in deps[name]:
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in names:
        visit(name, [])
    return order


class PipelineFile(BaseModel):
    """One YAML file: a list of pipelines."""

    model_config = ConfigDict(extra="forbid")

    pipelines: list[PipelineSpec] = Field(default_factory=list)


def _resolve_paths(spec: PipelineSpec, base: Path) -> PipelineSpec:
    stages = []
    for stage in spec.stages:
        params = {k: beside(v, base) if k in PATH_PARAMS and isinstance(v, str)
                  and _param_ref(v) is None and stage.kind in BUILTIN_KINDS else v
                  for k, v in stage.params.items()}
        stages.append(stage.model_copy(update={"params": params}))
    return spec.model_copy(update={"stages": stages})


def load_pipelines(path: str | Path) -> list[PipelineSpec]:
    """The pipelines of one YAML file, or of every ``*.yaml``/``*.yml`` file of a directory.

    Raises:
        ConfigError: a file is not valid (names the file and key), none is found, or two
            files define one pipeline.
    """
    root = Path(path)
    files = sorted([*root.glob("*.yaml"), *root.glob("*.yml")]) if root.is_dir() else [root]
    if not files or not files[0].exists():
        raise ConfigError(f"{root}: no pipeline definitions found", field=str(root))
    found: dict[str, Path] = {}
    out: list[PipelineSpec] = []
    for file in files:
        for spec in load_yaml_model(file, PipelineFile).pipelines:
            spec = _resolve_paths(spec, file.parent)
            if spec.name in found:
                raise ConfigError(f"{file}: pipeline {spec.name!r} is also defined in "
                                  f"{found[spec.name]}", field=f"pipelines.{spec.name}")
            found[spec.name] = file
            out.append(spec)
    return out
