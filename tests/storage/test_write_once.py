"""Write-once repositories, for every backend: no name is ever written twice, nothing is deleted outside cleanup.

Each backend is wrapped (a subclass, so the repository still sees a local
directory or an S3 bucket) by a recorder of every successful write and every
delete. A run of archive (with merges) + snapshot + cleanup + more archiving
must write each name once, never call `replace`, and delete only inside
`run_cleanup`, and then only superseded segments, old watermarks and what the
retention rule names.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import pitr.repo.repository as repository_module
from pitr.archiver import ArchiveOptions
from pitr.archiving import archiving
from pitr.repo import layout, watermarks
from pitr.repo.repository import open_repository
from pitr.retention import plan_cleanup, run_cleanup
from pitr.snapshots.take import take_snapshot
from pitr.storage import LocalStorage, S3Storage, Storage
from pitr.storage.ratelimit import NO_LIMITS
from pitr.store import Store
from tests.repo.history import FakeClock
from tests.servers.s3 import S3Server
from tests.storage.conftest import s3_url

pytestmark = pytest.mark.anyio


class Recorder:
    """Every write (successful publish) and delete, and whether deleting is allowed right now."""

    def __init__(self) -> None:
        self.writes: Counter[str] = Counter()
        self.replaced: list[str] = []
        self.deleted: list[str] = []
        self.outside_cleanup: list[str] = []
        self.in_cleanup = False

    @contextlib.contextmanager
    def cleanup(self) -> Iterator[None]:
        self.in_cleanup = True
        try:
            yield
        finally:
            self.in_cleanup = False


def counting(cls: type[Any], recorder: Recorder) -> type[Any]:
    """`cls` with its writes and deletes recorded (the backend's own behaviour is unchanged)."""

    class Counting(cls):  # type: ignore[misc,valid-type]
        within_file: set[str] = set()
        async def publish(self, name: str, data: bytes) -> None:
            await super().publish(name, data)
            if name not in self.within_file:  # S3's publish_file of a small file is one publish
                recorder.writes[name] += 1

        async def publish_file(self, name: str, path: str) -> None:
            self.within_file.add(name)
            try:
                await super().publish_file(name, path)
            finally:
                self.within_file.discard(name)
            recorder.writes[name] += 1

        async def replace(self, name: str, data: bytes) -> None:
            recorder.replaced.append(name)
            await super().replace(name, data)

        async def delete(self, name: str) -> None:
            recorder.deleted.append(name)
            if not recorder.in_cleanup:
                recorder.outside_cleanup.append(name)
            await super().delete(name)

    return Counting


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> tuple[str, Recorder, str | None]:
    """A repository URL whose storage records its requests: (url, recorder, S3 endpoint)."""
    recorder = Recorder()
    if request.param == "local":
        (tmp_path / "repo").mkdir(mode=0o700)
        url, endpoint, cls = str(tmp_path / "repo"), None, LocalStorage
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        request.getfixturevalue("aws_env")
        url, endpoint, cls = s3_url(server), server.endpoint, S3Storage
    wrapped = counting(cls, recorder)
    real_open = repository_module.open_storage

    def open_storage(target: str, **options: Any) -> Storage:  # noqa: ANN401
        plain = real_open(target, **options)
        if type(plain) is not cls:
            return plain
        if cls is LocalStorage:
            return wrapped(plain.root, object_lock=plain.object_lock)  # type: ignore[no-any-return]
        return wrapped(target, endpoint_url=endpoint, limits=options.get("limits", NO_LIMITS),  # type: ignore[no-any-return]
                       object_lock=plain.object_lock)

    monkeypatch.setattr(repository_module, "open_storage", open_storage)
    return url, recorder, endpoint


async def _archive(store: Store, url: str, cache: str, endpoint: str | None, commits: range,
                   snapshot_at: int | None) -> None:
    options = ArchiveOptions(interval=0.01, merge_count=3)
    async with archiving(store, url, options=options, cache_dir=cache, s3_endpoint=endpoint) as arc:
        for i in commits:
            await store.put(b"key%03d" % (i % 23), b"value%d" % i)
            if i % 3 == 0:
                await trio.sleep(0.03)  # let cycles run: small segments to merge, watermarks to publish
            if i == snapshot_at:
                await take_snapshot(arc, prepare=store.flush)


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


async def test_no_name_is_written_twice_and_only_cleanup_deletes(
        backend: tuple[str, Recorder, str | None], tmp_path: Path) -> None:
    url, recorder, endpoint = backend
    cache = str(tmp_path / "cache")
    data = str(tmp_path / "data")
    async with Store(data, clock=FakeClock()) as store:
        await _archive(store, url, cache, endpoint, range(0, 90), snapshot_at=60)
        await _archive(store, url, cache, endpoint, range(90, 120), snapshot_at=100)
        merged = [n for n in recorder.writes if n.startswith(layout.SEGMENTS)]
        marks = [n for n in recorder.writes if n.startswith(watermarks.PREFIX)]
        assert not recorder.deleted, f"deleted before any cleanup: {recorder.deleted}"
        async with open_repository(url, cache_dir=cache, s3_endpoint=endpoint) as repo:
            plan = await plan_cleanup(repo, keep_count=1, keep_days=0, now_ns=store.now())
            assert plan.delete_superseded, f"the premise: merges left inputs behind ({len(merged)} segments)"
            assert plan.delete_watermarks, f"the premise: more than 16 watermarks ({len(marks)})"
            with recorder.cleanup():
                done = await run_cleanup(repo, plan)
            assert done == plan.deleted_count
            expected = ({layout.snapshot_object(s.name) for s in plan.delete_snapshots}
                        | {layout.segment_object(s.name) for s in plan.delete_segments}
                        | {i.name for i in plan.delete_superseded} | {i.name for i in plan.delete_watermarks})
            assert set(recorder.deleted) == expected
            assert len(await repo.storage.list(watermarks.PREFIX)) == watermarks.KEEP_WATERMARKS
        await _archive(store, url, cache, endpoint, range(120, 150), snapshot_at=None)
    twice = {name: n for name, n in recorder.writes.items() if n > 1}
    assert not twice, f"written more than once: {twice}"
    assert not recorder.replaced, f"replaced: {recorder.replaced}"
    assert not recorder.outside_cleanup, f"deleted outside cleanup: {recorder.outside_cleanup}"
    async with open_repository(url, cache_dir=cache, s3_endpoint=endpoint) as repo:
        from pitr.verify import verify_repository

        report = await verify_repository(repo, mode="full")
        assert report.ok, report.findings
