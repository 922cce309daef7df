"""Pausing Python's cyclic garbage collector around bulk work that builds millions of objects.

A restore or a bulk load allocates millions of short-lived tuples beside
millions of long-lived ones; each full collection then walks them all, which
can double the time of the load. This work creates no reference cycles, so
the collector is paused for its duration and resumed after (nesting and
threads are counted: it resumes when the last pause ends).
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
