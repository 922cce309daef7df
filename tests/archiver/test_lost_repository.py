"""A repository knows its history: an archiver never publishes into one that lost it (issue #11, item 2).

The repository deleted, its identity removed or replaced, its newest file gone under a running
archiver, or earlier history missing when an archiver starts: each is `RepositoryLost`, and
nothing more is published there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiving import StoreSource, archiving
from pitr.errors import NotARepository, RepositoryLost
from pitr.repo import layout
from pitr.repo.repository import open_repository
from pitr.snapshots.take import take_snapshot
from pitr.store import Store, StoreOptions
from tests.store.support import FakeClock

pytestmark = pytest.mark.anyio

MANUAL = ArchiveOptions(interval=3600.0, merge_count=1000)


async def put_some(store: Store, clock: FakeClock, count: int, prefix: str = "k") -> None:
    for n in range(count):
        clock.advance(1000)
        await store.put(f"{prefix}-{n}".encode(), b"v")


def files_under(path: Path) -> list[str]:
    """Every file a repository directory holds (its catalog and work directory aside)."""
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")
                  if p.is_file() and not str(p.relative_to(path)).startswith((".catalog", ".work")))


async def test_a_deleted_repository_gets_nothing_more_published(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    clock = FakeClock()
    async with open_repository(str(repo_dir), create=True) as repo, \
            Store(str(tmp_path / "data"), clock=clock) as store:
        archiver = Archiver(StoreSource(store), [repo], MANUAL, clock=clock)
        await archiver.start()
        await put_some(store, clock, 3)
        assert await archiver.cycle() == 3
        shutil.rmtree(repo_dir)
        await put_some(store, clock, 2, "after")
        with pytest.raises(RepositoryLost) as info:
            await archiver.cycle()
        assert str(repo_dir) in str(info.value)
        assert layout.IDENTITY in str(info.value)
        assert info.value.hint is not None
        assert "new, empty repository" in info.value.hint
        assert files_under(repo_dir) == [], "nothing was published into the emptied place"


async def test_a_replaced_identity_or_a_vanished_newest_segment_stops_the_archiver(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Store(str(tmp_path / "data"), clock=clock) as store:
        for damage in ("identity", "segment"):
            repo_dir = tmp_path / f"repo-{damage}"
            async with open_repository(str(repo_dir), create=True) as repo:
                archiver = Archiver(StoreSource(store), [repo], MANUAL, clock=clock)
                await archiver.start()
                await put_some(store, clock, 2, damage)
                await archiver.cycle()
                before = files_under(repo_dir)
                if damage == "identity":
                    path = repo_dir / layout.IDENTITY
                    path.write_bytes(path.read_bytes().replace(b'"name": "', b'"name": "x'))
                else:
                    newest = max((repo_dir / "segments").iterdir())
                    newest.unlink()
                    before.remove(str(newest.relative_to(repo_dir)))
                await put_some(store, clock, 2, damage + "-after")
                with pytest.raises(RepositoryLost, match="changed" if damage == "identity" else "is gone"):
                    await archiver.cycle()
                assert files_under(repo_dir) == before


async def test_an_archiver_refuses_a_repository_missing_earlier_history(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    clock = FakeClock()
    async with Store(str(tmp_path / "data"), clock=clock) as store:
        async with open_repository(str(repo_dir), create=True) as repo:
            archiver = Archiver(StoreSource(store), [repo], MANUAL, clock=clock)
            await archiver.start()
            for _ in range(3):
                await put_some(store, clock, 2)
                await archiver.cycle()
        names = sorted(os.listdir(repo_dir / "segments"))
        assert len(names) == 3
        os.unlink(repo_dir / "segments" / names[1])  # LSNs 3..4
        await put_some(store, clock, 2, "later")
        async with open_repository(str(repo_dir)) as repo:
            with pytest.raises(RepositoryLost, match=r"LSNs 3\.\.4 are missing"):
                await Archiver(StoreSource(store), [repo], MANUAL, clock=clock).start()
        shutil.rmtree(repo_dir / ".catalog")  # the same from the files alone
        async with open_repository(str(repo_dir)) as repo:
            with pytest.raises(RepositoryLost, match=r"LSNs 3\.\.4 are missing"):
                await Archiver(StoreSource(store), [repo], MANUAL, clock=clock).start()
        assert sorted(os.listdir(repo_dir / "segments")) == [names[0], names[2]]


async def test_history_before_a_snapshot_may_be_gone(tmp_path: Path) -> None:
    """Retention removes segments older than the oldest kept snapshot: that history is still whole."""
    repo_dir = tmp_path / "repo"
    clock = FakeClock()
    async with Store(str(tmp_path / "data"), clock=clock) as store:
        async with open_repository(str(repo_dir), create=True) as repo:
            archiver = Archiver(StoreSource(store), [repo], MANUAL, clock=clock)
            await archiver.start()
            await put_some(store, clock, 2)
            await archiver.cycle()
            await put_some(store, clock, 2, "b")
            await take_snapshot(archiver, prepare=store.flush)
            await put_some(store, clock, 2, "c")
            await archiver.cycle()
        first = min(os.listdir(repo_dir / "segments"))
        os.unlink(repo_dir / "segments" / first)  # LSNs 1..2, before the snapshot at LSN 4
        async with open_repository(str(repo_dir)) as repo:
            archiver = Archiver(StoreSource(store), [repo], MANUAL, clock=clock)
            await archiver.start()
            await put_some(store, clock, 1, "d")
            assert await archiver.cycle() == 1


async def test_a_store_never_restarts_a_history_in_a_repository_it_archived_into(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    clock = FakeClock()
    async with Store(str(tmp_path / "data"), clock=clock) as store:
        async with open_repository(str(repo_dir), create=True) as repo:
            async with archiving(store, repo, options=MANUAL):
                await put_some(store, clock, 3)
        shutil.rmtree(repo_dir)
        await put_some(store, clock, 1, "later")
        async with open_repository(str(repo_dir), create=True) as repo:
            with pytest.raises(RepositoryLost, match="archived into this repository before"):
                async with archiving(store, repo, options=MANUAL):
                    pass
        assert files_under(repo_dir) == [], "no new identity, no segments"
        # files left without their identity are refused too, marker or not
        async with open_repository(str(tmp_path / "other"), create=True) as repo:
            async with archiving(store, repo, options=MANUAL):
                pass
        os.unlink(tmp_path / "other" / layout.IDENTITY)
        for name in os.listdir(store.wal_directory.path):
            if name.startswith("archived-"):
                os.unlink(os.path.join(store.wal_directory.path, name))
        async with open_repository(str(tmp_path / "other")) as repo:
            with pytest.raises(RepositoryLost, match="no pitr-repository document"):
                async with archiving(store, repo, options=MANUAL):
                    pass
            with pytest.raises(NotARepository):
                await repo.require_identity()


async def delete_the_repository_while_writing(store: Store, repo_dir: Path) -> None:
    async with archiving(store, str(repo_dir), options=ArchiveOptions(interval=0.05)):
        await store.put(b"a", b"1")
        await anyio.sleep(0.3)
        shutil.rmtree(repo_dir)
        for n in range(1000):  # the application keeps writing until archiving ends
            await store.put(b"b-%d" % n, b"2")
            await anyio.sleep(0.01)


async def test_the_in_process_archiver_raises_repository_lost_from_the_block(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    with anyio.fail_after(60):
        async with Store(str(tmp_path / "data")) as store:
            with pytest.raises(RepositoryLost) as info:
                await delete_the_repository_while_writing(store, repo_dir)
            assert str(repo_dir) in str(info.value)
            assert (await store.put(b"c", b"3")).lsn > 2, "the store itself goes on"
    assert files_under(repo_dir) == []


def test_archive_follow_exits_non_zero_naming_the_repository_when_it_is_deleted(tmp_path: Path) -> None:
    env = {**os.environ, "PITR_DATA": str(tmp_path / "data"), "PITR_REPO": str(tmp_path / "repo")}

    def pitr(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pitr.cli.main", *argv], env=env, capture_output=True,
                              text=True, timeout=120)

    assert pitr("put", "k1", "v").returncode == 0
    assert pitr("archive").returncode == 0
    follower = subprocess.Popen([sys.executable, "-m", "pitr.cli.main", "archive", "--follow", "--interval",
                                 "0.1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        marks = tmp_path / "repo" / "watermarks"
        first_seen = set(marks.iterdir())
        deadline = time.monotonic() + 60
        while set(marks.iterdir()) == first_seen:  # the follower is running once it publishes a new one
            assert time.monotonic() < deadline, "the follower never published a watermark"
            assert follower.poll() is None, follower.communicate()
            time.sleep(0.05)
        shutil.rmtree(tmp_path / "repo")
        assert pitr("put", "k2", "v").returncode == 0
        _out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 1, err
    assert str(tmp_path / "repo") in err
    assert "Traceback" not in err
    assert files_under(tmp_path / "repo") == []
    # and a later one-shot archive refuses too, instead of starting over with the newest commits
    again = pitr("archive")
    assert again.returncode == 1, again.stderr
    assert "archived into this repository before" in again.stderr
    verify = pitr("verify")
    assert verify.returncode != 0


async def test_a_new_repository_starts_with_a_base_when_the_wal_no_longer_reaches_back(tmp_path: Path) -> None:
    """The way out of RepositoryLost: a new, empty repository, whose history starts with a snapshot."""
    from pitr.restore import RestoreOptions, RestoreTarget, restore
    from pitr.verify import verify_repository

    clock = FakeClock()
    async with Store(str(tmp_path / "data"), StoreOptions(wal_file_size=4096), clock=clock) as store:
        async with open_repository(str(tmp_path / "lost"), create=True) as repo:
            async with archiving(store, repo, options=MANUAL):
                await put_some(store, clock, 300)
            await store.flush()
            await put_some(store, clock, 5, "more")
            async with archiving(store, repo, options=MANUAL):
                pass
            await store.flush()
        first_wal = store.wal_directory.files()[0][0]
        assert first_wal > 1, "the WAL no longer holds the start of the history"
        shutil.rmtree(tmp_path / "lost")
        async with open_repository(str(tmp_path / "new"), create=True) as repo:
            async with archiving(store, repo, options=MANUAL):
                await put_some(store, clock, 3, "after")
            snaps = repo.catalog.snapshots()
            assert len(snaps) == 1
            assert snaps[0].metadata["reason"].startswith("base of a new repository")
            report = await verify_repository(repo)
            assert report.ok, report.findings
            live = dict(await store.scan())
            dest = str(tmp_path / "restored")
            await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=dest))
        async with Store(dest) as restored:
            assert dict(await restored.scan()) == live


async def test_a_snapshot_already_published_at_that_lsn_is_kept_only_if_it_agrees(tmp_path: Path) -> None:
    from pitr.errors import CorruptData

    clock = FakeClock()
    async with Store(str(tmp_path / "data"), clock=clock) as store, \
            open_repository(str(tmp_path / "repo"), create=True) as repo:
        archiver = Archiver(StoreSource(store), [repo], MANUAL, clock=clock)
        await archiver.start()
        await put_some(store, clock, 3)
        first = await take_snapshot(archiver, prepare=store.flush)
        again = await take_snapshot(archiver, prepare=store.flush)  # same LSN, same name: the first stays
        assert again.name == first.name
        assert [s.name for s in repo.catalog.snapshots()] == [first.name]
        path = tmp_path / "repo" / layout.snapshot_object(first.name)
        raw = bytearray(path.read_bytes())
        raw[-5] ^= 0xFF  # the footer: its digest no longer matches
        path.write_bytes(bytes(raw))
        with pytest.raises(CorruptData) as info:
            await take_snapshot(archiver, prepare=store.flush)
        assert first.name in str(info.value)
