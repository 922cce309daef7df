"""Pausing Python's cyclic garbage collector around bulk work that builds millions of objects.

A restore or a bulk load allocates millions of short-lived tuples beside
millions of long-lived ones; each full collection then walks them all, which
add to the time of the load. This work creates no reference cycles, so the
collector may be paused for its duration and resumed after (nesting and
threads are counted: it resumes when the last pause ends).

The collector is the whole process's: library code pauses it only when its
caller asks (`RestoreOptions(pause_gc=True)`); the command line, which owns
its process, does.
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
