"""Signed checkpoints and a witness for an encrypted etcd archive, through the command line and the Python
API: `pitr archive --source etcd://... --signing-key S --witness W` signs into the repository and the
witness; `verify --witness` (and its keyless `--quick`) holds up; a rollback of the repository (newest
segment, its checkpoints and watermarks removed) is named by `verify --witness`, and a restore into etcd
or into a directory given the witness refuses it with nothing written."""

from __future__ import annotations

import json
import random
from pathlib import Path

import anyio
import pytest
import trio

from pitr.archiver import ArchiveOptions
from pitr.archiver.checkpoints import CheckpointWriter
from pitr.crypto import create_key_file
from pitr.crypto.keys import read_key_file
from pitr.errors import CorruptData, InvalidArgument, WrongKey
from pitr.repo.checkpoints import SigningKey, parse_checkpoint_name
from pitr.repo.keyring import unlock
from pitr.repo.repository import open_repository
from pitr.repo.witness import open_witness
from pitr.restore import RestoreTarget
from pitr.sources.etcd import (
    EtcdClient,
    EtcdRestoreOptions,
    EtcdRestoreResult,
    etcd_archiving,
    restore_to_etcd,
)
from tests.crypto.test_archive_encrypt import every_byte
from tests.crypto.test_witness_api import roll_back
from tests.etcd.test_archive import etcd_state, wait_until
from tests.etcd.test_encrypted_archive import Writer, etcd_url
from tests.helpers.cli import run_cli
from tests.servers.etcd import EtcdCluster

pytestmark = pytest.mark.integration


