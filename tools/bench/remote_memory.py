#!/usr/bin/env python3
"""Peak memory of a cold restore from S3 as the plan grows: 1x and 10x the commits, same state size.

    .venv/bin/python tools/bench/remote_memory.py [--commits N] [--scale S] [--keys K] [--dir DIR]

Two histories of N and S*N single-put commits (100-byte values) over the same K
keys are written straight into the bucket directory of `rclone serve s3` (sealed
segments of 65,536 commits, an identity, a watermark), so both restores build
the same final state and differ only in how many objects their plans hold. Each
is restored by the whole `pitr restore --latest` command from
`s3://bench/<history>` with a new, empty cache directory, after `os.sync()` (and
with the page cache dropped when run as root); the command's own peak RSS
(`VmHWM`, in its --json output) is the figure. A restore that streams each
object into the cache and reads it from there shows the same peak for both; one
that held the objects would grow by the objects' size (shown beside it).

Exit status is 0 whatever the figures: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import trio

# Run as a script, this file's directory comes first on sys.path and its name would hide the package.
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
sys.path.insert(0, _ROOT)

from pitr.repo.identity import RepoIdentity, Watermark  # noqa: E402
from pitr.repo.repository import open_repository  # noqa: E402
from segments import chain, seal_segment  # noqa: E402
from segments import record as rec  # noqa: E402
from segments.naming import segment_name  # noqa: E402
from tests.servers.s3 import ACCESS_KEY, BUCKET, INSTALL_COMMAND, SECRET_KEY, S3Server, find_rclone  # noqa: E402

TS0 = 1_795_961_387_000_000_000
SEGMENT_COMMITS = 65_536
MIX = 0x9E3779B97F4A7C15


def write_segments(root: str, store_id: uuid.UUID, commits: int, keys: int) -> int:
    """Chained segments of `commits` single puts over `keys` keys under root/segments; their bytes."""
    os.makedirs(os.path.join(root, "segments"), exist_ok=True)
    digest = chain.genesis(store_id)
    total = 0
    buf = bytearray()
    spans: list[rec.Span] = []
    for lsn in range(1, commits + 1):
        noise = (lsn * MIX) % (1 << 64)
        value = b'{"lsn":%d,"id":"%016x","pad":"%s"}' % (lsn, noise, b"%064x" % (noise * noise))
        start = len(buf)
        ts = TS0 + lsn * 1_000
        buf += rec.encode_single(lsn, ts, rec.PUT, b"key:%08d" % ((lsn * 2_654_435_761) % keys), value[:100])
        spans.append(rec.Span(lsn, ts, start, len(buf)))
        if len(spans) == SEGMENT_COMMITS or lsn == commits:
            path = os.path.join(root, "segments", segment_name(spans[0].lsn, lsn))
            with open(path, "wb") as fh:
                digest = seal_segment(fh, store_id, digest, bytes(buf), spans, ts).chain_digest
            total += os.path.getsize(path)
            buf, spans = bytearray(), []
    return total


async def build(root: str, commits: int, keys: int) -> int:
    store_id = uuid.uuid4()
    async with open_repository(root, create=True) as repo:
        await repo.claim(RepoIdentity(store_id, "bench", TS0, 1, chain.genesis(store_id)))
    size = write_segments(root, store_id, commits, keys)
    async with open_repository(root) as repo:
        await repo.write_watermark(Watermark(store_id, commits, TS0 + commits * 1_000 + 1_000_000_000))
    return size


def cold() -> None:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
    except OSError:
        pass  # not root: the page cache stays


def _status_kib(pid: int) -> dict[str, int]:
    """RssAnon / RssFile / VmHWM of a running process, in KiB (empty once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in fh)
                    if k in ("RssAnon", "RssFile", "VmHWM")}
    except (OSError, ValueError):
        return {}


