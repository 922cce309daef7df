"""An encrypted repository on the real S3 test server (rclone): the bucket and the local cache hold
none of the keys and values written, and restore, verify and audit through the key equal the model."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from pitr.archiver import ArchiveOptions
from pitr.archiver.archiver import identity_for
from pitr.archiving import StoreSource, archiving
from pitr.audit import value_at
from pitr.crypto import create_key_file, read_key_file
from pitr.repo.keyring import claim_encrypted, unlock
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.snapshots.take import take_snapshot
from pitr.store import Store
from pitr.verify import verify_repository
from tests.crypto.test_encrypted_repository import every_byte, restored_state
from tests.remote.conftest import aws_env, backing_dir, s3, s3_server, s3_url  # noqa: F401 - fixtures
from tests.servers.s3 import S3Server


def test_an_encrypted_s3_repository_holds_no_secret_and_restores_the_same(
        tmp_path: Path, s3: S3Server, random_seed: int) -> None:  # noqa: F811 - the fixture
    rng = random.Random(random_seed)
    url, key_path = s3_url(s3), str(tmp_path / "key")
    create_key_file(key_path)
    key = read_key_file(key_path)
    model: dict[bytes, bytes] = {}
    secrets: list[bytes] = []
    times: list[int] = []
    cache, cold, dest = tmp_path / "cache", tmp_path / "cold", tmp_path / "restored"

    async def archive() -> None:
        async with Store(str(tmp_path / "data")) as store, \
                open_repository(url, cache_dir=str(cache), s3_endpoint=s3.endpoint, create=True) as repo:
            await claim_encrypted(repo, identity_for(StoreSource(store)), key)
            async with archiving(store, repo, options=ArchiveOptions(interval=0.01, merge_count=3)) as arc:
                for i in range(120):
                    k, v = b"K" + rng.randbytes(15), b"V" + rng.randbytes(300)
                    times.append((await store.put(k, v)).ts_ns)
                    model[k] = v
                    secrets.extend((k, v))
                    if i % 40 == 0:
                        await trio.sleep(0.03)
                    if i == 60:  # a sealed base snapshot in the bucket
                        await take_snapshot(arc, prepare=store.flush)

    async def read_back() -> None:
        async with open_repository(url, cache_dir=str(cold), s3_endpoint=s3.endpoint) as repo:
            await unlock(repo, key)
            report = await verify_repository(repo)
            assert report.findings == []
            some = rng.choice(sorted(model))
            change = await value_at(repo, some, times[-1])
            assert change is not None
            assert change.value == model[some]
            result = await restore([repo], RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest)))
            assert result.base_snapshot is not None  # the sealed snapshot, fetched and opened through the key
            assert report.files_checked >= 2

    trio.run(archive)
    trio.run(read_back)
    assert restored_state(dest) == model
    stored = every_byte(Path(backing_dir(s3, url))) + every_byte(cache) + every_byte(cold)
    assert b"PITRSEG\n" in stored  # (the scan sees the objects)
    assert b"PITRSNP\n" in stored
    found = [s for s in secrets if s in stored]
    assert not found, f"{len(found)} keys and values written are in the bucket or the caches"
