"""An etcd prefix archived with `--encrypt` and signed checkpoints into an S3 repository, with a witness in
another S3 prefix, on the real test server (rclone), as a user runs it: the bucket and the local catalog
cache hold none of the keys and values written; restore into etcd (through the witness) and into a
directory, `get --at` and `history` through the key equal etcd's state; `verify --witness` holds up, its
`--quick` needs no key, and a restore without the key is refused."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from pitr.crypto import create_key_file
from pitr.datadir.reader import StoreReader
from pitr.jsonbytes import bytes_from_json
from tests.crypto.test_archive_encrypt import every_byte
from tests.etcd.test_encrypted_archive import Writer, etcd_url
from tests.helpers.cli import run_cli
from tests.remote.conftest import aws_env, backing_dir, s3, s3_server, s3_url  # noqa: F401 - fixtures
from tests.servers.etcd import EtcdCluster
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.integration


def test_an_encrypted_s3_repository_of_an_etcd_prefix_restores_etcds_state_and_holds_no_plaintext(
        tmp_path: Path, s3: S3Server, etcd_server: EtcdCluster, key_prefix: bytes,  # noqa: F811 - the fixture
        random_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    writer = Writer(etcd_server.endpoints, key_prefix, random.Random(random_seed))
    key, sign, cache, url, witness = tmp_path / "key", tmp_path / "sign", tmp_path / "cache", s3_url(s3), s3_url(s3)
    create_key_file(str(key))
    create_key_file(str(sign))
    remote = ["--repo", url, "--s3-endpoint", s3.endpoint, "--cache-dir", str(cache)]
    keyed = [*remote, "--key-file", str(key)]

    def ok(*argv: str) -> str:
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, (argv, out, err)
        return out

    states = []
    for _round in range(2):
        writer.round()
        out = json.loads(ok("archive", "--source", etcd_url(etcd_server, key_prefix), "--data", str(tmp_path / "spool"),
                            *keyed, "--json", "--encrypt",  # (always safe to pass: an existing one must open)
                            "--signing-key", str(sign), "--witness", witness))
        assert out["etcd"]["caught_up"] is True
        assert out["checkpoints_written"] >= 1
        states.append((out["etcd"]["revision"], writer.state()))
    stored = every_byte(Path(backing_dir(s3, url))) + every_byte(cache)
    assert b"PITRSNP\n" in stored  # (the scan sees the objects: the base load's sealed snapshot among them)
    found = [s for s in writer.secrets if s in stored]
    assert not found, f"{len(found)} of {len(writer.secrets)} key suffixes and values are in the bucket or the cache"

    copy = key_prefix + b"copy/"
    out = json.loads(ok("restore", "--latest", "--dest", etcd_url(etcd_server, copy), *keyed, "--witness", witness,
                        "--json"))
    latest = states[-1][1]
    assert out["source_revision"] == states[-1][0]
    assert writer.state(copy) == {copy + k[len(key_prefix):]: v for k, v in latest.items()}
    dest = tmp_path / "restored"
    ok("restore", "--latest", "--dest", str(dest), *keyed, "--json")
    with StoreReader(str(dest)) as reader:
        assert {k: v for k, v, _ in reader.scan(b"", 2**62)} == latest
    # the first round's state, by the moment its archive run ended (the base load's commit is LSN 1)
    first = states[0][1]
    for name in sorted(first)[:3]:
        b64 = base64.b64encode(name).decode()
        got = json.loads(ok("get", b64, "--b64", "--at", "@1", *keyed, "--json"))
        assert bytes_from_json(got["value"], what="value") == first[name]
        history = [json.loads(line) for line in ok("history", b64, "--b64", "--values", *keyed,
                                                    "--json").splitlines()]
        assert history[0]["lsn"] == 1  # the base load's put comes first
        assert bytes_from_json(history[0]["value"], what="value") == first[name]
    quick = json.loads(ok("verify", "--quick", *remote, "--witness", witness, "--json"))[0]
    assert quick["findings"] == []
    assert quick["keyless"] is True
    report = json.loads(ok("verify", *keyed, "--witness", witness, "--json"))[0]
    assert report["findings"] == []
    assert report["windows"]
    code, _, err = run_cli(capsys, "restore", "--latest", "--dest", str(tmp_path / "never"), *remote, "--json")
    assert code != 0
    assert json.loads(err)["error"] == "wrong_key"
    assert not (tmp_path / "never").exists()
