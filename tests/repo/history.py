"""Building small archived histories for repository-level tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import trio

from pitr.archiver import ArchiveOptions
from pitr.archiving import archiving
from pitr.repo.repository import live_segments
from pitr.snapshots.take import take_snapshot
from pitr.store import Store


@dataclass
class History:
    data: str
    repo: str
    commits: list[tuple[int, int, dict[bytes, bytes]]]  # (lsn, ts, model after the commit)
    snapshot_lsns: list[int]


class FakeClock:
    """A clock one millisecond further on at every reading, from a fixed start."""

    def __init__(self, start: int = 1_700_000_000_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1_000_000
        return self.now


def build_history(root: str, *, commits: int = 300, keys: int = 40, snapshot_every: int = 100,
                  seed: int = 1, merge_count: int = 4) -> History:
    """A store with puts/deletes/batches, archived with snapshots every `snapshot_every` commits."""
    import random

    rng = random.Random(seed)
    data, repo = os.path.join(root, "data"), os.path.join(root, "repo")
    model: dict[bytes, bytes] = {}
    out: list[tuple[int, int, dict[bytes, bytes]]] = []
    snaps: list[int] = []

    async def main() -> None:
        async with Store(data, clock=FakeClock()) as store:
            async with archiving(store, repo, options=ArchiveOptions(interval=0.01, merge_count=merge_count)) as arc:
                for i in range(commits):
                    key = b"key%03d" % rng.randrange(keys)
                    roll = rng.random()
                    if roll < 0.2:
                        c = await store.delete(key)
                        model.pop(key, None)
                    elif roll < 0.3:
                        other = b"key%03d" % rng.randrange(keys)
                        async with store.batch() as b:
                            b.put(key, b"batch%d" % i)
                            b.delete(other)
                        model[key] = b"batch%d" % i
                        if other != key:
                            model.pop(other, None)
                        else:
                            model.pop(key, None)
                        assert b.commit is not None
                        c = b.commit
                    else:
                        c = await store.put(key, b"value%d" % i)
                        model[key] = b"value%d" % i
                    out.append((c.lsn, c.ts_ns, dict(model)))
                    if snapshot_every and (i + 1) % snapshot_every == 0:
                        snaps.append((await take_snapshot(arc, prepare=store.flush)).lsn)
                    if i % 37 == 0:
                        await trio.sleep(0.02)

    trio.run(main)
    return History(data, repo, out, snaps)


def files(repo: str, folder: str) -> Iterator[str]:
    """The files of `folder`; for "segments" only those holding the history (merge inputs, which stay in a
    write-once repository until `pitr cleanup`, are superseded and left out)."""
    path = os.path.join(repo, folder)
    names = [n for n in sorted(os.listdir(path)) if not n.startswith(".")]
    if folder == "segments":
        keep, _superseded = live_segments(names)
        names = [n for n in names if n in keep]
    for name in names:
        yield os.path.join(path, name)
