"""Benchmark: time travel (`value_at`) latency and key history, on archives of 1M and 10M commits.

The repository is built directly (records encoded and sealed into ~64 MiB-raw
segments with a correct chain, published under segments/, plus the identity
document), then `Repository.sync` indexes it, as a catalog catching up would.
Latencies are measured in process, per call, after the build:

* value_at, sharing one timeline (a ValueReader): random key, random moment;
* value_at(), one-shot (builds the timeline each call);
* the catalog's key_version_at alone;
* the history of one key with 10,000 versions;
* the repository's bytes per commit: segments, snapshots (none in this plan) and
  the catalog (the LMDB file, and the pages its newest transaction uses), beside
  the bytes a Redis AOF spends on the same SETs (their RESP encoding, computed);
* opening the catalog: the page check walking the whole file, and an open that
  its marker vouches for.

The workload is the issue's: single-key commits of 100-byte values, one key per
commit (plus one hot key with 10,000 versions).

Targets (issue 13 #5): get --at p99 < 1 ms, history of a 10,000-version key
well under a second, bytes per commit <= 0.5x the AOF's. To compare with the
catalog format before issue 13, run this same script from an export of that
commit (`git archive 69d671a`), which it supports (the figures it cannot
measure there are left out).

    .venv/bin/python tools/bench/audit.py            # 1M and 10M commits
    .venv/bin/python tools/bench/audit.py --quick    # 100k and 1M commits
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from pitr.audit import history, open_value_reader, value_at  # noqa: E402
from pitr.repo.identity import RepoIdentity  # noqa: E402
from pitr.repo.repository import open_repository  # noqa: E402
from segments import encode_record, genesis, seal_segment, segment_name  # noqa: E402
from segments.record import Op, Span, put  # noqa: E402

T0 = 1_795_961_387_000_000_000
STEP_NS = 1_000  # one commit per microsecond
SEGMENT_RAW = 64 << 20
HOT_KEY = b"hot/counter"
HOT_VERSIONS = 10_000


@dataclass(frozen=True)
class Shape:
    commits: int
    keys: int
    hot_every: int

    @classmethod
    def of(cls, commits: int) -> Shape:
        return cls(commits, commits, max(1, commits // HOT_VERSIONS))

    def key_of(self, lsn: int) -> bytes:
        if lsn % self.hot_every == 0:
            return HOT_KEY
        return b"user:%08d" % (lsn * 7919 % self.keys)

    def ts_of(self, lsn: int) -> int:
        return T0 + lsn * STEP_NS


def value_of(lsn: int) -> bytes:
    """A 100-byte value."""
    return (b"%010d" % lsn) * 10


def aof_bytes(shape: Shape) -> int:
    """Bytes a Redis AOF spends on the history's SETs (RESP: *3, $3 SET, $len key, $len value)."""
    total = 0
    for lsn in range(1, shape.commits + 1):
        k, v = len(shape.key_of(lsn)), len(value_of(lsn))
        total += len(b"*3\r\n$3\r\nSET\r\n") + len(b"$%d\r\n" % k) + k + 2 + len(b"$%d\r\n" % v) + v + 2
    return total


def tree_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _s, files in os.walk(path) for f in files)


def catalog_used_bytes(catalog_dir: str) -> int:
    """Bytes of the pages the catalog's newest transaction reaches up to (LMDB's mm_last_pg)."""
    with open(os.path.join(catalog_dir, "data.mdb"), "rb") as fh:
        head = fh.read(1 << 17)
    page = int.from_bytes(head[40:44], "little")
    metas = [head[0:160], head[page : page + 160]]
    newest = max(metas, key=lambda m: int.from_bytes(m[144:152], "little"))
    return (int.from_bytes(newest[136:144], "little") + 1) * page


def measure_open(catalog_dir: str) -> dict[str, float]:
    """Seconds to open the catalog with its page check, and with a marker that vouches for the file."""
    try:
        from pitr.catalog.catalog import Catalog
        from pitr.catalog.pagecheck import check_pages
    except ImportError:
        return {}
    started = time.perf_counter()
    problem = check_pages(os.path.join(catalog_dir, "data.mdb"))
    walk = time.perf_counter() - started
    assert problem is None, problem
    started = time.perf_counter()
    Catalog(catalog_dir).close()
    vouched = time.perf_counter() - started
    return {"page_check_s": walk, "open_vouched_s": vouched}


