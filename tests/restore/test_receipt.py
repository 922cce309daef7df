"""Restore receipts and `pitr verify --state`: the state digest a build predicts, kept and checked.

A restore ends by recomputing the built state's digest from its rows and
comparing it with the running digest the build kept (the base snapshot's own
digest, then each change's old row out and new row in); a mismatch publishes
nothing. `pitr verify --state DIR` recomputes the same digest later.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lmdb
import pytest

from pitr.cli.main import main
from pitr.datadir.build import SortedRows
from pitr.datadir.entries import encode_expiry
from pitr.datadir.state import StateDB
from pitr.errors import CorruptData
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreResult, RestoreTarget, restore
from pitr.restore.receipt import receipt_digest, receipt_of_append
from pitr.verify.state import verify_state as check_state
from segments.fold import Change
from tests.store.test_restore import build_path, make_history

__all__ = ["build_path"]  # the fixture, used by name
pytestmark = pytest.mark.anyio


def verify_state(path: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    """`pitr verify --state PATH --json`, through the library call the command makes (the tests here
    run inside an event loop); the command line itself is tested below."""
    report = check_state(path)
    return (0 if report.ok else 1), json.loads(json.dumps(report.as_dict()))


def test_verify_state_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").mkdir(mode=0o700)
    state = StateDB(str(tmp_path / "data" / "state"))
    try:
        state.apply({b"a": b"1", b"b": (b"2", 10**18 * 9)}, 1, 10)
        want = state.state_digest(None)[0].hex()
    finally:
        state.close()
    with pytest.raises(SystemExit) as exit_:
        main(["verify", "--state", str(tmp_path / "data"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert exit_.value.code == 0, report
    assert (report["ok"], report["state_digest"], report["rows"], report["expiring"]) == (True, want, 2, 1)
    lose_a_row(str(tmp_path / "data" / "state"), b"a")
    with pytest.raises(SystemExit) as exit_:
        main(["verify", "--state", str(tmp_path / "data")])
    out = capsys.readouterr().out
    assert exit_.value.code == 1, out
    assert "the checkpoint keeps" in out


async def test_a_restore_prints_the_digest_verify_state_recomputes(
        tmp_path: Path, build_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    history = await make_history(tmp_path, snapshot_after=2)
    dest = str(tmp_path / "out")
    async with open_repository(history.repo_dir) as repo:
        result = await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=dest))
    assert isinstance(result, RestoreResult)
    assert result.state_digest is not None
    state = StateDB(os.path.join(dest, "state"), readonly=True)
    try:
        assert result.state_digest == state.state_digest(None)[0]
    finally:
        state.close()
    code, report = verify_state(dest, capsys)
    assert code == 0, report
    assert report["ok"] is True
    assert report["state_digest"] == result.state_digest.hex()


def lose_a_row(state_dir: str, key: bytes) -> None:
    """Delete a row behind the state's back: every remaining row passes its checksum."""
    env = lmdb.open(state_dir, max_dbs=4, subdir=True)
    try:
        with env.begin(write=True) as txn:
            assert txn.delete(key, db=env.open_db(b"data", txn=txn))
    finally:
        env.close()


async def test_a_build_whose_rows_disagree_with_its_prediction_publishes_nothing(
        tmp_path: Path, build_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    history = await make_history(tmp_path, snapshot_after=2)
    real_sync = StateDB.sync

    def sync_losing_a_row(self: StateDB) -> None:  # a row lost between the build and its receipt
        self.close()
        lose_a_row(self.path, b"b")
        StateDB.__init__(self, self.path, sync=False)
        real_sync(self)

    real_receipt, real_append_receipt = receipt_digest, receipt_of_append

    def receipt_after_loss(state: StateDB) -> bytes:
        sync_losing_a_row(state)
        return real_receipt(state)

    def append_receipt_after_loss(state: StateDB, built: SortedRows) -> bytes:
        sync_losing_a_row(state)
        return real_append_receipt(state, built)

    from pitr.restore import engine

    monkeypatch.setattr(engine, "receipt_digest", receipt_after_loss)
    monkeypatch.setattr(engine, "receipt_of_append", append_receipt_after_loss)
    dest = tmp_path / "out"
    async with open_repository(history.repo_dir) as repo:
        with pytest.raises(CorruptData, match="restore receipt") as caught:
            await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest)))
    assert "nothing was published" in (caught.value.hint or "")
    assert not dest.exists()


async def test_verify_state_refuses_a_state_whose_rows_lost_one(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    history = await make_history(tmp_path)
    lose_a_row(os.path.join(history.data, "state"), b"b")
    code, report = verify_state(history.data, capsys)
    assert code == 1
    assert report["ok"] is False
    assert "the checkpoint keeps" in str(report["problems"])
    assert "pitr restore --latest" in str(report["hint"])


async def test_verify_state_names_a_garbled_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = await make_history(tmp_path)
    env = lmdb.open(os.path.join(history.data, "state"), max_dbs=4, subdir=True)
    try:
        with env.begin(write=True) as txn:
            data = env.open_db(b"data", txn=txn)
            raw = bytearray(txn.get(b"c", db=data))
            raw[-1] ^= 0x20
            txn.put(b"c", bytes(raw), db=data)
    finally:
        env.close()
    code, report = verify_state(history.data, capsys)
    assert code == 1
    assert "key b'c'" in str(report["problems"])
    assert "CRC-32C" in str(report["problems"])


async def test_verify_state_checks_the_expiry_index_against_the_rows(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    history = await make_history(tmp_path)  # b"session" carries an expiry
    env = lmdb.open(os.path.join(history.data, "state"), max_dbs=4, subdir=True)
    try:
        with env.begin(write=True) as txn:
            assert txn.delete(b"session", db=env.open_db(b"expiry", txn=txn))
    finally:
        env.close()
    code, report = verify_state(history.data, capsys)
    assert code == 1
    assert "expiry index" in str(report["problems"])


async def test_a_base_loaded_short_of_its_snapshot_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spilled build loads the base as it is: its digest must be the snapshot footer's."""
    from pitr.restore import engine

    history = await make_history(tmp_path, snapshot_after=2)
    real_split = engine.split_live

    def split_losing_one(chunk: list[tuple[bytes, Change]], cutoff_ns: int) -> tuple[
            list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], int]:
        puts, expiring, expired = real_split(chunk, cutoff_ns)
        return puts[1:], expiring, expired

    monkeypatch.setattr(engine, "MAX_CHANGES", 1)  # spill: the base is loaded before the replay
    monkeypatch.setattr(engine, "split_live", split_losing_one)
    dest = tmp_path / "out"
    async with open_repository(history.repo_dir) as repo:
        with pytest.raises(CorruptData, match="restore receipt: the base .* footer says"):
            await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest)))
    assert not dest.exists()


async def test_verify_state_names_an_expiry_index_row_that_disagrees_with_its_row(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = await make_history(tmp_path)
    env = lmdb.open(os.path.join(history.data, "state"), max_dbs=4, subdir=True)
    try:
        with env.begin(write=True) as txn:  # a checked index row, with another expiry than its row's
            txn.put(b"session", encode_expiry(b"session", 123), db=env.open_db(b"expiry", txn=txn))
    finally:
        env.close()
    code, report = verify_state(history.data, capsys)
    assert code == 1
    assert "expires at 123" in str(report["problems"])
