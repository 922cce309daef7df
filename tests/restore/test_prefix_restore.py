"""Property: a restore of some prefixes and keys equals the full restore filtered to them.

Random histories (puts, deletes, batches, TTLs ending on commit times, snapshots, merged
segments, long keys indexed by digest) through a real Store and archiver; a random target (time,
exclusive time, LSN or latest), random prefixes and keys, optionally renamed. The partial restore
must hold exactly the full restore's keys under the selection, renamed, with their values and
expiries, and the checkpoint of the target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import trio
from hypothesis import event, given
from hypothesis import strategies as st

from pitr.datadir.state import StateDB
from pitr.errors import InvalidArgument
from pitr.repo.repository import open_repository
from pitr.restore import KeySelection, RestoreOptions, RestoreResult, RestoreTarget, restore
from tests.audit.model import LONG_A, LONG_B, Written, state_at, write_history
from tests.audit.test_model_agreement import histories, interesting_times

PREFIXES = [b"a/", b"a", b"b", b"long/", b"zzz", b""]
KEYS = [b"a/1", b"b", b"b/1", LONG_A, LONG_B, b"nope"]

Rows = dict[bytes, tuple[bytes, int | None]]


def read_rows(dest: str) -> tuple[Rows, tuple[int, int]]:
    state = StateDB(os.path.join(dest, "state"), readonly=True)
    try:
        return {bytes(k): (bytes(v), e) for k, v, e in state.iter_range(b"", None)}, state.checkpoint()
    finally:
        state.close()


@st.composite
def selections(draw: st.DrawFn) -> KeySelection:
    prefixes = tuple(draw(st.lists(st.sampled_from(PREFIXES), max_size=2, unique=True)))
    keys = tuple(draw(st.lists(st.sampled_from(KEYS), min_size=0 if prefixes else 1, max_size=2, unique=True)))
    rename = draw(st.booleans())
    if not rename:
        return KeySelection(prefixes=prefixes, keys=keys)
    common = bytes(os.path.commonprefix([*prefixes, *keys]))
    strip = common[: draw(st.integers(0, len(common)))]
    return KeySelection(prefixes=prefixes, keys=keys, strip_prefix=strip, add_prefix=b"moved/")


def expected_rows(full: Rows, selection: KeySelection) -> Rows:
    return {selection.landed(k): row for k, row in full.items() if selection.selects(k)}


@given(steps=histories(), data=st.data())
def test_a_partial_restore_equals_the_full_restore_filtered(steps: list[tuple[object, ...]],
                                                            data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as root:
        written: Written = trio.run(write_history, root, steps)
        commits = written.commits
        kind = data.draw(st.sampled_from(["time", "exclusive", "lsn", "latest"]), label="target kind")
        if kind == "lsn":
            target = RestoreTarget(lsn=data.draw(st.integers(1, commits[-1].lsn), label="lsn"))
        elif kind == "latest":
            target = RestoreTarget(latest=True)
        else:
            inside = [t for t in interesting_times(written) if commits[0].ts_ns <= t <= commits[-1].ts_ns]
            target = RestoreTarget(time_ns=data.draw(st.sampled_from(inside), label="time"),
                                   exclusive=kind == "exclusive")
        selection = data.draw(selections(), label="selection")
        event(f"target {kind}")

        async def restore_to(name: str, selected: KeySelection | None) -> RestoreResult | object:
            async with open_repository(os.path.join(root, "repo")) as repo:
                return await restore(repo, RestoreOptions(target=target, dest=os.path.join(root, name),
                                                          selection=selected))

        full_result = trio.run(restore_to, "full", None)
        full_rows, full_checkpoint = read_rows(os.path.join(root, "full"))
        if any(selection.selects(k) and not selection.landed(k) for k in full_rows):
            with pytest.raises(InvalidArgument, match="empty name"):  # a key renamed to nothing is refused
                trio.run(restore_to, "part", selection)
            event("refused: a key renamed to nothing")
            return
        part_result = trio.run(restore_to, "part", selection)
        assert isinstance(full_result, RestoreResult)
        assert isinstance(part_result, RestoreResult)
        part_rows, part_checkpoint = read_rows(os.path.join(root, "part"))
        assert part_rows == expected_rows(full_rows, selection), (selection, target)
        assert part_checkpoint == full_checkpoint
        assert part_result.target_lsn == full_result.target_lsn
        assert part_result.keys == len(part_rows)
        # and the full restore agrees with the model, so the comparison is not vacuous
        if kind == "time":
            assert target.time_ns is not None
            keys = {op.key for c in commits for op in c.ops}
            assert full_rows == state_at(commits, keys, target.time_ns)
        event("selection non-empty" if part_rows else "selection empty")


def test_a_selection_validates_its_renaming() -> None:
    with pytest.raises(InvalidArgument, match="strip"):
        KeySelection(prefixes=(b"/config/",), strip_prefix=b"/other/")
    with pytest.raises(InvalidArgument, match="at least one"):
        KeySelection()
    with pytest.raises(InvalidArgument, match="empty key"):
        KeySelection(keys=(b"/a",), strip_prefix=b"/a")
    moved = KeySelection(prefixes=(b"/config/",), strip_prefix=b"/config/", add_prefix=b"/restored/")
    assert moved.landed(b"/config/x") == b"/restored/x"
    assert moved.selects(b"/config/x")
    assert not moved.selects(b"/configx")


def test_a_partial_restore_filters_every_spill_of_the_replay(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from pitr.restore import prefix as prefix_restore

    monkeypatch.setattr(prefix_restore, "SPILL_EVERY", 1)  # filter after every run of blocks
    root = str(tmp_path)
    steps: list[tuple[object, ...]] = [("put", b"a/%d" % i, b"v%d" % i, None) for i in range(40)]
    steps += [("cycle",), ("snapshot",)]
    steps += [("put", b"b/%d" % i, b"w", None) for i in range(300)] + [("delete", b"a/3"), ("cycle",)]
    steps += [("put", b"a/%d" % i, b"x" * 300, None) for i in range(200, 400)] + [("cycle",)]
    trio.run(write_history, root, steps)

    async def restore_to(name: str, selected: KeySelection | None) -> None:
        async with open_repository(os.path.join(root, "repo")) as repo:
            await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=os.path.join(root, name),
                                               selection=selected))

    selection = KeySelection(prefixes=(b"a/",))
    trio.run(restore_to, "full", None)
    trio.run(restore_to, "part", selection)
    part, _ = read_rows(os.path.join(root, "part"))
    assert part == expected_rows(read_rows(os.path.join(root, "full"))[0], selection)
    assert len(part) == 239


def test_the_command_restores_a_renamed_prefix_and_refuses_what_it_cannot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers.cli import run_cli

    root = str(tmp_path)
    trio.run(write_history, root, [("put", b"a/1", b"one", None), ("put", b"a/2", b"two", None),
                                   ("put", b"b/1", b"other", None), ("cycle",)])
    repo, dest = os.path.join(root, "repo"), os.path.join(root, "moved")
    code, out, err = run_cli(capsys, "restore", "--latest", "--prefix", "a/", "--strip-prefix", "a/",
                             "--add-prefix", "z/", "--dest", dest, "--repo", repo)
    assert code == 0, err
    assert "restored only prefix b'a/'" in out
    assert read_rows(dest)[0] == {b"z/1": (b"one", None), b"z/2": (b"two", None)}
    code, _out, err = run_cli(capsys, "restore", "--latest", "--strip-prefix", "a/", "--dest", dest + "2",
                              "--repo", repo)
    assert code == 2
    assert "only with --prefix or --key" in err
    code, _out, err = run_cli(capsys, "restore", "--latest", "--key", "a/1", "--dest", "etcd://127.0.0.1:1/x",
                              "--repo", repo)
    assert code == 2
    assert "with one --prefix" in err


def test_a_key_expiring_at_the_target_is_not_restored(tmp_path: Path) -> None:
    root = str(tmp_path)
    written = trio.run(write_history, root, [("put", b"a/ttl", b"v", 5), ("tick", 20), ("put", b"b", b"x", None),
                                             ("cycle",)])
    expires = written.commits[0].ops[0].expires_at_ns
    assert expires is not None

    async def restore_at(name: str, ts_ns: int, selection: KeySelection) -> Rows:
        async with open_repository(os.path.join(root, "repo")) as repo:
            await restore(repo, RestoreOptions(target=RestoreTarget(time_ns=ts_ns), dest=os.path.join(root, name),
                                               selection=selection))
        return read_rows(os.path.join(root, name))[0]

    for selection in (KeySelection(keys=(b"a/ttl",)), KeySelection(prefixes=(b"a/",))):
        kind = "key" if selection.keys else "prefix"
        assert trio.run(restore_at, kind + "-before", expires - 1, selection) == {b"a/ttl": (b"v", expires)}
        assert trio.run(restore_at, kind + "-at", expires, selection) == {}  # expired at the cutoff
