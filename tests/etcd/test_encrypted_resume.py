"""An encrypted etcd archive through the library (`etcd_archiving(key_file=...)`) across restarts: a spool
whose WAL is gone finds its resume revision in the repository's sealed segments, and a compaction while
stopped resyncs with a sealed snapshot; every revision is archived once, in order, and a restore at each
commit after the gap equals etcd's own state at that commit's revision."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pitr.crypto import create_key_file
from pitr.crypto.keys import read_key_file
from pitr.errors import WrongKey
from pitr.repo.keyring import unlock
from pitr.repo.repository import open_repository
from pitr.restore import RestoreTarget
from pitr.sources.etcd import EtcdClient, etcd_archiving, source_revision_at
from pitr.timeline import build_timeline
from tests.etcd.test_archive import FAST, Workload, archived_commits, etcd_state, restored_state, wait_until
from tests.servers.etcd import EtcdCluster

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_an_encrypted_archive_resumes_from_sealed_segments_and_resyncs_after_compaction(
        etcd_server: EtcdCluster, key_prefix: bytes, tmp_path: Path, random_seed: int) -> None:
    spool, repo_dir, key = tmp_path / "spool", str(tmp_path / "repo"), str(tmp_path / "key")
    create_key_file(key)
    async with EtcdClient(etcd_server.endpoints) as client:
        work = Workload(client, key_prefix, random.Random(random_seed))
        await work.run(5)
        loaded = len(work.revisions)  # (a step may write outside the prefix)
        async with etcd_archiving(client, key_prefix, str(spool), repo_dir, options=FAST, key_file=key) as session:
            await work.run(10)
            await wait_until(lambda: session.follower.revision >= work.revisions[-1])
        for wal in (spool / "wal").glob("*.wal"):  # applied and archived: as after the WAL rolled over
            wal.unlink()
        await work.run(10)
        async with etcd_archiving(client, key_prefix, str(spool), repo_dir, options=FAST, key_file=key) as session:
            await wait_until(lambda: session.follower.revision >= work.revisions[-1])
        with pytest.raises(WrongKey, match="is encrypted"):  # and without the key: refused
            async with etcd_archiving(client, key_prefix, str(spool), repo_dir, options=FAST):
                pass
        seen = len(work.revisions)
        await work.run(10)
        compacted_at = work.revisions[-1]
        await client.compact(compacted_at)  # history the archiver has not seen is gone
        async with etcd_archiving(client, key_prefix, str(spool), repo_dir, options=FAST, key_file=key) as session:
            await wait_until(lambda: session.follower.resyncs == 1)
            resynced_at = session.follower.revision
            resumed_at = len(work.revisions)
            await work.run(8)
            await wait_until(lambda: session.follower.revision >= work.revisions[-1])
        assert resynced_at >= compacted_at

        async with open_repository(repo_dir) as repo:
            assert (await repo.require_identity()).encryption is not None
            await unlock(repo, read_key_file(key))
            commits = await archived_commits(repo)
            assert [c.lsn for c in commits] == list(range(1, len(commits) + 1))
            resumed = commits[1:1 + seen - loaded]
            assert [c.source_rev for c in resumed] == work.revisions[loaded:seen]  # resumed, none skipped
            assert await source_revision_at(repo, commits[-1].lsn) == work.revisions[-1]
            assert len(repo.catalog.snapshots()) == 2  # the base load's and the resync's, both sealed
            timeline = build_timeline(repo.catalog, await repo.require_identity())
            assert len(timeline.windows) == 2
            second = timeline.windows[1]
            after = [c for c in commits if c.lsn >= second.start_lsn]
            assert [c.source_rev for c in after if c.source_rev != resynced_at] == work.revisions[resumed_at:]
            for i, commit in enumerate(after):
                assert commit.source_rev is not None
                restored = await restored_state(repo, RestoreTarget(time_ns=commit.ts_ns), tmp_path / f"r{i}",
                                                key_prefix)
                assert restored == await etcd_state(client, key_prefix, commit.source_rev)
