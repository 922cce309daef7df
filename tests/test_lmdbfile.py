"""An LMDB file cut short is refused before it is mapped (mapping it would kill the reader with SIGBUS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lmdb
import trio

from pitr.lmdbfile import truncation_problem
from pitr.store import Store


def _write_env(path: Path) -> None:
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i in range(5000):
            txn.put(b"%08d" % i, b"x" * 100)
    env.close()


def test_a_whole_file_and_a_missing_file_have_no_problem(tmp_path: Path) -> None:
    assert truncation_problem(str(tmp_path / "none")) is None
    _write_env(tmp_path / "env")
    assert truncation_problem(str(tmp_path / "env")) is None


def test_a_file_cut_short_is_named(tmp_path: Path) -> None:
    _write_env(tmp_path / "env")
    data = tmp_path / "env" / "data.mdb"
    os.truncate(data, os.path.getsize(data) // 2)
    problem = truncation_problem(str(tmp_path / "env"))
    assert problem is not None
    assert str(data) in problem
    assert "cut short" in problem


def _pitr(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pitr", *argv], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_truncated_store_state_and_catalog_are_refused_not_a_crash(tmp_path: Path) -> None:
    env = {**os.environ, "PITR_DATA": str(tmp_path / "data"), "PITR_REPO": str(tmp_path / "repo")}
    async def fill() -> None:  # enough pages that half the file loses some in use
        async with Store(str(tmp_path / "data")) as store:
            for i in range(3000):
                await store.put(b"key%d" % i, b"v" * 200)

    trio.run(fill)
    assert _pitr(env, "archive").returncode == 0
    for lmdb_dir, argv in ((tmp_path / "data" / "state", ("get", "key7")),
                           (tmp_path / "repo" / ".catalog", ("history", "key7"))):
        data = lmdb_dir / "data.mdb"
        os.truncate(data, os.path.getsize(data) // 2)
        done = _pitr(env, *argv)
        assert done.returncode == 1, (argv, done.returncode, done.stderr)  # SIGBUS would be -7
        assert "cut short" in done.stderr
        assert "Traceback" not in done.stderr
