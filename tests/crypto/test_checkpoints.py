"""Signed checkpoints (docs/format.md, "Checkpoints"): the format and its test vector, what the archiver
writes (into the repository and the witness, at most one per interval, never overwritten), and what verify
makes of a forged signature, a replaced signing key and a history rewritten with its unkeyed chain
recomputed end to end."""

from __future__ import annotations

import random
import re
import shutil
import uuid
from pathlib import Path

import pytest
import trio
from blake3 import blake3

from pitr.archiver import ArchiveOptions
from pitr.archiver.checkpoints import CheckpointWriter
from pitr.archiving import archiving
from pitr.crypto import create_key_file
from pitr.errors import CorruptData, InvalidArgument, NotARepository, WrongKey
from pitr.repo import layout
from pitr.repo.checkpoints import (
    REPOSITORY_PUBLIC_KEY,
    SIGNING_CONTEXT,
    Checkpoint,
    SignedCheckpoint,
    SigningKey,
    checkpoint_name,
    encode_public_key,
    identity_digest,
    parse_checkpoint_name,
    publish_checkpoint,
)
from pitr.repo.identity import RepoIdentity
from pitr.repo.repository import open_repository
from pitr.repo.witness import open_witness
from pitr.store import Store
from pitr.verify import VerifyReport, verify_repository
from pitr.verify.checkpoints import CheckpointReport
from segments import BytesSource, read_meta
from segments import segment_format as fmt
from tests.fuzz.reseal import reseal_segment
from tests.helpers.cli import run_cli

VECTOR_STORE = uuid.UUID("0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11")
VECTOR_DOCUMENT = (
    b'PITRCKPT 1\n{"chain_digest": "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f", '
    b'"identity_digest": "d955b718a4d4aed6132930fcf2b68e442dd4031c38cda34e9f987e4900a4ddcd", "lsn": 42, '
    b'"signature": "aeb916223c637c00e6ad1b4ef9e77b910b4ed7c2ae472d9eb3c5034f95713ad75f2657cc67f6b671a9355b27efe23504a3'
    b'b8720b22c701bad9772a07a622a60e", "store_id": "0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11", '
    b'"ts_ns": 1795961387250000001}\ncrc32c:37d3c448\n')


def test_the_documented_vector_is_the_computed_one() -> None:
    text = (Path(__file__).parents[2] / "docs" / "format.md").read_text()
    body = text.split("\n## Checkpoints\n", 1)[1].split("\n## ", 1)[0].split("### Test vector", 1)[1]
    lines = dict(re.findall(r"^    ([a-z_]+) +([0-9a-f]{64,})$", body, flags=re.MULTILINE))
    seed = blake3(bytes(range(32)), derive_key_context=SIGNING_CONTEXT).digest()
    key = SigningKey(seed, "vector")
    assert lines == {"seed": seed.hex(), "public_key": key.public_key.hex(),
                     "identity_digest": identity_digest(b"pitr identity").hex(),
                     "signature": SignedCheckpoint.decode(VECTOR_DOCUMENT, "v").signature.hex()}
    document = body.split("```\n", 2)[1]
    assert document.encode() == VECTOR_DOCUMENT
    assert len(VECTOR_DOCUMENT) == 437


