"""Watermarks as write-once objects (docs/format.md, "Watermarks"): names, bodies, sealing, the newest valid wins."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from pitr.errors import CorruptData
from pitr.repo import layout, watermarks
from pitr.repo.identity import RepoIdentity, Watermark
from pitr.repo.repository import open_repository
from pitr.storage import LocalStorage
from segments.block_seal import SegmentKeys

pytestmark = pytest.mark.anyio

STORE = uuid.UUID("0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11")
MARK = Watermark(STORE, 42, 1795961387250000001)
KEYS = SegmentKeys(bytes(range(32)), bytes(32), bytes(32))
SALT = b"\x5a" * 32
SPEC = Path(__file__).resolve().parents[2] / "docs" / "format.md"


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def read(*parts: str) -> bytes:
    with open(os.path.join(*parts), "rb") as fh:
        return fh.read()


def write(data: bytes, *parts: str) -> None:
    with open(os.path.join(*parts), "wb") as fh:
        fh.write(data)


def spec_section() -> str:
    text = SPEC.read_text()
    return text[text.index("## Watermarks"):text.index("## File names")]


def test_the_format_spec_vectors() -> None:
    """The name and sealed body in docs/format.md are what the code writes, and read back."""
    section = spec_section()
    name = watermarks.object_name(MARK.lsn, MARK.complete_through_ns)
    assert name == "watermarks/000000000000002a-18ec895dc55aa081.wmk"
    assert f"`{name}`" in section
    assert watermarks.encode(MARK, None) == MARK.encode()
    sealed = watermarks.encode(MARK, KEYS, salt=SALT)
    assert len(sealed) == 190
    blocks = re.findall(r"```\n([0-9a-f\n]+)```", section)
    assert blocks, "the sealed vector's hex block"
    assert bytes.fromhex(blocks[-1].replace("\n", "")) == sealed
    assert watermarks.decode(sealed, name, name, KEYS) == MARK


def test_names_parse_strictly() -> None:
    assert watermarks.parse_name("watermarks/000000000000002a-18ec895dc55aa081.wmk") == (42, 1795961387250000001)
    for bad in ("watermarks/2a-18ec895dc55aa081.wmk", "watermarks/000000000000002A-18ec895dc55aa081.wmk",
                "watermarks/000000000000002a-18ec895dc55aa081.wmk.tmp", "watermark", ""):
        assert watermarks.parse_name(bad) is None, bad
    with pytest.raises(ValueError, match="not a pair of u64"):
        watermarks.object_name(-1, 0)


def test_a_sealed_watermark_opens_only_under_its_own_name() -> None:
    name = watermarks.object_name(MARK.lsn, MARK.complete_through_ns)
    sealed = watermarks.encode(MARK, KEYS, salt=SALT)
    later = watermarks.object_name(MARK.lsn, MARK.complete_through_ns + 10**12)
    with pytest.raises(CorruptData, match="authentication tag"):  # renamed to claim a later time
        watermarks.decode(sealed, later, later, KEYS)
    other = watermarks.object_name(MARK.lsn + 1, MARK.complete_through_ns)
    with pytest.raises(CorruptData, match="authentication tag"):
        watermarks.decode(sealed, other, other, KEYS)
    with pytest.raises(CorruptData, match="authentication tag"):
        watermarks.decode(sealed, name, name, SegmentKeys(bytes(32), bytes(32), bytes(32)))
    with pytest.raises(CorruptData, match="no key"):
        watermarks.decode(sealed, name, name, None)
    with pytest.raises(CorruptData, match="plaintext watermark in an encrypted"):
        watermarks.decode(MARK.encode(), name, name, KEYS)


def test_a_plaintext_body_must_say_what_its_name_says() -> None:
    other = watermarks.object_name(MARK.lsn, MARK.complete_through_ns + 1)
    with pytest.raises(CorruptData, match="not what its name says"):
        watermarks.decode(MARK.encode(), other, other, None)


def test_cleanup_keeps_the_newest_sixteen() -> None:
    names = [watermarks.object_name(lsn, ts) for lsn in range(1, 11) for ts in (5, 7)]  # 20, by (lsn, ts)
    victims = watermarks.cleanup_victims(names + ["watermarks/junk"])
    assert victims == sorted(names[:4])


async def _repository(tmp_path: Path) -> str:
    root = tmp_path / "repo"
    async with open_repository(str(root), create=True) as repo:
        await repo.claim(RepoIdentity(STORE, "s", 1, 1, bytes(32)))
    return str(root)


async def test_the_newest_valid_watermark_wins_and_damaged_ones_are_reported(tmp_path: Path) -> None:
    root = await _repository(tmp_path)
    async with open_repository(root) as repo:
        assert await repo.read_watermark() is None
        for mark in (Watermark(STORE, 5, 100), Watermark(STORE, 9, 50), Watermark(STORE, 9, 60)):
            await repo.write_watermark(mark)
        await repo.write_watermark(Watermark(STORE, 9, 60))  # a retry: the same name, no second write
        assert await repo.read_watermark() == Watermark(STORE, 9, 60), "by LSN, then time"
        assert repo.damaged_watermarks == []
        newest = watermarks.object_name(9, 60)
        write(read(root, newest)[:-3], root, newest)  # damaged: skipped, the one before it is used
        assert await repo.read_watermark() == Watermark(STORE, 9, 50)
        assert [d.name for d in repo.damaged_watermarks] == [watermarks.object_name(9, 60)]
        write(Watermark(uuid.uuid4(), 10, 70).encode(), root, watermarks.object_name(10, 70))
        assert await repo.read_watermark() == Watermark(STORE, 9, 50), "another store's watermark is not used"
        assert len(repo.damaged_watermarks) == 2


async def test_the_single_file_of_older_repositories_is_read_and_never_rewritten(tmp_path: Path) -> None:
    root = await _repository(tmp_path)
    write(Watermark(STORE, 3, 30).encode(), root, layout.WATERMARK)
    async with open_repository(root) as repo:
        assert await repo.read_watermark() == Watermark(STORE, 3, 30)
        await repo.write_watermark(Watermark(STORE, 4, 40))
        assert await repo.read_watermark() == Watermark(STORE, 4, 40)
    assert read(root, layout.WATERMARK) == Watermark(STORE, 3, 30).encode(), "never rewritten"


async def test_a_sealed_repository_writes_sealed_watermarks(tmp_path: Path) -> None:
    root = await _repository(tmp_path)
    async with open_repository(root) as repo:
        repo.segment_keys = KEYS
        await repo.write_watermark(Watermark(STORE, 7, 70))
        body = read(root, watermarks.object_name(7, 70))
        assert body.startswith(watermarks.SEALED_MAGIC)
        assert str(STORE).encode() not in body
        assert await repo.read_watermark() == Watermark(STORE, 7, 70)
        repo.segment_keys = None  # read without the key: not used, reported
        assert await repo.read_watermark() is None
        assert "no key" in repo.damaged_watermarks[0].reason


async def test_a_keyless_reader_of_an_encrypted_repository_reads_none_and_reports_no_damage(
        tmp_path: Path) -> None:
    """verify --quick without the key: sealed watermarks cannot be opened, and are not damage."""
    storage = LocalStorage(str(tmp_path))
    for mark in (Watermark(STORE, 1, 10), Watermark(STORE, 2, 20)):
        await storage.publish(watermarks.object_name(mark.lsn, mark.complete_through_ns),
                              watermarks.encode(mark, KEYS))
    assert await watermarks.read_newest(storage, "r", STORE, True, None) == (None, [])
    found, damaged = await watermarks.read_newest(storage, "r", STORE, True, KEYS)
    assert found is not None
    assert found[0] == Watermark(STORE, 2, 20)
    assert damaged == []


async def test_the_catalogs_last_watermark_only_starts_the_listing(tmp_path: Path) -> None:
    """Readers list from the catalog's last watermark on; if that one is gone, the whole listing counts."""
    root = await _repository(tmp_path)
    async with open_repository(root) as repo:
        for mark in (Watermark(STORE, 5, 100), Watermark(STORE, 9, 50), Watermark(STORE, 9, 60)):
            await repo.write_watermark(mark)
        assert repo.watermark() == (9, 60)
        os.unlink(os.path.join(root, watermarks.object_name(9, 60)))  # the newest removed (rolled back)
        assert await repo.read_watermark() == Watermark(STORE, 9, 50)
        write(Watermark(STORE, 12, 70).encode(), root, watermarks.object_name(12, 70))  # another writer's, newer
        assert await repo.read_watermark() == Watermark(STORE, 12, 70)


async def test_verify_names_every_damaged_watermark_not_only_the_newest(tmp_path: Path) -> None:
    from pitr.verify import verify_repository

    root = await _repository(tmp_path)
    async with open_repository(root) as repo:
        for lsn in range(3):
            await repo.write_watermark(Watermark(STORE, 0, 10 + lsn))
    oldest = watermarks.object_name(0, 10)
    write(read(root, oldest)[:-1] + b"\x00", root, oldest)
    async with open_repository(root) as repo:
        assert await repo.read_watermark() == Watermark(STORE, 0, 12), "readers do not need the old one"
        report = await verify_repository(repo, mode="quick")
        assert [f.file for f in report.findings] == [oldest]
        assert "damaged watermark" in report.findings[0].message
