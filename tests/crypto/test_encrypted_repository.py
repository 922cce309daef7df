"""An encrypted repository end to end (library API): archive into it, then scan every byte it and its
catalog hold for the keys and values written (none found); restore, verify and audit through the key
equal the plaintext; without the key, or with another, nothing is read or written; an adversary's
swapped blocks, with every unkeyed checksum recomputed, are reported naming the file, and restore refuses."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest
import trio

from pitr.archiver import ArchiveOptions
from pitr.archiver.archiver import identity_for
from pitr.archiving import StoreSource, archiving
from pitr.audit import value_at
from pitr.crypto import create_key_file, read_key_file
from pitr.datadir.reader import StoreReader
from pitr.errors import HistoryGap, WrongKey
from pitr.repo import layout
from pitr.repo.keyring import claim_encrypted, unlock
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.snapshots.take import take_snapshot
from pitr.store import Store
from pitr.verify import verify_repository
from segments import BytesSource, read_meta
from tests.crypto.test_sealed_segments import swapped
from tests.fuzz.reseal import reseal_snapshot
from tests.helpers.cli import run_cli
from tests.helpers.segments_on_disk import live_segment_files

COMMITS = 300
LAST_TS: list[int] = []  # the commit times of the last history built


def every_byte(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def build(tmp_path: Path, rng: random.Random, *, encrypted: bool, options: ArchiveOptions | None = None
          ) -> tuple[Path, dict[bytes, bytes], list[bytes]]:
    """A store archived into a repository (encrypted with tmp_path/key), the model, the secrets written."""
    data, repo_dir, key = tmp_path / "data", tmp_path / "repo", str(tmp_path / "key")
    if encrypted:
        create_key_file(key)
    model: dict[bytes, bytes] = {}
    secrets: list[bytes] = []
    last_ts = LAST_TS

    async def main() -> None:
        async with Store(str(data)) as store, open_repository(str(repo_dir), create=True) as repo:
            if encrypted:
                await claim_encrypted(repo, identity_for(StoreSource(store)), read_key_file(key))
            async with archiving(store, repo, options=options or ArchiveOptions(interval=0.01, merge_count=3)) as arc:
                for i in range(COMMITS):
                    k, v = b"K" + rng.randbytes(15), b"V" + rng.randbytes(400)  # several 64 KiB blocks
                    commit = await store.put(k, v)
                    model[k] = v
                    last_ts.append(commit.ts_ns)
                    secrets.extend((k, v))
                    if i % 50 == 0:
                        await trio.sleep(0.03)  # several segments, and merges of them
                    if i == COMMITS // 2:  # a base in the middle: sealed in the encrypted repository
                        await take_snapshot(arc, prepare=store.flush)

    trio.run(main)
    return repo_dir, model, secrets


def restored_state(path: Path) -> dict[bytes, bytes]:
    with StoreReader(str(path)) as reader:
        return {k: v for k, v, _ in reader.scan(b"", 2**62)}


def test_nothing_written_is_in_the_repository_or_its_catalog_and_everything_reads_back(
        tmp_path: Path, random_seed: int) -> None:
    rng = random.Random(random_seed)
    repo_dir, model, secrets = build(tmp_path, rng, encrypted=True)
    segments = live_segment_files(repo_dir)  # (merged: merge_count 3; the merges' inputs are superseded)
    assert (repo_dir / layout.LOCAL_CATALOG_DIR).is_dir()
    everything = every_byte(repo_dir)  # segments, identity, watermark, the catalog and its work files
    found = [s for s in secrets if s in everything]
    assert not found, f"{len(found)} of {len(secrets)} keys and values written are in the encrypted repository"
    key = read_key_file(str(tmp_path / "key"))
    dest = tmp_path / "restored"

    async def check() -> None:
        async with open_repository(str(repo_dir)) as repo:
            await unlock(repo, key)
            await repo.reindex()  # every sealed segment indexed again through the key
            report = await verify_repository(repo)
            assert report.findings == []
            assert report.files_checked == len(segments) + 1  # and the sealed snapshot
            some = rng.choice(sorted(model))
            change = await value_at(repo, some, LAST_TS[-1])
            assert change is not None
            assert change.value == model[some]
            result = await restore([repo], RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest)))
            assert result.base_snapshot is not None  # the sealed base, opened through the key

    trio.run(check)
    assert restored_state(dest) == model


def test_the_same_history_in_plaintext_shows_the_scan_finds_what_it_looks_for(tmp_path: Path,
                                                                               random_seed: int) -> None:
    repo_dir, _, secrets = build(tmp_path, random.Random(random_seed), encrypted=False)
    everything = every_byte(repo_dir)
    values = secrets[1::2]  # (a short key may be entropy-coded with its record header; a 400-byte value is not)
    assert sum(v in everything for v in values) >= 0.9 * len(values)


def test_without_the_key_or_with_another_nothing_is_read_or_written(tmp_path: Path, random_seed: int) -> None:
    repo_dir, _, _ = build(tmp_path, random.Random(random_seed), encrypted=True)
    other = str(tmp_path / "other")
    create_key_file(other)
    before = {p: p.read_bytes() for p in repo_dir.rglob("*") if p.is_file() and layout.LOCAL_CATALOG_DIR not in p.parts}
    dest = tmp_path / "restored"

    async def attempts() -> None:
        async with open_repository(str(repo_dir)) as repo:
            with pytest.raises(WrongKey, match="is encrypted"):
                await repo.sync()
            with pytest.raises(WrongKey, match="is encrypted"):
                await restore([repo], RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest)))
            with pytest.raises(WrongKey, match="not one of the keys"):
                await unlock(repo, read_key_file(other))
            with pytest.raises(WrongKey, match="is encrypted"):
                async with Store(str(tmp_path / "data")) as store, archiving(store, repo):
                    await store.put(b"never", b"archived")

    trio.run(attempts)
    assert not dest.exists()
    after = {p: p.read_bytes() for p in repo_dir.rglob("*") if p.is_file() and layout.LOCAL_CATALOG_DIR not in p.parts}
    assert after == before


def test_swapped_blocks_are_reported_naming_the_file_and_restore_refuses(tmp_path: Path, random_seed: int) -> None:
    repo_dir, _, _ = build(tmp_path, random.Random(random_seed), encrypted=True)
    victim = max((repo_dir / "segments").iterdir(), key=lambda p: p.stat().st_size)
    forged = swapped(victim.read_bytes(), 0, 1)
    victim.chmod(0o600)
    victim.write_bytes(forged)
    key = read_key_file(str(tmp_path / "key"))
    dest = tmp_path / "restored"

    async def check() -> None:
        async with open_repository(str(repo_dir)) as repo:
            await unlock(repo, key)
            report = await verify_repository(repo)
            assert [f.file for f in report.findings] == [victim.name]
            assert "fails its authentication tag" in report.findings[0].message
            with pytest.raises(HistoryGap, match=f"{victim.name} is damaged: sealed block 0 fails its authentication"):
                await restore([repo], RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest)))

    trio.run(check)
    assert not dest.exists()


def test_a_plaintext_snapshot_put_into_an_encrypted_repository_is_damage_never_a_base(
        tmp_path: Path, random_seed: int) -> None:
    """The adversary's shortcut past the sealed log: a valid snapshot of the same store (taken into a
    plaintext repository, every checksum right) copied in. verify names it; restore replays the log."""
    repo_dir, model, _ = build(tmp_path, random.Random(random_seed), encrypted=True)
    plain = tmp_path / "plain"

    async def plaintext_snapshot() -> None:
        async with Store(str(tmp_path / "data")) as store, archiving(store, str(plain)) as arc:
            await take_snapshot(arc, prepare=store.flush)

    trio.run(plaintext_snapshot)
    (snapshot,) = (plain / "snapshots").iterdir()
    # Bound to the encrypted history's chain digest at its LSN (stored in the clear in the segment's
    # trailer), every checksum recomputed: only the repository's encryption can refuse it.
    def digest_at_end(root: Path) -> bytes:  # the chain digest at the last LSN, where the snapshot is
        return read_meta(BytesSource(max((root / "segments").iterdir()).read_bytes())).chain_digest

    plain_digest, sealed_digest = digest_at_end(plain), digest_at_end(repo_dir)
    data = snapshot.read_bytes()
    assert data.count(plain_digest) == 1
    (repo_dir / "snapshots").mkdir(mode=0o700, exist_ok=True)
    (repo_dir / "snapshots" / snapshot.name).write_bytes(reseal_snapshot(data.replace(plain_digest, sealed_digest)))
    key = read_key_file(str(tmp_path / "key"))
    dest = tmp_path / "restored"

    async def check() -> None:
        async with open_repository(str(repo_dir)) as repo:
            await unlock(repo, key)
            result = await restore([repo], RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest)))
            assert result.base_snapshot != snapshot.name  # the sealed base in the middle, never the forgery
            report = await verify_repository(repo)
            assert [f.file for f in report.findings] == [snapshot.name]
            assert "not written with the repository's key" in report.findings[0].message

    trio.run(check)
    assert restored_state(dest) == model


def test_the_command_line_reads_an_encrypted_repository_only_with_its_key(
        tmp_path: Path, random_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    repo_dir, model, _ = build(tmp_path, random.Random(random_seed), encrypted=True)
    repo, key, dest = str(repo_dir), str(tmp_path / "key"), str(tmp_path / "restored")
    code, _, err = run_cli(capsys, "verify", "--repo", repo, "--json")
    assert code == 1
    assert json.loads(err)["error"] == "wrong_key"
    code, out, _ = run_cli(capsys, "verify", "--repo", repo, "--key-file", key, "--json")
    assert code == 0, out
    code, _, err = run_cli(capsys, "restore", "--repo", repo, "--latest", "--dest", dest)
    assert code == 1
    assert "is encrypted" in err
    assert not Path(dest).exists()
    code, _, _ = run_cli(capsys, "restore", "--repo", repo, "--latest", "--dest", dest, "--key-file", key)
    assert code == 0
    assert restored_state(Path(dest)) == model
    some = sorted(model)[0]
    code, out, _ = run_cli(capsys, "history", base64.b64encode(some).decode(), "--b64", "--repo", repo,
                           "--key-file", key, "--json", "--values")
    assert code == 0
    assert json.loads(out.splitlines()[-1])["value"] == {"b64": base64.b64encode(model[some]).decode()}
    code, _, err = run_cli(capsys, "archive", "--data", str(tmp_path / "data"), "--repo", str(tmp_path / "new"),
                           "--key-file", key, "--json")
    assert code == 1
    assert json.loads(err)["error"] == "wrong_key"
    assert not (tmp_path / "new" / layout.IDENTITY).exists()  # no plaintext repository started with a key given


def test_chunks_sealed_in_a_worker_process_are_sealed_too(tmp_path: Path, random_seed: int) -> None:
    """The archiver's other sealing path: the keys cross into the worker process with the chunk."""
    repo_dir, model, secrets = build(tmp_path, random.Random(random_seed), encrypted=True, options=ArchiveOptions(
        interval=0.01, seal_in_process=True, process_min_commits=1))
    assert not [s for s in secrets if s in every_byte(repo_dir)]
    dest = tmp_path / "restored"

    async def check() -> None:
        async with open_repository(str(repo_dir)) as repo:
            await unlock(repo, read_key_file(str(tmp_path / "key")))
            await restore([repo], RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest)))

    trio.run(check)
    assert restored_state(dest) == model


