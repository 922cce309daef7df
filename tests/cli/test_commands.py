"""The `pitr` command line as an operator uses it: exit codes, --json, env defaults, bad input."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli as run


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    return tmp_path


def test_put_get_delete_exit_codes(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "put", "greeting", "hello", "--json")
    assert code == 0
    assert json.loads(out)["lsn"] == 1
    assert run(capsys, "get", "greeting")[:2] == (0, "hello\n")
    code, out, _ = run(capsys, "delete", "greeting", "--json")
    assert code == 0
    assert json.loads(out)["existed"] is True
    code, out, err = run(capsys, "get", "greeting")
    assert code == 1
    assert "not found" in err


def test_binary_keys_and_values_round_trip_with_b64(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, value = b"\x00\xffkey", bytes(range(256))
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    assert run(capsys, "put", "--b64", b64(key), b64(value))[0] == 0
    code, out, _ = run(capsys, "get", "--b64", b64(key))
    assert code == 0
    assert base64.b64decode(out.strip()) == value
    code, out, _ = run(capsys, "export")
    line = json.loads(out)
    assert base64.b64decode(line["key"]["b64"]) == key
    assert base64.b64decode(line["value"]["b64"]) == value
    assert run(capsys, "put", "--b64", "not base64!", "x")[0] == 2


def test_usage_errors_exit_2(env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(capsys, "put", "k", "v", "--ttl", "-1")[0] == 2
    code, _, err = run(capsys, "restore", "--to", "2026-11-24T14:03:07", "--dest", str(env / "r"))
    assert code == 2
    assert "offset" in err
    monkeypatch.delenv("PITR_DATA")
    code, _, err = run(capsys, "put", "k", "v")
    assert code == 2
    assert "--data" in err
    assert run(capsys, "restore", "--latest", "--lsn", "3", "--dest", "x")[0] == 2  # argparse


def test_import_then_export_round_trips(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        {"op": "put", "key": "a", "value": "1", "ts": "2020-01-01T00:00:00Z"},
        {"op": "put", "key": {"b64": base64.b64encode(b"\x01").decode()}, "value": "bin", "ts": 1577836801_000000000},
        {"batch": [{"op": "put", "key": "b", "value": "2"}, {"op": "delete", "key": "a"}],
         "ts": "2020-01-01T00:00:02+00:00"},
    ]
    src = env / "in.jsonl"
    src.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    code, out, _ = run(capsys, "import", str(src), "--json")
    assert code == 0
    assert json.loads(out) == {"commits": 3, "first_lsn": 1, "last_lsn": 3}
    code, out, _ = run(capsys, "export")
    exported = [json.loads(line) for line in out.splitlines()]
    assert exported == [{"op": "put", "key": {"b64": "AQ=="}, "value": "bin"},
                        {"op": "put", "key": "b", "value": "2"}]


@pytest.mark.parametrize(("bad", "message"), [
    ("not json", "line 2: not JSON"),
    (json.dumps({"op": "frob", "key": "x"}), "line 2: \"op\" must be \"put\" or \"delete\", not \"frob\""),
    (json.dumps({"key": "x"}), "line 2: \"op\" must be \"put\" or \"delete\", not missing"),
    (json.dumps({"op": "put", "key": "x", "value": {"b64": "!!"}}), "line 2: value: '!!' is not valid base64"),
    (json.dumps({"batch": [{"op": "put", "key": "x", "value": "1"}, {"op": "put", "key": 5, "value": "1"}]}),
     "line 2, batch item 2: key"),
    (json.dumps({"op": "put", "key": "x", "value": "1", "ts": "2019-01-01T00:00:00Z"}), "line 2: ts"),
])
def test_malformed_import_names_the_line_and_imports_nothing(
        env: Path, capsys: pytest.CaptureFixture[str], bad: str, message: str) -> None:
    src = env / "in.jsonl"
    good = json.dumps({"op": "put", "key": "first", "value": "1", "ts": "2020-01-01T00:00:00Z"})
    src.write_text(good + "\n" + bad + "\n" + json.dumps({"op": "put", "key": "after", "value": "2"}) + "\n")
    code, _, err = run(capsys, "import", str(src))
    assert code == 2
    assert message in err
    code, out, _ = run(capsys, "export")
    assert out == ""


def test_archive_snapshot_timeline_restore_verify_cleanup(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(5):
        run(capsys, "put", f"k{i}", f"v{i}")
    code, out, _ = run(capsys, "archive", "--json")
    assert code == 0
    assert json.loads(out)["repositories"][0]["archived_through_lsn"] == 5
    code, out, _ = run(capsys, "snapshot", "--json")
    assert code == 0
    snap = json.loads(out)
    assert (snap["lsn"], snap["entries"]) == (5, 5)
    run(capsys, "delete", "k0")
    run(capsys, "archive")
    code, out, _ = run(capsys, "timeline", "--json")
    [timeline] = json.loads(out)
    assert timeline["windows"][0]["start_lsn"] == 0
    assert timeline["windows"][0]["end_lsn"] == 6
    code, out, _ = run(capsys, "backups", "list", "--json")
    assert [b["lsn"] for b in json.loads(out)] == [5]
    code, out, _ = run(capsys, "verify", "--replay", "--json")
    assert code == 0
    assert json.loads(out)[0]["ok"] is True
    dest = env / "restored"
    code, out, _ = run(capsys, "restore", "--lsn", "5", "--dest", str(dest), "--dry-run", "--json")
    assert json.loads(out)["commits_to_replay"] == 0
    assert not dest.exists()
    code, out, _ = run(capsys, "restore", "--lsn", "5", "--dest", str(dest), "--json")
    assert code == 0
    assert json.loads(out)["keys"] == 5
    code, out, err = run(capsys, "restore", "--latest", "--dest", str(dest))
    assert code == 1
    assert "not empty" in err
    assert run(capsys, "restore", "--latest", "--dest", str(dest), "--force")[0] == 0
    os.environ["PITR_DATA"] = str(dest)
    code, out, _ = run(capsys, "export")
    assert [json.loads(line)["key"] for line in out.splitlines()] == ["k1", "k2", "k3", "k4"]
    code, out, _ = run(capsys, "cleanup", "--keep-count", "1", "--keep-days", "0", "--dry-run", "--json")
    assert code == 0
    plan = json.loads(out)[0]
    assert plan["dry_run"] is True
    assert plan["segments"] == []


def test_restore_outside_window_prints_window(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "put", "k", "v")
    run(capsys, "archive")
    code, _, err = run(capsys, "restore", "--to", "2001-01-01T00:00:00Z", "--dest", str(env / "r"))
    assert code == 1
    assert "outside the archive" in err
    assert "recoverable:" in err
    assert not (env / "r").exists()


def test_second_writer_is_refused_with_pid(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import trio

    from pitr.store import Store

    async def hold() -> tuple[int, str, str]:
        async with Store(str(env / "data")):
            return await trio.to_thread.run_sync(lambda: run(capsys, "put", "k", "v"))

    code, _, err = trio.run(hold)
    assert code == 1
    assert f"locked by process {os.getpid()}" in err


def test_history_log_diff_and_log_reimports(env: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run(capsys, "put", "k", "one")
    run(capsys, "put", "k", "two")
    run(capsys, "put", "other", "x")
    run(capsys, "delete", "k")
    run(capsys, "archive")
    code, out, _ = run(capsys, "history", "k", "--values", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["lsn"], r["op"], r.get("value")) for r in rows] == [(1, "put", "one"), (2, "put", "two"),
                                                                     (4, "delete", None)]
    secs = lambda ns: f"{ns // 10**9}.{ns % 10**9:09d}"  # noqa: E731
    code, out, _ = run(capsys, "get", "k", "--at", secs(rows[1]["ts_ns"]), "--json")
    assert code == 0
    assert json.loads(out)["value"] == "two"
    code, out, _ = run(capsys, "get", "k", "--at", secs(rows[1]["ts_ns"]), "--exclusive", "--json")
    assert json.loads(out)["value"] == "one"
    code, out, _ = run(capsys, "get", "k", "--at", secs(rows[2]["ts_ns"]), "--json")
    assert code == 1
    assert json.loads(out)["found"] is False
    assert run(capsys, "history", "never-written")[0] == 1
    code, out, _ = run(capsys, "log", "--json")
    log = env / "log.jsonl"
    log.write_text(out)
    monkeypatch.setenv("PITR_DATA", str(env / "copy"))
    assert run(capsys, "import", str(log))[0] == 0
    code, out, _ = run(capsys, "export")
    assert [json.loads(line) for line in out.splitlines()] == [{"op": "put", "key": "other", "value": "x"}]
    first, last = rows[0]["ts_ns"], rows[2]["ts_ns"]
    code, out, _ = run(capsys, "diff", secs(first), secs(last), "--json")
    assert code == 0
    diffs = {json.loads(line)["key"]: json.loads(line)["change"] for line in out.splitlines()}
    assert diffs == {"k": "removed", "other": "added"}


def test_a_reader_closing_the_pipe_early_is_not_a_crash(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pitr export | head -1`: the command stops quietly when its reader goes away."""
    for i in range(3):
        assert run(capsys, "put", f"k{i}", "v")[0] == 0
    env_vars = {**os.environ, "PITR_DATA": str(env / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "pitr.cli.main", "export"], env=env_vars,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first line
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode == 141
