"""`pitr log --json`'s fast paths against its exact one: a line formatted without building the object
is `json.dumps(to_import_json(commit))`, a block's lines formatted in C are the reference's, and
the whole command writes what the per-commit path writes (bounds and holes included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pitr.audit import log_lines
from pitr.audit.log import LogCommit, import_json_line, to_import_json
from segments import record as rec
from segments.block_scan import scan_block

NOW = 1_795_961_387_000_000_000
texts = st.one_of(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8).map(str.encode),
                  st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8).map(str.encode),
                  st.binary(max_size=6), st.sampled_from([b'a"b', b"a\\b", b"\x7f", b"\t", "é".encode(), b""]))
ops = st.one_of(st.builds(rec.put, texts.filter(bool), texts), st.builds(rec.put, texts.filter(bool), texts),
                st.builds(rec.delete, texts.filter(bool)),
                st.builds(rec.put, texts.filter(bool), texts, st.integers(0, NOW)))
commits = st.tuples(st.one_of(st.lists(ops, min_size=1, max_size=1), st.lists(ops, min_size=1, max_size=3)),
                    st.one_of(st.none(), st.integers(0, 9)), st.integers(1, 10**6))


def block_of(draws: list[tuple[list[rec.Op], int | None, int]], first_lsn: int) -> tuple[bytes, list[int]]:
    ts, parts = NOW - 10**12, []
    for i, (ops_, source_rev, step) in enumerate(draws):
        ts += step
        parts.append(rec.encode_record(first_lsn + i, ts, ops_, source_rev))
    raw = b"".join(parts)
    ends = scan_block(raw, first_lsn, 0, None)[3]
    return raw, ends


def drive(scan: log_lines.BlockLines, raw: bytes, ends: list[int], lo: int | None, hi: int | None,
          since: int | None, until: int | None) -> tuple[str, bool]:
    """A block's text as log_json_lines writes it, with `scan` taking what it can."""
    out, index, ended = [], 0, False
    while index < len(ends) and not ended:
        text, index, ended = scan(raw, ends, index, lo, hi, since, until)
        out.append(text)
        if index < len(ends) and not ended:
            record = rec.decode_payload(raw, rec.check_record_at(raw, ends[index - 1] if index else 0, ends[index]),
                                        skip_unknown=True)
            if record is not None:
                out.append(import_json_line(log_lines.commit_of(record)) + "\n")
            index += 1
    return "".join(out), ended


pytestmark = pytest.mark.skipif(not log_lines.COMPILED, reason="pitr.audit._log_lines is not built")
bounds = st.one_of(st.none(), st.integers(1, 30))
time_bounds = st.one_of(st.none(), st.integers(NOW - 10**12, NOW - 10**12 + 3 * 10**6))


@given(st.lists(commits, min_size=1, max_size=12), st.integers(1, 1 << 40), bounds, bounds, time_bounds, time_bounds)
def test_a_blocks_lines_are_the_references(draws: list[tuple[list[rec.Op], int | None, int]], first_lsn: int,
                                           lo: int | None, hi: int | None, since: int | None,
                                           until: int | None) -> None:
    raw, ends = block_of(draws, first_lsn)
    lo_lsn = None if lo is None else first_lsn + lo - 1
    hi_lsn = None if hi is None else first_lsn + hi - 1
    expected = drive(log_lines.block_lines_reference, raw, ends, lo_lsn, hi_lsn, since, until)
    assert drive(log_lines.block_lines, raw, ends, lo_lsn, hi_lsn, since, until) == expected


def test_the_common_commit_is_taken_by_the_compiled_lines() -> None:
    draws = [([rec.put(f"key:{i:06d}".encode(), b"0" * 100)], None, 1000) for i in range(500)]
    draws += [([rec.delete(b"key:000001")], None, 1)]
    raw, ends = block_of(draws, 1)
    text, index, ended = log_lines.block_lines(raw, ends, 0, None, None, None, None)
    assert (index, ended) == (len(ends), False)
    assert text == log_lines.block_lines_reference(raw, ends, 0, None, None, None, None)[0]


@example([rec.put(b'a"b', b"v")], 1, NOW)
@example([rec.put(b"k", b"a\\b")], 1, NOW)
@example([rec.delete(b"\x7f")], 1, -1)
@given(st.lists(ops, min_size=1, max_size=3), st.integers(1, 1 << 63), st.integers(-(1 << 63), (1 << 63) - 1))
def test_a_line_is_json_dumps_of_the_commits_object(ops_: list[rec.Op], lsn: int, ts: int) -> None:
    commit = log_lines.commit_of(rec.Record(lsn, ts, tuple(ops_)))
    assert isinstance(commit, LogCommit)
    assert import_json_line(commit) == json.dumps(to_import_json(commit))


def pitr(*args: str, env: dict[str, str], stdin: bytes | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "pitr", *args], env=env, input=stdin, capture_output=True,
                          check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.mark.slow
def test_pitr_log_json_writes_what_the_per_commit_path_writes(tmp_path: Path) -> None:
    """`--prefix ""` keeps every commit but takes the per-commit path: the reference of the whole command."""
    env = {**os.environ, "PITR_DATA": str(tmp_path / "data"), "PITR_REPO": str(tmp_path / "repo")}
    rows: list[dict[str, object]] = [{"op": "put", "key": f"k{i % 50}", "value": f"v{i}" * 3} for i in range(3000)]
    rows[7] = {"op": "delete", "key": "k1"}
    rows[100] = {"batch": [{"op": "put", "key": "k2", "value": "b"}, {"op": "delete", "key": "k3"}]}
    rows[2500] = {"op": "put", "key": {"b64": "AP8="}, "value": 'a "quoted" \\ value', "ttl": 3600}
    rows[2600] = {"op": "put", "key": "é", "value": "\t"}
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    pitr("import", str(tmp_path / "in.jsonl"), env=env)
    pitr("archive", env=env)
    for bounds_ in ([], ["--since-lsn", "5", "--until-lsn", "2550"], ["--since", "@99", "--until-lsn", "101"]):
        fast = pitr("log", "--json", *bounds_, env=env)
        assert fast == pitr("log", "--json", "--prefix", "", *bounds_, env=env)
        assert fast.count("\n") == (len(rows) if not bounds_ else 2546 if bounds_[1] == "5" else 3)