def test_quick_verification_needs_no_key_and_still_names_a_plaintext_segment(
        tmp_path: Path, random_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    """`verify --quick` checks the structure and the chain, which are stored in the clear, without the
    key; a plaintext segment of the same history put in place of a sealed one is still named."""
    repo_dir, _, _ = build(tmp_path, random.Random(random_seed), encrypted=True)
    code, out, _ = run_cli(capsys, "verify", "--quick", "--repo", str(repo_dir), "--json")
    assert code == 0, out
    plain = tmp_path / "plain"

    async def plaintext_copy() -> None:
        async with Store(str(tmp_path / "data")) as store, archiving(store, str(plain)):
            pass

    trio.run(plaintext_copy)
    for sealed_segment in (repo_dir / "segments").iterdir():  # the history replaced by a plaintext copy of it:
        sealed_segment.unlink()                              # every unkeyed checksum and the chain right
    (victim,) = (plain / "segments").iterdir()
    (repo_dir / "segments" / victim.name).write_bytes(victim.read_bytes())

    async def check() -> None:
        async with open_repository(str(repo_dir)) as repo:
            report = await verify_repository(repo, mode="quick")
            assert [f.file for f in report.findings] == [victim.name]
            assert "not sealed, but the repository is encrypted" in report.findings[0].message

    trio.run(check)