def restore_from_s3(url: str, endpoint: str, work: str, cache: str) -> dict[str, float]:
    """One whole `pitr restore --latest` from S3 into a new directory, with the cache directory `cache`.

    Besides the command's own peak RSS, its anonymous and file-backed resident memory are
    sampled every 20 ms: file-backed pages are the LMDB maps (catalog, state being built), which
    the kernel may drop at any time; anonymous memory is what the process holds."""
    dest = os.path.join(work, f"restored-{time.monotonic_ns()}")
    cold()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pitr", "restore", "--latest", "--repo", url, "--s3-endpoint",
                             endpoint, "--cache-dir", cache, "--dest", dest, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    anon = file_backed = 0
    while proc.poll() is None:
        status = _status_kib(proc.pid)
        anon, file_backed = max(anon, status.get("RssAnon", 0)), max(file_backed, status.get("RssFile", 0))
        time.sleep(0.02)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"pitr restore from {url} exited {proc.returncode}:\n{stderr}")
    out = json.loads(stdout)
    subprocess.run(["rm", "-rf", dest], check=True)
    return {"seconds": seconds, "rss_mb": out["peak_rss_bytes"] / 2**20, "commits": out["lsn"],
            "anon_mb": anon / 1024, "file_mb": file_backed / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=1_000_000, help="the 1x plan (default 1,000,000)")
    parser.add_argument("--scale", type=int, default=10, help="the larger plan is this many times the first")
    parser.add_argument("--keys", type=int, default=100_000, help="keys of both histories (default 100,000)")
    parser.add_argument("--dir", default=None, help="work directory (default: the system temp dir)")
    args = parser.parse_args()
    binary = find_rclone()
    if binary is None:
        print(f"rclone is not installed; install it with: {INSTALL_COMMAND}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-remote-memory-", dir=args.dir) as root:
        os.environ.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                           "AWS_CONFIG_FILE": os.path.join(root, "none"), "AWS_EC2_METADATA_DISABLED": "true",
                           "AWS_SHARED_CREDENTIALS_FILE": os.path.join(root, "none")})
        plans = []
        for scale in (1, args.scale):  # written before the server starts: rclone caches its listings
            commits, name = args.commits * scale, f"plan-{scale}x"
            started = time.perf_counter()
            size = trio.run(build, os.path.join(root, "s3", "data", BUCKET, name), commits, args.keys)
            print(f"{name}: {commits:,} commits over {args.keys:,} keys, {size / 2**20:,.1f} MiB of segments "
                  f"(written in {time.perf_counter() - started:.0f} s)", flush=True)
            plans.append((scale, commits, size, name))
        server = S3Server(binary, os.path.join(root, "s3"))
        server.start()
        try:
            results = []
            for scale, commits, size, name in plans:
                cache = tempfile.mkdtemp(dir=root)
                for phase in ("new cache", "catalog kept"):
                    if phase == "catalog kept":  # the objects must be downloaded again, the catalog not rebuilt
                        for dirpath, _dirs, files in os.walk(cache):
                            for file in files:
                                if file.endswith((".seg", ".snap")):
                                    os.unlink(os.path.join(dirpath, file))
                    got = restore_from_s3(f"s3://{server.bucket}/{name}", server.endpoint, root, cache)
                    assert got["commits"] == commits, got
                    results.append((scale, phase, size, got))
                    print(f"{name}, {phase}: pitr restore --latest from S3, cold: {got['seconds']:.1f} s, peak RSS "
                          f"{got['rss_mb']:,.0f} MiB (sampled peaks: anonymous {got['anon_mb']:,.0f} MiB, "
                          f"file-backed {got['file_mb']:,.0f} MiB)", flush=True)
        finally:
            server.stop()
    for phase in ("new cache", "catalog kept"):
        (_, _, size1, first), (scale, _, size_n, last) = [r for r in results if r[1] == phase]
        print(f"{phase}: peak RSS {scale}x / 1x plan {last['rss_mb'] / first['rss_mb']:.2f} "
              f"({first['rss_mb']:,.0f} -> {last['rss_mb']:,.0f} MiB), anonymous "
              f"{last['anon_mb'] / first['anon_mb']:.2f} ({first['anon_mb']:,.0f} -> {last['anon_mb']:,.0f} MiB); "
              f"segments {size_n / size1:.1f}x ({size1 / 2**20:,.0f} -> {size_n / 2**20:,.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
