"""The import's fast paths against its exact ones: a spooled line is the commit `parse_line` makes
of it (or the same refusal), a canonical time is what `parse_time` reads; and the round trip
`pitr log --json | pitr import -` gives back the same log."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pitr.cli import import_
from pitr.errors import InvalidArgument
from pitr.timefmt import format_time, parse_time
from segments.record import PUT, Op
from tests.helpers.cli import run_cli
from tests.store.support import wal_records

NOW = 1_795_961_387_000_000_000


class _Clock:
    def now(self) -> int:
        return NOW


def committed(item: import_.Spooled) -> tuple[tuple[Op, ...], int | None]:
    [commit] = import_._commits(_Clock(), [item], len(item) == 3)  # type: ignore[arg-type]
    return commit


def exact(text: str, number: int) -> tuple[tuple[Op, ...], int | None]:
    """What the slow path commits for a line (TTLs taken from the clock at NOW)."""
    pairs, ts = import_.parse_line(text, number)
    return tuple(Op(PUT, op.key, op.value, NOW + int(ttl * 1e9)) if ttl is not None else op
                 for op, ttl in pairs), ts


texts = st.text(st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\x00", "é"]), max_size=12)
b64 = st.builds(lambda b: {"b64": base64.b64encode(b).decode()}, st.binary(max_size=8))
fields = st.one_of(texts, texts, texts, texts, b64, st.just({"b64": "!!"}), st.integers(), st.none())
times = st.one_of(st.none(), st.integers(-(1 << 64), 1 << 64), st.booleans(),
                  st.integers(-(1 << 62), 1 << 62).map(format_time), st.sampled_from(
                      ["2026-11-24T14:03:07.25Z", "2026-11-24T14:03:60.000000000Z", "2026-11-24T14:03:07",
                       "2026-11-24T14:03:07.000000000z", "1795961387.25", "yesterday"]))


@st.composite
def op_objects(draw: st.DrawFn) -> dict[str, object]:
    obj: dict[str, object] = {"op": draw(st.sampled_from(["put"] * 5 + ["delete", "frob", None]))}
    if obj["op"] is None:
        del obj["op"]
    obj["key"] = draw(fields)
    if draw(st.integers(0, 3)):
        obj["value"] = draw(fields)
    for name, strategy in (("ttl", st.one_of(st.none(), st.integers(-1, 5), st.floats(0.001, 5), st.text())),
                           ("expires_at", times), ("lsn", st.integers(0, 9))):
        if draw(st.integers(0, 2)) == 0:
            obj[name] = draw(strategy)
    return obj


@st.composite
def plain_puts(draw: st.DrawFn) -> dict[str, object]:
    """Mostly the common line, with now and then one field that takes it off the fast path."""
    obj: dict[str, object] = {"op": "put", "key": draw(st.text(min_size=1, max_size=8)),
                              "value": draw(st.text(max_size=8))}
    if draw(st.booleans()):
        obj["ts"] = draw(st.one_of(st.integers(0, NOW), st.integers(0, NOW).map(format_time)))
    extra = draw(st.sampled_from(["", "lsn", "ttl", "ttl", "expires_at", "batch", "ts", "key", "value"]))
    if extra in ("lsn", "ttl"):
        obj[extra] = draw(st.integers(1, 5))
    elif extra == "expires_at":
        obj[extra] = draw(times)
    elif extra == "batch":
        obj[extra] = [{"op": "put", "key": "k", "value": "v"}]
    elif extra == "ts":
        obj[extra] = None
    elif extra:
        obj[extra] = draw(st.one_of(st.just(""), st.just("x" * 512), st.just("\ud800"), b64))
    return obj


@st.composite
def lines(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        obj: object = {"batch": draw(st.one_of(st.lists(op_objects(), max_size=3), st.integers()))}
    elif kind == 1:
        obj = draw(op_objects())
    else:
        obj = draw(plain_puts())
    if kind < 2 and draw(st.booleans()):
        obj["ts"] = draw(times)  # type: ignore[index]
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        return text + "\n"
    return text + draw(st.sampled_from(["", " \n", "\r\n", "x\n", "}\n", ", {}\n", "\t"])) if draw(st.booleans()) \
        else draw(st.sampled_from(["", " ", "[", "{"])) + text + "\n"


def outcome(fn: Callable[[], object]) -> tuple[str, object]:
    """What a call gave: ("value", it) or ("refused", the InvalidArgument's message)."""
    try:
        return "value", fn()
    except InvalidArgument as exc:
        return "refused", str(exc)


@given(lines(), st.integers(1, 10**7))
def test_a_spooled_line_is_the_commit_parse_line_makes_of_it(text: str, number: int) -> None:
    expected = outcome(lambda: exact(text, number))
    assert outcome(lambda: committed(import_.spool_line(text, number))) == expected


@example("2026-11-24T14:03:60.000000000Z")
@example("1677-09-21T00:12:43.145224192Z")  # the earliest time: its minute starts before 1678
@example("2262-04-11T23:47:16.854775808Z")  # one ns past the latest
@example("2026-11-24T14:03:07.00000000\u0663Z")
@given(st.one_of(st.integers(-(1 << 63), (1 << 63) - 1).map(format_time),
                 st.tuples(st.integers(-(1 << 63), (1 << 63) - 1).map(format_time),
                           st.sampled_from([16, 17, 18, 19, 20, 28, 29]) | st.integers(0, 29),
                           st.sampled_from("0123456789:.-TZ x6\u0663\u00b2")).map(
                     lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:])))
