"""Model-based: random histories, archived and followed, with the follower and the archiver crashing at
every durable step, merges of the newest segments (their inputs left in place, as the archiver leaves
them) and cleanups deleting those inputs; once the standby catches up it equals the model at the
archive's last commit and `restore --latest`.

A crash is a KeyboardInterrupt raised inside the command at a point hypothesis picks: the follower's
marker write (before it, or after it and before the state moves) and the archiver's n-th publish or
replace into the repository. Every durable step is an atomic file or LMDB transaction, so what is on
disk afterwards is what kill -9 at that point leaves (the subprocess test kills them for real).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import Any

import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

import pitr.follow.apply as follow_apply
from pitr.archiver.publish import merge_run
from pitr.cli.main import main
from pitr.repo.repository import live_segments, open_repository
from pitr.storage.local import LocalStorage

KEYS = st.sampled_from(["a", "b", "c", "d"])
CHANGES = st.lists(st.tuples(KEYS, st.one_of(st.none(), st.text("xyz", min_size=1, max_size=3))),
                   min_size=1, max_size=6)


def pitr(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code
        else:
            raise AssertionError("pitr did not exit")
    assert isinstance(code, int)
    return code, out.getvalue(), err.getvalue()


@contextmanager
def crash_on(owner: Any, name: str, nth: int, after: bool) -> Iterator[None]:
    """Replace owner.name so its nth call raises KeyboardInterrupt, before or after doing its work."""
    real = getattr(owner, name)
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls == nth:
            raise KeyboardInterrupt

    if name in ("publish", "publish_file", "replace"):
        async def wrapper(*args: Any) -> Any:
            if not after:
                check()
            result = await real(*args)
            if after:
                check()
            return result
        hooked: Callable[..., Any] = wrapper
    else:
        def plain(*args: Any) -> Any:
            if not after:
                check()
            result = real(*args)
            if after:
                check()
            return result
        hooked = plain
    setattr(owner, name, hooked)
    try:
        yield
    finally:
        setattr(owner, name, real)


class FollowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="pitr-follow-model-")
        self.data, self.repo, self.standby = (os.path.join(self.root, n) for n in ("data", "repo", "standby"))
        code, _, err = pitr("put", "a", "0", "--data", self.data)  # the store exists from the start
        assert code == 0, err
        self.history: list[dict[str, str]] = [{}, {"a": "0"}]  # the model after each LSN (index = LSN)
        self.archived = 0  # every commit through this LSN is surely in the repository
        self.restores = 0

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(changes=CHANGES)
    def commit(self, changes: list[tuple[str, str | None]]) -> None:
        lines = os.path.join(self.root, "lines.jsonl")
        with open(lines, "w") as fh:
            for key, value in changes:
                doc = {"op": "put", "key": key, "value": value} if value is not None else {"op": "delete", "key": key}
                fh.write(json.dumps(doc) + "\n")
        code, _, err = pitr("import", lines, "--data", self.data)
        assert code == 0, err
        for key, value in changes:
            state = dict(self.history[-1])
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
            self.history.append(state)

    @rule()
    def archive(self) -> None:
        code, _, err = pitr("archive", "--data", self.data, "--repo", self.repo)
        assert code == 0, err
        self.archived = len(self.history) - 1

    @rule(method=st.sampled_from(["publish", "publish_file", "replace"]), nth=st.integers(1, 4), after=st.booleans())
    def archive_crashes(self, method: str, nth: int, after: bool) -> None:
        with crash_on(LocalStorage, method, nth, after):
            code, _, err = pitr("archive", "--data", self.data, "--repo", self.repo)
        assert code in (0, 130), err

    @rule(groups=st.lists(CHANGES, min_size=1, max_size=3), older=st.integers(0, 2), cleanup=st.booleans())
    def archive_and_merge(self, groups: list[list[tuple[str, str | None]]], older: int, cleanup: bool) -> None:
        """Archive each group as a segment, then merge them and up to `older` segments before them into one,
        beside them (as the archiver's merge does): the standby may have applied some of the inputs. With
        `cleanup`, the inputs are deleted then (what pitr cleanup does once the merged one is indexed)."""
        for changes in groups:
            self.commit(changes)
            self.archive()

        async def go() -> None:
            async with open_repository(self.repo) as repo:
                await repo.sync()
                segments = repo.catalog.segments()
                count = min(len(segments), len(groups) + older)
                if count >= 2:
                    await merge_run(repo, segments[-count:])

        trio.run(go)
        segments = os.path.join(self.repo, "segments")
        if cleanup:
            for name in live_segments(os.listdir(segments))[1]:
                os.unlink(os.path.join(segments, name))

    @rule(nth=st.integers(1, 3), after=st.booleans())
    def follower_crashes(self, nth: int, after: bool) -> None:
        if self.archived == 0:
            return  # no repository yet: the follower refuses to start (tested in test_follow)
        with crash_on(follow_apply, "write_follower", nth, after):
            code, _, err = pitr("restore", "--latest", "--follow", "--catch-up", "--interval", "1ms",
                                "--dest", self.standby, "--repo", self.repo)
        assert code in (0, 130), err

    @rule()
    def catch_up(self) -> None:
        if self.archived == 0:
            return
        code, out, err = pitr("restore", "--latest", "--follow", "--catch-up", "--interval", "1ms",
                              "--dest", self.standby, "--repo", self.repo, "--json")
        assert code == 0, err
        applied = json.loads(out.splitlines()[-1])["applied_lsn"]
        assert applied >= self.archived
        assert self._exported(self.standby) == self.history[applied]
        self.restores += 1
        latest = os.path.join(self.root, f"latest-{self.restores}")
        code, out, err = pitr("restore", "--latest", "--dest", latest, "--repo", self.repo, "--json")
        assert code == 0, err
        assert json.loads(out)["lsn"] == applied
        assert self._exported(latest) == self.history[applied]

    def _exported(self, where: str) -> dict[str, str]:
        code, out, err = pitr("export", "--data", where)
        assert code == 0, err
        rows = [json.loads(line) for line in out.splitlines()]
        return {row["key"]: row["value"] for row in rows}


# How many examples run is the profile's (tests/conftest.py); the steps per example are this machine's.
FollowMachine.TestCase.settings = settings(stateful_step_count=12, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestFollowMachine = FollowMachine.TestCase
