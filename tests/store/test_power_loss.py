"""Power cuts: rebuild the WAL as a disk could hold it at a cut, and reopen.

A writer runs with a tracing `WalFileOps`: every create, write, preallocation,
fsync and directory fsync of its WAL is recorded, and so is every commit it
acknowledged. For many cut points the WAL directory is rebuilt as a disk could
hold it then: bytes covered by an fsync are kept; every 512-byte sector (or
4 KiB page) that unsynced writes touched holds either its new or its old
contents, chosen independently, in any order; a file whose creation was not
yet made durable by a directory fsync may be missing. The store must open,
hold every acknowledged commit, and equal the fold of the history at the LSN
it recovered.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from pitr.store import Store, StoreOptions
from segments.record import DELETE, PUT, Op
from segments.wal import WalFileOps

pytestmark = pytest.mark.anyio
CUTS = 60


class TracingOps(WalFileOps):
    """The WAL writer's system calls, performed and recorded in order."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []
        self.paths: dict[int, str] = {}

    def open_new(self, path: str) -> int:
        fd = super().open_new(path)
        self.paths[fd] = path
        self.events.append(("create", path))
        return fd

    def open_existing(self, path: str) -> int:
        fd = super().open_existing(path)
        self.paths[fd] = path
        self.events.append(("existing", path, Path(path).read_bytes()))
        return fd

    def pwrite(self, fd: int, buffers: Sequence[bytes], offset: int) -> int:
        written = super().pwrite(fd, buffers, offset)
        self.events.append(("write", self.paths[fd], offset, b"".join(buffers)[:written]))
        return written

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        super().fallocate(fd, offset, length)
        self.events.append(("extend", self.paths[fd], offset + length))

    def ftruncate(self, fd: int, length: int) -> None:
        super().ftruncate(fd, length)
        self.events.append(("extend", self.paths[fd], length))

    def fdatasync(self, fd: int) -> None:
        super().fdatasync(fd)
        self.events.append(("sync", self.paths[fd]))

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        self.events.append(("sync", self.paths[fd]))

    def fsync_dir(self, path: str) -> None:
        super().fsync_dir(path)
        self.events.append(("dirsync", path))

    def acknowledged(self, lsn: int) -> None:
        self.events.append(("ack", lsn))


class DiskModel:
    """Per file: the bytes as of its last fsync, and as the writes left them since."""

    def __init__(self) -> None:
        self.synced: dict[str, bytearray] = {}
        self.current: dict[str, bytearray] = {}
        self.durable_names: set[str] = set()
        self.acknowledged = 0

    def apply(self, event: tuple[object, ...]) -> None:
        kind = event[0]
        if kind == "existing":
            path, data = event[1], event[2]
            assert isinstance(path, str)
            assert isinstance(data, bytes)
            self.synced[path], self.current[path] = bytearray(data), bytearray(data)
            self.durable_names.add(path)
        elif kind == "create":
            assert isinstance(event[1], str)
            self.synced[event[1]], self.current[event[1]] = bytearray(), bytearray()
        elif kind == "write":
            path, offset, data = event[1], event[2], event[3]
            assert isinstance(path, str)
            assert isinstance(offset, int)
            assert isinstance(data, bytes)
            image = self.current[path]
            if len(image) < offset + len(data):
                image.extend(bytes(offset + len(data) - len(image)))
            image[offset : offset + len(data)] = data
        elif kind == "extend":
            path, size = event[1], event[2]
            assert isinstance(path, str)
            assert isinstance(size, int)
            image = self.current[path]
            if len(image) < size:
                image.extend(bytes(size - len(image)))
        elif kind == "sync":
            assert isinstance(event[1], str)
            self.synced[event[1]] = bytearray(self.current[event[1]])
        elif kind == "dirsync":
            self.durable_names.update(p for p in self.current if os.path.dirname(p) == event[1])
        elif kind == "ack":
            assert isinstance(event[1], int)
            self.acknowledged = max(self.acknowledged, event[1])

    def cut(self, rng: random.Random) -> dict[str, bytes]:
        """What the disk could hold now: file name -> contents."""
        sector = rng.choice([512, 4096])
        files = {}
        for path, current in self.current.items():
            if path not in self.durable_names and rng.random() < 0.5:
                continue  # the directory entry never reached the disk
            synced = self.synced[path]
            size = rng.choice([len(synced), len(current)])
            image = bytearray(current[:size]) + bytes(max(0, size - len(current)))
            for start in range(0, size, sector):
                end = min(start + sector, size)
                old = bytes(synced[start:end]) + bytes(max(0, end - max(start, len(synced))))
                if image[start:end] != old[: end - start] and rng.random() < 0.5:
                    image[start:end] = old[: end - start]  # this sector's new contents were lost
            files[os.path.basename(path)] = bytes(image)
        return files


