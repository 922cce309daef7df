"""pitr status and the archiver's metrics with an S3 repository beside a directory (issue 15, items 1-2):
the verify record lives in the remote repository's cache directory, and the S3 request counts are metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest

from tests.archiver.test_follow_observers import free_port, scrape, wait_for
from tests.helpers.cli import run_cli
from tests.remote.conftest import s3_url
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.integration


def test_status_of_a_directory_and_an_s3_repository(
        tmp_path: Path, s3: S3Server, capsys: pytest.CaptureFixture[str]) -> None:
    data, local, remote = str(tmp_path / "data"), str(tmp_path / "local"), s3_url(s3)
    repos = ["--repo", local, "--repo", remote, "--s3-endpoint", s3.endpoint]
    assert run_cli(capsys, "put", "--data", data, "k", "v")[0] == 0
    assert run_cli(capsys, "archive", "--data", data, *repos)[0] == 0
    code, out, err = run_cli(capsys, "status", "--data", data, *repos, "--json", "--max-unverified", "1h")
    assert code == 1, err
    rows = {row["repository"]: row for row in json.loads(out)["repositories"]}
    assert all(row["state"] == "attention" and row["known_complete_lsn"] == 1 for row in rows.values()), rows
    assert run_cli(capsys, "verify", *repos)[0] == 0
    code, out, err = run_cli(capsys, "status", "--data", data, *repos, "--json", "--max-unverified", "1h")
    rows = {row["repository"]: row for row in json.loads(out)["repositories"]}
    assert code == 0, rows
    assert rows[remote]["last_verification"]["ok"] is True
    assert rows[remote]["archiver"]["archived_lsn"] == 1
    assert rows[remote]["windows"] == rows[local]["windows"]


def test_the_follower_counts_its_s3_requests(tmp_path: Path, s3: S3Server) -> None:
    data, remote = str(tmp_path / "data"), s3_url(s3)
    assert subprocess.run([sys.executable, "-m", "pitr.cli.main", "put", "--data", data, "k", "v"],
                          check=False).returncode == 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pitr.cli.main", "archive", "--follow", "--interval", "0.2",
                             "--data", data, "--repo", remote, "--s3-endpoint", s3.endpoint,
                             "--metrics", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        def requests() -> float | None:
            assert proc.poll() is None
            try:
                metrics = scrape(port)
            except (urllib.error.URLError, ConnectionError):
                return None
            if metrics.get(("pitr_archived_lsn", remote)) != 1:
                return None
            return sum(v for (name, repo), v in metrics.items() if name == "pitr_storage_requests_total"
                       and repo == remote) or None

        first = wait_for("S3 requests counted", requests)
        time.sleep(1.0)  # idle: each watermark is a request
        assert wait_for("more requests", lambda: (requests() or 0) > first or None)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
