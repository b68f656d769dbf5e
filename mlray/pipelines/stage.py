"""What runs inside a stage's task: the stage's context and the wrapper that stores its
output as a content-addressed artifact.

A stage callable takes one :class:`StageContext` and returns a JSON value or a
:class:`~pathlib.Path` (a file or directory). Either becomes an artifact in the
platform's :class:`~mlray.storage.artifacts.ArtifactStore`; downstream stages get it by
reference (URI and sha256) and read it with :meth:`StageContext.input` or
:meth:`StageContext.input_path`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mlray.errors import InvalidInput, NotFound
from mlray.storage.artifacts import ArtifactRef, ArtifactStore

__all__ = ["OUTPUT_JSON", "StageContext", "StageTask", "run_stage"]

#: The member name of an output that was a JSON value.
OUTPUT_JSON = "output.json"


class StageTask(BaseModel):
    """Everything a stage's task needs, sent with it (no actor round-trip)."""

    project: str
    pipeline: str
    run_id: str
    stage: str
    target: str = Field(description="'module:callable' of the code to run.")
    params: dict[str, Any]
    run_params: dict[str, Any]
    inputs: dict[str, ArtifactRef]
    artifact_uri: str
    credential: str | None = Field(None, description="A project-scoped token of the run's "
                                                     "requester, for stages that call mlray.")
    namespace: str | None = None
    code_version: str = Field("", description="The version of ``target``'s code the cache key "
                                              "was made with (its worker runs that code).")
    since: float | None = Field(None, description="When this run first started the stage: "
                                                  "an experiment or rollout it finds started "
                                                  "since then is its own (resume adopts it).")


class StageContext:
    """A stage's view of its run: parameters, upstream outputs and the platform."""

    def __init__(self, task: StageTask, artifacts: ArtifactStore) -> None:
        self.task = task
        self.params = task.params
        self.run_params = task.run_params
        self.artifacts = artifacts
        self.project = task.project
        self.run_id = task.run_id
        self.stage = task.stage
        self._workdir: Path | None = None

    @property
    def workdir(self) -> Path:
        """A scratch directory of this task (an output may be written here)."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"mlray-{self.stage}-"))
        return self._workdir

    def _ref(self, stage: str) -> ArtifactRef:
        ref = self.task.inputs.get(stage)
        if ref is None:
            raise NotFound(f"stage {self.stage!r} has no input from {stage!r}; it has "
                           f"{sorted(self.task.inputs)}", field="stage")
        return ref

    def input_path(self, stage: str) -> Path:
        """The output of upstream ``stage`` as a local file or directory (sha256 checked)."""
        ref = self._ref(stage)
        return self.artifacts.fetch(ref.uri, ref.sha256, self.workdir / "inputs" / stage)

    def input(self, stage: str) -> Any:
        """The JSON value upstream ``stage`` returned.

        Raises:
            InvalidInput: that stage's output was a file or directory, not a value.
        """
        ref = self._ref(stage)
        if ref.is_dir or not ref.uri.endswith("/" + OUTPUT_JSON):
            raise InvalidInput(f"stage {stage!r} returned a path: read it with input_path",
                               field="stage")
        return json.loads(self.artifacts.read_bytes(ref.uri, ref.sha256))

    def client(self) -> Any:
        """An mlray client in the run's project, acting as the run's requester."""
        import mlray

        return mlray.connect(api_key=self.task.credential, project=self.project,
                             namespace=self.task.namespace)


def resolve(target: str) -> Any:
    """The callable ``module:qualname`` names.

    Raises:
        InvalidInput: the module or attribute does not exist, or is not callable.
    """
    import importlib

    module_name, _, attr = target.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"stage code {target!r} cannot be loaded: {exc}",
                           field="kind") from None
    if not callable(found):
        raise InvalidInput(f"stage code {target!r} is not callable", field="kind")
    return found


def run_stage(task: StageTask) -> ArtifactRef:
    """Run the stage's callable and store what it returns; the output's reference."""
    artifacts = ArtifactStore(task.artifact_uri)
    ctx = StageContext(task, artifacts)
    result = resolve(task.target)(ctx)
    if isinstance(result, Path):
        return artifacts.put(result)
    path = ctx.workdir / OUTPUT_JSON
    path.write_text(json.dumps(result, sort_keys=True, default=str))
    return artifacts.put(path)
