"""Garbled pages of a store's state database: `pitr get` and `pitr export` answer right or refuse.

Each case copies a pristine data directory, garbles 40 bytes of some pages of
`state/data.mdb` (a pattern and a seed: random windows inside page bodies,
whole page starts, one page, a node's key or data size), and runs every read in
a forked child (a signal death fails the case, naming the read it died in).
A read either gives the true answer (the model's) or exits 1 with
`state_damaged` naming the file and the restore hint; never exit 0 with a
wrong value, and never "not found" for a key the store holds.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import time
import uuid
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from pitr.cli.main import main
from pitr.datadir.state import StateDB, StoreIdentity
from pitr.errors import StateDamaged
from pitr.jsonbytes import bytes_from_json
from segments.chain import genesis

KEYS = 12_000
PAGE = 4096
PATTERNS = ("body", "page_start", "one", "leaf_key_size", "leaf_data_size", "leaf_huge_size", "branch_body",
            "branch_duplicate")
SEEDS_PER_PATTERN = 3
PROBES = 60  # keys read per case, present and absent
FUTURE = 4_000_000_000 * 10**9


def key_of(i: int) -> bytes:
    return b"user:%06d" % (i * 7)  # absent keys sit between present ones


def model() -> dict[bytes, tuple[bytes, int | None]]:
    rng = random.Random(7)
    out: dict[bytes, tuple[bytes, int | None]] = {}
    for i in range(KEYS):
        size = 3000 if i % 997 == 0 else rng.randrange(4, 60)  # a few overflow values
        expires = FUTURE if i % 5 == 0 else (10**9 if i % 13 == 0 else None)  # some long expired
        out[key_of(i)] = (b"v%d-" % i + bytes(rng.randrange(256) for _ in range(size)), expires)
    return out


def build(data: Path, entries: dict[bytes, tuple[bytes, int | None]]) -> None:
    (data / "state").mkdir(parents=True, mode=0o700)
    state = StateDB(str(data / "state"))
    try:
        store_id = uuid.uuid4()
        state.init_identity(StoreIdentity(store_id, "pages", 1, 1, genesis(store_id)))
        items = list(entries.items())
        for n in range(0, len(items), 3000):  # several transactions: pages split and move
            chunk = {k: v if e is None else (v, e) for k, (v, e) in items[n:n + 3000]}
            state.apply(chunk, n // 3000 + 1, (n // 3000 + 1) * 1000)
    finally:
        state.close()


def pages_of(raw: bytes, flag: int) -> list[int]:
    return [p for p in range(2, len(raw) // PAGE) if struct.unpack_from("<QHH", raw, p * PAGE)[::2] == (p, flag)]


def garble(path: Path, pattern: str, rng: random.Random) -> list[int]:
    """Overwrite bytes of the pages `pattern` picks; returns the pages garbled."""
    raw = path.read_bytes()
    pages = len(raw) // PAGE
    leaves, branches = pages_of(raw, 0x02), pages_of(raw, 0x01)
    with open(path, "r+b") as fh:
        if pattern == "branch_duplicate":  # a node's offset names the next node: a cursor skips a child
            chosen = [p for p in branches if struct.unpack_from("<H", raw, p * PAGE + 12)[0] >= 16 + 2 * 3]
            for page in chosen:
                count = (struct.unpack_from("<H", raw, page * PAGE + 12)[0] - 16) // 2
                i = rng.randrange(1, count - 1)
                fh.seek(page * PAGE + 16 + 2 * i)
                fh.write(raw[page * PAGE + 18 + 2 * i : page * PAGE + 20 + 2 * i])
            assert chosen, "the state has no branch page of three children or more"
            return chosen
        if pattern == "leaf_huge_size":  # LMDB would copy gigabytes past the mapping
            chosen = sorted(rng.sample(leaves, min(3, len(leaves))))
            for page in chosen:
                count = (struct.unpack_from("<H", raw, page * PAGE + 12)[0] - 16) // 2
                node = struct.unpack_from("<H", raw, page * PAGE + 16 + 2 * rng.randrange(count))[0]
                fh.seek(page * PAGE + node)
                fh.write(b"\xf0\xff\xff\x7f")
            return chosen
        if pattern in ("leaf_key_size", "leaf_data_size"):
            chosen = sorted(rng.sample(leaves, min(3, len(leaves))))
            for page in chosen:
                count = (struct.unpack_from("<H", raw, page * PAGE + 12)[0] - 16) // 2
                node = struct.unpack_from("<H", raw, page * PAGE + 16 + 2 * rng.randrange(count))[0]
                where, value = (6, struct.pack("<H", rng.randrange(1, 600))) if pattern == "leaf_key_size" \
                    else (0, struct.pack("<H", rng.randrange(1, 5000)))
                fh.seek(page * PAGE + node + where)
                fh.write(value)
            return chosen
        chosen = {
            "body": [p for p in range(2, pages) if rng.random() < 0.1],
            "page_start": [p for p in range(2, pages) if rng.random() < 0.05],
            "one": [rng.randrange(2, pages)],
            "branch_body": branches,
        }[pattern]
        for page in chosen:
            offset = 0 if pattern == "page_start" else rng.randrange(16, PAGE - 40)
            fh.seek(page * PAGE + offset)
            fh.write(rng.randbytes(40))
    return sorted(chosen)


def run_reads(argvs: list[list[str]]) -> tuple[list[tuple[int, str, str]], int]:
    """Run each command line in one forked child, in turn; returns the results of those that
    finished and the child's exit status (negative: the signal that killed it)."""
    with tempfile.TemporaryDirectory() as tmp:
        results = os.path.join(tmp, "results")
        with warnings.catch_warnings():  # 3.12+ warns when forking with threads; the child only runs pitr
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                with open(results, "w") as out:
                    for argv in argvs:
                        stdout, stderr = io.StringIO(), io.StringIO()
                        code = 99
                        with redirect_stdout(stdout), redirect_stderr(stderr):
                            try:
                                main(argv)
                            except SystemExit as exc:
                                code = exc.code if isinstance(exc.code, int) else 98
                            except BaseException as exc:  # noqa: BLE001  # reported as a finding
                                code, _ = 97, print(repr(exc), file=sys.stderr)
                        out.write(json.dumps([code, stdout.getvalue(), stderr.getvalue()]) + "\n")
                        out.flush()
            finally:
                os._exit(0)
        deadline = time.monotonic() + 300
        while not (done := os.waitpid(pid, os.WNOHANG))[0]:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the reads hung for 300 s")
            time.sleep(0.01)
        with open(results) as fh:
            done_results = [tuple(json.loads(line)) for line in fh]
        return done_results, os.waitstatus_to_exitcode(done[1])  # type: ignore[misc]


