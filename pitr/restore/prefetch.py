"""Running an iterator of file reads ahead in a thread, so decompression overlaps the replay.

zstd decompression and CRC-32C release the GIL, so a reader thread that
decompresses the next blocks while the replay loop folds the current one
uses the second core for the part of a restore that is not Python code.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
_END = object()


@contextmanager
def prefetched(items: Iterator[T], depth: int = 8) -> Iterator[Iterator[T]]:
    """``with prefetched(items) as it``: `items` produced in a thread, at most `depth` ahead.

    An exception raised by `items` is raised where the consumer reaches it.
    Leaving the block stops the thread and waits for it, so nothing reads a
    file after the caller closes it.
    """
    slots: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(depth)
    stop = threading.Event()

    def offer(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            offer((_END, exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's own cleanup runs here, in the thread that ran it
        offer((_END, None))

    def consume() -> Iterator[T]:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item  # type: ignore[misc]

    thread = threading.Thread(target=produce, name="pitr-prefetch", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()
