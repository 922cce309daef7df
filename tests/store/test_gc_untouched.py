"""The cyclic garbage collector is the process's: a store and its in-process archiver leave it as they
found it (enabled, same thresholds, nothing frozen); a program that wants shorter full collections
opts in with `pitr.gcpause.freeze_long_lived()` (docs/decisions.md, "The cyclic GC and the event
loop's stalls")."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from pitr.archiver import ArchiveOptions
from pitr.archiving import archiving
from pitr.datadir.state import StateDB
from pitr.gcpause import freeze_long_lived
from pitr.repo.repository import open_repository
from pitr.store import Store


def collector() -> tuple[bool, tuple[int, int, int], int, int]:
    return gc.isenabled(), gc.get_threshold(), gc.get_freeze_count(), gc.get_debug()


@pytest.mark.anyio
async def test_a_store_and_its_archiver_leave_the_collector_as_they_found_it(tmp_path: Path) -> None:
    before = collector()
    seen = []
    async with Store(str(tmp_path / "data")) as store:
        seen.append(("store open", collector()))
        async with open_repository(str(tmp_path / "repo"), create=True) as repo, \
                archiving(store, repo, options=ArchiveOptions(interval=0.01)) as archiver:
            for i in range(200):
                await store.put(b"key-%d" % i, b"value")
            await archiver.cycle()
            seen.append(("archiving", collector()))
        seen.append(("archiving ended", collector()))
    seen.append(("store closed", collector()))
    changed = [(when, state) for when, state in seen if state != before]
    assert not changed, f"the collector was {before} before and then {changed}"


def test_freeze_long_lived_takes_what_is_alive_out_of_every_later_collection() -> None:
    alive = [[n] for n in range(1000)]  # tracked containers that live on
    try:
        frozen = freeze_long_lived()
        assert frozen == gc.get_freeze_count() >= len(alive)
        walked = {id(o) for o in gc.get_objects()}  # what a full collection walks now
        assert not any(id(o) in walked for o in alive), "objects alive at the freeze are still collected"
        made_after = [0]
        assert any(o is made_after for o in gc.get_objects()), "objects made after the freeze must be collected"
        assert gc.isenabled()
    finally:
        gc.unfreeze()


class Survivors:
    """Counts the objects that survive a collection of the young generations (they move to older ones:
    what makes a full collection come sooner) while `watching`."""

    def __init__(self) -> None:
        self.most = 0
        self.collections = 0  # young collections while watching
        self._base = 0
        self.watching = False

    def __enter__(self) -> Survivors:
        gc.collect()
        self._base = len(gc.get_objects(1)) + len(gc.get_objects(2))
        self.watching = True
        gc.callbacks.append(self._seen)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._seen)

    def _seen(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and self.watching:
            self.collections += 1
            self.most = max(self.most, len(gc.get_objects(1)) + len(gc.get_objects(2)) - self._base)


@pytest.mark.parametrize("overwrite", [False, True])
def test_applying_puts_moves_no_object_per_key_into_the_old_generations(tmp_path: Path, overwrite: bool) -> None:
    """An apply of N keys (the store's apply task, every 0.2 s) must not leave per-key objects that the
    collector tracks alive across its young collections: N of them at once bring on a full collection,
    which holds the GIL, and so the writers' event loop, for tens of ms. Nor may it allocate one such
    object per key at all: every 700 bring on a young collection, and every young collection moves the
    commits in flight (their coroutines, trio's parking objects) into the older generations."""
    keys = 20_000
    state = StateDB(str(tmp_path / "state"))
    try:
        if overwrite:  # the old rows are read and their digest terms taken out
            state.apply({b"key-%06d" % i: b"old" for i in range(keys)}, 1, 1)
        changes = {b"key-%06d" % i: b"value-%d" % i for i in range(keys)}
        assert gc.isenabled()
        with Survivors() as survivors:
            state.apply(changes, 2, 2)
            survivors.watching = False
    finally:
        state.close()
    assert survivors.most < keys // 10, (
        f"{survivors.most:,} objects survived a young collection while {keys:,} keys were applied")
    if not overwrite:  # (the old rows' entries are tuples, one per key overwritten)
        assert survivors.collections <= 3, (
            f"{survivors.collections} collections while {keys:,} new keys were applied")


@pytest.mark.anyio
async def test_a_single_put_in_flight_is_nothing_the_collector_keeps_walking(tmp_path: Path) -> None:
    """The hot path queues a put's op as a plain tuple of bytes, which the collector untracks at its
    first young collection (a NamedTuple it tracks for as long as it lives): with 64 writers, the
    commits in flight at each young collection are what moves into the old generation."""
    async with Store(str(tmp_path / "data")) as store:
        group, lsn, _ts = store._sequence_put(b"key", b"value")
        queued = store._unacked[-1]
        gc.collect()
        gc.collect()  # a tuple is untracked once its items are: the op on one pass, its 1-tuple on the next
        assert not gc.is_tracked(queued), f"the queued commit {queued!r} is still tracked after two collections"
        await group.done.wait()
        assert (await store.get(b"key"), store.durable_lsn) == (b"value", lsn)