def refused_as_damage(code: int, out: str, err: str, where: str) -> None:
    assert code == 1, f"{where}: exit {code}:\n{(out + err)[-2000:]}"
    text = out + err
    assert "state_damaged" in text or "state database is damaged" in text, f"{where}: not a state refusal:\n{text[-2000:]}"
    assert "data.mdb" in text, f"{where}: the refusal does not name the file:\n{text[-2000:]}"
    assert "pitr restore --latest" in text, f"{where}: the refusal has no restore hint:\n{text[-2000:]}"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[bytes, tuple[bytes, int | None]], str]:
    data = tmp_path_factory.mktemp("state-pages") / "data"
    entries = model()
    build(data, entries)
    results, status = run_reads([["export", "--data", str(data)]])
    assert status == 0, results
    assert results[0][0] == 0, results
    return data, entries, results[0][1]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_garbled_state_pages_never_give_a_wrong_answer(
        pristine: tuple[Path, dict[bytes, tuple[bytes, int | None]], str], tmp_path: Path, pattern: str,
        random_seed: int) -> None:
    root, entries, export = pristine
    now = time.time_ns()
    for round_ in range(SEEDS_PER_PATTERN):
        seed = random_seed + round_
        rng = random.Random(seed)
        work = tmp_path / f"data-{round_}"
        shutil.copytree(root, work)
        pages = garble(work / "state" / "data.mdb", pattern, rng)
        probes = [key_of(rng.randrange(KEYS)) for _ in range(PROBES * 2 // 3)]
        probes += [b"user:%06d" % (rng.randrange(KEYS) * 7 + 3) for _ in range(PROBES // 3)]
        probes += [b"a", b"zzz"]
        argvs = [["get", key.decode(), "--json", "--data", str(work)] for key in probes]
        argvs.append(["export", "--data", str(work)])
        results, status = run_reads(argvs)
        case = f"pages {pages[:8]}{'...' if len(pages) > 8 else ''} garbled ({pattern}, seed {seed})"
        assert status == 0, f"{case}: the reads were killed by signal {-status} at {argvs[len(results)][:2]}"
        for key, (code, out, err) in zip(probes, results, strict=False):
            where = f"get {key!r} over {case}"
            value, expires = entries.get(key, (None, None))
            live = value is not None and (expires is None or expires > now)
            if code == 0:
                assert live, f"{where}: exit 0 for a key the store does not hold"
                got = json.loads(out)
                assert got["found"] is True, where
                assert bytes_from_json(got["value"], what="value") == value, f"{where}: exit 0 with a wrong value"
            elif code == 1 and out and json.loads(out).get("found") is False:
                assert not live, f"{where}: 'not found' for a key the store holds"
            else:
                refused_as_damage(code, out, err, where)
        code, out, err = results[-1]
        if code == 0:
            assert out == export, f"export over {case}: exit 0 with a different answer"
        else:
            refused_as_damage(code, out, err, f"export over {case}")
        shutil.rmtree(work)



def test_a_leaf_that_lost_its_last_row_is_refused_by_whole_reads(
        pristine: tuple[Path, dict[bytes, tuple[bytes, int | None]], str], tmp_path: Path) -> None:
    """A leaf's node count cut by one (its `mp_lower` less 2) drops a row with no checksum to fail;
    the page walk of a whole read counts every tree's rows against its database record. (A single
    lookup of that key cannot see it: docs/decisions.md, "State database checks".)"""
    root, _entries, _export = pristine
    work = tmp_path / "data"
    shutil.copytree(root, work)
    path = work / "state" / "data.mdb"
    raw = path.read_bytes()
    leaf = pages_of(raw, 0x02)[len(pages_of(raw, 0x02)) // 2]
    lower = struct.unpack_from("<H", raw, leaf * PAGE + 12)[0]
    with open(path, "r+b") as fh:
        fh.seek(leaf * PAGE + 12)
        fh.write(struct.pack("<H", lower - 2))
    results, status = run_reads([["export", "--data", str(work)], ["verify", "--state", str(work), "--json"]])
    assert status == 0
    refused_as_damage(*results[0], f"export over leaf {leaf} cut short")
    code, out, _err = results[1]
    assert code == 1, out
    assert "entries" in out, out


def test_the_writer_s_own_scan_refuses_rows_out_of_order(
        pristine: tuple[Path, dict[bytes, tuple[bytes, int | None]], str], tmp_path: Path, random_seed: int) -> None:
    """The writer does not walk its pages: its scans (snapshots) rely on the key order check when
    a garbled branch makes the cursor visit a leaf twice."""
    root, _entries, _export = pristine
    work = tmp_path / "data"
    shutil.copytree(root, work)
    garble(work / "state" / "data.mdb", "branch_duplicate", random.Random(random_seed))
    state = StateDB(str(work / "state"))
    try:
        with pytest.raises(StateDamaged, match="out of order"):
            list(state.iter_range(b"", None))
    finally:
        state.close()
