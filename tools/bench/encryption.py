#!/usr/bin/env python3
"""Encrypted against plaintext archive segments, in the same run (issue 14: encrypted >= 0.9x plaintext).

    .venv/bin/python tools/bench/encryption.py [--records N] [--repeats R]

- Archiving's share that encryption changes: `seal_segment` with the repository's keys (every block
  sealed with AES-256-GCM, keyed piece digests) against `seal_segment` without them, same records.
- Restoring's and verifying's: reading every block back with every check (`checked_runs` with
  verification, what a restore reads, and `verify_blocks`, what `pitr verify` reads), sealed against
  plaintext.

Rates are MB of records per CPU second (`time.process_time`, best of alternating repeats), so the other
guests of a busy host do not inflate them. The data is the op log of tools/bench/segments.py.
Exit status is 0 even when a target is missed: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
import time

# Run as a script, this file's directory comes first on sys.path and its name would hide the package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

from pitr.crypto import DataKey  # noqa: E402
from segments import BytesSource, SegmentReader, genesis, read_meta, seal_segment  # noqa: E402
from segments import record as rec  # noqa: E402
from segments.block_seal import SegmentKeys  # noqa: E402
from segments.checked_runs import checked_runs  # noqa: E402
from segments.segment_reader import verify_blocks  # noqa: E402

sys.path.append(_HERE)
from _common import Figure, summary  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
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
    return summary(figures, started)


if __name__ == "__main__":
    sys.exit(main())
