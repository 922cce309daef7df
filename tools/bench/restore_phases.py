#!/usr/bin/env python3
"""Where a restore's time goes: one in-process `restore --latest`, timed phase by phase.

    .venv/bin/python tools/bench/restore_phases.py REPO [--no-verify]

Prints the seconds of each phase as the restore runs them: importing what a restore needs,
opening the repository, the catalog sync, planning, opening (and with several repositories,
verifying) the segments, the replay (read, decompress, check, fold; verification is fused into
it), the merge with the base, sorting and encoding the final rows (`sorted_rows`; `live_rows`
before it), the LMDB append, the receipt (the rows read back, compared and hashed), the single
fsync, and publishing the directory.
Wrappers around the phase functions do the timing; a synchronous phase also prints the CPU
seconds of its thread (`time.thread_time`), the last line the process's user and system CPU;
nothing else changes. A profile, not a figure: the figures are `restore_cold.py`'s.
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

STARTED = time.perf_counter()
import trio  # noqa: E402

import pitr.restore  # noqa: E402,F401
from pitr.datadir.state import StateDB  # noqa: E402
from pitr.repo.repository import Repository, open_repository  # noqa: E402
from pitr.restore import RestoreOptions, RestoreTarget  # noqa: E402

IMPORTED = time.perf_counter()
restore_module = importlib.import_module("pitr.restore.restore")
engine = importlib.import_module("pitr.restore.engine")


def timed(owner: Any, name: str, label: str, depth: int = 1) -> None:
    fn: Callable[..., Any] | None = getattr(owner, name, None)
    if fn is None:  # a phase the code under test does not have (an older checkout on PYTHONPATH)
        return
    pad = "  " * depth

    if hasattr(fn, "__code__") and fn.__code__.co_flags & 0x80:  # a coroutine function
        @functools.wraps(fn)
        async def wrapper_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                print(f"{pad}{label:<40} {time.perf_counter() - started:8.3f} s", flush=True)  # CPU: other threads
        setattr(owner, name, wrapper_async)
        return

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            print(f"{pad}{label:<40} {time.perf_counter() - started:8.3f} s  {time.thread_time() - cpu:6.3f} s CPU",
                  flush=True)
    setattr(owner, name, wrapper)


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    repo_dir, verify = sys.argv[1], "--no-verify" not in sys.argv
    print(f"  {'import (trio, pitr.restore and what it needs)':<40} {IMPORTED - STARTED:8.3f} s")
    timed(Repository, "sync", "catalog sync")
    timed(restore_module, "_best_plan", "planning")
    timed(restore_module, "open_base", "opening the base")
    timed(restore_module, "_open_segments", "opening the segments, their chain")
    timed(engine, "replay_log", "replay (read, check, fold)", 2)
    timed(engine, "_merge_base", "merge with the base", 2)
    timed(engine, "live_rows", "sort the final rows", 2)  # before sorted_rows
    timed(engine, "sorted_rows", "sort and encode the final rows", 2)
    timed(StateDB, "append_sorted", "LMDB append", 2)
    timed(StateDB, "append_rows", "LMDB append (rows encoded)", 2)
    timed(engine, "receipt_digest", "receipt (rows read back, digest)", 2)
    timed(engine, "receipt_of_append", "receipt (rows read back, compared, hashed)", 2)
    timed(StateDB, "store_digest", "  of it: storing the digest", 3)
    timed(StateDB, "sync", "fsync of the state", 2)
    timed(restore_module, "build_state", "build, in all")
    timed(restore_module, "_publish_directory", "publish (rename, directory fsync)")
    work = tempfile.mkdtemp(prefix="pitr-restore-phases-")
    dest = os.path.join(work, "restored")

    async def run() -> None:
        started = time.perf_counter()
        async with open_repository(repo_dir) as repo:
            print(f"  {'open the repository':<40} {time.perf_counter() - started:8.3f} s", flush=True)
            await restore_module.restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=dest,
                                                              verify=verify, pause_gc=True))

    try:
        trio.run(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    times = os.times()
    print(f"  {'whole process so far':<40} {time.perf_counter() - STARTED:8.3f} s  "
          f"{times.user + times.system:6.3f} s CPU (user {times.user:.3f}, sys {times.system:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
