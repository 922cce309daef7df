"""The etcd archiver against real etcd: restores to random moments equal etcd's own state at the
matching revision; a restart resumes without gap or duplicate; a compaction while stopped becomes a
gap that restore refuses; a member killed mid-archive loses nothing; audit reads an etcd archive."""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest

from pitr.archiver import ArchiveOptions
from pitr.audit import LogCommit, commit_log, history, value_at
from pitr.errors import InvalidArgument, OutsideWindow
from pitr.repo.repository import Repository, open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.snapshots.schedule import SnapshotSchedule
from pitr.sources.etcd import (
    Delete,
    EtcdClient,
    EtcdUnavailable,
    FollowOptions,
    Put,
    etcd_archiving,
    source_prefix_of,
    source_revision_at,
)
from pitr.store import Store, StoreOptions
from pitr.timeline import build_timeline
from tests.servers.etcd import EtcdCluster

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FAST = ArchiveOptions(interval=0.05)


async def etcd_state(client: EtcdClient, prefix: bytes, revision: int | None = None) -> dict[bytes, bytes]:
    _, kvs = await client.read_all(prefix, page_size=50, revision=revision)
    return {kv.key: kv.value for kv in kvs}


async def restored_state(repo: Repository, target: RestoreTarget, dest: Path, prefix: bytes) -> dict[bytes, bytes]:
    await restore(repo, RestoreOptions(target=target, dest=str(dest)))
    async with Store(str(dest), StoreOptions(require_archive=False)) as store:
        return dict(await store.scan(prefix))


async def archived_commits(repo: Repository) -> list[LogCommit]:
    await repo.sync()
    async with aclosing(commit_log(repo)) as commits:
        return [c async for c in commits]


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while True:
            if condition():
                return
            await anyio.sleep(0.01)


class Workload:
    """Random puts, deletes of existing keys and multi-key transactions under a prefix, plus
    writes elsewhere; every write under the prefix changes something, so each is one revision."""

    def __init__(self, client: EtcdClient, prefix: bytes, rng: random.Random) -> None:
        self.client, self.prefix, self.rng = client, prefix, rng
        self.keys: set[bytes] = set()
        self.revisions: list[int] = []

    def key(self) -> bytes:
        return self.prefix + b"k%02d" % self.rng.randrange(24)

    async def step(self) -> None:
        choice = self.rng.random()
        value = b"v%d" % self.rng.randrange(10**6)
        if choice < 0.15:
            await self.client.put(b"/elsewhere/" + self.prefix, value)  # a revision not under the prefix
            return
        if choice < 0.3 and self.keys:
            key = self.rng.choice(sorted(self.keys))
            result = await self.client.delete(key)
            assert result.deleted == 1
            self.keys.discard(key)
            self.revisions.append(result.revision)
            return
        if choice < 0.55:
            chosen = {self.key() for _ in range(self.rng.randrange(2, 6))}
            ops: list[Put | Delete] = []
            for i, key in enumerate(sorted(chosen)):
                if i and key in self.keys and self.rng.random() < 0.4:
                    ops.append(Delete(key))
                    self.keys.discard(key)
                else:
                    ops.append(Put(key, value + b".%d" % i))
                    self.keys.add(key)
            self.revisions.append(await self.client.put_many(ops))
            return
        key = self.key()
        self.revisions.append(await self.client.put(key, value))
        self.keys.add(key)

    async def run(self, steps: int) -> None:
        for _ in range(steps):
            await self.step()


