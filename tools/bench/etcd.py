#!/usr/bin/env python3
"""Benchmarks for the etcd source; every figure is printed beside a baseline from the same run.

    .venv/bin/python tools/bench/etcd.py [--endpoint http://HOST:PORT] [--seconds 15] [--writers 8]
                                         [--interval 0.1] [--concurrency 4]

Without --endpoint a local etcd member is started (tests/servers/etcd.py; Debian's etcd-server).

- Archive lag while writers put to etcd as fast as it acknowledges: `--writers` concurrent tasks
  in a separate load-generator process (so they do not share the archiver's event loop), each
  with its own client, put 100-byte values under fresh keys for `--seconds`. For every
  acknowledged revision: observe lag = the spool commit time (when pitr saw it) minus the moment
  the writer got etcd's answer; archive lag = the moment a segment holding it was published in the
  repository (sampled every 2 ms) minus the same moment. The archive interval is `--interval`.
  Baseline: etcd's own acknowledged write rate in the same run, against the follower's commit rate.
- Base load: `--keys` keys written (put_many) before the archiver starts, read and committed by
  its first start, and snapshotted.
- Restore into etcd: the archived state (the preloaded keys and every key written above) restored with `pitr restore
  --dest etcd://...` semantics (`restore_to_etcd`) into an empty prefix, keys/s end to end and for
  the etcd phase alone (end to end minus building the state), against etcd's own rate for writing
  the same keys and values with `put_many` transactions of 128 operations, `--concurrency` in
  flight (the restore's own batch size and concurrency).

Exit status is 0 whatever the figures: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator

import anyio
import anyio.abc

# Run as a script, this file's directory comes first on sys.path and its name would hide the package.
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
sys.path.insert(0, _ROOT)

from pitr.archiver import ArchiveOptions  # noqa: E402
from pitr.audit import commit_log  # noqa: E402
from pitr.repo.repository import open_repository  # noqa: E402
from pitr.restore import RestoreOptions, RestoreTarget, restore  # noqa: E402
from pitr.sources.etcd import (  # noqa: E402
    DEFAULT_MAX_TXN_OPS,
    EtcdClient,
    EtcdRestoreOptions,
    EtcdRestoreResult,
    Put,
    etcd_archiving,
    restore_to_etcd,
)

VALUE = b"v" * 100


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@contextlib.contextmanager
def etcd_endpoint(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    from tests.servers.etcd import require_etcd, running_etcd

    with running_etcd(require_etcd()) as cluster:
        yield cluster.endpoints[0]


async def write_load(endpoint: str, prefix: bytes, writers: int, seconds: float, out: str) -> None:
    """The load generator (run in its own process): put as fast as etcd acknowledges."""
    acks: list[tuple[int, int, bytes]] = []

    async def writer(index: int, deadline: float) -> None:
        async with EtcdClient([endpoint]) as own:
            n = 0
            while time.monotonic() < deadline:
                key = prefix + b"w%02d-%08d" % (index, n)
                revision = await own.put(key, VALUE)
                acks.append((revision, time.time_ns(), key))
                n += 1

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for i in range(writers):
            tg.start_soon(writer, i, started + seconds)
    lines = [f"{time.monotonic() - started}\n"] + [f"{r} {acked} {key.hex()}\n" for r, acked, key in acks]
    await anyio.Path(out).write_text("".join(lines))


async def preload(endpoint: str, prefix: bytes, keys: int, concurrency: int) -> dict[bytes, bytes]:
    """Keys written before the archiver starts: its base load, and most of the restore's state."""
    state = {b"pre-%08d" % i: VALUE for i in range(keys)}
    items = sorted(state.items())
    async with EtcdClient([endpoint]) as client:
        await put_batches(client, [(prefix + k, v) for k, v in items], concurrency)
    return state


async def put_batches(client: EtcdClient, items: list[tuple[bytes, bytes]], concurrency: int) -> None:
    """Write items with put_many transactions of DEFAULT_MAX_TXN_OPS, `concurrency` in flight."""
    send, receive = anyio.create_memory_object_stream[list[Put]](concurrency)

    async def worker(batches: anyio.abc.ObjectReceiveStream[list[Put]]) -> None:
        async with batches:
            async for batch in batches:
                await client.put_many(batch)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker, receive.clone())
        receive.close()
        async with send:
            for i in range(0, len(items), DEFAULT_MAX_TXN_OPS):
                await send.send([Put(k, v) for k, v in items[i:i + DEFAULT_MAX_TXN_OPS]])


