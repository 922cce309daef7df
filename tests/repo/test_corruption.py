"""Damaged archives: verify names the broken file; restore refuses rather than build a wrong store."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from pitr.errors import CorruptData, HistoryGap, OutsideWindow, PitrError
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.store import Store
from pitr.verify import verify_repository
from tests.repo.history import History, build_history, files


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(str(tmp_path_factory.mktemp("hist")))


def copy_repo(src: str, dst: Path) -> str:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".catalog", ".work"))
    return str(dst)


def flip(path: str, rng: random.Random) -> int:
    data = bytearray(Path(path).read_bytes())
    offset = rng.randrange(len(data))
    data[offset] ^= 1 << rng.randrange(8)
    Path(path).write_bytes(bytes(data))
    return offset


async def verify(repo_dir: str, mode: str = "full"):  # type: ignore[no-untyped-def]
    async with open_repository(repo_dir) as repo:
        return await verify_repository(repo, mode=mode)


async def restore_latest(repo_dir: str, dest: str, target: RestoreTarget | None = None):  # type: ignore[no-untyped-def]
    async with open_repository(repo_dir) as repo:
        return await restore(repo, RestoreOptions(target=target or RestoreTarget(latest=True), dest=dest))


async def scan(path: str) -> dict[bytes, bytes]:
    async with Store(path) as store:
        return dict(await store.scan())


def test_clean_repository_verifies_in_every_mode(history: History) -> None:
    for mode in ("quick", "full", "replay"):
        report = trio.run(verify, history.repo, mode)
        assert report.ok, report.findings
        assert report.windows
    replays = trio.run(verify, history.repo, "replay").replays
    assert len(replays) == len(history.snapshot_lsns) - 1
    assert all(matched for _a, _b, matched in replays)


@pytest.mark.parametrize("seed", range(12))
def test_flipped_bit_in_a_segment_is_named_and_restore_refuses_or_is_exact(
        history: History, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    repo = copy_repo(history.repo, tmp_path / "repo")
    victim = rng.choice(list(files(repo, "segments")))
    flip(victim, rng)
    report = trio.run(verify, repo)
    assert not report.ok
    assert os.path.basename(victim) in {f.file for f in report.findings}
    # Restoring the latest state must fail loudly, never yield a wrong store. Only the segment that
    # binds the newest snapshot to the chain (or comes after it) is needed for the latest state: with
    # any older segment damaged, the newest snapshot restores it exactly and a refusal is wrong.
    newest_snapshot = max(history.snapshot_lsns)
    _first, last = (int(part) for part in os.path.basename(victim).removesuffix(".seg").split("-"))
    needed = last >= newest_snapshot
    dest = str(tmp_path / "restored")
    refusal: PitrError | None = None
    try:
        trio.run(restore_latest, repo, dest)
    except (CorruptData, OutsideWindow, HistoryGap) as exc:
        refusal = exc
    if refusal is not None:
        assert needed, f"{os.path.basename(victim)} is not needed for the latest state, yet: {refusal}"
        assert not os.path.exists(dest)
    else:
        assert trio.run(scan, dest) == history.commits[-1][2]


@pytest.mark.parametrize("seed", range(6))
def test_flipped_bit_in_a_snapshot_is_named_and_never_used(history: History, tmp_path: Path, seed: int) -> None:
    rng = random.Random(100 + seed)
    repo = copy_repo(history.repo, tmp_path / "repo")
    victim = rng.choice(list(files(repo, "snapshots")))
    flip(victim, rng)
    report = trio.run(verify, repo)
    assert os.path.basename(victim) in {f.file for f in report.findings}
    dest = str(tmp_path / "restored")
    lsn, ts, model = history.commits[-1]
    # every segment is intact, so an older snapshot (or the start of history) is a base: restoring
    # the latest state must be exact, not refused
    trio.run(restore_latest, repo, dest)
    assert trio.run(scan, dest) == model


def test_missing_segment_is_a_gap_and_windows_shrink(tmp_path: Path) -> None:
    unmerged = build_history(str(tmp_path / "h"), commits=120, snapshot_every=60, merge_count=1000)
    segs = list(files(unmerged.repo, "segments"))
    assert len(segs) >= 3
    middle = segs[len(segs) // 2]
    os.unlink(middle)
    report = trio.run(verify, unmerged.repo, "quick")
    # A missing file is a hole naming its LSN range; no healthy neighbour is blamed for it (issue 11, item 6).
    assert not report.ok
    assert not [f for f in report.findings if f.kind == "chain"]
    assert report.holes
    assert "missing" in report.holes[0].reason
    # What remains restorable: from the start up to the gap, and from the snapshot after it (if any).
    first = report.windows[0]
    assert first.start_lsn == 0
    assert first.end_lsn < unmerged.commits[-1][0]


def test_interrupted_restore_leaves_no_finished_destination(history: History, tmp_path: Path) -> None:
    dest = tmp_path / "restored"
    script = (
        "import sys, time, trio\n"
        "from pitr.repo.repository import open_repository\n"
        "from pitr.restore import restore, RestoreOptions, RestoreTarget\n"
        "def progress(phase, done, total):\n"
        "    if phase == 'restore':  # bytes read while the state is built\n"
        "        print('replaying', flush=True); time.sleep(30)\n"
        "async def main():\n"
        "    async with open_repository(sys.argv[1]) as repo:\n"
        "        await restore(repo, RestoreOptions(target=RestoreTarget(lsn=250), dest=sys.argv[2]),\n"
        "                      progress=progress)\n"
        "trio.run(main)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, history.repo, str(dest)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "replaying"
        proc.kill()
    finally:
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert not dest.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".restored.restoring-")]
    assert leftovers
    assert all((p / "RESTORE-INCOMPLETE").exists() for p in leftovers)
    # and a later restore into the same destination works
    trio.run(restore_latest, history.repo, str(dest), RestoreTarget(lsn=250))
    assert trio.run(scan, str(dest)) == history.commits[249][2]
