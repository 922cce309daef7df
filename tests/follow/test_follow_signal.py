"""A follower stopped by SIGTERM or SIGINT (a service manager, Ctrl-C) says where the standby stands, as
`--catch-up` does, and exits 0; the standby resumes from there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pitr.datadir.markers import read_follower
from tests.helpers.cli import run_cli as run


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_follower_prints_its_summary_and_exits_0(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sig: int) -> None:
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    for i in range(3):
        assert run(capsys, "put", f"k{i}", "v")[0] == 0
    assert run(capsys, "archive")[0] == 0
    standby = tmp_path / "standby"
    proc = subprocess.Popen([sys.executable, "-m", "pitr", "restore", "--latest", "--follow", "--dest",
                             str(standby), "--interval", "10ms", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # the first look: the standby is built and caught up
        assert first["event"] == "status"
        assert first["applied_lsn"] == 3
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "stopped"
    assert last["signal"] == signal.Signals(sig).name
    assert last["applied_lsn"] == 3
    assert last["restored_lsn"] == 3
    assert "Traceback" not in err
    assert read_follower(str(standby)) is not None
