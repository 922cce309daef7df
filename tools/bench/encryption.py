#!/usr/bin/env python3
"""Encrypted against plaintext archive segments, in the same run (issue 14: encrypted >= 0.9x plaintext).

    .venv/bin/python tools/bench/encryption.py [--records N] [--repeats R]

- Archiving's share that encryption changes: `seal_segment` with the repository's keys (every block
  sealed with AES-256-GCM, keyed piece digests) against `seal_segment` without them, same records.
- Restoring's and verifying's: reading every block back with every check (`checked_runs` with
  verification, what a restore reads, and `verify_blocks`, what `pitr verify` reads), sealed against
  plaintext.

- Snapshots: `SnapshotWriter` and a full read (`read_block` + `block_changes`, what a restore loads)
  of the same state, sealed against plaintext.
- End to end (`--commits N`, default 100,000; 0 skips it): one store (filled with `pitr import`),
  then as whole processes `pitr archive` into a new repository, `pitr snapshot`, and `pitr restore
  --latest`, with `--encrypt --key-file` against without, alternating; CPU seconds are the process's
  and its reaped workers' (user + sys, from wait4), wall seconds beside them.

Rates are MB of records per CPU second (`time.process_time`, best of alternating repeats), so the other
guests of a busy host do not inflate them. The data is the op log of tools/bench/segments.py.
Exit status is 0 even when a target is missed: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid

# Run as a script, this file's directory comes first on sys.path and its name would hide the package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

from pitr.crypto import DataKey  # noqa: E402
from segments import BytesSource, SegmentReader, genesis, read_meta, seal_segment  # noqa: E402
from segments import record as rec  # noqa: E402
from segments.block_seal import SegmentKeys  # noqa: E402
from segments.checked_runs import checked_runs  # noqa: E402
from segments.segment_reader import verify_blocks  # noqa: E402
from segments.snapshot import SnapshotHeader, SnapshotReader, SnapshotWriter  # noqa: E402

sys.path.append(_HERE)
from _common import Figure, run_timed, summary  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_segments", os.path.join(_HERE, "segments.py"))
assert _spec is not None
assert _spec.loader is not None
bench_segments = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_segments)
STORE_ID, timed_pair, op_log = bench_segments.STORE_ID, bench_segments.timed_pair, bench_segments.op_log


def seal(buf: bytes, spans: list[rec.Span], keys: SegmentKeys | None) -> bytes:
    out = io.BytesIO()
    seal_segment(out, STORE_ID, genesis(STORE_ID), buf, spans, spans[-1].ts_ns, keys=keys)
    return out.getvalue()


def read_all(blob: bytes, keys: SegmentKeys | None) -> None:
    reader = SegmentReader(BytesSource(blob), keys=keys)
    for _run in checked_runs(reader, 0, len(reader.meta.index), verify=True):
        pass


def verify_all(blob: bytes, keys: SegmentKeys | None) -> None:
    source = BytesSource(blob)
    for _block in verify_blocks(source, read_meta(source), keys=keys):
        pass


def snapshot_entries(count: int) -> list[tuple[bytes, bytes, int | None]]:
    rng = random.Random(7)
    return [(b"key/%012d" % i, rng.randbytes(40) + b"v" * 60, None) for i in range(count)]


def write_snapshot(entries: list[tuple[bytes, bytes, int | None]], keys: SegmentKeys | None) -> bytes:
    out = io.BytesIO()
    writer = SnapshotWriter(out, SnapshotHeader(uuid.uuid4(), 1, 1, bytes(32), 0, 0, 1, {}), keys=keys)
    writer.add_many(entries)
    writer.finish()
    return out.getvalue()


def load_snapshot(blob: bytes, keys: SegmentKeys | None) -> None:
    reader = SnapshotReader(BytesSource(blob), keys=keys)
    for i in range(len(reader.blocks)):
        reader.block_changes(i, reader.read_block(i))


def pitr(*argv: str) -> list[str]:
    return [sys.executable, "-m", "pitr", *argv]


def end_to_end(commits: int, repeats: int) -> list[Figure]:
    """`pitr archive`, `pitr snapshot` and `pitr restore` as whole processes, encrypted against plaintext."""
    work = tempfile.mkdtemp(prefix="bench-encryption-")
    try:
        data, key = os.path.join(work, "data"), os.path.join(work, "key")
        rng = random.Random(11)
        lines = os.path.join(work, "commits.jsonl")
        with open(lines, "w") as fh:
            for i in range(commits):
                fh.write(json.dumps({"op": "put", "key": f"user/{rng.randrange(commits // 2):09d}/{i % 7}",
                                     "value": rng.randbytes(60).hex()}) + "\n")
        run_timed(pitr("put", "--data", data, "seed", "s"), scratch=work)
        run_timed(pitr("import", lines, "--data", data), scratch=work)
        run_timed(pitr("key", "create", key), scratch=work)
        steps = ("archive", "snapshot", "restore")
        cpu: dict[tuple[str, bool], float] = {}
        wall: dict[tuple[str, bool], float] = {}
        for trial in range(repeats):
            for encrypted in ((True, False) if trial % 2 == 0 else (False, True)):
                repo = os.path.join(work, f"repo-{trial}-{encrypted}")
                key_args = ["--key-file", key] if encrypted else []
                commands = {
                    "archive": pitr("archive", "--data", data, "--repo", repo, *(["--encrypt"] if encrypted else []),
                                    *key_args),
                    "snapshot": pitr("snapshot", "--data", data, "--repo", repo, *key_args),
                    "restore": pitr("restore", "--repo", repo, "--latest", "--dest", repo + "-restored", *key_args),
                }
                for step in steps:
                    run = run_timed(commands[step], scratch=work)
                    for table, value in ((cpu, run.cpu_seconds), (wall, run.seconds)):
                        table[(step, encrypted)] = min(table.get((step, encrypted), float("inf")), value)
                shutil.rmtree(repo)
                shutil.rmtree(repo + "-restored")
        figures = []
        for step in steps:
            name = f"pitr {step}, {commits:,} commits, encrypted"
            figures.append(Figure(name, "commits/CPU s", commits / cpu[(step, True)],
                                  name.replace("encrypted", "plaintext"), commits / cpu[(step, False)], 0.9))
            print(figures[-1].line() + f"  (wall {wall[(step, True)]:.2f} s vs {wall[(step, False)]:.2f} s, "
                  f"CPU {cpu[(step, True)]:.2f} s vs {cpu[(step, False)]:.2f} s)", flush=True)
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--snapshot-entries", type=int, default=200_000)
    parser.add_argument("--commits", type=int, default=100_000, help="end-to-end commits (0: skip)")
    parser.add_argument("--end-to-end-repeats", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    buf = b"".join(op_log(args.records))
    spans = list(rec.scan_spans(buf))
    mb = len(buf) / 1e6
    keys = DataKey.new().segment_keys()
    sealed, plain = seal(buf, spans, keys), seal(buf, spans, None)
    print(f"{args.records:,} records, {mb:.1f} MB; segment {len(plain) / 1e6:.1f} MB plaintext, "
          f"{len(sealed) / 1e6:.1f} MB sealed", flush=True)
    figures = []
    for name, ours, raw in [
        ("seal_segment, sealed", lambda: seal(buf, spans, keys), lambda: seal(buf, spans, None)),
        ("restore read (checked_runs), sealed", lambda: read_all(sealed, keys), lambda: read_all(plain, None)),
        ("verify_blocks, sealed", lambda: verify_all(sealed, keys), lambda: verify_all(plain, None)),
    ]:
        t_ours, t_raw = timed_pair(ours, raw, args.repeats, clock=time.process_time)
        figure = Figure(name, "MB/CPU s", mb / t_ours, name.replace("sealed", "plaintext"), mb / t_raw, 0.9)
        figures.append(figure)
        print(figure.line(), flush=True)
    entries = snapshot_entries(args.snapshot_entries)
    snap_mb = sum(len(k) + len(v) for k, v, _ in entries) / 1e6
    sealed_snap, plain_snap = write_snapshot(entries, keys), write_snapshot(entries, None)
    for name, ours, raw in [
        ("SnapshotWriter, sealed", lambda: write_snapshot(entries, keys), lambda: write_snapshot(entries, None)),
        ("snapshot load (read_block + block_changes), sealed", lambda: load_snapshot(sealed_snap, keys),
         lambda: load_snapshot(plain_snap, None)),
    ]:
        t_ours, t_raw = timed_pair(ours, raw, args.repeats, clock=time.process_time)
        figure = Figure(name, "MB/CPU s", snap_mb / t_ours, name.replace("sealed", "plaintext"), snap_mb / t_raw, 0.9)
        figures.append(figure)
        print(figure.line(), flush=True)
    if args.commits:
        figures.extend(end_to_end(args.commits, args.end_to_end_repeats))
    return summary(figures, started)


if __name__ == "__main__":
    sys.exit(main())
