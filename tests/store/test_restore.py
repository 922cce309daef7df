"""Restore semantics (DESIGN.md): windows, inclusive and exclusive times, batches, TTL at the target,
the destination, and the restored store as a new history."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiving import StoreSource, archiving
from pitr.datadir.state import StateDB
from pitr.errors import DestinationExists, DiskFull, OutsideWindow, UnsafeDestination, Window
from pitr.repo.repository import Repository, open_repository
from pitr.restore import RestoreOptions, RestorePlan, RestoreResult, RestoreTarget, restore
from pitr.snapshots.take import take_snapshot
from pitr.store import Commit, Store
from tests.store.support import SECOND, START_NS, FakeClock, assert_contiguous_chain

pytestmark = pytest.mark.anyio

MANUAL = ArchiveOptions(interval=3600.0, watermark_interval=0.0)
QUIET = 20 * SECOND  # how long after the last commit the archiver confirms completeness
Entries = dict[bytes, tuple[bytes, int | None]]


@dataclass
class History:
    """A small archived history with a fake clock (see `make_history`)."""

    root: Path
    repo_dir: str
    data: str
    clock: FakeClock
    created_ns: int
    store_id: str
    commits: list[Commit] = field(default_factory=list)
    expires_ns: int = 0  # the TTL key's expiry
    watermark_ns: int = 0
    restores: int = 0

    def dest(self) -> str:
        self.restores += 1
        return str(self.root / f"restored-{self.restores}")

    def ts(self, lsn: int) -> int:
        return self.commits[lsn - 1].ts_ns


async def make_history(root: Path, *, snapshot_after: int | None = None) -> History:
    """LSN 1 put a; 2 batch {a=2, b, c}; 3 put session with ttl 5 s; 4 delete a; 5 put d.

    One second apart, starting a second after the store is created; the archive
    confirms completeness QUIET after the last commit.
    """
    clock = FakeClock(START_NS)
    data, repo_dir = str(root / "data"), str(root / "repo")
    async with open_repository(repo_dir, create=True) as repo, Store(data, clock=clock) as store:
        assert store.identity is not None
        history = History(root, repo_dir, data, clock, store.identity.created_ns, str(store.identity.store_id))
        async with archiving(store, repo, options=MANUAL) as archiver:
            steps = [
                lambda: store.put(b"a", b"1"),
                None,  # the batch
                lambda: store.put(b"session", b"s", ttl=5),
                lambda: store.delete(b"a"),
                lambda: store.put(b"d", b"1"),
            ]
            for lsn, step in enumerate(steps, start=1):
                clock.advance(SECOND)
                if step is None:
                    async with store.batch() as batch:
                        batch.put(b"a", b"2")
                        batch.put(b"b", b"1")
                        batch.put(b"c", b"1")
                    assert batch.commit is not None
                    history.commits.append(batch.commit)
                else:
                    history.commits.append(await step())
                assert history.commits[-1].lsn == lsn
                if lsn == snapshot_after:
                    await take_snapshot(archiver, prepare=store.flush)
            clock.advance(QUIET)
            await archiver.cycle()
    history.expires_ns = history.ts(3) + 5 * SECOND
    history.watermark_ns = clock.now - 1
    return history


def state_at(history: History, lsn: int, cutoff_ns: int) -> Entries:
    """The model: what the history holds after `lsn`, TTL judged at cutoff_ns."""
    state: Entries = {}
    if lsn >= 1:
        state[b"a"] = (b"1", None)
    if lsn >= 2:
        state.update({b"a": (b"2", None), b"b": (b"1", None), b"c": (b"1", None)})
    if lsn >= 3 and history.expires_ns > cutoff_ns:
        state[b"session"] = (b"s", history.expires_ns)
    if lsn >= 4:
        del state[b"a"]
    if lsn >= 5:
        state[b"d"] = (b"1", None)
    return state


def exists(path: str) -> bool:
    return os.path.exists(path)


def restored_entries(dest: str) -> Entries:
    state = StateDB(os.path.join(dest, "state"), readonly=True)
    try:
        return {k: (v, e) for k, v, e in state.iter_range(b"", None)}
    finally:
        state.close()


async def restore_to(history: History, target: RestoreTarget, **options: object) -> tuple[RestoreResult, str]:
    dest = history.dest()
    async with open_repository(history.repo_dir) as repo:
        result = await restore(repo, RestoreOptions(target=target, dest=dest, **options))  # type: ignore[arg-type]
    assert isinstance(result, RestoreResult)
    return result, dest


async def check(history: History, target: RestoreTarget, lsn: int, cutoff_ns: int) -> RestoreResult:
    result, dest = await restore_to(history, target)
    assert result.target_lsn == lsn, f"{target.describe()}: restored through LSN {result.target_lsn}"
    assert restored_entries(dest) == state_at(history, lsn, cutoff_ns), target.describe()
    return result


@pytest.fixture(params=["merged", "streamed", "spilled"])
def build_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way the restore engine builds the state: the base merged with the changes in memory,
    the base streamed past the changes, and the changes spilled into LMDB as the replay goes."""
    from pitr.restore import engine

    if request.param == "streamed":
        monkeypatch.setattr(engine, "MAX_MERGED", 0)
    elif request.param == "spilled":
        monkeypatch.setattr(engine, "MAX_CHANGES", 1)
    return str(request.param)


