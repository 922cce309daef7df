#!/usr/bin/env python3
"""What tamper evidence costs: the keyed chain's fold against the unkeyed one, and verifying signed
checkpoints (read, parse, Ed25519 check) from a local directory as `pitr verify --witness` does.

    .venv/bin/python tools/bench/checkpoints.py [--pieces N] [--checkpoints N]

CPU seconds (`time.process_time`) beside wall seconds, since the host may be shared.
Exit status is 0: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

import trio  # noqa: E402

from pitr.repo.checkpoints import Checkpoint, SigningKey, checkpoint_name, publish_checkpoint  # noqa: E402
from pitr.storage.local import LocalStorage  # noqa: E402
from pitr.verify.checkpoints import CheckpointReport, _read_checkpoints  # noqa: E402
from segments import chain  # noqa: E402


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pieces", type=int, default=200_000)
    parser.add_argument("--checkpoints", type=int, default=2_000)
    args = parser.parse_args()
    pieces = [chain.Piece(i * 10 + 1, i * 10 + 10, os.urandom(32)) for i in range(args.pieces)]
    start, key = os.urandom(32), os.urandom(32)
    for label, link_key in (("unkeyed fold", None), ("keyed fold", key)):
        cpu, wall = timed(lambda link_key=link_key: chain.fold(start, pieces, link_key))
        print(f"{label:14} {args.pieces:,} pieces: {cpu:.3f} s CPU, {wall:.3f} s wall, "
              f"{cpu / args.pieces * 1e6:.2f} µs CPU a piece")
    store_id, signer = uuid.uuid4(), SigningKey(os.urandom(32), "bench")
    with tempfile.TemporaryDirectory(prefix="pitr-bench-ckpt-") as root:
        storage = LocalStorage(root)

        async def publish() -> None:
            for lsn in range(1, args.checkpoints + 1):
                signed = signer.sign(Checkpoint(store_id, lsn, lsn, os.urandom(32), os.urandom(32)))
                await publish_checkpoint(storage, checkpoint_name(lsn), signed, checkpoint_name(lsn))

        cpu, wall = timed(lambda: trio.run(publish))
        print(f"sign+publish   {args.checkpoints:,} checkpoints: {cpu:.3f} s CPU, {wall:.3f} s wall, "
              f"{cpu / args.checkpoints * 1e3:.3f} ms CPU each")
        report = CheckpointReport()

        async def check() -> None:
            await _read_checkpoints(storage, "", "", store_id, signer.public_key, report)

        cpu, wall = timed(lambda: trio.run(check))
        assert report.checked == args.checkpoints
        assert not report.findings
        print(f"verify         {args.checkpoints:,} checkpoints: {cpu:.3f} s CPU, {wall:.3f} s wall, "
              f"{cpu / args.checkpoints * 1e3:.3f} ms CPU each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
