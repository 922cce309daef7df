"""`pitr copy` and `pitr repair` between a local and an S3 repository, and bandwidth caps on a real S3 server.

The specification:

- a copy into S3 interrupted midway, run again, ends with the objects of a full copy byte for byte,
  and `pitr verify` passes on it; a copy back from S3 into a directory is byte for byte the source;
- repair of an S3 repository with a damaged object from a local copy publishes the verified copy under
  a new name that supersedes the damaged object (which stays, for cleanup), and verify and timeline
  report nothing afterwards (tests/remote/test_repair_write_once_s3.py counts its requests);
- uploads and downloads under a cap run at the cap: the rate measured is within 10 % of it, and
  the command line's `--limit-upload` reaches the S3 backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from pitr.errors import StorageError
from pitr.repo.live import live_segments, live_snapshots
from pitr.repo.repository import open_repository
from pitr.storage import S3Storage
from pitr.storage.ratelimit import TransferLimits
from pitr.transfer import DAMAGED_DIR, copy_history
from segments.naming import base_name
from tests.helpers.cli import run_cli
from tests.helpers.segments_on_disk import live_segment_files, newest_watermark_file
from tests.remote.conftest import backing_dir, s3_url
from tests.remote.test_remote import damage_object
from tests.repo.history import History, build_history
from tests.servers.s3 import FaultProxy, S3Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(str(tmp_path_factory.mktemp("transfer-history")), commits=200, snapshot_every=100,
                         merge_count=1000, seed=3)


def local_files(repo: str) -> dict[str, bytes]:
    """The published files of a directory repository (or the backing directory of an S3 one)."""
    out = {}
    for path in live_segment_files(repo):  # the history: a merge's inputs stay, superseded, until cleanup
        out[f"segments/{path.name}"] = path.read_bytes()
    for name in sorted(os.listdir(os.path.join(repo, "snapshots"))):
        out[f"snapshots/{name}"] = Path(repo, "snapshots", name).read_bytes()
    out["pitr-repository"] = Path(repo, "pitr-repository").read_bytes()
    mark = newest_watermark_file(repo)
    assert mark is not None, f"{repo} has no watermark"
    out["watermark"] = mark.read_bytes()
    return out


def live_by_base(repo: str) -> dict[str, bytes]:
    """The live segments' and snapshots' bytes, by the name of generation 0 (a repair's copy in its place)."""
    out = {}
    for folder, live in (("segments", live_segments), ("snapshots", live_snapshots)):
        for name in live(os.listdir(os.path.join(repo, folder)))[0]:
            out[f"{folder}/{base_name(name)}"] = Path(repo, folder, name).read_bytes()
    return out


def test_an_interrupted_copy_into_s3_resumes_to_a_full_copy(history: History, s3: S3Server, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    url = s3_url(s3)
    cache = str(tmp_path / "cache")

    async def interrupted() -> None:
        async with open_repository(history.repo) as a, \
                open_repository(url, cache_dir=cache, s3_endpoint=s3.endpoint) as b:
            publish_file = b.storage.publish_file
            calls = 0

            async def failing(name: str, path: str) -> None:
                nonlocal calls
                calls += 1
                if calls > 6:
                    raise StorageError(f"{b.url}: injected outage publishing {name}")
                await publish_file(name, path)

            b.storage.publish_file = failing  # type: ignore[method-assign]
            await copy_history(a, b)

    with pytest.raises(StorageError, match="injected outage"):
        trio.run(interrupted)
    behind = backing_dir(s3, url)
    assert 0 < len(os.listdir(os.path.join(behind, "segments"))) < len(os.listdir(os.path.join(history.repo,
                                                                                                "segments")))
    code, out, err = run_cli(capsys, "copy", "--from", history.repo, "--to", url, "--s3-endpoint", s3.endpoint,
                             "--cache-dir", cache)
    assert code == 0, out + err
    assert local_files(behind) == local_files(history.repo)
    code, out, err = run_cli(capsys, "verify", "--repo", url, "--s3-endpoint", s3.endpoint,
                             "--cache-dir", str(tmp_path / "cold"))
    assert code == 0, out + err

    back = str(tmp_path / "back")
    code, out, err = run_cli(capsys, "copy", "--from", url, "--to", back, "--s3-endpoint", s3.endpoint,
                             "--cache-dir", cache)
    assert code == 0, out + err
    assert local_files(back) == local_files(history.repo)


def test_repair_of_a_damaged_s3_object_from_a_directory(history: History, s3: S3Server, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    url = s3_url(s3)
    flags = ("--s3-endpoint", s3.endpoint, "--cache-dir", str(tmp_path / "cache"))
    assert run_cli(capsys, "copy", "--from", history.repo, "--to", url, *flags)[0] == 0
    behind = backing_dir(s3, url)
    victim = sorted(os.listdir(os.path.join(behind, "segments")))[3]
    damage_object(s3, url, f"segments/{victim}")
    damaged_bytes = Path(behind, "segments", victim).read_bytes()
    assert run_cli(capsys, "verify", "--repo", url, *flags)[0] == 1
    code, out, err = run_cli(capsys, "repair", "--from", history.repo, url, *flags, "--json")
    assert code == 0, out + err
    assert Path(behind, "segments", victim).read_bytes() == damaged_bytes  # superseded, left for cleanup
    assert not os.path.exists(os.path.join(behind, DAMAGED_DIR))
    assert live_by_base(behind) == live_by_base(history.repo)
    code, out, err = run_cli(capsys, "timeline", "--repo", url, *flags)
    assert code == 0, out + err
    assert run_cli(capsys, "verify", "--repo", url, *flags)[0] == 0


CAP = 512 << 10  # bytes per second: about 3 s for each direction's 1.5 MiB


def test_uploads_and_downloads_run_at_the_cap(s3: S3Server, tmp_path: Path) -> None:
    url = s3_url(s3)
    payload = os.urandom(256 << 10)
    big = tmp_path / "big"
    big.write_bytes(payload * 6)

    async def main() -> tuple[float, float, TransferLimits]:
        limits = TransferLimits.of(upload=CAP, download=CAP)
        storage = S3Storage(url, endpoint_url=s3.endpoint, limits=limits)
        try:
            await storage.stat("warm-up")  # the client and its connection, outside the measurement
            started = time.monotonic()
            for i in range(6):
                await storage.publish(f"objects/{i}", payload)
            upload = 6 * len(payload) / (time.monotonic() - started)
            await storage.publish_file("big", str(big))
            started = time.monotonic()
            size = await storage.download("big", str(tmp_path / "downloaded"))
            download = size / (time.monotonic() - started)
            return upload, download, limits
        finally:
            await storage.aclose()

    upload, download, limits = trio.run(main)
    print(f"cap {CAP} B/s: upload measured {upload:.0f} B/s, download measured {download:.0f} B/s")
    assert 0.9 * CAP <= upload <= 1.1 * CAP
    assert 0.9 * CAP <= download <= 1.1 * CAP
    stats = {s.direction: s for s in limits.stats()}
    assert stats["upload"].cap_bytes_per_s == CAP
    assert stats["upload"].bytes_total >= 12 * len(payload)
    assert 0.8 * CAP <= stats["download"].rate_bytes_per_s <= 1.1 * CAP


def test_the_command_line_cap_reaches_the_s3_backend(history: History, s3: S3Server, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    total = sum(len(v) for k, v in local_files(history.repo).items() if k != "watermark")

    def copy(*limit: str) -> float:
        started = time.monotonic()
        code, out, err = run_cli(capsys, "copy", "--from", history.repo, "--to", s3_url(s3), "--s3-endpoint",
                                 s3.endpoint, "--cache-dir", str(tmp_path / "cache"), *limit)
        assert code == 0, out + err
        return time.monotonic() - started

    uncapped = copy()
    rate = max(1, int(total / max(2.0, 3 * uncapped)))  # the cap alone needs three times the uncapped copy
    capped = copy("--limit-upload", f"{rate}B/s")
    print(f"{total} bytes: {uncapped:.2f}s uncapped, {capped:.2f}s under a cap of {rate} B/s")
    assert capped >= 0.9 * total / rate, f"{total} bytes in {capped:.2f}s under a cap of {rate} B/s"


def test_a_copy_backs_off_through_throttling_answers(history: History, s3: S3Server, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """503 SlowDown and 429 answers in the middle of a copy are retried with backoff; the copy completes."""
    url = s3_url(s3)
    with FaultProxy(s3.port) as proxy:
        # past the start (listing, identity), so the faults land among the uploads
        proxy.fail_next(*["pass"] * 12, "503", "429", "503", *["pass"] * 5, "429")
        code, out, err = run_cli(capsys, "copy", "--from", history.repo, "--to", url, "--s3-endpoint",
                                 proxy.endpoint, "--cache-dir", str(tmp_path / "cache"))
        assert proxy.pending_faults() == 0
    assert code == 0, out + err
    assert local_files(backing_dir(s3, url)) == local_files(history.repo)


def test_a_copy_killed_midway_resumes_to_a_full_copy(history: History, s3: S3Server, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL of a `pitr copy` process while it uploads (slowed by a cap); the rerun completes the copy."""
    url = s3_url(s3)
    flags = ["--s3-endpoint", s3.endpoint, "--cache-dir", str(tmp_path / "cache")]
    pitr = os.path.join(os.path.dirname(sys.executable), "pitr")
    errors = tmp_path / "stderr"
    with errors.open("wb") as stderr:
        process = subprocess.Popen([pitr, "copy", "--from", history.repo, "--to", url, *flags,
                                    "--limit-upload", "2KiB/s"], stdout=subprocess.DEVNULL, stderr=stderr)
    segments = os.path.join(backing_dir(s3, url), "segments")
    try:
        deadline = time.monotonic() + 60
        while not (os.path.isdir(segments) and len(os.listdir(segments)) >= 2):
            assert process.poll() is None, errors.read_text()
            assert time.monotonic() < deadline, "the copy published nothing within 60 s"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    assert len(os.listdir(segments)) < len(os.listdir(os.path.join(history.repo, "segments")))
    code, out, err = run_cli(capsys, "copy", "--from", history.repo, "--to", url, *flags)
    assert code == 0, out + err
    assert local_files(backing_dir(s3, url)) == local_files(history.repo)
    assert run_cli(capsys, "verify", "--repo", url, *flags)[0] == 0


def test_archive_uploads_under_the_cap(s3: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--limit-upload` on a command that opens repositories with --repo (here `pitr archive`) caps it too."""
    data = str(tmp_path / "data")
    for i in range(3):
        assert run_cli(capsys, "put", "--data", data, f"key{i}", os.urandom(3000).hex())[0] == 0
    url = s3_url(s3)
    rate = 2048
    started = time.monotonic()
    code, out, err = run_cli(capsys, "archive", "--data", data, "--repo", url, "--s3-endpoint", s3.endpoint,
                             "--cache-dir", str(tmp_path / "cache"), "--limit-upload", f"{rate}B/s")
    elapsed = time.monotonic() - started
    assert code == 0, out + err
    behind = backing_dir(s3, url)
    uploaded = sum(os.path.getsize(os.path.join(folder, name)) for folder, _dirs, names in os.walk(behind)
                   for name in names)
    assert uploaded > 3 * rate  # enough bytes that the cap, not the start-up, decides the time
    print(f"{uploaded} bytes in {elapsed:.2f}s under a cap of {rate} B/s")
    assert elapsed >= 0.9 * uploaded / rate, f"{uploaded} bytes in {elapsed:.2f}s under a cap of {rate} B/s"
