"""The restore's read-ahead thread: order, errors where the consumer reaches them, and a clean stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pitr.restore.prefetch import prefetched


def test_items_arrive_in_order_and_complete() -> None:
    with prefetched(iter(range(1000)), depth=3) as items:
        assert list(items) == list(range(1000))


def test_an_error_is_raised_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("block 3 is damaged")

    seen: list[int] = []

    def consume() -> None:
        with prefetched(source(), depth=8) as items:
            seen.extend(items)

    with pytest.raises(ValueError, match="block 3 is damaged"):
        consume()
    assert seen == [1, 2]


def test_leaving_early_stops_the_reader_and_runs_its_cleanup() -> None:
    closed = threading.Event()
    produced = []

    def source() -> Iterator[int]:
        try:
            for i in range(1_000_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    before = threading.active_count()
    with prefetched(source(), depth=2) as items:
        for item in items:
            if item == 5:
                break
    assert closed.is_set(), "the source was closed when the block ended"
    assert threading.active_count() == before, "the reader thread is gone"
    assert len(produced) < 20, "the reader stopped instead of reading everything ahead"
