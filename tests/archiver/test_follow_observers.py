"""`pitr archive --follow` observed from outside (issue 15, items 1-3 and 6): Prometheus metrics scraped
over 127.0.0.1 move as commits land and stop when the archiver is killed; the heartbeat is called only
when the known-complete time advances; `--on-event` receives each event as JSON; a follower started
before its store exists waits for it.

Each test runs the real command in its own process, as an operator does.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from tests.restore.test_destination import live_writer

T = TypeVar("T")
PITR = [sys.executable, "-m", "pitr.cli.main"]


def pitr(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PITR, *argv], capture_output=True, text=True, timeout=120, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def scrape(port: int) -> dict[tuple[str, str], float]:
    """Every sample of the endpoint: (name, repository label) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, s.labels.get("repository", "")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Pings(BaseHTTPRequestHandler):
    count = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).count += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        pass


@contextmanager
def heartbeat_server() -> Iterator[tuple[str, type[Pings]]]:
    handler = type("CountedPings", (Pings,), {"count": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ping", handler
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def follower(argv: list[str], log: IO[str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([*PITR, "archive", "--follow", "--interval", "0.1", *argv], stdout=subprocess.DEVNULL,
                            stderr=log, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def test_metrics_move_with_commits_the_heartbeat_follows_the_known_complete_time_and_both_stop_when_killed(
        tmp_path: Path) -> None:
    data, repo = str(tmp_path / "data"), str(tmp_path / "repo")
    port = free_port()
    key = ("pitr_known_complete_timestamp_seconds", repo)
    with live_writer(data) as writer, heartbeat_server() as (url, pings), open(tmp_path / "log", "w") as log:
        # a live writer holds the lock: the known-complete time is its last applied commit's, not the clock's
        assert writer.send("put k1 v1").startswith("ok")
        assert writer.send("flush").startswith("ok")
        with follower(["--data", data, "--repo", repo, "--metrics", f"127.0.0.1:{port}", "--heartbeat-url", url,
                       "--heartbeat-interval", "0.05", "--check-every", "0.2"], log) as proc:
            def archived(lsn: int) -> dict[tuple[str, str], float] | None:
                assert proc.poll() is None, (tmp_path / "log").read_text()
                try:
                    metrics = scrape(port)
                except (urllib.error.URLError, ConnectionError):
                    return None
                return metrics if metrics.get(("pitr_archived_lsn", repo)) == lsn and key in metrics else None

            first = wait_for("LSN 1 archived", lambda: archived(1))
            assert first[("pitr_archived_commits_total", repo)] == 1
            wait_for("the first heartbeat", lambda: pings.count or None)
            assert wait_for("the window", lambda: scrape(port).get(("pitr_window_end_timestamp_seconds", repo)))
            calls = pings.count
            time.sleep(1.0)  # ten cycles with nothing new: the known-complete time stands still
            idle = scrape(port)
            assert idle[key] == first[key]
            assert pings.count == calls, "no heartbeat while the known-complete time does not advance"
            assert writer.send("put k2 v2").startswith("ok")
            assert writer.send("flush").startswith("ok")
            # the segment is published, then the watermark covering it: wait for both
            second = wait_for("LSN 2 archived and complete",
                              lambda: next((m for m in [archived(2)] if m and m[key] > first[key]), None))
            assert second[("pitr_archived_commits_total", repo)] == 2
            assert second[("pitr_segments_published_total", repo)] == 2
            assert second[("pitr_archived_bytes_total", repo)] > first[("pitr_archived_bytes_total", repo)]
            wait_for("the heartbeat after the advance", lambda: pings.count > calls or None)
            time.sleep(0.5)
            assert pings.count == calls + 1, "one advance, one heartbeat"

            def recorded() -> dict[str, object] | None:  # the status record is rewritten every 5 s
                shown = json.loads(pitr("status", "--data", data, "--repo", repo, "--json").stdout)
                record: dict[str, object] = shown["repositories"][0]["archiver"]
                return record if record["archived_lsn"] == 2 else None

            assert wait_for("the status record", recorded)["pid"] == proc.pid
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        try:
            scrape(port)
            raise AssertionError("the endpoint still answers after the archiver was killed")
        except (urllib.error.URLError, ConnectionError):
            pass
        assert writer.send("put k3 v3").startswith("ok")  # lands, but nobody archives it
        time.sleep(0.3)
        late = pitr("status", "--data", data, "--repo", repo, "--max-rpo", "200ms")
        assert late.returncode == 1, late.stdout + late.stderr
        assert "--max-rpo" in late.stdout


def read_events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_events_reach_the_hook_as_json_on_stdin(tmp_path: Path) -> None:
    data, repo, sink = str(tmp_path / "data"), str(tmp_path / "repo"), tmp_path / "events.jsonl"
    # the event file's name holds a space and a ';': run without a shell, it is one argument
    sink = tmp_path / "events; touch INJECTED.jsonl"
    hook = shlex.join([sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(sys.stdin.read())",
                       str(sink)])
    assert pitr("put", "--data", data, "k0", "v").returncode == 0

    def events(kind: str, count: int = 1) -> list[dict[str, object]] | None:
        found = [e for e in read_events(sink) if e["event"] == kind]
        return found if len(found) >= count else None

    with open(tmp_path / "log", "w") as log, \
            follower(["--data", data, "--repo", repo, "--on-event", hook, "--snapshot-every", "1s",
                      "--check-every", "0.2"], log) as proc:
        published = wait_for("segment_published", lambda: events("segment_published"))[0]
        assert (published["repository"], published["first_lsn"], published["last_lsn"], published["commits"]) == \
            (repo, 1, 1, 1)
        assert (tmp_path / "repo" / "segments" / str(published["segment"])).is_file()
        for n in range(1, 4):
            assert pitr("put", "--data", data, f"k{n}", "v").returncode == 0
            wait_for(f"segment {n + 1}", lambda n=n: events("segment_published", n + 1))  # type: ignore[misc]
            wait_for(f"snapshot {n}", lambda n=n: events("snapshot_taken", n))  # type: ignore[misc]
        snapshots = events("snapshot_taken", 3)
        assert snapshots is not None
        assert all((tmp_path / "repo" / "snapshots" / str(e["snapshot"])).is_file() for e in snapshots[:1])
        assert proc.poll() is None
        cleaned = pitr("cleanup", "--repo", repo, "--keep-count", "1", "--keep-days", "0")
        assert cleaned.returncode == 0, cleaned.stderr
        deleted = wait_for("retention_deleted", lambda: events("retention_deleted"))[0]
        gone = deleted["snapshots"]
        assert isinstance(gone, list)
        assert gone
        assert all(not (tmp_path / "repo" / "snapshots" / str(name)).exists() for name in gone)
        shrank = wait_for("window_shrank", lambda: events("window_shrank"))[0]
        before, after = shrank["before"], shrank["after"]
        assert isinstance(before, list)
        assert isinstance(after, list)
        assert before[0]["start_lsn"] < after[0]["start_lsn"]
        segment = sorted((tmp_path / "repo" / "segments").iterdir())[-1]
        raw = bytearray(segment.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        segment.write_bytes(bytes(raw))
        assert pitr("verify", "--repo", repo).returncode == 1
        failed = wait_for("verification_failed", lambda: events("verification_failed"))[0]
        assert failed["repository"] == repo
        assert segment.name in str(failed["summary"])
        assert proc.poll() is None, "the archiver goes on"
    assert not (tmp_path / "INJECTED.jsonl").exists()
    assert not Path("INJECTED.jsonl").exists()
    assert all(isinstance(e["ts_ns"], int) and isinstance(e["time"], str) for e in read_events(sink))


def test_a_follower_started_before_its_store_waits_for_it(tmp_path: Path) -> None:
    data, repo = str(tmp_path / "data"), str(tmp_path / "repo")
    with open(tmp_path / "log", "w") as log, follower(["--data", data, "--repo", repo], log) as proc:
        wait_for("the waiting line", lambda: "waiting for the store" in (tmp_path / "log").read_text() or None)
        assert proc.poll() is None
        assert pitr("put", "--data", data, "k", "v").returncode == 0  # the writer creates the store
        wait_for("the first archive", lambda: any((tmp_path / "repo" / "watermarks").glob("*.wmk")) or None)
        wait_for("LSN 1 archived", lambda: json.loads(pitr("status", "--repo", repo, "--json").stdout)
                 ["repositories"][0]["known_complete_lsn"] == 1 or None)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, (tmp_path / "log").read_text()
    assert "Traceback" not in (tmp_path / "log").read_text()
    assert os.path.isdir(data)