def build_repository(root: str, shape: Shape) -> tuple[float, int]:
    """Write the segments and identity of a `shape` history under root; returns (seconds, bytes)."""
    started = time.perf_counter()
    store_id = uuid.uuid4()
    seg_dir = os.path.join(root, "segments")
    os.makedirs(seg_dir, exist_ok=True)
    ident = RepoIdentity(store_id, "bench", T0 - 1, 1, genesis(store_id))
    with open(os.path.join(root, "pitr-repository"), "wb") as fh:
        fh.write(ident.encode())
    prev = ident.start_chain_digest
    total = 0
    lsn = 1
    while lsn <= shape.commits:
        parts: list[bytes] = []
        spans: list[Span] = []
        size = 0
        while lsn <= shape.commits and size < SEGMENT_RAW:
            ts = shape.ts_of(lsn)
            ops: list[Op] = [put(shape.key_of(lsn), value_of(lsn))]
            data = encode_record(lsn, ts, ops)
            spans.append(Span(lsn, ts, size, size + len(data)))
            parts.append(data)
            size += len(data)
            lsn += 1
        buf = b"".join(parts)
        tmp = os.path.join(seg_dir, ".tmp-building")
        with open(tmp, "wb") as out:
            sealed = seal_segment(out, store_id, prev, buf, spans, spans[-1].ts_ns)
        os.rename(tmp, os.path.join(seg_dir, segment_name(sealed.first_lsn, sealed.last_lsn)))
        prev = sealed.chain_digest
        total += sealed.size
    return time.perf_counter() - started, total


