"""Moments a user types: `now`, relative times and `@LSN` beside RFC 3339 and Unix seconds."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pitr.cli.moments import resolve_moment
from pitr.errors import InvalidArgument
from pitr.timefmt import Moment, parse_duration, parse_moment

NOW = 1_795_961_387_250_000_000
HOUR = 3600 * 10**9


@pytest.mark.parametrize(("text", "ts_ns"), [
    ("now", NOW), ("NOW", NOW), ("-15m", NOW - 15 * 60 * 10**9), ("now-2h", NOW - 2 * HOUR),
    ("now-1d12h", NOW - 36 * HOUR), ("now+30s", NOW + 30 * 10**9), ("now-1.5h", NOW - 3 * HOUR // 2),
    ("now-250ms", NOW - 250_000_000), ("-15", -15 * 10**9), ("2026-11-29T14:09:47.25Z", NOW), ("1795961387.25", NOW),
])
def test_times_are_relative_to_the_clock_given(text: str, ts_ns: int) -> None:
    assert parse_moment(text, now_ns=NOW, what="--at") == Moment(text, ts_ns=ts_ns)


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_an_lsn_is_that_lsn(lsn: int) -> None:
    assert parse_moment(f"@{lsn}", now_ns=NOW) == Moment(f"@{lsn}", lsn=lsn)


@pytest.mark.parametrize("text", ["now-", "now2h", "@", "@-1", "@1.5", "@x", "-15x", "now-2y", "@18446744073709551616",
                                  "yesterday", "now-2h-1h"])
def test_what_is_no_moment_is_refused_naming_the_argument_and_the_forms(text: str) -> None:
    with pytest.raises(InvalidArgument, match="--since"):
        parse_moment(text, now_ns=NOW, what="--since")


def test_a_relative_moment_outside_a_commit_time_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="out of range"):
        parse_moment("now+999999999999d", now_ns=NOW, what="--to")


@pytest.mark.parametrize(("text", "ns"), [("10s", 10**10), ("10", 10**10), ("2m", 120 * 10**9),
                                          ("1h30m", 5400 * 10**9), ("250ms", 250_000_000), ("0.5s", 500_000_000)])
def test_durations(text: str, ns: int) -> None:
    assert parse_duration(text, what="--wait") == ns


@pytest.mark.parametrize("text", ["", "-1s", "ten", "10x", "1h-"])
def test_what_is_no_duration_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="--wait"):
        parse_duration(text, what="--wait")


class _CatalogWithoutEarlyLog:
    """A catalog whose log before the snapshot at LSN 7 (time 70 s) was deleted by retention."""

    def block_for_time(self, ts_ns: int) -> None:
        return None  # no block starts at or before the times asked here

    def snapshots(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(lsn=3, ts_ns=30 * 10**9), SimpleNamespace(lsn=7, ts_ns=70 * 10**9)]


@pytest.mark.anyio
async def test_a_time_before_the_remaining_log_resolves_to_the_snapshot_holding_the_state() -> None:
    repo: Any = SimpleNamespace(catalog=_CatalogWithoutEarlyLog())
    at = await resolve_moment(repo, Moment("75", ts_ns=75 * 10**9), "--at")
    assert (at.ts_ns, at.lsn) == (75 * 10**9, 7)
    before = await resolve_moment(repo, Moment("70", ts_ns=70 * 10**9), "--at", exclusive=True)
    assert before.lsn == 3
    assert (await resolve_moment(repo, Moment("10", ts_ns=10 * 10**9), "--at")).lsn is None
