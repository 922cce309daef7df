"""Issue #11 item 17: the seed's backup API (create, list, verify, restore, cleanup) on every backend.

`pitr.backup.create` on an `s3://` repository used to publish the snapshot and then crash with
AttributeError reading its header from a local path that does not exist.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import pitr.backup
from pitr.datadir.state import StateDB
from pitr.errors import CorruptData, InvalidArgument
from pitr.store import Store
from segments.naming import snapshot_name
from tests.servers.s3 import S3Server
from tests.storage.conftest import BACKENDS, s3_url

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
def backup_repo(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(repository path or URL, S3 endpoint) on each backend."""
    if request.param == "local":
        return str(tmp_path / "backups"), None
    server: S3Server = request.getfixturevalue("s3_server")
    request.getfixturevalue("aws_env")
    return s3_url(server), server.endpoint


def state_of(dest: str) -> dict[bytes, bytes]:
    state = StateDB(os.path.join(dest, "state"), readonly=True)
    try:
        return {k: v for k, v, _e in state.iter_range(b"", None)}
    finally:
        state.close()


async def test_the_backup_api_on_every_backend(tmp_path: Path, backup_repo: tuple[str, str | None]) -> None:
    repo, endpoint = backup_repo
    data = str(tmp_path / "data")
    async with Store(data) as store:
        await store.put(b"a", b"1")
        await store.put(b"b", b"2")
        first = await pitr.backup.create(repo, data=store, s3_endpoint=endpoint)
        await store.put(b"a", b"3")
    second = await pitr.backup.create(repo, data=data, s3_endpoint=endpoint)  # a closed store's directory
    assert (first.lsn, second.lsn) == (2, 3)
    assert (first.entry_count, second.entry_count) == (2, 2)
    if endpoint is not None:
        assert first.path.startswith(repo + "/snapshots/")

    listed = await pitr.backup.list(repo, s3_endpoint=endpoint)
    assert [(b.path, b.lsn, b.entry_count) for b in listed] == [(first.path, 2, 2), (second.path, 3, 2)]
    assert listed[0].store_id == first.store_id

    for backup in listed:
        checked = await pitr.backup.verify(backup.path, s3_endpoint=endpoint)
        assert checked.valid, checked.findings

    dest = str(tmp_path / "restored")
    result = await pitr.backup.restore(first.path, dest=dest, s3_endpoint=endpoint)
    assert result.target_lsn == 2
    assert state_of(dest) == {b"a": b"1", b"b": b"2"}
    result = await pitr.backup.restore(second.path, dest=dest, force=True, s3_endpoint=endpoint)
    assert result.replaced is not None
    assert result.replaced.kind == "pitr store"
    assert state_of(dest) == {b"a": b"3", b"b": b"2"}

    assert await pitr.backup.cleanup(repo, keep_count=1, keep_days=0, dry_run=True, s3_endpoint=endpoint) >= 1
    assert len(await pitr.backup.list(repo, s3_endpoint=endpoint)) == 2, "a dry run deletes nothing"
    deleted = await pitr.backup.cleanup(repo, keep_count=1, keep_days=0, s3_endpoint=endpoint)
    assert deleted >= 1
    assert [b.lsn for b in await pitr.backup.list(repo, s3_endpoint=endpoint)] == [3]

    with pytest.raises(InvalidArgument, match="no such backup"):
        await pitr.backup.verify(first.path, s3_endpoint=endpoint)


async def test_a_damaged_backup_is_refused_on_every_backend(tmp_path: Path,
                                                            backup_repo: tuple[str, str | None]) -> None:
    repo, endpoint = backup_repo
    async with Store(str(tmp_path / "data")) as store:
        for i in range(50):
            await store.put(f"k{i}".encode(), random.Random(i).randbytes(64))
        backup = await pitr.backup.create(repo, data=store, s3_endpoint=endpoint)
    if endpoint is None:
        path = backup.path
    else:
        from pitr.storage import open_storage

        storage = open_storage(repo, s3_endpoint=endpoint)
        name = backup.path.removeprefix(repo + "/")
        raw = bytearray(await storage.read(name))
        raw[len(raw) // 2] ^= 0xFF
        await storage.delete(name)
        await storage.publish(name, bytes(raw))
        await storage.aclose()
        path = backup.path
    if endpoint is None:
        raw = bytearray(Path(path).read_bytes())  # noqa: ASYNC240 - a test damaging a file, no loop to keep
        raw[len(raw) // 2] ^= 0xFF
        Path(path).write_bytes(bytes(raw))  # noqa: ASYNC240
    checked = await pitr.backup.verify(path, s3_endpoint=endpoint)
    assert not checked.valid
    with pytest.raises(CorruptData, match="backup is damaged"):
        await pitr.backup.restore(path, dest=str(tmp_path / "restored"), s3_endpoint=endpoint)
    assert not (tmp_path / "restored").exists()


async def test_a_backup_url_that_names_no_backup_is_one_clear_error(s3_server: S3Server, aws_env: None) -> None:
    repo = s3_url(s3_server)
    with pytest.raises(InvalidArgument, match="not a backup"):
        await pitr.backup.verify(repo + "/elsewhere/x.snap", s3_endpoint=s3_server.endpoint)
    with pytest.raises(InvalidArgument, match="no such backup"):
        await pitr.backup.verify(f"{repo}/snapshots/{snapshot_name(1, 1_800_000_000_000_000_000)}",
                                 s3_endpoint=s3_server.endpoint)