def test_a_time_in_the_form_pitr_log_writes_is_read_as_parse_time_reads_it(text: str) -> None:
    assert outcome(lambda: import_._time(text, "ts")) == outcome(lambda: parse_time(text, what="ts"))


def pitr(*args: str, env: dict[str, str], stdin: bytes | None = None) -> bytes:
    done = subprocess.run([sys.executable, "-m", "pitr", *args], env=env, input=stdin, capture_output=True,
                          check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def test_pitr_log_piped_into_pitr_import_gives_back_the_same_log(tmp_path: Path) -> None:
    env = {**os.environ, "PITR_DATA": str(tmp_path / "data"), "PITR_REPO": str(tmp_path / "repo")}
    src = tmp_path / "in.jsonl"
    rows: list[dict[str, object]] = [{"op": "put", "key": f"k{i % 7}", "value": f"v{i}"} for i in range(50)]
    rows += [{"op": "delete", "key": "k1"}, {"op": "put", "key": {"b64": "AP8="}, "value": "bin", "ttl": 3600},
             {"batch": [{"op": "put", "key": "k2", "value": "b"}, {"op": "delete", "key": "k3"}]},
             {"op": "put", "key": "k4", "value": "x", "expires_at": "2100-01-01T00:00:00Z"}]
    src.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pitr("import", str(src), env=env)
    pitr("archive", env=env)
    log = pitr("log", "--json", env=env)
    copy = {**env, "PITR_DATA": str(tmp_path / "copy")}
    out = pitr("import", "-", "--json", env=copy, stdin=log)
    assert json.loads(out) == {"commits": len(rows), "first_lsn": 1, "last_lsn": len(rows)}
    original = [(r.lsn, r.ts_ns, r.ops) for r in wal_records(env["PITR_DATA"])]
    assert [(r.lsn, r.ts_ns, r.ops) for r in wal_records(copy["PITR_DATA"])] == original
    assert pitr("export", env=copy) == pitr("export", env=env)


@pytest.mark.parametrize("bad", [{"op": "put", "key": "b", "value": "2", "ts": 1 << 64},
                                 {"op": "put", "key": "b", "value": "2", "ttl": 1e30},
                                 {"op": "put", "key": "b", "value": "2", "ttl": float("inf")},
                                 {"op": "put", "key": "b", "value": "2", "expires_at": -(1 << 70)}])
def test_a_time_no_record_can_hold_is_refused_before_anything_is_imported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: dict[str, object]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"op": "put", "key": "a", "value": "1"}) + "\n" + json.dumps(bad) + "\n")
    code, _, err = run_cli(capsys, "import", str(src), "--data", str(tmp_path / "data"), "--max-clock-skew", "inf")
    assert code == 2, err
    assert "line 2" in err
    assert run_cli(capsys, "get", "a", "--data", str(tmp_path / "data"))[0] == 1, "nothing was imported"