def test_the_checkpoint_vector() -> None:
    """The values printed in docs/format.md, "Checkpoints", "Test vector"."""
    seed = blake3(bytes(range(32)), derive_key_context=SIGNING_CONTEXT).digest()
    assert seed.hex() == "10f994f635d412db1ec3452f94f062dc39af345727c0f26f2773b3037b59c710"
    key = SigningKey(seed, "vector")
    assert key.public_key.hex() == "206ee4527ce5122a99839df76237fb89dedb6f400afdb56e674ec6140c02de31"
    checkpoint = Checkpoint(VECTOR_STORE, 42, 1795961387250000001, bytes(range(0x60, 0x80)),
                            identity_digest(b"pitr identity"))
    assert checkpoint.message().hex() == (
        "706974722d636865636b706f696e742d7631" "0b3ac1c85d2e4d0e9a430f5a2b1f9c11" "2a00000000000000"
        "81a05ac55d89ec18" "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "d955b718a4d4aed6132930fcf2b68e442dd4031c38cda34e9f987e4900a4ddcd")
    signed = key.sign(checkpoint)
    assert signed.encode() == VECTOR_DOCUMENT
    decoded = SignedCheckpoint.decode(VECTOR_DOCUMENT, "vector")
    assert decoded == signed
    assert decoded.verify(key.public_key)
    assert checkpoint_name(42) == "checkpoints/000000000000002a.ckpt"
    assert parse_checkpoint_name("x/checkpoints/000000000000002a.ckpt") == 42
    assert parse_checkpoint_name("checkpoints/2a.ckpt") is None


def test_a_signature_over_other_fields_does_not_verify() -> None:
    key = SigningKey(bytes(32), "k")
    signed = key.sign(Checkpoint(VECTOR_STORE, 42, 1, bytes(32), bytes(32)))
    for forged in (Checkpoint(VECTOR_STORE, 43, 1, bytes(32), bytes(32)),
                   Checkpoint(VECTOR_STORE, 42, 1, b"\1" + bytes(31), bytes(32)),
                   Checkpoint(VECTOR_STORE, 42, 1, bytes(32), b"\1" + bytes(31))):
        assert not SignedCheckpoint(forged, signed.signature).verify(key.public_key)
    assert not signed.verify(SigningKey(b"\1" * 32, "other").public_key)


def test_a_signing_key_is_a_private_raw_key_file(tmp_path: Path) -> None:
    phrase = tmp_path / "phrase"
    phrase.write_text("correct horse battery staple\n")
    phrase.chmod(0o600)
    with pytest.raises(WrongKey, match="holds a passphrase"):
        SigningKey.from_file(str(phrase))
    raw = str(tmp_path / "raw")
    create_key_file(raw)
    Path(raw).chmod(0o644)
    with pytest.raises(WrongKey, match="has mode 0644"):
        SigningKey.from_file(raw)


def archived(tmp_path: Path, rng: random.Random, interval: float = 0) -> tuple[Path, Path, CheckpointWriter]:
    """A plaintext repository of several segments, checkpointed into it and a witness."""
    repo_dir, witness_dir, sign = tmp_path / "repo", tmp_path / "witness", str(tmp_path / "sign")
    create_key_file(sign)
    writers: list[CheckpointWriter] = []

    async def main() -> None:
        async with Store(str(tmp_path / "data")) as store, open_witness(str(witness_dir), create=True) as witness:
            writer = CheckpointWriter(SigningKey.from_file(sign), [witness], interval=interval)
            writers.append(writer)
            options = ArchiveOptions(interval=0.01, merge_count=1000, checkpoints=writer)
            async with archiving(store, str(repo_dir), options=options):
                for i in range(120):
                    await store.put(b"K" + rng.randbytes(15), b"V" + rng.randbytes(100))
                    if i % 30 == 29:
                        await trio.sleep(0.05)

    trio.run(main)
    return repo_dir, witness_dir, writers[0]


def findings(repo_dir: Path, witness_dir: Path | None, mode: str = "quick") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    async def check() -> None:
        async with open_repository(str(repo_dir)) as repo:
            if witness_dir is None:
                report = await verify_repository(repo, mode=mode)
            else:
                async with open_witness(str(witness_dir), create=False) as witness:
                    report = await verify_repository(repo, mode=mode, witness=witness)
            out.extend((f.file, f.message) for f in report.findings)

    trio.run(check)
    return out


def checkpoint_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.ckpt") if parse_checkpoint_name(p.name) is not None)


def test_the_archiver_checkpoints_each_advance_into_the_repository_and_the_witness(
        tmp_path: Path, random_seed: int) -> None:
    repo_dir, witness_dir, writer = archived(tmp_path, random.Random(random_seed))
    ours = checkpoint_files(repo_dir)
    assert len(ours) >= 3
    assert writer.written == len(ours)
    assert [p.name for p in checkpoint_files(witness_dir)] == [p.name for p in ours]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in ours)
    segs = [read_meta(BytesSource(p.read_bytes(), p.name)) for p in sorted((repo_dir / "segments").iterdir())]
    ident = RepoIdentity.decode((repo_dir / layout.IDENTITY).read_bytes(), layout.IDENTITY)
    ends = {ident.first_lsn - 1: ident.start_chain_digest} | {m.last_lsn: m.chain_digest for m in segs}
    for path in ours:  # each says where the archive's chain was when its watermark was published
        c = SignedCheckpoint.decode(path.read_bytes(), path.name).checkpoint
        assert ends[c.lsn] == c.chain_digest
        assert c.identity_digest == identity_digest((repo_dir / layout.IDENTITY).read_bytes())
    assert findings(repo_dir, witness_dir, "full") == []


