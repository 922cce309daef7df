"""The entry point never shows a Python traceback: every failure is one clear line (or one JSON object)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pitr.cli import put
from pitr.cli.failure import ERROR_CODES
from pitr.cli.main import main
from pitr.errors import (
    CatalogDamaged,
    CorruptData,
    Gap,
    HistoryGap,
    InvalidArgument,
    OutsideWindow,
    PitrError,
    StoreLocked,
    Window,
)
from tests.helpers.cli import run_cli as run


def failing_put(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make `pitr put` raise `error` from inside the command, as a library boundary might."""
    async def raising(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(put, "run", raising)


def one_clear_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert lines, "nothing was printed"
    assert lines[0].startswith("pitr "), err
    return lines[0]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    monkeypatch.delenv("PITR_DEBUG", raising=False)
    return tmp_path


def test_a_missing_import_file_is_one_line_naming_it(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "import", "/nonexistent.jsonl")
    assert code == 1
    assert "/nonexistent.jsonl" in one_clear_line(err)


def test_an_unwritable_restore_destination_is_one_line(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "put", "k", "v")[0] == 0
    assert run(capsys, "archive")[0] == 0
    code, _, err = run(capsys, "restore", "--latest", "--dest", "/proc/nope")
    assert code == 1
    assert "/proc/" in one_clear_line(err)


@pytest.mark.parametrize("command", [["verify"], ["timeline"], ["history", "k"], ["log"],
                                     ["restore", "--latest", "--dest", "RESTORED"]])
def test_a_catalog_that_is_a_regular_file_is_one_line(env: Path, capsys: pytest.CaptureFixture[str],
                                                      command: list[str]) -> None:
    assert run(capsys, "put", "k", "v")[0] == 0
    assert run(capsys, "archive")[0] == 0
    catalog = env / "repo" / ".catalog"
    for name in os.listdir(catalog):
        os.unlink(catalog / name)
    catalog.rmdir()
    catalog.write_bytes(b"not a directory\n")
    argv = [str(env / "restored") if a == "RESTORED" else a for a in command]
    code, out, err = run(capsys, *argv)
    if code != 0 and command == ["verify"]:  # verify's report (stdout) names the damage, with the hint
        assert code == 1
        assert "Traceback" not in err
        assert ".catalog" in out
        assert "pitr reindex" in out
    elif code != 0:  # refusing is right; a rebuilt catalog answering is right too
        assert code == 1
        assert ".catalog" in one_clear_line(err)
    else:
        assert "Traceback" not in err


def test_an_os_error_escaping_a_command_names_the_file(env: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    failing_put(monkeypatch, OSError(errno.ENOSPC, "No space left on device", "/data/wal/1.wal"))
    code, _, err = run(capsys, "put", "k", "v")
    assert code == 1
    assert one_clear_line(err) == "pitr put: /data/wal/1.wal: cannot access: No space left on device"
    assert "hint: free space" in err
    code, _, err = run(capsys, "put", "k", "v", "--json")
    assert code == 1
    doc = json.loads(err)
    assert (doc["error"], doc["path"], doc["errno"], doc["command"]) == ("disk_full", "/data/wal/1.wal",
                                                                         errno.ENOSPC, "put")


def test_an_internal_error_is_one_line_exit_70_and_a_traceback_only_when_debugging(
        env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    failing_put(monkeypatch, AttributeError("'NoneType' object has no attribute 'lsn'"))
    code, _, err = run(capsys, "put", "k", "v")
    assert code == 70
    assert one_clear_line(err) == "pitr put: internal error: AttributeError: 'NoneType' object has no attribute 'lsn'"
    assert "PITR_DEBUG=1" in err
    code, _, err = run(capsys, "put", "k", "v", "--json")
    assert code == 70
    assert json.loads(err)["error"] == "internal_error"
    monkeypatch.setenv("PITR_DEBUG", "1")
    with pytest.raises(AttributeError):
        main(["put", "k", "v"])


def test_an_exception_group_of_known_errors_is_reported_leaf_by_leaf(
        env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    damaged = CorruptData("record checksum mismatch", path="/repo/segments/a.seg", offset=4096, lsn=17,
                          hint="restore from another repository")
    failing_put(monkeypatch, ExceptionGroup("task group", [ExceptionGroup("inner", [damaged])]))
    code, _, err = run(capsys, "put", "k", "v")
    assert code == 1
    assert err.splitlines() == ["pitr put: /repo/segments/a.seg: record checksum mismatch (offset 4096, LSN 17)",
                                "  hint: restore from another repository"]
    failing_put(monkeypatch, ExceptionGroup("task group", [
        StoreLocked("/data", 123), OSError(errno.EACCES, "Permission denied", "/data/state")]))
    code, _, err = run(capsys, "put", "k", "v")
    assert code == 1
    assert "Traceback" not in err
    assert "locked by process 123" in err
    assert "/data/state: cannot access: Permission denied" in err
    code, _, err = run(capsys, "put", "k", "v", "--json")
    doc = json.loads(err)
    assert [e["error"] for e in doc["errors"]] == ["store_locked", "file_error"]
    failing_put(monkeypatch, ExceptionGroup("task group", [StoreLocked("/data", 1), KeyError("x")]))
    code, _, err = run(capsys, "put", "k", "v")
    assert code == 70
    assert "internal error: KeyError" in one_clear_line(err)


def test_history_gaps_windows_and_hints_are_printed_once(env: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    failing_put(monkeypatch, HistoryGap("the history of 'k' has a hole", [Gap(100, 199, "segment missing"),
                                                                         Gap(400, 401, "damaged")]))
    code, _, err = run(capsys, "put", "k", "v")
    assert code == 1
    assert err.splitlines() == ["pitr put: the history of 'k' has a hole", "  missing LSN 100..199 (segment missing)",
                                "  missing LSN 400..401 (damaged)"]
    code, _, err = run(capsys, "put", "k", "v", "--json")
    doc = json.loads(err)
    assert doc["error"] == "history_gap"
    assert doc["gaps"] == [{"first_lsn": 100, "last_lsn": 199, "reason": "segment missing"},
                           {"first_lsn": 400, "last_lsn": 401, "reason": "damaged"}]
    window = Window(1_700_000_000_000_000_000, 1_700_000_001_000_000_000, 0, 300)
    failing_put(monkeypatch, OutsideWindow("LSN 999 is outside the archive; recoverable: ... (LSN 0..300)",
                                           [window]))
    code, _, err = run(capsys, "put", "k", "v")
    assert code == 1
    assert err.count("LSN 0..300") == 1, err
    failing_put(monkeypatch, OutsideWindow("LSN 999 is outside the archive", [window]))
    code, _, err = run(capsys, "put", "k", "v")
    assert err.splitlines()[1] == ("  recoverable: 2023-11-14T22:13:20.000000000Z .. "
                                   "2023-11-14T22:13:21.000000000Z  (LSN 0..300)")
    code, _, err = run(capsys, "put", "k", "v", "--json")
    assert json.loads(err)["windows"][0]["end_lsn"] == 300
    failing_put(monkeypatch, CatalogDamaged("key index row for 'k' fails its checksum", path="/repo/.catalog"))
    code, _, err = run(capsys, "put", "k", "v")
    assert err.count("pitr reindex") == 1
    doc = json.loads(run(capsys, "put", "k", "v", "--json")[2])
    assert (doc["error"], doc["path"]) == ("catalog_damaged", "/repo/.catalog")
    assert "pitr reindex" in doc["hint"]


def test_invalid_arguments_exit_2_and_every_error_class_has_a_code(
        env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    failing_put(monkeypatch, InvalidArgument("--ttl must be positive"))
    code, _, err = run(capsys, "put", "k", "v", "--json")
    assert code == 2
    assert json.loads(err)["error"] == "invalid_argument"
    import pitr.errors as errors

    classes = {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, PitrError)} - {PitrError}
    assert classes <= {cls for cls, _ in ERROR_CODES}, "an error class without a stable --json code"
    codes = [code for _, code in ERROR_CODES]
    assert len(codes) == len(set(codes))


def test_a_bad_flag_shows_the_subcommands_own_usage(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "restore", "--bogus", "--latest", "--dest", "x")
    assert code == 2
    assert err.startswith("usage: pitr restore "), err
    assert "pitr restore: error: unrecognized arguments: --bogus" in err
    code, _, err = run(capsys, "backups", "list", "--bogus")
    assert code == 2
    assert err.startswith("usage: pitr backups list "), err
    code, _, err = run(capsys, "history", "k", "--json", "--bogus")
    assert code == 2
    doc = json.loads(err)
    assert (doc["error"], doc["command"]) == ("usage", "history")
    assert doc["usage"].startswith("usage: pitr history ")


def test_the_installed_command_shows_no_traceback(env: Path) -> None:
    """The real entry point in a subprocess, over inputs that used to crash it."""
    (env / "catalog-file").mkdir()
    (env / "catalog-file" / ".catalog").write_text("garbage")
    cases = [["import", "/nonexistent.jsonl"], ["restore", "--latest", "--dest", "/proc/nope"],
             ["verify", "--repo", str(env / "catalog-file")], ["history", "k", "--repo", "/nonexistent/repo"]]
    for argv in cases:
        proc = subprocess.run([sys.executable, "-m", "pitr", *argv], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PITR_DATA": str(env / "data"), "PITR_REPO": str(env / "repo")})
        assert proc.returncode in (1, 2), (argv, proc.returncode, proc.stderr)
        one_clear_line(proc.stderr)


def test_a_file_size_limit_on_the_first_put_is_one_line(tmp_path: Path) -> None:
    """A write failing for lack of room (here RLIMIT_FSIZE: EFBIG on the WAL preallocation) is no traceback."""
    import resource
    import signal

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    env = {k: v for k, v in os.environ.items() if not k.startswith("PITR_")}
    proc = subprocess.run([sys.executable, "-m", "pitr", "put", "k", "v", "--data", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=120, env=env, preexec_fn=limit)
    if proc.returncode == 0:  # the WAL degraded its preallocation and the commit fit: right as well
        assert "committed LSN 1" in proc.stdout
        return
    assert proc.returncode == 1, proc.stderr
    line = one_clear_line(proc.stderr)
    assert "?" not in line.split(":")[1], line


def test_an_os_error_naming_no_file_says_so(env: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    failing_put(monkeypatch, OSError(errno.EFBIG, "File too large"))
    code, _, err = run(capsys, "put", "k", "v")
    assert code == 1
    assert one_clear_line(err) == ("pitr put: cannot access a file (the operating system did not say which): "
                                   "File too large")


def test_every_subcommand_reports_its_own_bad_flag(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pitr.cli.main import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if a.choices and "put" in a.choices]  # the subcommands
    assert isinstance(sub.choices, dict)
    for name, subparser in sub.choices.items():
        nested = [a for a in subparser._actions if a.choices and isinstance(a.choices, dict)]
        argv = [name, *([next(iter(nested[0].choices))] if nested else []), "--bogus-flag"]
        code, _, err = run(capsys, *argv)
        assert code == 2
        assert err.startswith(f"usage: pitr {' '.join(argv[:-1])} "), err
        assert f"pitr {' '.join(argv[:-1])}: error: " in err


@pytest.mark.parametrize("argv", [
    ["history", "k", "--since", "2026-11-24T15:00:00Z", "--until", "2026-11-24T14:00:00Z"],
    ["log", "--since", "1795961387.5", "--until", "1795961387.25"],
    ["log", "--since-lsn", "10", "--until-lsn", "9"],
])
def test_a_range_that_ends_before_it_starts_is_an_argument_error(env: Path, capsys: pytest.CaptureFixture[str],
                                                                  argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "is after --until" in one_clear_line(err)


def test_an_interrupted_command_exits_130_in_one_line(env: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    failing_put(monkeypatch, KeyboardInterrupt())
    code, _, err = run(capsys, "put", "k", "v")
    assert (code, err) == (130, "pitr put: interrupted\n")
    code, _, err = run(capsys, "put", "k", "v", "--json")
    assert code == 130
    assert json.loads(err) == {"command": "put", "error": "interrupted", "message": "interrupted"}
