"""Undo on etcd: one guarded transaction, conflicts refusing the whole undo, leases written back."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import trio

from pitr.cli.main import main
from pitr.errors import UndoConflict
from pitr.repo.repository import open_repository
from pitr.sources.etcd import EtcdClient, etcd_archiving
from pitr.store.conditional import Expected, Mismatch
from pitr.timefmt import format_time
from pitr.undo import UndoOptions, apply_undo, plan_undo
from pitr.undo.etcd_target import EtcdTarget
from tests.etcd.test_archive import FAST, archived_commits, etcd_state, wait_until
from tests.servers.etcd import EtcdCluster

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def cli(argv: list[str]) -> tuple[int, str, str]:
    """`pitr ARGV` in this process (in a worker thread: it runs its own event loop)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(argv)
    assert isinstance(exc.value.code, int)
    return exc.value.code, out.getvalue(), err.getvalue()


class RacingTarget(EtcdTarget):
    """Another writer changes the first key between the undo's read and its transaction."""

    async def commit_if(self, writes: Sequence[tuple[bytes, Expected]],
                        guards: Mapping[bytes, Expected]) -> int | list[Mismatch]:
        await self.client.put(writes[0][0], b"racer")
        return await super().commit_if(writes, guards)


async def test_an_undo_on_etcd_reverts_in_one_transaction(etcd_server: EtcdCluster, key_prefix: bytes,
                                                          tmp_path: Path) -> None:
    repo_dir = str(tmp_path / "repo")
    a, b, c, t = (key_prefix + name for name in (b"a", b"b", b"c", b"t"))
    async with EtcdClient(etcd_server.endpoints) as client:
        lease = await client.grant_lease(600)
        async with etcd_archiving(client, key_prefix, str(tmp_path / "spool"), repo_dir, options=FAST) as session:
            await client.put(a, b"1")
            await client.put(b, b"1")
            first = await client.put(t, b"ttl", lease=lease.id)
            await wait_until(lambda: session.follower.revision >= first)
            await client.put(a, b"2")
            await client.put(c, b"new")
            last = await client.put(t, b"no lease")
            await wait_until(lambda: session.follower.revision >= last)
        async with open_repository(repo_dir) as repo:
            commits = await archived_commits(repo)
            t1 = next(x.ts_ns for x in commits if x.source_rev == first)
            t2 = next(x.ts_ns for x in commits if x.source_rev == last)
            plan = await plan_undo(repo, t1, t2)
        assert [r.key for r in plan.reversals] == [a, c, t]
        await client.put(c, b"edited later")  # a conflict
        before = await etcd_state(client, key_prefix)
        with pytest.raises(UndoConflict) as caught:
            await apply_undo(plan, EtcdTarget(client), UndoOptions())
        assert caught.value.keys == [c]
        assert await etcd_state(client, key_prefix) == before  # nothing written
        code, out, _err = await trio.to_thread.run_sync(cli, [
            "undo", "--from", format_time(t1), "--to", format_time(t2), "--repo", repo_dir, "--dry-run", "--json",
            "--etcd", "etcd://" + etcd_server.endpoints[0].removeprefix("http://") + key_prefix.decode()])
        assert code == 0
        assert [(x["key"], x["conflict"]) for x in json.loads(out)["changes"]] == \
            [(a.decode(), False), (c.decode(), True), (t.decode(), False)]
        with pytest.raises(UndoConflict) as caught:  # a writer between the read and the transaction
            await apply_undo(plan, RacingTarget(client), UndoOptions(force=True))
        assert caught.value.keys == [a]
        assert await etcd_state(client, key_prefix) == {**before, a: b"racer"}
        await client.put(a, b"2")
        result = await apply_undo(plan, EtcdTarget(client), UndoOptions(skip_conflicts=True))
        assert result.skipped == [c]
        assert await etcd_state(client, key_prefix) == {a: b"1", b: b"1", c: b"edited later", t: b"ttl"}
        restored = await client.get(t)
        assert restored is not None
        assert restored.lease != 0  # T1's value had an expiry: it is back on a lease
        assert restored.mod_revision == result.position
        assert (await client.get(a)).mod_revision == result.position  # type: ignore[union-attr]
        result = await apply_undo(plan, EtcdTarget(client), UndoOptions(force=True))
        assert result.overridden == [c]
        assert await etcd_state(client, key_prefix) == {a: b"1", b: b"1", t: b"ttl"}


async def test_a_prefix_restored_into_etcd_replaces_only_that_prefix(etcd_server: EtcdCluster, key_prefix: bytes,
                                                                      tmp_path: Path) -> None:
    from pitr.restore import KeySelection, RestoreTarget
    from pitr.sources.etcd import EtcdRestoreOptions, EtcdRestoreResult, restore_to_etcd

    repo_dir = str(tmp_path / "repo")
    config, other = key_prefix + b"config/", key_prefix + b"other/"
    async with EtcdClient(etcd_server.endpoints) as client:
        async with etcd_archiving(client, key_prefix, str(tmp_path / "spool"), repo_dir, options=FAST) as session:
            await client.put(config + b"a", b"1")
            await client.put(config + b"b", b"1")
            good = await client.put(other + b"x", b"1")
            await wait_until(lambda: session.follower.revision >= good)
            await client.delete(config + b"a")  # the accident
            await client.put(config + b"new", b"later")
            last = await client.put(other + b"x", b"2")
            await wait_until(lambda: session.follower.revision >= last)
        async with open_repository(repo_dir) as repo:
            t_good = next(x.ts_ns for x in await archived_commits(repo) if x.source_rev == good)
            options = EtcdRestoreOptions(target=RestoreTarget(time_ns=t_good), force=True,
                                         selection=KeySelection(prefixes=(config,)))
            result = await restore_to_etcd(repo, client, options)
        assert isinstance(result, EtcdRestoreResult)
        assert await etcd_state(client, key_prefix) == {config + b"a": b"1", config + b"b": b"1",
                                                        other + b"x": b"2"}  # other/ is left as it is
        assert (result.keys, result.written, result.deleted, result.unchanged) == (2, 1, 1, 1)
