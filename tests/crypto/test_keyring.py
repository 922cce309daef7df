"""Opening an encrypted repository and rotating its key: a missing, wrong or unsafe key is WrongKey
before anything is written; rotation adds a wrap of the same data key and replaces nothing."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from pitr.crypto import KdfParams, KeyFile, create_key_file, read_key_file
from pitr.errors import CorruptData, InvalidArgument, WrongKey
from pitr.repo import layout
from pitr.repo.identity import RepoIdentity
from pitr.repo.keyring import KEYS, new_encryption, open_data_key, repository_keys, rotate_key
from pitr.repo.repository import Repository, open_repository
from segments import genesis
from tests.helpers.cli import run_cli

STORE = uuid.UUID("0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11")
QUICK = KdfParams(10, 8, 1, bytes(16))


def raw_key(tmp_path: Path, name: str) -> KeyFile:
    path = str(tmp_path / name)
    create_key_file(path)
    return read_key_file(path)


def passphrase(tmp_path: Path, name: str, text: bytes) -> KeyFile:
    path = tmp_path / name
    path.write_bytes(text)
    path.chmod(0o600)
    return read_key_file(str(path))


def identity(**kw: object) -> RepoIdentity:
    return RepoIdentity(STORE, "orders", 1, 1, genesis(STORE), **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def repository(path: Path, key: KeyFile | None, kdf: KdfParams | None = None) -> AsyncIterator[Repository]:
    async with open_repository(str(path), create=True) as repo:
        block = None if key is None else new_encryption(key, STORE, kdf=kdf)[0]
        await repo.claim(identity(encryption=block))
        yield repo


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and layout.LOCAL_CATALOG_DIR not in p.parts}


@pytest.mark.anyio
async def test_open_with_the_key_without_it_and_with_another(tmp_path: Path) -> None:
    key = raw_key(tmp_path, "k")
    async with repository(tmp_path / "r", key) as repo:
        data_key = await open_data_key(repo, key)
        assert data_key is not None
        with pytest.raises(WrongKey, match="is encrypted .* no key was given"):
            await open_data_key(repo, None)
        with pytest.raises(WrongKey, match="not one of the keys"):
            await open_data_key(repo, raw_key(tmp_path, "other"))
        with pytest.raises(WrongKey, match="not one of the keys"):
            await open_data_key(repo, passphrase(tmp_path, "p", b"a long passphrase"))
    assert data_key.key not in b"".join(files(tmp_path / "r").values())


@pytest.mark.anyio
async def test_a_key_for_a_plaintext_repository_is_refused(tmp_path: Path) -> None:
    async with repository(tmp_path / "r", None) as repo:
        assert await open_data_key(repo, None) is None
        with pytest.raises(WrongKey, match="is not encrypted"):
            await open_data_key(repo, raw_key(tmp_path, "k"))
        assert (tmp_path / "r" / layout.IDENTITY).read_bytes().startswith(b"PITRREPO 1\n")  # unchanged format


@pytest.mark.anyio
async def test_an_encrypted_identity_is_version_2_and_reads_back(tmp_path: Path) -> None:
    key = passphrase(tmp_path, "p", b"a long passphrase\n")
    async with repository(tmp_path / "r", key, QUICK) as repo:
        ident = await repo.require_identity()
        assert ident.encryption is not None
        assert ident.encryption.kdf == QUICK
        assert await open_data_key(repo, key) is not None
    raw = (tmp_path / "r" / layout.IDENTITY).read_bytes()
    assert raw.startswith(b"PITRREPO 2\n")
    assert key.passphrase is not None
    assert key.passphrase not in raw


@pytest.mark.anyio
async def test_rotate_adds_a_wrap_of_the_same_data_key_and_replaces_nothing(tmp_path: Path) -> None:
    old, new = raw_key(tmp_path, "old"), passphrase(tmp_path, "p", b"a long passphrase")
    root = tmp_path / "r"
    async with repository(root, old) as repo:
        data_key = await open_data_key(repo, old)
        before = files(root)
        wrapped = await rotate_key(repo, old, new, kdf=QUICK)
        after = files(root)
        assert {n: after[n] for n in before} == before  # nothing published earlier was touched
        assert set(after) - set(before) == {wrapped.name}
        assert wrapped.name.startswith(KEYS)
        assert [k.name for k in await repository_keys(repo)] == [layout.IDENTITY, wrapped.name]
        assert await open_data_key(repo, new) == data_key
        assert await open_data_key(repo, old) == data_key
        third = raw_key(tmp_path, "third")
        await rotate_key(repo, new, third)  # the added key opens the repository for the next rotation
        assert await open_data_key(repo, third) == data_key
        with pytest.raises(InvalidArgument, match="already opens"):
            await rotate_key(repo, old, third)


@pytest.mark.anyio
async def test_rotate_with_a_wrong_old_key_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "r"
    async with repository(root, raw_key(tmp_path, "k")) as repo:
        before = files(root)
        with pytest.raises(WrongKey, match="not one of the keys"):
            await rotate_key(repo, raw_key(tmp_path, "wrong"), raw_key(tmp_path, "new"))
        assert files(root) == before


@pytest.mark.anyio
async def test_a_truncated_wrapped_key_in_the_identity_is_a_clear_error(tmp_path: Path) -> None:
    key = raw_key(tmp_path, "k")
    root = tmp_path / "r"
    async with repository(root, key):
        pass
    doc = (root / layout.IDENTITY).read_bytes()
    head, _, _ = doc.partition(b"\n")
    body = json.loads(doc.split(b"\n")[1])
    body["encryption"]["wrapped_key"] = body["encryption"]["wrapped_key"][:-2]
    from pitr.repo.documents import encode_document

    forged = encode_document("PITRREPO", 2, body)  # a fresh checksum: only the field check can refuse it
    (root / layout.IDENTITY).write_bytes(forged)
    async with open_repository(str(root)) as repo:
        with pytest.raises(CorruptData, match="'encryption.wrapped_key' must be 60 bytes"):
            await open_data_key(repo, key)


@pytest.mark.anyio
@pytest.mark.parametrize("version", [1, 2])
async def test_the_identity_version_says_whether_it_is_encrypted(tmp_path: Path, version: int) -> None:
    """A version 1 identity with an encryption block (an old pitr would ignore it and write plaintext),
    or a version 2 one without, is damage."""
    key = raw_key(tmp_path, "k")
    root = tmp_path / "r"
    async with repository(root, key):
        pass
    body = json.loads((root / layout.IDENTITY).read_bytes().split(b"\n")[1])
    if version == 2:
        del body["encryption"]
    from pitr.repo.documents import encode_document

    (root / layout.IDENTITY).write_bytes(encode_document("PITRREPO", version, body))
    async with open_repository(str(root)) as repo:
        with pytest.raises(CorruptData, match="'encryption' must be an object in a version 2 identity"):
            await repo.require_identity()


@pytest.mark.anyio
async def test_a_hostile_kdf_cost_is_refused_before_deriving(tmp_path: Path) -> None:
    key = passphrase(tmp_path, "p", b"a long passphrase")
    root = tmp_path / "r"
    async with repository(root, key, QUICK):
        pass
    body = json.loads((root / layout.IDENTITY).read_bytes().split(b"\n")[1])
    body["encryption"]["kdf"]["log2_n"] = 20
    body["encryption"]["kdf"]["r"] = 32  # 4 GiB
    from pitr.repo.documents import encode_document

    (root / layout.IDENTITY).write_bytes(encode_document("PITRREPO", 2, body))
    async with open_repository(str(root)) as repo:
        with pytest.raises(CorruptData, match="kdf.log2_n"):
            await open_data_key(repo, key)


@pytest.mark.anyio
async def test_a_keys_document_under_another_name_is_refused(tmp_path: Path) -> None:
    old, new = raw_key(tmp_path, "old"), raw_key(tmp_path, "new")
    root = tmp_path / "r"
    async with repository(root, old) as repo:
        wrapped = await rotate_key(repo, old, new)
        (root / wrapped.name).rename(root / KEYS / ("0" * 32 + ".key"))
        with pytest.raises(CorruptData, match="not the one its name says"):
            await repository_keys(repo)


def test_cli_create_list_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import trio

    root = tmp_path / "r"
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    code, out, _ = run_cli(capsys, "key", "create", old, "--json")
    assert code == 0
    created = json.loads(out)
    code, _, err = run_cli(capsys, "key", "create", old)
    assert code != 0
    assert "never overwritten" in err

    async def make() -> None:
        async with repository(root, read_key_file(old)):
            pass

    trio.run(make)
    code, out, _ = run_cli(capsys, "key", "list", "--repo", str(root), "--json")
    assert code == 0
    assert [k["key_id"] for k in json.loads(out)["keys"]] == [created["key_id"]]
    run_cli(capsys, "key", "create", new)
    os.chmod(new, 0o644)
    before = files(root)
    code, _, err = run_cli(capsys, "key", "rotate", "--repo", str(root), "--key-file", old, "--new-key-file", new,
                           "--json")
    assert code != 0
    assert json.loads(err)["error"] == "wrong_key"
    assert "chmod 600" in err
    assert files(root) == before
    os.chmod(new, 0o600)
    code, out, _ = run_cli(capsys, "key", "rotate", "--repo", str(root), "--key-file", old, "--new-key-file", new)
    assert code == 0
    assert "now opens the repository" in out
    code, out, _ = run_cli(capsys, "key", "list", "--repo", str(root))
    assert code == 0
    assert len(out.strip().splitlines()) == 2
