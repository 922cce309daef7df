"""A standby following an S3 repository (a real S3-compatible server): it converges to restore --latest
and keeps no copy of the segments it downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli as run
from tests.remote.conftest import s3_url
from tests.servers.s3 import S3Server


def test_a_standby_follows_an_s3_repository(tmp_path: Path, s3: S3Server, capsys: pytest.CaptureFixture[str]) -> None:
    url = s3_url(s3)
    data, standby = tmp_path / "data", tmp_path / "standby"
    repo = ["--repo", url, "--s3-endpoint", s3.endpoint, "--cache-dir", str(tmp_path / "cache")]
    for round_ in range(3):
        for i in range(5):
            assert run(capsys, "put", f"k{i}", f"v{round_}-{i}", "--data", str(data))[0] == 0
        assert run(capsys, "delete", f"k{round_}", "--data", str(data))[0] == 0
        assert run(capsys, "archive", "--data", str(data), *repo)[0] == 0
        code, out, err = run(capsys, "restore", "--latest", "--follow", "--catch-up", "--interval", "10ms",
                             "--dest", str(standby), *repo, "--json")
        assert code == 0, err
        assert json.loads(out.splitlines()[-1])["applied_lsn"] == 6 * (round_ + 1)
    code, _, err = run(capsys, "restore", "--latest", "--dest", str(tmp_path / "latest"), *repo)
    assert code == 0, err
    exports = [run(capsys, "export", "--data", str(d)) for d in (standby, tmp_path / "latest", data)]
    assert exports[0] == exports[1] == exports[2]
    assert exports[0][0] == 0
    assert (tmp_path / "cache").is_dir()
    assert not list((tmp_path / "cache").rglob(".follow-*.seg"))
