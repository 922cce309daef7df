"""`--wait DURATION`: a second writer waits for the store's writer lock instead of failing at once,
and gives up when the wait is over, naming the holder's PID."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pitr.datadir.lock import LOCK_NAME, WriterLock
from pitr.errors import StoreLocked

HOLDER = """
import sys
from pitr.datadir.lock import WriterLock
lock = WriterLock(sys.argv[1])
print("held", flush=True)
sys.stdin.read()  # until the test closes the pipe
lock.release()
"""


@pytest.fixture
def store(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    done = subprocess.run([sys.executable, "-m", "pitr", "put", "k", "v0", "--data", str(data)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return data


@contextmanager
def _hold(data: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding the store's writer lock until its standard input closes (or it is killed)."""
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(data)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "held\n"
            yield holder
        finally:
            holder.kill()


def _put(data: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "pitr", "put", "k", "v1", "--data", str(data), "--json", *flags]


def test_a_second_writer_waits_for_the_lock_and_commits_once_it_is_released(store: Path) -> None:
    with _hold(store) as holder, subprocess.Popen(_put(store, "--wait", "60s"), stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE, text=True) as writer:
        time.sleep(1.5)
        assert writer.poll() is None, f"the writer did not wait: {writer.communicate()}"
        assert holder.stdin is not None
        holder.stdin.close()  # the holder releases the lock and exits
        holder.wait(timeout=30)
        out, err = writer.communicate(timeout=30)
    assert writer.returncode == 0, err
    assert json.loads(out)["lsn"] == 2


def test_the_wait_ends_with_store_locked_naming_the_holder(store: Path) -> None:
    with _hold(store) as holder:
        started = time.monotonic()
        done = subprocess.run(_put(store, "--wait", "3s"), capture_output=True, text=True, timeout=30)
        waited = time.monotonic() - started
    assert done.returncode == 1
    error = json.loads(done.stderr)
    assert (error["error"], error["pid"]) == ("store_locked", holder.pid)
    assert "waited 3 s" in error["hint"]
    assert waited >= 3.0, "the writer gave up before its --wait was over"


def test_without_wait_a_second_writer_is_refused_at_once_with_the_way_to_wait(store: Path) -> None:
    with _hold(store) as holder:
        done = subprocess.run(_put(store), capture_output=True, text=True, timeout=30)
    error = json.loads(done.stderr)
    assert (done.returncode, error["error"], error["pid"]) == (1, "store_locked", holder.pid)
    assert "--wait" in error["hint"]


def test_waiting_backs_off_instead_of_spinning(tmp_path: Path) -> None:
    """A fake clock advanced by each sleep: the tries thin out to MAX_BACKOFF apart, and the wait ends."""
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"1\n")  # held, by the PID of init: a live process this test cannot signal
    fcntl.flock(fd, fcntl.LOCK_EX)
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        if len(sleeps) > 1000:
            raise AssertionError(f"still trying after 1000 sleeps, {now[0]:.2f} s into a 5 s wait")
        sleeps.append(seconds)
        now[0] += seconds

    try:
        with pytest.raises(StoreLocked) as caught:
            WriterLock(str(tmp_path), wait=5.0, sleep=sleep, clock=lambda: now[0])
    finally:
        os.close(fd)
    assert caught.value.pid == 1
    assert now[0] == pytest.approx(5.0)
    assert all(s >= 0.01 for s in sleeps[:-1]), sleeps
    assert len(sleeps) <= 5 / 0.25 + 10, f"{len(sleeps)} tries in 5 s: {sleeps}"


def test_ctrl_c_ends_the_wait_at_once(store: Path) -> None:
    with _hold(store), subprocess.Popen(_put(store, "--wait", "60s"), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True) as writer:
        time.sleep(1.5)
        assert writer.poll() is None, f"the writer did not wait: {writer.communicate()}"
        writer.send_signal(signal.SIGINT)
        try:
            _out, err = writer.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            writer.kill()
            pytest.fail("Ctrl-C did not end the wait for the lock")
    assert writer.returncode == 128 + signal.SIGINT, err
    assert json.loads(err)["error"] == "interrupted"


def test_the_command_waits_on_the_event_loop_with_the_same_backoff(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """trio's MockClock jumps over each sleep: the probes thin out to MAX_BACKOFF apart and stop
    when the wait is over, with the holder's PID."""
    import argparse

    import trio
    import trio.testing

    from pitr.cli.common import writer_wait
    from pitr.datadir import lock

    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"1\n")
    fcntl.flock(fd, fcntl.LOCK_EX)
    probes: list[str] = []
    probe = lock.lock_holder
    waited: list[float] = []

    def counted(data: str) -> lock.LockHolder | None:
        if len(probes) > 1000:
            raise AssertionError("still probing after 1000 tries of a 5 s wait")
        probes.append(data)
        return probe(data)

    async def timed() -> None:
        start = trio.current_time()
        try:
            await writer_wait(argparse.Namespace(wait="5s", data=str(tmp_path)))
        finally:
            waited.append(trio.current_time() - start)

    monkeypatch.setattr(lock, "lock_holder", counted)
    try:
        with pytest.raises(StoreLocked) as caught:
            trio.run(timed, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        os.close(fd)
    assert caught.value.pid == 1
    assert "waited 5 s" in str(caught.value.hint)
    assert waited == [pytest.approx(5.0)]
    assert len(probes) <= 5 / lock.MAX_BACKOFF + 10, len(probes)