def witnessed_checkpoints(witness_dir: Path) -> list[int]:
    """The LSNs of the signed checkpoints the witness holds (one store's folder)."""
    folders = [p for p in witness_dir.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return sorted(lsn for p in (folders[0] / "checkpoints").iterdir()
                  if (lsn := parse_checkpoint_name(f"checkpoints/{p.name}")) is not None)


def test_the_command_line_signs_an_encrypted_etcd_archive_and_its_witness_catches_a_rollback(
        tmp_path: Path, etcd_server: EtcdCluster, key_prefix: bytes, random_seed: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    writer = Writer(etcd_server.endpoints, key_prefix, random.Random(random_seed))
    key, sign, repo, witness = tmp_path / "key", tmp_path / "sign", tmp_path / "repo", tmp_path / "witness"
    create_key_file(str(key))
    create_key_file(str(sign))
    keyed = ["--repo", str(repo), "--key-file", str(key)]

    def ok(*argv: str) -> str:
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, (argv, out, err)
        return out

    for round_ in range(3):
        writer.round(10)
        out = json.loads(ok("archive", "--source", etcd_url(etcd_server, key_prefix), "--data", str(tmp_path / "spool"),
                            *keyed, "--signing-key", str(sign), "--witness", str(witness), "--checkpoint-interval", "0",
                            "--json", *(["--encrypt"] if round_ == 0 else [])))
        assert out["checkpoints_written"] >= 1
    writer.round(3)
    code, out, err = run_cli(capsys, "archive", "--source", etcd_url(etcd_server, key_prefix), "--data",
                             str(tmp_path / "spool"), *keyed, "--signing-key", str(sign), "--witness", str(witness))
    assert code == 0, err
    assert f"checkpoint(s), kept in witness {witness}" in out, out  # (the default interval: the run's end signed)
    assert not [s for s in writer.secrets if s in every_byte(repo)]  # signed, and still sealed
    lsns = witnessed_checkpoints(witness)
    assert len(lsns) >= 3
    report = json.loads(ok("verify", *keyed, "--witness", str(witness), "--json"))[0]
    assert report["findings"] == []
    quick = json.loads(ok("verify", "--quick", "--repo", str(repo), "--witness", str(witness), "--json"))[0]
    assert quick["findings"] == []  # keyless: signatures and chain digests are checked without the data key

    end, newest = roll_back(repo)
    assert newest == lsns[-1] > end
    alone = json.loads(ok("verify", "--quick", "--repo", str(repo), "--json"))[0]
    assert alone["findings"] == []  # the repository alone looks complete, only older
    for argv in (["verify", *keyed], ["verify", "--quick", "--repo", str(repo)]):
        code, out, err = run_cli(capsys, *argv, "--witness", str(witness), "--json")
        assert code == 1, (out, err)
        findings = json.loads(out)[0]["findings"]
        assert [f["kind"] for f in findings] == ["missing"], findings
        assert f"LSNs {end + 1}..{newest} are missing" in findings[0]["message"]
    copy = key_prefix + b"copy/"
    for dest in (etcd_url(etcd_server, copy), str(tmp_path / "restored")):
        code, out, err = run_cli(capsys, "restore", "--latest", "--dest", dest, *keyed, "--witness", str(witness),
                                 "--json")
        assert code != 0, out
        doc = json.loads(err)
        assert doc["error"] == "corrupt_data", doc
        assert f"{end + 1}..{newest}" in doc["message"], doc
    assert writer.state(copy) == {}
    assert not (tmp_path / "restored").exists()


def test_the_python_api_encrypts_signs_and_restores_into_etcd_through_the_witness(
        tmp_path: Path, etcd_server: EtcdCluster, key_prefix: bytes, random_seed: int) -> None:
    rng = random.Random(random_seed)
    key, sign, repo_dir, witness_dir = (str(tmp_path / n) for n in ("key", "sign", "repo", "witness"))
    create_key_file(key)
    create_key_file(sign)
    secrets: list[bytes] = []
    copy, again = key_prefix + b"copy/", key_prefix + b"again/"

    async def write(client: EtcdClient, count: int) -> int:
        revision = 0
        for _ in range(count):
            suffix, value = rng.randbytes(16).hex().encode(), rng.randbytes(120)
            secrets.extend((suffix, value))
            revision = await client.put(key_prefix + suffix, value)
        return revision

    async def archive(client: EtcdClient, count: int) -> int:
        async with open_witness(witness_dir, create=True, repository_urls=(repo_dir,)) as witness:
            checkpoints = CheckpointWriter(SigningKey.from_file(sign), [witness], interval=0)
            async with etcd_archiving(client, key_prefix, str(tmp_path / "spool"), repo_dir, key_file=key,
                                      options=ArchiveOptions(interval=0.05, checkpoints=checkpoints)) as session:
                last = await write(client, count)
                await wait_until(lambda: session.follower.revision >= last)
            return checkpoints.written

    async def main() -> None:
        async with EtcdClient(etcd_server.endpoints) as client:
            await write(client, 5)  # the base load's
            assert await archive(client, 20) >= 1
            async with open_repository(repo_dir) as repo:
                assert (await repo.require_identity()).encryption is not None
                await unlock(repo, read_key_file(key))
                result = await restore_to_etcd(repo, client, EtcdRestoreOptions(
                    target=RestoreTarget(latest=True), prefix=copy, witness=witness_dir))
                assert isinstance(result, EtcdRestoreResult)
            source = await etcd_state(client, key_prefix)
            assert await etcd_state(client, copy) == {copy + k[len(key_prefix):]: v for k, v in source.items()
                                                      if not k.startswith(copy)}
            assert await archive(client, 10) >= 1  # a second segment, to be rolled back
            assert not [s for s in secrets if s in every_byte(Path(repo_dir))]
            await anyio.to_thread.run_sync(roll_back, Path(repo_dir))
            async with open_repository(repo_dir) as repo:
                await unlock(repo, read_key_file(key))
                with pytest.raises(CorruptData, match="are missing"):
                    await restore_to_etcd(repo, client, EtcdRestoreOptions(
                        target=RestoreTarget(latest=True), prefix=again, witness=witness_dir))
            assert await etcd_state(client, again) == {}
            # refused before the spool is opened: a key with a second repository; an open encrypted repository
            # given without its key (as the command line passes them: opened)
            spool = tmp_path / "spool-refused"
            with pytest.raises(InvalidArgument, match="alone"):
                async with etcd_archiving(client, key_prefix, str(spool), repo_dir, str(tmp_path / "other"),
                                          key_file=key):
                    pass
            assert not spool.exists()
            assert not (tmp_path / "other").exists()
            async with open_repository(repo_dir) as locked:
                with pytest.raises(WrongKey, match="is encrypted"):
                    async with etcd_archiving(client, key_prefix, str(spool), locked):
                        pass
            assert not spool.exists()

    trio.run(main)
