#!/usr/bin/env python3
"""An etcd prefix archived and restored encrypted against plaintext, in the same run (issue 14's target,
encrypted >= 0.9x plaintext, for an etcd source).

    .venv/bin/python tools/bench/etcd_encryption.py [--endpoint http://HOST:PORT] [--keys 50000]
                                                    [--revisions 20000] [--repeats 3]

Without --endpoint a local etcd member is started (tests/servers/etcd.py; Debian's etcd-server).
One prefix is written first (`--keys` keys of 200-byte values, then `--revisions` single-key
revisions on top, written between the two archive runs, 8 transactions in flight). Then, alternating
plaintext and encrypted (`etcd_archiving(key_file=...)`, a raw key file), each into a new spool and
repository:

- base load: the first one-shot run (`follow=False`, `catch_up()`): read the prefix at the revision
  before the extra revisions, commit it, snapshot it (sealed when encrypted) and ship it;
- watch: a second one-shot run that resumes after the base load and archives every extra revision
  from the watch stream (one spool commit per revision, segments sealed when encrypted);
- restore into etcd: `restore_to_etcd` of the latest state into an empty prefix (building the state
  from the repository, then the transactions);
- restore into a directory: `restore` of the latest state.

Rates are per CPU second of this process (user + sys, `time.process_time`: the archiver and restore
run in its threads; etcd's own CPU is another process's), best of `--repeats`; wall seconds beside.
Exit status is 0 even when a target is missed: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator

import anyio
import anyio.abc

# Run as a script, this file's directory comes first on sys.path and its name would hide the package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repository root: tests.servers

from pitr.crypto import create_key_file  # noqa: E402
from pitr.crypto.keys import read_key_file  # noqa: E402
from pitr.repo.keyring import unlock  # noqa: E402
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

sys.path.append(_HERE)
from _common import Figure  # noqa: E402

PHASES = ("base load", "watch", "restore into etcd", "restore into a directory")


@contextlib.contextmanager
def etcd_endpoint(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    from tests.servers.etcd import require_etcd, running_etcd

    with running_etcd(require_etcd()) as cluster:
        yield cluster.endpoints[0]


def source_batches(prefix: bytes, keys: int, revisions: int) -> tuple[list[list[Put]], list[list[Put]]]:
    """The base load's `keys` keys in transactions of 128, and `revisions` single-key revisions on top."""
    value = os.urandom(100).hex().encode()  # 200 bytes
    base = [[Put(prefix + b"k%08d" % i, value) for i in range(start, min(start + DEFAULT_MAX_TXN_OPS, keys))]
            for start in range(0, keys, DEFAULT_MAX_TXN_OPS)]
    extra = [[Put(prefix + b"k%08d" % (i % max(keys, 1)), value[:-8] + b"%08d" % i)] for i in range(revisions)]
    return base, extra


async def put_batches(client: EtcdClient, batches: list[list[Put]]) -> None:
    """Each batch one transaction, 8 in flight."""
    send, receive = anyio.create_memory_object_stream[list[Put]](8)

    async def worker(stream: anyio.abc.ObjectReceiveStream[list[Put]]) -> None:
        async with stream:
            async for batch in stream:
                await client.put_many(batch)

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(worker, receive.clone())
        receive.close()
        async with send:
            for batch in batches:
                await send.send(batch)


async def timed(run: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of `run()`."""
    cpu, wall = time.process_time(), time.monotonic()
    await run()
    return time.process_time() - cpu, time.monotonic() - wall


async def one_round(client: EtcdClient, prefix: bytes, keys: int, extra: list[list[Put]], work: str,
                    key: str | None, tag: str) -> dict[str, tuple[float, float, int]]:
    """Every phase once, into a new spool and repository; phase -> (CPU s, wall s, items)."""
    spool, repo_dir = os.path.join(work, f"spool-{tag}"), os.path.join(work, f"repo-{tag}")
    out: dict[str, tuple[float, float, int]] = {}
    counted: list[int] = []

    async def archive_once() -> None:
        async with etcd_archiving(client, prefix, spool, repo_dir, follow=False, key_file=key) as session:
            assert await session.follower.catch_up()
            counted.append(session.follower.commits)

    cpu, wall = await timed(archive_once)
    out["base load"] = (cpu, wall, keys)
    await put_batches(client, extra)
    cpu, wall = await timed(archive_once)
    out["watch"] = (cpu, wall, counted[-1])
    async with open_repository(repo_dir) as repo:
        if key is not None:
            await unlock(repo, read_key_file(key))
        results: list[EtcdRestoreResult] = []

        async def into_etcd() -> None:
            result = await restore_to_etcd(repo, client, EtcdRestoreOptions(
                target=RestoreTarget(latest=True), prefix=b"/bench-enc-restore/%s/%d/" % (tag.encode(), time.time_ns())))
            assert isinstance(result, EtcdRestoreResult)
            results.append(result)

        cpu, wall = await timed(into_etcd)
        out["restore into etcd"] = (cpu, wall, results[0].keys)

        async def into_directory() -> None:
            await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=os.path.join(work, f"dir-{tag}")))

        cpu, wall = await timed(into_directory)
        out["restore into a directory"] = (cpu, wall, results[0].keys)
    return out


async def main_async(endpoint: str, args: argparse.Namespace) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401 - imported once, before timing

    with tempfile.TemporaryDirectory(prefix="pitr-bench-etcd-enc-") as work:
        key = os.path.join(work, "key")
        create_key_file(key)
        best: dict[tuple[str, str], tuple[float, float, int]] = {}
        async with EtcdClient([endpoint]) as client:
            for repeat in range(args.repeats):
                for mode in (("plaintext", "encrypted") if repeat % 2 == 0 else ("encrypted", "plaintext")):
                    prefix = b"/bench-enc/%d/%s/" % (repeat, mode.encode())
                    base, extra = source_batches(prefix, args.keys, args.revisions)
                    await put_batches(client, base)
                    got = await one_round(client, prefix, args.keys, extra, work,
                                          key if mode == "encrypted" else None, f"{repeat}-{mode}")
                    for phase, (cpu, wall, items) in got.items():
                        previous = best.get((mode, phase))
                        if previous is None or cpu < previous[0]:
                            best[(mode, phase)] = (cpu, wall, items)
                        print(f"  repeat {repeat} {mode:<9} {phase:<26} {items:>8,} in {cpu:6.2f} CPU s "
                              f"({wall:6.2f} wall s)", flush=True)
    print(f"\nbest of {args.repeats} by CPU (this process's user + sys), wall beside:")
    for phase in PHASES:
        (p_cpu, p_wall, p_items), (e_cpu, e_wall, e_items) = best[("plaintext", phase)], best[("encrypted", phase)]
        unit = "revisions/s" if phase == "watch" else "keys/s"
        print(Figure(f"{phase}, encrypted (per CPU s)", unit, e_items / e_cpu, "plaintext", p_items / p_cpu,
                     target=0.9).line())
        print(f"    wall: encrypted {e_wall:.2f}s, plaintext {p_wall:.2f}s ({e_items:,} / {p_items:,} items)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", help="an etcd member (default: start one)")
    parser.add_argument("--keys", type=int, default=50_000, help="keys of the base load")
    parser.add_argument("--revisions", type=int, default=20_000, help="revisions archived from the watch")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with etcd_endpoint(args.endpoint) as endpoint:
        anyio.run(main_async, endpoint, args, backend="trio")


if __name__ == "__main__":
    main()
