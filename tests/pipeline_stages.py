"""Stage callables the pipeline tests run (``tests.pipeline_stages:<name>``): each appends
its stage name to ``params.log`` when it really runs, so a test can tell a run from a
cache hit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def _note(ctx: Any) -> None:
    log = ctx.params.get("log")
    if log:
        with open(log, "a") as f:
            f.write(ctx.stage + "\n")


def emit(ctx: Any) -> int:
    """Returns ``params.value``."""
    _note(ctx)
    return int(ctx.params["value"])


def add(ctx: Any) -> int:
    """The sum of every upstream value."""
    _note(ctx)
    return sum(int(ctx.input(name)) for name in sorted(ctx.task.inputs))


def write_file(ctx: Any) -> Path:
    """A file output (read downstream with ``input_path``)."""
    _note(ctx)
    out = ctx.workdir / "data.txt"
    out.write_text(str(ctx.params["value"]))
    return out


def read_file(ctx: Any) -> str:
    """The text of the upstream ``write`` stage's file."""
    _note(ctx)
    return ctx.input_path("write").read_text()


def block(ctx: Any) -> int:
    """Waits until the file ``params.gate`` exists (at most ``params.wait_s``), then 1."""
    _note(ctx)
    deadline = time.monotonic() + float(ctx.params.get("wait_s", 120))
    while not Path(ctx.params["gate"]).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{ctx.params['gate']} never appeared")
        time.sleep(0.02)
    return 1


def flaky(ctx: Any) -> int:
    """Fails on its first try (it leaves ``params.marker`` behind), then returns 7."""
    _note(ctx)
    marker = Path(ctx.params["marker"])
    if not marker.exists():
        marker.write_text("tried")
        raise RuntimeError("first try fails")
    return 7


def noop(ctx: Any) -> None:
    """Does nothing (the benchmark's stage)."""
    return None


def echo(ctx: Any) -> dict[str, Any]:
    """Its params as the stage saw them (``log`` aside)."""
    _note(ctx)
    return {k: v for k, v in ctx.params.items() if k != "log"}


def claim(ctx: Any) -> int:
    """Appends when its run first started it (``task.since``) to ``params.marks``, then
    waits like :func:`block`: a stage that started something in the world."""
    with open(ctx.params["marks"], "a") as f:
        f.write(f"{ctx.task.since}\n")
    return block(ctx)


def release(ctx: Any) -> str:
    """The undo of :func:`claim`: writes ``<since> <run id>`` to ``params.undone``."""
    Path(ctx.params["undone"]).write_text(f"{ctx.task.since} {ctx.run_id}")
    return "released"
