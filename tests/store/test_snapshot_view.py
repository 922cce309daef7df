"""Taking a snapshot reads the state in one worker call: no LMDB read view stays open while the
log is shipped or the file uploads, so no pages stay pinned during the uploads. The file's header
then carries the chain digest at its LSN, known only after the ship."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pitr.archiver import ArchiveOptions
from pitr.archiving import archiving
from pitr.datadir.state import StateDB, StateView
from pitr.repo import layout
from pitr.repo.repository import open_repository
from pitr.snapshots.take import take_snapshot
from pitr.storage.local import LocalStorage
from pitr.store import Store
from segments import SnapshotReader
from tests.store.support import SECOND, START_NS, FakeClock

pytestmark = pytest.mark.anyio


async def test_no_read_view_is_open_while_the_log_ships_or_the_snapshot_uploads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(START_NS)
    repo_dir = str(tmp_path / "repo")
    async with open_repository(repo_dir, create=True) as repo, Store(str(tmp_path / "data"), clock=clock) as store:
        async with archiving(store, repo, options=ArchiveOptions(interval=3600.0)) as archiver:
            for i in range(50):
                clock.advance(SECOND)
                await store.put(b"key%03d" % i, b"value %d" % i)
            state = archiver.source.state
            open_at: dict[str, int] = {}
            ship_through, publish_file = archiver.ship_through, LocalStorage.publish_file

            async def shipping(lsn: int) -> None:
                open_at["ship"] = state.views_open
                await ship_through(lsn)

            async def publishing(self: LocalStorage, name: str, path: str) -> None:
                open_at["publish"] = state.views_open
                await publish_file(self, name, path)

            views: list[tuple[int, int]] = []  # (thread opening, thread closing) of each view
            read_view = StateDB.read_view

            @contextmanager
            def tracked(self: StateDB) -> Iterator[StateView]:
                opened = threading.get_ident()
                with read_view(self) as view:
                    yield view
                views.append((opened, threading.get_ident()))

            monkeypatch.setattr(archiver, "ship_through", shipping)
            monkeypatch.setattr(LocalStorage, "publish_file", publishing)
            monkeypatch.setattr(StateDB, "read_view", tracked)
            entry = await take_snapshot(archiver, prepare=store.flush)
    assert open_at == {"ship": 0, "publish": 0}, "a read view was held across the ship or the upload"
    assert views, "the snapshot read no view"
    assert all(opened == closed != threading.get_ident() for opened, closed in views), \
        f"each view is opened and closed by one worker thread: {views}"
    assert (entry.lsn, entry.entry_count) == (50, 50)
    with SnapshotReader.open(str(Path(repo_dir) / layout.snapshot_object(entry.name))) as reader:
        reader.verify()  # the file digest covers the header as patched
        assert reader.header.chain_digest == entry.chain_digest != bytes(32)
        assert reader.header.lsn == 50
