"""The ``monitor`` actor's logic: sliding windows of live sketches, drift and quality.

Ingress replicas drain their :class:`~mlray.monitoring.sketch.Recorder` in the background
and ship the sketches here, each wrapped in a :class:`SketchEnvelope` that names the
project, model and version (``SketchEnvelope(...).model_dump()`` or the same plain dict).
The monitor keeps one :class:`SketchWindow` per (project, model, version) and writes every
window an ingest touched to the state store before it answers, so a restarted actor
reloads them all: what a restart loses is only what replicas had not shipped yet (their
current flush interval).

Drift and quality are computed on demand against the version's training baseline, read
from the registry over the same store (cached: a version's baseline does not change).
:meth:`Monitor.values` turns them into alert-engine samples named per
:mod:`mlray.alerts.catalogue`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlray._private.types import Name, Project
from mlray._private.validation import boundary
from mlray.errors import InvalidInput, MlrayError, NotFound
from mlray.identity import Caller, Role
from mlray.monitoring.baseline import Baseline
from mlray.monitoring.drift import DriftConfig, DriftReport, compute_drift
from mlray.monitoring.quality import QualityReport, QualityThresholds, check_quality
from mlray.monitoring.sketch import Sketch
from mlray.monitoring.window import SketchWindow
from mlray.storage.base import Put, StateStore

__all__ = ["MONITOR_WINDOWS", "PREDICTION_FEATURE", "BaselineSource", "IngestResult",
           "Monitor", "SketchEnvelope", "window_key"]

#: The state-store collection of the persisted windows, keyed ``project/model/version``.
MONITOR_WINDOWS = "monitor_windows"
#: The ``feature`` label of the model's output in drift samples.
PREDICTION_FEATURE = "__prediction__"

#: ``(project, model, version) -> Baseline`` (None: the version has no baseline).
log = logging.getLogger("mlray.monitor")
BaselineSource = Callable[[str, str, int], "Baseline | None"]
#: (project, model, version, window_s, now) -> live model metrics (accuracy, f1, rmse...).
PerformanceSource = Callable[[str, str, int, float, float], dict[str, float]]

_DRIFT_SAMPLES = (("psi", "mlray_drift_psi", "statistic"), ("kl", "mlray_drift_kl", "statistic"),
                  ("js", "mlray_drift_js", "statistic"), ("ks", "mlray_drift_ks", "statistic"),
                  ("ks", "mlray_drift_ks_pvalue", "p_value"),
                  ("chi2", "mlray_drift_chi2_pvalue", "p_value"))
_QUALITY_SAMPLES = {"missing": "mlray_quality_missing_ratio",
                    "out_of_range": "mlray_quality_out_of_range_ratio",
                    "type_mismatch": "mlray_quality_type_mismatch_ratio",
                    "unseen_category": "mlray_quality_unseen_category_ratio"}


class SketchEnvelope(BaseModel):
    """One sketch as a replica ships it: which version it is of, and the sketch's dict."""

    model_config = ConfigDict(extra="forbid")

    project: Project
    model: Name
    version: int = Field(ge=1)
    sketch: dict[str, Any] = Field(description="Sketch.to_dict() of one time bucket.")


class IngestResult(BaseModel):
    """What an ingest did: bad sketches are counted, not raised (replicas ship blind)."""

    accepted: int = 0
    late: int = Field(0, description="Older than the window's max age: dropped.")
    rejected: int = Field(0, description="Malformed, or of bins other than the window's.")
    errors: list[str] = Field(default_factory=list, description="The first few reasons.")


def window_key(project: str, model: str, version: int) -> str:
    """The key of one version's window: ``project/model/version``."""
    return f"{project}/{model}/{version}"


def _split(key: str) -> tuple[str, str, int]:
    project, model, version = key.split("/")
    return project, model, int(version)


def _fmt_window(window_s: float) -> str:
    return f"{window_s:g}s"


