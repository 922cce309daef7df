"""The writer lock: one process may open a store for writing; the others learn its PID."""

from __future__ import annotations

import fcntl
import os
import time

from pitr.errors import StoreLocked

LOCK_NAME = "LOCK"


class WriterLock:
    """An flock on DATA/LOCK holding the owner's PID; released on close or process death."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, LOCK_NAME)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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


def writer_running(data_dir: str) -> bool:
    """True when some process holds the store's writer lock."""
    path = os.path.join(data_dir, LOCK_NAME)
    if not os.path.exists(path):
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


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
