"""Sizes and rates as flags take them, and the token bucket's pacing under a controlled clock."""

from __future__ import annotations

import pytest

from pitr.errors import InvalidArgument
from pitr.sizefmt import format_rate, parse_rate, parse_size
from pitr.storage.ratelimit import TokenBucket, TransferLimits, recovery_point_cost


@pytest.mark.parametrize(("text", "expected"), [
    ("1B", 1), ("512KiB", 512 * 1024), ("20MiB", 20 * 1024**2), ("1.5GiB", 3 * 1024**3 // 2),
    ("2TiB", 2 * 1024**4), ("100kB", 100_000), ("100KB", 100_000), ("3MB", 3_000_000), ("1GB", 10**9),
    ("20 MiB", 20 * 1024**2),
])
def test_sizes_take_binary_and_decimal_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["20", "", "MiB", "20mib", "20 XB", "-1MiB", "1e3MB", "nanMB"])
def test_a_size_without_a_known_unit_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="KiB"):
        parse_size(text, what="--limit-upload")


def test_rates_are_sizes_per_second() -> None:
    assert parse_rate("20MiB/s") == 20 * 1024**2
    assert parse_rate("20MiB") == 20 * 1024**2
    assert parse_rate("64kB/s") == 64_000
    for bad in ("0MiB/s", "/s", "20", "fast"):
        with pytest.raises(InvalidArgument, match="--limit-download"):
            parse_rate(bad, what="--limit-download")
    assert format_rate(20 * 1024**2) == "20.0 MiB/s"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_paces_bytes_to_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(1000, clock=clock)
    # starts empty: each reservation waits for its own bytes, so the rate never exceeds the cap
    assert bucket.take(500) == pytest.approx(0.5)
    assert bucket.take(500) == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.take(1000) == pytest.approx(1.0)
    clock.now += 10.0  # idle time earns no credit without a burst
    assert bucket.take(100) == pytest.approx(0.1)
    assert bucket.bytes_total == 2100


def test_a_burst_lets_bytes_go_at_once_after_idle_time() -> None:
    clock = Clock()
    bucket = TokenBucket(1000, burst=2000, clock=clock)
    clock.now += 5.0
    assert bucket.take(1500) == 0.0
    assert bucket.take(1000) == pytest.approx(0.5)


def test_stats_and_the_cost_in_recovery_point() -> None:
    limits = TransferLimits.of(upload=1000)
    up, down = limits.stats()
    assert (up.direction, up.cap_bytes_per_s, down.cap_bytes_per_s) == ("upload", 1000, None)
    assert recovery_point_cost(5000, 1000) == 5.0
    assert recovery_point_cost(5000, None) == 0.0
    with pytest.raises(InvalidArgument):
        TokenBucket(0)