# -- the window -----------------------------------------------------------------------------------


async def test_targets_outside_the_window_are_refused_with_the_window(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    window = Window(min(history.created_ns, history.ts(1) - 1), history.watermark_ns, 0, 5)
    for target in (RestoreTarget(time_ns=window.start_ns - 1), RestoreTarget(time_ns=window.end_ns + 1),
                   RestoreTarget(time_ns=window.start_ns, exclusive=True), RestoreTarget(lsn=6)):
        dest = history.dest()
        async with open_repository(history.repo_dir) as repo:
            with pytest.raises(OutsideWindow, match="recoverable") as info:
                await restore(repo, RestoreOptions(target=target, dest=dest))
        assert info.value.windows == [window], target.describe()
        assert not exists(dest), "nothing is created when the target is refused"
    assert sorted(os.listdir(tmp_path)) == ["data", "repo"]
    # the edges themselves are inside
    await check(history, RestoreTarget(time_ns=window.start_ns), 0, window.start_ns)
    await check(history, RestoreTarget(time_ns=window.end_ns), 5, window.end_ns)
    await check(history, RestoreTarget(lsn=0), 0, window.start_ns)


async def test_time_targets_at_exact_commit_times(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    for lsn in range(1, 6):
        ts = history.ts(lsn)
        await check(history, RestoreTarget(time_ns=ts), lsn, ts)
        await check(history, RestoreTarget(time_ns=ts, exclusive=True), lsn - 1, ts - 1)
        await check(history, RestoreTarget(time_ns=ts - 1), lsn - 1, ts - 1)
        await check(history, RestoreTarget(time_ns=ts + 1, exclusive=True), lsn, ts)
        await check(history, RestoreTarget(lsn=lsn), lsn, ts)


async def test_a_batch_is_restored_entirely_or_not_at_all(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    ts = history.ts(2)
    _, before = await restore_to(history, RestoreTarget(time_ns=ts, exclusive=True))
    assert restored_entries(before) == {b"a": (b"1", None)}
    _, after = await restore_to(history, RestoreTarget(time_ns=ts))
    assert restored_entries(after) == {b"a": (b"2", None), b"b": (b"1", None), b"c": (b"1", None)}


@pytest.mark.parametrize("snapshot_after", [None, 3])
async def test_ttl_is_judged_at_the_target_time(tmp_path: Path, build_path: str, snapshot_after: int | None) -> None:
    history = await make_history(tmp_path, snapshot_after=snapshot_after)
    expires = history.expires_ns
    assert history.ts(5) < expires < history.watermark_ns, "the expiry falls in the quiet interval"
    session = (b"s", expires)
    for target, present in [
        (RestoreTarget(time_ns=expires - 1), True),
        (RestoreTarget(time_ns=expires), False),
        (RestoreTarget(time_ns=expires, exclusive=True), True),
        (RestoreTarget(time_ns=expires + 1, exclusive=True), False),
        (RestoreTarget(lsn=3), True),  # judged at LSN 3's commit time
        (RestoreTarget(lsn=5), True),
        (RestoreTarget(latest=True), False),  # judged where the archive is known complete
    ]:
        _, dest = await restore_to(history, target)
        entries = restored_entries(dest)
        assert (entries.get(b"session") == session) is present, target.describe()
        if not present:
            assert b"session" not in entries, "an expired key is dropped, not kept hidden"
    async with Store(dest, clock=FakeClock(expires - SECOND)) as restored:
        assert await restored.get(b"session") is None, "gone for good, whatever the reader's clock says"


async def test_the_quiet_interval_after_the_last_commit_restores_exactly(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    for at in (history.ts(5) + 1, history.expires_ns - 1, history.expires_ns, history.watermark_ns):
        await check(history, RestoreTarget(time_ns=at), 5, at)
    latest = await check(history, RestoreTarget(latest=True), 5, history.watermark_ns)
    assert latest.target_ts_ns == history.ts(5)


async def test_snapshot_base_gives_the_same_states(tmp_path: Path, build_path: str) -> None:
    history = await make_history(tmp_path, snapshot_after=3)
    for lsn in range(0, 6):
        ts = history.ts(lsn) if lsn else history.created_ns
        result = await check(history, RestoreTarget(lsn=lsn), lsn, ts)
        assert result.base_lsn == (3 if lsn >= 3 else 0)
        if lsn:
            result = await check(history, RestoreTarget(time_ns=ts, exclusive=True), lsn - 1, ts - 1)
            assert result.base_lsn == (3 if lsn - 1 >= 3 else 0)


async def test_every_kind_of_change_over_a_base(tmp_path: Path, build_path: str) -> None:
    """Over a snapshot holding plain and expiring keys, the log puts, deletes, adds keys before,
    between and after the base's, gives a key an expiry and takes one away: each way of building
    the state (merged in memory, streamed, spilled) restores exactly the model."""
    clock = FakeClock(START_NS)
    data, repo_dir = str(tmp_path / "data"), str(tmp_path / "repo")
    model: dict[bytes, tuple[bytes, int | None]] = {}
    async with open_repository(repo_dir, create=True) as repo, Store(data, clock=clock) as store:
        async with archiving(store, repo, options=MANUAL) as archiver:

            async def put(key: bytes, value: bytes, ttl: int | None = None) -> None:
                clock.advance(SECOND)
                commit = await store.put(key, value, ttl=ttl)
                model[key] = (value, None if ttl is None else commit.ts_ns + ttl * SECOND)

            async def delete(key: bytes) -> None:
                clock.advance(SECOND)
                await store.delete(key)
                model.pop(key, None)

            for key in (b"k2", b"k4", b"k6", b"k8"):
                await put(key, b"base")
            await put(b"t3", b"base", ttl=3600)
            await put(b"t5", b"base", ttl=3600)
            await put(b"t7", b"base", ttl=3600)
            await take_snapshot(archiver, prepare=store.flush)
            await put(b"k4", b"new")  # a plain key changes
            await delete(b"k6")  # a plain key goes
            await put(b"t3", b"plain now")  # an expiring key loses its expiry
            await delete(b"t5")  # an expiring key goes
            await put(b"k2", b"expiring now", ttl=3600)  # a plain key gets an expiry
            await put(b"a0", b"before the base")
            await put(b"k5", b"between")
            await put(b"z9", b"after the base")
            await put(b"n1", b"new and expiring", ttl=3600)
            await put(b"gone", b"x")
            await delete(b"gone")  # never in the base, put and deleted
            clock.advance(QUIET)
            await archiver.cycle()
    async with open_repository(repo_dir) as repo:
        dest = str(tmp_path / "restored")
        result = await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=dest))
    assert isinstance(result, RestoreResult)
    assert result.base_lsn > 0, "the restore started from the snapshot"
    assert restored_entries(dest) == model


async def test_dry_run_plans_and_creates_nothing(tmp_path: Path) -> None:
    history = await make_history(tmp_path, snapshot_after=3)
    dest = history.dest()
    async with open_repository(history.repo_dir) as repo:
        plan = await restore(repo, RestoreOptions(target=RestoreTarget(time_ns=history.ts(4)), dest=dest,
                                                  dry_run=True))
    assert isinstance(plan, RestorePlan)
    assert (plan.base.lsn, plan.target_lsn, plan.commits_to_replay) == (3, 4, 1)
    assert not exists(dest)


# -- the destination --------------------------------------------------------------------------------


async def test_non_empty_destination_needs_force(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "precious.txt").write_text("keep me")
    before = sorted(os.listdir(tmp_path))
    async with open_repository(history.repo_dir) as repo:
        with pytest.raises(DestinationExists, match="force"):
            await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest)))
        assert (dest / "precious.txt").read_text() == "keep me"
        assert sorted(os.listdir(tmp_path)) == before, "nothing is created on refusal"
        file_dest = tmp_path / "a-file"
        file_dest.write_text("x")
        with pytest.raises(DestinationExists):
            await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=str(file_dest),
                                               force=True))
        with pytest.raises(UnsafeDestination, match="not a pitr store") as refused:
            await restore(repo, RestoreOptions(target=RestoreTarget(lsn=2), dest=str(dest), force=True))
        assert "1 file, 7 B" in str(refused.value), "the refusal says what the directory holds"
        assert refused.value.hint is not None
        assert "--replace-foreign" in refused.value.hint
        assert (dest / "precious.txt").read_text() == "keep me", "--force alone never replaces a foreign directory"
        result = await restore(repo, RestoreOptions(target=RestoreTarget(lsn=2), dest=str(dest), force=True,
                                                    replace_foreign=True))
        assert isinstance(result, RestoreResult)
        assert result.replaced is not None
        assert (result.replaced.kind, result.replaced.files) == ("directory", 1)
        assert sorted(os.listdir(dest)) == ["state", "wal"]
        empty = tmp_path / "empty"
        empty.mkdir()
        await restore(repo, RestoreOptions(target=RestoreTarget(lsn=2), dest=str(empty)))
    assert restored_entries(str(dest)) == restored_entries(str(empty)) == state_at(history, 2, history.ts(2))
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "a-file", "empty"]), "no leftovers beside dest"


