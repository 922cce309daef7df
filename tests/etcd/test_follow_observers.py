"""The observers of `pitr archive --follow --source etcd://...` against a real etcd member.

The specification: the metrics endpoint, scraped over 127.0.0.1, counts the
revisions archived as they land in etcd, and its known-complete time advances
with them; the heartbeat is called when it advances; `--on-event` gets the
segments published; the status record lands in the spool directory (`pitr
status --data SPOOL`) with the archiver's pid; after the archiver is killed
the endpoint is gone and `status --max-rpo` says the recovery point is late.
"""

from __future__ import annotations

import base64
import http.client
import json
import shlex
import signal
import sys
import time
import urllib.error
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.archiver.test_follow_observers import (
    follower,
    free_port,
    heartbeat_server,
    pitr,
    read_events,
    scrape,
    wait_for,
)
from tests.servers.etcd import EtcdCluster

pytestmark = pytest.mark.integration


def etcd_put(endpoint: str, key: bytes, value: bytes) -> int:
    """Put through etcd's JSON gateway; the revision of the put."""
    where = urlsplit(endpoint)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=10)
    try:
        body = json.dumps({"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()})
        connection.request("POST", "/v3/kv/put", body=body)
        answer = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    return int(answer["header"]["revision"])


def test_metrics_heartbeat_events_and_the_status_record_follow_an_etcd_archive(
        etcd_server: EtcdCluster, key_prefix: bytes, tmp_path: Path) -> None:
    endpoint = etcd_server.endpoints[0]
    spool, repo, sink = str(tmp_path / "spool"), str(tmp_path / "repo"), tmp_path / "events.jsonl"
    hook = shlex.join([sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(sys.stdin.read())",
                       str(sink)])
    port = free_port()
    lsn_key, complete_key = ("pitr_archived_lsn", repo), ("pitr_known_complete_timestamp_seconds", repo)
    etcd_put(endpoint, key_prefix + b"a", b"1")
    source = f"etcd://{urlsplit(endpoint).netloc}{key_prefix.decode()}"
    with heartbeat_server() as (url, pings), open(tmp_path / "log", "w") as log, \
            follower(["--source", source, "--data", spool, "--repo", repo, "--metrics", f"127.0.0.1:{port}",
                      "--heartbeat-url", url, "--heartbeat-interval", "0.05", "--on-event", hook,
                      "--check-every", "0.2", "--snapshot-every", "1s"], log) as proc:
        def metrics_at(lsn: int) -> dict[tuple[str, str], float] | None:
            assert proc.poll() is None, (tmp_path / "log").read_text()
            try:
                metrics = scrape(port)
            except (OSError, http.client.HTTPException):
                return None
            return metrics if metrics.get(lsn_key, 0) >= lsn and complete_key in metrics else None

        first = wait_for("the base load archived", lambda: metrics_at(1))
        base_lsn = int(first[lsn_key])
        wait_for("the first heartbeat", lambda: pings.count or None)
        assert wait_for("the window", lambda: scrape(port).get(("pitr_window_end_timestamp_seconds", repo)))
        for n in (2, 3):
            etcd_put(endpoint, key_prefix + b"k%d" % n, b"v")
        calls = pings.count
        moved = wait_for("two revisions archived and complete", lambda: next(
            (m for m in [metrics_at(base_lsn + 2)] if m and m[complete_key] > first[complete_key]), None))
        assert moved[("pitr_archived_commits_total", repo)] - first[("pitr_archived_commits_total", repo)] == 2
        assert moved[("pitr_archived_bytes_total", repo)] > first[("pitr_archived_bytes_total", repo)]
        wait_for("a heartbeat after the advance", lambda: pings.count > calls or None)
        published = wait_for("segment_published events", lambda: [
            e for e in read_events(sink) if e["event"] == "segment_published"
            and e["last_lsn"] == base_lsn + 2] or None)
        assert published[0]["repository"] == repo
        snapshot = wait_for("a scheduled snapshot's event", lambda: [
            e for e in read_events(sink) if e["event"] == "snapshot_taken" and e["lsn"] == base_lsn + 2] or None)
        assert (tmp_path / "repo" / "snapshots" / str(snapshot[0]["snapshot"])).is_file()

        def recorded() -> dict[str, object] | None:
            shown = json.loads(pitr("status", "--data", spool, "--repo", repo, "--json").stdout)
            record: dict[str, object] = shown["repositories"][0]["archiver"]
            return record if record and record["archived_lsn"] == base_lsn + 2 else None

        record = wait_for("the status record in the spool", recorded)
        assert record["pid"] == proc.pid
        upload = record["upload"]
        assert isinstance(upload, dict)
        assert upload["cap_bytes_per_s"] is None  # a directory repository is never capped
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    try:
        scrape(port)
        raise AssertionError("the endpoint still answers after the archiver was killed")
    except (urllib.error.URLError, ConnectionError):
        pass
    etcd_put(endpoint, key_prefix + b"late", b"v")  # lands in etcd, but nobody archives it
    time.sleep(0.3)
    late = pitr("status", "--data", spool, "--repo", repo, "--max-rpo", "200ms")
    assert late.returncode == 1, late.stdout + late.stderr
    assert "--max-rpo" in late.stdout


def test_a_one_shot_etcd_archive_delivers_its_events_and_writes_its_record(
        etcd_server: EtcdCluster, key_prefix: bytes, tmp_path: Path) -> None:
    endpoint = etcd_server.endpoints[0]
    spool, repo, sink = str(tmp_path / "spool"), str(tmp_path / "repo"), tmp_path / "events.jsonl"
    hook = shlex.join([sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(sys.stdin.read())",
                       str(sink)])
    source = f"etcd://{urlsplit(endpoint).netloc}{key_prefix.decode()}"
    for n in range(3):
        etcd_put(endpoint, key_prefix + b"k%d" % n, b"v")
    done = pitr("archive", "--source", source, "--data", spool, "--repo", repo, "--on-event", hook, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    last = max(int(e["last_lsn"]) for e in read_events(sink) if e["event"] == "segment_published")
    shown = pitr("status", "--data", spool, "--repo", repo, "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    record = json.loads(shown.stdout)["repositories"][0]["archiver"]
    assert record["archived_lsn"] == last
    assert record["upload"]["backlog_commits"] == 0