class Monitor:
    """Windows of live sketches per served version; drift, quality and alert samples."""

    #: Methods that take no caller and answer only the platform (admin of every project).
    PLATFORM = frozenset({"ingest", "projects"})

    def __init__(self, store: StateStore, baselines: BaselineSource, *,
                 window_s: float = 3600.0, max_age_s: float = 7 * 86400.0,
                 drift_config: DriftConfig | None = None,
                 quality_thresholds: QualityThresholds | None = None,
                 performance: PerformanceSource | None = None,
                 performance_every_s: float = 15.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._baselines = baselines
        self._cache: dict[str, Baseline | None] = {}
        self.window_s = float(window_s)
        self.max_age_s = float(max_age_s)
        self.drift_config = drift_config or DriftConfig()
        self.quality_thresholds = quality_thresholds or QualityThresholds()
        if not performance_every_s > 0:
            raise InvalidInput(f"performance_every_s must be > 0 (got {performance_every_s})",
                               field="performance_every_s")
        self._performance = performance
        self._performance_every_s = performance_every_s
        self._performance_at: dict[tuple[str, float], tuple[float, dict[str, float]]] = {}
        self._clock = clock
        self._windows = {d.key: SketchWindow.from_dict(d.data)
                         for d in store.list(MONITOR_WINDOWS)}

    @classmethod
    def over_registry(cls, store: StateStore, registry: Any, offline_uri: str | None = None,
                      **kwargs: Any) -> Monitor:
        """A monitor reading baselines from ``registry`` (a ModelRegistry on ``store``) and,
        with ``offline_uri``, live model metrics from the prediction and feedback logs."""
        from mlray.monitoring.performance import performance_source

        system = Caller.local_admin("monitor")

        def baseline(project: str, model: str, version: int) -> Baseline | None:
            found = registry.get_version(system, project, model, version).baseline
            return None if found is None else Baseline.model_validate(found)

        if offline_uri is not None:
            kwargs.setdefault("performance", performance_source(offline_uri, registry))
        return cls(store, baseline, **kwargs)

    def _live_metrics(self, project: str, model: str, version: int, window_s: float,
                      now: float) -> dict[str, float]:
        """The version's live model metrics over ``window_s``, recomputed at most every
        ``performance_every_s`` (they join Parquet logs); {} without a source or labels."""
        if self._performance is None:
            return {}
        key = (window_key(project, model, version), window_s)
        cached = self._performance_at.get(key)
        if cached is None or now - cached[0] >= self._performance_every_s:
            try:
                metrics = self._performance(project, model, version, window_s, now)
            except Exception as exc:  # a log file being written, the version gone...
                log.warning("live metrics of %s v%d: %s", model, version, exc)
                metrics = {}  # no samples until the next try
            cached = self._performance_at[key] = (now, metrics)
        return cached[1]

    # -- the replica side ----------------------------------------------------------------

    def ingest(self, sketches: list[dict[str, Any]]) -> IngestResult:
        """Add shipped :class:`SketchEnvelope` dicts to their windows and persist those."""
        out = IngestResult()
        now = self._clock()
        touched: set[str] = set()
        for raw in sketches:
            try:
                env = SketchEnvelope.model_validate(raw)
                key = window_key(env.project, env.model, env.version)
                window = self._windows.get(key) or SketchWindow(self.max_age_s)
                if window.add(Sketch.from_dict(env.sketch), now=now):
                    out.accepted += 1
                else:
                    out.late += 1
                self._windows[key] = window
                touched.add(key)
            except (ValidationError, MlrayError, TypeError, ValueError) as exc:
                out.rejected += 1
                if len(out.errors) < 5:
                    out.errors.append(str(exc).splitlines()[0][:300])
        if touched:
            self._store.apply([Put(collection=MONITOR_WINDOWS, key=k,
                                   data=self._windows[k].to_dict()) for k in sorted(touched)])
        return out

    # -- readers ---------------------------------------------------------------------------

    def _baseline(self, project: str, model: str, version: int) -> Baseline:
        key = window_key(project, model, version)
        if key not in self._cache:
            self._cache[key] = self._baselines(project, model, version)
        found = self._cache[key]
        if found is None:
            raise NotFound(f"{model} v{version} has no training baseline to compare with",
                           field="version")
        return found

    def _resolve(self, project: str, model: str, version: int | None) -> int:
        if version is not None:
            return version
        held = [v for p, m, v in map(_split, self._windows) if (p, m) == (project, model)]
        if not held:
            raise NotFound(f"no monitored traffic for model {model!r}", field="model")
        return max(held)

    def _window(self, project: str, model: str, version: int, window_s: float | None,
                rows: int | None) -> Sketch | None:
        window = self._windows.get(window_key(project, model, version))
        if window is None:
            return None
        if rows is not None:
            return window.by_count(rows)
        return window.by_time(self.window_s if window_s is None else window_s,
                              now=self._clock())

    @boundary
    def drift(self, caller: Caller, project: Project, model: Name, version: int | None = None,
              window_s: float | None = Field(None, gt=0),
              rows: int | None = Field(None, ge=1)) -> DriftReport:
        """Drift over the last ``window_s`` seconds (or the newest ``rows`` rows).

        ``version`` None: the newest version with monitored traffic.
        """
        caller.require(project, Role.viewer)
        version = self._resolve(project, model, version)
        baseline = self._baseline(project, model, version)
        return compute_drift(baseline, self._window(project, model, version, window_s, rows),
                             self.drift_config)

    @boundary
    def quality(self, caller: Caller, project: Project, model: Name, version: int | None = None,
                window_s: float | None = Field(None, gt=0),
                rows: int | None = Field(None, ge=1)) -> QualityReport:
        """Data-quality checks of live inputs over the same windows as :meth:`drift`."""
        caller.require(project, Role.viewer)
        version = self._resolve(project, model, version)
        baseline = self._baseline(project, model, version)
        return check_quality(baseline,
                             self._window(project, model, version, window_s, rows),
                             self.quality_thresholds)

    def projects(self) -> list[str]:
        """Projects with live windows."""
        return sorted({_split(key)[0] for key in self._windows})

    @boundary
    def values(self, caller: Caller, project: Project,
               window_s: float | None = Field(None, gt=0)
               ) -> list[tuple[str, dict[str, str], float, float]]:
        """The project's monitored values as ``(metric, labels, value, ts)`` samples.

        Drift statistics per feature (``feature="__prediction__"`` for the output), the
        drift share, the quality ratios and the live model metrics (once feedback joined;
        ``mlray_model_accuracy``...), for every version with a baseline and traffic
        in the window.
        """
        caller.require(project, Role.viewer)
        seconds = self.window_s if window_s is None else window_s
        now = self._clock()
        out: list[tuple[str, dict[str, str], float, float]] = []
        for key in sorted(self._windows):
            p, model, version = _split(key)
            if p != project:
                continue
            try:
                baseline = self._baseline(p, model, version)
            except NotFound:
                continue
            sketch = self._window(p, model, version, seconds, None)
            if sketch is None:
                continue
            base = {"project": p, "model": model, "version": str(version)}
            win = {**base, "window": _fmt_window(seconds)}
            report = compute_drift(baseline, sketch, self.drift_config)
            feats = [*report.features, *([report.predictions] if report.predictions else [])]
            for f in feats:
                label = PREDICTION_FEATURE if f.kind == "predictions" else f.feature
                for test, metric, attr in _DRIFT_SAMPLES:
                    stat = f.tests.get(test)
                    value = None if stat is None else getattr(stat, attr)
                    if value is not None:
                        out.append((metric, {**win, "feature": label}, float(value), now))
            if report.evaluated:
                out.append(("mlray_drift_share", win, float(report.drift_share), now))
            for check in check_quality(baseline, sketch, self.quality_thresholds).checks:
                out.append((_QUALITY_SAMPLES[check.check], {**base, "feature": check.feature},
                            float(check.score), now))
            for name, value in self._live_metrics(p, model, version, seconds, now).items():
                out.append((f"mlray_model_{name}", win, float(value), now))
        return out

    def windows(self) -> list[str]:
        """The keys (``project/model/version``) of every window held."""
        return sorted(self._windows)

    def forget(self, project: str, model: str, version: int) -> None:
        """Drop a deleted version's window."""
        key = window_key(project, model, version)
        if self._windows.pop(key, None) is not None:
            self._store.delete(MONITOR_WINDOWS, key)
        self._cache.pop(key, None)
        for cached in [k for k in self._performance_at if k[0] == key]:
            del self._performance_at[cached]