async def test_a_failed_restore_leaves_nothing_that_looks_finished(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    history = await make_history(tmp_path)
    before = sorted(os.listdir(tmp_path))

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sys.modules["pitr.restore.restore"], "build_state", broken)
    async with open_repository(history.repo_dir) as repo:
        with pytest.raises(DiskFull, match="No space"):
            await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=str(tmp_path / "out")))
    assert sorted(os.listdir(tmp_path)) == before


async def test_a_build_failing_midway_stops_its_reader_threads(tmp_path: Path, build_path: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """LMDB failing while the base is written (a full disk): the error reaches the caller, and the
    threads reading the snapshot and the log ahead are gone with it, not left reading."""
    from pitr.datadir.state import StateDB as State

    history = await make_history(tmp_path, snapshot_after=3)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(State, "append_sorted", full)
    monkeypatch.setattr(State, "append_rows", full)
    monkeypatch.setattr(State, "apply", full)
    async with open_repository(history.repo_dir) as repo:
        with pytest.raises(DiskFull, match="No space"):
            await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=str(tmp_path / "out")))
    assert [t for t in threading.enumerate() if t.name == "pitr-prefetch"] == []
    assert not (tmp_path / "out").exists()  # noqa: ASYNC240 - a test assertion, no loop to block


# -- the restored store ---------------------------------------------------------------------------


