"""Issue #11 item 10: read-only commands (get, export) never take or block the writer lock, and
read one consistent state: LMDB plus the WAL records not yet applied to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from pitr.datadir.reader import StoreReader
from tests.restore.test_destination import live_writer

KEYS = 17  # the live writer puts k{lsn % 17} = v{lsn}


def pitr(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pitr.cli.main", *argv], capture_output=True, text=True,
                          check=False, timeout=120)


def test_put_never_fails_while_get_and_export_run(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert pitr("put", "--data", data, "seed", "0").returncode == 0
    stop = threading.Event()
    reader_failures: list[str] = []
    reads = 0

    def readers() -> None:
        nonlocal reads
        while not stop.is_set():
            for argv in (("export", "--data", data), ("get", "--data", data, "seed")):
                done = pitr(*argv)
                reads += 1
                if done.returncode != 0:
                    reader_failures.append(f"{argv}: {done.returncode} {done.stderr}")

    thread = threading.Thread(target=readers)
    thread.start()
    try:
        for i in range(1, 5):
            done = pitr("put", "--data", data, f"k{i}", f"v{i}")
            assert done.returncode == 0, f"put {i} failed while readers ran: {done.stderr}"
            got = pitr("get", "--data", data, f"k{i}")
            assert (got.returncode, got.stdout) == (0, f"v{i}\n"), "a reader missed an acknowledged commit"
    finally:
        stop.set()
        thread.join()
    assert reads > 0
    assert reader_failures == []
    lines = [json.loads(line) for line in pitr("export", "--data", data).stdout.splitlines()]
    assert [line["key"] for line in lines] == sorted(["seed", *(f"k{i}" for i in range(1, 5))])


def consistent_lsn(values: dict[str, str]) -> int:
    """The LSN a live-writer state is at, asserting it is one state (each key its newest value)."""
    lsns = sorted(int(v[1:]) for v in values.values())
    assert len(lsns) == KEYS, values
    assert lsns == list(range(lsns[0], lsns[0] + KEYS)), f"not one moment's state: {lsns}"
    for key, value in values.items():
        assert int(value[1:]) % KEYS == int(key[1:]), (key, value)
    return lsns[-1]


def test_readers_see_one_consistent_moment_while_a_writer_commits(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    with live_writer(data) as writer:
        assert writer.send(f"burst {KEYS * 2}").startswith("ok")
        done = threading.Event()
        seen: list[int] = []
        failures: list[BaseException] = []

        def read_repeatedly() -> None:
            try:
                with StoreReader(data) as reader:
                    while not done.is_set():
                        values = {k.decode(): v.decode() for k, v, _e in reader.scan(b"k", 0)}
                        lsn = consistent_lsn(values)
                        key = f"k{lsn % KEYS}".encode()
                        found = reader.get(key, 0)
                        assert found is not None
                        assert int(found[0][1:]) >= lsn, "a later read went back in time"
                        assert not seen or lsn >= seen[-1], "a later read went back in time"
                        seen.append(lsn)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                failures.append(exc)

        thread = threading.Thread(target=read_repeatedly)
        thread.start()
        try:
            for _ in range(3):
                reply = writer.send("burst 400")
                assert reply.startswith("ok"), f"the writer failed while readers ran: {reply}"
        finally:
            done.set()
            thread.join()
        last = int(reply.split()[1])
    if failures:
        raise failures[0]
    assert len(seen) > 1
    assert len(set(seen)) > 1, "the readers saw the writer's commits as they came"
    with StoreReader(data) as reader:
        values = {k.decode(): v.decode() for k, v, _e in reader.scan(b"k", 0)}
    assert consistent_lsn(values) == last


def test_a_reader_sees_commits_not_yet_applied_to_lmdb(tmp_path: Path) -> None:
    import time

    data = str(tmp_path / "data")
    with live_writer(data, apply_interval=3600) as writer:
        assert writer.send("put applied 1 3600") == "ok 1"
        assert writer.send("flush") == "ok 1"
        assert writer.send("put logged only-in-the-WAL") == "ok 2"
        assert writer.send("delete applied") == "ok 3"
        assert writer.send("put brief x 1") == "ok 4"
        with StoreReader(data) as reader:
            assert reader.state.checkpoint()[0] == 1, "the test needs commits the writer has not applied"
            now = time.time_ns()
            assert reader.get(b"logged", now) == (b"only-in-the-WAL", None)
            assert reader.get(b"applied", now) is None, "a delete in the WAL hides the applied value"
            assert reader.get(b"brief", now) is not None
            assert reader.get(b"brief", now + 2_000_000_000) is None, "expired at the reader's time"
            assert [k for k, _v, _e in reader.scan(b"", now)] == [b"brief", b"logged"]
            with reader.view() as (_txn, view):
                assert (view.applied_lsn, view.lsn) == (1, 4)
        done = pitr("get", "--data", data, "logged")
        assert (done.returncode, done.stdout) == (0, "only-in-the-WAL\n")


def test_a_missing_store_is_one_line_naming_it(tmp_path: Path) -> None:
    for argv in (("get", "k"), ("export",)):
        done = pitr(*argv, "--data", str(tmp_path / "nope"))
        assert done.returncode == 2
        assert f"{tmp_path / 'nope'}: no pitr store here" in done.stderr
        assert "Traceback" not in done.stderr
    assert not os.path.exists(tmp_path / "nope"), "a reader creates nothing"


def test_a_damaged_wal_is_reported_naming_the_file_not_read_around(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    with live_writer(data, apply_interval=3600) as writer:
        assert writer.send("put k v1") == "ok 1"
        assert writer.send("flush") == "ok 1"
        assert writer.send("put k v2") == "ok 2"  # logged, not applied
        writer.proc.kill()  # a crash: the WAL holds what LMDB lacks
        writer.proc.wait()
    got = pitr("get", "--data", data, "k")
    assert (got.returncode, got.stdout) == (0, "v2\n"), "a reader sees the logged commit after a crash too"
    [wal] = [os.path.join(data, "wal", n) for n in os.listdir(os.path.join(data, "wal")) if n.endswith(".wal")]
    with open(wal, "r+b") as fh:
        fh.write(b"garbage!")  # the header's magic
    for argv in (("get", "k"), ("export",)):
        done = pitr(*argv, "--data", data)
        assert done.returncode == 1, done
        assert wal in done.stderr
        assert "Traceback" not in done.stderr
        assert "v1" not in done.stdout, "an answer read around the damage would be the old state"
