"""A warm standby through the command line: it follows, serves reads, refuses writers, stops on a
gap, damage or another history with the standby left at its last applied commit, resumes, and
promote gives it a history of its own."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from pitr.datadir.lock import WriterLock
from pitr.datadir.markers import FOLLOWER_NAME, ChainAnchor, FollowerMarker, read_follower
from pitr.datadir.state import StateDB
from tests.helpers.cli import run_cli as run


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    return tmp_path


def commit(capsys: pytest.CaptureFixture[str], *changes: tuple[str, str | None]) -> None:
    """Each change one commit (None deletes), then one archive run: one new segment."""
    for key, value in changes:
        args = ("put", key, value) if value is not None else ("delete", key)
        assert run(capsys, *args)[0] == 0
    assert run(capsys, "archive")[0] == 0


def catch_up(capsys: pytest.CaptureFixture[str], standby: Path, *more: str) -> tuple[int, list[dict[str, object]], str]:
    code, out, err = run(capsys, "restore", "--latest", "--follow", "--catch-up", "--dest", str(standby),
                         "--interval", "10ms", "--json", *more)
    return code, [json.loads(line) for line in out.splitlines()], err


def exported(capsys: pytest.CaptureFixture[str], data: Path) -> list[dict[str, object]]:
    code, out, err = run(capsys, "export", "--data", str(data))
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def latest(capsys: pytest.CaptureFixture[str], env: Path, name: str) -> list[dict[str, object]]:
    code, _, err = run(capsys, "restore", "--latest", "--dest", str(env / name))
    assert code == 0, err
    return exported(capsys, env / name)


def error_of(err: str) -> dict[str, object]:
    [line] = err.strip().splitlines()
    doc = json.loads(line)
    assert isinstance(doc, dict)
    return doc


def test_the_standby_applies_each_published_segment_and_equals_restore_latest(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standby = env / "standby"
    commit(capsys, ("a", "1"), ("b", "2"))
    code, lines, err = catch_up(capsys, standby)
    assert code == 0, err
    assert lines[-1]["event"] == "stopped"
    assert lines[-1]["applied_lsn"] == 2
    assert lines[-1]["caught_up"]
    commit(capsys, ("a", "3"), ("b", None), ("c", "4"))
    commit(capsys, ("d", "5"))
    code, lines, err = catch_up(capsys, standby)
    assert code == 0, err
    assert (lines[-1]["applied_lsn"], lines[-1]["segments_applied"], lines[-1]["commits_applied"]) == (6, 2, 4)
    assert lines[-1]["behind_commits"] == 0
    assert lines[-1]["behind_seconds"] == 0
    assert exported(capsys, standby) == latest(capsys, env, "r1")
    marker = read_follower(str(standby))
    assert marker is not None
    assert marker.anchors[-1].lsn == 6


def test_a_standby_serves_reads_and_refuses_every_writer_naming_promote(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standby = env / "standby"
    commit(capsys, ("k", "u"), ("k", "v"))
    assert catch_up(capsys, standby)[0] == 0
    code, out, _ = run(capsys, "get", "k", "--data", str(standby))
    assert (code, out.strip()) == (0, "v")
    lines = env / "lines.jsonl"
    lines.write_text('{"op": "put", "key": "x", "value": "1"}\n')
    for argv in (("put", "x", "1"), ("delete", "k"), ("import", str(lines)), ("archive", "--repo", str(env / "r2")),
                 ("undo", "--from", "@1", "--to", "@2")):
        code, out, err = run(capsys, *argv, "--data", str(standby), "--json")
        assert code == 1, (argv, err)
        doc = error_of(err)
        assert doc["error"] == "store_is_follower", (argv, doc)
        assert doc["message"] == f"{standby} is a follower of {env / 'repo'}; run pitr promote {standby}"
    assert exported(capsys, standby) == [{"op": "put", "key": "k", "value": "v"}]
    lock = WriterLock(str(standby))  # while its follower runs, archive reads it as a sidecar would: refused too
    try:
        for argv in (("archive", "--repo", str(env / "r2")), ("snapshot", "--repo", str(env / "r2"))):
            code, _, err = run(capsys, *argv, "--data", str(standby), "--json")
            assert code == 1, (argv, err)
            assert error_of(err)["error"] == "store_is_follower", (argv, err)
    finally:
        lock.release()
    assert not (env / "r2" / "segments").exists()


def test_promote_gives_the_standby_a_new_history_after_its_last_commit(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standby = env / "standby"
    commit(capsys, ("k", "v"), ("j", "w"))
    assert catch_up(capsys, standby)[0] == 0
    code, out, err = run(capsys, "promote", str(standby), "--json")
    assert code == 0, err
    done = json.loads(out)
    source = StateDB(str(env / "data" / "state"), readonly=True)
    try:
        source_id = source.identity().store_id  # type: ignore[union-attr]
    finally:
        source.close()
    assert done["parent_store_id"] == str(source_id)
    assert done["store_id"] != str(source_id)
    assert (done["lsn"], done["first_lsn"]) == (2, 3)
    assert not (standby / FOLLOWER_NAME).exists()
    code, out, err = run(capsys, "put", "n", "1", "--data", str(standby), "--json")
    assert code == 0, err
    assert json.loads(out)["lsn"] == 3
    code, _, err = run(capsys, "archive", "--data", str(standby), "--json")  # PITR_REPO: the followed one
    assert code == 1
    assert error_of(err)["error"] == "foreign_repository"
    assert exported(capsys, standby)[-1] == {"op": "put", "key": "n", "value": "1"}


def test_promote_is_refused_while_the_follower_holds_the_standby(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standby = env / "standby"
    commit(capsys, ("k", "v"))
    assert catch_up(capsys, standby)[0] == 0
    lock = WriterLock(str(standby))  # as a running follower holds it
    try:
        code, _, err = run(capsys, "promote", str(standby), "--json")
    finally:
        lock.release()
    assert code == 1
    doc = error_of(err)
    assert doc["error"] == "store_locked"
    assert "run pitr promote" in str(doc["hint"])
    assert read_follower(str(standby)) is not None


def _segment_files(env: Path) -> list[Path]:
    return sorted((env / "repo" / "segments").glob("*.seg"))


def test_a_gap_stops_the_follower_at_its_last_commit_and_a_rerun_resumes(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standby = env / "standby"
    commit(capsys, ("a", "1"))
    assert catch_up(capsys, standby)[0] == 0
    before = exported(capsys, standby)
    commit(capsys, ("a", "2"))
    commit(capsys, ("a", "3"))
    hole = _segment_files(env)[-2]
    aside = env / hole.name
    os.rename(hole, aside)
    code, _, err = catch_up(capsys, standby)
    assert code == 1
    doc = error_of(err)
    assert doc["error"] == "history_gap", doc
    assert "LSN 2..2" in str(doc["message"]), doc
    assert exported(capsys, standby) == before
    os.rename(aside, hole)
    code, lines, err = catch_up(capsys, standby)
    assert code == 0, err
    assert lines[-1]["applied_lsn"] == 3
    assert exported(capsys, standby) == latest(capsys, env, "r1")


def test_a_damaged_segment_stops_the_follower_naming_it(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standby = env / "standby"
    commit(capsys, ("a", "1"))
    assert catch_up(capsys, standby)[0] == 0
    before = exported(capsys, standby)
    commit(capsys, ("a", "2" * 100))
    damaged = _segment_files(env)[-1]
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 3] ^= 0x40
    os.chmod(damaged, 0o600)
    damaged.write_bytes(bytes(raw))
    code, _, err = catch_up(capsys, standby)
    assert code == 1
    doc = error_of(err)
    assert doc["error"] == "corrupt_data", doc
    assert damaged.name in str(doc["message"]), doc
    assert exported(capsys, standby) == before


def test_a_repository_holding_another_history_is_refused(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standby = env / "standby"
    commit(capsys, ("a", "1"))
    assert catch_up(capsys, standby)[0] == 0
    other = env / "other-data"
    assert run(capsys, "put", "z", "9", "--data", str(other))[0] == 0
    assert run(capsys, "archive", "--data", str(other), "--repo", str(env / "other-repo"))[0] == 0
    code, _, err = catch_up(capsys, standby, "--repo", str(env / "other-repo"))
    assert code == 1
    assert error_of(err)["error"] == "foreign_repository"
    assert exported(capsys, standby) == [{"op": "put", "key": "a", "value": "1"}]


def test_a_standby_is_built_aside_and_a_leftover_without_its_marker_is_rebuilt(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(capsys, ("a", "1"))
    leftover = env / ".standby.follow-init"  # a follower killed after its restore, before its marker
    assert run(capsys, "restore", "--latest", "--dest", str(leftover))[0] == 0
    code, lines, err = catch_up(capsys, env / "standby")
    assert code == 0, err
    assert not leftover.exists()
    assert lines[-1]["applied_lsn"] == 1
    assert read_follower(str(env / "standby")) is not None


def test_follow_flags_are_refused_where_they_cannot_apply(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(capsys, ("a", "1"))
    for argv in (["--to", "@1", "--follow"], ["--latest", "--interval", "1s"], ["--latest"], ["--latest", "--follow", "--prefix", "a"],
                 ["--latest", "--follow", "--interval", "0s"]):
        code, _, err = run(capsys, "restore", *argv, "--catch-up", "--dest", str(env / "s"), "--json")
        assert code == 2, (argv, err)
        assert error_of(err)["error"] == "invalid_argument", (argv, err)
    (env / "s").mkdir()
    (env / "s" / "file").write_text("not a store")
    code, _, err = catch_up(capsys, env / "s")
    assert code == 1
    assert error_of(err)["error"] == "destination_exists"


FOLLOWER_VECTOR = (b'{"anchors": [[41, "' + b"ab" * 32 + b'"], [57, "' + b"cd" * 32 + b'"]], "format": 1, '
                   b'"promotion": null, "repo": "s3://bucket/prod", '
                   b'"source_store_id": "6a1f2c3d-0000-4000-8000-00000000beef"}\n')


def test_the_follower_marker_matches_its_format_vector(tmp_path: Path) -> None:
    """docs/format.md "Follower marker": the example there, byte for byte."""
    marker = FollowerMarker.decode(FOLLOWER_VECTOR, "FOLLOWER")
    assert marker.anchors == (ChainAnchor(41, bytes.fromhex("ab" * 32)), ChainAnchor(57, bytes.fromhex("cd" * 32)))
    assert marker.encode() == FOLLOWER_VECTOR
    docs = Path(__file__).parents[2] / "docs" / "format.md"
    assert FOLLOWER_VECTOR.decode().strip() in docs.read_text()
    for bad in (b"[]", b'{"format": 2}', FOLLOWER_VECTOR.replace(b'"ab', b'"zz'),
                FOLLOWER_VECTOR.replace(b"[41, ", b"[-1, "), FOLLOWER_VECTOR.replace(b'"anchors": [[41', b'"anchors": [[1, "'
                + b"ab" * 32 + b'"], [41'), FOLLOWER_VECTOR.split(b'"anchors": ')[0] + b'"anchors": [], "format": 1}'):
        with pytest.raises(Exception, match="follower marker"):
            FollowerMarker.decode(bad, "FOLLOWER")


def test_a_second_follower_on_the_same_standby_is_refused_while_the_first_builds_it(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two followers started on one new standby: the second is refused at once, naming the first's PID,
    and leaves the first one's unfinished build alone (it would otherwise remove it as a leftover)."""
    commit(capsys, ("a", "1"))
    building = env / ".standby.follow-init"  # the first follower's restore has finished, its marker not yet
    assert run(capsys, "restore", "--latest", "--dest", str(building))[0] == 0
    lock = env / ".standby.follow-init.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the first follower holds it
        os.pwrite(fd, b"4242\n", 0)
        code, _, err = catch_up(capsys, env / "standby")
    finally:
        os.close(fd)
    assert code == 1
    doc = error_of(err)
    assert doc["error"] == "unsafe_destination"
    assert "process 4242" in str(doc["message"])
    assert "another follower" in str(doc["message"])
    assert building.is_dir()
    assert not (env / "standby").exists()
    code, lines, err = catch_up(capsys, env / "standby")  # the first one gone: the next follower builds it
    assert code == 0, err
    assert lines[-1]["applied_lsn"] == 1
    assert oct(lock.stat().st_mode & 0o777) == "0o600"