async def test_restored_store_is_a_new_history_continuing_after_the_target(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    result, dest = await restore_to(history, RestoreTarget(lsn=3))
    async with Store(dest, clock=FakeClock(history.ts(3))) as restored:
        assert restored.identity is not None
        assert str(restored.identity.store_id) == str(result.store_id) != history.store_id
        assert restored.identity.first_lsn == 4
        assert restored.identity.parent is not None
        assert restored.identity.parent["store_id"] == history.store_id
        assert restored.identity.parent["lsn"] == 3
        assert restored.last_lsn == 3
        commit = await restored.put(b"e", b"1")
        assert commit.lsn == 4
        assert commit.ts_ns > history.ts(3), "commit times continue after the target"
        assert await restored.get(b"b") == b"1"


async def test_restoring_a_restored_stores_archive_keeps_what_it_started_from(tmp_path: Path) -> None:
    """A restored store's history starts from a non-empty state (the target). Its own archive must
    restore that state plus what followed, or refuse; never the later commits alone."""
    history = await make_history(tmp_path)
    _, dest = await restore_to(history, RestoreTarget(lsn=3))
    clock = FakeClock(history.watermark_ns + SECOND)
    async with open_repository(str(tmp_path / "repo2"), create=True) as repo2, \
            Store(dest, clock=clock) as restored:
        assert restored.identity is not None
        async with archiving(restored, repo2, options=MANUAL):
            await restored.put(b"e", b"1")
        assert_contiguous_chain(repo2, restored.identity.start_chain_digest, first_lsn=4)
        expected = sorted([*((k, v) for k, (v, _e) in state_at(history, 3, clock.now).items()), (b"e", b"1")])
        assert await restored.scan() == expected
        final = str(tmp_path / "second-generation")
        # archiving a restored store starts its archive with a base snapshot of the restored state,
        # so the archive restores it: a refusal here is the bug (the base was never taken)
        result = await restore(repo2, RestoreOptions(target=RestoreTarget(latest=True), dest=final))
        assert isinstance(result, RestoreResult)
        assert result.base_lsn == 3, "restored from the base snapshot of the restored state"
    async with Store(final, clock=clock) as second:
        assert await second.scan() == expected, "the restored state lost the data it started from"


# -- completeness promises ------------------------------------------------------------------------


async def test_a_clock_stepping_back_does_not_break_the_archives_completeness_promise(tmp_path: Path) -> None:
    """Store.promise_complete: "no later commit can have a commit time at or before the returned
    time". The archive publishes it as the watermark; a restore to a time in the quiet interval
    must give the same answer later, and stay possible."""
    clock = FakeClock()
    async with open_repository(str(tmp_path / "repo"), create=True) as repo, \
            Store(str(tmp_path / "data"), clock=clock) as store:
        archiver = Archiver(StoreSource(store), [repo], MANUAL, clock=clock)
        await archiver.start()
        first = await store.put(b"k", b"1")
        clock.advance(10 * SECOND)
        await archiver.cycle()
        promised = repo.watermark()
        assert promised == (1, clock.now - 1)
        clock.advance(-8 * SECOND)  # NTP steps the wall clock back
        second = await store.put(b"k", b"2")
        assert second.ts_ns > promised[1], \
            f"commit at {second.ts_ns} falls in the interval the archive called complete (<= {promised[1]})"
        await archiver.cycle()
        mid_quiet = first.ts_ns + 5 * SECOND
        result, dest = await _restore(repo, RestoreTarget(time_ns=mid_quiet), tmp_path / "r")
        assert result.target_lsn == 1, "a restore into the confirmed quiet interval changed its answer"


async def _restore(repo: Repository, target: RestoreTarget, dest: Path) -> tuple[RestoreResult, str]:
    result = await restore(repo, RestoreOptions(target=target, dest=str(dest)))
    assert isinstance(result, RestoreResult)
    return result, str(dest)
