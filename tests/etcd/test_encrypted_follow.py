"""`pitr archive --follow --source etcd://... --encrypt --signing-key S --witness W` as a process a user runs
and stops with Ctrl-C: the repository is created encrypted and holds no key or value written; with the
default checkpoint interval (60 s) the run's last watermark is still signed, so the witness reaches the end
of what was archived; the restore into etcd through the key and the witness equals the source."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from pitr.crypto import create_key_file
from tests.crypto.test_archive_encrypt import every_byte
from tests.etcd.test_encrypted_archive import Writer, etcd_url
from tests.etcd.test_signed_checkpoints import witnessed_checkpoints
from tests.servers.etcd import EtcdCluster

pytestmark = pytest.mark.integration

PITR = [sys.executable, "-m", "pitr"]
T = TypeVar("T")


def pitr(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PITR, *argv], capture_output=True, text=True, timeout=120, check=False)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_followed_encrypted_etcd_archive_signs_its_last_watermark_when_stopped(
        tmp_path: Path, etcd_server: EtcdCluster, key_prefix: bytes, random_seed: int) -> None:
    writer = Writer(etcd_server.endpoints, key_prefix, random.Random(random_seed))
    key, sign, repo, witness = tmp_path / "key", tmp_path / "sign", tmp_path / "repo", tmp_path / "witness"
    create_key_file(str(key))
    create_key_file(str(sign))
    keyed = ["--repo", str(repo), "--key-file", str(key)]
    writer.round(4)  # the base load's
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen([*PITR, "archive", "--follow", "--interval", "0.1", "--source",
                                 etcd_url(etcd_server, key_prefix), "--data", str(tmp_path / "spool"), *keyed,
                                 "--encrypt", "--signing-key", str(sign), "--witness", str(witness), "--json"],
                                stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            def archived(lsn: int) -> Callable[[], int | None]:
                def probe() -> int | None:
                    status = pitr("status", *keyed, "--json")
                    known = json.loads(status.stdout)["repositories"][0]["known_complete_lsn"] \
                        if status.stdout else None
                    return known if known == lsn and witness.is_dir() and any(witness.rglob("*.ckpt")) else None
                return probe

            wait_for("the base load archived and a first checkpoint", archived(1))
            first = witnessed_checkpoints(witness)
            writer.round(6)
            written = 1 + 6  # the base load's commit, then one revision per step
            wait_for("the new revisions archived", archived(written))
            assert witnessed_checkpoints(witness) == first  # within the 60 s interval: not signed yet
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
    assert proc.returncode == 0, (tmp_path / "log").read_text()
    report = json.loads(out)
    assert report["checkpoints_written"] == len(first) + 1, (report, first)
    assert witnessed_checkpoints(witness)[-1] == written  # the end of the run is witnessed
    keys = pitr("key", "list", "--repo", str(repo), "--json")  # (--json: the creation is not announced)
    assert keys.returncode == 0, keys.stderr
    assert json.loads(keys.stdout)["encrypted"] is True
    assert not [s for s in writer.secrets if s in every_byte(repo)]
    verified = pitr("verify", *keyed, "--witness", str(witness), "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)[0]["findings"] == []
    copy = key_prefix + b"copy/"
    restored = pitr("restore", "--latest", "--dest", etcd_url(etcd_server, copy), *keyed, "--witness", str(witness),
                    "--json")
    assert restored.returncode == 0, restored.stderr
    assert writer.state(copy) == {copy + k[len(key_prefix):]: v for k, v in writer.state().items()
                                  if not k.startswith(copy)}
