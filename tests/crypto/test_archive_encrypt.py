"""`pitr archive --encrypt` as a user runs it (issue 14's tests): one store archived into an encrypted
and a plaintext repository; every byte of the encrypted one and its catalog holds none of the keys
and values written (nor the catalog's unkeyed digests of the keys); restore, audit (history, get --at,
diff, log) and verify through the key answer exactly what the plaintext repository answers. A
missing, world-readable or wrong key, and a truncated wrapped key, are each one clear error with
nothing written."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest
import trio

from pitr.catalog.keytable import key_digest
from pitr.crypto import create_key_file
from pitr.datadir.reader import StoreReader
from pitr.repo import layout
from pitr.repo.documents import decode_document, encode_document
from pitr.store import Store
from tests.helpers.cli import run_cli

ROUNDS = 3
PER_ROUND = 60


def every_byte(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def published(root: Path) -> dict[str, bytes]:
    """The repository's files (not its local catalog and work directories, .catalog and .work)."""
    files = sorted(root.rglob("*")) if root.exists() else []
    return {str(p.relative_to(root)): p.read_bytes() for p in files
            if p.is_file() and not str(p.relative_to(root)).startswith(".")}


def write_round(data: Path, rng: random.Random, model: dict[bytes, bytes], secrets: list[bytes]) -> None:
    async def main() -> None:
        async with Store(str(data)) as store:
            for i in range(PER_ROUND):
                if model and i % 7 == 3:
                    gone = rng.choice(sorted(model))
                    await store.delete(gone)
                    del model[gone]
                    continue
                k, v = b"K" + rng.randbytes(15), b"V" + rng.randbytes(300)
                await store.put(k, v)
                model[k] = v
                secrets.extend((k, v))

    trio.run(main)


