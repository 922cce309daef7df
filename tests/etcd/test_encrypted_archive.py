"""`pitr archive --source etcd://... --encrypt` as a user runs it (issue 14 for an etcd source): one etcd
prefix archived through two spools into an encrypted and a plaintext repository; every byte of the
encrypted one and its catalog holds none of the keys and values written; restore (into etcd and into a
directory), audit and verify through the key answer what the plaintext repository answers and equal
etcd's own state; a missing, world-readable or wrong key, a plaintext repository under --encrypt and an
encrypted one beside another are each one clear error with nothing written."""

from __future__ import annotations

import base64
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
import trio

from pitr.catalog.keytable import key_digest
from pitr.crypto import create_key_file
from pitr.datadir.reader import StoreReader
from pitr.repo import layout
from pitr.sources.etcd import Delete, EtcdClient, Put
from tests.crypto.test_archive_encrypt import every_byte, published
from tests.etcd.test_archive import etcd_state
from tests.helpers.cli import run_cli
from tests.servers.etcd import EtcdCluster

pytestmark = pytest.mark.integration

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
ROUNDS = 3
PER_ROUND = 30


class Writer:
    """Random puts, deletes and multi-key transactions under a prefix, with keys and values no other byte
    sequence of a repository could hold by chance (16 random bytes of key, 200 of value)."""

    def __init__(self, endpoints: list[str], prefix: bytes, rng: random.Random) -> None:
        self.endpoints, self.prefix, self.rng = endpoints, prefix, rng
        self.secrets: list[bytes] = []  # every key suffix and value written
        self.keys: set[bytes] = set()

    def round(self, steps: int = PER_ROUND) -> None:
        async def main() -> None:
            async with EtcdClient(self.endpoints) as client:
                for i in range(steps):
                    if self.keys and i % 6 == 5:
                        gone = self.rng.choice(sorted(self.keys))
                        await client.delete(gone)
                        self.keys.discard(gone)
                        continue
                    ops: list[Put | Delete] = []
                    for _ in range(3 if i % 4 == 0 else 1):
                        suffix, value = self.rng.randbytes(16).hex().encode(), self.rng.randbytes(200)
                        ops.append(Put(self.prefix + suffix, value))
                        self.keys.add(self.prefix + suffix)
                        self.secrets.extend((suffix, value))
                    await client.put_many(ops)

        trio.run(main)

    def state(self, prefix: bytes | None = None) -> dict[bytes, bytes]:
        async def main() -> dict[bytes, bytes]:
            async with EtcdClient(self.endpoints) as client:
                return await etcd_state(client, self.prefix if prefix is None else prefix)

        return trio.run(main)


def etcd_url(server: EtcdCluster, prefix: bytes) -> str:
    return f"etcd://{server.endpoints[0].removeprefix('http://')}{prefix.decode()}"


def timeless(value: object) -> object:
    """A JSON answer with its commit and observation times blanked (two spools observe each revision at
    different moments; LSNs, keys, values and etcd revisions are the same)."""
    if isinstance(value, dict):
        return {k: "NS" if k.endswith("_ns") else timeless(v) for k, v in value.items()}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    if isinstance(value, str):
        return TIME.sub("TIME", value)
    return value


