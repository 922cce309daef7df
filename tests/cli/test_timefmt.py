"""Times a user types and reads: parsed strictly, printed without ever failing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pitr.errors import InvalidArgument
from pitr.timefmt import format_ns, format_time, parse_time


@pytest.mark.parametrize("text", ["99999999999999999999", "-99999999999999999999", "9223372036.854775808",
                                  "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
                                  "1" * 40, "2026-11-24T14:03:07+24:00", "2026-11-24T14:03:07+01:60"])
def test_times_outside_what_a_commit_time_holds_are_refused_naming_the_argument(text: str) -> None:
    with pytest.raises(InvalidArgument, match="--at"):
        parse_time(text, what="--at")


def test_the_bounds_of_a_commit_time_are_accepted() -> None:
    assert parse_time("9223372036.854775807") == (1 << 63) - 1
    assert parse_time("2262-04-11T23:47:16.854775807Z") == (1 << 63) - 1
    assert parse_time("-9223372036.854775808") == -(1 << 63)
    assert parse_time("2026-11-24T15:03:07.25+01:00") == parse_time("2026-11-24T14:03:07.25Z")


@given(st.integers(min_value=-(1 << 70), max_value=1 << 70))
def test_format_time_never_fails_and_round_trips_where_it_can(ts_ns: int) -> None:
    text = format_time(ts_ns)
    if -(1 << 63) <= ts_ns < (1 << 63) and text.endswith("Z"):
        assert parse_time(text) == ts_ns
    assert str(ts_ns) in format_ns(ts_ns)


def test_a_time_beyond_the_calendar_says_so() -> None:
    assert format_time(1 << 70) == f"{1 << 70} ns since 1970 (beyond any calendar date)"
    assert format_ns(1_795_961_387_250_000_000) == "2026-11-29T14:09:47.250000000Z (1795961387250000000 ns)"
