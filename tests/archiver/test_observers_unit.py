"""The observers one by one (issue 15, items 2 and 3): the metrics collector's values, the event hook's
bounded queue and failure handling, and the events' JSON."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import anyio
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pitr.archiver import Archiver
from pitr.archiver.observe import PublishedSegment
from pitr.errors import InvalidArgument
from pitr.status.events import EventHook
from pitr.status.metrics import MetricsExporter, parse_listen
from pitr.timefmt import format_time

pytestmark = pytest.mark.anyio
NOW = 1_800_000_000 * 10**9


def fake_archiver(url: str, requests: Counter[str] | None) -> Archiver:
    """One repository resumed at LSN 5."""
    storage = SimpleNamespace() if requests is None else SimpleNamespace(requests=requests)
    prog = SimpleNamespace(repo=SimpleNamespace(url=url, storage=storage), last_lsn=5,
                           last_watermark=(5, NOW - 3 * 10**9))
    return cast(Archiver, SimpleNamespace(progress=[prog]))


def samples(exporter: MetricsExporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(exporter.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_start_from_where_the_archiver_resumed_and_count_what_it_does() -> None:
    url = "s3://bucket/prefix"
    requests: Counter[str] = Counter({"PutObject": 3, "ListObjectsV2": 1})
    exporter = MetricsExporter(fake_archiver(url, requests), clock=lambda: NOW)
    repo = (("repository", url),)
    got = samples(exporter)
    assert got[("pitr_archived_lsn", repo)] == 5
    assert got[("pitr_known_complete_timestamp_seconds", repo)] == (NOW - 3 * 10**9) / 1e9
    assert got[("pitr_recovery_point_seconds", repo)] == 3.0
    assert ("pitr_window_start_timestamp_seconds", repo) not in got, "unknown until the watcher looked"
    assert got[("pitr_storage_requests_total", (("operation", "PutObject"), ("repository", url)))] == 3
    exporter.segment_published(PublishedSegment(url, "s.seg", 6, 9, 4, 1000, NOW - 10**9, 250_000_000))
    exporter.watermark_written(url, 9, NOW - 10**9)
    exporter.repository_failed(url, "503", NOW)
    requests["PutObject"] += 1
    got = samples(exporter)
    assert got[("pitr_archived_commits_total", repo)] == 4
    assert got[("pitr_archived_bytes_total", repo)] == 1000
    assert got[("pitr_archived_lsn", repo)] == 9
    assert got[("pitr_archiver_lag_seconds", repo)] == 0.25
    assert got[("pitr_recovery_point_seconds", repo)] == 1.0
    assert got[("pitr_archive_errors_total", repo)] == 1
    assert got[("pitr_archive_failing", repo)] == 1
    assert got[("pitr_storage_requests_total", (("operation", "PutObject"), ("repository", url)))] == 4
    exporter.repository_archived(url, 9, NOW)
    assert samples(exporter)[("pitr_archive_failing", repo)] == 0


def test_a_listen_address_is_checked() -> None:
    assert parse_listen("127.0.0.1:9187") == ("127.0.0.1", 9187)
    assert parse_listen("[::1]:9187") == ("::1", 9187)
    assert parse_listen(":9187") == ("0.0.0.0", 9187)
    for bad in ("9187", "host:", "host:99999", "host:http"):
        with pytest.raises(InvalidArgument, match="--metrics"):
            parse_listen(bad)


def segment(n: int) -> PublishedSegment:
    return PublishedSegment("/repo", f"{n}.seg", n, n, 1, 100, NOW, 0)


async def test_a_slow_hook_never_blocks_the_archiver_and_the_overflow_is_counted(tmp_path: Path) -> None:
    hook = EventHook(f"{sys.executable} -c 'import time; time.sleep(30)'", max_queue=3, timeout=60)
    async with anyio.create_task_group() as tg:
        tg.start_soon(hook.serve)
        hook.segment_published(segment(0))
        await anyio.sleep(0.5)  # the hook has taken the first event and sleeps on it
        started = time.monotonic()
        for n in range(1, 10):  # synchronous: never waits for the hook
            hook.segment_published(segment(n))
        assert time.monotonic() - started < 1
        tg.cancel_scope.cancel()
    hook.close()
    assert hook.dropped == 6, "three wait in the queue, the rest are dropped"
    assert hook.delivered == 0


async def test_a_failing_hook_is_counted_and_the_next_events_still_go_out(tmp_path: Path) -> None:
    sink = tmp_path / "out.jsonl"
    script = ("import sys, json; e = json.loads(sys.stdin.read()); "
              f"open({str(sink)!r}, 'a').write(json.dumps(e) + '\\n'); sys.exit(1 if e.get('first_lsn') == 1 else 0)")
    hook = EventHook(f"{sys.executable} -c {json.dumps(script)}")
    for n in (1, 2):
        hook.segment_published(segment(n))
    hook.gap_recorded("/repo", ((7, NOW - 5),))
    await hook.drain()
    hook.close()
    assert (hook.failed, hook.delivered, hook.dropped) == (1, 2, 0)
    events = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [e["event"] for e in events] == ["segment_published", "segment_published", "gap_recorded"]
    assert events[2]["gaps"] == [{"lsn": 7, "time_before": format_time(NOW - 5)}]
    assert events[0]["first_lsn"] == 1
    assert events[0]["commits"] == 1
    assert events[0]["repository"] == "/repo"


async def test_a_hook_that_cannot_start_or_hangs_is_reported_not_raised(tmp_path: Path) -> None:
    missing = EventHook(str(tmp_path / "no-such-hook"))
    missing.segment_published(segment(1))
    await missing.drain()
    missing.close()
    assert missing.failed == 1
    hung = EventHook(f"{sys.executable} -c 'import time; time.sleep(30)'", timeout=0.5)
    hung.segment_published(segment(1))
    with anyio.fail_after(20):
        await hung.drain()
    hung.close()
    assert hung.failed == 1


def test_a_hook_command_is_checked() -> None:
    with pytest.raises(InvalidArgument, match="--on-event"):
        EventHook("")
    with pytest.raises(InvalidArgument, match="--on-event"):
        EventHook("notify 'unclosed")


def test_observer_flags_that_would_do_nothing_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.helpers.cli import run_cli

    data, repo = str(tmp_path / "data"), str(tmp_path / "repo")
    assert run_cli(capsys, "put", "--data", data, "k", "v")[0] == 0
    for flags, needle in ((["--metrics", "127.0.0.1:9187"], "needs --follow"),
                          (["--heartbeat-url", "http://127.0.0.1:1/"], "needs --follow"),
                          (["--source", "etcd://127.0.0.1:1", "--metrics", "127.0.0.1:9187"], "needs --follow")):
        code, _out, err = run_cli(capsys, "archive", "--data", data, "--repo", repo, *flags)
        assert code == 2, err
        assert needle in err
    assert not (tmp_path / "repo").exists(), "refused before anything was archived"


async def test_the_status_record_carries_the_upload_backlog_and_the_cap(tmp_path: Path) -> None:
    from pitr.status.recorder import StatusRecorder
    from pitr.status.records import UploadBacklog, read_archiver_record
    from pitr.storage.ratelimit import TransferLimits

    capped, plain = "s3://bucket/prefix", str(tmp_path / "repo")
    durable = [10]

    async def durable_now() -> tuple[int, int]:
        return durable[0], NOW

    def prog(url: str, storage: object) -> SimpleNamespace:
        return SimpleNamespace(repo=SimpleNamespace(url=url, storage=storage), last_lsn=10, last_watermark=None)

    progress = [prog(capped, SimpleNamespace(limits=TransferLimits.of(upload=1000))), prog(plain, SimpleNamespace())]
    archiver = cast(Archiver, SimpleNamespace(progress=progress, source=SimpleNamespace(durable=durable_now)))
    recorder = StatusRecorder(str(tmp_path / "data"), archiver=archiver, clock=lambda: NOW)
    await recorder.measure()
    await recorder.flush()
    record = read_archiver_record(str(tmp_path / "data"), capped)
    assert record is not None
    assert record.backlog == UploadBacklog(0, 0, 1000, 0), "nothing waits: no cost"
    # 4 commits in 2,000 bytes published: 500 bytes a commit; then 30 more are durable, 20 still waiting
    recorder.segment_published(PublishedSegment(capped, "s.seg", 7, 10, 4, 2000, NOW, 0))
    recorder.segment_published(PublishedSegment(plain, "p.seg", 7, 10, 4, 4000, NOW, 0))
    durable[0] = 30
    await recorder.measure()
    await recorder.flush()
    record = read_archiver_record(str(tmp_path / "data"), capped)
    assert record is not None
    assert record.backlog == UploadBacklog(20, 10_000, 1000, 0)
    assert record.backlog.cap_cost_seconds == 10.0
    other = read_archiver_record(str(tmp_path / "data"), plain)
    assert other is not None
    assert other.backlog == UploadBacklog(20, 20_000, None, None), "a directory repository has no cap"
    assert other.backlog.cap_cost_seconds == 0.0
    # an upload under way holds 30,000 bytes at the cap (more than the estimate): the repository waits behind it
    limits = progress[0].repo.storage.limits
    limits.upload.take(30_000)
    await recorder.measure()
    backlog = recorder.records[capped].backlog
    assert backlog is not None
    assert 29_000 <= (backlog.bytes or 0) <= 30_000
    assert 29.0 <= backlog.cap_cost_seconds <= 30.0
    got = samples(MetricsExporter(archiver, clock=lambda: NOW, backlogs=recorder.backlogs))
    assert got[("pitr_upload_backlog_commits", (("repository", capped),))] == 20
    assert got[("pitr_upload_cap_bytes_per_second", (("repository", capped),))] == 1000
    assert got[("pitr_upload_cap_cost_seconds", (("repository", capped),))] == backlog.cap_cost_seconds
    assert got[("pitr_upload_backlog_bytes", (("repository", plain),))] == 20_000
    assert ("pitr_upload_cap_cost_seconds", (("repository", plain),)) not in got, "no cap, no cost"


async def test_a_backlog_that_cannot_be_measured_leaves_the_record_and_the_archiver_alone(tmp_path: Path) -> None:
    from pitr.errors import CorruptData
    from pitr.status.recorder import StatusRecorder

    async def broken() -> tuple[int, int]:
        raise CorruptData("the state is damaged", path="x")

    archiver = cast(Archiver, SimpleNamespace(progress=[], source=SimpleNamespace(durable=broken)))
    recorder = StatusRecorder(str(tmp_path / "data"), archiver=archiver, clock=lambda: NOW)
    await recorder.measure()  # logged once, not raised
    assert recorder.records == {}


def test_docs_operations_names_every_metric_and_event() -> None:
    """docs/operations.md is where an operator looks a metric or an event up: each one served is there."""
    from pitr.status.events import EVENTS
    from pitr.status.records import UploadBacklog

    docs = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    exporter = MetricsExporter(fake_archiver("r", Counter({"PutObject": 1})), clock=lambda: NOW,
                               backlogs=lambda: {"r": UploadBacklog(1, 10, 5, 5)})
    # every family the collector yields, whether or not it has a sample yet (a counter is served as NAME_total)
    served = [f.name + "_total" if f.type == "counter" else f.name for f in exporter.collect()]
    assert len(served) > 20
    missing = [name for name in served if f"`{name}`" not in docs]
    assert missing == [], f"metrics served but not in docs/operations.md: {missing}"
    assert [e for e in EVENTS if f"`{e}`" not in docs] == []