def test_one_checkpoint_per_interval(tmp_path: Path, random_seed: int) -> None:
    repo_dir, _witness_dir, writer = archived(tmp_path, random.Random(random_seed), interval=3600)
    assert writer.written == 1
    assert len(checkpoint_files(repo_dir)) == 1


def test_a_checkpoint_is_never_overwritten_by_another_history(tmp_path: Path) -> None:
    key = SigningKey(bytes(32), "k")

    async def main() -> None:
        async with open_witness(str(tmp_path / "w"), create=True) as witness:
            first = key.sign(Checkpoint(VECTOR_STORE, 42, 1, bytes(32), bytes(32)))
            name = checkpoint_name(42)
            await publish_checkpoint(witness.storage, name, first, "w/" + name)
            await publish_checkpoint(witness.storage, name, key.sign(Checkpoint(VECTOR_STORE, 42, 2, bytes(32),
                                                                                 bytes(32))), name)  # a retry
            with pytest.raises(CorruptData, match="already there with another chain digest"):
                await publish_checkpoint(witness.storage, name, key.sign(
                    Checkpoint(VECTOR_STORE, 42, 3, b"\1" * 32, bytes(32))), name)
            assert await witness.storage.read(name) == first.encode()

    trio.run(main)


def test_a_forged_checkpoint_and_a_replaced_signing_key_are_named(tmp_path: Path, random_seed: int) -> None:
    repo_dir, witness_dir, _ = archived(tmp_path, random.Random(random_seed))
    victim = checkpoint_files(repo_dir)[0]
    signed = SignedCheckpoint.decode(victim.read_bytes(), victim.name)
    c = signed.checkpoint
    forged = SignedCheckpoint(Checkpoint(c.store_id, c.lsn, c.ts_ns + 1, c.chain_digest, c.identity_digest),
                              signed.signature)
    victim.write_bytes(forged.encode())  # a valid CRC, the old signature
    found = findings(repo_dir, None)
    assert [f for f, _ in found] == [f"checkpoints/{victim.name}"], found
    assert "signature does not verify" in found[0][1]
    # The adversary's own key, its public key put in the repository and every checkpoint re-signed:
    # consistent in itself, caught only by the witness's copy of the real key.
    theirs = SigningKey(b"\7" * 32, "theirs")
    (repo_dir / REPOSITORY_PUBLIC_KEY).write_bytes(encode_public_key(c.store_id, theirs.public_key))
    for path in checkpoint_files(repo_dir):
        path.write_bytes(theirs.sign(SignedCheckpoint.decode(path.read_bytes(), path.name).checkpoint).encode())
    assert findings(repo_dir, None) == []
    found = findings(repo_dir, witness_dir)
    assert found[0] == (REPOSITORY_PUBLIC_KEY, "is not the signing key the witness holds: replaced"), found
    assert all("signature does not verify" in m for _, m in found[1:])
    assert len(found) == 1 + len(
        checkpoint_files(repo_dir))


