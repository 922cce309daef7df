"""The cyclic garbage collector is a process-wide switch: a library restore leaves it alone unless
asked (`RestoreOptions(pause_gc=True)`); the `pitr restore` command, which owns its process, asks."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from pitr.cli import restore as cli_restore
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from tests.helpers.cli import run_cli
from tests.store.test_restore import make_history


class Recording:
    """A progress hook noting, at each call (from the thread building the state), whether the
    collector is enabled."""

    def __init__(self, *_args: object) -> None:
        self.seen: list[tuple[str, bool]] = []

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.seen.append((phase, gc.isenabled()))

    def done(self) -> None:
        pass

    def during_replay(self) -> set[bool]:
        states = {enabled for phase, enabled in self.seen if phase == "restore"}  # bytes read while building
        assert states, f"the build reported no replay progress: {self.seen}"
        return states


@pytest.mark.anyio
@pytest.mark.parametrize("pause_gc", [False, True])
async def test_a_library_restore_touches_the_collector_only_when_asked(tmp_path: Path, pause_gc: bool) -> None:
    history = await make_history(tmp_path)
    assert gc.isenabled()
    progress = Recording()
    async with open_repository(history.repo_dir) as repo:
        await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=history.dest(),
                                           pause_gc=pause_gc), progress=progress)
    assert progress.during_replay() == {not pause_gc}
    assert gc.isenabled(), "the collector was left paused after the restore"


def test_the_restore_command_pauses_the_collector_while_it_builds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    for i in range(3):
        assert run_cli(capsys, "put", f"k{i}", f"v{i}")[0] == 0
    assert run_cli(capsys, "archive")[0] == 0
    hooks: list[Recording] = []

    def recording(*args: object) -> Recording:
        hooks.append(Recording(*args))
        return hooks[-1]

    monkeypatch.setattr(cli_restore, "progress_for", recording)
    code, _out, err = run_cli(capsys, "restore", "--latest", "--dest", str(tmp_path / "r"))
    assert code == 0, err
    assert [hook.during_replay() for hook in hooks] == [{False}]
    assert gc.isenabled(), "the collector was left paused after the command"
