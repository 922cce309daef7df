"""Crash the writer under load, again and again, and check that every acknowledged commit survives.

tests/helpers/load_writer.py runs 64 concurrent writers against one store and
reports each commit only after it was acknowledged. Each round SIGKILLs it at a
random moment (a few rounds during recovery itself), reusing the same data
directory, so recovery repairs what the previous crash left. At the end the WAL
must hold dense LSNs from 1, every acknowledged commit exactly as reported, and
the store's state must be the fold of the log.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pitr.store import Store
from segments.record import PUT
from tests.store.support import wal_records

WRITER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "helpers", "load_writer.py")
ROUNDS = 20
WRITERS = 64

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


def run_and_kill(data: str, run: int, out: Path, rng: random.Random) -> list[str]:
    """Start the writer, SIGKILL it at a random moment, return its complete output lines."""
    during_recovery = run > 1 and rng.random() < 0.15
    with open(out, "wb") as fh:
        proc = subprocess.Popen([sys.executable, WRITER, data, str(run), str(WRITERS)], stdout=fh,
                                stderr=subprocess.PIPE)
    try:
        if during_recovery:
            time.sleep(rng.uniform(0.15, 0.35))  # interpreter start-up is ~0.25 s; open follows it
        else:
            deadline = time.monotonic() + 30
            while b"\n" not in out.read_bytes():
                assert proc.poll() is None, f"writer failed to open the store:\n{proc.stderr.read().decode()}"  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "writer did not open the store"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.02, 0.25))
        if proc.poll() is not None:
            raise AssertionError(f"writer exited by itself ({proc.returncode}):\n"
                                 f"{proc.stderr.read().decode()}")  # type: ignore[union-attr]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()  # type: ignore[union-attr]
    text = out.read_bytes().decode()
    return text.split("\n")[:-1]  # a last line without its newline was cut by the kill


async def test_sigkill_under_load_loses_no_acknowledged_commit(tmp_path: Path, random_seed: int) -> None:
    data = str(tmp_path / "data")
    rng = random.Random(random_seed)  # when each round is killed; PITR_TEST_SEED replays it
    acknowledged: dict[int, dict[bytes, bytes]] = {}
    opened = 0
    last_ready = 0
    for run in range(1, ROUNDS + 1):
        lines = run_and_kill(data, run, tmp_path / f"run{run}.out", rng)
        if not lines:
            continue
        ready, last, _torn = lines[0].split()
        assert ready == "ready"
        assert int(last) >= max(acknowledged, default=0), "recovery lost acknowledged commits"
        assert int(last) >= last_ready
        last_ready = int(last)
        opened += 1
        for line in lines[1:]:
            lsn, *pairs = line.split(" ")
            ops = dict(pair.split("=") for pair in pairs)
            assert int(lsn) not in acknowledged, f"LSN {lsn} acknowledged twice"
            acknowledged[int(lsn)] = {bytes.fromhex(k): bytes.fromhex(v) for k, v in ops.items()}
    assert opened >= ROUNDS // 2, "too few rounds opened the store"
    assert len(acknowledged) > 1000, "the rounds did too little to mean much"

    async with Store(data) as store:
        records = list(wal_records(data))
        assert [r.lsn for r in records] == list(range(1, store.last_lsn + 1)), "LSNs are dense from 1"
        assert all(a.ts_ns < b.ts_ns for a, b in zip(records, records[1:], strict=False)), \
            "commit times strictly increase"
        by_lsn = {r.lsn: r for r in records}
        for lsn, ops in acknowledged.items():
            assert lsn in by_lsn, f"acknowledged LSN {lsn} is gone"
            assert {op.key: op.value for op in by_lsn[lsn].ops} == ops, f"LSN {lsn} holds another commit"
        state: dict[bytes, bytes] = {}
        for record in records:
            for op in record.ops:
                if op.kind == PUT:
                    state[op.key] = op.value
                else:
                    state.pop(op.key, None)
        assert await store.scan() == sorted(state.items()), "the state is the fold of the log"
