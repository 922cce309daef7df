"""--object-lock-days: S3 Object Lock retention on every put, and a cleanup that reports what it may not delete.

The S3 test server (`rclone serve s3`, tests/servers/s3.py) does not enforce
Object Lock: it stores the retention a PUT asks for and answers it on HEAD, but
deletes a retained object when asked. So the S3 side is tested by the requests
the client sends (their headers, for single PUTs and multipart uploads, with
and without a bandwidth cap) and the retention read back, and the cleanup side
by a local backend whose `retained_until` answers as a locked bucket would.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio

from pitr.catalog.entries import SnapshotEntry
from pitr.errors import InvalidArgument
from pitr.repo import layout
from pitr.repo.repository import open_repository
from pitr.retention import plan_cleanup
from pitr.retention_objects import history_group
from pitr.storage import LocalStorage, ObjectInfo, S3Storage
from pitr.storage.base import DAY_NS, ObjectLock
from pitr.storage.ratelimit import TransferLimits
from segments import parse_segment_name, segment_name
from tests.helpers.cli import run_cli
from tests.repo.history import build_history, files
from tests.repo.test_retention import seg
from tests.servers.s3 import S3Server
from tests.storage.conftest import MULTIPART_THRESHOLD, s3_url

LOCK_MODE = "x-amz-object-lock-mode"
LOCK_UNTIL = "x-amz-object-lock-retain-until-date"


def test_retention_dates() -> None:
    assert ObjectLock(3).retain_until_ns(10**9 * 100 + 1) == 10**9 * 101 + 3 * DAY_NS, "rounded up to a second"
    for bad in (0, -1, 36_501, 2.5, True):
        with pytest.raises(InvalidArgument, match="object lock days"):
            ObjectLock(bad)  # type: ignore[arg-type]


def test_the_start_of_the_history_moves_all_at_once() -> None:
    snaps = [SnapshotEntry("00000000000000000010-x.snap", 10, 1, 1, 0, 0, 0, b"", b"")]
    segs = [seg(1, 10), seg(11, 20)]
    superseded = [ObjectInfo(layout.segment_object(segment_name(1, 5)), 1),
                  ObjectInfo(layout.segment_object(segment_name(21, 25)), 1)]
    group = history_group(snaps, segs, superseded, floor=21)
    assert group == ["snapshots/" + snaps[0].name, "segments/1-10.seg", "segments/11-20.seg", superseded[0].name]
    assert history_group(snaps, segs, superseded, floor=None)[-1] == "segments/11-20.seg"


async def _capture(storage: S3Storage) -> list[tuple[str, dict[str, str]]]:
    sent: list[tuple[str, dict[str, str]]] = []
    client = await anyio.to_thread.run_sync(storage._s3)

    def record(event_name: str, request: Any, **_: object) -> None:  # noqa: ANN401 - botocore's request
        sent.append((event_name.rsplit(".", 1)[-1], {k.lower(): v for k, v in request.headers.items()}))

    client.meta.events.register("before-send.s3", record)
    return sent


def _until(headers: dict[str, str]) -> float:
    value = headers[LOCK_UNTIL]
    return datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value).timestamp()


@pytest.mark.anyio
@pytest.mark.parametrize("capped", [False, True])
async def test_every_put_carries_compliance_retention(make_s3_storage: Callable[..., S3Storage], tmp_path: Path,
                                                      capped: bool) -> None:
    """Single PUTs and multipart uploads, through the bandwidth cap or not, all ask for the retention."""
    limits = TransferLimits.of(upload=1 << 40) if capped else TransferLimits()
    storage = make_s3_storage(object_lock=ObjectLock(3), limits=limits)
    try:
        sent = await _capture(storage)
        big = tmp_path / "big"
        big.write_bytes(os.urandom(MULTIPART_THRESHOLD + 1000))
        before = time.time()
        await storage.publish("watermarks/0000000000000001-0000000000000002.wmk", b"small")
        await storage.publish_file("segments/big.seg", str(big))
        puts = [(op, h) for op, h in sent if op in ("PutObject", "CreateMultipartUpload")]
        assert [op for op, _ in puts] == ["PutObject", "CreateMultipartUpload"]
        for op, headers in puts:
            assert headers.get(LOCK_MODE) in ("COMPLIANCE", b"COMPLIANCE"), (op, headers)
            assert before + 3 * 86_400 - 5 <= _until(headers) <= time.time() + 3 * 86_400 + 5, op
        # rclone keeps the retention it was asked for and answers it on HEAD (it does not enforce it)
        for name in ("segments/big.seg", "watermarks/0000000000000001-0000000000000002.wmk"):
            retained = await storage.retained_until(name)
            assert retained is not None, name
            assert before + 3 * 86_400 - 5 <= retained / 1e9 <= time.time() + 3 * 86_400 + 5, name
    finally:
        await storage.aclose()


@pytest.mark.anyio
async def test_without_a_lock_no_retention_is_asked(make_s3_storage: Callable[..., S3Storage]) -> None:
    storage = make_s3_storage()
    try:
        sent = await _capture(storage)
        await storage.publish("a", b"1")
        assert all(LOCK_MODE not in h and LOCK_UNTIL not in h for _op, h in sent)
    finally:
        await storage.aclose()


def test_cleanup_reports_what_it_may_not_delete_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    history = build_history(str(tmp_path / "h"), commits=200, snapshot_every=60, merge_count=3)
    until = time.time_ns() + 2 * DAY_NS
    locked_names: set[str] = set()

    async def retained_until(self: LocalStorage, name: str) -> int | None:
        return until if name in locked_names else None

    monkeypatch.setattr(LocalStorage, "retained_until", retained_until)

    async def plan_names() -> tuple[list[str], list[str], int]:
        async with open_repository(history.repo) as repo:
            plan = await plan_cleanup(repo, keep_count=1, keep_days=0, now_ns=time.time_ns())
        return [layout.snapshot_object(s.name) for s in plan.delete_snapshots], \
            [i.name for i in plan.delete_superseded], plan.keep_snapshots[0].lsn

    snaps, superseded, floor = trio.run(plan_names)
    assert snaps, "the premise: old snapshots to delete"
    later = [n for n in superseded if (parse_segment_name(n.removeprefix("segments/")) or (0, 0))[1] >= floor]
    assert later, "the premise: merge inputs after the oldest kept snapshot"
    locked_names.update({snaps[0], later[0]})
    code, out, err = run_cli(capsys, "cleanup", "--repo", history.repo, "--keep-count", "1", "--keep-days", "0",
                             "--json")
    assert code == 0, err
    report = json.loads(out)[0]
    assert sorted(x["object"] for x in report["locked"]) == sorted(locked_names)
    assert all(2 * 86_400 - 60 < x["remaining_s"] <= 2 * 86_400 + 1 for x in report["locked"])  # rounded up to a second
    # one old snapshot retained: the start of the history stays where it is, all of it kept for now
    assert report["snapshots"] == []
    assert report["segments"] == []
    assert set(snaps[1:]) <= set(report["held_back"])
    assert set(report["superseded"]) == set(later[1:]), "merge inputs after the floor go on their own"
    for name in locked_names | set(report["held_back"]):
        assert os.path.exists(os.path.join(history.repo, name)), f"{name} is kept: not deleted"
    assert not any(os.path.exists(os.path.join(history.repo, n)) for n in later[1:])
    code, out, err = run_cli(capsys, "cleanup", "--repo", history.repo, "--keep-count", "1", "--keep-days", "0")
    assert code == 0, err
    assert "still under Object Lock retention" in out
    assert all(name in out for name in locked_names)
    assert "start of the history moves all at once" in out
    locked_names.clear()  # the retention ran out: now everything the rule names goes
    code, out, err = run_cli(capsys, "cleanup", "--repo", history.repo, "--keep-count", "1", "--keep-days", "0",
                             "--json")
    assert code == 0, err
    report = json.loads(out)[0]
    assert report["locked"] == []
    assert report["held_back"] == []
    assert set(snaps) == {"snapshots/" + s for s in report["snapshots"]}
    assert len(list(files(history.repo, "snapshots"))) == 1
    code, out, err = run_cli(capsys, "verify", "--repo", history.repo)
    assert code == 0, out + err


def test_object_lock_on_a_local_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    assert run_cli(capsys, "put", "k", "v")[0] == 0
    code, _out, err = run_cli(capsys, "archive", "--repo", str(tmp_path / "repo"), "--object-lock-days", "7")
    assert code != 0
    assert "local directory" in err
    assert str(tmp_path / "repo") in err
    assert "Traceback" not in err
    assert not os.path.exists(tmp_path / "repo" / "segments"), "nothing archived"
    code, _out, err = run_cli(capsys, "archive", "--repo", str(tmp_path / "repo"), "--object-lock-days", "0")
    assert code != 0
    assert "object lock days" in err


def test_an_object_locked_s3_repository_end_to_end(tmp_path: Path, s3_server: S3Server, aws_env: None,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """archive and snapshot with --object-lock-days put every object retained; cleanup then deletes none of
    what the rule names, lists each with its window, and exits 0."""
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_CACHE_DIR", str(tmp_path / "cache"))
    repo = ["--repo", s3_url(s3_server), "--s3-endpoint", s3_server.endpoint]
    for round_ in range(3):
        for i in range(5):
            assert run_cli(capsys, "put", f"k{round_}-{i}", "v")[0] == 0
        code, _out, err = run_cli(capsys, "archive", *repo, "--object-lock-days", "2")
        assert code == 0, err
        code, _out, err = run_cli(capsys, "snapshot", *repo, "--object-lock-days", "2")
        assert code == 0, err
    code, out, err = run_cli(capsys, "cleanup", *repo, "--keep-count", "1", "--keep-days", "0", "--json")
    assert code == 0, err
    report = json.loads(out)[0]
    assert report["deleted"] == 0
    assert not report["snapshots"]
    assert not report["segments"]
    locked = [x["object"] for x in report["locked"]]
    assert sum(n.startswith("snapshots/") for n in locked) == 2, locked  # the two older snapshots
    assert all(86_400 < x["remaining_s"] <= 2 * 86_400 + 1 for x in report["locked"])  # rounded up to a second
    code, out, err = run_cli(capsys, "timeline", *repo, "--json")
    assert code == 0, err


def test_copy_into_s3_puts_every_object_retained(tmp_path: Path, s3_server: S3Server, aws_env: None,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITR_CACHE_DIR", str(tmp_path / "cache"))
    history = build_history(str(tmp_path / "h"), commits=40, snapshot_every=20, merge_count=3)
    target = s3_url(s3_server)
    code, out, err = run_cli(capsys, "copy", "--from", history.repo, "--to", target, "--s3-endpoint",
                             s3_server.endpoint, "--object-lock-days", "4")
    assert code == 0, out + err

    async def retention() -> dict[str, int | None]:
        storage = S3Storage(target, endpoint_url=s3_server.endpoint)
        try:
            names = [i.name for p in ("", "segments/", "snapshots/", "watermarks/") for i in await storage.list(p)]
            return {n: await storage.retained_until(n) for n in names}
        finally:
            await storage.aclose()

    found = trio.run(retention)
    assert any(n.startswith("segments/") for n in found)
    assert any(n.startswith("watermarks/") for n in found)
    soon, late = (time.time_ns() + d * DAY_NS for d in (3.9, 4.1))
    unretained = [n for n, until in found.items() if until is None or not soon < until < late]
    assert not unretained, f"put without 4 days of retention: {unretained}"
