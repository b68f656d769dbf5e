"""When a trigger fires: plain functions of a trigger, its stored state and now.

Each returns ``(fires, new_state)``. The first look at a trigger only records where
things stand (the next cron time, the partitions present, the feedback row count), so
applying a pipeline never starts it by itself. Alert triggers fire from the alerts
service's hook (:meth:`mlray.pipelines.service.PipelineService.alert_fired`), not here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlray.pipelines.cron import CronSchedule
from mlray.pipelines.definitions import NewData, NewFeedback, Schedule
from mlray.pipelines.paths import local_path

__all__ = ["Due", "due", "feedback_rows", "partitions"]

Due = tuple[bool, dict[str, Any]]


def partitions(path: str) -> set[str]:
    """The names of the files and directories right below ``path`` (a local path or any
    ``pyarrow.fs`` URI, a leading ``~`` expanded); none when it does not exist."""
    import pyarrow.fs as pafs

    path = local_path(path)

    fs, root = pafs.FileSystem.from_uri(path) if "://" in path else (
        pafs.LocalFileSystem(), path)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return {i.base_name for i in infos if not i.base_name.startswith((".", "_"))}


def feedback_rows(offline_uri: str, project: str) -> int:
    """How many feedback rows ``project`` has logged under ``offline_uri``."""
    import pyarrow.dataset as pads

    from mlray.storage.fsuri import project_uri

    path = project_uri(offline_uri, project, "feedback")
    if not partitions(path):
        return 0
    return int(pads.dataset(path, format="parquet", partitioning="hive").count_rows())


def due(trigger: Schedule | NewData | NewFeedback, state: dict[str, Any] | None, now: float,
        *, feedback: Callable[[], int] = lambda: 0) -> Due:
    """Whether ``trigger`` fires now, and its state to store."""
    if isinstance(trigger, Schedule):
        cron = CronSchedule.parse(trigger.cron)
        if state is None or "next" not in state:
            return False, {"next": cron.next_after(now)}
        if now < state["next"]:
            return False, state
        return True, {"next": cron.next_after(now)}
    if isinstance(trigger, NewData):
        present = partitions(trigger.path)
        if state is None:
            return False, {"seen": sorted(present)}
        new = present - set(state.get("seen", ()))
        return bool(new), {"seen": sorted(present), "new": sorted(new)}
    rows = feedback()
    if state is None:
        return False, {"rows": rows}
    if rows - int(state.get("rows", 0)) >= trigger.rows:
        return True, {"rows": rows}
    return False, state