class Twins:
    """One etcd prefix archived round by round (one-shot runs) into an encrypted and a plaintext repository,
    each through its own spool."""

    def __init__(self, tmp_path: Path, server: EtcdCluster, prefix: bytes, rng: random.Random,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp, self.server, self.prefix, self.capsys = tmp_path, server, prefix, capsys
        self.key, self.sealed, self.plain = tmp_path / "key", tmp_path / "sealed", tmp_path / "plain"
        create_key_file(str(self.key))
        self.writer = Writer(server.endpoints, prefix, rng)
        self.source = etcd_url(server, prefix)
        for round_ in range(ROUNDS):
            self.writer.round()
            # --encrypt every time (always safe: an existing repository must open under the key); the
            # last round with --key-file alone, as the operations guide shows a later run
            first = ["--encrypt"] if round_ < ROUNDS - 1 else []
            out = json.loads(self.ok("archive", "--source", self.source, "--data", str(tmp_path / "spool-sealed"),
                                     "--repo", str(self.sealed), "--key-file", str(self.key), "--json", *first))
            self.ok("archive", "--source", self.source, "--data", str(tmp_path / "spool-plain"),
                    "--repo", str(self.plain), "--json")
            assert out["etcd"]["caught_up"] is True

    def ok(self, *argv: str) -> str:
        code, out, err = run_cli(self.capsys, *argv)
        assert code == 0, (argv, out, err)
        return out

    def both(self, *argv: str, codes: tuple[int, ...] = (0,)) -> tuple[Any, Any]:
        """The exit code and JSON answer of `pitr ARGV --json` on the encrypted repository (with the key) and
        on the plaintext one, without times."""
        answers: list[tuple[int, Any]] = []
        for repo, key in ((self.sealed, ["--key-file", str(self.key)]), (self.plain, [])):
            code, out, err = run_cli(self.capsys, *argv, "--json", "--repo", str(repo), *key)
            assert code in codes, (argv, out, err)
            lines = [json.loads(line) for line in out.replace(str(repo), "REPO").splitlines()]  # (log: JSON lines)
            answers.append((code, timeless(lines[0] if len(lines) == 1 else lines)))
        return answers[0], answers[1]


@pytest.fixture
def twins(tmp_path: Path, etcd_server: EtcdCluster, key_prefix: bytes, random_seed: int,
          capsys: pytest.CaptureFixture[str]) -> Twins:
    return Twins(tmp_path, etcd_server, key_prefix, random.Random(random_seed), capsys)


def test_the_encrypted_etcd_archive_and_its_catalog_hold_no_key_or_value(twins: Twins) -> None:
    everything = every_byte(twins.sealed)  # segments, the base snapshot, identity, watermarks, the catalog
    assert (twins.sealed / layout.LOCAL_CATALOG_DIR).is_dir()
    assert list((twins.sealed / "snapshots").iterdir())  # the base load's snapshot, sealed
    secrets = twins.writer.secrets
    found = [s for s in secrets if s in everything]
    assert not found, f"{len(found)} of {len(secrets)} key suffixes and values written are in the encrypted repository"
    digests = [key_digest(twins.prefix + suffix) for suffix in secrets[::2]]
    assert not [d for d in digests if d in everything], "the catalog indexes keys by unkeyed digests"
    ident = json.loads(twins.ok("key", "list", "--repo", str(twins.sealed), "--json"))
    assert ident  # the key ids that open it, shown without the key
    # the scan finds what it looks for: the plaintext twin's files hold the values, its catalog the digests
    plain = every_byte(twins.plain)
    assert sum(v in plain for v in secrets[1::2]) >= 0.9 * len(secrets) / 2
    assert sum(d in plain for d in digests) >= 0.9 * len(digests)


def test_restore_audit_and_verify_through_the_key_equal_the_plaintext_and_etcd(twins: Twins) -> None:
    source = twins.writer.state()
    assert source
    # restore into etcd, under another prefix, from the encrypted repository
    copy = twins.prefix + b"copy/"
    out = json.loads(twins.ok("restore", "--latest", "--dest", etcd_url(twins.server, copy), "--repo",
                              str(twins.sealed), "--key-file", str(twins.key), "--json"))
    assert out["keys"] == len(source)
    assert twins.writer.state(copy) == {copy + k[len(twins.prefix):]: v for k, v in source.items()}
    # into a directory: the latest state, and an earlier LSN equal to the plaintext twin's
    for target in (["--latest"], ["--lsn", "20"]):
        states = []
        for repo, key_args in ((twins.sealed, ["--key-file", str(twins.key)]), (twins.plain, [])):
            dest = twins.tmp / f"restored-{repo.name}-{target[-1]}"
            twins.ok("restore", *target, "--dest", str(dest), "--repo", str(repo), "--json", *key_args)
            with StoreReader(str(dest)) as reader:
                states.append({k: v for k, v, _ in reader.scan(b"", 2**62)})
        assert states[0] == states[1]
        assert states[0]
        if target == ["--latest"]:
            assert states[0] == source
    # audit: the same answers, times aside
    for argv in (["log", "--since-lsn", "1"], ["diff", "@3", "@25"], ["diff", "@10", "@60"]):
        sealed, plain = twins.both(*argv)
        assert sealed == plain, argv
        assert sealed[1], argv  # an answer, not an empty one
    live = sorted(source)[:3]
    for key in [*live, twins.prefix + twins.writer.secrets[0]]:  # and the first key written (maybe deleted
        b64 = base64.b64encode(key).decode()                      # before the base load: no history in either)
        sealed, plain = twins.both("history", b64, "--b64", "--values", codes=(0,) if key in live else (0, 1))
        assert sealed == plain
        if key in live:
            assert "lsn" in json.dumps(sealed)  # the key's versions, not an empty history
        for at in ("@5", "@40", "@61"):
            sealed, plain = twins.both("get", b64, "--b64", "--at", at, codes=(0, 1))
            assert sealed == plain
    # verify with the key: everything checked, nothing found; the windows those of the plaintext twin
    (_, sealed_report), (_, plain_report) = twins.both("verify")
    assert isinstance(sealed_report, list)
    assert isinstance(plain_report, list)
    assert sealed_report[0]["findings"] == plain_report[0]["findings"] == []
    assert [(w["start_lsn"], w["end_lsn"]) for w in sealed_report[0]["windows"]] == \
        [(w["start_lsn"], w["end_lsn"]) for w in plain_report[0]["windows"]]
    assert sealed_report[0]["windows"]
    # keyless: verify --quick checks structure and chain without the key and says what it could not
    quick = json.loads(twins.ok("verify", "--quick", "--repo", str(twins.sealed), "--json"))[0]
    assert quick["findings"] == []
    assert quick["keyless"] is True


@pytest.mark.parametrize("argv", [
    ["history", "L2tleQ==", "--b64"],
    ["get", "L2tleQ==", "--b64", "--at", "@5"],
    ["diff", "@3", "@25"],
    ["verify"],
    ["restore", "--latest", "--dest", "DIR"],
    ["restore", "--latest", "--dest", "ETCD"],
])
def test_every_reader_of_the_encrypted_etcd_archive_without_the_key_is_refused_naming_it(
        twins: Twins, argv: list[str]) -> None:
    dest_prefix = twins.prefix + b"never/"
    argv = [{"DIR": str(twins.tmp / "never"), "ETCD": etcd_url(twins.server, dest_prefix)}.get(a, a) for a in argv]
    code, out, err = run_cli(twins.capsys, *argv, "--repo", str(twins.sealed), "--json")
    assert code != 0, out
    doc = json.loads(err)
    assert doc["error"] == "wrong_key", doc
    assert str(twins.sealed) in doc["message"]
    assert "is encrypted" in doc["message"]
    assert "--key-file" in doc["hint"]
    assert not (twins.tmp / "never").exists()
    assert twins.writer.state(dest_prefix) == {}


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], error: str, words: str) -> dict[str, str]:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code != 0, out
    doc = json.loads(err)
    assert doc["error"] == error, doc
    assert words in doc["message"], doc
    return dict(doc)


