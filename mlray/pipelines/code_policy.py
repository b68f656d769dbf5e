"""Which stage code an editor's pipeline may run: the built-in kinds, the platform's own
stage callables, and what a platform admin allowed.

A ``module:callable`` stage runs inside the Ray cluster, where it could read the state
store and the platform secret; so, as for model architectures, only code an admin of every
project listed is accepted: when a pipeline is applied (before its module is loaded), and
again when a run starts or resumes, so a revoked entry stops running. An entry is either
one ``module:callable`` or a module path, which allows that module's callables and those
of its submodules (``pkg.mod`` allows ``pkg.mod:f`` and ``pkg.mod.sub:g``, not
``pkg.models:h``). The list is the state-store document ``platform/pipeline_code``;
changes are admin-only and audited as ``platform.pipeline_code``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from mlray.auth.allowlist import AllowList
from mlray.errors import InvalidInput, PermissionDenied
from mlray.identity import ALL_PROJECTS, Caller, Role
from mlray.pipelines.definitions import BUILTIN_KINDS, PipelineSpec
from mlray.pipelines.kinds import KINDS
from mlray.storage.base import StateStore

__all__ = ["PLATFORM_STAGES", "CodePolicy", "check_pipeline_code", "code_allowed"]

#: The platform's own stage callables (the built-in kinds' code and the retraining
#: stages a shipped pipeline names); they act only as the run's requester.
PLATFORM_STAGES = frozenset({*KINDS.values(), "mlray.pipelines.retraining:gates",
                             "mlray.pipelines.retraining:conclude"})

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ENTRY = re.compile(rf"^{_IDENT}(\.{_IDENT})*(:{_IDENT}(\.{_IDENT})*)?$")


def code_allowed(kind: str, allowed: Collection[str]) -> bool:
    """Whether a stage of ``kind`` may run: built in, platform code, listed exactly, or
    under a listed module (matched on dots, never as a raw string prefix)."""
    if kind in BUILTIN_KINDS or kind in PLATFORM_STAGES or kind in allowed:
        return True
    module = kind.partition(":")[0]
    return any(":" not in e and (module == e or module.startswith(e + ".")) for e in allowed)


def check_pipeline_code(specs: Iterable[PipelineSpec], allowed: Collection[str]) -> None:
    """Raise :class:`PermissionDenied` (one line) for the first stage whose code is not
    allowed."""
    for spec in specs:
        for stage in spec.stages:
            if not code_allowed(stage.kind, allowed):
                raise PermissionDenied(
                    f"pipeline {spec.name!r} stage {stage.name!r}: code {stage.kind!r} is not "
                    f"allowed; a platform admin can allow it with `mlray pipelines code "
                    f"--allow {stage.kind}` (or --allow {stage.kind.partition(':')[0]})",
                    field=f"stages.{stage.name}.kind")


class CodePolicy:
    """The admin-allowed stage code (``module:callable`` or module entries)."""

    def __init__(self, store: StateStore) -> None:
        self._list = AllowList(store, "pipeline_code", "platform.pipeline_code")

    def allowed(self) -> frozenset[str]:
        """The listed entries (built-ins and platform stages not included)."""
        return self._list.entries()

    def check(self, specs: Iterable[PipelineSpec]) -> None:
        """:func:`check_pipeline_code` against the stored list."""
        check_pipeline_code(specs, self.allowed())

    def change(self, caller: Caller, *, allow: Collection[str] = (),
               revoke: Collection[str] = ()) -> list[str]:
        """Add ``allow`` and remove ``revoke`` (platform admins only; audited); returns
        the new list.

        Raises:
            PermissionDenied: the caller is not admin of every project.
            InvalidInput: an entry is neither a module path nor ``module:callable``.
        """
        caller.require(ALL_PROJECTS, Role.admin)
        for entry in allow:
            if not ENTRY.match(entry):
                raise InvalidInput(f"pipeline code {entry!r}: give a module path "
                                   "(pkg.mod) or module.path:callable", field="allow")
        return self._list.change(caller, allow, revoke)
