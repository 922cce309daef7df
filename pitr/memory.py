"""The process's peak resident memory, as long operations report it."""

from __future__ import annotations

import resource


def peak_rss_bytes() -> int:
    """Peak resident set size of this process, in bytes.

    Linux's `VmHWM` when available: `ru_maxrss` survives `exec`, so a process
    started by a large parent would report the parent's peak instead of its own.
    """
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
