"""What every CLI command shares: config, the client, output as a table or JSON."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from mlray._private.quiet import result_stream
from mlray.client import Client, connect
from mlray.config import PlatformConfig, load_config
from mlray.errors import BackendUnavailable, InvalidInput

__all__ = ["JsonOpt", "State", "console", "emit", "parse_pairs", "state", "when"]


class _ResultConsole(Console):
    """A console that prints where results go (:func:`result_stream`): the real stdout,
    even while `main` sends everything else written to stdout to stderr."""

    @property  # type: ignore[override]
    def file(self) -> Any:
        return self._file or result_stream()

    @file.setter
    def file(self, new_file: Any) -> None:
        self._file = new_file


console = _ResultConsole()
err_console = Console(stderr=True, soft_wrap=True)

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


class State:
    """Options given before the command: ``mlray --config F --project P models list``."""

    def __init__(self) -> None:
        self.config_path: Path | None = None
        self.project: str | None = None

    def config(self) -> PlatformConfig:
        """The platform config, loaded once per command."""
        return load_config(self.config_path)

    def cluster_address(self, config: PlatformConfig) -> str | None:
        """The Ray cluster to use: configured, in RAY_ADDRESS, or the head `mlray up`
        started (its record under MLRAY_HOME; never whatever listens on a port)."""
        if config.ray_address or os.environ.get("RAY_ADDRESS"):
            return config.ray_address or os.environ["RAY_ADDRESS"]
        from mlray._private.ray_head import load_record

        record = load_record(config.home)
        return record.address if record else None

    def ray_client(self) -> Client:
        """A client on Ray: the running cluster, or a local Ray started for this command
        (never a stranger's cluster found by ``address="auto"``)."""
        config = self.config()
        return connect(self.cluster_address(config) or "local", config=config,
                       project=self.project, on_mismatch="adopt")

    def cluster_client(self, as_platform: bool = False) -> Client:
        """A client on the running cluster; serving needs one (Ray Serve lives there).
        ``as_platform``: act as the platform itself (see :func:`mlray.connect`)."""
        config = self.config()
        address = self.cluster_address(config)
        if address is None:
            raise BackendUnavailable("no Ray cluster is running; start one with `mlray up` "
                                     "(or set MLRAY_RAY_ADDRESS)")
        return connect(address, config=config, project=self.project, on_mismatch="adopt",
                       as_platform=as_platform)

    def client(self, on_mismatch: Literal["raise", "adopt"] = "adopt",
               as_platform: bool = False) -> Client:
        """A client on the running cluster, or in-process on the embedded store if none.
        When the running actors' config differs, a line per key goes to stderr and theirs
        is used (``"adopt"``), or ConfigError is raised (``"raise"``, as `up` does).
        ``as_platform``: act as the platform itself (`up`; see :func:`mlray.connect`)."""
        config = self.config()
        address = self.cluster_address(config)
        if address is None:
            return connect(config=config, project=self.project, local=True)
        return connect(address, config=config, project=self.project, on_mismatch=on_mismatch,
                       as_platform=as_platform)


state = State()


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def emit(value: Any, as_json: bool, columns: Sequence[str] = (),
         rows: Iterable[Sequence[Any]] = (), title: str | None = None,
         whole: Sequence[str] = ()) -> None:
    """Print ``value`` as JSON, or ``rows`` as a rich table with ``columns``; the columns
    named in ``whole`` (ids to copy) are never wrapped or cut, the others give way."""
    if as_json:  # the real stdout even while `main` sends everything else to stderr
        typer.echo(json.dumps(_jsonable(value), indent=2, default=str), file=result_stream())
        return
    table = Table(title=title, show_header=any(columns))
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    for i, col in enumerate(columns):
        if col in whole:
            width = max([len(col), *(len(r[i]) for r in cells if i < len(r))])
            table.add_column(col, no_wrap=True, min_width=width)
        else:  # a long word folds onto the next line rather than being cut
            table.add_column(col, overflow="fold")
    for row in cells:
        table.add_row(*row)
    console.print(table)


def when(ts: float | None) -> str:
    """A timestamp as local date and time, or empty."""
    return "" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def parse_pairs(pairs: list[str] | None, what: str, numeric: bool = False) -> dict[str, Any]:
    """``["k=v", ...]`` as a dict; numbers parsed when ``numeric``."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--{what} expects key=value, got {pair!r}", field=what)
        if numeric:
            try:
                out[key] = float(value)
            except ValueError:
                raise InvalidInput(f"--{what} {key}: {value!r} is not a number",
                                   field=what) from None
        else:
            out[key] = value
    return out
