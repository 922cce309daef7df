"""The adversary of issue 14: someone who can write to the repository and has read docs/format.md, but holds
neither the repository's key nor the checkpoint signing key, and has no access to the witness.

Each move recomputes every checksum that needs no key. `verify` catches each, naming the file (and for a
rollback the missing LSN range), and restore refuses where the forged files would be read:

- a segment rewritten (a block's bytes and a piece's records digest changed, every unkeyed checksum and
  the unkeyed chain fold recomputed);
- two blocks of a segment swapped (index retiled, CRCs and file digest recomputed);
- the newest segments dropped, their checkpoints deleted and the watermark rewritten to the older end;
- an older identity document of the same history replayed (another data key's wrap; a plaintext one).

The rollback leaves no damaged file to read: restore refuses it only when given the witness (`--witness`).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import trio

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiver.archiver import identity_for
from pitr.archiver.checkpoints import CheckpointWriter
from pitr.archiving import StoreSource
from pitr.crypto import create_key_file, read_key_file
from pitr.errors import HistoryGap, WrongKey
from pitr.repo import layout
from pitr.repo.checkpoints import SigningKey, parse_checkpoint_name
from pitr.repo.identity import RepoIdentity
from pitr.repo.keyring import claim_encrypted, new_encryption, unlock
from pitr.repo.repository import open_repository
from pitr.repo.watermarks import PREFIX as WATERMARKS
from pitr.repo.watermarks import parse_name as parse_watermark
from pitr.repo.witness import open_witness
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.store import Store
from pitr.verify import verify_repository
from segments import BytesSource, read_meta
from segments import segment_format as fmt
from tests.crypto.test_sealed_segments import swapped
from tests.fuzz.reseal import reseal_segment
from tests.helpers.cli import run_cli

COMMITS = 240
SEGMENTS = 6


def history(tmp_path: Path, rng: random.Random) -> tuple[Path, Path]:
    """An encrypted repository (key tmp_path/key) of several segments, checkpointed after every watermark
    (signing key tmp_path/sign) into it and into a witness; (repository, witness)."""
    repo_dir, witness_dir, key, sign = tmp_path / "repo", tmp_path / "witness", tmp_path / "key", tmp_path / "sign"
    create_key_file(str(key))
    create_key_file(str(sign))

    async def main() -> None:
        async with Store(str(tmp_path / "data")) as store, open_repository(str(repo_dir), create=True) as repo, \
                open_witness(str(witness_dir), create=True) as witness:
            await claim_encrypted(repo, identity_for(StoreSource(store)), read_key_file(str(key)))
            writer = CheckpointWriter(SigningKey.from_file(str(sign)), [witness], interval=0)
            archiver = Archiver(StoreSource(store), [repo], ArchiveOptions(merge_count=1000, checkpoints=writer))
            await archiver.start()
            for _segment in range(SEGMENTS):  # one cycle each: a segment of two or more blocks, a checkpoint
                for _ in range(COMMITS // SEGMENTS):
                    await store.put(b"K" + rng.randbytes(15), b"V" + rng.randbytes(2000))
                await archiver.cycle()

    trio.run(main)
    return repo_dir, witness_dir


def segments_of(repo_dir: Path) -> list[Path]:
    return sorted((repo_dir / "segments").iterdir())


def forget_catalog(repo_dir: Path) -> None:
    """The adversary wipes the derived catalog too (it is rebuilt from the files they left)."""
    shutil.rmtree(repo_dir / layout.LOCAL_CATALOG_DIR, ignore_errors=True)


def overwrite(path: Path, data: bytes) -> None:
    path.chmod(0o600)
    path.write_bytes(data)


def refuses_restore(tmp_path: Path, repo_dir: Path, match: str) -> None:
    dest = tmp_path / "restored"

    async def attempt() -> None:
        async with open_repository(str(repo_dir)) as repo:
            await unlock(repo, read_key_file(str(tmp_path / "key")))
            with pytest.raises(HistoryGap, match=match):
                await restore([repo], RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest)))

    trio.run(attempt)
    assert not dest.exists()


def verify(repo_dir: Path, key: Path | None, mode: str, witness_dir: Path | None = None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    async def check() -> None:
        async with open_repository(str(repo_dir)) as repo:
            if key is not None:
                await unlock(repo, read_key_file(str(key)))
            if witness_dir is None:
                report = await verify_repository(repo, mode=mode)
            else:
                async with open_witness(str(witness_dir), create=False) as witness:
                    report = await verify_repository(repo, mode=mode, witness=witness)
            out.extend((f.file, f.message) for f in report.findings)

    trio.run(check)
    return out


def test_the_untouched_history_verifies_with_and_without_the_key(tmp_path: Path, random_seed: int) -> None:
    repo_dir, witness_dir = history(tmp_path, random.Random(random_seed))
    assert len(segments_of(repo_dir)) == SEGMENTS
    assert all(read_meta(BytesSource(p.read_bytes(), p.name)).header.keyed_chain for p in segments_of(repo_dir))
    assert len([p for p in (repo_dir / "checkpoints").iterdir() if parse_checkpoint_name(p.name)]) >= 3
    assert verify(repo_dir, tmp_path / "key", "full", witness_dir) == []
    assert verify(repo_dir, None, "quick", witness_dir) == []


def test_a_rewritten_segment_with_every_unkeyed_checksum_recomputed_is_named(tmp_path: Path, random_seed: int) -> None:
    rng = random.Random(random_seed)
    repo_dir, witness_dir = history(tmp_path, rng)
    victim = segments_of(repo_dir)[1]
    blob = bytearray(victim.read_bytes())
    meta = read_meta(BytesSource(bytes(blob), victim.name))
    entry = meta.index[0]
    blob[entry.offset + entry.compressed_size // 2] ^= 0x55  # another plaintext, as far as they can tell
    pieces_at = meta.trailer.index_offset + len(meta.index) * fmt.INDEX_ENTRY.size
    blob[pieces_at + 16:pieces_at + 48] = rng.randbytes(32)  # ... and a records digest to go with it
    overwrite(victim, reseal_segment(bytes(blob)))
    read_meta(BytesSource(victim.read_bytes(), victim.name))  # every check that needs no key passes
    forget_catalog(repo_dir)
    for mode in ("quick", "full"):  # the keyed fold catches it without reading a block
        found = verify(repo_dir, tmp_path / "key", mode, witness_dir)
        assert [f for f, _ in found] == [victim.name], found
        assert "keyed chain digest does not match" in found[0][1]
    refuses_restore(tmp_path, repo_dir, victim.name)


def test_two_swapped_blocks_are_named(tmp_path: Path, random_seed: int) -> None:
    repo_dir, witness_dir = history(tmp_path, random.Random(random_seed))
    victim = max(segments_of(repo_dir), key=lambda p: len(read_meta(BytesSource(p.read_bytes(), p.name)).index))
    overwrite(victim, swapped(victim.read_bytes(), 0, 1))
    forget_catalog(repo_dir)
    found = verify(repo_dir, tmp_path / "key", "full", witness_dir)
    assert [f for f, _ in found] == [victim.name], found
    assert "sealed block 0 fails its authentication tag" in found[0][1]
    refuses_restore(tmp_path, repo_dir, f"{victim.name}.*sealed block 0 fails its authentication tag")


def test_a_rollback_is_reported_with_the_missing_lsn_range(
        tmp_path: Path, random_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    repo_dir, witness_dir = history(tmp_path, random.Random(random_seed))
    segs = segments_of(repo_dir)
    metas = [read_meta(BytesSource(p.read_bytes(), p.name)) for p in segs]
    keep = len(segs) - 2
    end, newest = metas[keep - 1].last_lsn, metas[-1].last_lsn
    for path in segs[keep:]:
        path.unlink()
    for path in (repo_dir / "checkpoints").iterdir():
        lsn = parse_checkpoint_name(path.name)
        if lsn is not None and lsn > end:
            path.unlink()
    for path in (repo_dir / WATERMARKS).iterdir():  # the watermark objects past the older end go too
        parsed = parse_watermark(path.name)
        if parsed is not None and parsed[0] > end:
            path.unlink()
    forget_catalog(repo_dir)
    for key, mode in ((tmp_path / "key", "full"), (None, "quick")):
        found = verify(repo_dir, key, mode, witness_dir)
        assert len(found) == 1, found
        file, message = found[0]
        assert file.startswith(str(witness_dir))
        assert file.endswith(f"{newest:016x}.ckpt")
        assert f"LSNs {end + 1}..{newest} are missing" in message
    dest = tmp_path / "restored"
    code, out, err = run_cli(capsys, "restore", "--latest", "--dest", str(dest), "--repo", str(repo_dir), "--key-file",
                             str(tmp_path / "key"), "--witness", str(witness_dir))
    assert code != 0
    assert f"LSNs {end + 1}..{newest} are missing" in err
    assert "nothing was restored" in err
    assert not dest.exists()
    code, out, _ = run_cli(capsys, "verify", "--quick", "--repo", str(repo_dir), "--witness", str(witness_dir))
    assert code == 1
    assert f"MISSING {witness_dir}" in out
    assert f"LSNs {end + 1}..{newest} are missing" in out


def test_a_replayed_identity_is_named(tmp_path: Path, random_seed: int) -> None:
    repo_dir, witness_dir = history(tmp_path, random.Random(random_seed))
    ident_path = repo_dir / layout.IDENTITY
    current = RepoIdentity.decode(ident_path.read_bytes(), layout.IDENTITY)
    create_key_file(str(tmp_path / "old-key"))
    block, _ = new_encryption(read_key_file(str(tmp_path / "old-key")), current.store_id)
    import dataclasses

    older = [dataclasses.replace(current, encryption=block),  # the history's first claim, under another key
             dataclasses.replace(current, encryption=None, chain="unkeyed")]  # ... or before it was encrypted
    for replayed in older:
        overwrite(ident_path, replayed.encode())
        forget_catalog(repo_dir)
        found = verify(repo_dir, None, "quick", witness_dir)
        assert "replaced, or an older one replayed" in dict(found).get(layout.IDENTITY, ""), found
        with pytest.raises(WrongKey):  # the repository's key does not open what the replayed identity says
            refuses_restore(tmp_path, repo_dir, "")
