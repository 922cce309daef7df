"""A group's count is the number of records queued in it, single commits and runs alike."""

from __future__ import annotations

import threading

from pitr.store._group_commit import Group, GroupCommitter, LoopHooks
from segments import record as rec


class _Event:
    def __init__(self) -> None:
        self.flag = threading.Event()

    def set(self) -> None:
        self.flag.set()

    async def wait(self) -> None:
        raise AssertionError("not awaited here")


def test_every_frame_is_told_the_number_of_records_it_holds() -> None:
    written: list[tuple[int, int, int]] = []  # (records in the bytes, count told, last LSN told)
    durable: list[Group] = []

    def write(data: bytes, count: int, last_lsn: int) -> None:
        written.append((sum(1 for _ in rec.scan_spans(data)), count, last_lsn))

    committer = GroupCommitter(write, LoopHooks(lambda fn, *args: fn(*args), _Event), durable.append,
                               lambda group, exc: None)
    lsn = 0

    def encoded(n: int) -> list[bytes]:
        nonlocal lsn
        out = []
        for _ in range(n):
            lsn += 1
            out.append(rec.encode_single(lsn, lsn, rec.PUT, b"k", b"v"))
        return out

    committer.add(encoded(1)[0], lsn, lsn)
    committer.add_many(encoded(61), 61, lsn, lsn)
    committer.add(encoded(1)[0], lsn, lsn)
    committer.close()
    committer.run()  # writes what is queued, then returns (closed)
    committer = GroupCommitter(write, LoopHooks(lambda fn, *args: fn(*args), _Event), durable.append,
                               lambda group, exc: None)
    run = encoded(3)
    committer.add_many([piece for record in run for piece in (record[:10], record[10:])], 3, lsn, lsn)
    committer.add_many(encoded(1), 1, lsn, lsn)
    committer.close()
    committer.run()
    assert written == [(63, 63, 63), (4, 4, 67)]
    assert [group.count for group in durable] == [63, 4]
