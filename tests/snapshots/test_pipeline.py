"""Writing a snapshot in a second thread (`pitr.snapshots.pipeline.handed_off`): every batch is
consumed, in order, before the block ends; a failure of the writer reaches the reader; a failure of
the reader stops the writer."""

from __future__ import annotations

import threading
import time

import pytest

from pitr.snapshots.pipeline import handed_off


def test_every_item_is_consumed_in_order_in_another_thread() -> None:
    seen: list[tuple[int, str]] = []
    with handed_off(lambda item: seen.append((item, threading.current_thread().name))) as feed:
        for i in range(100):
            feed(i)
    assert [i for i, _name in seen] == list(range(100)), "all consumed before the block ends, in order"
    assert {name for _i, name in seen} == {"pitr-snapshot-writer"}


def test_a_failure_of_the_consumer_is_raised_in_the_producer() -> None:
    def consume(item: int) -> None:
        if item == 3:
            raise OSError(28, "No space left on device")

    fed = 0
    with pytest.raises(OSError, match="No space left"), handed_off(consume) as feed:  # noqa: PT012
        for i in range(10_000):
            feed(i)
            fed += 1
    assert fed < 10_000, "a later feed raised it: the reader stops reading"


def test_a_failure_at_the_last_item_is_raised_when_the_block_is_left() -> None:
    def consume(item: int) -> None:
        if item == 9:
            raise ValueError("bad entry")

    with pytest.raises(ValueError, match="bad entry"), handed_off(consume) as feed:  # noqa: PT012
        for i in range(10):
            feed(i)


def test_a_failure_of_the_producer_stops_the_consumer() -> None:
    seen: list[int] = []

    def consume(item: int) -> None:
        time.sleep(0.05)
        seen.append(item)

    with pytest.raises(RuntimeError, match="reader failed"), handed_off(consume, depth=2) as feed:  # noqa: PT012
        for i in range(5):
            feed(i)
        raise RuntimeError("reader failed")
    assert not any(t.name == "pitr-snapshot-writer" for t in threading.enumerate()), "the thread has stopped"
    assert seen == list(range(len(seen)))
    assert len(seen) < 5, "what was still queued is not written after the reader failed"
