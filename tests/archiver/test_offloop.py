"""Nothing an archive cycle does blocks the event loop (issue #12, Deliver 3).

Every call that reads or writes a file or an LMDB environment on the
archiver's path (catalog rows, archive markers, the WAL, the store's state,
sealing, the upload's staging file, the local backend's file calls) is
wrapped so that running it on the event-loop thread is recorded; the archiver
then starts, ships several segments, merges them and publishes its watermark.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pitr.archiver.publish
import pitr.archiver.sealing
from pitr.archiver import ArchiveOptions, Archiver, DirectorySource
from pitr.archiving import StoreSource
from pitr.catalog.catalog import Catalog
from pitr.datadir.markers import ArchiveMarkers
from pitr.datadir.state import StateDB
from pitr.datadir.wal import WalDirectory
from pitr.repo.repository import open_repository
from pitr.storage.local import LocalStorage
from pitr.store import Store

pytestmark = pytest.mark.anyio

OPTIONS = ArchiveOptions(interval=3600.0, max_segment_commits=10, merge_count=2, merge_small_bytes=1 << 30,
                         merge_max_bytes=1 << 30, watermark_interval=0.0)


class LoopWatch:
    """Records which wrapped calls ran on the event-loop thread while `armed`, and which ran at all."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop_thread = threading.get_ident()
        self.armed = False
        self.on_loop: list[str] = []
        self.called: set[str] = set()
        self._monkeypatch = monkeypatch

    def wrap(self, owner: Any, name: str) -> None:
        real: Callable[..., Any] = getattr(owner, name)
        label = f"{getattr(owner, '__name__', owner)}.{name}"

        @functools.wraps(real)
        def watched(*args: Any, **kwargs: Any) -> Any:
            if self.armed:
                self.called.add(label)
                if threading.get_ident() == self.loop_thread:
                    self.on_loop.append(label)
            return real(*args, **kwargs)

        self._monkeypatch.setattr(owner, name, watched)

    def wrap_all(self) -> None:
        for cls in (Catalog, StateDB):
            for name, _member in inspect.getmembers(cls, inspect.isfunction):
                if not name.startswith("__") and name != "close":
                    self.wrap(cls, name)
        for name in ("files", "read_after", "recover", "remove_through"):
            self.wrap(WalDirectory, name)
        for name in ("mark", "archived_lsns", "promised_complete_ns"):
            self.wrap(ArchiveMarkers, name)
        for name in ("_publish_sync", "_read_sync", "_list_sync"):
            self.wrap(LocalStorage, name)
        self.wrap(pitr.archiver.sealing, "seal_segment")
        self.wrap(pitr.archiver.publish, "_stage_upload")
        self.wrap(pitr.archiver.publish, "remove_scratch")


async def put_rounds(store: Store, rounds: int, per_round: int) -> None:
    for r in range(rounds):
        for n in range(per_round):
            await store.put(b"k-%d-%d" % (r, n), b"value")


EXPECTED = {"Catalog.add_segment_indexed", "Catalog.segments", "Catalog.set_meta", "WalDirectory.read_after",
            "ArchiveMarkers.mark", "ArchiveMarkers.archived_lsns", "pitr.archiver.sealing.seal_segment",
            "pitr.archiver.publish._stage_upload", "LocalStorage._publish_sync"}


async def test_an_in_process_archiver_never_blocks_the_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pitr.archiver.publish, "UPLOAD_VIA_FILE", 0)  # every upload staged in a file
    watch = LoopWatch(monkeypatch)
    watch.wrap_all()
    async with open_repository(str(tmp_path / "repo"), create=True) as repo, \
            Store(str(tmp_path / "data")) as store:
        archiver = Archiver(StoreSource(store), [repo], OPTIONS)
        watch.armed = True
        await archiver.start()
        watch.armed = False
        for _ in range(3):
            await put_rounds(store, 1, 25)
            watch.armed = True
            shipped = await archiver.cycle()
            watch.armed = False
            assert shipped == 25
        segments = repo.catalog.segments()
    assert watch.on_loop == []
    assert watch.called >= EXPECTED, EXPECTED - watch.called
    assert len(segments) < 8, "merges ran (8 segments of at most 10 commits were published)"
    assert (segments[0].first_lsn, segments[-1].last_lsn) == (1, 75)


async def test_a_sidecar_archiver_never_blocks_the_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    async with Store(str(data)) as store:
        await put_rounds(store, 1, 45)
    monkeypatch.setattr(pitr.archiver.publish, "UPLOAD_VIA_FILE", 0)
    watch = LoopWatch(monkeypatch)
    watch.wrap_all()
    source = DirectorySource(str(data))
    try:
        async with open_repository(str(tmp_path / "repo"), create=True) as repo:
            archiver = Archiver(source, [repo], OPTIONS)
            watch.armed = True
            await archiver.start()
            shipped = await archiver.cycle()
            watch.armed = False
            segments = repo.catalog.segments()
    finally:
        source.close()
    assert watch.on_loop == []
    assert watch.called >= EXPECTED | {"StateDB.checkpoint"}, EXPECTED - watch.called
    assert shipped == 45
    assert (segments[0].first_lsn, segments[-1].last_lsn) == (1, 45)
