"""The test side of `store_server.py`: start it, send requests, SIGKILL it.

Servers are forked by one zygote process per test session (`store_server.py
--zygote`), which has imported pitr once: a server starts in milliseconds
instead of paying the interpreter and import start-up each time, which the
stateful test (tests/store/test_stateful.py) does for every example and every
crash. A forked server is a separate process like any other: its own store
lock, killed by SIGKILL with no cleanup.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "store_server.py")
GONE_TIMEOUT = 30.0


class ServerError(Exception):
    """The server answered a request with an error."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.kind: str = doc["error"]
        self.doc = doc
        super().__init__(f"{doc['error']}: {doc['message']}")


class Zygote:
    """The process that forks store servers (see `store_server.zygote`)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, SERVER, "--zygote", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self._socket = ours
        self._lock = threading.Lock()

    def spawn(self, argv: list[str], stdin: int, stdout: int, stderr: int) -> int:
        """Fork a server with these arguments and standard streams; its pid."""
        with self._lock:
            socket.send_fds(self._socket, [json.dumps(argv).encode()], [stdin, stdout, stderr])
            answer = self._socket.recv(64)
        if not answer:
            raise RuntimeError(f"the store server zygote exited with {self.proc.wait(timeout=10)}")
        return int(answer)

    def close(self) -> None:
        self._socket.close()  # its end of the socket: the zygote returns
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_zygote: Zygote | None = None
_zygote_lock = threading.Lock()


def zygote() -> Zygote:
    global _zygote
    with _zygote_lock:
        if _zygote is None or _zygote.proc.poll() is not None:
            _zygote = Zygote()
            atexit.register(_zygote.close)
        return _zygote


def pid_exists(pid: int) -> bool:
    """The process still exists. A zygote's child is reaped by the kernel once its last thread has
    exited, which is after its files (and its store lock) are closed; a thread-group leader shown as
    a zombie in /proc may still have threads holding them, so that is not "gone"."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class StoreServer:
    """One running store process. `request` is synchronous: one line out, one line back."""

    def __init__(self, data: str, repo: str, clock_ns: int, wal_file_size: int = 4096) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            self.pid = zygote().spawn([data, repo, str(clock_ns), str(wal_file_size)], stdin_r, stdout_w,
                                      self._stderr.fileno())
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        self._stdin: IO[str] = open(stdin_w, "w", encoding="utf-8")  # noqa: SIM115 - closed by close/kill
        self._stdout: IO[str] = open(stdout_r, encoding="utf-8")  # noqa: SIM115
        self.returncode: int | None = None
        self.ready = self._read()["ready"]

    def _read(self) -> dict[str, Any]:
        line = self._stdout.readline()
        if not line:
            self._wait_gone()
            raise RuntimeError(f"store server {self.pid} exited:\n{self.stderr()}")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def request(self, op: str, **args: Any) -> Any:
        self._stdin.write(json.dumps({"op": op, **args}) + "\n")
        self._stdin.flush()
        doc = self._read()
        if "error" in doc:
            raise ServerError(doc)
        return doc["ok"]

    def kill(self) -> None:
        """Crash: SIGKILL, no clean close (no final apply, no final archive cycle)."""
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # already gone (it crashed): what kill() promises either way
            self.returncode = -signal.SIGKILL
        self._wait_gone()
        self._close_streams()
        self._stderr.close()

    def close(self) -> None:
        """Clean shutdown: end of input makes the server close the archiver and the store; it says
        `closed` as its last line, so a server that crashed on the way out is an error."""
        try:
            if self.returncode is None:
                self._stdin.close()
                tail = self._stdout.read()
                self._wait_gone()
                self.returncode = 0 if tail.endswith('{"closed": true}\n') else 1
                if self.returncode:
                    raise RuntimeError(f"store server {self.pid} did not close cleanly:\n{tail}{self.stderr()}")
        finally:
            self._close_streams()
            self._stderr.close()

    def stderr(self) -> str:
        """What the server wrote to stderr so far (tracebacks, warnings)."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def _wait_gone(self) -> None:
        """Until the process no longer exists (the kernel reaped it: its files and lock are released)."""
        deadline = time.monotonic() + GONE_TIMEOUT
        while pid_exists(self.pid):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise RuntimeError(f"store server {self.pid} did not exit within {GONE_TIMEOUT} s")
            time.sleep(0.001)

    def _close_streams(self) -> None:
        for stream in (self._stdin, self._stdout):
            if not stream.closed:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass
