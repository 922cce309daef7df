"""Reading a store's data directory without being its writer (`pitr get`, `pitr export`).

A reader never takes, probes or waits for the writer lock: it opens the LMDB
state read-only (LMDB readers never block its writer) and folds the WAL
records after the state's checkpoint over it, so it sees every commit the
writer has logged, applied to LMDB or not. The checkpoint and the data come
from one LMDB read transaction; the WAL is read from the LSN after that
checkpoint. If the writer applied and removed WAL files in between (or is
creating the next file), the read starts again from a fresh transaction;
damage still there after a few attempts is reported, naming the file.

The WAL is read as `segments.wal_follow` reads it for archivers: complete,
checked records only, stopping at a record not yet fully written. A record
the writer has written but not yet fsynced may be seen a moment before it is
acknowledged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pitr.datadir.overlay import fold, merge, visible
from pitr.datadir.state import StateDB, StateView, is_live
from pitr.datadir.wal import WalDirectory, hinted_offset
from pitr.errors import CorruptData, InvalidArgument, to_corrupt
from segments import SegmentsError
from segments import record as rec
from segments.fold import Change
from segments.wal_follow import read_wal_from

ATTEMPTS = 5  # fresh starts when the WAL changes under the reader (files removed or being created)
RETRY_DELAY = 0.02  # seconds, times the attempt number
MAX_OVERLAY = 1 << 20  # unapplied changed keys a reader holds (the writer applies far sooner)


@dataclass(frozen=True, slots=True)
class ReadView:
    """One consistent view: LMDB at `applied_lsn` plus the WAL's changes through `lsn`."""

    lsn: int
    applied_lsn: int
    overlay: dict[bytes, Change]


class StoreReader:
    """Read-only access to the store at `data_dir`; use as a context manager."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.abspath(data_dir)
        state_dir = os.path.join(self.path, "state")
        if not os.path.isfile(os.path.join(state_dir, "data.mdb")):
            raise InvalidArgument(f"{self.path}: no pitr store here (no state/data.mdb)")
        self.state = StateDB(state_dir, readonly=True)
        self._wal_path = os.path.join(self.path, "wal")

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.state.close()

    def get(self, key: bytes, now_ns: int) -> tuple[bytes, int | None] | None:
        """The value and expiry of `key` as the writer's last logged commit left it, or None."""
        with self.view() as (state, view):
            change = view.overlay.get(key, _MISSING)
            if change is not _MISSING:
                return visible(change, now_ns)  # type: ignore[arg-type]  # not _MISSING
            return state.get(key, now_ns)

    def scan(self, prefix: bytes, now_ns: int) -> Iterator[tuple[bytes, bytes, int | None]]:
        """(key, value, expiry) of every live key starting with `prefix`, in key order, from one view."""
        with self.view() as (state, view):
            overlay = sorted((k, c) for k, c in view.overlay.items() if k.startswith(prefix))
            for key, value, expires in merge(state.rows(prefix, None, prefix=prefix), overlay):
                if is_live(expires, now_ns):
                    yield key, value, expires

    @contextmanager
    def view(self) -> Iterator[tuple[StateView, ReadView]]:
        """A view of the LMDB state and the WAL folded after its checkpoint: one consistent state."""
        last_error: CorruptData | None = None
        for attempt in range(ATTEMPTS):
            with self.state.read_view() as state:
                checkpoint = state.stored_checkpoint()
                applied = checkpoint.applied_lsn
                try:
                    view = self._fold_wal(applied, (checkpoint.wal_first_lsn, checkpoint.wal_offset))
                except (CorruptData, FileNotFoundError) as exc:
                    # The writer applied and removed WAL files, or is creating the next one (its header
                    # not yet written): read again. Damage that is really there is still there after
                    # the last attempt, and is reported then.
                    if isinstance(exc, FileNotFoundError):
                        last_error = CorruptData(f"{exc.filename}: WAL file vanished while reading",
                                                 path=exc.filename)
                    else:
                        last_error = exc
                else:
                    yield state, view
                    return
            if self.state.checkpoint()[0] <= applied:  # not moved on: give the writer a moment
                time.sleep(RETRY_DELAY * (attempt + 1))
        assert last_error is not None
        raise last_error

    def _fold_wal(self, applied: int, hint: tuple[int, int] = (0, 0)) -> ReadView:
        """The changes of every complete WAL record after LSN `applied`.

        `hint` is where the checkpoint says the group ending at `applied` starts (first LSN of the
        WAL file, byte offset): the file is read from there only when a checked group at that
        offset really holds LSN `applied` (`pitr.datadir.wal.hinted_offset`); otherwise from its start."""
        overlay: dict[bytes, Change] = {}
        if not os.path.isdir(self._wal_path):
            return ReadView(applied, applied, overlay)
        files = WalDirectory(self._wal_path).files()
        expected = applied + 1
        for i, (first_lsn, path) in enumerate(files):
            next_first = files[i + 1][0] if i + 1 < len(files) else None
            if next_first is not None and next_first <= expected:
                continue  # every record in this file is applied
            if first_lsn > expected:
                raise CorruptData(f"{path}: LSNs {expected}..{first_lsn - 1} are missing from the WAL",
                                  path=path, lsn=expected)
            offset = hinted_offset(path, first_lsn, applied, hint) if expected == applied + 1 else 0
            while True:
                try:
                    chunk = read_wal_from(path, offset, expected, rec.MAX_I64)
                except SegmentsError as exc:
                    raise to_corrupt(exc) from exc
                if not chunk.spans:
                    break
                for span in chunk.spans:
                    try:
                        record = rec.decode_payload(chunk.data, span, skip_unknown=True)
                    except SegmentsError as exc:
                        raise to_corrupt(exc) from exc
                    if record is not None:
                        fold(overlay, record.ops)
                expected = chunk.spans[-1].lsn + 1
                offset = chunk.next_offset
                if len(overlay) > MAX_OVERLAY:
                    raise CorruptData(f"{self.path}: more than {MAX_OVERLAY:,} changed keys are logged but "
                                      "not applied; open the store with its writer to apply them",
                                      path=self._wal_path)
            if next_first is not None and expected < next_first:
                raise CorruptData(f"{path}: the WAL file ends at LSN {expected - 1} but the next one starts "
                                  f"at LSN {next_first}", path=path, lsn=expected,
                                  hint="open the store with its writer (pitr put) to recover it")
        return ReadView(expected - 1, applied, overlay)


_MISSING = object()
