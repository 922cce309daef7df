"""`pitr verify --state DIR`: check a store's state database whole, and recompute its state digest.

Every page is walked (`pitr.lmdbpages.check_pages`), every row's CRC-32C and
the key order are checked, the expiry index must name exactly the rows that
carry an expiry (with the same expiry), and the order-independent state digest
and row count recomputed from the rows must equal those the checkpoint row
keeps (updated in the same transaction as every write). The state is read in
one LMDB read transaction, never under the writer lock: a live writer goes on.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from pitr.datadir.state import StateDB
from pitr.datadir.view import STATE_HINT
from pitr.errors import InvalidArgument, StateDamaged
from pitr.jsontypes import JSONObject
from pitr.timefmt import format_time
from segments.snapshot import StateDigest


@dataclass(slots=True)
class StateReport:
    """What `verify_state` found; `ok` only when every check passed and the digests agree."""

    path: str
    applied_lsn: int | None = None
    applied_ts_ns: int | None = None
    rows: int = 0
    expiring: int = 0
    state_digest: bytes | None = None  # recomputed from the rows
    stored_digest: bytes | None = None  # kept by the checkpoint row
    problems: list[str] = field(default_factory=list)
    hint: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and self.state_digest is not None and self.state_digest == self.stored_digest

    def as_dict(self) -> JSONObject:
        return {"path": self.path, "ok": self.ok, "applied_lsn": self.applied_lsn,
                "applied_at": None if self.applied_ts_ns is None else format_time(self.applied_ts_ns),
                "rows": self.rows, "expiring": self.expiring,
                "state_digest": None if self.state_digest is None else self.state_digest.hex(),
                "stored_digest": None if self.stored_digest is None else self.stored_digest.hex(),
                "problems": list(self.problems), "hint": self.hint, "seconds": round(self.seconds, 3)}

    def lines(self) -> list[str]:
        """The report as text."""
        head = "OK" if self.ok else f"{len(self.problems) or 1} problem(s)"
        out = [f"{self.path}: {head} ({self.rows:,} rows, {self.expiring:,} with an expiry, {self.seconds:.2f}s)"]
        if self.applied_lsn is not None and self.applied_ts_ns is not None:
            out.append(f"  applied through LSN {self.applied_lsn} ({format_time(self.applied_ts_ns)})")
        if self.state_digest is not None:
            out.append(f"  state digest {self.state_digest.hex()}")
        out += [f"  DAMAGED {problem}" for problem in self.problems]
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return out


def state_directory(path: str) -> str:
    """The LMDB directory of a data directory (DIR/state) or of a state directory itself."""
    for candidate in (os.path.join(path, "state"), path):
        if os.path.isfile(os.path.join(candidate, "data.mdb")):
            return candidate
    raise InvalidArgument(f"{path}: no pitr store here (no state/data.mdb)")


def verify_state(path: str) -> StateReport:
    """Check the state database of the store at `path` whole (see the module's docstring)."""
    started = time.monotonic()
    directory = state_directory(path)
    report = StateReport(os.path.abspath(path))
    try:
        _check(directory, report)
    except StateDamaged as exc:
        report.problems.append(str(exc))
        report.hint = exc.hint
    report.seconds = time.monotonic() - started
    return report


def _check(directory: str, report: StateReport) -> None:
    state = StateDB(directory, readonly=True)
    try:
        with state.read_view() as view:
            view.check_all_pages()
            stored = view.stored_checkpoint()
            report.applied_lsn, report.applied_ts_ns = stored.applied_lsn, stored.applied_ts_ns
            report.stored_digest = stored.digest
            digest = StateDigest()
            expiring: dict[bytes, int] = {}
            for key, value, expires in view.rows():
                digest.add(key, value, expires)
                if expires is not None:
                    expiring[key] = expires
            report.rows, report.expiring = digest.count, len(expiring)
            report.state_digest = digest.digest()
            indexed = 0
            for key, expires in view.expiry_rows():
                indexed += 1
                if expiring.get(key) != expires:
                    report.problems.append(f"{state.data_file}: the expiry index says key {key!r} expires at "
                                           f"{expires}; its row says {expiring.get(key)}")
            if indexed != len(expiring) and not report.problems:
                report.problems.append(f"{state.data_file}: {len(expiring)} rows carry an expiry, but the expiry "
                                       f"index has {indexed}")
            if stored.count != digest.count or stored.digest != report.state_digest:
                report.problems.append(f"{state.data_file}: the rows give state digest {report.state_digest.hex()} "
                                       f"over {digest.count} rows; the checkpoint keeps {stored.digest.hex()} over "
                                       f"{stored.count}")
    finally:
        state.close()
    if report.problems and report.hint is None:
        report.hint = STATE_HINT