def test_a_history_rewritten_with_its_unkeyed_chain_relinked_is_named(tmp_path: Path, random_seed: int) -> None:
    """A plaintext repository: the chain alone cannot tell a consistent rewrite, the signed checkpoints can."""
    rng = random.Random(random_seed)
    repo_dir, witness_dir, _ = archived(tmp_path, rng)
    segs = sorted((repo_dir / "segments").iterdir())
    prev: bytes | None = None
    for i, path in enumerate(segs[1:], start=1):
        blob = bytearray(path.read_bytes())
        if prev is not None:
            blob[48:80] = prev  # relinked to the rewritten segment before it
        if i == 1:
            meta = read_meta(BytesSource(bytes(blob), path.name))
            at = meta.trailer.index_offset + len(meta.index) * fmt.INDEX_ENTRY.size
            blob[at + 16:at + 48] = rng.randbytes(32)
        forged = reseal_segment(bytes(blob))
        prev = read_meta(BytesSource(forged, path.name)).chain_digest
        path.write_bytes(forged)
    shutil.rmtree(repo_dir / layout.LOCAL_CATALOG_DIR)  # rebuilt from the forged files
    found = findings(repo_dir, witness_dir)
    assert found
    assert {f for f, _ in found} <= {p.name for p in segs[1:]}, found
    assert found[0][0] == segs[1].name
    assert "is not the one the checkpoint" in found[0][1]
    assert "was rewritten" in found[0][1]


def test_the_command_line_refuses_what_would_prove_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo, data = str(tmp_path / "repo"), str(tmp_path / "data")
    code, out, err = run_cli(capsys, "archive", "--data", data, "--repo", repo, "--witness", str(tmp_path / "w"))
    assert code != 0
    assert "--witness and --checkpoint-interval need --signing-key" in err
    create_key_file(str(tmp_path / "sign"))
    code, out, err = run_cli(capsys, "archive", "--data", data, "--repo", repo, "--signing-key",
                             str(tmp_path / "sign"), "--witness", repo)
    assert code != 0
    assert "is the repository itself" in err
    assert not (tmp_path / "w").exists()

    async def open_place(url: str, create: bool) -> None:
        async with open_witness(url, create=create):
            pass

    with pytest.raises(NotARepository):
        trio.run(open_place, str(tmp_path / "missing"), False)
    with pytest.raises(InvalidArgument):
        trio.run(open_place, " ", True)


def test_checkpoints_inside_merged_keyed_segments_are_checked_with_the_key(tmp_path: Path, random_seed: int) -> None:
    """Merges keep the pieces, so a checkpoint inside a merged segment is at a piece boundary: folded with
    the link key when given; without it (a keyless quick check) the point is counted, not guessed."""
    from pitr.archiver import Archiver
    from pitr.archiver.archiver import identity_for
    from pitr.archiving import StoreSource
    from pitr.crypto import read_key_file
    from pitr.repo.keyring import claim_encrypted, unlock

    rng = random.Random(random_seed)
    repo_dir, key, sign = tmp_path / "repo", str(tmp_path / "key"), str(tmp_path / "sign")
    create_key_file(key)
    create_key_file(sign)

    async def main() -> None:
        async with Store(str(tmp_path / "data")) as store, open_repository(str(repo_dir), create=True) as repo:
            await claim_encrypted(repo, identity_for(StoreSource(store)), read_key_file(key))
            writer = CheckpointWriter(SigningKey.from_file(sign), interval=0)
            archiver = Archiver(StoreSource(store), [repo], ArchiveOptions(merge_count=3, checkpoints=writer))
            await archiver.start()
            for _ in range(7):
                for _ in range(10):
                    await store.put(b"K" + rng.randbytes(15), b"V" + rng.randbytes(100))
                await archiver.cycle()

    trio.run(main)
    from pitr.repo.repository import live_segments

    live, _superseded = live_segments([p.name for p in (repo_dir / "segments").iterdir()])
    assert len(live) < 7  # merged (the inputs stay beside the merges until cleanup)

    def report(with_key: bool) -> CheckpointReport:
        reports: list[VerifyReport] = []

        async def check() -> None:
            async with open_repository(str(repo_dir)) as repo:
                if with_key:
                    await unlock(repo, read_key_file(key))
                reports.append(await verify_repository(repo, mode="quick"))

        trio.run(check)
        assert reports[0].findings == []
        assert reports[0].checkpoints is not None
        return reports[0].checkpoints

    keyless, keyed = report(False), report(True)
    assert keyless.unchecked_digests > 0
    assert keyed.unchecked_digests == 0
    assert keyed.checked == len(checkpoint_files(repo_dir))
