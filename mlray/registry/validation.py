"""Validation the platform owns: reports the registry computed itself, and gates an admin
requires; the calls of :class:`mlray.registry.ModelRegistry` that handle them.

No caller writes a report. ``validate_version`` fetches the version's artifact and a
labelled Parquet file from the artifact store (both sha256-checked), evaluates them in
the registry's own process with the evaluator the platform wired in
(:func:`mlray.models.validation.evaluate_artifact`), and stores the report with
``computed_by`` set to the platform's user. Promotion to Production counts only such a
report. The gates evaluated are the model's *required* gates (set by a project admin,
audited) plus any the requester adds: a requester can make the check stricter, never
weaker. Documents: ``gate_policy/<project>/<model>`` holds the required gates.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated

from pydantic import Field

from mlray._private.types import Name, Project, now
from mlray._private.validation import boundary
from mlray.auth.tokens import PLATFORM_USER
from mlray.errors import ConfigError
from mlray.identity import Caller, Role
from mlray.registry._documents import VERSIONS, RegistryDocuments, model_key
from mlray.registry.architectures import ArchitecturePolicy
from mlray.registry.gates import GateReport, GateSpec
from mlray.registry.types import ModelVersion, RegisteredModel, Stage

__all__ = ["GATE_POLICY", "Evaluator", "ValidationRules", "trusted_report"]

GATE_POLICY = "gate_policy"
#: (model dir, data file, label, gates, Production metrics, allowed architectures) → report.
Evaluator = Callable[[Path, Path, str, list[GateSpec], dict[str, float] | None,
                      Collection[str]], GateReport]
Sha256 = str
Label = Annotated[str, Field(min_length=1, max_length=256)]


def trusted_report(version: ModelVersion) -> GateReport | None:
    """The version's report if the platform computed it, else None (it never counts)."""
    report = version.validation
    return report if report is not None and report.computed_by == PLATFORM_USER else None


class ValidationRules(RegistryDocuments):
    """The validation calls of :class:`mlray.registry.ModelRegistry`."""

    def _required(self, project: str, model: str) -> list[GateSpec]:
        doc = self._store.get(GATE_POLICY, model_key(project, model))
        return [GateSpec.model_validate(g) for g in doc.data["gates"]] if doc else []

    def _gate_failures(self, project: str, model: str, version: ModelVersion) -> list[str]:
        """Why ``version`` may not enter Production: failed critical gates of its trusted
        report, required gates the report did not evaluate, or no trusted report while
        the model has required gates. Empty when it may."""
        required = [g for g in self._required(project, model) if g.severity == "critical"]
        report = trusted_report(version)
        if report is None:
            return (["no validation report computed by the platform "
                     f"(run `mlray validate {model} {version.version} --data ...`)"]
                    if required else [])
        evaluated = {r.name for r in report.results}
        return [*report.failed_critical,
                *(f"{g.name} (not evaluated)" for g in required if g.name not in evaluated)]

    @boundary
    def required_gates(self, caller: Caller, project: Project, model: Name) -> list[GateSpec]:
        """The gates every validation of ``model`` evaluates (an admin sets them)."""
        caller.require(project, Role.viewer)
        self._model_doc(project, model)
        return self._required(project, model)

    @boundary
    def set_required_gates(self, caller: Caller, project: Project, model: Name,
                           gates: list[GateSpec]) -> list[GateSpec]:
        """Replace ``model``'s required gates (project admins only; audited)."""
        caller.require(project, Role.admin)
        self._model_doc(project, model)
        key = model_key(project, model)
        doc = self._store.get(GATE_POLICY, key)
        before = doc.data["gates"] if doc else []
        after = [g.model_dump(mode="json") for g in gates]
        self._store.put(GATE_POLICY, key, {"gates": after},
                        expected_version=doc.version if doc else 0,
                        audit=self._audit(caller, project, "model.required_gates", key,
                                          before={"gates": before}, after={"gates": after}))
        return list(gates)

    @boundary
    def validate_version(self, caller: Caller, project: Project, model: Name, version: int,
                         data_uri: str, data_sha256: Sha256, label: Label,
                         gates: list[GateSpec] | None = None) -> ModelVersion:
        """Evaluate ``version`` on the labelled Parquet artifact ``data_uri`` here, in the
        platform, against the required gates plus ``gates``; store and return the report.
        A no-regression gate compares with the Production version scored on the same rows.

        Raises:
            ConfigError: this registry was built without an evaluator or artifact store.
            NotFound / IntegrityError: the model artifact or the data is missing or altered.
            InvalidInput: the data lacks the label or a feature.
        """
        caller.require(project, Role.editor)
        if self._evaluator is None or self._artifacts is None:
            raise ConfigError("this registry cannot evaluate models (no evaluator or "
                              "artifact store); call the platform's registry")
        current = ModelVersion.model_validate(self._version_doc(project, model, version).data)
        required = self._required(project, model)
        names = {g.name for g in required}
        effective = [*required, *(g for g in gates or [] if g.name not in names)]
        production = [ModelVersion.model_validate(d.data) for d in self._store.list(
            VERSIONS, {"stage": Stage.PRODUCTION.value}, prefix=f"{project}/{model}/")
            if d.data["version"] != version]
        allowed = ArchitecturePolicy(self._store).allowed()
        with tempfile.TemporaryDirectory(prefix="mlray-validate-") as tmp:
            model_dir = self._artifacts.fetch(current.artifact_uri, current.artifact_sha256,
                                              Path(tmp) / "model")
            data = self._artifacts.fetch(data_uri, data_sha256, Path(tmp) / "data")
            reference = None
            if production and any(g.kind == "no_regression" for g in effective):
                # The Production model scored on the same rows: a fair comparison, and
                # not the metrics its registration claimed.
                prod_dir = self._artifacts.fetch(production[-1].artifact_uri,
                                                 production[-1].artifact_sha256,
                                                 Path(tmp) / "production")
                reference = self._evaluator(prod_dir, data, label, [], None, allowed).metrics
            report = self._evaluator(model_dir, data, label, effective, reference, allowed)
        report = report.model_copy(update={"computed_by": PLATFORM_USER,
                                           "requested_by": caller.user, "data_uri": data_uri,
                                           "data_sha256": data_sha256})

        def attempt() -> ModelVersion:
            mdoc, vdoc = self._model_and_version(project, model, version)
            updated = ModelVersion.model_validate(vdoc.data).model_copy(update={
                "validation": report, "updated_at": now(), "updated_by": caller.user})
            self._store.put(VERSIONS, vdoc.key,
                            updated.model_dump(mode="json", exclude={"aliases"}), vdoc.version,
                            self._audit(caller, project, "version.validation", vdoc.key,
                                        after={"passed": report.passed,
                                               "failed": report.failed_critical,
                                               "computed_by": PLATFORM_USER,
                                               "data_sha256": data_sha256}))
            return self._version(vdoc.model_copy(update={"data": updated.model_dump()}),
                                 RegisteredModel.model_validate(mdoc.data))

        return self._retry(attempt)
