"""Garbled catalog pages: every command answers right or refuses naming `.catalog` and `pitr reindex`.

LMDB trusts every offset, size and page number in its pages, so a garbled
page used to kill a reader with SIGBUS (or an LMDB assertion's SIGABRT) with no
message. Each case copies a pristine repository, garbles 40 bytes of some pages
of `.catalog/data.mdb` (a pattern and a seed: every page, all but the meta
pages, random pages, the last pages, one page, page bodies), and runs commands
in a forked child (tests/damage/test_matrix.py `run_forked`) so that a signal
death fails the case instead of the test run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import uuid
from pathlib import Path

import pytest
import trio

from pitr.repo.identity import RepoIdentity
from pitr.repo.repository import open_repository
from segments import encode_record, genesis, seal_segment, segment_name
from segments.record import Span, delete, put
from tests.damage.test_matrix import Result, run_forked

T0 = 1_795_961_387_000_000_000
COMMITS = 30_000
PER_SEGMENT = 6_000
HOT = b"hot/counter"
PATTERNS = ("all", "all_but_meta", "random", "last", "one", "body", "meta_only",
            "leaf_data_size", "leaf_key_size", "leaf_as_branch")
TARGETED = {"leaf_data_size": (0, b"\xf0\xff\xff\xff"), "leaf_key_size": (6, b"\xff\xff"),
            "leaf_as_branch": (-1, b"\x01\x00")}
SEEDS_PER_PATTERN = 4


def key_of(lsn: int) -> bytes:
    return HOT if lsn % 7 == 0 else b"user:%06d" % (lsn * 7919 % 4000)


def build(root: str) -> None:
    """A repository of COMMITS commits in five segments (written directly), then indexed."""
    store_id = uuid.uuid4()
    os.makedirs(os.path.join(root, "segments"))
    ident = RepoIdentity(store_id, "pages", T0 - 1, 1, genesis(store_id))
    with open(os.path.join(root, "pitr-repository"), "wb") as fh:
        fh.write(ident.encode())
    prev = ident.start_chain_digest
    for first in range(1, COMMITS + 1, PER_SEGMENT):
        parts, spans, size = [], [], 0
        for lsn in range(first, first + PER_SEGMENT):
            op = delete(key_of(lsn)) if lsn % 11 == 0 else put(key_of(lsn), b"v%d" % lsn)
            data = encode_record(lsn, T0 + lsn * 1000, [op])
            spans.append(Span(lsn, T0 + lsn * 1000, size, size + len(data)))
            parts.append(data)
            size += len(data)
        path = os.path.join(root, "segments", segment_name(first, first + PER_SEGMENT - 1))
        with open(path, "wb") as out:
            prev = seal_segment(out, store_id, prev, b"".join(parts), spans, spans[-1].ts_ns).chain_digest

    async def index() -> None:
        async with open_repository(root) as repo:
            await repo.sync()

    trio.run(index)


def leaf_pages(path: str) -> list[int]:
    """The leaf pages of the catalog's named databases (not the main database's root)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    metas = [raw[0:160], raw[4096:4256]]
    main_root = struct.unpack_from("<Q", max(metas, key=lambda m: struct.unpack_from("<Q", m, 144)[0]), 128)[0]
    return [p for p in range(2, len(raw) // 4096)
            if p != main_root and struct.unpack_from("<QHH", raw, p * 4096)[::2] == (p, 0x02)]


def garble_leaves(path: str, pattern: str, rng: random.Random) -> list[int]:
    """Set one field of the first node of some leaf pages, keeping the page header valid: a data
    size of 4 GiB, a key size of 64 KiB, or the page's type to branch."""
    where, value = TARGETED[pattern]
    leaves = leaf_pages(path)
    chosen = sorted(rng.sample(leaves, min(3, len(leaves))))
    with open(path, "r+b") as fh:
        for page in chosen:
            fh.seek(page * 4096 + 16)
            node = struct.unpack("<H", fh.read(2))[0]
            fh.seek(page * 4096 + (10 if where < 0 else node + where))
            fh.write(value)
    return chosen


def garble(path: str, pattern: str, rng: random.Random) -> list[int]:
    """Overwrite 40 bytes of the pages `pattern` picks; returns the pages garbled."""
    if pattern in TARGETED:
        return garble_leaves(path, pattern, rng)
    pages = os.path.getsize(path) // 4096
    chosen = {
        "all": range(pages),
        "all_but_meta": range(2, pages),
        "random": [p for p in range(pages) if rng.random() < 0.15],
        "last": range(max(0, pages - 3), pages),
        "one": [rng.randrange(2, pages)],
        "body": range(2, pages),
        "meta_only": [rng.randrange(2)],
    }[pattern]
    with open(path, "r+b") as fh:
        for page in chosen:
            offset = rng.randrange(16, 4096 - 40) if pattern == "body" else 0
            fh.seek(page * 4096 + offset)
            fh.write(rng.randbytes(40))
    return list(chosen)


def commands(repo: str) -> dict[str, list[str]]:
    at = T0 + 20_000 * 1000 + 500
    return {
        "history": ["history", HOT.decode(), "--values", "--json", "--repo", repo],
        "get_at": ["get", "user:000123", "--at", f"{at // 10**9}.{at % 10**9:09d}", "--json", "--repo", repo],
        "timeline": ["timeline", "--json", "--repo", repo],
        "verify": ["verify", "--json", "--repo", repo],  # reads every catalog row
    }


def comparable(out: str) -> object:
    """A command's JSON answer without what differs between two runs (verify's duration)."""
    lines = [json.loads(line) for line in out.splitlines()]  # history prints JSON lines
    for value in lines:
        for report in value if isinstance(value, list) else []:
            if isinstance(report, dict):
                report.pop("seconds", None)
    return lines


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Result]]:
    root = tmp_path_factory.mktemp("pages") / "repo"
    build(str(root))
    run_forked(commands(str(root))["verify"])  # verify records its results: every later answer shows them
    answers = {name: run_forked(argv) for name, argv in commands(str(root)).items()}
    for name, result in answers.items():
        assert result.code == 0, f"pristine {name}: {result.err}"
    return root, answers


@pytest.mark.parametrize("pattern", PATTERNS)
def test_garbled_catalog_pages_never_kill_a_command(pristine: tuple[Path, dict[str, Result]], tmp_path: Path,
                                                     pattern: str, random_seed: int) -> None:
    root, answers = pristine
    for round_ in range(SEEDS_PER_PATTERN):
        seed = random_seed + round_
        work = tmp_path / f"repo-{round_}"
        shutil.copytree(root, work, symlinks=True)
        pages = garble(str(work / ".catalog" / "data.mdb"), pattern, random.Random(seed))
        for name, argv in commands(str(work)).items():
            where = f"{name} over catalog pages {pages[:8]}{'...' if len(pages) > 8 else ''} garbled ({pattern}, seed {seed})"
            result = run_forked(argv)
            assert result.code >= 0, f"{where}: killed by signal {-result.code}:\n{result.err[-2000:]}"
            text = result.out + result.err
            if result.code == 0:
                want = answers[name].out.replace(str(root), str(work))
                assert comparable(result.out) == comparable(want), f"{where}: exit 0 with a different answer"
            else:
                assert result.code == 1, f"{where}: exit {result.code}:\n{text[-2000:]}"
                assert ".catalog" in text, f"{where}: the refusal does not name the catalog:\n{text[-2000:]}"
                assert "pitr reindex" in text, f"{where}: the refusal does not say `pitr reindex`:\n{text[-2000:]}"
        shutil.rmtree(work)
