"""A store's data directory, opened as a whole: the writer lock, the LMDB state and the WAL.

    DATA/LOCK    the writer lock (`pitr.datadir.lock`)
    DATA/state/  the LMDB state: data, expiries, identity, checkpoint (`pitr.datadir.state`)
    DATA/wal/    WAL files and archive markers (`pitr.datadir.wal`, `pitr.datadir.markers`)
    DATA/FOLLOWER  present while the store is a standby following a repository (`pitr.follow`)

The store opens it as its writer; a sidecar archiver and readers open it
read-only, never touching the lock. A follower's directory refuses both the
writer and the archiver (`refuse_follower`): only the follower writes it, and
its commits belong to the history it follows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

from pitr.datadir.lock import LOCK_NAME, WriterLock
from pitr.datadir.markers import read_follower
from pitr.datadir.state import StateDB, StoreIdentity
from pitr.datadir.wal import WalDirectory
from pitr.errors import InvalidArgument, StoreIsFollower, file_error
from segments.chain import genesis

NO_STORE_HINT = "run `pitr put` (or open it with pitr.Store) to create one, or check --data / PITR_DATA"


class DataDir:
    """An open data directory; `lock` is None when opened read-only."""

    def __init__(self, path: str, state: StateDB, wal: WalDirectory, identity: StoreIdentity,
                 lock: WriterLock | None) -> None:
        self.path = path
        self.state = state
        self.wal = wal
        self.identity = identity
        self.lock = lock

    @classmethod
    def open_writer(cls, path: str, *, create: bool, name: str | None, now_ns: Callable[[], int],
                    lock_wait: float = 0.0) -> DataDir:
        """Take the writer lock (`StoreLocked` when another process holds it, after waiting up to
        `lock_wait` seconds for it) and open the state and WAL directory; with `create`, a missing
        store is created (private to the user) with a new identity named `name` (default: the
        directory's name)."""
        path = os.path.abspath(path)
        try:
            return cls._open_writer(path, create, name, now_ns, lock_wait)
        except OSError as exc:
            raise file_error(exc, exc.filename or path, "open the store") from exc

    @classmethod
    def _open_writer(cls, path: str, create: bool, name: str | None, now_ns: Callable[[], int],
                     lock_wait: float) -> DataDir:
        refuse_follower(path)
        if not os.path.isdir(path):
            if not create:
                raise InvalidArgument(f"{path}: no pitr store here ({NO_STORE_HINT})")
            os.makedirs(path, mode=0o700, exist_ok=True)
        _create_private(os.path.join(path, LOCK_NAME))
        lock = WriterLock(path, wait=lock_wait)
        state = None
        try:
            state = StateDB(os.path.join(path, "state"), create=create)
            ident = state.identity()
            if ident is None:
                if not create:
                    raise InvalidArgument(f"{path}: no pitr store here ({NO_STORE_HINT})")
                store_id = uuid.uuid4()
                ident = StoreIdentity(store_id, name or os.path.basename(path), now_ns(), 1, genesis(store_id))
                state.init_identity(ident)
            return cls(path, state, WalDirectory(os.path.join(path, "wal")), ident, lock)
        except BaseException:
            if state is not None:
                state.close()
            lock.release()
            raise

    @classmethod
    def open_reader(cls, path: str) -> DataDir:
        """Open the state read-only (LMDB readers never block the writer) without the lock."""
        path = os.path.abspath(path)
        state_dir = os.path.join(path, "state")
        if not os.path.isfile(os.path.join(state_dir, "data.mdb")):
            raise InvalidArgument(f"{path}: no pitr store here (no state/data.mdb; {NO_STORE_HINT})")
        refuse_follower(path)  # its commits are the followed history's: archiving them would fork it
        state = StateDB(state_dir, readonly=True)
        try:
            ident = state.identity()
            if ident is None:
                raise InvalidArgument(f"{path}: the store has no identity yet; open it once with its writer")
            try:
                wal = WalDirectory(os.path.join(path, "wal"))
            except OSError as exc:
                raise file_error(exc, os.path.join(path, "wal"), "open the WAL directory") from exc
        except BaseException:
            state.close()
            raise
        return cls(path, state, wal, ident, None)

    def close(self) -> None:
        self.state.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def refuse_follower(path: str) -> None:
    """Refuse to write or archive the store at `path` while it is a follower (`StoreIsFollower`, naming the
    repository it follows and `pitr promote`); a marker that cannot be read refuses too (CorruptData)."""
    marker = read_follower(path)
    if marker is not None:
        raise StoreIsFollower(path, marker.repo)


def _create_private(path: str) -> None:
    """Create an empty file private to the user unless it exists."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass
