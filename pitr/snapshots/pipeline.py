"""Handing work to a thread in order, so that writing a snapshot overlaps reading the state.

The state's rows are read in the thread that holds the LMDB read view (py-lmdb: a transaction
belongs to its thread); checking, hashing (without the interpreter's lock), compressing and
writing the file happen in a second thread, a few batches behind. zstd and the compiled hashing
release the lock, so on two cores the two halves run side by side.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
_END = object()


@contextmanager
def handed_off(consume: Callable[[T], None], depth: int = 4) -> Iterator[Callable[[T], None]]:
    """``with handed_off(consume) as feed``: each `feed(item)` runs `consume(item)` in a thread, in
    order, at most `depth` items behind. An exception `consume` raises is raised by the next `feed`
    or when the block is left; leaving the block waits until every item fed is consumed, and an
    exception in the block stops the thread without consuming the rest. The item belongs to the
    thread once fed: the caller must not change it."""
    slots: queue.Queue[object] = queue.Queue(depth)
    failure: list[BaseException] = []
    stop = threading.Event()

    def run() -> None:
        while True:
            item = slots.get()
            if item is _END or stop.is_set():
                return
            if failure:
                continue  # drain: the producer sees the failure at its next feed
            try:
                consume(item)  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 - handed to the producer
                failure.append(exc)

    def feed(item: T) -> None:
        if failure:
            raise failure[0]
        slots.put(item)

    thread = threading.Thread(target=run, name="pitr-snapshot-writer", daemon=True)
    thread.start()
    try:
        yield feed
    except BaseException:
        stop.set()
        slots.put(_END)
        thread.join()
        raise
    slots.put(_END)
    thread.join()
    if failure:
        raise failure[0]
