"""kill -9 of the follower and of the archiver at random moments, both restarted: the standby converges
to `restore --latest`, which holds every commit the writer made (seed printed; PITR_TEST_SEED replays)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli as run

HELPERS = Path(__file__).parents[1] / "helpers"


def _pitr(*argv: str) -> list[str]:
    return [sys.executable, "-m", "pitr", *argv]


class Writer:
    """tests/helpers/live_writer.py: the store's writer in its own process."""

    def __init__(self, data: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HELPERS / "live_writer.py"), str(data)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.ask("")[0] == "ready"

    def ask(self, line: str) -> list[str]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        words = self.proc.stdout.readline().split()
        assert words[:1] in (["ok"], ["ready"]), words
        return words

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        self.proc.stdin.close()
        self.proc.stdout.close()


def _kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_follower_and_archiver_killed_at_random_points_converge_to_restore_latest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], random_seed: int) -> None:
    rng = random.Random(random_seed)
    data, repo, standby = tmp_path / "data", tmp_path / "repo", tmp_path / "standby"
    writer = Writer(data)
    archiver: subprocess.Popen[bytes] | None = None
    follower: subprocess.Popen[bytes] | None = None
    log = (tmp_path / "processes.log").open("wb")

    def start_archiver() -> subprocess.Popen[bytes]:
        return subprocess.Popen(_pitr("archive", "--follow", "--interval", "0.05", "--data", str(data), "--repo",
                                      str(repo)), stdout=log, stderr=log)

    def start_follower() -> subprocess.Popen[bytes]:
        return subprocess.Popen(_pitr("restore", "--latest", "--follow", "--interval", "20ms", "--dest",
                                      str(standby), "--repo", str(repo)), stdout=log, stderr=log)

    try:
        writer.ask("burst 50")
        assert run(capsys, "archive", "--data", str(data), "--repo", str(repo))[0] == 0
        archiver, follower = start_archiver(), start_follower()
        kills = []
        for _ in range(8):
            writer.ask(f"burst {rng.randrange(1, 400)}")
            if rng.random() < 0.5:
                writer.ask(f"delete k{rng.randrange(17)}")
            time.sleep(rng.uniform(0, 0.6))
            victim = rng.choice(["follower", "archiver", "both"])
            kills.append(victim)
            if victim in ("follower", "both"):
                _kill(follower)
                follower = start_follower()
            if victim in ("archiver", "both"):
                _kill(archiver)
                archiver = start_archiver()
        last = int(writer.ask("flush")[1])
        _kill(archiver)
        archiver = None
        _kill(follower)
        follower = None
        print("kills:", kills)
        code, _, err = run(capsys, "archive", "--data", str(data), "--repo", str(repo))
        assert code == 0, err
        code, out, err = run(capsys, "restore", "--latest", "--follow", "--catch-up", "--dest", str(standby),
                             "--repo", str(repo), "--json")
        assert code == 0, (err, (tmp_path / "processes.log").read_text())
        assert json.loads(out.splitlines()[-1])["applied_lsn"] == last
        code, _, err = run(capsys, "restore", "--latest", "--dest", str(tmp_path / "latest"), "--repo", str(repo))
        assert code == 0, err
        outs = []
        for where in (standby, tmp_path / "latest"):
            code, out, err = run(capsys, "export", "--data", str(where))
            assert code == 0, err
            outs.append(out)
        assert outs[0] == outs[1]
        writer.close()
        code, out, err = run(capsys, "export", "--data", str(data))
        assert code == 0, err
        assert out == outs[0]
    finally:
        _kill(archiver)
        _kill(follower)
        writer.close()
        log.close()
