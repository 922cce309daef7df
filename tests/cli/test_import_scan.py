"""The compiled checking pass of `pitr import` against its pure-Python reference: a line it takes is
spooled as `spool_line` spools it and passes the same time rules, and the whole pass (what is
spooled, or the refusal and its words) is the same whichever takes the lines."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pitr.cli import import_, import_scan
from pitr.cli.import_lines import Spooled
from pitr.errors import InvalidArgument
from pitr.timefmt import format_time
from tests.store.test_import_lines import lines as json_lines

NOW = 1_795_961_387_000_000_000
compiled = pytest.mark.skipif(not import_scan.COMPILED, reason="pitr.cli._import_scan is not built")
pytestmark = compiled

names = st.sampled_from(['"op"', '"key"', '"value"', '"ts"', '"lsn"', '"Op"', '"k\\u0065y"', '"ttl"', '"extra"'])
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=10)
raw_strings = st.one_of(  # strings as a file may hold them: JSON's escapes, raw control characters, non-ASCII
    printable.map(json.dumps), printable.map(json.dumps), printable.map(json.dumps),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=10).map(json.dumps),
    st.text(max_size=6).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.sampled_from(['"a\\"b"', '"\\\\"', '"\\/x"', '"\\b\\f\\n\\r\\t"', '"\\u0041"', '"\\x"', '"a\tb"', '"é"',
                     '"\\', '"unterminated', '""', '"' + "k" * 511 + '"', '"' + "k" * 512 + '"']))
numbers = st.one_of(st.integers(-(1 << 64), 1 << 64).map(str),
                    st.sampled_from(["0", "-0", "01", "1.0", "1e3", "-", "9223372036854775807", "9223372036854775808",
                                     "-9223372036854775808", "-9223372036854775809", "12345678901234567890", "1E2"]))
time_texts = st.one_of(st.integers(-(1 << 63), (1 << 63) - 1).map(format_time),
                       st.integers(0, NOW + 10**12).map(format_time),
                       st.sampled_from(["2024-02-29T00:00:00.000000000Z", "2023-02-29T00:00:00.000000000Z",
                                        "2026-04-31T00:00:00.000000000Z", "2026-11-24 14:03:07.000000000Z",
                                        "2026-11-24T24:00:00.000000000Z", "2026-11-24T14:03:60.000000000Z",
                                        "1969-12-31T23:59:59.999999999Z", "2261-12-31T23:59:59.999999999Z",
                                        "2026-13-01T00:00:00.000000000Z", "2026-00-10T00:00:00.000000000Z"]))
member_values = st.one_of(raw_strings, numbers, time_texts.map(json.dumps), st.sampled_from(["null", "true", "[]", "{}"]))
json_spaces = st.sampled_from(["", "", "", "", "", " ", "\t", "\r", "\n", "  "])
spaces = st.one_of(json_spaces, json_spaces, st.just("\x0b"))  # a vertical tab is not JSON's whitespace


clean_strings = st.one_of(printable.map(json.dumps), st.sampled_from(['"a\\"b"', '"\\\\"', '"\\/x"', '"\\b\\f\\n\\r\\t"']))
clean_times = st.one_of(st.integers(1, NOW).map(str), st.integers(1, NOW).map(format_time).map(json.dumps),
                        st.just("null"))


@st.composite
def raw_lines(draw: st.DrawFn) -> str:
    """An object written by hand: the members of the common line, in any order, half the time well
    formed, else with a member twice, another member, a value of another type or a byte mangled."""
    clean = draw(st.booleans())
    strings, gaps = (clean_strings, json_spaces) if clean else (raw_strings, spaces)
    members = [('"op"', '"put"'), ('"key"', draw(strings)), ('"value"', draw(strings))]
    if draw(st.booleans()):
        members.append(('"ts"', draw(clean_times if clean else st.one_of(time_texts.map(json.dumps), numbers))))
    if draw(st.booleans()):
        members.append(('"lsn"', draw(st.integers(0, 1 << 40).map(str) if clean else numbers)))
    for _ in range(0 if clean else draw(st.integers(0, 2))):
        members.insert(draw(st.integers(0, len(members))), (draw(names), draw(member_values)))
    order = draw(st.permutations(members))
    body = ",".join(f"{draw(gaps)}{name}{draw(gaps)}:{draw(gaps)}{value}{draw(gaps)}" for name, value in order)
    text = draw(gaps) + "{" + body + "}" + draw(gaps)
    if not clean and draw(st.booleans()):  # a byte mangled
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(['"', "\\", ",", "}", "{", ":", " ", "x", "\x00", "é"])) + text[at + 1:]
    return text + draw(st.sampled_from(["\n", "\n", "", "\r\n"]))


any_lines = st.one_of(raw_lines(), raw_lines(), json_lines())


class _Clock:
    """The store's clock and last time, as the checking pass reads them."""

    def __init__(self, last_ts: int) -> None:
        self.last_ts = last_ts

    def now(self) -> int:
        return NOW


