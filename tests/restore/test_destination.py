# ruff: noqa: ASYNC240 - the tests inspect files between awaits; there is no loop to keep responsive
"""Issue #11 item 1: a restore never replaces a live store, a repository or a foreign directory
unasked; --force says what it replaces; a killed restore's staging directory is cleaned up."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

import pitr.backup
from pitr.errors import UnsafeDestination
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreResult, RestoreTarget, restore
from pitr.restore.restore import INCOMPLETE_MARK, _make_workdir
from pitr.store import Store, StoreOptions
from tests.store.test_restore import make_history, restored_entries, state_at

pytestmark = pytest.mark.anyio
WRITER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "helpers", "live_writer.py")
LATEST = RestoreTarget(latest=True)


class LiveWriter:
    """`pitr.Store(data)` held open by another process."""

    def __init__(self, data: str, apply_interval: float = 0.05) -> None:
        self.proc = subprocess.Popen([sys.executable, WRITER, data, str(apply_interval)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=os.getcwd())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready"), line

    def send(self, command: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            assert self.proc.wait(timeout=30) == 0
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.stdout.close()


@contextmanager
def live_writer(data: str, apply_interval: float = 0.05) -> Iterator[LiveWriter]:
    writer = LiveWriter(data, apply_interval)
    try:
        yield writer
    finally:
        writer.close()
        if writer.proc.poll() is None:
            writer.proc.kill()


async def run_cli(*argv: str) -> tuple[int, str, str]:
    """`pitr ARGV` in its own process, as an operator runs it: (exit code, stdout, stderr)."""
    done = await anyio.run_process([sys.executable, "-m", "pitr.cli.main", *argv], check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


async def test_a_restore_never_replaces_a_store_under_its_live_writer(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    with live_writer(history.data) as writer:
        assert writer.send("put before restore").startswith("ok")
        async with open_repository(history.repo_dir) as repo:
            with pytest.raises(UnsafeDestination, match=f"writer .*process {writer.proc.pid}"):
                await restore(repo, RestoreOptions(target=LATEST, dest=history.data, force=True))
        await pitr.backup.create(str(tmp_path / "backups"), data=history.data)
        [backup] = await pitr.backup.list(str(tmp_path / "backups"))
        with pytest.raises(UnsafeDestination, match="writer"):
            await pitr.backup.restore(backup.path, dest=history.data, force=True)
        code, _out, err = await run_cli("restore", "--latest", "--dest", history.data, "--force",
                                  "--repo", history.repo_dir)
        assert code == 1
        assert f"process {writer.proc.pid}" in err
        assert "Traceback" not in err
        reply = writer.send("put after restore")
        assert reply.startswith("ok"), reply
        acknowledged = int(reply.split()[1])
    async with Store(history.data, StoreOptions(create=False)) as store:
        assert await store.get(b"before") == b"restore"
        assert await store.get(b"after") == b"restore", "a commit acknowledged after the restore attempt was lost"
        assert store.last_lsn == acknowledged
        assert await store.get(b"d") == b"1", "the store's own history is intact"
    assert not [n for n in os.listdir(tmp_path) if ".restoring-" in n or ".replaced-" in n]


async def test_a_writer_starting_during_the_build_stops_the_replacement(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is made again, holding the destination's writer lock, at the moment of the rename."""
    history = await make_history(tmp_path)
    real_build = sys.modules["pitr.restore.restore"].build_state
    holders: list[subprocess.Popen[str]] = []

    def build_then_a_writer_opens(*args: object, **kwargs: object) -> RestoreResult:
        result = real_build(*args, **kwargs)
        code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
                "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()")
        proc = subprocess.Popen([sys.executable, "-c", code, os.path.join(history.data, "LOCK")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        proc.stdout.close()
        holders.append(proc)
        return result  # type: ignore[no-any-return]

    monkeypatch.setattr(sys.modules["pitr.restore.restore"], "build_state", build_then_a_writer_opens)
    before = listing(Path(history.data))
    try:
        async with open_repository(history.repo_dir) as repo:
            with pytest.raises(UnsafeDestination, match="writer"):
                await restore(repo, RestoreOptions(target=RestoreTarget(lsn=2), dest=history.data, force=True))
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()
            assert proc.stdin is not None
            proc.stdin.close()
    assert listing(Path(history.data)) == before
    assert not [n for n in os.listdir(tmp_path) if ".restoring-" in n or ".replaced-" in n]


@pytest.mark.parametrize("where", ["repository itself", "inside the repository", "holds the repository"])
async def test_a_restore_never_writes_into_or_around_a_repository(tmp_path: Path, where: str) -> None:
    history = await make_history(tmp_path)
    repo_path = Path(history.repo_dir)
    dest = {"repository itself": repo_path, "inside the repository": repo_path / "snapshots" / "restored",
            "holds the repository": tmp_path}[where]
    before = listing(tmp_path)
    async with open_repository(history.repo_dir) as repo:
        with pytest.raises(UnsafeDestination, match="repository"):
            await restore(repo, RestoreOptions(target=LATEST, dest=str(dest), force=True, replace_foreign=True))
    # a repository the restore does not read from is recognised by its files too
    async with open_repository(history.repo_dir) as repo:
        copy = tmp_path / "copy-of-repo"
        copy.mkdir()
        (copy / "pitr-repository").write_bytes(b"x")
        with pytest.raises(UnsafeDestination, match="repository"):
            await restore(repo, RestoreOptions(target=LATEST, dest=str(copy), force=True, replace_foreign=True))
        with pytest.raises(UnsafeDestination, match="repository"):
            await restore(repo, RestoreOptions(target=LATEST, dest=str(copy / "sub"), force=True))
    (copy / "pitr-repository").unlink()
    copy.rmdir()
    assert listing(tmp_path) == before


async def test_force_lists_the_store_it_replaces(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    async with open_repository(history.repo_dir) as repo:
        first = await restore(repo, RestoreOptions(target=RestoreTarget(lsn=2), dest=str(tmp_path / "r")))
        assert isinstance(first, RestoreResult)
        assert first.replaced is None
        second = await restore(repo, RestoreOptions(target=RestoreTarget(lsn=4), dest=str(tmp_path / "r"),
                                                    force=True))
    assert isinstance(second, RestoreResult)
    assert second.replaced is not None
    assert (second.replaced.kind, second.replaced.store_id, second.replaced.applied_lsn) == \
        ("pitr store", str(first.store_id), 2)
    assert restored_entries(str(tmp_path / "r")) == state_at(history, 4, history.ts(4))
    code, out, _err = await run_cli("restore", "--lsn", "5", "--dest", str(tmp_path / "r"), "--force",
                              "--repo", history.repo_dir)
    assert code == 0
    assert f"replaced {tmp_path / 'r'}: a pitr store" in out
    assert f"store id {second.store_id}" in out
    assert "applied through LSN 4" in out
    code, out, _err = await run_cli("restore", "--lsn", "3", "--dest", str(tmp_path / "r"), "--force",
                                    "--repo", history.repo_dir, "--dry-run")
    assert code == 0
    assert f"would replace {tmp_path / 'r'}: a pitr store" in out
    assert sorted(os.listdir(tmp_path)) == ["data", "r", "repo"], "the replaced store is removed afterwards"


async def test_a_foreign_directory_is_replaced_only_when_named(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    dest = tmp_path / "photos"
    dest.mkdir()
    (dest / "a.jpg").write_bytes(b"x" * 2048)
    args = ("restore", "--latest", "--dest", str(dest), "--repo", history.repo_dir)
    code, _out, err = await run_cli(*args, "--force")
    assert code == 1
    assert "not a pitr store (1 file, 2.0 KiB)" in err
    assert f"--replace-foreign {dest}" in err
    assert (await run_cli(*args, "--force", "--replace-foreign", str(tmp_path / "other")))[0] == 2
    assert (await run_cli(*args, "--replace-foreign", str(dest)))[0] == 2, "--replace-foreign needs --force"
    assert (dest / "a.jpg").exists()
    code, out, _err = await run_cli(*args, "--force", "--replace-foreign", str(dest), "--json")
    assert code == 0
    import json

    replaced = json.loads(out)["replaced"]
    assert (replaced["kind"], replaced["files"], replaced["size_bytes"]) == ("directory", 1, 2048)
    assert sorted(os.listdir(dest)) == ["state", "wal"]


async def test_the_next_restore_removes_a_killed_restores_staging_directory(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    dest = str(tmp_path / "restored")
    # a restore killed while building: its marked staging directory, with a half-built state
    killed, fd = _make_workdir(dest)
    os.mkdir(os.path.join(killed, "state"))
    Path(killed, "state", "data.mdb").write_bytes(b"half")
    os.close(fd)  # the process is gone: so is its lock
    # one killed between finishing and the rename (marker already removed)
    finished, fd = _make_workdir(dest)
    os.mkdir(os.path.join(finished, "wal"))
    os.unlink(os.path.join(finished, INCOMPLETE_MARK))
    os.close(fd)
    # not pitr's: same name pattern, but holding a user's file
    foreign = tmp_path / ".restored.restoring-mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    # a restore running right now (its staging directory is locked)
    running, running_fd = _make_workdir(dest)
    try:
        async with open_repository(history.repo_dir) as repo:
            result = await restore(repo, RestoreOptions(target=LATEST, dest=dest))
        assert isinstance(result, RestoreResult)
        assert not os.path.exists(killed)
        assert not os.path.exists(finished)
        assert (foreign / "notes.txt").read_text() == "mine", "a directory pitr did not make is left alone"
        assert os.path.exists(os.path.join(running, INCOMPLETE_MARK)), "a running restore is left alone"
    finally:
        os.close(running_fd)
    assert restored_entries(dest) == state_at(history, 5, history.watermark_ns)


async def test_restored_directories_and_files_are_private(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    old = os.umask(0o022)
    try:
        dest = str(tmp_path / "out" / "restored")
        async with open_repository(history.repo_dir) as repo:
            await restore(repo, RestoreOptions(target=LATEST, dest=dest))
        backups = str(tmp_path / "backups")
        await pitr.backup.create(backups, data=history.data)
        [backup] = await pitr.backup.list(backups)
        await pitr.backup.restore(backup.path, dest=str(tmp_path / "from-backup"))
    finally:
        os.umask(old)
    for root in (dest, str(tmp_path / "from-backup")):
        modes = {os.path.relpath(os.path.join(top, n), root): os.stat(os.path.join(top, n)).st_mode & 0o777
                 for top, dirs, files in os.walk(root) for n in [*dirs, *files]}
        modes["."] = os.stat(root).st_mode & 0o777
        assert modes, root
        for name, mode in modes.items():
            is_dir = os.path.isdir(os.path.join(root, name))
            assert mode == (0o700 if is_dir else 0o600), f"{root}/{name}: {oct(mode)}"
    assert os.stat(tmp_path / "out").st_mode & 0o777 == 0o700, "a parent the restore creates is private too"


def test_lock_holder_reports_a_live_writer_and_never_blocks_it(tmp_path: Path) -> None:
    from pitr.datadir.lock import WriterLock, lock_holder

    assert lock_holder(str(tmp_path)) is None
    lock = WriterLock(str(tmp_path))
    holder = lock_holder(str(tmp_path))
    assert holder is not None
    assert holder.pid == os.getpid()
    lock.release()
    assert lock_holder(str(tmp_path)) is None, "a lock file nobody holds is stale"
    fd = os.open(tmp_path / "LOCK", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # lock_holder left no lock of its own behind
    finally:
        os.close(fd)


async def test_an_unwritable_destination_is_one_line_naming_it(tmp_path: Path) -> None:
    history = await make_history(tmp_path)
    code, out, err = await run_cli("restore", "--latest", "--dest", "/proc/nope", "--repo", history.repo_dir)
    assert code == 1
    assert "/proc" in err
    assert "cannot" in err
    assert "Traceback" not in err
    assert out == ""