@contextmanager
def gc_timer() -> Iterator[list[int]]:
    """Time spent in the cyclic garbage collector while the block runs: [ns, collections]."""
    stats = [0, 0]
    started = [0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter_ns()
        else:
            stats[0] += time.perf_counter_ns() - started[0]
            stats[1] += 1

    gc.callbacks.append(callback)
    try:
        yield stats
    finally:
        gc.callbacks.remove(callback)


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e3

    return {"p50_us": pick(0.50), "p99_us": pick(0.99), "max_us": ordered[-1] / 1e3}


def show(label: str, stats: dict[str, float]) -> None:
    print(f"  {label:<38} p50 {stats['p50_us']:8.1f} us   p99 {stats['p99_us']:8.1f} us   "
          f"max {stats['max_us']:9.1f} us", flush=True)


async def measure(root: str, shape: Shape, samples: int, seed: int) -> dict[str, object]:
    results: dict[str, object] = {"commits": shape.commits}
    async with open_repository(root) as repo:
        started = time.perf_counter()
        report = await repo.sync()
        results["index_s"] = time.perf_counter() - started
        print(f"  indexed {len(report.indexed)} segments in {results['index_s']:.1f} s "
              f"({repo.catalog.keys_count():,} key-index rows)", flush=True)
        rng = random.Random(seed)
        catalog = repo.catalog
        targets = [(shape.key_of(rng.randrange(1, shape.commits + 1)),
                    min(shape.ts_of(rng.randrange(1, shape.commits + 1)) + rng.randrange(STEP_NS),
                        shape.ts_of(shape.commits)))
                   for _ in range(samples)]
        # warm up the page cache and the code paths
        async with open_value_reader(repo) as reader:
            for key, ts in targets[: samples // 10]:
                await reader.value_at(key, reader.moment(ts))
            lookups = []
            found = 0
            with gc_timer() as gc_stats:
                for key, ts in targets:
                    t = time.perf_counter_ns()
                    got = await reader.value_at(key, reader.moment(ts))
                    lookups.append(time.perf_counter_ns() - t)
                    found += got is not None
            results["gc_ms"], results["gc_runs"] = gc_stats[0] / 1e6, gc_stats[1]
            results["value_at"] = percentiles(lookups)
            results["found"] = found
        one_shot = []
        for key, ts in targets[: max(1, samples // 5)]:
            t = time.perf_counter_ns()
            await value_at(repo, key, ts)
            one_shot.append(time.perf_counter_ns() - t)
        results["value_at_one_shot"] = percentiles(one_shot)
        index_only = []
        for key, ts in targets:
            t = time.perf_counter_ns()
            catalog.key_version_at(key, ts)
            index_only.append(time.perf_counter_ns() - t)
        results["key_version_at"] = percentiles(index_only)
        history_started, history_cpu = time.perf_counter(), time.process_time()
        versions = 0
        async for _change in history(repo, HOT_KEY):
            versions += 1
        results["history_s"] = time.perf_counter() - history_started
        results["history_cpu_s"] = time.process_time() - history_cpu  # the machine may be shared: CPU beside wall
        results["history_versions"] = versions
    return results


def measure_files(root: str, shape: Shape) -> dict[str, object]:
    segments = tree_bytes(os.path.join(root, "segments"))
    snapshots = tree_bytes(os.path.join(root, "snapshots")) if os.path.isdir(os.path.join(root, "snapshots")) else 0
    catalog_dir = os.path.join(root, ".catalog")
    results: dict[str, object] = {"bytes": {
        "segments": segments, "snapshots": snapshots,
        "catalog_file": os.path.getsize(os.path.join(catalog_dir, "data.mdb")),
        "catalog_used": catalog_used_bytes(catalog_dir), "aof": aof_bytes(shape)}}
    results.update(measure_open(catalog_dir))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k and 1M commits instead of 1M and 10M")
    parser.add_argument("--sizes", type=int, nargs="+", help="commit counts to build (overrides --quick)")
    parser.add_argument("--samples", type=int, default=20_000, help="value_at lookups per size")
    parser.add_argument("--dir", help="where to build (default: a temporary directory, removed after)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the built repositories in --dir and reuse them on the next run")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    sizes = args.sizes or ([100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000])
    base = args.dir or tempfile.mkdtemp(prefix="pitr-bench-audit-")
    all_results = []
    try:
        for commits in sizes:
            shape = Shape.of(commits)
            root = os.path.join(base, f"repo-{commits}")
            built_mark = os.path.join(root, ".bench-built")
            print(f"{commits:,} commits ({shape.keys:,} keys, {HOT_KEY.decode()} every {shape.hot_every}):",
                  flush=True)
            if args.keep and os.path.exists(built_mark):
                print("  reusing the repository built by an earlier run", flush=True)
            else:
                shutil.rmtree(root, ignore_errors=True)
                build_s, size = build_repository(root, shape)
                print(f"  built segments in {build_s:.1f} s ({size / 2**20:.0f} MiB)", flush=True)
                open(built_mark, "w").close()
            results = trio.run(measure, root, shape, args.samples, args.seed)
            results.update(measure_files(root, shape))
            for name in ("value_at", "value_at_one_shot", "key_version_at"):
                show(name, results[name])  # type: ignore[arg-type]
            b = results["bytes"]  # type: ignore[assignment]
            n = commits
            whole = b["segments"] + b["snapshots"] + b["catalog_file"]
            print(f"  bytes per commit: segments {b['segments'] / n:.1f}, snapshots {b['snapshots'] / n:.1f}, "
                  f"catalog {b['catalog_file'] / n:.1f} (pages in use {b['catalog_used'] / n:.1f}); "
                  f"whole repository {whole / n:.1f} B vs AOF {b['aof'] / n:.1f} B per SET: "
                  f"{whole / b['aof']:.2f}x (target <= 0.5x)", flush=True)
            if "page_check_s" in results:
                print(f"  catalog open: page check of the whole file {results['page_check_s']:.3f} s; "
                      f"open vouched for by its marker {results['open_vouched_s'] * 1e3:.2f} ms", flush=True)
            print(f"  history of a key with {results['history_versions']:,} versions: "
                  f"{results['history_s']:.2f} s (CPU {results['history_cpu_s']:.2f} s); garbage collection during value_at: "
                  f"{results['gc_ms']:.0f} ms in {results['gc_runs']} runs", flush=True)
            all_results.append(results)
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if args.dir is None or not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    if len(all_results) >= 2:
        small, large = all_results[0], all_results[-1]
        ratio = large["value_at"]["p99_us"] / small["value_at"]["p99_us"]  # type: ignore[index]
        p99 = large["value_at"]["p99_us"]  # type: ignore[index]
        print(f"value_at p99 at {large['commits']:,} commits: {p99:.1f} us (target < 1000 us); "
              f"p99 ratio {large['commits']:,}/{small['commits']:,}: {ratio:.2f} (target < 1.5)")


if __name__ == "__main__":
    main()
