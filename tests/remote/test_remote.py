"""Remote repositories end to end: archive to S3 and to a directory at once, restore from either.

Every test here talks to a real S3-compatible server (`rclone serve s3`, see
tests/servers/s3.py). The specification:

- a restore from S3 equals a restore from a local repository of the same history;
- a damaged object in one repository is named by verify, and restore takes that
  file from the other repository, saying so;
- an outage of the endpoint during archiving ends with a complete archive: dense
  LSNs, a verified chain, no two objects holding the same commits;
- the catalog of a remote repository is derived data: deleted, it is rebuilt from
  the remote files; it catches up with files another process added;
- large segments and snapshots go up as multipart uploads;
- the command line archives into, and reports on, each repository it is given.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
import trio

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiver.archiver import UPLOAD_VIA_FILE
from pitr.archiving import StoreSource, archiving
from pitr.catalog.catalog import Catalog
from pitr.catalog.rows import CRC_SIZE
from pitr.repo.repository import Repository, live_segments, open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.snapshots.take import take_snapshot
from pitr.storage import S3Storage
from pitr.storage.s3 import RetryPolicy
from pitr.store import Store, StoreOptions
from pitr.verify import verify_repository
from tests.helpers.cli import run_cli
from tests.remote.conftest import s3_url
from tests.repo.history import FakeClock
from tests.servers.s3 import FaultProxy, S3Server, require_rclone

pytestmark = pytest.mark.integration

Model = dict[bytes, bytes]
CatalogDump = dict[str, list[tuple[bytes, bytes]]]
FAST_RETRY = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)


# -- building histories ---------------------------------------------------------------------------


@dataclass
class Workload:
    """Random puts, deletes and batches over a small key space, with the model after each commit."""

    rng: random.Random
    model: Model = field(default_factory=dict)
    commits: list[tuple[int, int, Model]] = field(default_factory=list)  # (lsn, ts, model after it)
    keys: int = 40

    async def run(self, store: Store, count: int, *, pause_every: int = 25) -> None:
        model, rng = self.model, self.rng
        for i in range(count):
            key = b"key%03d" % rng.randrange(self.keys)
            roll = rng.random()
            if roll < 0.2:
                commit = await store.delete(key)
                model.pop(key, None)
            elif roll < 0.3:
                other = b"key%03d" % rng.randrange(self.keys)
                value = b"batch-%d" % rng.getrandbits(32)
                async with store.batch() as batch:
                    batch.put(key, value)
                    batch.delete(other)
                model[key] = value
                model.pop(other, None)  # the delete follows the put, also when other == key
                assert batch.commit is not None
                commit = batch.commit
            else:
                value = b"value-%d-" % i + rng.randbytes(rng.randrange(8, 200))
                commit = await store.put(key, value)
                model[key] = value
            self.commits.append((commit.lsn, commit.ts_ns, dict(model)))
            if pause_every and i % pause_every == pause_every - 1:
                await trio.sleep(0.02)  # let the archiver cut a segment here


@dataclass
class DualHistory:
    """One store archived into a local directory and an S3 repository at the same time."""

    data: str
    local: str
    s3: str
    endpoint: str
    cache: str  # the archiver's cache directory for the S3 repository (its catalog)
    commits: list[tuple[int, int, Model]]
    snapshot_lsns: list[int]


@asynccontextmanager
async def s3_repository(url: str, endpoint: str, cache_dir: str, **storage_options: object
                        ) -> AsyncIterator[Repository]:
    """An S3 repository whose S3Storage is built here, for options open_storage cannot pass."""
    storage = S3Storage(url, endpoint_url=endpoint, **storage_options)  # type: ignore[arg-type]
    catalog = Catalog(os.path.join(cache_dir, "catalog"))
    try:
        yield Repository(storage, catalog, cache_dir)
    finally:
        catalog.close()
        await storage.aclose()


def build_dual_history(root: Path, server: S3Server, *, commits: int, snapshot_after: tuple[int, ...] = (),
                       merge_count: int = 4, seed: int = 1) -> DualHistory:
    history = DualHistory(str(root / "data"), str(root / "local"), s3_url(server), server.endpoint,
                          str(root / "s3-cache"), [], [])
    workload = Workload(random.Random(seed))

    async def main() -> None:
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(Store(history.data, clock=FakeClock()))
            local = await stack.enter_async_context(open_repository(history.local, create=True))
            remote = await stack.enter_async_context(open_repository(
                history.s3, cache_dir=history.cache, s3_endpoint=server.endpoint, create=True))
            options = ArchiveOptions(interval=0.01, merge_count=merge_count)
            archiver = await stack.enter_async_context(archiving(store, local, remote, options=options))
            done = 0
            for stop in (*snapshot_after, commits):
                await workload.run(store, stop - done)
                done = stop
                if stop != commits:
                    # Let the store's apply task finish first: Store.flush does not wait for an apply
                    # already in flight, and take_snapshot then fails when the archiver is ahead of it.
                    await trio.sleep(0.2)
                    history.snapshot_lsns.append((await take_snapshot(archiver, prepare=store.flush)).lsn)
        history.commits = workload.commits

    trio.run(main)
    return history


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> DualHistory:
    return build_dual_history(tmp_path_factory.mktemp("dual"), s3, commits=240, snapshot_after=(120,))


def normalized(dump: CatalogDump) -> dict[str, list[tuple[bytes, object]]]:
    """A catalog dump with snapshot rows decoded (without their checksum), for readable assertion failures."""
    return {table: [(key, json.loads(value[:-CRC_SIZE]) if table == "snapshots" else value) for key, value in rows]
            for table, rows in dump.items()}


async def wait_until(condition: Callable[[], bool], seconds: float) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await trio.sleep(0.01)
    raise AssertionError(f"not reached within {seconds} s")


# -- reading results --------------------------------------------------------------------------------


async def scan(path: str) -> Model:
    async with Store(path, StoreOptions(create=False)) as store:
        return dict(await store.scan())


def segment_ranges(server: S3Server, url: str) -> list[tuple[int, int]]:
    """(first, last) LSN of every segment object under an s3:// repository, straight from the server."""
    client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
    prefix = url[len(f"s3://{server.bucket}/"):] + "/segments/"
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=server.bucket, Prefix=prefix)
        names = [item["Key"][len(prefix):] for page in pages for item in page.get("Contents", [])]
    finally:
        client.close()
    keep, _superseded = live_segments(names)  # merge inputs stay until cleanup, superseded
    return sorted(keep.values())


