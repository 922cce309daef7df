"""`pitr archive --encrypt` into an S3 repository on the real test server (rclone), as a user runs it:
the bucket and the local catalog cache hold none of the keys and values written, and restore,
history, get --at and log through the key answer what a plaintext local repository of the same store
answers."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from pitr.crypto import create_key_file
from pitr.datadir.reader import StoreReader
from tests.crypto.test_archive_encrypt import every_byte, write_round
from tests.helpers.cli import run_cli
from tests.remote.conftest import aws_env, backing_dir, s3, s3_server, s3_url  # noqa: F401 - fixtures
from tests.servers.s3 import S3Server


def test_an_encrypted_s3_repository_made_by_the_cli_answers_as_the_plaintext_one(
        tmp_path: Path, s3: S3Server, random_seed: int, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    rng = random.Random(random_seed)
    data, key, plain, cache = tmp_path / "data", tmp_path / "key", tmp_path / "plain", tmp_path / "cache"
    url = s3_url(s3)
    create_key_file(str(key))
    model: dict[bytes, bytes] = {}
    secrets: list[bytes] = []
    remote = ["--repo", url, "--s3-endpoint", s3.endpoint, "--cache-dir", str(cache), "--key-file", str(key)]

    def ok(*argv: str) -> str:
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, (argv, out, err)
        return out

    for round_ in range(2):
        write_round(data, rng, model, secrets)
        ok("archive", "--data", str(data), *remote, *(["--encrypt"] if round_ == 0 else []))
        ok("archive", "--data", str(data), "--repo", str(plain))
        if round_ == 0:
            ok("snapshot", "--data", str(data), *remote)
            ok("snapshot", "--data", str(data), "--repo", str(plain))
    stored = every_byte(Path(backing_dir(s3, url))) + every_byte(cache)
    assert b"PITRSNP\n" in stored  # (the scan sees the objects: a sealed snapshot among them)
    found = [s for s in secrets if s in stored]
    assert not found, f"{len(found)} of {len(secrets)} keys and values written are in the bucket or the cache"

    def both(*argv: str) -> tuple[str, str]:
        sealed = run_cli(capsys, *argv, *remote)
        plaintext = run_cli(capsys, *argv, "--repo", str(plain))
        return (f"{sealed[0]}\n{sealed[1]}".replace(url, "REPO"),
                f"{plaintext[0]}\n{plaintext[1]}".replace(str(plain), "REPO"))

    sealed, plaintext = both("log", "--since-lsn", "1", "--json")
    assert sealed == plaintext
    for some in sorted(model)[:2] + [secrets[0]]:
        b64 = base64.b64encode(some).decode()
        sealed, plaintext = both("history", b64, "--b64", "--values", "--json")
        assert sealed == plaintext
        sealed, plaintext = both("get", b64, "--b64", "--at", "@70", "--json")
        assert sealed == plaintext
    dest = tmp_path / "restored"
    out = json.loads(ok("restore", *remote, "--latest", "--dest", str(dest), "--json"))
    assert out["base"] is not None
    with StoreReader(str(dest)) as reader:
        assert {k: v for k, v, _ in reader.scan(b"", 2**62)} == model
