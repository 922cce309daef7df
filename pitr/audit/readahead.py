"""Reading the blocks a key's history will need ahead of the walk, off the event loop.

A history of a key that changed every thousand commits of a long log needs one
block per version, each in a different place of a different segment. Read one
at a time on the loop thread, each read waits for the disk (a cold page cache)
and each decompression holds the loop. `ReadAhead` is given the blocks in the
order the walk will ask for them and reads and decompresses them in a worker
thread, a run of `RUN` blocks per call, at most `RUNS_AHEAD` runs in flight
(bounded memory: 64 KiB blocks, so about 8 MiB), while the walk checks and
decodes the blocks already read.

Every block is checked as `RecordReader` checks the blocks it reads itself
(`decompress_block`: CRC-32C of the stored bytes, the size the index gives);
a failure is raised, translated, when the walk asks for that block, not
before, so what the walk yields before it is the same as without read-ahead.
Only local, unsealed repositories are read ahead (remote and sealed blocks go
through `Repository.read_block`, as before).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import anyio
import zstandard

from pitr.catalog.entries import BlockRow
from pitr.errors import ObjectNotFound, PitrError, StorageError, to_corrupt
from segments import SegmentsError
from segments.segment_format import BlockEntry
from segments.segment_reader import decompress_block
from segments.source import FileSource

RUN = 32  # blocks read and decompressed per worker call
RUNS_AHEAD = 4  # runs in flight ahead of the walk
WORKERS = max(1, min(RUNS_AHEAD, os.cpu_count() or 1))  # runs read at once: zstd decompresses without the GIL

Planned = tuple[BlockRow, str, str, str]  # a block, its segment's local path, the repository URL, the object name
Outcome = dict[int, bytes | PitrError]  # by block first LSN: the checked raw block, or why it is not


def read_run(run: Sequence[Planned]) -> Outcome:
    """Read and check the blocks of one run (in a worker thread); never raises."""
    out: Outcome = {}
    dctx = zstandard.ZstdDecompressor()
    sources: dict[str, FileSource] = {}
    try:
        for block, path, url, object_name in run:
            try:
                source = sources.get(path)
                if source is None:
                    source = sources[path] = FileSource(path)
                entry = BlockEntry(block.first_lsn, block.first_ts_ns, block.offset, block.compressed_size,
                                   block.raw_size, block.record_count, block.crc)
                out[block.first_lsn] = decompress_block(dctx, source.read(block.offset, block.compressed_size),
                                                        entry, f"{url}/{object_name}")
            except SegmentsError as exc:
                out[block.first_lsn] = _caused(to_corrupt(exc), exc)
            except FileNotFoundError as exc:
                out[block.first_lsn] = _caused(ObjectNotFound(f"{url}: {object_name} does not exist"), exc)
            except OSError as exc:
                out[block.first_lsn] = _caused(StorageError(f"{url}: cannot read {object_name}: {exc}"), exc)
    finally:
        for source in sources.values():
            source.close()
    return out


def _caused(error: PitrError, cause: BaseException) -> PitrError:
    error.__cause__ = cause
    return error


class ReadAhead:
    """Blocks read ahead of a walk that asks for them in the planned order."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._planned: deque[list[Planned]] = deque()
        self._flying: deque[tuple[frozenset[int], Future[Outcome]]] = deque()
        self._ready: Outcome = {}
        self._wanted: set[int] = set()  # first LSNs of the blocks planned and not yet taken or passed by

    def plan(self, blocks: Sequence[Planned]) -> None:
        """Read these blocks next, in this order (what an earlier plan read and nobody took is dropped)."""
        self._planned.clear()
        self._ready.clear()
        self._wanted = {block.first_lsn for block, _p, _u, _n in blocks}
        for start in range(0, len(blocks), RUN):
            self._planned.append(list(blocks[start : start + RUN]))
        self._pump()

    def _pump(self) -> None:
        while self._planned and len(self._flying) < RUNS_AHEAD:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pitr-readahead")
            run = self._planned.popleft()
            self._flying.append((frozenset(b.first_lsn for b, _p, _u, _n in run),
                                 self._executor.submit(read_run, run)))

    async def take(self, block: BlockRow) -> bytes | None:
        """The checked raw bytes of `block` if it was planned (raising what reading it found), else None."""
        first = block.first_lsn
        if first not in self._wanted:
            return None  # not planned: the caller reads it itself, and the read-ahead stays
        while first not in self._ready:
            if not self._flying:
                self._wanted.discard(first)
                return None
            firsts, future = self._flying[0]
            outcome = future.result() if future.done() else await anyio.to_thread.run_sync(future.result)
            self._flying.popleft()
            if first not in firsts:  # the walk passed these by
                self._wanted.difference_update(firsts)
                self._pump()
                continue
            self._wanted.difference_update(self._ready)
            self._ready = outcome
            self._pump()
        found = self._ready.pop(first)
        self._wanted.discard(first)
        if isinstance(found, PitrError):
            raise found
        return found

    def close(self) -> None:
        """Stop reading ahead (runs in flight finish in the worker; their results are dropped)."""
        self._planned.clear()
        self._ready.clear()
        self._wanted.clear()
        for _firsts, future in self._flying:
            future.cancel()
        self._flying.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