def fold(history: dict[int, tuple[Op, ...]], through: int) -> dict[bytes, bytes]:
    state: dict[bytes, bytes] = {}
    for lsn in range(1, through + 1):
        for op in history[lsn]:
            if op.kind == PUT:
                state[op.key] = op.value
            else:
                state.pop(op.key, None)
    return state


async def run_writers(data: str, ops: TracingOps, history: dict[int, tuple[Op, ...]], rng: random.Random) -> None:
    """Eight writers committing puts, deletes and batches concurrently, so groups form."""
    async with Store(data, StoreOptions(wal_file_size=16 << 10, apply_interval=3600, apply_threshold=1 << 30), wal_ops=ops) as store:

        async def writer(w: int) -> None:
            local = random.Random(rng.random())
            for i in range(40):
                key = b"k%02d" % local.randrange(30)
                choice = local.random()
                if choice < 0.15:
                    commit_ops: tuple[Op, ...] = (Op(DELETE, key),)
                elif choice < 0.3:
                    commit_ops = tuple(Op(PUT, b"b%d-%d-%d" % (w, i, j), local.randbytes(local.randrange(300)))
                                       for j in range(local.randrange(1, 6)))
                else:
                    commit_ops = (Op(PUT, key, b"w%d-%d:" % (w, i) + bytes(local.randrange(700))),)
                commit = await store.commit(commit_ops)
                history[commit.lsn] = commit_ops
                ops.acknowledged(commit.lsn)
                if local.random() < 0.2:
                    await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            for w in range(8):
                nursery.start_soon(writer, w)


async def test_a_power_cut_anywhere_loses_no_acknowledged_commit(tmp_path: Path, random_seed: int) -> None:
    seed = random_seed
    rng = random.Random(seed)
    base = tmp_path / "base"
    async with Store(str(base)):
        pass  # the state (no commits applied) and an empty first WAL file, all durable
    data = tmp_path / "data"
    shutil.copytree(base, data)
    ops = TracingOps()
    history: dict[int, tuple[Op, ...]] = {}
    await run_writers(str(data), ops, history, rng)
    assert len(history) == 320
    syncs = [i for i, e in enumerate(ops.events) if e[0] == "sync"]
    assert len(syncs) > 20, "the writers formed too few commit groups to mean much"
    assert sum(e[0] == "create" for e in ops.events) > 3, "the WAL rolled to new files"

    cut_points = sorted(rng.sample(range(len(ops.events) + 1), min(CUTS, len(ops.events) + 1)))
    model = DiskModel()
    done = 0
    for number, point in enumerate(cut_points):
        while done < point:
            model.apply(ops.events[done])
            done += 1
        files = model.cut(rng)
        target = tmp_path / f"cut{number}"
        shutil.copytree(base, target)
        wal = target / "wal"
        for name in os.listdir(wal):
            os.unlink(wal / name)
        for name, content in files.items():
            (wal / name).write_bytes(content)
        where = f"seed {seed}, cut {number} after event {point} of {len(ops.events)}"
        async with Store(str(target), StoreOptions(apply_interval=3600)) as store:
            recovered = store.last_lsn
            assert recovered >= model.acknowledged, f"{where}: acknowledged commits were lost"
            assert await store.scan() == sorted(fold(history, recovered).items()), \
                f"{where}: the state is not the history at LSN {recovered}"
        shutil.rmtree(target)
