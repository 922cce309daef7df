"""Sealing in a worker process (large chunks) publishes and indexes exactly what a worker thread does."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiving import StoreSource
from pitr.repo import layout
from pitr.repo.repository import open_repository
from pitr.store import Store
from segments.record import DELETE, PUT, Op
from tests.store.support import SECOND, FakeClock

pytestmark = pytest.mark.anyio

COMMON = {"interval": 3600.0, "max_segment_commits": 50, "merge_count": 1000}
IN_PROCESS = ArchiveOptions(**COMMON, seal_in_process=True, process_min_commits=1)
IN_THREAD = ArchiveOptions(**COMMON, seal_in_process=False)
INDEXES = ("segments", "blocks", "times", "keytables", "keychunks", "gaps")


async def test_a_chunk_sealed_in_a_worker_process_is_the_one_a_thread_seals(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Store(str(tmp_path / "data"), clock=clock) as store, \
            open_repository(str(tmp_path / "by-process"), create=True) as by_process, \
            open_repository(str(tmp_path / "by-thread"), create=True) as by_thread:
        process = Archiver(StoreSource(store), [by_process], IN_PROCESS, clock=clock)
        thread = Archiver(StoreSource(store), [by_thread], IN_THREAD, clock=clock)
        await process.start()
        await thread.start()
        for round_ in range(3):  # each round resumes where the last read stopped
            for i in range(70):
                clock.advance(SECOND)
                key = b"k%03d" % (i % 17)
                if i % 11 == 5:
                    await store.commit([Op(DELETE, key)])
                elif i % 7 == 3:
                    await store.commit([Op(PUT, key, b"batch", None), Op(PUT, b"other", b"x" * i, None)])
                else:
                    await store.put(key, b"v%d.%d" % (round_, i), ttl=60.0 if i % 5 == 0 else None)
            assert await process.cycle() == await thread.cycle() == 70
        assert not process.failing
        assert not thread.failing
        assert process.progress[0].chain_digest == thread.progress[0].chain_digest
        names = [s.name for s in by_process.catalog.segments()]
        assert len(names) == 6
        assert names == [s.name for s in by_thread.catalog.segments()]
        for name in names:
            assert await by_process.storage.read(layout.segment_object(name)) == \
                await by_thread.storage.read(layout.segment_object(name))
        process_rows, thread_rows = by_process.catalog.dump(), by_thread.catalog.dump()
        for db in INDEXES:
            assert process_rows.get(db) == thread_rows.get(db), db
        assert process_rows["keychunks"]


def die_in_worker(*_args: object) -> bytes:
    """Stands in for `seal_chunk_in_worker`: the worker process ends the way a killed one does."""
    import os
    os._exit(9)


async def test_a_worker_that_dies_is_not_a_failure_the_chunk_is_sealed_in_a_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pitr.archiver.archiver.seal_chunk_in_worker", die_in_worker)
    clock = FakeClock()
    async with Store(str(tmp_path / "data"), clock=clock) as store, \
            open_repository(str(tmp_path / "fallback"), create=True) as fallback, \
            open_repository(str(tmp_path / "by-thread"), create=True) as by_thread:
        broken = Archiver(StoreSource(store), [fallback], IN_PROCESS, clock=clock)
        thread = Archiver(StoreSource(store), [by_thread], IN_THREAD, clock=clock)
        await broken.start()
        await thread.start()
        for round_ in range(2):
            for i in range(70):
                clock.advance(SECOND)
                await store.put(b"k%03d" % (i % 13), b"v%d.%d" % (round_, i))
            assert await broken.cycle() == await thread.cycle() == 70
            assert broken._worker_broken, "the dead worker must be noticed"
        assert not broken.failing
        assert broken.progress[0].chain_digest == thread.progress[0].chain_digest
        names = [s.name for s in fallback.catalog.segments()]
        assert names == [s.name for s in by_thread.catalog.segments()]
        for name in names:
            assert await fallback.storage.read(layout.segment_object(name)) == \
                await by_thread.storage.read(layout.segment_object(name))


UNGUARDED = '''
import sys
import trio
from pitr.archiving import archiving
from pitr.archiver import ArchiveOptions, sealer
from pitr.store import Store

print("top level ran", flush=True)  # no `if __name__ == "__main__":` guard: a worker must not run this
ONE_CYCLE = ArchiveOptions(interval=3600.0)  # the defaults, but one cycle (on exit): one chunk of 5,000

async def main() -> None:
    async with Store(sys.argv[1]) as store, archiving(store, sys.argv[2], options=ONE_CYCLE):
        async with trio.open_nursery() as nursery:
            for w in range(50):  # 5,000 commits, more than process_min_commits: a chunk the worker seals
                nursery.start_soon(write, store, w)

async def write(store: Store, w: int) -> None:
    for i in range(100):
        await store.put(b"k%d.%d" % (w, i), b"v")

trio.run(main)
print("worker used", sealer._worker._process is not None, flush=True)
'''


def test_the_default_seals_in_a_worker_that_never_runs_the_programs_main_module(tmp_path: Path) -> None:
    """A script without a main guard archives with the defaults: the chunk is sealed in the worker
    process, and the script's top level runs once (anyio's and multiprocessing's workers would
    import it again as __mp_main__)."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "data"), str(tmp_path / "repo")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("top level ran") == 1
    assert "worker used True" in done.stdout
    assert ArchiveOptions().seal_in_process