class _Spool:
    def __init__(self) -> None:
        self.runs: list[tuple[int, int, bool, list[Spooled]]] = []

    def write(self, first: int, last: int, run: list[Spooled], with_ttls: bool) -> None:
        self.runs.append((first, last, with_ttls, list(run)))


def checking_pass(text: str, last_ts: int, skew_ns: float, scan: import_scan.SpoolLines) -> tuple[str, object]:
    """What `check_and_spool` spools of `text` (or its refusal), with `scan` taking the lines."""
    spool = _Spool()
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogatepass", newline="") as fh:
            fh.write(text)
        import_.check_and_spool(_Clock(last_ts), path, spool, skew_ns, skew_ns / 1e9,  # type: ignore[arg-type]
                                scan=scan)
    except InvalidArgument as exc:
        return "refused", str(exc).replace(path, "FILE")
    finally:
        os.unlink(path)
    return "spooled", spool.runs


skews = st.sampled_from([0.0, 300e9, float("inf")])
last_times = st.one_of(st.just(0), st.integers(0, NOW + 10**12), st.just(-(1 << 63)))


@given(st.lists(any_lines, max_size=12), last_times, skews)
def test_the_compiled_pass_spools_and_refuses_what_the_reference_does(
        texts: list[str], last_ts: int, skew_ns: float) -> None:
    text = "".join(t if t.endswith("\n") else t + "\n" for t in texts)
    expected = checking_pass(text, last_ts, skew_ns, import_scan.spool_lines_reference)
    assert checking_pass(text, last_ts, skew_ns, import_scan.spool_lines) == expected


@example(['{"op": "put", "key": "a", "value": "b", "ts": "2026-11-24T14:03:07.250000000Z", "lsn": 7}\n'], 0, 300e9)
@example(['{"op":"put","key":"a\\"\\\\\\/\\b\\f\\n\\r\\t","value":""}'], 0, 0.0)
@given(st.lists(any_lines, min_size=1, max_size=12), last_times, skews)
def test_each_line_the_compiled_scan_takes_is_the_item_spool_line_makes(
        texts: list[str], last_ts: int, skew_ns: float) -> None:
    check_taken(texts, last_ts, skew_ns)


EDGE_TIMES = ["2024-02-29T00:00:00.000000000Z", "2023-02-29T00:00:00.000000000Z", "2100-02-29T00:00:00.000000000Z",
              "2000-02-29T00:00:00.000000000Z", "2026-04-31T00:00:00.000000000Z", "2026-12-31T23:59:59.999999999Z",
              "2026-11-24T24:00:00.000000000Z", "2026-11-24T14:60:00.000000000Z", "2026-11-24T14:03:60.000000000Z",
              "1970-01-01T00:00:00.000000000Z", "1969-12-31T23:59:59.999999999Z", "2261-12-31T23:59:59.999999999Z",
              "2262-01-01T00:00:00.000000000Z", "2026-13-01T00:00:00.000000000Z", "2026-00-10T00:00:00.000000000Z",
              "2026-01-00T00:00:00.000000000Z", "2026-11-24 14:03:07.000000000Z", "2026-11-24T14:03:07.00000000Z"]