async def archive_lag(endpoint: str, work: str, args: argparse.Namespace) -> dict[bytes, bytes]:
    prefix = b"/bench/archive/%d/" % time.time_ns()
    published: list[tuple[int, int]] = []  # (wall ns, archived-through LSN)
    repo_dir, acks_file = os.path.join(work, "repo"), os.path.join(work, "acks")
    state = await preload(endpoint, prefix, args.keys, args.concurrency)
    async with EtcdClient([endpoint]) as client:
        loading = time.monotonic()
        async with etcd_archiving(client, prefix, os.path.join(work, "spool"), repo_dir,
                                  options=ArchiveOptions(interval=args.interval)) as session:
            loaded = time.monotonic() - loading
            progress = session.archiver.progress[0]

            async def sample() -> None:
                while True:
                    if not published or published[-1][1] != progress.last_lsn:
                        published.append((time.time_ns(), progress.last_lsn))
                    await anyio.sleep(0.002)

            async with anyio.create_task_group() as tg:
                tg.start_soon(sample)
                await anyio.run_process([sys.executable, __file__, "--load", endpoint, prefix.hex(),
                                         str(args.writers), str(args.seconds), acks_file],
                                        stdout=None, stderr=None)
                first, *rest = (await anyio.Path(acks_file).read_text()).splitlines()
                wrote, rows = float(first), [line.split() for line in rest]
                acks = [(int(r), int(t)) for r, t, _ in rows]
                state.update({bytes.fromhex(k)[len(prefix):]: VALUE for _, _, k in rows})
                last = max(r for r, _ in acks)
                while True:
                    if session.follower.revision >= last and progress.last_lsn >= session.store.last_lsn:
                        break
                    await anyio.sleep(0.002)
                published.append((time.time_ns(), progress.last_lsn))
                tg.cancel_scope.cancel()
    async with open_repository(repo_dir) as repo:
        await repo.sync()
        by_revision = {c.source_rev: (c.lsn, c.ts_ns) async for c in commit_log(repo)}  # read to the end
    observe, archive = [], []
    cursor = 0
    for revision, acked in sorted(acks, key=lambda a: by_revision[a[0]][0]):
        lsn, ts = by_revision[revision]
        observe.append(max(0, ts - acked) / 1e6)
        while published[cursor][1] < lsn:
            cursor += 1
        archive.append(max(0, published[cursor][0] - acked) / 1e6)
    print(f"base load: {args.keys:,} keys read, committed and snapshotted in {loaded:.2f}s "
          f"({args.keys / loaded:,.0f} keys/s)")
    print(f"archive lag: {len(acks):,} revisions from {args.writers} writers (another process) in {wrote:.1f}s: "
          f"etcd acknowledged {len(acks) / wrote:,.0f} writes/s; archive interval {args.interval:g}s")
    print(f"  observe lag (etcd ack -> spool commit):      p50 {percentile(observe, 0.5):7.1f} ms   "
          f"p99 {percentile(observe, 0.99):7.1f} ms   max {max(observe):7.1f} ms")
    print(f"  archive lag (etcd ack -> segment published): p50 {percentile(archive, 0.5):7.1f} ms   "
          f"p99 {percentile(archive, 0.99):7.1f} ms   max {max(archive):7.1f} ms")
    return state


async def restore_rate(endpoint: str, work: str, state: dict[bytes, bytes], args: argparse.Namespace) -> None:
    repo_dir = os.path.join(work, "repo")
    async with EtcdClient([endpoint]) as client, open_repository(repo_dir) as repo:
        started = time.monotonic()
        await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=os.path.join(work, "built")))
        build = time.monotonic() - started
        dest = b"/bench/restore/%d/" % time.time_ns()
        result = await restore_to_etcd(repo, client, EtcdRestoreOptions(
            target=RestoreTarget(latest=True), prefix=dest, concurrency=args.concurrency))
        assert isinstance(result, EtcdRestoreResult)
        baseline_prefix = b"/bench/baseline/%d/" % time.time_ns()
        items = [(baseline_prefix + k, v) for k, v in sorted(state.items())]
        started = time.monotonic()
        await put_batches(client, items, args.concurrency)
        baseline = time.monotonic() - started
    keys = result.keys
    print(f"restore into etcd: {keys:,} keys, {result.transactions} transactions, concurrency {args.concurrency}")
    print(f"  pitr restore --dest etcd://     {keys / result.seconds:10,.0f} keys/s end to end "
          f"({result.seconds:.2f}s, of which building the state {build:.2f}s)")
    print(f"  pitr restore, etcd phase only   {keys / max(result.seconds - build, 1e-9):10,.0f} keys/s")
    print(f"  baseline: put_many x{DEFAULT_MAX_TXN_OPS}          {keys / baseline:10,.0f} keys/s ({baseline:.2f}s)")
    print(f"  ratio (etcd phase / baseline)   {(keys / max(result.seconds - build, 1e-9)) / (keys / baseline):10.2f}")


async def main_async(endpoint: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="pitr-bench-etcd-") as work:
        state = await archive_lag(endpoint, work, args)
        await restore_rate(endpoint, work, state, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", help="an etcd member (default: start one)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--keys", type=int, default=50_000, help="keys written before archiving starts")
    parser.add_argument("--interval", type=float, default=0.1, help="archive interval (s)")
    parser.add_argument("--concurrency", type=int, default=4, help="transactions in flight when restoring")
    parser.add_argument("--load", nargs=5, help=argparse.SUPPRESS)  # internal: the load generator process
    args = parser.parse_args()
    if args.load:
        endpoint, prefix, writers, seconds, out = args.load
        anyio.run(write_load, endpoint, bytes.fromhex(prefix), int(writers), float(seconds), out, backend="trio")
        return
    with etcd_endpoint(args.endpoint) as endpoint:
        anyio.run(main_async, endpoint, args, backend="trio")


if __name__ == "__main__":
    main()