class Twins:
    """One store archived, snapshotted and archived again into an encrypted and a plaintext repository."""

    def __init__(self, tmp_path: Path, rng: random.Random, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp, self.capsys = tmp_path, capsys
        self.data, self.key = tmp_path / "data", tmp_path / "key"
        self.sealed, self.plain = tmp_path / "sealed", tmp_path / "plain"
        create_key_file(str(self.key))
        self.model: dict[bytes, bytes] = {}
        self.secrets: list[bytes] = []
        for round_ in range(ROUNDS):
            write_round(self.data, rng, self.model, self.secrets)
            first = ["--encrypt"] if round_ == 0 else []
            self.ok("archive", "--data", str(self.data), "--repo", str(self.sealed), "--key-file", str(self.key),
                    *first)
            self.ok("archive", "--data", str(self.data), "--repo", str(self.plain))
            if round_ == 1:
                self.ok("snapshot", "--data", str(self.data), "--repo", str(self.sealed), "--key-file", str(self.key))
                self.ok("snapshot", "--data", str(self.data), "--repo", str(self.plain))

    def ok(self, *argv: str) -> str:
        code, out, err = run_cli(self.capsys, *argv)
        assert code == 0, (argv, out, err)
        return out

    def both(self, *argv: str, codes: tuple[int, ...] = (0,)) -> tuple[str, str]:
        """The exit code and output of `pitr ARGV` on the encrypted repository (with the key) and on the
        plaintext one, each repository's path replaced by REPO (a `codes` other than 0 allowed: the same)."""
        outs = []
        for repo, key in ((self.sealed, ["--key-file", str(self.key)]), (self.plain, [])):
            code, out, err = run_cli(self.capsys, *argv, "--repo", str(repo), *key)
            assert code in codes, (argv, out, err)
            outs.append(f"exit {code}\n" + out.replace(str(repo), "REPO"))
        return outs[0], outs[1]


@pytest.fixture
def twins(tmp_path: Path, random_seed: int, capsys: pytest.CaptureFixture[str]) -> Twins:
    return Twins(tmp_path, random.Random(random_seed), capsys)


def test_the_encrypted_repository_and_its_catalog_hold_no_key_value_or_key_digest(twins: Twins) -> None:
    everything = every_byte(twins.sealed)  # segments, snapshot, identity, watermark, the catalog
    assert (twins.sealed / layout.LOCAL_CATALOG_DIR).is_dir()
    assert list((twins.sealed / "snapshots").iterdir())
    found = [s for s in twins.secrets if s in everything]
    assert not found, f"{len(found)} of {len(twins.secrets)} keys and values written are in the encrypted repository"
    digests = [key_digest(k) for k in twins.secrets[::2]]
    assert not [d for d in digests if d in everything], "the catalog indexes keys by unkeyed digests"
    # the scan finds what it looks for: the plaintext twin's catalog holds the unkeyed digests, its files the values
    plain = every_byte(twins.plain)
    assert sum(d in plain for d in digests) >= 0.9 * len(digests)
    assert sum(v in plain for v in twins.secrets[1::2]) >= 0.9 * len(twins.secrets) / 2


def test_restore_audit_and_verify_through_the_key_equal_the_plaintext(twins: Twins) -> None:
    for argv in (["log", "--since-lsn", "1", "--json"], ["diff", "@5", "@150", "--json"],
                 ["diff", "@60", "@180", "--json"]):
        sealed, plain = twins.both(*argv)
        assert sealed == plain, argv
        assert sealed.startswith("exit 0\n{"), argv  # an answer, not an empty one
    # (archived moments apart: their complete-through times differ; and sealed pieces chain keyed digests)
    timelines = [json.loads(out.split("\n", 1)[1])[0] for out in twins.both("timeline", "--json")]
    assert [[(w["start_lsn"], w["start_ns"], w["end_lsn"]) for w in t["windows"]] for t in timelines] == \
        [[(0, timelines[1]["windows"][0]["start_ns"], ROUNDS * PER_ROUND)]] * 2
    assert timelines[0]["bases"] == timelines[1]["bases"]
    backups = [[{f: b[f] for f in ("name", "lsn", "entry_count", "logical_bytes", "state_digest")
                 if f in b} for b in json.loads(out.split("\n", 1)[1])] for out in twins.both("backups", "list", "--json")]
    assert backups[0] == backups[1]
    assert backups[0]
    some = sorted(twins.model)[:3] + [twins.secrets[0]]  # live keys, and the first key written
    for key in some:
        b64 = base64.b64encode(key).decode()
        sealed, plain = twins.both("history", b64, "--b64", "--values", "--json")
        assert sealed == plain
        assert '"lsn"' in sealed  # the key's versions, not an empty history
        for at in ("@30", "@100", f"@{ROUNDS * PER_ROUND}"):
            sealed, plain = twins.both("get", b64, "--b64", "--at", at, "--json", codes=(0, 1))
            assert sealed == plain
    sealed_verify, plain_verify = (json.loads(out.split("\n", 1)[1])[0] for out in twins.both("verify", "--json"))
    assert [(w["start_lsn"], w["end_lsn"]) for w in sealed_verify["windows"]] == \
        [(w["start_lsn"], w["end_lsn"]) for w in plain_verify["windows"]] == [(0, ROUNDS * PER_ROUND)]
    assert sealed_verify["findings"] == plain_verify["findings"] == []
    assert sealed_verify["files_checked"] == plain_verify["files_checked"]
    states = []
    for repo, key in ((twins.sealed, ["--key-file", str(twins.key)]), (twins.plain, [])):
        dest = twins.tmp / f"restored-{repo.name}"
        out = json.loads(twins.ok("restore", "--repo", str(repo), "--latest", "--dest", str(dest), "--json", *key))
        assert out["base"] is not None  # through the (sealed) snapshot
        with StoreReader(str(dest)) as reader:
            states.append(({k: v for k, v, _ in reader.scan(b"", 2**62)}, out["state_digest"], out["base"]))
    assert states[0] == states[1]
    assert states[0][0] == twins.model


def test_copy_and_repair_of_an_encrypted_repository_take_its_key(twins: Twins) -> None:
    copy, key, rotated = twins.tmp / "copy", str(twins.key), str(twins.tmp / "rotated")
    create_key_file(rotated)
    twins.ok("key", "rotate", "--repo", str(twins.sealed), "--key-file", key, "--new-key-file", rotated)
    _refused(twins.capsys, ["copy", "--from", str(twins.sealed), "--to", str(copy)], "wrong_key", "is encrypted")
    out = json.loads(twins.ok("copy", "--from", str(twins.sealed), "--to", str(copy), "--key-file", key, "--json"))
    assert out["ok"]
    assert out["copied"]
    assert len(list((copy / "keys").iterdir())) == 1  # the rotated key opens the copy too
    twins.ok("verify", "--quick", "--repo", str(copy), "--key-file", rotated)
    assert not [s for s in twins.secrets if s in every_byte(copy)]
    victim = max((copy / "segments").iterdir(), key=lambda p: p.stat().st_size)
    victim.chmod(0o600)
    victim.write_bytes(victim.read_bytes()[:-100])
    out = json.loads(twins.ok("repair", str(copy), "--from", str(twins.sealed), "--key-file", key, "--json"))
    assert out["ok"]
    assert out["replaced"] == [victim.name]
    report = json.loads(twins.ok("verify", "--repo", str(copy), "--key-file", key, "--json"))[0]
    assert report["findings"] == []
    assert [(w["start_lsn"], w["end_lsn"]) for w in report["windows"]] == [(0, ROUNDS * PER_ROUND)]


def test_repair_publishes_the_key_wraps_the_healthy_repository_gained_since_the_copy(twins: Twins) -> None:
    """A key rotated in after the copy was made: the repair brings its wrap, so the repaired copy opens under
    the new key as its source does (and a second repair publishes nothing, replaces nothing)."""
    copy, key, rotated = twins.tmp / "copy", str(twins.key), str(twins.tmp / "rotated")
    create_key_file(rotated)
    twins.ok("copy", "--from", str(twins.sealed), "--to", str(copy), "--key-file", key)
    twins.ok("key", "rotate", "--repo", str(twins.sealed), "--key-file", key, "--new-key-file", rotated)
    wrap = [p.name for p in (twins.sealed / "keys").iterdir()]
    assert len(wrap) == 1
    assert not (copy / "keys").exists() or not list((copy / "keys").iterdir())
    _refused(twins.capsys, ["verify", "--repo", str(copy), "--key-file", rotated], "wrong_key", "")
    victim = max((copy / "segments").iterdir(), key=lambda p: p.stat().st_size)
    victim.chmod(0o600)
    victim.write_bytes(victim.read_bytes()[:-100])
    out = json.loads(twins.ok("repair", str(copy), "--from", str(twins.sealed), "--key-file", key, "--json"))
    assert out["ok"]
    assert out["replaced"] == [victim.name]
    assert out["keys_copied"] == [f"keys/{wrap[0]}"]
    assert (copy / "keys" / wrap[0]).read_bytes() == (twins.sealed / "keys" / wrap[0]).read_bytes()
    report = json.loads(twins.ok("verify", "--repo", str(copy), "--key-file", rotated, "--json"))[0]
    assert report["findings"] == []
    again = json.loads(twins.ok("repair", str(copy), "--from", str(twins.sealed), "--key-file", rotated, "--json"))
    assert again["keys_copied"] == []
    assert again["replaced"] == []


def test_a_snapshot_is_taken_into_one_encrypted_repository_at_a_time(
        tmp_path: Path, random_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Each encrypted repository has its own data key, and one snapshot file is published to every
    repository of the command: refused with the command that works, no snapshot anywhere."""
    data, key, one, two = tmp_path / "data", tmp_path / "key", tmp_path / "one", tmp_path / "two"
    write_round(data, random.Random(random_seed), {}, [])
    create_key_file(str(key))
    both = ["--repo", str(one), "--repo", str(two), "--key-file", str(key)]
    assert run_cli(capsys, "archive", "--data", str(data), *both, "--encrypt")[0] == 0
    _refused(capsys, ["snapshot", "--data", str(data), *both], "invalid_argument", "takes its snapshots alone")
    assert not (one / "snapshots").exists()
    assert not (two / "snapshots").exists()
    assert run_cli(capsys, "snapshot", "--data", str(data), "--repo", str(one), "--key-file", str(key))[0] == 0
    assert len(list((one / "snapshots").iterdir())) == 1


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], error: str, words: str) -> None:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code != 0, out
    doc = json.loads(err)
    assert doc["error"] == error, doc
    assert words in doc["message"], doc


def test_a_missing_world_readable_or_wrong_key_is_refused_before_anything_is_written(
        tmp_path: Path, random_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    data, new = tmp_path / "data", tmp_path / "new"
    write_round(data, random.Random(random_seed), {}, [])
    key, other = tmp_path / "key", tmp_path / "other"
    create_key_file(str(key))
    create_key_file(str(other))
    archive = ["archive", "--data", str(data), "--repo", str(new), "--encrypt"]
    _refused(capsys, archive, "invalid_argument", "--encrypt needs the key")
    _refused(capsys, [*archive, "--key-file", str(tmp_path / "absent")], "wrong_key", "does not exist")
    key.chmod(0o644)
    _refused(capsys, [*archive, "--key-file", str(key)], "wrong_key", "readable or writable by group or others")
    assert not new.exists()  # not even the directory: the key is checked before a repository is opened
    key.chmod(0o600)
    code, _, err = run_cli(capsys, *archive, "--key-file", str(key))
    assert code == 0, err
    assert f"{new}: created encrypted (AES-256-GCM), opened by key id" in err  # the operator sees it was
    before = published(new)
    _refused(capsys, [*archive, "--key-file", str(other)], "wrong_key", "is not one of the keys")
    _refused(capsys, ["archive", "--data", str(data), "--repo", str(new)], "wrong_key", "is encrypted")
    plain = tmp_path / "plain"
    assert run_cli(capsys, "archive", "--data", str(data), "--repo", str(plain))[0] == 0
    plain_before = published(plain)
    _refused(capsys, ["archive", "--data", str(data), "--repo", str(plain), "--encrypt", "--key-file", str(key)],
             "wrong_key", "is not encrypted")
    assert published(plain) == plain_before  # a plaintext repository never becomes half encrypted
    assert published(new) == before


def test_a_truncated_wrapped_key_is_refused_before_anything_is_written(
        tmp_path: Path, random_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    data, repo, key = tmp_path / "data", tmp_path / "repo", tmp_path / "key"
    write_round(data, random.Random(random_seed), {}, [])
    create_key_file(str(key))
    assert run_cli(capsys, "archive", "--data", str(data), "--repo", str(repo), "--encrypt",
                   "--key-file", str(key))[0] == 0
    identity = repo / layout.IDENTITY
    fields = decode_document("PITRREPO", 2, identity.read_bytes(), str(identity))
    fields["encryption"]["wrapped_key"] = fields["encryption"]["wrapped_key"][:-8]  # 56 of its 60 bytes
    identity.chmod(0o600)
    identity.write_bytes(encode_document("PITRREPO", 2, fields))
    write_round(data, random.Random(random_seed + 1), {}, [])
    before = published(repo)
    for argv in (["archive", "--data", str(data)], ["verify"], ["restore", "--latest", "--dest", str(tmp_path / "r")]):
        code, _, err = run_cli(capsys, *argv, "--repo", str(repo), "--key-file", str(key), "--json")
        assert code != 0
        doc = json.loads(err)
        assert doc["error"] in ("wrong_key", "corrupt_data"), doc
        assert "wrap" in doc["message"] or "wrapped_key" in doc["message"], doc
    assert published(repo) == before
    assert not (tmp_path / "r").exists()
