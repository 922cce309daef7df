"""The single-put hot path (`Store._sequence_put`) against the general commit path it shortcuts."""

from __future__ import annotations

import os
import tempfile

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitr.store import Store
from segments.record import PUT, Op
from segments.wal import scan_wal
from tests.store.support import SECOND, FakeClock

keys = st.binary(min_size=1, max_size=40)
values = st.binary(max_size=300)


def raw_records(data_dir: str) -> list[bytes]:
    """The bytes of every record in a store's WAL, in LSN order."""
    wal_dir = os.path.join(data_dir, "wal")
    out = []
    for name in sorted(n for n in os.listdir(wal_dir) if n.endswith(".wal")):
        path = os.path.join(wal_dir, name)
        scan = scan_wal(path)
        with open(path, "rb") as fh:
            data = fh.read(scan.end)
        out.extend(data[span.start:span.end] for span in scan.spans)
    return out


async def write(data_dir: str, puts: list[tuple[bytes, bytes]], hot: bool) -> dict[bytes, bytes | None]:
    clock = FakeClock()
    async with Store(data_dir, clock=clock) as store:
        for key, value in puts:
            clock.advance(SECOND)
            commit = await store.put(key, value) if hot else await store.commit([Op(PUT, key, value, None)])
            assert commit.ts_ns == clock.now
        return {key: await store.get(key) for key, _ in puts}


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(keys, values), min_size=1, max_size=30))
def test_the_single_put_path_logs_and_shows_what_the_general_path_does(puts: list[tuple[bytes, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hot_dir, general_dir = os.path.join(tmp, "hot"), os.path.join(tmp, "general")
        hot_reads = trio.run(write, hot_dir, puts, True)
        general_reads = trio.run(write, general_dir, puts, False)
        assert hot_reads == general_reads == {key: value for key, value in puts}
        assert raw_records(hot_dir) == raw_records(general_dir)
