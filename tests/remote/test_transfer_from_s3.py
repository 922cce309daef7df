"""`pitr copy` and `pitr repair` with S3 as the source (tests/remote/test_transfer.py has S3 as the target).

The specification:

- a copy out of an S3 repository holding a damaged object copies everything else, names the damaged
  file (`DAMAGED`), exits 1, and the target never holds the damaged bytes;
- a directory repository with a damaged segment and a missing one, repaired from a healthy S3 copy,
  ends with live files byte for byte the original's, the damaged file superseded in place, and verify
  passes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pitr.transfer import DAMAGED_DIR
from tests.helpers.cli import run_cli
from tests.remote.conftest import backing_dir, s3_url
from tests.remote.test_remote import damage_object
from tests.remote.test_transfer import live_by_base
from tests.repo.history import History, build_history
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.integration
Capsys = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def source_history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(str(tmp_path_factory.mktemp("from-s3-history")), commits=120, snapshot_every=60,
                         merge_count=1000, seed=5)


def flags(s3: S3Server, tmp_path: Path) -> tuple[str, ...]:
    return ("--s3-endpoint", s3.endpoint, "--cache-dir", str(tmp_path / "cache"))


def test_a_copy_out_of_s3_leaves_a_damaged_object_behind_and_says_so(
        source_history: History, s3: S3Server, tmp_path: Path, capsys: Capsys) -> None:
    url = s3_url(s3)
    assert run_cli(capsys, "copy", "--from", source_history.repo, "--to", url, *flags(s3, tmp_path))[0] == 0
    victim = sorted(os.listdir(os.path.join(backing_dir(s3, url), "segments")))[2]
    damage_object(s3, url, f"segments/{victim}")
    target = str(tmp_path / "target")
    code, out, err = run_cli(capsys, "copy", "--from", url, "--to", target, *flags(s3, tmp_path))
    assert code == 1, out + err
    assert "DAMAGED" in out
    assert victim in out
    assert "Traceback" not in err
    assert not Path(target, "segments", victim).exists(), "nothing unverified lands"
    copied = set(os.listdir(os.path.join(target, "segments")))
    assert copied == set(os.listdir(os.path.join(source_history.repo, "segments"))) - {victim}
    assert not Path(target, "watermark").exists(), "a copy with a hole claims no completeness"


def test_a_directory_repository_repaired_from_s3(source_history: History, s3: S3Server, tmp_path: Path,
                                                 capsys: Capsys) -> None:
    url, local = s3_url(s3), str(tmp_path / "local")
    assert run_cli(capsys, "copy", "--from", source_history.repo, "--to", url, *flags(s3, tmp_path))[0] == 0
    assert run_cli(capsys, "copy", "--from", source_history.repo, "--to", local)[0] == 0
    segments = sorted(os.listdir(os.path.join(local, "segments")))
    damaged, missing = segments[1], segments[4]
    path = Path(local, "segments", damaged)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    os.remove(os.path.join(local, "segments", missing))
    assert run_cli(capsys, "verify", "--repo", local)[0] == 1
    code, out, err = run_cli(capsys, "repair", "--from", url, local, *flags(s3, tmp_path))
    assert code == 0, out + err
    assert live_by_base(local) == live_by_base(source_history.repo)
    assert not os.path.exists(os.path.join(local, DAMAGED_DIR))
    assert Path(local, "segments", damaged).read_bytes() == bytes(raw)  # superseded, left for cleanup
    code, out, err = run_cli(capsys, "verify", "--repo", local)
    assert code == 0, out + err
