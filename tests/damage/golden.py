"""The undamaged repository the damage matrix starts from, and the model of what it holds.

A store with 400 commits (puts, puts with TTLs that expire inside the
history, deletes, batches, one key with many versions) archived in eight
segments of 50 commits, with snapshots at LSN 150 and 300.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field

import trio

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiving import StoreSource
from pitr.repo.repository import open_repository
from pitr.snapshots.take import take_snapshot
from pitr.store import Store
from tests.repo.history import FakeClock  # one millisecond further on at every reading

COMMITS = 400
PER_SEGMENT = 50
SNAPSHOT_LSNS = (150, 300)
HOT_KEY = "hot"
SEED = 11
Entry = tuple[str, int | None]  # value, expiry (ns) or None


@dataclass
class Golden:
    """Where the pristine files are, and the model after every commit."""

    root: str
    repo: str  # the pristine repository (copied, never changed)
    data: str  # the pristine data directory
    ts: dict[int, int] = field(default_factory=dict)  # LSN -> commit time
    states: dict[int, dict[str, Entry]] = field(default_factory=dict)  # LSN -> keys after it

    def state_at(self, lsn: int, cutoff_ns: int) -> dict[str, str]:
        """The keys a restore through `lsn` holds, TTLs judged at `cutoff_ns`."""
        return {k: v for k, (v, exp) in self.states[lsn].items() if exp is None or exp > cutoff_ns}

    def segment_names(self) -> list[str]:
        return sorted(n for n in os.listdir(os.path.join(self.repo, "segments")) if n.endswith(".seg"))

    def snapshot_names(self) -> list[str]:
        return sorted(n for n in os.listdir(os.path.join(self.repo, "snapshots")) if n.endswith(".snap"))


async def _write_history(data: str, repo: str, golden: Golden) -> None:
    rng = random.Random(SEED)
    print(f"damage matrix history seed {SEED}")
    model: dict[str, Entry] = {}
    async with Store(data, clock=FakeClock()) as store:
        options = ArchiveOptions(interval=3600, merge_count=1000)
        # Archived by hand, with no background cycle: one racing the first commits could ship LSN 1
        # alone, and the segments would not be the eight of 50 commits every cell expects.
        async with open_repository(repo, create=True) as repository:
            arc = Archiver(StoreSource(store), [repository], options)
            await arc.start()
            golden.ts[0] = 0
            golden.states[0] = {}
            for i in range(1, COMMITS + 1):
                roll = rng.random()
                key = f"key{rng.randrange(30):03d}"
                if i % 3 == 0:
                    key, value = HOT_KEY, f"hot{i}"
                    commit = await store.put(key.encode(), value.encode())
                    model[key] = (value, None)
                elif roll < 0.25:
                    ttl = rng.choice([0.01, 0.05, 0.2, 3600.0])
                    key = f"ttl{rng.randrange(10):02d}"
                    commit = await store.put(key.encode(), f"t{i}".encode(), ttl=ttl)
                    model[key] = (f"t{i}", commit.ts_ns + int(ttl * 1_000_000_000))
                elif roll < 0.4:
                    commit = await store.delete(key.encode())
                    model.pop(key, None)
                elif roll < 0.5:
                    other = f"key{rng.randrange(30):03d}"
                    async with store.batch() as batch:
                        batch.put(key.encode(), f"b{i}".encode())
                        batch.delete(other.encode())
                    assert batch.commit is not None
                    commit = batch.commit
                    model[key] = (f"b{i}", None)
                    if other != key:
                        model.pop(other, None)
                    else:
                        model.pop(key, None)
                else:
                    commit = await store.put(key.encode(), f"v{i}".encode())
                    model[key] = (f"v{i}", None)
                assert commit.lsn == i
                golden.ts[i] = commit.ts_ns
                golden.states[i] = dict(model)
                if i % PER_SEGMENT == 0:
                    await store.flush()
                    await arc.cycle()
                if i in SNAPSHOT_LSNS:
                    entry = await take_snapshot(arc, prepare=store.flush)
                    assert entry.lsn == i
            await arc.cycle()


def build_golden(root: str, workdir: str) -> Golden:
    """Write the history into `workdir` (where every cell will run), then keep it aside under `root`.

    The store's archive markers name the repository by its path, so each cell
    puts its damaged copy back at the same path.
    """
    data, repo = os.path.join(workdir, "data"), os.path.join(workdir, "repo")
    golden = Golden(root, os.path.join(root, "repo"), os.path.join(root, "data"))
    trio.run(_write_history, data, repo, golden)
    shutil.move(repo, golden.repo)
    shutil.move(data, golden.data)
    return golden
