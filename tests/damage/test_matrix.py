"""The damage matrix: every repository file kind x every damage x every command, run as a user runs it.

Each cell copies the pristine repository (tests/damage/golden.py), damages
one file, runs one command through the real entry point in-process, and
asserts the outcome written in EXPECTED below:

- RIGHT: exit 0 with the true answer (from the model or the undamaged repository);
- REFUSE: exit 1 naming the damaged file, the LSN range it held, or the repository;
- EITHER: one of the two;
- SHORT (restore --latest over a damaged newest segment): a refusal, or a
  restore of an earlier point that is exactly right and names the damage.

No cell may exit 0 with a wrong answer, show a traceback or report an
internal error.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from pitr.cli.main import main
from pitr.store import Store
from tests.damage.golden import HOT_KEY, Golden, build_golden

RIGHT, REFUSE, EITHER, SHORT = "right", "refuse", "either", "short"
MID_LSN = 225  # restore --lsn and get --at target: inside the middle segment
DIFF_FROM_LSN = 120
KINDS = ("segment_mid", "segment_newest", "snapshot_newest", "catalog", "identity", "watermark")
DAMAGES = ("flip", "truncate", "delete", "garbage")
COMMANDS = ("verify", "timeline", "restore_latest", "restore_mid", "history", "log", "get_at", "diff", "archive")
NEW_COMMITS = 5

# kind -> command -> outcome, for every damage of that kind (overrides below)
EXPECTED: dict[str, dict[str, str]] = {
    # LSNs 201..250 are unreadable: no base after them until the snapshot at 300
    "segment_mid": {"verify": REFUSE, "timeline": EITHER, "restore_latest": RIGHT, "restore_mid": REFUSE,
                    "history": REFUSE, "log": REFUSE, "get_at": REFUSE, "diff": REFUSE, "archive": EITHER},
    # LSNs 351..400 are unreadable
    "segment_newest": {"verify": REFUSE, "timeline": EITHER, "restore_latest": SHORT, "restore_mid": RIGHT,
                       "history": REFUSE, "log": REFUSE, "get_at": RIGHT, "diff": RIGHT, "archive": EITHER},
    # the log is whole from LSN 1: everything is still answerable (a restore falls back to the older base)
    "snapshot_newest": {"verify": REFUSE, "timeline": EITHER, "restore_latest": RIGHT, "restore_mid": RIGHT,
                        "history": RIGHT, "log": RIGHT, "get_at": RIGHT, "diff": RIGHT, "archive": EITHER},
    # derived data: rebuilt from the files, or refused with the reindex hint
    "catalog": dict.fromkeys(COMMANDS, EITHER),
    # the repository's identity: readers may refuse; verify and the archiver must
    "identity": {**dict.fromkeys(COMMANDS, EITHER), "verify": REFUSE, "archive": REFUSE},
    # the known-complete time: a damaged one is reported by verify
    "watermark": {**dict.fromkeys(COMMANDS, EITHER), "verify": REFUSE},
}
OVERRIDES: dict[tuple[str, str, str], str] = {
    # a hole before the snapshot the new commits follow: archiving goes on (the new commits stay
    # restorable from that base) and names the hole (docs/decisions.md); archiving after a hole
    # with no base after it is refused by the archiver (tests/archiver/test_lost_repository.py)
    ("segment_mid", "delete", "archive"): EITHER,
    # a deleted snapshot leaves the log whole: the windows are the same, and cleanup deletes
    # snapshots too, so verify may pass as long as what it prints is true
    ("snapshot_newest", "delete", "verify"): EITHER,
    # a catalog that is simply gone is rebuilt from the files: every answer is right
    **{("catalog", "delete", command): RIGHT for command in COMMANDS},
    # without a watermark the archive is complete only through its last commit: verify may pass
    ("watermark", "delete", "verify"): EITHER,
}
REMOVED = dict.fromkeys(COMMANDS, REFUSE)  # the whole repository removed


def expected(kind: str, damage: str, command: str) -> str:
    if kind == "repository":
        return REMOVED[command]
    return OVERRIDES.get((kind, damage, command), EXPECTED[kind][command])


CELLS = [(kind, damage, command) for kind in KINDS for damage in DAMAGES for command in COMMANDS]
CELLS += [("repository", "removed", command) for command in COMMANDS]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class World:
    golden: Golden
    work: Path  # cells run here: work/repo, work/data, work/restored
    pristine: dict[str, Result]
    isolated: bool = False  # run commands in a subprocess (a damaged LMDB file can kill its reader)

    @property
    def repo(self) -> str:
        return str(self.work / "repo")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str, isolated: bool = False) -> Result:
    """`pitr ARGV` in-process, or in a forked child when `isolated` (a crash then fails one cell only)."""
    if isolated:
        return run_forked(list(argv))
    capsys.readouterr()  # what was printed before (seeds, cell names) is not the command's output
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exc.value.code
    assert isinstance(code, int), f"exit code {code!r}"
    return Result(code, out, err)


def run_forked(argv: list[str]) -> Result:
    """Run the entry point in a forked child: cheaper than a new interpreter, and a SIGBUS stays there."""
    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        with warnings.catch_warnings():  # 3.12+ warns when forking with threads; the child only runs pitr
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 99
            try:
                with open(out_path, "w") as out, open(err_path, "w") as err:
                    sys.stdout, sys.stderr = out, err
                    try:
                        main(argv)
                    except SystemExit as exc:
                        code = exc.code if isinstance(exc.code, int) else 98
                    except BaseException:
                        traceback.print_exc()
                    out.flush()
                    err.flush()
            finally:
                os._exit(code)
        deadline = time.monotonic() + 120
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"pitr {' '.join(argv)} hung for 120 s")
            time.sleep(0.005)
        code = os.waitstatus_to_exitcode(status)
        with open(out_path) as out, open(err_path) as err:
            return Result(code, out.read(), err.read())


def secs(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def command_argv(world: World, command: str) -> list[str]:
    repo, ts = ["--repo", world.repo], world.golden.ts
    dest = str(world.work / "restored")
    return {
        "verify": ["verify", "--json", *repo],
        "timeline": ["timeline", "--json", *repo],
        "restore_latest": ["restore", "--latest", "--dest", dest, "--json", *repo],
        "restore_mid": ["restore", "--lsn", str(MID_LSN), "--dest", dest, "--json", *repo],
        "history": ["history", HOT_KEY, "--values", "--json", *repo],
        "log": ["log", "--json", *repo],
        "get_at": ["get", HOT_KEY, "--at", secs(ts[MID_LSN]), "--json", *repo],
        "diff": ["diff", secs(ts[DIFF_FROM_LSN]), secs(ts[MID_LSN]), "--json", *repo],
        "archive": ["archive", "--data", str(world.work / "data"), "--json", *repo],
    }[command]


def fresh_copy(world: World, *, with_data: bool) -> None:
    for name in ("repo", "data", "restored"):
        shutil.rmtree(world.work / name, ignore_errors=True)
    shutil.copytree(world.golden.repo, world.repo, symlinks=True)
    if with_data:
        shutil.copytree(world.golden.data, world.work / "data", symlinks=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("golden")
    work = tmp_path_factory.mktemp("cell")
    golden = build_golden(str(root), str(work))
    return World(golden, work, {})


def pristine(world: World, capsys: pytest.CaptureFixture[str], command: str) -> Result:
    """The command's answer over the undamaged repository (cached)."""
    if command not in world.pristine:
        fresh_copy(world, with_data=False)
        if command == "timeline":
            run_cli(capsys, "verify", "--repo", world.repo)
        result = run_cli(capsys, *command_argv(world, command))
        assert result.code == 0, f"pristine {command}: {result.err}"
        world.pristine[command] = result
    return world.pristine[command]


