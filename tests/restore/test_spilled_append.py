"""A restore without a base whose changes pass the memory limit spills them into LMDB as it goes: the
first spill appends the map to the empty state in key order (`sorted_rows`, `append_rows`), reads
it back against the map and hashes it, which starts the running digest the later spills move.
The state and its digest must be those of the same restore built in memory in one piece."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from pitr.archiving import archiving
from pitr.datadir.state import StateDB
from pitr.errors import CorruptData
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreResult, RestoreTarget, restore
from pitr.store import Store
from tests.store.support import SECOND, START_NS, FakeClock
from tests.store.test_restore import MANUAL, QUIET

pytestmark = pytest.mark.anyio
Rows = dict[bytes, tuple[bytes, int | None]]


async def make_segments(root: Path, seed: int) -> str:
    """Six archive cycles (six segments) of puts, deletes and puts with a TTL over 40 keys; some keys
    of the first segment are changed or deleted in later ones, some TTLs run out before the end."""
    rng = random.Random(seed)
    print(f"seed {seed}")
    clock = FakeClock(START_NS)
    repo_dir = str(root / "repo")
    async with open_repository(repo_dir, create=True) as repo, Store(str(root / "data"), clock=clock) as store:
        async with archiving(store, repo, options=MANUAL) as archiver:
            for _cycle in range(6):
                for _ in range(rng.randrange(5, 25)):
                    clock.advance(SECOND)
                    key = f"k{rng.randrange(40):02}".encode()
                    what = rng.random()
                    if what < 0.2:
                        await store.delete(key)
                    elif what < 0.4:
                        await store.put(key, os.urandom(rng.randrange(1, 30)), ttl=rng.choice([1, 2, 3, 60, 600]))
                    else:
                        await store.put(key, os.urandom(rng.randrange(0, 30)))
                await archiver.cycle()
            clock.advance(QUIET)
            await archiver.cycle()
    return repo_dir


async def restored(repo_dir: str, dest: str) -> tuple[RestoreResult, Rows]:
    async with open_repository(repo_dir) as repo:
        result = await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=dest))
    assert isinstance(result, RestoreResult)
    state = StateDB(os.path.join(dest, "state"), readonly=True)
    try:
        assert state.state_digest(None)[0] == result.state_digest
        return result, {k: (v, e) for k, v, e in state.iter_range(b"", None)}
    finally:
        state.close()


@pytest.mark.parametrize("seed", [11, 12])
async def test_a_spilled_build_equals_the_one_built_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              seed: int) -> None:
    from pitr.restore import engine

    repo_dir = await make_segments(tmp_path, seed)
    whole, rows = await restored(repo_dir, str(tmp_path / "merged"))
    appended: list[int] = []
    real_append = StateDB.append_rows

    def counting(self: StateDB, *args: object, **kwargs: object) -> None:
        appended.append(1)
        real_append(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "MAX_CHANGES", 1)  # a spill after every run of blocks: one per segment
    monkeypatch.setattr(StateDB, "append_rows", counting)
    spilled, spilled_rows = await restored(repo_dir, str(tmp_path / "spilled"))
    assert appended == [1], "the first spill is appended, the later ones applied"
    assert spilled_rows == rows
    assert (spilled.state_digest, spilled.keys, spilled.expired_dropped) == (whole.state_digest, whole.keys,
                                                                              whole.expired_dropped)


async def test_a_first_spill_that_reads_back_wrong_publishes_nothing(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pitr.restore import engine

    repo_dir = await make_segments(tmp_path, 7)
    real_sorted = engine.sorted_rows

    def garbling(merged: dict[bytes, object], cutoff_ns: int | None) -> object:
        built = real_sorted(merged, cutoff_ns)  # type: ignore[arg-type]
        key, value = built.changes[0], b"other"
        built.changes[0] = value if isinstance(key, bytes) else (value, key[1])
        return built

    monkeypatch.setattr(engine, "MAX_CHANGES", 1)
    monkeypatch.setattr(engine, "sorted_rows", garbling)
    dest = tmp_path / "out"
    with pytest.raises(CorruptData, match=r"restore receipt: the built state: its row 0 .* reads back other"):
        await restored(repo_dir, str(dest))
    assert not dest.exists()