async def test_restore_to_random_moments_equals_etcd_at_that_revision(
        etcd_server: EtcdCluster, key_prefix: bytes, tmp_path: Path) -> None:
    rng = random.Random(20261124)
    spool, repo_dir = str(tmp_path / "spool"), str(tmp_path / "repo")
    async with EtcdClient(etcd_server.endpoints) as client:
        load = Workload(client, key_prefix, rng)
        await load.run(15)
        work = Workload(client, key_prefix, rng)
        work.keys = set(load.keys)
        async with etcd_archiving(client, key_prefix, spool, repo_dir, options=FAST) as session:
            load_revision = session.follower.revision
            await work.run(40)
            await wait_until(lambda: session.follower.revision >= work.revisions[-1])
        await work.run(15)  # while the archiver is stopped
        async with etcd_archiving(client, key_prefix, spool, repo_dir, options=FAST) as session:
            await work.run(25)
            await wait_until(lambda: session.follower.revision >= work.revisions[-1])

        async with open_repository(repo_dir) as repo:
            commits = await archived_commits(repo)
            ident = await repo.require_identity()
            assert ident.source == "etcd"
            assert source_prefix_of(repo) == key_prefix
            assert [c.lsn for c in commits] == list(range(1, len(commits) + 1))
            assert commits[0].source_rev == load_revision
            assert {op.key for op in commits[0].ops} == load.keys
            # Every revision under the prefix, in order, exactly once: no gap or duplicate across the restart.
            assert [c.source_rev for c in commits[1:]] == work.revisions
            assert await source_revision_at(repo, commits[-1].lsn) == work.revisions[-1]
            timeline = build_timeline(repo.catalog, ident)
            assert len(timeline.windows) == 1
            window = timeline.windows[0]
            assert window.start_lsn == 1

            moments = [window.start_ns, window.end_ns]
            for commit, following in rng.sample(list(zip(commits[1:], commits[2:], strict=False)), 6):
                moments.append(commit.ts_ns)
                moments.append(rng.randrange(commit.ts_ns, following.ts_ns))
            for i, moment in enumerate(moments):
                at = [c for c in commits if c.ts_ns <= moment][-1]
                assert at.source_rev is not None
                restored = await restored_state(repo, RestoreTarget(time_ns=moment), tmp_path / f"r{i}",
                                                key_prefix)
                assert restored == await etcd_state(client, key_prefix, at.source_rev), (i, at.lsn)

            # Audit reads the etcd archive like any other: history and time travel per key.
            key = max(work.keys, key=lambda k: sum(op.key == k for c in commits for op in c.ops))
            async with aclosing(history(repo, key)) as changes:
                seen = [(change.lsn, change.value) async for change in changes]
            expected = [(c.lsn, op.value) for c in commits for op in c.ops if op.key == key]
            assert seen == expected
            middle = commits[len(commits) // 2]
            found = await value_at(repo, key, middle.ts_ns)
            assert middle.source_rev is not None
            truth = await client.get(key, revision=middle.source_rev)
            assert (found.value if found else None) == (truth.value if truth else None)


async def test_compaction_while_stopped_becomes_a_gap(etcd_server: EtcdCluster, key_prefix: bytes,
                                                      tmp_path: Path) -> None:
    rng = random.Random(7)
    spool, repo_dir = str(tmp_path / "spool"), str(tmp_path / "repo")
    async with EtcdClient(etcd_server.endpoints) as client:
        work = Workload(client, key_prefix, rng)
        await work.run(5)
        async with etcd_archiving(client, key_prefix, spool, repo_dir, options=FAST) as session:
            await work.run(10)
            await wait_until(lambda: session.follower.revision >= work.revisions[-1])
        before = await etcd_state(client, key_prefix)
        await work.run(10)
        compacted_at, resumed_at = work.revisions[-1], len(work.revisions)
        await client.compact(compacted_at)  # history the archiver has not seen is gone
        async with etcd_archiving(client, key_prefix, spool, repo_dir, options=FAST) as session:
            await wait_until(lambda: session.follower.resyncs == 1)
            resynced_at = session.follower.revision
            await work.run(8)
            await wait_until(lambda: session.follower.revision >= work.revisions[-1])
        assert resynced_at >= compacted_at

        async with open_repository(repo_dir) as repo:
            commits = await archived_commits(repo)
            timeline = build_timeline(repo.catalog, await repo.require_identity())
            assert len(timeline.windows) == 2
            first, second = timeline.windows
            gap_commit = next(c for c in commits if c.source_rev == resynced_at)
            assert first.end_lsn == gap_commit.lsn - 1
            assert second.start_lsn >= gap_commit.lsn
            assert [c.source_rev for c in commits if c.lsn > second.start_lsn] == work.revisions[resumed_at:]

            inside = (first.end_ns + second.start_ns) // 2
            assert first.end_ns < inside < second.start_ns
            with pytest.raises(OutsideWindow):
                await restore(repo, RestoreOptions(target=RestoreTarget(time_ns=inside), dest=str(tmp_path / "x")))
            assert not (tmp_path / "x").exists()
            assert await restored_state(repo, RestoreTarget(time_ns=first.end_ns), tmp_path / "a",
                                        key_prefix) == before
            for i, commit in enumerate(c for c in commits if c.lsn >= second.start_lsn):
                assert commit.source_rev is not None
                restored = await restored_state(repo, RestoreTarget(time_ns=commit.ts_ns), tmp_path / f"b{i}",
                                                key_prefix)
                assert restored == await etcd_state(client, key_prefix, commit.source_rev)


async def test_killing_members_while_archiving_loses_nothing(etcd_cluster: EtcdCluster, key_prefix: bytes,
                                                             tmp_path: Path) -> None:
    spool, repo_dir = str(tmp_path / "spool"), str(tmp_path / "repo")
    follow_options = FollowOptions(retry_initial=0.1, retry_max=0.5)
    async with EtcdClient(etcd_cluster.endpoints) as writer, \
            EtcdClient(etcd_cluster.endpoints, retry_timeout=0.5) as follower:

        async def write(rounds: range) -> None:
            for i in rounds:
                if i == 40:  # the member serving the archiver's watch dies
                    etcd_cluster.kill_member(etcd_cluster.endpoints.index(follower.endpoint))
                try:
                    await writer.put(key_prefix + b"k%d" % (i % 17), b"%d" % i)
                except EtcdUnavailable:  # cut off by the kill: it may or may not have been applied
                    pass

        for i in range(5):
            await writer.put(key_prefix + b"base%d" % i, b"x")
        async with etcd_archiving(follower, key_prefix, spool, repo_dir, options=FAST,
                                  follow_options=follow_options) as session:
            load_revision = session.follower.revision
            await write(range(100))
            # Then the whole cluster goes down for a while: the follower keeps retrying.
            for index in range(3):
                etcd_cluster.kill_member(index)
            await anyio.sleep(1.5)
            assert session.follower.outages >= 1
            for member in etcd_cluster.members:
                member.start(etcd_cluster.binary, etcd_cluster.initial_cluster, etcd_cluster.token)
            await anyio.to_thread.run_sync(etcd_cluster.wait_healthy)
            await write(range(100, 130))
            last = (await writer.get_range(key_prefix, limit=1)).revision
            await wait_until(lambda: session.follower.complete_revision >= last, seconds=20)
        # The truth: every revision under the prefix, read back from the cluster.
        truth = []
        async with writer.watch(key_prefix, load_revision + 1) as batches:
            with anyio.fail_after(10):
                async for batch in batches:
                    if not batch.is_progress:
                        truth.append(batch.revision)
                    if batch.revision >= last:
                        break
        async with open_repository(repo_dir) as repo:
            commits = await archived_commits(repo)
        assert [c.lsn for c in commits] == list(range(1, len(commits) + 1))
        assert [c.source_rev for c in commits[1:]] == truth
        assert len(truth) >= 120


async def test_spool_refuses_another_prefix_and_plain_stores(etcd_server: EtcdCluster, key_prefix: bytes,
                                                             tmp_path: Path) -> None:
    spool, repo_dir = str(tmp_path / "spool"), str(tmp_path / "repo")
    async with EtcdClient(etcd_server.endpoints) as client:
        await client.put(key_prefix + b"a", b"1")
        async with etcd_archiving(client, key_prefix, spool, repo_dir, follow=False) as session:
            assert await session.follower.catch_up()
        with pytest.raises(InvalidArgument, match="spool of etcd prefix"):
            async with etcd_archiving(client, key_prefix + b"other/", spool, repo_dir, follow=False):
                pass
        async with Store(str(tmp_path / "plain")) as store:
            await store.put(b"k", b"v")
        with pytest.raises(InvalidArgument, match="not an etcd spool"):
            async with etcd_archiving(client, key_prefix, str(tmp_path / "plain"), str(tmp_path / "r2"),
                                      follow=False):
                pass
        assert not (tmp_path / "r2").exists()  # refused before the repository was claimed


async def test_resume_finds_its_position_in_the_repository_once_the_wal_is_gone(
        etcd_server: EtcdCluster, key_prefix: bytes, tmp_path: Path) -> None:
    spool, repo_dir = tmp_path / "spool", str(tmp_path / "repo")
    async with EtcdClient(etcd_server.endpoints) as client:
        work = Workload(client, key_prefix, random.Random(11))
        async with etcd_archiving(client, key_prefix, str(spool), repo_dir, options=FAST) as session:
            await work.run(10)
            await wait_until(lambda: session.follower.revision >= work.revisions[-1])
        for wal in (spool / "wal").glob("*.wal"):  # applied and archived: as after the WAL rolled over
            wal.unlink()
        await work.run(10)
        async with etcd_archiving(client, key_prefix, str(spool), repo_dir, options=FAST) as session:
            await wait_until(lambda: session.follower.revision >= work.revisions[-1])
        async with open_repository(repo_dir) as repo:
            commits = await archived_commits(repo)
        assert [c.lsn for c in commits] == list(range(1, len(commits) + 1))
        assert [c.source_rev for c in commits[1:]] == work.revisions


async def test_leased_keys_expire_with_their_lease_and_snapshots_name_the_prefix(etcd_server: EtcdCluster, key_prefix: bytes,
                                                   tmp_path: Path) -> None:
    spool, repo_dir = str(tmp_path / "spool"), str(tmp_path / "repo")
    async with EtcdClient(etcd_server.endpoints) as client:
        lease = await client.grant_lease(60)
        await client.put(key_prefix + b"loaded", b"1", lease=lease.id)
        async with etcd_archiving(client, key_prefix, spool, repo_dir, options=FAST,
                                  snapshot_every=SnapshotSchedule(every_seconds=0.05)) as session:
            observed = session.store.now()
            revision = await client.put(key_prefix + b"watched", b"2", lease=lease.id)
            await wait_until(lambda: session.follower.revision >= revision)
            assert session.follower.leases.queries == 1  # one query per lease, then the cache
            catalog = session.archiver.progress[0].repo.catalog
            await wait_until(lambda: len(catalog.snapshots()) >= 2)  # the base, then a scheduled one
            assert all(s.metadata["etcd_prefix"] for s in catalog.snapshots())
        await client.revoke_lease(lease.id)
        async with open_repository(repo_dir) as repo:
            commits = await archived_commits(repo)
        expiries = [op.expires_at_ns for c in commits for op in c.ops]
        assert len(expiries) == 2
        for expires in expiries:
            assert expires is not None
            assert 59 <= (expires - observed) / 1e9 <= 62
