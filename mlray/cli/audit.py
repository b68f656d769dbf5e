"""``mlray audit``: check the audit log's hash chain and export it as JSON lines.

Both read the state store named by the platform config directly (an operator's check
that does not trust the running control plane), so they need the store's credentials.
"""

from __future__ import annotations

import datetime as dt

import typer

from mlray._private.quiet import result_stream
from mlray.cli._common import JsonOpt, emit, state
from mlray.errors import IntegrityError, InvalidInput
from mlray.storage import StateStore, open_state_store

__all__ = ["app"]

app = typer.Typer(help="The audit log: verify its hash chain, export it.", no_args_is_help=True)


def _store() -> StateStore:
    config = state.config()
    return open_state_store(config.resolved_state_url, redis_prefix=config.redis_prefix)


def _since(value: str | None) -> float | None:
    """``--since`` as epoch seconds: a number of seconds, or an ISO date/time (UTC if naive)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"--since {value!r}: give epoch seconds or an ISO date/time "
                           "(2026-12-01T00:00)", field="since") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


@app.command()
def verify(as_json: bool = JsonOpt) -> None:
    """Walk the whole hash chain; exit 2 naming the first removed or altered entry."""
    with _store() as store:
        report = store.verify_audit()
    if not report.ok:
        raise IntegrityError(f"audit log broken at entry {report.bad_seq}: {report.problem}"
                          f" ({report.checked} entries before it are intact)", field="audit")
    emit(report, as_json, ("", ""), [["audit chain", "intact"],
                                     ["entries checked", report.checked],
                                     ["head hash", report.head],
                                     ["unchained (written before chaining)", report.unchained]],
         "mlray audit verify")


@app.command()
def export(since: str = typer.Option(None, "--since", help="Only entries at or after this time "
                                     "(epoch seconds or ISO date/time)."),
           project: str = typer.Option(None, "--project", help="Only this project's entries."),
           ) -> None:
    """Every audit entry (hashes included) as JSON lines on stdout, oldest first."""
    start = _since(since)
    out = result_stream()
    with _store() as store:
        for entry in store.audit_entries():
            if (start is None or entry.ts >= start) and (project is None
                                                         or entry.project == project):
                out.write(entry.model_dump_json() + "\n")
    out.flush()
