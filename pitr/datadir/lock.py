"""The writer lock: one process may open a store for writing; the others learn its PID."""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass

from pitr.errors import StoreLocked, file_error

LOCK_NAME = "LOCK"


class WriterLock:
    """An flock on DATA/LOCK holding the owner's PID; released on close or process death."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, LOCK_NAME)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        for attempt in range(20):
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # A sidecar archiver probes the lock with a brief shared flock; wait it out.
                if attempt == 19 or not _probe_only(self.path):
                    pid = read_holder(self.path)
                    os.close(self._fd)
                    raise StoreLocked(data_dir, pid) from None
                time.sleep(0.01)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_holder(path: str) -> int | None:
    """The PID written in a lock file, if any."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@dataclass(frozen=True, slots=True)
class LockHolder:
    """A live process holding a store's writer lock; `pid` is None when the lock file names none."""

    path: str
    pid: int | None

    def describe(self) -> str:
        return f"process {self.pid}" if self.pid else "a process (PID unknown)"


def lock_holder(data_dir: str) -> LockHolder | None:
    """Who holds the writer lock of the store at `data_dir`, or None when nobody does.

    The probe is a shared, non-blocking flock released at once: it never waits
    and never makes a writer wait (a writer opening meanwhile retries it out,
    see `WriterLock`). A lock file whose flock nobody holds is stale, whatever
    PID it names: the kernel drops an flock when its process dies.
    """
    path = os.path.join(data_dir, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise file_error(exc, path, "open the writer lock") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return LockHolder(path, read_holder(path))
    except OSError as exc:
        raise file_error(exc, path, "probe the writer lock") from exc
    finally:
        os.close(fd)
    return None


def writer_running(data_dir: str) -> bool:
    """True when some process holds the store's writer lock."""
    return lock_holder(data_dir) is not None


def _probe_only(path: str) -> bool:
    """True when the lock file names no live writer (only a reader's probe holds it)."""
    pid = read_holder(path)
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return pid == os.getpid()
