"""The audit log as a hash chain: each entry carries the hash of the one before it.

An entry's ``hash`` is sha256 over its canonical JSON (sorted keys, no spaces, every field
except ``hash`` itself, ``seq`` and ``prev_hash`` included). The first entry's ``prev_hash``
is :data:`GENESIS`. Removing, altering or reordering an entry breaks the chain at that
entry; removing the newest ones shows as a gap between the last ``seq`` and the store's
counter. The stores link entries inside their atomic write (:func:`link`); :func:`verify`
walks the chain. Someone able to rewrite the whole store could recompute every hash: the
head hash :func:`verify` reports, kept outside the store, detects that too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from mlray.storage.base import AuditEntry

__all__ = ["GENESIS", "ChainReport", "entry_hash", "link", "verify"]

GENESIS = "0" * 64


def entry_hash(entry: AuditEntry) -> str:
    """sha256 of ``entry``'s canonical JSON (all fields but ``hash``)."""
    body = entry.model_dump(mode="json", exclude={"hash"})
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def link(entry: AuditEntry, seq: int, prev_hash: str) -> AuditEntry:
    """``entry`` numbered ``seq``, chained after ``prev_hash``, with its own hash set."""
    linked = entry.model_copy(update={"seq": seq, "prev_hash": prev_hash, "hash": ""})
    return linked.model_copy(update={"hash": entry_hash(linked)})


class ChainReport(BaseModel):
    """What :func:`verify` found: ``ok``, how many entries it checked, the first bad one."""

    ok: bool
    checked: int
    head: str = Field(GENESIS, description="Hash of the newest intact entry: record it "
                      "elsewhere to detect a rewrite of the whole chain later.")
    unchained: int = Field(0, description="Leading entries written before the log was "
                           "chained (they carry no hash and are not protected).")
    bad_seq: int | None = None
    problem: str | None = None


def verify(entries: Iterable[AuditEntry], last_seq: int | None = None) -> ChainReport:
    """Walk ``entries`` (the whole log, oldest first) and report the first broken link.

    ``last_seq`` is the store's counter: entries past the last one seen were removed.
    """
    prev, expected_seq, checked, unchained = GENESIS, 1, 0, 0

    def broken(seq: int, problem: str) -> ChainReport:
        return ChainReport(ok=False, checked=checked, unchained=unchained, head=prev,
                           bad_seq=seq, problem=problem)

    for entry in entries:
        legacy = not entry.hash and not entry.prev_hash
        if entry.seq == expected_seq and legacy and checked == unchained:
            # written before the log was chained: only a leading run of them is accepted,
            # and the first chained entry then starts from GENESIS again
            expected_seq, checked, unchained = expected_seq + 1, checked + 1, unchained + 1
            continue
        if entry.seq != expected_seq:
            what = "removed" if entry.seq > expected_seq else "out of order"
            return broken(expected_seq, f"entry {expected_seq} is {what} (next present:"
                                        f" {entry.seq})")
        if entry.prev_hash != prev:
            return broken(entry.seq, f"entry {entry.seq} does not follow entry {entry.seq - 1}"
                                     " (previous entry removed or altered)")
        if entry_hash(entry) != entry.hash:
            return broken(entry.seq, f"entry {entry.seq} was altered (its hash does not match)")
        prev, expected_seq, checked = entry.hash, expected_seq + 1, checked + 1
    if last_seq is not None and last_seq >= expected_seq:
        return broken(expected_seq, f"entries {expected_seq}..{last_seq} were removed from the"
                                    " end")
    return ChainReport(ok=True, checked=checked, unchained=unchained, head=prev)
