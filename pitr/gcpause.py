"""Pausing Python's cyclic garbage collector around bulk work, and freezing a program's start-up.

A restore or a bulk load allocates millions of short-lived tuples beside
millions of long-lived ones; each full collection then walks them all, which
add to the time of the load. This work creates no reference cycles, so the
collector may be paused for its duration and resumed after (nesting and
threads are counted: it resumes when the last pause ends).

The collector is the whole process's: library code pauses it only when its
caller asks (`RestoreOptions(pause_gc=True)`); the command line, which owns
its process, does.

`freeze_long_lived()` is for a latency-minded program (a store with writers on
its event loop): called once its start-up is done, it moves every object alive
then out of the collector's reach, so each later full collection walks only
what was made since instead of the ~30,000 objects importing trio and pitr
leaves (about 20 ms of the event loop's time per full collection on a 2-core
machine). The library never calls it on its own (docs/decisions.md, "The
cyclic GC and the event loop's stalls").
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


def freeze_long_lived() -> int:
    """Collect once, then freeze every object alive (`gc.freeze()`); returns how many are frozen.

    Frozen objects are still freed by reference counting; only a reference cycle among them is
    never collected (`gc.unfreeze()` hands them back). Call it after the imports and the set-up
    that live as long as the program, not in a loop: each call freezes what is alive then.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
