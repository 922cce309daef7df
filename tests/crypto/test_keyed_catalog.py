"""The catalog of an encrypted repository indexes keys by keyed digests (docs/format.md, "Keyed key
digests"): opened without the key it refuses lookups by key rather than answering "no history"; a
catalog built unkeyed (by the previous pitr) is rebuilt when the repository is unlocked."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from pitr.crypto import read_key_file
from pitr.errors import WrongKey
from pitr.repo.keyring import unlock
from pitr.repo.repository import open_repository
from tests.crypto.test_encrypted_repository import LAST_TS, build


def test_a_keyed_catalog_opened_without_its_key_refuses_lookups_by_key(tmp_path: Path, random_seed: int) -> None:
    repo_dir, model, _ = build(tmp_path, random.Random(random_seed), encrypted=True)
    some = sorted(model)[0]

    async def check() -> None:
        async with open_repository(str(repo_dir)) as repo:  # the catalog exists: built through the key
            assert repo.catalog.index_key is None
            with pytest.raises(WrongKey, match="keyed digests, and no key was given"):
                list(repo.catalog.key_versions(some))
            with pytest.raises(WrongKey, match="keyed digests"):
                repo.catalog.key_version_at(some, LAST_TS[-1])
            await unlock(repo, read_key_file(str(tmp_path / "key")))
            assert [v.lsn for v in repo.catalog.key_versions(some)]

    trio.run(check)


def test_a_catalog_built_with_unkeyed_digests_is_rebuilt_on_unlock(tmp_path: Path, random_seed: int) -> None:
    repo_dir, model, _ = build(tmp_path, random.Random(random_seed), encrypted=True)
    key = read_key_file(str(tmp_path / "key"))
    some = sorted(model)

    async def unkeyed_catalog() -> None:  # what the previous version built: rows digested without a key
        async with open_repository(str(repo_dir)) as repo:
            await unlock(repo, key)
            store_id = repo.catalog.get_meta("store_id")
            repo.catalog.clear()
            repo.catalog.set_meta("store_id", store_id)
            repo.catalog.index_key = None
            await repo.sync()
            assert repo.catalog.get_meta("index_key_id") is None
            assert all(list(repo.catalog.key_versions(k)) for k in some)  # unkeyed rows, found unkeyed

    async def check() -> None:
        async with open_repository(str(repo_dir)) as repo:
            await unlock(repo, key)
            assert repo.catalog.get_meta("index_key_id") is not None
            await repo.sync()
            assert all(list(repo.catalog.key_versions(k)) for k in some)

    trio.run(unkeyed_catalog)
    trio.run(check)
