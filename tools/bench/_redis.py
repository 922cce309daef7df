"""Redis as the baseline of tools/bench/commands.py: a private redis-server, its SET rate, its AOF reload.

The server is Debian's redis-server 7 (installed by `tools/testenv.py --bench`),
started on 127.0.0.1 on a free port with its own directory, `appendonly yes`,
`appendfsync always`, no RDB saves and no automatic AOF rewrite, so a restart
reloads the AOF exactly as the SETs wrote it. `RedisServer` is a context
manager: the server is stopped when the block ends, on error too.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import time
from types import TracebackType

PROGRAMS = ("redis-server", "redis-cli", "redis-benchmark")
INSTALL_HINT = "run `tools/testenv.py --bench` as root (Debian packages redis-server and redis-tools)"


class RedisError(RuntimeError):
    """The baseline could not be measured: the server did not start, answer or load."""


def require_programs() -> dict[str, str]:
    """The path of each Redis program, or RedisError naming the missing ones and how to install them."""
    found = {name: shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
             for name in PROGRAMS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise RedisError(f"{', '.join(missing)} not found; {INSTALL_HINT}")
    return {name: path for name, path in found.items() if path is not None}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _reply(sock: socket.socket) -> bytes:
    """One RESP reply: a status, an error, an integer or a bulk string (what PING, INFO and DBSIZE send)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        data += chunk
    head, _, rest = data.partition(b"\r\n")
    if head[:1] != b"$":
        return head
    size = int(head[1:])
    while len(rest) < size + 2:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        rest += chunk
    return rest[:size]


class RedisServer:
    """redis-server with AOF and fsync on every write, on 127.0.0.1, in `directory`."""

    def __init__(self, directory: str, programs: dict[str, str]) -> None:
        self.directory = directory
        self.programs = programs
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start the server; return the seconds until it answers PING with its data loaded (`loading:0`)."""
        if self.process is not None:
            raise RedisError("redis-server is already running")
        argv = [self.programs["redis-server"], "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", self.directory, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--auto-aof-rewrite-percentage", "0", "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", os.path.join(self.directory, "redis.log")]
        started = time.perf_counter()
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = started + 600
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RedisError(f"redis-server exited with status {self.process.returncode}; see "
                                 f"{os.path.join(self.directory, 'redis.log')}")
            try:
                if self.ask("PING") == b"+PONG" and b"loading:0" in self.ask("INFO", "persistence"):
                    return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.001)
        raise RedisError("redis-server did not finish loading within 600 s")

    def ask(self, *words: str) -> bytes:
        """One command on a fresh connection; its reply (errors come back as b'-...')."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(_command(*words))
            return _reply(sock)

    def dbsize(self) -> int:
        reply = self.ask("DBSIZE")
        if not reply.startswith(b":"):
            raise RedisError(f"DBSIZE answered {reply!r}")
        return int(reply[1:])

    def shutdown(self) -> None:
        """SHUTDOWN (the AOF is fsynced; no RDB is written: `save ""`) and wait for the process to exit."""
        if self.process is None:
            return
        try:
            self.ask("SHUTDOWN", "NOSAVE")
        except OSError:
            pass  # the server closes the connection as it exits
        try:
            self.process.wait(timeout=60)
        finally:
            self.stop()

    def stop(self) -> None:
        """Terminate the server if it still runs (SIGTERM, then SIGKILL after 10 s)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def logged_load_seconds(self) -> float | None:
        """What redis-server logged as its last load time ("DB loaded from append only file: N seconds")."""
        try:
            with open(os.path.join(self.directory, "redis.log")) as fh:
                found = re.findall(r"DB loaded from append only file: ([\d.]+) seconds", fh.read())
        except OSError:
            return None
        return float(found[-1]) if found else None

    def aof_bytes(self) -> int:
        """Bytes of the append-only files (Redis 7: appendonlydir/ with a base and an incremental file)."""
        total = 0
        for root, _dirs, files in os.walk(self.directory):
            total += sum(os.path.getsize(os.path.join(root, name)) for name in files
                         if ".aof" in name)
        return total

    def set_rate(self, commits: int) -> float:
        """`redis-benchmark -t set -n N -r N -d 100 -P 16 -q`: the SETs per second it reports."""
        argv = [self.programs["redis-benchmark"], "-h", "127.0.0.1", "-p", str(self.port), "-t", "set",
                "-n", str(commits), "-r", str(commits), "-d", "100", "-P", "16", "-q"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
        found = re.findall(r"SET: ([\d.]+) requests per second", done.stdout.replace("\r", "\n"))
        if done.returncode != 0 or not found:
            raise RedisError(f"redis-benchmark failed (status {done.returncode}): {done.stdout[-500:]} "
                             f"{done.stderr[-500:]}")
        return float(found[-1])

    def cli_start_seconds(self, runs: int = 5) -> tuple[float, float]:
        """`redis-cli PING` as a whole process: (first run, median of the next `runs`)."""
        times = []
        for _ in range(runs + 1):
            started = time.perf_counter()
            done = subprocess.run([self.programs["redis-cli"], "-p", str(self.port), "PING"],
                                  capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - started)
            if done.stdout.strip() != "PONG":
                raise RedisError(f"redis-cli PING answered {done.stdout!r} {done.stderr!r}")
        return times[0], statistics.median(times[1:])

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
