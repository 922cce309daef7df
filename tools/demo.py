"""`make demo`: a realistic workload through the store with the archiver running, then what was archived.

Writes user profiles, sessions with TTLs, counters and atomic transfer batches
from many concurrent writers for a few seconds, with continuous archiving and
one snapshot; then shows the archive, restores a past moment and prints a
key's history.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time

import trio

from pitr.archiver import ArchiveOptions
from pitr.archiving import archiving
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreResult, RestoreTarget, restore
from pitr.snapshots.take import take_snapshot
from pitr.store import Store, StoreOptions
from pitr.timefmt import format_time
from pitr.timeline import build_timeline

ROOT = os.path.abspath(os.environ.get("PITR_DEMO_DIR", "demo-data"))
SECONDS = float(os.environ.get("PITR_DEMO_SECONDS", "4"))


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


async def workload(store: Store, deadline: float, rng: random.Random, counts: dict[str, int]) -> None:
    while time.monotonic() < deadline:
        roll = rng.random()
        user = rng.randrange(2000)
        if roll < 0.45:
            profile = {"id": user, "name": f"user{user}", "plan": rng.choice(["free", "pro", "team"]),
                       "seen": format_time(time.time_ns())}
            await store.put(f"user:{user:06d}:profile".encode(), json.dumps(profile).encode())
        elif roll < 0.70:
            await store.put(f"session:{rng.getrandbits(48):012x}".encode(), f"user:{user}".encode(), ttl=2.0)
        elif roll < 0.85:
            key = f"counter:page:{rng.randrange(50)}".encode()
            current = await store.get(key)
            if await store.compare_and_set(key, current, str(int(current or b"0") + 1).encode()) is None:
                continue  # another writer won the race: nothing was committed
        elif roll < 0.95:
            a, b = rng.sample(range(500), 2)
            amount = rng.randrange(1, 100)
            async with store.batch() as batch:
                batch.put(f"account:{a:04d}".encode(), str(-amount).encode())
                batch.put(f"account:{b:04d}".encode(), str(amount).encode())
                batch.put(f"transfer:{time.time_ns()}".encode(), f"{a}->{b}:{amount}".encode())
        else:
            await store.delete(f"user:{user:06d}:profile".encode())
        counts["commits"] += 1


async def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    data, repo_dir = os.path.join(ROOT, "data"), os.path.join(ROOT, "repo")
    rng = random.Random(7)
    counts = {"commits": 0}
    print(f"pitr demo: writing for {SECONDS:g}s with 32 concurrent writers into {data}")
    print(f"           archiving continuously (every 0.5s) into {repo_dir}\n")
    started = time.monotonic()
    async with Store(data, StoreOptions(name="demo")) as store:
        async with archiving(store, repo_dir, options=ArchiveOptions(interval=0.5)) as archiver:
            async with trio.open_nursery() as nursery:
                deadline = time.monotonic() + SECONDS
                for i in range(32):
                    nursery.start_soon(workload, store, deadline, random.Random(rng.random() + i), counts)
                await trio.sleep(SECONDS / 2)
                snap = await take_snapshot(archiver, prepare=store.flush)
                middle = snap.ts_ns
            last_commit = store.last_lsn
        lag = archiver.lag_percentiles()
    elapsed = time.monotonic() - started
    async with open_repository(repo_dir) as repo:
        await repo.sync()
        ident = await repo.require_identity()
        segs = repo.catalog.segments()
        snaps = repo.catalog.snapshots()
        tl = build_timeline(repo.catalog, ident)
        raw = sum(s.raw_bytes for s in segs)
        stored = sum(s.size for s in segs)
        print(f"wrote {counts['commits']:,} commits in {elapsed:.1f}s ({counts['commits'] / elapsed:,.0f}/s), "
              f"last LSN {last_commit}")
        print("\narchive")
        print(f"  segments         {len(segs)} (small segments are merged as they accumulate)")
        print(f"  LSN range        {segs[0].first_lsn} .. {segs[-1].last_lsn}")
        print(f"  time range       {format_time(segs[0].first_ts_ns)} .. {format_time(segs[-1].last_ts_ns)}")
        print(f"  log bytes        {human(raw)} raw -> {human(stored)} stored "
              f"(compression {raw / max(stored, 1):.1f}x)")
        print(f"  archive lag      p50 {lag['p50_ms']:.0f} ms, p99 {lag['p99_ms']:.0f} ms")
        print(f"  snapshots        {len(snaps)}: " + ", ".join(f"{s.name} ({s.entry_count:,} keys)" for s in snaps))
        for w in tl.windows:
            print(f"  recoverable      {format_time(w.start_ns)} .. {format_time(w.end_ns)} "
                  f"(LSN {w.start_lsn}..{w.end_lsn})")
        target = middle + 500_000_000
        dest = os.path.join(ROOT, "restored")
        result = await restore(repo, RestoreOptions(target=RestoreTarget(time_ns=target), dest=dest))
        assert isinstance(result, RestoreResult)
        print(f"\nrestore to {format_time(target)}")
        print(f"  -> {dest}: LSN {result.target_lsn}, {result.keys:,} keys, "
              f"{result.commits_replayed:,} commits replayed in {result.seconds:.2f}s")
        try:
            from pitr.audit import history

            key = b"counter:page:7"
            changes = [c async for c in history(repo, key)]
            print(f"\nhistory of {key.decode()}: {len(changes)} changes; the last three:")
            for c in changes[-3:]:
                value = c.value.decode() if c.value is not None else "(deleted)"
                print(f"  LSN {c.lsn:>7}  {format_time(c.ts_ns)}  {c.op:<6} {value}")
        except ImportError:
            pass
    print(f"\ntry:  PITR_REPO={repo_dir} .venv/bin/pitr timeline")
    print(f"      PITR_REPO={repo_dir} .venv/bin/pitr verify")


if __name__ == "__main__":
    trio.run(main)
    sys.exit(0)
