"""`pitr import` SIGKILLed midway: everything it said was committed is in the store, as it said.

The import runs as its own process with `--progress`, which prints a line only
after a run of lines is durable. It is killed at a random moment (during the
checking pass too, when nothing may be committed yet). Reopened, the store must
hold every LSN up to the last one reported, each with its line's key and value
(a fresh store and one put per line: line i is LSN i).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pitr.store import Store
from tests.store.support import wal_records

LINES = 60_000
ROUNDS = 3
PROGRESS = re.compile(r"^pitr import: committed through line (\d+) \(LSN (\d+)\)$")

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


def line_of(i: int) -> tuple[bytes, bytes]:
    return f"key-{i:07d}".encode(), f"value-{i:07d}-".encode() * 6


def kill_midway(src: Path, data: str, rng: random.Random) -> tuple[int, int]:
    """Run the import, SIGKILL it after a random number of progress lines (maybe none); returns the
    last (line, LSN) it reported committed, (0, 0) if none."""
    wanted = rng.randrange(0, 6)
    proc = subprocess.Popen([sys.executable, "-m", "pitr", "import", str(src), "--data", data, "--progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    last = (0, 0)
    try:
        if wanted == 0:
            time.sleep(rng.uniform(0.3, 1.5))  # start-up or the checking pass
        else:
            seen = 0
            for text in proc.stderr:
                match = PROGRESS.match(text.strip())
                assert match is not None, f"unexpected output: {text!r}"
                last = int(match[1]), int(match[2])
                seen += 1
                if seen >= wanted:
                    break
        proc.send_signal(signal.SIGKILL)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Lines printed before the kill landed are acknowledged too: the last complete one counts.
    for text in rest.splitlines():
        match = PROGRESS.match(text.strip())
        if match is not None:
            last = int(match[1]), int(match[2])
    return last


def write_source(src: Path) -> Path:
    with open(src, "w") as fh:
        for i in range(1, LINES + 1):
            key, value = line_of(i)
            fh.write(json.dumps({"op": "put", "key": key.decode(), "value": value.decode()}) + "\n")
    return src


def has_wal(data: str) -> bool:
    """Whether the import got as far as creating the store (a kill during start-up may precede it)."""
    return os.path.exists(os.path.join(data, "wal"))


async def test_a_killed_import_keeps_every_line_it_reported_committed(tmp_path: Path, random_seed: int) -> None:
    rng = random.Random(random_seed)  # when each round is killed; PITR_TEST_SEED replays it
    src = write_source(tmp_path / "in.jsonl")
    for round_ in range(ROUNDS):
        data = str(tmp_path / f"data{round_}")
        last_line, last_lsn = kill_midway(src, data, rng)
        assert last_line == last_lsn, "one commit per line, from LSN 1"
        if not has_wal(data):
            assert last_lsn == 0
            continue
        async with Store(data) as store:
            assert store.last_lsn >= last_lsn, "an acknowledged commit is gone"
            records = {r.lsn: r for r in wal_records(data)}
            for lsn in range(1, last_lsn + 1):
                key, value = line_of(lsn)
                assert lsn in records, f"acknowledged LSN {lsn} is not in the WAL"
                assert [(op.key, op.value) for op in records[lsn].ops] == [(key, value)], f"LSN {lsn}"
            for lsn in sorted({1, last_lsn // 2, last_lsn}) if last_lsn else ():
                key, value = line_of(lsn)
                assert await store.get(key) == value
