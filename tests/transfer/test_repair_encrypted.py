"""Write-once repair of an encrypted repository whose damaged file is a merge the healthy copy does not hold.

The specification: the healthy copy's sealed pieces are merged, under the repository's key, into one sealed
segment at the next generation of the damaged merge's name; nothing is deleted; verify through the key is OK
with the full window; the repaired repository holds none of the keys and values in plaintext.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import trio

from pitr.archiver.publish import merge_run
from pitr.repo.keyring import unlock_existing
from pitr.repo.repository import open_repository
from segments.naming import with_generation
from tests.crypto.test_archive_encrypt import PER_ROUND, ROUNDS, Twins, every_byte
from tests.transfer.test_copy import flip_bit


@pytest.fixture
def twins(tmp_path: Path, random_seed: int, capsys: pytest.CaptureFixture[str]) -> Twins:
    return Twins(tmp_path, random.Random(random_seed), capsys)


def merge_and_drop_inputs(repo: str, key: str) -> str:
    """Merge the repository's first two segments (as the archiver does) and delete the inputs (as cleanup
    does); returns the merged segment's name."""
    async def main() -> str:
        async with open_repository(repo) as opened:
            await unlock_existing([opened], key)
            await opened.sync()
            run = opened.catalog.segments()[:2]
            assert len(run) == 2, "the premise: at least two segments"
            merged = await merge_run(opened, run)
            for s in run:
                os.remove(os.path.join(repo, "segments", s.name))
            return merged.name

    return trio.run(main)


def test_a_damaged_sealed_merge_is_superseded_by_the_healthy_pieces_merged_under_the_key(twins: Twins) -> None:
    copy, key = twins.tmp / "copy", str(twins.key)
    twins.ok("copy", "--from", str(twins.sealed), "--to", str(copy), "--key-file", key)
    merged = merge_and_drop_inputs(str(copy), key)
    path = copy / "segments" / merged
    path.chmod(0o600)
    flip_bit(str(path))
    before = sorted(os.listdir(copy / "segments"))
    out = json.loads(twins.ok("repair", str(copy), "--from", str(twins.sealed), "--key-file", key, "--json"))
    assert out["ok"], out
    assert out["replaced"] == [merged]
    assert [p["file"] for p in out["published"]] == [with_generation(merged, 1)]
    assert sorted(os.listdir(copy / "segments")) == sorted([*before, with_generation(merged, 1)])  # none deleted
    report = json.loads(twins.ok("verify", "--repo", str(copy), "--key-file", key, "--json"))[0]
    assert report["findings"] == []
    assert [(w["start_lsn"], w["end_lsn"]) for w in report["windows"]] == [(0, ROUNDS * PER_ROUND)]
    assert not [s for s in twins.secrets if s in every_byte(copy)]
