"""A witness in a bucket on the real S3 test server (rclone): the archiver's checkpoints land there, and a
local repository rolled back afterwards is reported against it, with the missing LSN range."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from pitr.archiver import ArchiveOptions
from pitr.archiver.checkpoints import CheckpointWriter
from pitr.archiving import archiving
from pitr.crypto import create_key_file
from pitr.repo import layout
from pitr.repo.checkpoints import SigningKey, parse_checkpoint_name
from pitr.repo.identity import RepoIdentity, Watermark
from pitr.repo.repository import open_repository
from pitr.repo.witness import open_witness
from pitr.store import Store
from pitr.verify import verify_repository
from segments import BytesSource, read_meta
from tests.remote.conftest import aws_env, s3, s3_server, s3_url  # noqa: F401 - fixtures
from tests.servers.s3 import S3Server


def test_a_witness_in_s3_catches_a_rollback_of_a_local_repository(
        tmp_path: Path, s3: S3Server, random_seed: int) -> None:  # noqa: F811 - the fixture
    rng = random.Random(random_seed)
    repo_dir, witness_url, sign = tmp_path / "repo", s3_url(s3), str(tmp_path / "sign")
    create_key_file(sign)
    written: list[int] = []

    async def archive() -> None:
        async with Store(str(tmp_path / "data")) as store, \
                open_witness(witness_url, create=True, s3_endpoint=s3.endpoint) as witness:
            writer = CheckpointWriter(SigningKey.from_file(sign), [witness], interval=0)
            async with archiving(store, str(repo_dir),
                                 options=ArchiveOptions(interval=0.01, merge_count=1000, checkpoints=writer)) as archiver:
                for i in range(90):
                    await store.put(b"K" + rng.randbytes(15), b"V" + rng.randbytes(100))
                    if i % 30 == 29:  # a segment of its own, however loaded the machine
                        await archiver.cycle()
            written.append(writer.written)

    trio.run(archive)
    newest_segment = max((repo_dir / "segments").iterdir())
    meta = read_meta(BytesSource(newest_segment.read_bytes(), newest_segment.name))
    newest_segment.unlink()
    for path in (repo_dir / "checkpoints").iterdir():
        lsn = parse_checkpoint_name(path.name)
        if lsn is not None and lsn >= meta.first_lsn:
            path.unlink()
    ident = RepoIdentity.decode((repo_dir / layout.IDENTITY).read_bytes(), layout.IDENTITY)
    (repo_dir / layout.WATERMARK).write_bytes(Watermark(ident.store_id, meta.first_lsn - 1, meta.header.first_ts_ns - 1).encode())

    async def check() -> None:
        async with open_repository(str(repo_dir)) as repo:
            assert (await verify_repository(repo, mode="quick")).findings == []  # alone, it looks complete
            async with open_witness(witness_url, create=False, s3_endpoint=s3.endpoint) as witness:
                listed = await witness.storage.list(witness.prefix(ident.store_id) + "checkpoints/")
                assert sum(parse_checkpoint_name(i.name) is not None for i in listed) == written[0] >= 3
                report = await verify_repository(repo, mode="quick", witness=witness)
        assert [f.kind for f in report.findings] == ["missing"], report.findings
        assert f"LSNs {meta.first_lsn}..{meta.last_lsn} are missing" in report.findings[0].message
        assert report.findings[0].file.startswith(witness_url)

    trio.run(check)
