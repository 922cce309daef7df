"""Real etcd servers for tests: one member or a three-member cluster on 127.0.0.1.

`running_etcd` starts ``etcd`` (Debian package ``etcd-server``; install it
with ``tools/testenv.py``) with free ports and a temporary data directory
per member, waits until every member reports healthy, and on exit stops
them (SIGTERM, then SIGKILL) and removes the data. A member can be killed
and restarted with its data, for failover tests.

Test members use short raft timers (50 ms heartbeat, 500 ms election) and a
500 ms watch progress-notify interval, so failover and progress tests run
in about a second.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.servers import free_ports, require_binary

INSTALL_COMMAND = "sudo apt-get update && sudo apt-get install -y etcd-server  (as root: python3 tools/testenv.py)"
PROGRESS_NOTIFY_INTERVAL = 0.5
_STARTUP_TIMEOUT = 20.0
_STOP_TIMEOUT = 5.0
_LEADER_STOP_TIMEOUT = 2.0
_START_ATTEMPTS = 3


def find_etcd() -> str | None:
    """The etcd binary on PATH, else Debian's /usr/bin/etcd."""
    found = shutil.which("etcd")
    if found:
        return found
    return "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None


def require_etcd() -> str:
    """The etcd binary; without it skip the test, or fail it under CI=true."""
    return require_binary(find_etcd, "etcd", INSTALL_COMMAND)


def _request_json(port: int, method: str, path: str, timeout: float = 1.0) -> object:
    """A JSON answer from a local member (http.client ignores proxy settings in the environment)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body="{}" if method == "POST" else None)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


@dataclass
class EtcdMember:
    """One etcd process; `start` again after `stop` or `kill` reuses its ports and data."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.with_suffix(".log")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, binary: str, initial_cluster: str, cluster_token: str) -> None:
        if self.running:
            return
        self._close_log()
        self._log = open(self.log_path, "ab")  # closed in stop() and kill()
        command = [
            binary, "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-token", cluster_token,
            "--initial-cluster-state", "existing" if self.data_dir.exists() else "new",
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--experimental-watch-progress-notify-interval", f"{int(PROGRESS_NOTIFY_INTERVAL * 1000)}ms",
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=environment)

    def check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"etcd member {self.name} exited with {self._process.returncode}:\n"
                               f"{self.log_tail()}")

    def healthy(self) -> bool:
        try:
            answer = _request_json(self.client_port, "GET", "/health")
        except (OSError, ValueError):
            return False
        return isinstance(answer, dict) and answer.get("health") == "true"

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM) without waiting; `stop` finishes the job."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop the process: SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
        if self._process is not None:
            self.terminate()
            try:
                self._process.wait(timeout=max(timeout, 0.0))
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the process, as a crash would."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process = None
        self._close_log()

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class EtcdCluster:
    """etcd members started together with a static ``--initial-cluster`` on loopback."""

    binary: str
    root: Path
    size: int = 1
    members: list[EtcdMember] = field(default_factory=list)
    token: str = field(default_factory=lambda: f"pitr-test-{uuid.uuid4().hex[:12]}")

    @property
    def endpoints(self) -> list[str]:
        return [member.endpoint for member in self.members]

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{member.name}={member.peer_url}" for member in self.members)

    def start(self) -> None:
        """Start every member and wait until all are healthy; retried on a port taken meanwhile."""
        for attempt in range(_START_ATTEMPTS):
            ports = free_ports(2 * self.size)
            self.members = [EtcdMember(name=f"m{i}", client_port=ports[2 * i], peer_port=ports[2 * i + 1],
                                       data_dir=self.root / f"attempt{attempt}-m{i}") for i in range(self.size)]
            try:
                for member in self.members:
                    member.start(self.binary, self.initial_cluster, self.token)
                self.wait_healthy()
                return
            except RuntimeError as exc:
                logs = "\n".join(member.log_tail() for member in self.members)
                self.stop()
                if "address already in use" not in logs or attempt == _START_ATTEMPTS - 1:
                    raise RuntimeError(f"etcd cluster of {self.size} did not start: {exc}") from exc

    def wait_healthy(self, members: list[EtcdMember] | None = None, timeout: float = _STARTUP_TIMEOUT) -> None:
        waiting = list(self.members if members is None else members)
        deadline = time.monotonic() + timeout
        while waiting:
            for member in waiting:
                member.check_alive()
            waiting = [member for member in waiting if not member.healthy()]
            if not waiting:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {m.name}:\n{m.log_tail()}" for m in waiting)
                raise RuntimeError(f"etcd members {[m.name for m in waiting]} not healthy within {timeout} s:\n"
                                   f"{tails}")
            time.sleep(0.05)

    def kill_member(self, index: int) -> EtcdMember:
        member = self.members[index]
        member.kill()
        return member

    def restart_member(self, index: int) -> EtcdMember:
        """Start a stopped or killed member again with its data, and wait until it is healthy."""
        member = self.members[index]
        member.start(self.binary, self.initial_cluster, self.token)
        self.wait_healthy([member])
        return member

    def leader_index(self) -> int | None:
        """The index of the member that currently leads, as the running members report it."""
        ids: dict[int, int] = {}
        leader = None
        for index, member in enumerate(self.members):
            if not member.running:
                continue
            try:
                status = _request_json(member.client_port, "POST", "/v3/maintenance/status")
            except (OSError, ValueError):
                continue
            if isinstance(status, dict):
                ids[int(status["header"]["member_id"])] = index
                leader = int(status.get("leader", 0)) or leader
        return ids.get(leader) if leader is not None else None

    def stop(self) -> None:
        """Stop every member, the leader last.

        A leader given SIGTERM hands its leadership to a follower it believes
        alive, and waits seconds for one that is stopping too. Once it has
        noticed that the followers are gone (a fraction of a second) it exits
        at once; SIGKILL after a short grace covers the rest.
        """
        leader = self.leader_index() if self.size > 1 else None
        followers = [m for i, m in enumerate(self.members) if i != leader]
        for member in followers:
            member.terminate()
        deadline = time.monotonic() + _STOP_TIMEOUT
        for member in followers:
            member.stop(timeout=deadline - time.monotonic())
        if leader is not None:
            time.sleep(0.2)
            self.members[leader].stop(timeout=_LEADER_STOP_TIMEOUT)


@contextlib.contextmanager
def running_etcd(binary: str, size: int = 1) -> Iterator[EtcdCluster]:
    """A healthy etcd cluster of ``size`` members in a temporary directory, stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="pitr-etcd-"))
    cluster = EtcdCluster(binary=binary, root=root, size=size)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
