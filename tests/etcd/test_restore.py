"""Restoring into etcd: the state at a moment written under a prefix in transactions, refusing a
non-empty prefix without force, leases for keys with a TTL, the etcd:// URL, and the command line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import trio

from pitr.archiver import ArchiveOptions
from pitr.archiving import archiving
from pitr.cli.main import main
from pitr.errors import DestinationExists, InvalidArgument
from pitr.repo.repository import open_repository
from pitr.restore import RestorePlan, RestoreTarget
from pitr.sources.etcd import (
    EtcdClient,
    EtcdRestoreOptions,
    EtcdRestoreResult,
    Put,
    etcd_archiving,
    is_etcd_url,
    parse_etcd_url,
    restore_to_etcd,
)
from pitr.store import Store
from tests.etcd.test_archive import FAST, Workload, archived_commits, etcd_state, wait_until
from tests.servers.etcd import EtcdCluster

integration = pytest.mark.integration


def moved(state: dict[bytes, bytes], source: bytes, dest: bytes) -> dict[bytes, bytes]:
    return {dest + key[len(source):]: value for key, value in state.items()}


# -- without a server ----------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "endpoints", "prefix"), [
    ("etcd://127.0.0.1:2379", ("http://127.0.0.1:2379",), b""),
    ("etcd://a:1,b:2/registry/", ("http://a:1", "http://b:2"), b"/registry/"),
    ("etcd://h:1/with%20space", ("http://h:1",), b"/with space"),
    ("etcds://h:1?prefix=app/", ("https://h:1",), b"app/"),
])
def test_etcd_urls_parse(url: str, endpoints: tuple[str, ...], prefix: bytes) -> None:
    location = parse_etcd_url(url)
    assert (location.endpoints, location.prefix) == (endpoints, prefix)
    assert location.prefix_given == (url != "etcd://127.0.0.1:2379")
    assert is_etcd_url(url)


@pytest.mark.parametrize("url", ["etcd://", "etcd://host/p", "http://h:1/p", "etcd://h:1/p?prefix=q",
                                 "etcd://h:1/p#frag", "etcd://user@h:1", "etcd://h:1?limit=3"])
def test_bad_etcd_urls_are_rejected(url: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_etcd_url(url)


# -- against etcd --------------------------------------------------------------------------------


@integration
@pytest.mark.anyio
async def test_restore_into_etcd_with_and_without_force(etcd_server: EtcdCluster, key_prefix: bytes,
                                                        tmp_path: Path) -> None:
    repo_dir = str(tmp_path / "repo")
    dest = key_prefix + b"restored/"
    source = key_prefix + b"src/"
    async with EtcdClient(etcd_server.endpoints) as client:
        for start in range(0, 300, 100):  # more keys than one transaction may hold
            await client.put_many([Put(source + b"bulk%03d" % i, b"x" * i) for i in range(start, start + 100)])
        work = Workload(client, source, random.Random(3))
        async with etcd_archiving(client, source, str(tmp_path / "spool"), repo_dir, options=FAST) as session:
            await work.run(30)
            await wait_until(lambda: session.follower.revision >= work.revisions[-1])
        async with open_repository(repo_dir) as repo:
            commits = await archived_commits(repo)
            early, late = commits[5], commits[-1]
            assert early.source_rev is not None
            assert late.source_rev is not None

            options = EtcdRestoreOptions(target=RestoreTarget(time_ns=early.ts_ns), prefix=dest)
            result = await restore_to_etcd(repo, client, options)
            assert isinstance(result, EtcdRestoreResult)
            assert result.source_revision == early.source_rev
            assert result.transactions >= 3
            assert result.deleted == 0
            assert result.last_revision is not None
            assert result.first_revision is not None
            assert result.last_revision - result.first_revision == result.transactions - 1
            expected_early = moved(await etcd_state(client, source, early.source_rev), source, dest)
            assert await etcd_state(client, dest) == expected_early
            assert result.written == result.keys == len(expected_early)

            later = EtcdRestoreOptions(target=RestoreTarget(time_ns=late.ts_ns), prefix=dest)
            with pytest.raises(DestinationExists):
                await restore_to_etcd(repo, client, later)
            assert await etcd_state(client, dest) == expected_early
            plan = await restore_to_etcd(repo, client, EtcdRestoreOptions(
                target=RestoreTarget(latest=True), prefix=dest, dry_run=True))
            assert isinstance(plan, RestorePlan)

            forced = EtcdRestoreOptions(target=RestoreTarget(time_ns=late.ts_ns), prefix=dest, force=True)
            result = await restore_to_etcd(repo, client, forced)
            assert isinstance(result, EtcdRestoreResult)
            expected_late = moved(await etcd_state(client, source, late.source_rev), source, dest)
            assert await etcd_state(client, dest) == expected_late
            assert result.deleted == len(expected_early.keys() - expected_late.keys()) > 0
            assert result.unchanged == sum(expected_early.get(k) == v for k, v in expected_late.items()) > 0
            assert result.written + result.unchanged == len(expected_late)


@integration
@pytest.mark.anyio
async def test_keys_with_a_ttl_get_a_lease_of_their_remaining_time(etcd_server: EtcdCluster, key_prefix: bytes,
                                                                   tmp_path: Path) -> None:
    repo_dir, source, dest = str(tmp_path / "repo"), key_prefix + b"src/", key_prefix + b"dst/"
    async with EtcdClient(etcd_server.endpoints) as client:
        lease = await client.grant_lease(120)
        await client.put(source + b"session", b"s", lease=lease.id)
        await client.put(source + b"plain", b"p")
        async with etcd_archiving(client, source, str(tmp_path / "spool"), repo_dir, options=FAST):
            pass
        await client.revoke_lease(lease.id)
        async with open_repository(repo_dir) as repo:
            [load] = await archived_commits(repo)
            result = await restore_to_etcd(repo, client, EtcdRestoreOptions(
                target=RestoreTarget(time_ns=load.ts_ns), prefix=dest))
        assert isinstance(result, EtcdRestoreResult)
        assert result.leases == 1
        restored = await client.get(dest + b"session")
        assert restored is not None
        assert restored.lease != 0
        ttl = await client.lease_ttl(restored.lease)
        assert 115 <= ttl.ttl <= 121
        plain = await client.get(dest + b"plain")
        assert plain is not None
        assert plain.lease == 0


@integration
@pytest.mark.anyio
async def test_an_embedded_store_restores_under_the_given_prefix(etcd_server: EtcdCluster, key_prefix: bytes,
                                                                 tmp_path: Path) -> None:
    repo_dir = str(tmp_path / "repo")
    async with Store(str(tmp_path / "data")) as store:
        async with archiving(store, repo_dir, options=ArchiveOptions(interval=0.05)):
            await store.put(b"a", b"1")
            await store.put(b"b/c", b"2")
    async with EtcdClient(etcd_server.endpoints) as client, open_repository(repo_dir) as repo:
        with pytest.raises(InvalidArgument, match="embedded store"):
            await restore_to_etcd(repo, client, EtcdRestoreOptions(target=RestoreTarget(latest=True)))
        await restore_to_etcd(repo, client, EtcdRestoreOptions(target=RestoreTarget(latest=True),
                                                               prefix=key_prefix))
        assert await etcd_state(client, key_prefix) == {key_prefix + b"a": b"1", key_prefix + b"b/c": b"2"}


@integration
def test_command_line_archives_and_restores_etcd(etcd_server: EtcdCluster, key_prefix: bytes, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exc:
            main(list(argv))
        out, err = capsys.readouterr()
        assert isinstance(exc.value.code, int)
        return exc.value.code, out, err

    async def write(*pairs: tuple[bytes, bytes]) -> None:
        async with EtcdClient(etcd_server.endpoints) as client:
            for key, value in pairs:
                await client.put(key_prefix + key, value)

    async def read(prefix: bytes) -> dict[bytes, bytes]:
        async with EtcdClient(etcd_server.endpoints) as client:
            return await etcd_state(client, prefix)

    host = etcd_server.endpoints[0].removeprefix("http://")
    source, repo = f"etcd://{host}{key_prefix.decode()}", str(tmp_path / "repo")
    archive = ("archive", "--source", source, "--repo", repo, "--data", str(tmp_path / "spool"), "--json")
    trio.run(write, (b"a", b"1"), (b"b", b"2"))
    code, out, err = run(*archive)
    assert code == 0, err
    assert json.loads(out)["etcd"]["caught_up"] is True
    trio.run(write, (b"a", b"3"))
    code, out, err = run(*archive)
    assert code == 0, err
    assert json.loads(out)["etcd"]["commits"] == 1
    code, out, _ = run("timeline", "--repo", repo, "--json")
    assert len(json.loads(out)[0]["windows"]) == 1

    dest = f"etcd://{host}{key_prefix.decode()}copy/"
    code, out, err = run("restore", "--latest", "--dest", dest, "--repo", repo, "--json")
    assert code == 0, err
    assert json.loads(out)["keys"] == 2
    latest_time = json.loads(out)["commit_time"]
    assert trio.run(read, key_prefix + b"copy/") == {key_prefix + b"copy/a": b"3", key_prefix + b"copy/b": b"2"}
    code, _, err = run("restore", "--latest", "--dest", dest, "--repo", repo)
    assert code == 1
    assert "--force" in err
    code, out, err = run("restore", "--latest", "--dest", dest, "--repo", repo, "--force", "--dry-run")
    assert code == 0
    assert "nothing was restored" in out
    code, out, err = run("restore", "--latest", "--dest", dest, "--repo", repo, "--force")
    assert code == 0, err
    assert "2 unchanged" in out
    code, out, err = run("get", (key_prefix + b"a").decode(), "--repo", repo, "--at", latest_time, "--json")
    assert code == 0, err
    assert json.loads(out)["value"] == "3"

