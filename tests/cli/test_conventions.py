"""Conventions users bring from pgBackRest, Litestream and etcdctl, through the command line.

Every command takes --json (listings print one document, streams JSON lines,
errors one JSON object with a stable code on stderr); `put KEY -` reads the
value from stdin byte for byte; moments accept `now`, relative times and
`@LSN`, each resolved to exactly the commit it names.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from pitr.cli import moments
from pitr.cli.main import COMMANDS
from tests.helpers.cli import run_cli as run

STREAMS = {"history", "log", "export", "diff"}  # JSON lines; every other command prints one document


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    return tmp_path


def _argv(name: str, tmp: Path) -> list[str]:
    """A small, valid invocation of each subcommand (the lines import reads are written here)."""
    lines = tmp / "lines.jsonl"
    lines.write_text('{"op": "put", "key": "imported", "value": "1"}\n')
    table = {
        "put": ["put", "k", "v2"], "get": ["get", "k"], "delete": ["delete", "gone"],
        "import": ["import", str(lines)], "export": ["export"], "archive": ["archive"],
        "snapshot": ["snapshot"], "backups": ["backups", "list"], "verify": ["verify"],
        "restore": ["restore", "--latest", "--dest", str(tmp / "restored")],
        "cleanup": ["cleanup", "--dry-run"], "timeline": ["timeline"], "reindex": ["reindex"],
        "history": ["history", "k"], "log": ["log"], "diff": ["diff", "@1", "@3"],
            "status": ["status"], "copy": ["copy", "--from", str(tmp / "repo"), "--to", str(tmp / "copy")],
            "repair": ["repair", "--from", str(tmp / "repo"), str(tmp / "copy")],
            "key": ["key", "list"],
            "undo": ["undo", "--from", "@1", "--to", "@3", "--dry-run"],
            "promote": ["promote", str(tmp / "standby")],
    }
    assert set(table) == set(COMMANDS), "a subcommand without a --json invocation here: add it"
    return table[name]


def _store_with_history(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    """LSN 1 k=one, 2 k=two, 3 gone=x, 4 k=three; archived; the history of k."""
    for key, value in (("k", "one"), ("k", "two"), ("gone", "x"), ("k", "three")):
        assert run(capsys, "put", key, value)[0] == 0
    assert run(capsys, "archive")[0] == 0
    code, out, _ = run(capsys, "history", "k", "--values", "--json")
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_takes_json_and_prints_one_document_or_json_lines(
        name: str, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store_with_history(capsys)
    if name == "repair":  # a copy to repair from the original
        assert run(capsys, *_argv("copy", env))[0] == 0
    if name == "promote":  # a standby to promote
        assert run(capsys, "restore", "--latest", "--follow", "--catch-up", "--dest", str(env / "standby"))[0] == 0
    code, out, err = run(capsys, *_argv(name, env), "--json")
    assert code == 0, err
    assert out.strip(), f"pitr {name} --json printed nothing"
    if name in STREAMS:
        for line in out.splitlines():
            assert isinstance(json.loads(line), dict), line
    else:
        json.loads(out)  # one document, whatever its shape


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_fails_under_json_with_one_json_error_on_stderr(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PITR_DATA", raising=False)
    monkeypatch.delenv("PITR_REPO", raising=False)
    code, out, err = run(capsys, *_argv(name, tmp_path), "--json")
    assert code != 0
    assert out == ""
    [line] = err.splitlines()
    document = json.loads(line)
    # copy and repair name their repositories on the command line: here they do not exist
    expected = "not_a_repository" if name in ("copy", "repair") else "invalid_argument"
    assert document["error"] == expected, document
    assert document["command"].split()[0] == name


def test_at_lsn_names_exactly_that_commit(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store_with_history(capsys)
    code, out, err = run(capsys, "get", "k", "--at", "@2", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert (answer["value"], answer["at_lsn"], answer["lsn"]) == ("two", 2, 2)
    assert answer["as_of"] == f"{answer['at']} (LSN 2)"
    code, out, _ = run(capsys, "get", "k", "--at", "@2", "--exclusive", "--json")
    assert (json.loads(out)["value"], json.loads(out)["at_lsn"]) == ("one", 1)
    code, out, _ = run(capsys, "log", "--since", "@2", "--until", "@3", "--json")
    assert [json.loads(line)["lsn"] for line in out.splitlines()] == [2, 3]
    code, out, _ = run(capsys, "history", "k", "--since", "@2", "--until", "@4", "--json")
    assert [json.loads(line)["lsn"] for line in out.splitlines()] == [2, 4]
    code, out, _ = run(capsys, "diff", "@1", "@3", "--json")
    rows = {json.loads(line)["key"]: json.loads(line) for line in out.splitlines()}
    assert (rows["k"]["before"], rows["k"]["after"]) == ("one", "two")
    assert rows["gone"]["change"] == "added"
    code, out, err = run(capsys, "restore", "--to", "@3", "--dest", str(env / "r3"), "--json")
    assert code == 0, err
    assert json.loads(out)["lsn"] == 3
    code, out, err = run(capsys, "restore", "--to", "@3", "--exclusive", "--dest", str(env / "r2"), "--json")
    assert code == 0, err
    assert json.loads(out)["lsn"] == 2


def test_an_lsn_the_repository_does_not_hold_is_refused_with_the_window(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store_with_history(capsys)
    code, out, err = run(capsys, "get", "k", "--at", "@99", "--json")
    assert code == 1
    assert out == ""
    error = json.loads(err)
    assert error["error"] == "outside_window"
    assert [w["end_lsn"] for w in error["windows"]] == [4]


def test_relative_moments_count_back_from_the_clock_the_command_started_with(
        env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    history = _store_with_history(capsys)
    second = int(str(history[1]["ts_ns"]))  # k=two
    for moment, offset_ns in (("now-2h", 2 * 3600 * 10**9), ("-15m", 15 * 60 * 10**9),
                              ("now-1d12h", 36 * 3600 * 10**9), ("now", 0)):
        monkeypatch.setattr(moments, "wall_clock", lambda offset=offset_ns: second + offset)
        code, out, err = run(capsys, "get", "k", "--at", moment, "--json")
        assert code == 0, (moment, err)
        answer = json.loads(out)
        assert (answer["value"], answer["at_ns"], answer["at_lsn"]) == ("two", second, 2), moment


def test_put_dash_reads_every_byte_of_standard_input(
        env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    value = b"first line\n\x00\xff\r\n\n"  # trailing newlines, a NUL, bytes that are not UTF-8
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(value)))
    code, out, err = run(capsys, "put", "blob", "-", "--json")
    assert code == 0, err
    assert json.loads(out)["value_bytes"] == len(value)
    code, out, _ = run(capsys, "get", "blob", "--json")
    assert json.loads(out)["value"] == {"b64": "Zmlyc3QgbGluZQoA/w0KCg=="}


def test_put_dash_refuses_a_value_over_the_limit_and_commits_nothing(
        env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from pitr.cli import put

    monkeypatch.setattr(put, "MAX_VALUE", 10)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x" * 10)))
    assert run(capsys, "put", "fits", "-")[0] == 0  # exactly the limit
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x" * 11)))
    code, _, err = run(capsys, "put", "big", "-", "--json")
    assert code == 2
    assert json.loads(err)["error"] == "invalid_argument"
    assert "larger than 10 bytes" in json.loads(err)["message"]
    assert run(capsys, "get", "big")[0] == 1
