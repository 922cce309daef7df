"""Bandwidth caps for remote repositories: a token bucket per direction, and what it measured.

`TransferLimits.of(upload=..., download=...)` builds the buckets once per
command; every S3 repository the command opens shares them, so the cap holds
for the process, whatever number of repositories it talks to. A bucket pays
for bytes before they go (an upload's body, a part) or as they arrive (each
chunk of a download), so over any stretch longer than one request the rate
stays at or under the cap. It starts empty (no burst): the first request
waits for its own bytes, so a measured transfer runs at the cap, not above it.

`TransferStats` is what a status display or a metrics exporter needs: the
configured cap, the bytes moved and the rate measured over the last minute;
`recovery_point_cost` turns a cap and a volume into the seconds it adds to
the recovery point.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from pitr.errors import InvalidArgument

__all__ = ["TokenBucket", "TransferLimits", "TransferStats", "recovery_point_cost"]

Clock = Callable[[], float]
_WINDOW = 60.0  # seconds over which the measured rate is averaged


@dataclass(frozen=True, slots=True)
class TransferStats:
    """One direction's cap (bytes per second, None for no cap), bytes moved, and the measured rate."""

    direction: str  # "upload" or "download"
    cap_bytes_per_s: int | None
    bytes_total: int
    rate_bytes_per_s: float  # over the last minute of transfers (0.0 before any)


class TokenBucket:
    """Paces a byte stream to `rate` bytes per second (thread-safe; usable from the loop and workers).

    `take(n)` reserves `n` bytes and returns how long to wait before they are
    paid for. `burst` bytes of credit build up while idle (default none).
    """

    def __init__(self, rate: int, *, burst: int = 0, clock: Clock = time.monotonic) -> None:
        if rate < 1:
            raise InvalidArgument(f"a bandwidth cap must be at least 1 byte per second, not {rate}")
        if burst < 0:
            raise InvalidArgument(f"a burst must not be negative, not {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._paid_until = clock()  # when every byte reserved so far is paid for
        self._moved: deque[tuple[float, int]] = deque()
        self.bytes_total = 0

    def take(self, n: int) -> float:
        """Reserve `n` bytes; the seconds to wait before using them (0 when the bucket holds them)."""
        with self._lock:
            now = self._clock()
            start = max(self._paid_until, now - self.burst / self.rate)
            self._paid_until = start + n / self.rate
            self.bytes_total += n
            self._moved.append((max(now, self._paid_until), n))
            while self._moved and self._moved[0][0] < now - _WINDOW:
                self._moved.popleft()
            return max(0.0, self._paid_until - now)

    async def acquire(self, n: int) -> None:
        """Wait (on the event loop, cancellably) until `n` bytes may go."""
        delay = self.take(n)
        if delay > 0:
            await anyio.sleep(delay)

    def acquire_blocking(self, n: int) -> None:
        """Wait in a worker thread until `n` bytes may go (or have been paid for, after receiving them)."""
        delay = self.take(n)
        if delay > 0:
            time.sleep(delay)

    def queued_bytes(self) -> int:
        """Bytes reserved and not yet paid for: what a reservation made now waits behind."""
        with self._lock:
            return max(0, math.ceil((self._paid_until - self._clock()) * self.rate))

    def measured_rate(self) -> float:
        """Bytes per second over the last minute of transfers (each counted when it was paid for)."""
        with self._lock:
            now = self._clock()
            recent = [(t, n) for t, n in self._moved if t >= now - _WINDOW]
        if not recent:
            return 0.0
        span = max(now, recent[-1][0]) - recent[0][0] + recent[0][1] / self.rate
        return sum(n for _t, n in recent) / span if span > 0 else 0.0


@dataclass(frozen=True, slots=True)
class TransferLimits:
    """The caps a command applies to its remote repositories' transfers (None: no cap that way)."""

    upload: TokenBucket | None = None
    download: TokenBucket | None = None

    @classmethod
    def of(cls, *, upload: int | None = None, download: int | None = None) -> TransferLimits:
        """Limits of `upload` / `download` bytes per second (from `pitr.sizefmt.parse_rate`)."""
        return cls(TokenBucket(upload) if upload is not None else None,
                   TokenBucket(download) if download is not None else None)

    async def before_upload(self, n: int) -> None:
        if self.upload is not None:
            await self.upload.acquire(n)

    def after_download_blocking(self, n: int) -> None:
        if self.download is not None:
            self.download.acquire_blocking(n)

    async def after_download(self, n: int) -> None:
        if self.download is not None:
            await self.download.acquire(n)

    def stats(self) -> list[TransferStats]:
        """Both directions' cap, bytes and measured rate (only capped directions are measured)."""
        out = []
        for direction, bucket in (("upload", self.upload), ("download", self.download)):
            out.append(TransferStats(direction, bucket.rate if bucket else None,
                                     bucket.bytes_total if bucket else 0,
                                     bucket.measured_rate() if bucket else 0.0))
        return out


NO_LIMITS = TransferLimits()


def recovery_point_cost(pending_bytes: int, cap_bytes_per_s: int | None) -> float:
    """Seconds a cap adds to the recovery point while `pending_bytes` wait to be uploaded.

    An archiver that must ship a segment (or a snapshot) of `pending_bytes`
    under an upload cap cannot make the commits in it safe sooner than this;
    without a cap it is 0 (the network's own speed is not pitr's to know).
    """
    if cap_bytes_per_s is None or pending_bytes <= 0:
        return 0.0
    return pending_bytes / cap_bytes_per_s
