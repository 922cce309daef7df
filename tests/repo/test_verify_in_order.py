"""Verify checks files two at a time and takes their results in the files' order: a fast file after a
slow one waits, no more than FILES_AT_ONCE checks run or are held at once, and a failing check closes
the sources of the files checked ahead of it."""

from __future__ import annotations

import random

import pytest
import trio

from pitr.verify.repository import FILES_AT_ONCE, _Checked, _in_order


class Source:
    def __init__(self, name: str) -> None:
        self.name, self.size, self.closed = name, 0, False

    def read(self, offset: int, length: int) -> bytes:
        return b""

    def close(self) -> None:
        self.closed = True


def test_results_come_in_order_with_a_bounded_window(random_seed: int) -> None:
    rng = random.Random(random_seed)
    todo = [(f"f{i}", i % 3 != 0) for i in range(40)]
    delays = {name: rng.choice([0, 0.001, 0.005]) for name, _seg in todo}
    running = peak = 0
    taken: list[str] = []

    async def check(name: str, is_segment: bool) -> _Checked:
        nonlocal running, peak
        running += 1
        peak = max(peak, running + len(taken_pending))
        await trio.sleep(delays[name])
        running -= 1
        taken_pending.add(name)
        return _Checked(name, Source(name), segment=(None, None, None, None) if is_segment else None,
                        snapshot=None if is_segment else (None, None))

    taken_pending: set[str] = set()

    def take(checked: _Checked) -> None:
        taken_pending.discard(checked.name)
        taken.append(checked.name)

    trio.run(_in_order, todo, check, take)
    assert taken == [name for name, _seg in todo]
    assert peak <= FILES_AT_ONCE


def test_a_failing_check_closes_what_was_checked_ahead() -> None:
    opened: list[Source] = []

    async def check(name: str, is_segment: bool) -> _Checked:
        if name == "f0":
            await trio.sleep(0.01)  # the second file is checked while the first is still running
            raise OSError("disk on fire")
        source = Source(name)
        opened.append(source)
        return _Checked(name, source, segment=(None, None, None, None))

    with pytest.raises(OSError, match="disk on fire"):
        trio.run(_in_order, [("f0", True), ("f1", True)], check, lambda checked: None)
    assert opened
    assert all(source.closed for source in opened)
