"""How a store runs: typed, validated at construction (like `RestoreOptions`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pitr.errors import InvalidArgument

WAL_FILE_SIZE = 64 << 20
MAX_CLOCK_SKEW = 300.0  # seconds an explicit commit time may lie ahead of the store's clock


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreOptions:
    """`name` names a store it creates (default: the directory's name); without `create` a missing
    store is an error. A WAL file is closed and the next started past `wal_file_size` bytes. The
    apply task writes acknowledged commits to LMDB every `apply_interval` seconds, or sooner once
    `apply_threshold` keys are pending. With `require_archive` a WAL file is deleted only once every
    repository archiving the store holds it. `max_clock_skew` (seconds) bounds how far an explicit
    commit time may lie ahead of the clock (`math.inf` trusts every time). `lock_wait` (seconds) is
    how long opening waits for another process to release the writer lock (0: refuse at once)."""

    name: str | None = None
    create: bool = True
    wal_file_size: int = WAL_FILE_SIZE
    apply_interval: float = 0.2
    apply_threshold: int = 500_000
    require_archive: bool = True
    max_clock_skew: float = MAX_CLOCK_SKEW
    lock_wait: float = 0.0

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise InvalidArgument(f"store name must be a non-empty string, not {self.name!r}")
        if type(self.wal_file_size) is not int or self.wal_file_size < 512:
            raise InvalidArgument(f"wal_file_size must be at least 512 bytes, not {self.wal_file_size!r}")
        if not _positive(self.apply_interval):
            raise InvalidArgument(f"apply_interval must be positive seconds, not {self.apply_interval!r}")
        if type(self.apply_threshold) is not int or self.apply_threshold < 1:
            raise InvalidArgument(f"apply_threshold must be a positive number of keys, "
                                  f"not {self.apply_threshold!r}")
        skew = self.max_clock_skew
        if isinstance(skew, bool) or not isinstance(skew, (int, float)) or math.isnan(skew) or skew < 0:
            raise InvalidArgument(f"max_clock_skew must be zero or more seconds, not {skew!r}")
        wait = self.lock_wait
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not math.isfinite(wait) or wait < 0:
            raise InvalidArgument(f"lock_wait must be zero or more seconds, not {wait!r}")

    @property
    def max_skew_ns(self) -> float:
        """`max_clock_skew` in nanoseconds (`math.inf` when unbounded)."""
        return math.inf if math.isinf(self.max_clock_skew) else int(self.max_clock_skew * 1e9)


def _positive(seconds: object) -> bool:
    return not isinstance(seconds, bool) and isinstance(seconds, (int, float)) and \
        math.isfinite(seconds) and seconds > 0
