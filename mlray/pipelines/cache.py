"""Stage cache: the key of a stage's work and the index from keys to stored outputs.

key = sha256 of (the code's version, the stage's resolved parameters, the sha256 of each
input artifact, and the fingerprint of the local data its path parameters name; see
:mod:`mlray.pipelines.paths`, so changed input data runs the stage again). The code's
version is the stage's explicit ``version`` or else a hash of its callable's source, so
editing a function invalidates its cache and everything downstream of it (their inputs
change). The ``pipelines`` actor has the versions worked out in a Ray task
(:func:`code_versions`), so importing a stage's module never runs a project's code inside
the platform's own process.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from typing import Any

from mlray.errors import InvalidInput, MlrayError
from mlray.pipelines.definitions import PipelineSpec
from mlray.pipelines.paths import data_fingerprints
from mlray.pipelines.stage import resolve
from mlray.storage.artifacts import ArtifactRef, ArtifactStore
from mlray.storage.base import Put, StateStore

__all__ = ["StageCache", "cache_key", "code_version", "code_versions"]

CACHE = "pipeline_cache"


def code_version(target: str, explicit: str | None = None) -> str:
    """``explicit`` when given, else ``src:`` + sha256 of the callable's source (its name
    when no source can be read, e.g. a builtin)."""
    if explicit:
        return f"v:{explicit}"
    fn = resolve(target)
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = target
    return "src:" + hashlib.sha256(source.encode()).hexdigest()[:16]


def code_versions(spec: PipelineSpec) -> dict[str, str]:
    """The code version of every stage that runs code (not approvals).

    Raises:
        InvalidInput: a stage's code cannot be loaded (names the pipeline and stage).
    """
    from mlray.pipelines.kinds import target_of

    out = {}
    for stage in spec.stages:
        try:
            target = target_of(stage.kind)
            if target is not None:
                out[stage.name] = code_version(target, stage.version)
        except MlrayError as exc:
            raise InvalidInput(f"pipeline {spec.name!r} stage {stage.name!r}: {exc.message}",
                               field=f"{spec.name}.stages.{stage.name}.kind") from None
    return out


def cache_key(target: str, version: str, params: Mapping[str, Any],
              inputs: Mapping[str, ArtifactRef]) -> str:
    """The key of running ``target`` at ``version`` on ``params`` and ``inputs`` (and on
    the data behind the path params, when they name local files or directories)."""
    what: dict[str, Any] = {"target": target, "version": version, "params": params,
                            "inputs": {k: v.sha256 for k, v in sorted(inputs.items())}}
    data = data_fingerprints(params)
    if data:  # keys of stages without local data stay as they were
        what["data"] = data
    body = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class StageCache:
    """Outputs by cache key, per project and pipeline stage (a durable index)."""

    def __init__(self, store: StateStore, artifacts: ArtifactStore) -> None:
        self._store = store
        self._artifacts = artifacts

    @staticmethod
    def _key(project: str, pipeline: str, stage: str, key: str) -> str:
        return f"{project}/{pipeline}/{stage}/{key}"

    def get(self, project: str, pipeline: str, stage: str, key: str) -> ArtifactRef | None:
        """The output stored under ``key``; None when there is none or its bytes are gone."""
        doc = self._store.get(CACHE, self._key(project, pipeline, stage, key))
        if doc is None:
            return None
        ref = ArtifactRef.model_validate(doc.data["output"])
        try:
            self._artifacts.verify(ref.uri, ref.sha256)
        except Exception:  # deleted or changed: run the stage again
            return None
        return ref

    def put(self, project: str, pipeline: str, stage: str, key: str, output: ArtifactRef,
            run_id: str) -> None:
        """Remember ``output`` as the result of ``key``."""
        self._store.apply([Put(collection=CACHE, key=self._key(project, pipeline, stage, key),
                               data={"output": output.model_dump(mode="json"),
                                     "run_id": run_id})])
