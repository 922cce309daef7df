"""`pitr status` says what an upload cap costs in recovery point, against the real S3 test server.

The specification: an archiver following a store into S3 under `--limit-upload` records the cap and
the bytes waiting at it in its status record; while a large commit is uploaded `status` shows a
backlog, the cap's cost in seconds, and a `--max-rpo` crossed because of it says so; once it is
uploaded the backlog is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.archiver.test_follow_observers import PITR, follower, pitr, wait_for
from tests.remote.conftest import s3_url
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.integration
CAP = 8 << 10  # bytes per second


def test_status_shows_the_backlog_at_the_upload_cap_and_what_it_costs(s3: S3Server, tmp_path: Path) -> None:
    data, url, cache = str(tmp_path / "data"), s3_url(s3), str(tmp_path / "cache")
    remote = ["--repo", url, "--s3-endpoint", s3.endpoint, "--cache-dir", cache]
    assert pitr("put", "--data", data, "k0", "v").returncode == 0

    def upload() -> dict[str, object] | None:
        shown = pitr("status", "--data", data, *remote, "--json")
        row = json.loads(shown.stdout)["repositories"][0]
        if row["error"] == "not_a_repository" or row["known_complete_lsn"] is None:
            return None  # the archiver has not claimed it yet, or claimed it but published nothing yet
        assert shown.returncode in (0, 1), shown.stdout + shown.stderr
        archiver = row["archiver"]
        if not archiver or archiver["upload"] is None:
            return None
        return {**archiver["upload"], "archived_lsn": archiver["archived_lsn"], "cost": row["cap_cost_seconds"]}

    with open(tmp_path / "log", "w") as log, \
            follower(["--data", data, *remote, "--limit-upload", f"{CAP}B/s"], log) as proc:
        first = wait_for("the first commit archived", lambda: next(
            (u for u in [upload()] if u and u["archived_lsn"] == 1), None))
        assert first["cap_bytes_per_s"] == CAP
        big = subprocess.run([*PITR, "put", "--data", data, "big", "-"], input=os.urandom(160 << 10),
                             capture_output=True, timeout=120, check=False)
        assert big.returncode == 0, big.stderr
        # 160 KiB that does not compress, at 8 KiB/s: about 20 s in which the record (measured every 5 s) shows it waiting
        waiting = wait_for("the backlog at the cap", lambda: next(
            (u for u in [upload()] if u and u["archived_lsn"] == 1 and u["backlog_commits"] == 1
             and isinstance(u["backlog_bytes"], int) and u["backlog_bytes"] > CAP), None))
        assert isinstance(waiting["cost"], float)
        assert waiting["cost"] > 1.0
        late = pitr("status", "--data", data, *remote, "--max-rpo", "1ms")
        assert late.returncode == 1, late.stdout + late.stderr
        assert "upload cap" in late.stdout
        assert "under the cap of 8.0 KiB/s" in late.stdout
        done = wait_for("the big commit uploaded", lambda: next(
            (u for u in [upload()] if u and u["archived_lsn"] == 2 and u["backlog_commits"] == 0), None))
        assert isinstance(done["cost"], float)
        assert done["cost"] < 1.0, "only the watermarks and the like are left to upload"
        assert proc.poll() is None, (tmp_path / "log").read_text()
