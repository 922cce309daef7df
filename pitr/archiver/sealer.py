"""The sealing worker process: a Python process that seals WAL chunks for the archiver, so that a
chunk's per-record objects (its spans and key rows, tens of thousands of named tuples) are never
created in the writer's process, where the cyclic GC would walk them with the GIL held.

Unlike `anyio.to_process` and multiprocessing's spawn, the worker never imports the program's main
module: it is started as `python -c BOOT`, is handed the parent's `sys.path`, and imports only what
the call it is given needs (pitr's own functions, by name). So any program may seal in a process,
including a script without an `if __name__ == "__main__":` guard, which is why it is the default.

One worker per process, shared by every archiver in it and started on first use. Calls are
blocking (run them in a worker thread) and serialized by a lock. The protocol, over the worker's
stdin and stdout, between two processes of the same program: the parent's `sys.path` (pickled),
then per call a length-prefixed pickle of (function, arguments); the worker answers READY once,
then per call a status byte (0 returned, 1 raised), a length and the pickled value. Nothing read
from a repository file is ever unpickled. A worker that dies, or answers other than the protocol
says, is `WorkerBroken` and is killed; the next call starts a new one.
"""

from __future__ import annotations

import atexit
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, TypeVar

T = TypeVar("T")
_LENGTH = struct.Struct("<Q")
_ANSWER = struct.Struct("<BQ")
_READY = b"READY\n"
_BOOT = ("import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
         "from pitr.archiver.sealer import serve; serve()")


class WorkerBroken(Exception):
    """The sealing worker process died, could not start, or broke the protocol."""


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError(f"the stream ended after {0 if data is None else len(data)} of {n} bytes")
    return data


class _Worker:
    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def call(self, func: Callable[..., T], *args: object) -> T:
        with self._lock:
            try:
                process = self._process
                if process is None or process.poll() is not None:
                    process = self._start()
                assert process.stdin is not None
                assert process.stdout is not None
                request = pickle.dumps((func, args), protocol=pickle.HIGHEST_PROTOCOL)
                process.stdin.write(_LENGTH.pack(len(request)) + request)
                process.stdin.flush()
                status, length = _ANSWER.unpack(_read_exact(process.stdout, _ANSWER.size))
                body = _read_exact(process.stdout, length)
                value = pickle.loads(body)  # noqa: S301 (our own worker's answer, never a file's bytes)
            except (OSError, EOFError, ValueError, struct.error, pickle.PickleError) as exc:
                self._kill()
                raise WorkerBroken(f"the sealing worker process failed: {exc}") from exc
        if status:
            raise value
        return value  # type: ignore[no-any-return]

    def _start(self) -> subprocess.Popen[bytes]:
        self._kill()
        process = subprocess.Popen([sys.executable, "-u", "-c", _BOOT], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, close_fds=True)
        self._process = process
        assert process.stdin is not None
        assert process.stdout is not None
        pickle.dump(list(sys.path), process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        process.stdin.flush()
        if _read_exact(process.stdout, len(_READY)) != _READY:
            raise EOFError("the sealing worker process did not say it was ready")
        return process

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()

    def close(self) -> None:
        """End the worker: its stdin closed, it exits once the call it runs (if any) is done."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


_worker = _Worker()
atexit.register(_worker.close)


def call_in_worker(func: Callable[..., T], *args: object) -> T:
    """`func(*args)` in the sealing worker process (blocking: call it from a worker thread). The
    function and arguments must pickle by reference (module-level functions, plain values)."""
    return _worker.call(func, *args)


def serve() -> None:
    """The worker's loop (in the worker process, started by `_Worker._start`)."""
    commands, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a print in a sealed function must not break the protocol
    answers.write(_READY)
    answers.flush()
    while True:
        head = commands.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return  # the parent closed our stdin (or died): done
        func, args = pickle.loads(_read_exact(commands, _LENGTH.unpack(head)[0]))  # noqa: S301 (from the parent)
        status = 0
        try:
            value = func(*args)
        except BaseException as exc:  # noqa: BLE001 (every failure goes back to the caller, which raises it)
            status, value = 1, exc
        try:
            body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001
            status, body = 1, pickle.dumps(RuntimeError(f"the sealing worker's answer does not pickle: {exc!r}"))
        answers.write(_ANSWER.pack(status, len(body)) + body)
        answers.flush()