def damaged_path(world: World, kind: str) -> str:
    g = world.golden
    return {
        "segment_mid": os.path.join(world.repo, "segments", g.segment_names()[4]),
        "segment_newest": os.path.join(world.repo, "segments", g.segment_names()[-1]),
        "snapshot_newest": os.path.join(world.repo, "snapshots", g.snapshot_names()[-1]),
        "catalog": os.path.join(world.repo, ".catalog", "data.mdb"),
        "identity": os.path.join(world.repo, "pitr-repository"),
        "watermark": newest_watermark(world.repo),
        "repository": world.repo,
    }[kind]


def newest_watermark(repo: str) -> str:
    """The watermark object readers use: the newest by name (LSN, then time, in fixed-width hex)."""
    directory = os.path.join(repo, "watermarks")
    return os.path.join(directory, max(os.listdir(directory)))


def damage_file(path: str, kind: str, damage: str, rng: random.Random) -> None:
    if damage == "removed":
        shutil.rmtree(path)
        return
    size = os.path.getsize(path)
    if damage == "delete":
        if kind == "catalog":
            shutil.rmtree(os.path.dirname(path))
        else:
            os.unlink(path)
    elif damage == "truncate":
        os.truncate(path, size // 2)
    elif damage == "garbage":
        with open(path, "wb") as fh:
            fh.write(rng.randbytes(size))
    elif damage == "flip":
        with open(path, "r+b") as fh:
            fh.seek(size // 2)
            byte = fh.read(1)
            fh.seek(size // 2)
            fh.write(bytes([byte[0] ^ 0x5A]))


def damaged_lsns(world: World, kind: str) -> tuple[int, int] | None:
    if kind not in ("segment_mid", "segment_newest"):
        return None
    name = os.path.basename(damaged_path(world, kind))
    first, last = name.removesuffix(".seg").split("-")
    return int(first), int(last)


def names_the_damage(world: World, kind: str, text: str) -> bool:
    """Whether `text` names the damaged file, the LSNs it held or (removed) the repository."""
    if kind == "repository":
        return world.repo in text
    needle = {"catalog": ".catalog", "identity": "pitr-repository", "watermark": "watermark"}.get(kind)
    if needle is not None:
        return needle in text
    if os.path.basename(damaged_path(world, kind)) in text:
        return True
    span = damaged_lsns(world, kind)
    if span is None:
        return False
    first, last = span
    named = [(int(m.group(1)), int(m.group(2) or m.group(1)))
             for m in re.finditer(r"LSNs? (\d+)(?:\s*\.\.\s*(\d+))?", text)]
    named += [(int(m.group(1)), int(m.group(2)))  # a hole in --json output
              for m in re.finditer(r'"first_lsn": (\d+), "last_lsn": (\d+)', text)]
    return any(low <= last and high >= first for low, high in named)


def restorable_lsns(kind: str) -> list[tuple[int, int]]:
    """The LSN windows that are truly restorable after damage of `kind`."""
    if kind == "segment_mid":
        return [(0, 200), (300, 400)]
    if kind == "segment_newest":
        return [(0, 350)]
    return [(0, 400)]


def restored_state(data: str, read_at_ns: int) -> dict[str, str]:
    """The keys of a restored store as seen at `read_at_ns` (its TTLs are judged then, not today)."""
    async def read() -> dict[str, str]:
        async with Store(data, clock=lambda: read_at_ns) as store:
            return {k.decode(): v.decode() for k, v in await store.scan()}

    return trio.run(read)


def latest_cutoffs(world: World, capsys: pytest.CaptureFixture[str]) -> list[int]:
    windows = json.loads(pristine(world, capsys, "timeline").out)[0]["windows"]
    return [windows[-1]["end_ns"], world.golden.ts[400]]


def answer_is_right(world: World, capsys: pytest.CaptureFixture[str], kind: str, command: str,
                    result: Result, outcome: str) -> str | None:
    """None if an exit-0 answer is the true one, else why it is wrong."""
    g = world.golden
    if command == "verify":
        return None if outcome != REFUSE else "verify passed a damaged repository"
    if command == "timeline":
        rows = json.loads(result.out)
        got = [(w["start_lsn"], w["end_lsn"]) for w in rows[0]["windows"]]
        want = restorable_lsns(kind)
        return None if got == want else f"timeline windows {got}, truly restorable {want}"
    if command in ("restore_latest", "restore_mid"):
        summary = json.loads(result.out)
        state = restored_state(str(world.work / "restored"), g.ts[summary["lsn"]])
        if command == "restore_mid":
            want = g.state_at(MID_LSN, g.ts[MID_LSN])
            return None if state == want and summary["lsn"] == MID_LSN else \
                f"restored LSN {summary['lsn']} holds {len(state)} keys that differ from the model at {MID_LSN}"
        lsn = summary["lsn"]
        if outcome == SHORT:
            if not names_the_damage(world, kind, result.out + result.err):
                return f"restore --latest stopped at LSN {lsn} without naming the damaged file"
            cutoffs = [g.ts[lsn], g.ts.get(lsn + 1, g.ts[lsn] + 1) - 1]
        else:
            cutoffs = latest_cutoffs(world, capsys) if lsn == 400 else []
        if any(state == g.state_at(lsn, c) for c in cutoffs):
            return None
        return f"restore --latest reached LSN {lsn}; its {len(state)} keys are not the model's state there"
    if command == "archive":
        check = run_cli(capsys, "log", "--since-lsn", "401", "--json", "--repo", world.repo, isolated=world.isolated)
        if check.code != 0:
            return f"archive exited 0 but the repository cannot serve the new commits: {check.err.strip()}"
        lsns = [row["lsn"] for row in map(json.loads, check.out.splitlines())]
        want_lsns = list(range(401, 401 + NEW_COMMITS))
        return None if lsns == want_lsns else f"archive exited 0; the repository holds new LSNs {lsns}"
    want_out = pristine(world, capsys, command).out
    return None if result.out == want_out else f"{command} answered differently from the undamaged repository"


def verify_blames_only_the_damage(world: World, kind: str, result: Result) -> str | None:
    """A failed verify names only the damaged file and prints the windows that truly remain."""
    if kind not in ("segment_mid", "segment_newest", "snapshot_newest"):
        return None
    try:
        [report] = json.loads(result.out)
        findings, windows = report["findings"], report["windows"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"verify --json printed no report with findings and windows ({exc!r}): {result.out[:500]}"
    damaged = os.path.basename(damaged_path(world, kind))
    blamed = sorted({os.path.basename(f["file"]) for f in findings if f.get("file")} - {damaged})
    if blamed:
        return f"verify blames healthy files {blamed} for damage to {damaged}"
    got = [(w["start_lsn"], w["end_lsn"]) for w in windows]
    want = restorable_lsns(kind)
    return None if got == want else f"verify prints windows {got}, truly restorable {want}"


async def _commit_more(data: str) -> None:
    async with Store(data) as store:
        for i in range(NEW_COMMITS):
            await store.put(f"new{i}".encode(), b"after the damage")


@pytest.mark.parametrize(("kind", "damage", "command"), CELLS, ids=["-".join(c) for c in CELLS])
def test_cell(world: World, capsys: pytest.CaptureFixture[str], kind: str, damage: str, command: str) -> None:
    outcome = expected(kind, damage, command)
    if command in ("history", "log", "get_at", "diff"):
        pristine(world, capsys, command)
    if command == "restore_latest":
        pristine(world, capsys, "timeline")
    seed = zlib.crc32(f"{kind} {damage} {command}".encode())
    where = f"cell {kind} x {damage} x {command} (expect {outcome}; garbage seed {seed})"
    world.isolated = kind == "catalog" and damage != "delete"
    fresh_copy(world, with_data=command == "archive")
    if command == "archive":
        trio.run(_commit_more, str(world.work / "data"))
    damage_file(damaged_path(world, kind), kind, damage, random.Random(seed))
    if command == "timeline":  # timeline shows what verification found: verify first, as an operator does
        run_cli(capsys, "verify", "--repo", world.repo, isolated=world.isolated)
    result = run_cli(capsys, *command_argv(world, command), isolated=world.isolated)
    text = result.out + result.err
    assert "Traceback" not in text, f"{where}: {text}"
    assert result.code >= 0, f"{where}: killed by signal {-result.code}:\n{result.err[-2000:]}"
    assert result.code != 70, f"{where}: internal error: {result.err}"
    if result.code == 0:
        assert outcome != REFUSE, f"{where}: exit 0 where a refusal naming the damage was due:\n{text[-2000:]}"
        wrong = answer_is_right(world, capsys, kind, command, result, outcome)
        assert wrong is None, f"{where}: {wrong}"
    else:
        assert outcome != RIGHT, f"{where}: refused (exit {result.code}) where the true answer is known:\n{result.err}"
        assert result.code == 1, f"{where}: exit {result.code}:\n{result.err}"
        assert names_the_damage(world, kind, text), f"{where}: the refusal does not name the damage:\n{text[-2000:]}"
        if command == "verify":
            wrong = verify_blames_only_the_damage(world, kind, result)
            assert wrong is None, f"{where}: {wrong}"


@pytest.mark.parametrize("damage", [*DAMAGES, "regular_file"])
def test_reindex_rebuilds_the_catalog_whatever_its_state(world: World, capsys: pytest.CaptureFixture[str],
                                                         damage: str) -> None:
    """The catalog is derived data: `pitr reindex` rebuilds it from nothing, then every answer is right."""
    want = pristine(world, capsys, "history")
    fresh_copy(world, with_data=False)
    path = damaged_path(world, "catalog")
    if damage == "regular_file":
        shutil.rmtree(os.path.dirname(path))
        with open(os.path.dirname(path), "wb") as fh:
            fh.write(b"not a catalog\n")
    else:
        damage_file(path, "catalog", damage, random.Random(zlib.crc32(damage.encode())))
    result = run_cli(capsys, "reindex", "--repo", world.repo, isolated=True)
    assert result.code == 0, f"reindex over a catalog damaged by {damage}: exit {result.code}\n{result.err}"
    result = run_cli(capsys, *command_argv(world, "verify"), isolated=True)
    assert result.code == 0, f"verify after reindex: exit {result.code}\n{result.out}{result.err}"
    fresh = run_cli(capsys, *command_argv(world, "history"), isolated=True)
    assert (fresh.code, fresh.out) == (0, want.out)
