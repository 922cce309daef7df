"""The witness through the Python API: `pitr.restore(..., RestoreOptions(witness=...))` and
`verify_repository(..., witness=...)` take a directory, an `s3://` URL or an opened witness, as
`--witness` does, and a rolled-back repository is refused before anything is planned or built."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import trio

from pitr.errors import CorruptData, InvalidArgument, NotARepository
from pitr.repo import layout
from pitr.repo.checkpoints import parse_checkpoint_name
from pitr.repo.repository import open_repository
from pitr.repo.watermarks import PREFIX as WATERMARKS
from pitr.repo.watermarks import parse_name as parse_watermark
from pitr.repo.witness import open_witness
from pitr.restore import RestoreOptions, RestorePlan, RestoreResult, RestoreTarget, restore
from pitr.verify import verify_repository
from segments import BytesSource, read_meta
from tests.crypto.test_checkpoints import archived
from tests.remote.conftest import aws_env, s3, s3_server, s3_url  # noqa: F401 - fixtures
from tests.servers.s3 import S3Server


def roll_back(repo_dir: Path) -> tuple[int, int]:
    """What someone who can write to the repository (not to the witness) does: drop the newest segment, the
    checkpoints and watermark objects past the older end, and the derived catalog; (kept end, newest LSN)."""
    segs = sorted((repo_dir / "segments").iterdir())
    metas = [read_meta(BytesSource(p.read_bytes(), p.name)) for p in segs]
    end, newest = metas[-2].last_lsn, metas[-1].last_lsn
    segs[-1].unlink()
    for path in (repo_dir / "checkpoints").iterdir():
        lsn = parse_checkpoint_name(path.name)
        if lsn is not None and lsn > end:
            path.unlink()
    for path in (repo_dir / WATERMARKS).iterdir():
        parsed = parse_watermark(path.name)
        if parsed is not None and parsed[0] > end:
            path.unlink()
    shutil.rmtree(repo_dir / layout.LOCAL_CATALOG_DIR, ignore_errors=True)
    return end, newest


def library_restore(repo_dir: Path, dest: Path, *, s3_endpoint: str | None = None, dry_run: bool = False,
                    witness: str | None = None, opened: bool = False) -> RestorePlan | RestoreResult:
    out: list[RestorePlan | RestoreResult] = []

    async def main() -> None:
        async with open_repository(str(repo_dir)) as repo:
            if opened:
                assert witness is not None
                async with open_witness(witness, create=False, s3_endpoint=s3_endpoint) as w:
                    options = RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest), witness=w)
                    out.append(await restore(repo, options))
            else:
                options = RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest), dry_run=dry_run,
                                         witness=witness, witness_s3_endpoint=s3_endpoint)
                out.append(await restore(repo, options))

    trio.run(main)
    return out[0]


def test_the_library_restore_refuses_a_rolled_back_repository_given_the_witness(
        tmp_path: Path, random_seed: int) -> None:
    repo_dir, witness_dir, _writer = archived(tmp_path, random.Random(random_seed))
    whole = library_restore(repo_dir, tmp_path / "whole", witness=str(witness_dir))
    assert isinstance(whole, RestoreResult)
    end, newest = roll_back(repo_dir)
    assert end < newest
    for dry_run, opened in ((False, False), (True, False), (False, True)):
        dest = tmp_path / f"refused-{dry_run}-{opened}"
        with pytest.raises(CorruptData, match=rf"LSNs {end + 1}\.\.{newest} are missing.*nothing was restored"):
            library_restore(repo_dir, dest, witness=str(witness_dir), dry_run=dry_run, opened=opened)
        assert not dest.exists()
        assert not list(tmp_path.glob(f".{dest.name}.restoring-*"))
    alone = library_restore(repo_dir, tmp_path / "alone")  # without the witness the older state looks latest
    assert isinstance(alone, RestoreResult)
    assert alone.target_lsn == end < whole.target_lsn == newest


def test_the_library_verify_opens_a_witness_given_by_path(tmp_path: Path, random_seed: int) -> None:
    repo_dir, witness_dir, _writer = archived(tmp_path, random.Random(random_seed))
    end, newest = roll_back(repo_dir)

    async def main() -> None:
        async with open_repository(str(repo_dir)) as repo:
            report = await verify_repository(repo, mode="quick", witness=str(witness_dir))
            assert [f.kind for f in report.findings] == ["missing"], report.findings
            assert f"LSNs {end + 1}..{newest} are missing" in report.findings[0].message
            assert report.checkpoints is not None
            assert report.checkpoints.witness == str(witness_dir)
            with pytest.raises(NotARepository, match="does not exist"):
                await verify_repository(repo, mode="quick", witness=str(tmp_path / "nowhere"))
            with pytest.raises(InvalidArgument, match="is the repository itself"):
                await verify_repository(repo, mode="quick", witness=str(repo_dir))
            with pytest.raises(NotARepository, match="does not exist"):
                await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=str(tmp_path / "d"),
                                                   witness=str(tmp_path / "nowhere")))

    trio.run(main)
    assert not (tmp_path / "d").exists()
    with pytest.raises(InvalidArgument, match="witness must name"):
        RestoreOptions(target=RestoreTarget(latest=True), dest=str(tmp_path / "d"), witness=" ")


def test_the_library_restore_checks_against_a_witness_in_s3(
        tmp_path: Path, s3: S3Server, random_seed: int) -> None:  # noqa: F811 - the fixture
    rng = random.Random(random_seed)
    repo_dir, witness_url = _archive_with_s3_witness(tmp_path, s3, rng)
    whole = library_restore(repo_dir, tmp_path / "whole", witness=witness_url, s3_endpoint=s3.endpoint)
    assert isinstance(whole, RestoreResult)
    end, newest = roll_back(repo_dir)
    with pytest.raises(CorruptData, match=rf"LSNs {end + 1}\.\.{newest} are missing"):
        library_restore(repo_dir, tmp_path / "refused", witness=witness_url, s3_endpoint=s3.endpoint)
    assert not (tmp_path / "refused").exists()
    with pytest.raises(CorruptData, match=rf"LSNs {end + 1}\.\.{newest} are missing"):
        library_restore(repo_dir, tmp_path / "refused", witness=witness_url, s3_endpoint=s3.endpoint, opened=True)
    assert not (tmp_path / "refused").exists()


def _archive_with_s3_witness(tmp_path: Path, s3: S3Server,  # noqa: F811 - the fixture's name
                             rng: random.Random) -> tuple[Path, str]:
    from pitr.archiver import ArchiveOptions
    from pitr.archiver.checkpoints import CheckpointWriter
    from pitr.archiving import archiving
    from pitr.crypto import create_key_file
    from pitr.repo.checkpoints import SigningKey
    from pitr.store import Store

    repo_dir, witness_url, sign = tmp_path / "repo", s3_url(s3), str(tmp_path / "sign")
    create_key_file(sign)

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

    trio.run(archive)
    return repo_dir, witness_url


def test_the_library_restore_of_an_s3_repository_opens_an_s3_witness_on_its_endpoint(
        tmp_path: Path, s3: S3Server, random_seed: int) -> None:  # noqa: F811 - the fixture
    """Repository and witness in the test server's bucket; the witness's endpoint is the repository's by
    default. The rollback goes through the S3 API, as someone holding the bucket's keys would do it."""
    from pitr.archiver import ArchiveOptions
    from pitr.archiver.checkpoints import CheckpointWriter
    from pitr.archiving import archiving
    from pitr.crypto import create_key_file
    from pitr.repo.checkpoints import SigningKey
    from pitr.storage import open_storage
    from pitr.store import Store

    rng = random.Random(random_seed)
    url, witness_url, sign, cache = s3_url(s3), s3_url(s3), str(tmp_path / "sign"), str(tmp_path / "cache")
    create_key_file(sign)

    async def archive() -> None:
        async with Store(str(tmp_path / "data")) as store, \
                open_witness(witness_url, create=True, s3_endpoint=s3.endpoint) as witness:
            writer = CheckpointWriter(SigningKey.from_file(sign), [witness], interval=0)
            options = ArchiveOptions(interval=0.01, merge_count=1000, checkpoints=writer)
            async with archiving(store, url, options=options, cache_dir=cache, s3_endpoint=s3.endpoint) as archiver:
                for i in range(90):
                    await store.put(b"K" + rng.randbytes(15), b"V" + rng.randbytes(100))
                    if i % 30 == 29:  # a segment of its own, however loaded the machine
                        await archiver.cycle()

    def attempt(dest: Path) -> RestorePlan | RestoreResult:
        out: list[RestorePlan | RestoreResult] = []

        async def main() -> None:
            async with open_repository(url, cache_dir=cache, s3_endpoint=s3.endpoint) as repo:
                out.append(await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest),
                                                              witness=witness_url)))

        trio.run(main)
        return out[0]

    trio.run(archive)
    assert isinstance(attempt(tmp_path / "whole"), RestoreResult)
    async def roll_back_in_the_bucket() -> tuple[int, int]:  # through the S3 API, as with the bucket's keys
        storage = open_storage(url, s3_endpoint=s3.endpoint)
        try:
            segs = sorted(i.name for i in await storage.list("segments/"))
            metas = [read_meta(BytesSource(await storage.read(n), n)) for n in segs]
            end, newest = metas[-2].last_lsn, metas[-1].last_lsn
            await storage.delete(segs[-1])
            for info in await storage.list("checkpoints/") + await storage.list(WATERMARKS):
                lsn = parse_checkpoint_name(info.name)
                mark = parse_watermark(info.name.rsplit("/", 1)[-1])
                if (lsn if lsn is not None else mark[0] if mark is not None else -1) > end:
                    await storage.delete(info.name)
        finally:
            await storage.aclose()
        return end, newest

    end, newest = trio.run(roll_back_in_the_bucket)
    with pytest.raises(CorruptData, match=rf"LSNs {end + 1}\.\.{newest} are missing"):
        attempt(tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