def assert_dense(ranges: list[tuple[int, int]], first: int, last: int) -> None:
    """The segments hold every LSN first..last exactly once."""
    assert ranges, "no segments"
    assert ranges[0][0] == first
    for (_a, b), (c, _d) in zip(ranges, ranges[1:], strict=False):
        assert c == b + 1, f"segments {ranges} overlap or leave a gap after LSN {b}"
    assert ranges[-1][1] == last


def damage_object(server: S3Server, url: str, name: str, *, at: float = 0.5) -> None:
    """Overwrite an object with a copy that has one bit flipped, the same length (bit rot on the server)."""
    client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
    key = url[len(f"s3://{server.bucket}/"):] + "/" + name
    try:
        data = bytearray(client.get_object(Bucket=server.bucket, Key=key)["Body"].read())
        data[int(len(data) * at)] ^= 0x10
        client.put_object(Bucket=server.bucket, Key=key, Body=bytes(data))
    finally:
        client.close()


def targets_for(history: DualHistory) -> list[tuple[RestoreTarget, Model]]:
    """Several moments across the history (before, at and after the snapshot) with the state expected."""
    commits = history.commits
    picks = [commits[len(commits) * k // 8] for k in (1, 3, 5, 7)]
    out = [(RestoreTarget(time_ns=ts), model) for _lsn, ts, model in picks[:2]]
    _lsn, ts, _model = picks[2]
    out.append((RestoreTarget(time_ns=ts, exclusive=True), commits[len(commits) * 5 // 8 - 1][2]))
    out.append((RestoreTarget(lsn=picks[3][0]), picks[3][2]))
    out.append((RestoreTarget(latest=True), commits[-1][2]))
    return out


# -- restore from S3 equals restore from a directory ------------------------------------------------


def test_restore_from_s3_equals_restore_from_local_directory(history: DualHistory, tmp_path: Path) -> None:
    targets = targets_for(history)

    async def main() -> list[tuple[Model, Model]]:
        results = []
        # A new cache directory: the S3 repository's catalog is rebuilt from the remote files, as on a
        # machine that lost everything but the archive.
        async with open_repository(history.local) as local, \
                open_repository(history.s3, cache_dir=str(tmp_path / "cold"), s3_endpoint=history.endpoint) as remote:
            for i, (target, _expected) in enumerate(targets):
                scans = []
                for repo in (local, remote):
                    dest = str(tmp_path / f"restored-{i}-{'s3' if repo is remote else 'local'}")
                    await restore(repo, RestoreOptions(target=target, dest=dest))
                    scans.append(await scan(dest))
                results.append((scans[0], scans[1]))
        return results

    for (target, expected), (from_local, from_s3) in zip(targets, trio.run(main), strict=True):
        assert from_s3 == from_local, f"restore {target.describe()} differs between S3 and the directory"
        assert from_s3 == expected, f"restore {target.describe()} is not the state at that moment"


def test_both_repositories_hold_the_same_files(history: DualHistory, s3: S3Server) -> None:
    local = sorted(live_segments(os.listdir(os.path.join(history.local, "segments")))[0].values())
    assert segment_ranges(s3, history.s3) == local
    assert_dense(local, 1, history.commits[-1][0])


# -- a damaged object: verify names it, restore falls back --------------------------------------------


@pytest.fixture
def damaged(tmp_path: Path, s3: S3Server) -> DualHistory:
    return build_dual_history(tmp_path, s3, commits=90, merge_count=100, seed=2)


def test_damaged_s3_object_is_named_and_restore_takes_it_from_the_directory(
        damaged: DualHistory, s3: S3Server, tmp_path: Path) -> None:
    segments = sorted(os.listdir(os.path.join(damaged.local, "segments")))
    assert len(segments) >= 3
    victim = segments[len(segments) // 2]
    damage_object(s3, damaged.s3, f"segments/{victim}")
    said: list[str] = []

    async def main() -> tuple[list[str], Model]:
        async with open_repository(damaged.s3, cache_dir=damaged.cache, s3_endpoint=damaged.endpoint) as remote, \
                open_repository(damaged.local) as local:
            report = await verify_repository(remote)
            assert (await verify_repository(local)).ok
            dest = str(tmp_path / "restored")
            await restore([remote, local], RestoreOptions(target=RestoreTarget(latest=True), dest=dest),
                          say=said.append)
            return [f.file for f in report.findings], await scan(dest)

    named, restored = trio.run(main)
    assert victim in named
    assert restored == damaged.commits[-1][2]
    assert any(victim in line and "trying the next repository" in line for line in said), said
    assert len(said) == 1, said  # only the damaged file needed another repository


def test_damage_in_each_repository_restores_file_by_file(damaged: DualHistory, s3: S3Server,
                                                         tmp_path: Path) -> None:
    """A different segment is damaged in each repository: restore needs both, and gets it right.

    The directory is asked first, so only its damaged file sends restore to S3; the file damaged in
    S3 is read from the directory and never fetched from S3.
    """
    segments = sorted(os.listdir(os.path.join(damaged.local, "segments")))
    in_s3, in_local = segments[1], segments[-2]
    damage_object(s3, damaged.s3, f"segments/{in_s3}")
    path = os.path.join(damaged.local, "segments", in_local)
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(path).write_bytes(bytes(data))
    said: list[str] = []

    async def main() -> Model:
        async with open_repository(damaged.local) as local, \
                open_repository(damaged.s3, cache_dir=damaged.cache, s3_endpoint=damaged.endpoint) as remote:
            dest = str(tmp_path / "restored")
            await restore([local, remote], RestoreOptions(target=RestoreTarget(latest=True), dest=dest),
                          say=said.append)
            return await scan(dest)

    assert trio.run(main) == damaged.commits[-1][2]
    assert said == [f"{damaged.local}/segments/{in_local} is damaged; trying the next repository"]


def test_damaged_s3_object_with_a_rebuilt_catalog_still_restores_latest(
        damaged: DualHistory, s3: S3Server, tmp_path: Path) -> None:
    segments = sorted(os.listdir(os.path.join(damaged.local, "segments")))
    damage_object(s3, damaged.s3, f"segments/{segments[len(segments) // 2]}")

    async def main() -> Model:
        async with open_repository(damaged.s3, cache_dir=str(tmp_path / "cold"),
                                   s3_endpoint=damaged.endpoint) as remote, \
                open_repository(damaged.local) as local:
            dest = str(tmp_path / "restored")
            await restore([remote, local], RestoreOptions(target=RestoreTarget(latest=True), dest=dest))
            return await scan(dest)

    assert trio.run(main) == damaged.commits[-1][2]


def test_verify_reads_the_remote_object_not_a_cached_download(
        damaged: DualHistory, s3: S3Server, tmp_path: Path) -> None:
    segments = sorted(os.listdir(os.path.join(damaged.local, "segments")))
    cache = str(tmp_path / "warm")

    async def verify() -> list[str]:
        async with open_repository(damaged.s3, cache_dir=cache, s3_endpoint=damaged.endpoint) as remote:
            return [f.file for f in (await verify_repository(remote)).findings]

    assert trio.run(verify) == []  # downloads (and caches) every object
    damage_object(s3, damaged.s3, f"segments/{segments[1]}")
    assert segments[1] in trio.run(verify)


# -- an outage in the middle of archiving ---------------------------------------------------------------


def test_endpoint_outage_while_archiving_ends_with_a_complete_archive(tmp_path: Path, s3: S3Server) -> None:
    """The server stops while commits keep coming, then comes back on the same port."""
    server = S3Server(require_rclone(), str(tmp_path / "server"))
    os.makedirs(server.root)
    server.start()
    url = s3_url(server)
    workload = Workload(random.Random(3))
    try:
        async def main() -> tuple[Model, int, int, int]:
            async with Store(str(tmp_path / "data")) as store, \
                    open_repository(url, cache_dir=str(tmp_path / "cache"), s3_endpoint=server.endpoint,
                                    create=True) as repo:
                storage = repo.storage
                assert isinstance(storage, S3Storage)
                options = ArchiveOptions(interval=0.02, retry_max=0.2, merge_count=6)
                async with archiving(store, repo, options=options) as archiver:
                    await workload.run(store, 40, pause_every=10)
                    await wait_until(lambda: archiver.progress[0].last_lsn == store.last_lsn, 10)
                    await trio.to_thread.run_sync(server.stop)
                    await workload.run(store, 60, pause_every=10)  # written during the outage
                    await trio.sleep(1.0)
                    lsn_in_outage = archiver.progress[0].last_lsn
                    retried = sum(storage.retries.values())
                    await trio.to_thread.run_sync(server.start)
                    await workload.run(store, 40, pause_every=10)
                    await wait_until(lambda: archiver.progress[0].last_lsn == store.last_lsn
                                     and archiver.progress[0].last_error is None, 20)
                return dict(await store.scan()), store.last_lsn, lsn_in_outage, retried

        live, last_lsn, lsn_in_outage, retried = trio.run(main)
        assert retried > 0, "no request failed: the outage did not happen"
        assert lsn_in_outage < last_lsn
        assert_dense(segment_ranges(server, url), 1, last_lsn)

        async def check() -> tuple[bool, Model]:
            async with open_repository(url, cache_dir=str(tmp_path / "cold"), s3_endpoint=server.endpoint) as repo:
                report = await verify_repository(repo)
                assert report.ok, report.findings
                dest = str(tmp_path / "restored")
                await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=dest))
                return report.ok, await scan(dest)

        ok, restored = trio.run(check)
        assert ok
        assert restored == live == workload.commits[-1][2]
    finally:
        server.stop()


def test_lost_response_then_failure_leaves_no_overlapping_segment(tmp_path: Path, s3: S3Server) -> None:
    """A segment PUT lands but its answer is lost and the retries fail; commits keep coming."""
    url = s3_url(s3)
    workload = Workload(random.Random(4))

    async def main() -> int:
        with FaultProxy(s3.port) as proxy:
            async with Store(str(tmp_path / "data")) as store, \
                    s3_repository(url, proxy.endpoint, str(tmp_path / "cache"), retry=FAST_RETRY) as repo:
                archiver = Archiver(StoreSource(store), [repo], ArchiveOptions(merge_count=100))
                await archiver.start()
                await workload.run(store, 10, pause_every=0)
                await archiver.cycle()
                await workload.run(store, 10, pause_every=0)
                # HEAD answers, the PUT lands but its answer is lost, every retry's HEAD fails.
                proxy.fail_next("pass", "lose-response", "drop", "drop", "drop", "drop")
                await archiver.cycle()
                assert proxy.pending_faults() == 0
                assert archiver.progress[0].last_error is not None
                await workload.run(store, 10, pause_every=0)
                await archiver.cycle()
                assert archiver.progress[0].last_error is None
                return store.last_lsn

    last_lsn = trio.run(main)
    assert_dense(segment_ranges(s3, url), 1, last_lsn)


# -- the catalog of a remote repository is derived data ------------------------------------------------


def test_catalog_is_rebuilt_from_remote_files_and_catches_up(tmp_path: Path, s3: S3Server) -> None:
    history = build_dual_history(tmp_path / "h", s3, commits=80, snapshot_after=(40,), merge_count=3, seed=5)
    endpoint = history.endpoint

    async def dump(cache: str, *, reindex: bool = False) -> tuple[CatalogDump, list[str]]:
        async with open_repository(history.s3, cache_dir=cache, s3_endpoint=endpoint) as repo:
            report = await (repo.reindex() if reindex else repo.sync())
            assert not report.broken
            return repo.catalog.dump(), report.indexed

    before, indexed = trio.run(dump, history.cache)
    assert indexed == []  # the archiver's catalog is current: nothing to download
    assert before["segments"]
    assert before["snapshots"]
    shutil.rmtree(history.cache)
    rebuilt, indexed = trio.run(dump, history.cache)
    assert indexed
    assert normalized(rebuilt) == normalized(before)
    assert normalized(trio.run(lambda: dump(history.cache, reindex=True))[0]) == normalized(before)

    # Another process (its own cache) archives more commits, merging away segments this catalog knows.
    workload = Workload(random.Random(6), model=dict(history.commits[-1][2]))

    async def archive_more() -> None:
        async with Store(history.data) as store, \
                open_repository(history.s3, cache_dir=str(tmp_path / "other"), s3_endpoint=endpoint) as repo:
            async with archiving(store, repo, options=ArchiveOptions(interval=0.01, merge_count=3)):
                await workload.run(store, 60, pause_every=10)

    trio.run(archive_more)
    caught_up, indexed = trio.run(dump, history.cache)
    assert indexed
    fresh, _ = trio.run(lambda: dump(str(tmp_path / "fresh"), reindex=True))
    assert normalized(caught_up) == normalized(fresh)
    assert_dense(segment_ranges(s3, history.s3), 1, workload.commits[-1][0])

    async def restore_latest() -> Model:
        async with open_repository(history.s3, cache_dir=history.cache, s3_endpoint=endpoint) as repo:
            dest = str(tmp_path / "restored")
            await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=dest))
            return await scan(dest)

    assert trio.run(restore_latest) == workload.commits[-1][2]


def test_reindexed_catalog_is_byte_identical(tmp_path: Path, s3: S3Server) -> None:
    history = build_dual_history(tmp_path, s3, commits=10, snapshot_after=(5,))

    async def dumps() -> tuple[CatalogDump, CatalogDump]:
        async with open_repository(history.s3, cache_dir=history.cache, s3_endpoint=history.endpoint) as repo:
            live = repo.catalog.dump()
            await repo.reindex()
            return live, repo.catalog.dump()

    live, rebuilt = trio.run(dumps)
    assert rebuilt == live


def test_one_cache_dir_serves_several_repositories(tmp_path: Path, s3: S3Server) -> None:
    async def main() -> list[int]:
        async with Store(str(tmp_path / "data")) as store:
            async with archiving(store, str(tmp_path / "local"), s3_url(s3), s3_endpoint=s3.endpoint,
                                 cache_dir=str(tmp_path / "cache")) as archiver:
                for i in range(5):
                    await store.put(b"k%d" % i, b"v")
            return [p.last_lsn for p in archiver.progress]

    assert trio.run(main) == [5, 5]


# -- multipart uploads ------------------------------------------------------------------------------------


def test_large_segments_and_snapshots_go_up_in_parts(tmp_path: Path, s3: S3Server) -> None:
    """open_storage cannot pass a multipart threshold, so the S3Storage is built here with a small one."""
    url = s3_url(s3)
    part = 1 << 20
    value_size = 256 << 10
    count = (UPLOAD_VIA_FILE + 2 * part) // value_size  # one cycle's segment: above the archiver's file cut-off
    rng = random.Random(7)

    async def main() -> tuple[dict[str, int], Model, Model]:
        async with Store(str(tmp_path / "data")) as store, \
                s3_repository(url, s3.endpoint, str(tmp_path / "cache"), multipart_threshold=part,
                              part_size=part, retry=FAST_RETRY) as repo:
            assert isinstance(repo.storage, S3Storage)
            archiver = Archiver(StoreSource(store), [repo], ArchiveOptions())
            await archiver.start()
            for i in range(count):
                await store.put(b"blob%03d" % i, rng.randbytes(value_size))  # incompressible
            await archiver.cycle()
            segment_requests = dict(repo.storage.requests)
            await take_snapshot(archiver, prepare=store.flush)
            await store.put(b"after", b"snapshot")
            await archiver.cycle()
            report = await verify_repository(repo)
            assert report.ok, report.findings
            live = dict(await store.scan())
        async with open_repository(url, cache_dir=str(tmp_path / "cold"), s3_endpoint=s3.endpoint) as cold:
            dest = str(tmp_path / "restored")
            await restore(cold, RestoreOptions(target=RestoreTarget(latest=True), dest=dest))
            restored = await scan(dest)
        return segment_requests, live, restored

    segment_requests, live, restored = trio.run(main)
    assert segment_requests.get("CreateMultipartUpload") == 1
    assert segment_requests.get("CompleteMultipartUpload") == 1
    assert segment_requests.get("UploadPart", 0) >= UPLOAD_VIA_FILE // part
    assert restored == live
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    try:
        listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=url[len(f"s3://{s3.bucket}/"):] + "/snapshots/")
        sizes = [item["Size"] for item in listed.get("Contents", [])]
    finally:
        client.close()
    assert len(sizes) == 1
    assert sizes[0] > part  # the snapshot, too, went up in parts


# -- the command line with a directory and an S3 repository ------------------------------------------------


def test_cli_archives_to_a_directory_and_s3_and_reports_each(
        tmp_path: Path, s3: S3Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    data, local, remote = str(tmp_path / "data"), str(tmp_path / "local"), s3_url(s3)
    monkeypatch.setenv("PITR_DATA", data)
    repos = ["--repo", local, "--repo", remote, "--s3-endpoint", s3.endpoint]
    for i in range(5):
        assert run_cli(capsys, "put", f"key{i}", f"value{i}")[0] == 0
    code, out, err = run_cli(capsys, "archive", *repos, "--json")
    assert code == 0, err
    rows = {row["repository"]: row for row in json.loads(out)["repositories"]}
    assert set(rows) == {local, remote}
    assert all(row["archived_through_lsn"] == 5 and row["last_error"] is None for row in rows.values())

    assert run_cli(capsys, "put", "key5", "value5")[0] == 0
    code, out, _ = run_cli(capsys, "archive", *repos)
    assert code == 0
    assert f"{local}: archived through LSN 6" in out
    assert f"{remote}: archived through LSN 6" in out

    code, out, _ = run_cli(capsys, "timeline", *repos, "--json")
    assert code == 0
    timelines = {row["repository"]: row for row in json.loads(out)}
    assert set(timelines) == {local, remote}
    assert [w["end_lsn"] for w in timelines[local]["windows"]] == [6]
    assert timelines[remote]["windows"] == timelines[local]["windows"]
    code, out, _ = run_cli(capsys, "timeline", *repos)
    assert code == 0
    assert out.index(local) < out.index(remote)

    code, out, _ = run_cli(capsys, "verify", *repos, "--json")
    assert code == 0
    reports = {row["repository"]: row for row in json.loads(out)}
    assert set(reports) == {local, remote}
    assert all(row["ok"] and row["files_checked"] >= 1 for row in reports.values())
    code, out, _ = run_cli(capsys, "verify", *repos)
    assert code == 0
    assert f"{local}: OK" in out
    assert f"{remote}: OK" in out

    # Damage the S3 copy: verify names the repository and the file, and exits 1.
    segment = sorted(os.listdir(os.path.join(local, "segments")))[0]
    damage_object(s3, remote, f"segments/{segment}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cold"))
    code, out, _ = run_cli(capsys, "verify", *repos)
    assert code == 1
    assert f"{local}: OK" in out
    assert f"{remote}: 1 problem(s)" in out
    assert f"BROKEN {segment}" in out

    # Restore takes the damaged file from the directory.
    dest = str(tmp_path / "restored")
    code, _, err = run_cli(capsys, "restore", "--latest", "--dest", dest, *repos)
    assert code == 0, err
    assert trio.run(scan, dest) == {b"key%d" % i: b"value%d" % i for i in range(6)}