TAKEN = {json.dumps(t) for t in ["2024-02-29T00:00:00.000000000Z", "2000-02-29T00:00:00.000000000Z",
                                  "2026-12-31T23:59:59.999999999Z", "1970-01-01T00:00:00.000000000Z",
                                  "2261-12-31T23:59:59.999999999Z"]} | {"0", "-0", "9223372036854775807", "-1"}
EDGE_NUMBERS = ["0", "-0", "01", "1.0", "1e3", "1E3", "-", "9223372036854775807", "9223372036854775808",
                "-9223372036854775808", "-9223372036854775809", "12345678901234567890", "18446744073709551617",
                "99999999999999999999", "-1"]


@pytest.mark.parametrize("ts", [json.dumps(t) for t in EDGE_TIMES] + EDGE_NUMBERS)
def test_an_edge_time_is_taken_only_as_the_reference_takes_it(ts: str) -> None:
    line = '{"op": "put", "key": "k", "value": "v", "ts": ' + ts + "}\n"
    for last_ts in (-(1 << 63), 0):
        check_taken([line], last_ts, float("inf"))
    if ts in TAKEN:  # and the fast path is not just a refusal to take anything
        assert import_scan.spool_lines([line], 0, -(1 << 63), lambda: NOW, float("inf"), [])[0] == 1
    lsn_line = '{"lsn": ' + (ts if not ts.startswith('"') else "1") + ', "op": "put", "key": "k", "value": "v"}\n'
    check_taken([lsn_line], 0, float("inf"))


def check_taken(texts: list[str], last_ts: int, skew_ns: float) -> None:
    """Every line the compiled scan takes is spool_line's item, and passes the time rules."""
    out: list[Spooled] = []
    calls: list[int] = []

    def now() -> int:
        calls.append(NOW)
        return NOW

    stop, last = import_scan.spool_lines(texts, 0, last_ts, now, skew_ns, out)
    assert len(out) == stop
    previous: int | None = last_ts
    for line, item in zip(texts[:stop], out, strict=True):
        assert item == import_.spool_line(line, 1)
        ts = item[1]
        if ts is None:
            previous = NOW if previous is None or NOW > previous else previous
        else:
            assert previous is None or ts > previous, "a time that does not increase was taken"
            assert ts - NOW <= skew_ns, "a time too far ahead of the clock was taken"
            previous = ts
    assert last == previous
    assert len(calls) == stop, "one clock read per line taken, as the reference reads it"


def common_line(i: int, ts: int | None) -> str:
    obj: dict[str, object] = {"op": "put", "key": f"key:{i:012d}", "value": "v" * 100}
    if ts is not None:
        obj = {"lsn": i + 1, "ts": format_time(ts), **obj}
    return json.dumps(obj) + "\n"


@pytest.mark.parametrize("timed", [False, True])
def test_the_compiled_scan_takes_every_common_line(timed: bool) -> None:
    """The lines `pitr log --json` and the benchmark write are the fast path's, every one of them."""
    texts = [common_line(i, NOW - 10**9 + i * 1000 if timed else None) for i in range(1000)]
    out: list[Spooled] = []
    stop, _ = import_scan.spool_lines(texts, 0, 0, lambda: NOW, 300e9, out)
    assert stop == len(texts)
    assert out == [import_.spool_line(line, 1) for line in texts]


def test_a_run_is_taken_from_where_the_caller_resumes() -> None:
    texts = [common_line(0, None), "\n", common_line(1, None), '{"op": "delete", "key": "k"}\n', common_line(2, None)]
    out: list[Spooled] = []
    scan: Callable[..., tuple[int, int | None]] = import_scan.spool_lines
    assert scan(texts, 0, 0, lambda: NOW, 0.0, out)[0] == 1  # a blank line: left to the caller
    assert scan(texts, 2, NOW, lambda: NOW, 0.0, out)[0] == 3  # a delete: the exact path's
    assert scan(texts, 4, NOW, lambda: NOW, 0.0, out)[0] == 5
    assert out == [import_.spool_line(texts[i], 1) for i in (0, 2, 4)]