def test_a_missing_unsafe_or_wrong_key_is_refused_before_anything_is_written(
        tmp_path: Path, etcd_server: EtcdCluster, key_prefix: bytes, random_seed: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    writer = Writer(etcd_server.endpoints, key_prefix, random.Random(random_seed))
    writer.round(5)
    new, spool, key, other = tmp_path / "new", tmp_path / "spool", tmp_path / "key", tmp_path / "other"
    create_key_file(str(key))
    create_key_file(str(other))
    archive = ["archive", "--source", etcd_url(etcd_server, key_prefix), "--data", str(spool), "--encrypt"]
    _refused(capsys, [*archive, "--repo", str(new)], "invalid_argument", "--encrypt needs the key")
    _refused(capsys, [*archive, "--repo", str(new), "--key-file", str(tmp_path / "absent")], "wrong_key",
             "does not exist")
    key.chmod(0o644)
    _refused(capsys, [*archive, "--repo", str(new), "--key-file", str(key)], "wrong_key",
             "readable or writable by group or others")
    key.chmod(0o600)
    assert not new.exists()  # not even the directory: the key is checked before a repository is opened
    assert not spool.exists()  # nor the spool
    second = tmp_path / "second"
    _refused(capsys, [*archive, "--repo", str(new), "--repo", str(second), "--key-file", str(key)],
             "invalid_argument", "alone")
    assert published(new) == published(second) == {}
    assert not spool.exists()

    code, _, err = run_cli(capsys, *archive, "--repo", str(new), "--key-file", str(key))
    assert code == 0, err
    assert f"{new}: created encrypted (AES-256-GCM), opened by key id" in err  # the operator sees it was
    writer.round(5)  # something new to archive, that none of the refused runs below may ship
    before = published(new)
    _refused(capsys, [*archive, "--repo", str(new), "--key-file", str(other)], "wrong_key", "is not one of the keys")
    no_key = ["archive", "--source", etcd_url(etcd_server, key_prefix), "--data", str(spool), "--repo", str(new)]
    _refused(capsys, no_key, "wrong_key", "is encrypted")
    plain, plain_spool = tmp_path / "plain", tmp_path / "plain-spool"
    assert run_cli(capsys, "archive", "--source", etcd_url(etcd_server, key_prefix), "--data", str(plain_spool),
                   "--repo", str(plain))[0] == 0
    plain_before = published(plain)
    _refused(capsys, ["archive", "--source", etcd_url(etcd_server, key_prefix), "--data", str(plain_spool),
                      "--repo", str(plain), "--encrypt", "--key-file", str(key)], "wrong_key", "is not encrypted")
    assert published(plain) == plain_before  # a plaintext repository never becomes half encrypted
    assert published(new) == before
    # restores with the wrong key: nothing written into etcd or a directory
    dest = key_prefix + b"restored/"
    for target in (etcd_url(etcd_server, dest), str(tmp_path / "restored")):
        _refused(capsys, ["restore", "--latest", "--dest", target, "--repo", str(new), "--key-file", str(other)],
                 "wrong_key", "is not one of the keys")
    assert writer.state(dest) == {}
    assert not (tmp_path / "restored").exists()
    # and the right key ships what the refused runs left: the archive holds etcd's state
    assert run_cli(capsys, *no_key, "--key-file", str(key))[0] == 0
    code, out, err = run_cli(capsys, "restore", "--latest", "--dest", str(tmp_path / "restored"), "--repo",
                             str(new), "--key-file", str(key), "--json")
    assert code == 0, err
    with StoreReader(str(tmp_path / "restored")) as reader:
        assert {k: v for k, v, _ in reader.scan(b"", 2**62)} == writer.state()
