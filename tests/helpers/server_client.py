"""The test side of `store_server.py`: start it, send requests, SIGKILL it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "store_server.py")


class ServerError(Exception):
    """The server answered a request with an error."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.kind: str = doc["error"]
        self.doc = doc
        super().__init__(f"{doc['error']}: {doc['message']}")


class StoreServer:
    """One running store process. `request` is synchronous: one line out, one line back."""

    def __init__(self, data: str, repo: str, clock_ns: int, wal_file_size: int = 4096) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, data, repo, str(clock_ns), str(wal_file_size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1)
        self.ready = self._read()["ready"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise RuntimeError(f"store server exited with {self.proc.returncode}:\n{self.stderr()}")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def request(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        doc = self._read()
        if "error" in doc:
            raise ServerError(doc)
        return doc["ok"]

    def kill(self) -> None:
        """Crash: SIGKILL, no clean close (no final apply, no final archive cycle)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()
        self._stderr.close()

    def close(self) -> None:
        """Clean shutdown: end of input makes the server close the archiver and the store."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()
        try:
            if self.proc.returncode not in (0, -signal.SIGKILL):
                raise RuntimeError(f"store server exited with {self.proc.returncode}:\n{self.stderr()}")
        finally:
            self._stderr.close()

    def stderr(self) -> str:
        """What the server wrote to stderr so far (tracebacks, warnings)."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def _reap(self) -> None:
        self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass
