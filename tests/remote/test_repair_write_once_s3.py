"""Write-once repair of an S3 repository, request by request, and on a bucket under Object Lock.

The specification:

- repairing a damaged object of an S3 repository from a healthy directory writes only names the bucket did
  not hold, each once, and deletes nothing; afterwards verify is OK, restores equal the healthy
  repository's, and `pitr cleanup` deletes the damaged object;
- on a bucket whose objects are retained (Object Lock, COMPLIANCE), where S3 refuses to delete a retained
  object, repair succeeds (nothing to delete), puts its copies with the same retention, and cleanup keeps
  the damaged object, reporting until when it is retained, and exits 0.

The test server (rclone) records retention but does not enforce it, so the locked bucket is the server
behind a client that refuses, as S3 does, to delete an object before its retain-until date.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import pitr.repo.repository as repository_module
from pitr.errors import StorageError
from pitr.restore import RestoreTarget
from pitr.storage import S3Storage, Storage
from pitr.storage.ratelimit import NO_LIMITS
from segments.naming import segment_name, with_generation
from tests.helpers.cli import run_cli
from tests.remote.conftest import backing_dir, s3_url
from tests.remote.test_remote import damage_object
from tests.repo.history import History, build_history
from tests.servers.s3 import S3Server
from tests.storage.test_write_once import Recorder, counting
from tests.transfer.test_copy import restored_state

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(str(tmp_path_factory.mktemp("repair-s3-history")), commits=200, snapshot_every=100,
                         merge_count=1000, seed=7)


@pytest.fixture
def healthy(history: History, tmp_path: Path) -> str:
    path = str(tmp_path / "healthy")
    shutil.copytree(history.repo, path, ignore=shutil.ignore_patterns(".catalog", ".work"))
    return path


def record_s3(monkeypatch: pytest.MonkeyPatch, s3: S3Server, *, enforce_lock: bool) -> Recorder:
    """From now on, every S3 repository's writes and deletes are recorded; with `enforce_lock` a delete of a
    retained object is refused as a bucket under Object Lock refuses it."""
    recorder = Recorder()
    base = counting(S3Storage, recorder)

    class Locked(base):  # type: ignore[misc,valid-type]
        async def delete(self, name: str) -> None:
            until = await self.retained_until(name)
            if enforce_lock and until is not None and until > time.time_ns():
                raise StorageError(f"{self.url}/{name}: AccessDenied: the object is retained (Object Lock) "
                                   "and cannot be deleted yet")
            await super().delete(name)

    real_open = repository_module.open_storage

    def open_storage(target: str, **options: Any) -> Storage:  # noqa: ANN401
        plain = real_open(target, **options)
        if type(plain) is not S3Storage:
            return plain
        return Locked(target, endpoint_url=s3.endpoint, limits=options.get("limits", NO_LIMITS),  # type: ignore[no-any-return]
                      object_lock=plain.object_lock)

    monkeypatch.setattr(repository_module, "open_storage", open_storage)
    return recorder


def bucket_names(behind: str) -> set[str]:
    return {f"{folder}/{n}" for folder in ("segments", "snapshots") for n in os.listdir(os.path.join(behind, folder))}


def check_write_once(recorder: Recorder, before: set[str]) -> None:
    assert not recorder.deleted, f"deleted during repair: {recorder.deleted}"
    assert not recorder.replaced, f"replaced during repair: {recorder.replaced}"
    assert not {n: c for n, c in recorder.writes.items() if c > 1}, recorder.writes
    assert not set(recorder.writes) & before, sorted(set(recorder.writes) & before)


def test_repair_of_an_s3_repository_writes_new_names_only(
        history: History, healthy: str, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = s3_url(s3)
    flags = ("--s3-endpoint", s3.endpoint, "--cache-dir", str(tmp_path / "cache"))
    assert run_cli(capsys, "copy", "--from", healthy, "--to", url, *flags)[0] == 0
    behind = backing_dir(s3, url)
    victim = sorted(os.listdir(os.path.join(behind, "segments")))[3]
    snapshot = sorted(os.listdir(os.path.join(behind, "snapshots")))[0]
    damage_object(s3, url, f"segments/{victim}")
    damage_object(s3, url, f"snapshots/{snapshot}", at=0.3)
    damaged_bytes = Path(behind, "segments", victim).read_bytes()
    assert run_cli(capsys, "verify", "--repo", url, *flags)[0] == 1
    before = bucket_names(behind)
    recorder = record_s3(monkeypatch, s3, enforce_lock=False)

    code, out, err = run_cli(capsys, "repair", "--from", healthy, url, *flags, "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert sorted(report["replaced"]) == sorted([victim, snapshot])
    check_write_once(recorder, before)
    assert set(recorder.writes) >= {f"segments/{with_generation(victim, 1)}",
                                    f"snapshots/{with_generation(snapshot, 1)}"}
    assert Path(behind, "segments", victim).read_bytes() == damaged_bytes
    assert not os.path.exists(os.path.join(behind, ".damaged"))
    code, out, err = run_cli(capsys, "verify", "--repo", url, *flags, "--cache-dir", str(tmp_path / "cold"))
    assert code == 0, out + err
    monkeypatch.setenv("PITR_S3_ENDPOINT", s3.endpoint)  # restored_state opens the repository by URL alone
    for lsn in (50, 200):
        assert restored_state(url, str(tmp_path / f"t{lsn}"), RestoreTarget(lsn=lsn)) == history.commits[lsn - 1][2]

    code, out, err = run_cli(capsys, "cleanup", "--repo", url, *flags, "--keep-count", "10", "--json")
    assert code == 0, out + err
    assert sorted(json.loads(out)[0]["superseded"]) == sorted([f"segments/{victim}", f"snapshots/{snapshot}"])
    assert not os.path.exists(os.path.join(behind, "segments", victim))
    assert run_cli(capsys, "verify", "--repo", url, *flags)[0] == 0


def damage_retained_object(server: S3Server, url: str, name: str) -> None:
    """Flip a bit of an object, keeping its retention (bit rot under the lock: the object stays retained)."""
    import boto3

    client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
    key = url[len(f"s3://{server.bucket}/"):] + "/" + name
    try:
        head = client.head_object(Bucket=server.bucket, Key=key)
        until = head["ObjectLockRetainUntilDate"]
        data = bytearray(client.get_object(Bucket=server.bucket, Key=key)["Body"].read())
        data[len(data) // 2] ^= 0x10
        client.put_object(Bucket=server.bucket, Key=key, Body=bytes(data), ObjectLockMode="COMPLIANCE",
                          ObjectLockRetainUntilDate=until)
    finally:
        client.close()


def test_repair_on_an_object_lock_bucket(
        healthy: str, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = s3_url(s3)
    flags = ("--s3-endpoint", s3.endpoint, "--cache-dir", str(tmp_path / "cache"))
    lock = ("--object-lock-days", "2")
    assert run_cli(capsys, "copy", "--from", healthy, "--to", url, *flags, *lock)[0] == 0
    behind = backing_dir(s3, url)
    # after the oldest snapshot: the retention rule leaves it, so only its being superseded could delete it
    victim = next(n for n in sorted(os.listdir(os.path.join(behind, "segments"))) if n > segment_name(100, 100))
    damage_retained_object(s3, url, f"segments/{victim}")  # bit rot on the server, beneath the lock
    before = bucket_names(behind)
    recorder = record_s3(monkeypatch, s3, enforce_lock=True)

    code, out, err = run_cli(capsys, "repair", "--from", healthy, url, *flags, *lock, "--json")
    assert code == 0, out + err
    assert json.loads(out)["replaced"] == [victim]
    check_write_once(recorder, before)
    assert run_cli(capsys, "verify", "--repo", url, *flags)[0] == 0

    async def retention(name: str) -> int | None:
        storage = S3Storage(url, endpoint_url=s3.endpoint)
        try:
            return await storage.retained_until(name)
        finally:
            await storage.aclose()

    repaired = trio.run(retention, f"segments/{with_generation(victim, 1)}")
    assert repaired is not None, "the repaired copy is put without retention"
    assert repaired > time.time_ns() + 86_400 * 10**9  # retained for the 2 days asked, like the rest

    code, out, err = run_cli(capsys, "cleanup", "--repo", url, *flags, "--keep-count", "10", "--json")
    assert code == 0, out + err
    done = json.loads(out)[0]
    locked = {x["object"] for x in done["locked"]}
    assert f"segments/{victim}" in locked  # reported with its date, kept, and cleanup exits 0
    assert f"segments/{victim}" not in done["superseded"]
    assert os.path.exists(os.path.join(behind, "segments", victim))
    assert run_cli(capsys, "verify", "--repo", url, *flags)[0] == 0
