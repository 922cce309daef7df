"""The writer lock: one process may open a store for writing; the others learn its PID, or wait for it."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from pitr.errors import StoreLocked, file_error

LOCK_NAME = "LOCK"
PROBE_RETRIES = 20  # 10 ms apart: a reader's probe holds the lock for microseconds
FIRST_BACKOFF = 0.01  # seconds between the first tries while waiting for a writer; doubles ...
MAX_BACKOFF = 0.25  # ... up to this, so a released lock is taken within a quarter of a second


class WriterLock:
    """An flock on DATA/LOCK holding the owner's PID; released on close or process death.

    With `wait` (seconds) a lock another writer holds is tried again, with a
    backoff, until it is free or the wait is over; then `StoreLocked` names the
    holder's PID. `sleep` and `clock` are injected by tests.
    """

    def __init__(self, data_dir: str, *, wait: float = 0.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = os.path.join(data_dir, LOCK_NAME)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._acquire(data_dir, wait, sleep, clock)
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def _acquire(self, data_dir: str, wait: float, sleep: Callable[[float], None],
                 clock: Callable[[], float]) -> None:
        deadline = clock() + wait
        probes, backoff = 0, FIRST_BACKOFF
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if probes < PROBE_RETRIES and _probe_only(self.path):
                probes += 1  # a sidecar archiver probes the lock with a brief shared flock; wait it out
                sleep(0.01)
                continue
            remaining = deadline - clock()
            if remaining <= 0:
                raise locked_error(data_dir, read_holder(self.path), wait)
            sleep(min(backoff, remaining))
            backoff = min(backoff * 2, MAX_BACKOFF)

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


def locked_error(data_dir: str, pid: int | None, waited: float) -> StoreLocked:
    """`StoreLocked` for the store at `data_dir`, with a hint saying how long it was waited for."""
    error = StoreLocked(data_dir, pid)
    holder = f"process {pid}" if pid else "the other writer"
    error.hint = (f"waited {waited:g} s; {holder} still holds the lock: stop it, or wait longer with --wait"
                  if waited > 0 else f"stop {holder}, or let this command wait for it with --wait 10s")
    return error
