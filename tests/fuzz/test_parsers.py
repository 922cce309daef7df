"""Fuzzing every parser of untrusted archive bytes: segments, snapshots, repository documents.

Each case mutates a valid file, raw or re-sealed (checksums recomputed so the
mutation gets past them, see tests/fuzz/reseal.py), and feeds it to the
readers. The contract: a reader either raises from the `segments` error tree
(or `CorruptData` for documents) with a message naming the file, or accepts
the file; an accepted file whose digests still match the original's gives
exactly the original's records or entries (a mutation cannot change an answer
without changing what the chain or state digest commits to). No other
exception, no hang (an alarm per case), bounded memory (tracemalloc peak per case).

The seed is printed; rerun a failure with PITR_TEST_SEED=<seed> (tests/helpers/seeds.py).
PITR_FUZZ_ROUNDS sets the cases per test (default 250).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from pitr.archiver import ArchiveOptions
from pitr.errors import CorruptData
from pitr.repo.documents import decode_document, encode_document
from pitr.repo.identity import IDENTITY_MAGIC, WATERMARK_MAGIC, RepoIdentity, Watermark
from segments import BytesSource, SegmentReader, SegmentsError, SnapshotReader, read_meta
from segments import record as rec
from segments.__main__ import main as segments_main
from tests.audit.model import Step, Written, write_history
from tests.fuzz.reseal import mutate_bytes, mutate_field, rebuild_segment, reseal_segment, reseal_snapshot
from tests.helpers.cli import run_cli
from tests.helpers.seeds import chosen_seed, rerun_hint
from tests.segments.strategies import STORE_ID, plain_records, seal, seal_chain
from tests.segments.test_snapshot import HEADER, write_snapshot

SEED = chosen_seed()
ROUNDS = int(os.environ.get("PITR_FUZZ_ROUNDS") or 250)
CASE_SECONDS = 30  # a parser still running after this is hung, not slow
NO_MERGE = ArchiveOptions(interval=3600.0, merge_count=1000)
MEMORY_LIMIT = 48 << 20  # the files are a few KiB; only a length read from the file could allocate more


def rng_for(test: str) -> random.Random:
    print(f"fuzz ({test}): {rerun_hint(SEED)}")
    return random.Random(f"{SEED}:{test}")


class Hung(Exception):
    pass


@contextmanager
def bounded(what: str) -> Iterator[None]:
    """Fail the case if it runs past CASE_SECONDS or allocates more than MEMORY_LIMIT."""
    def alarm(_signum: int, _frame: object) -> None:
        raise Hung(f"{what}: still running after {CASE_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(CASE_SECONDS)
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert peak < MEMORY_LIMIT, f"{what}: allocated {peak} bytes at peak"


def names_file(exc: Exception, name: str, what: str) -> None:
    assert name in str(exc), f"{what}: the error does not name the file: {exc}"


# segments --------------------------------------------------------------------------------------

RECORDS = plain_records(1000, 60, value_size=30) + [
    rec.Record(1060, 1_795_961_387_000_100_000, (rec.put(b"ttl", b"v", 1_795_961_400_000_000_000),
                                                 rec.delete(b"gone")), 7),
]
SEGMENT, SEALED = seal(RECORDS, block_size=600, complete_through_ns=RECORDS[-1].ts_ns + 10)
NAME = "00000000000000001000-00000000000000001060.seg"


def mutated_segment(rng: random.Random) -> tuple[bytes, str]:
    mode = rng.choice(["raw", "reseal", "reseal-field", "rebuild"])
    if mode == "raw":
        data, what = mutate_bytes(rng, SEGMENT)
    elif mode == "reseal":
        data, what = mutate_bytes(rng, SEGMENT)
        data = reseal_segment(data)
    elif mode == "reseal-field":
        region = rng.choice([(0, 128), (len(SEGMENT) - 136, len(SEGMENT) - 40), (SEALED.blocks[-1].offset,
                                                                                  len(SEGMENT) - 136)])
        data, what = mutate_field(rng, SEGMENT, *region)
        data = reseal_segment(data)
    else:
        data, what = rebuild_segment(rng, SEGMENT)
    return data, f"{mode} {what}"


def check_segment(data: bytes, what: str) -> None:
    """The segment readers on `data`: a named segments error, or the original's records."""
    with bounded(what):
        try:
            reader = SegmentReader(BytesSource(data, NAME))
        except SegmentsError as exc:
            names_file(exc, NAME, what)
            return
        try:  # the audit path: blocks read and decoded without the full verification
            unverified = list(reader.iter_records(skip_unknown=True))
        except SegmentsError as exc:
            names_file(exc, NAME, what)
            unverified = None
        try:
            reader.verify()
            lenient = list(reader.iter_records(skip_unknown=True))
            records = list(reader.iter_records())  # an unknown record type is an error here
        except SegmentsError as exc:
            names_file(exc, NAME, what)
            return
    meta = reader.meta
    assert unverified == lenient == records, f"{what}: a verified file read differently before verification"
    assert [r.lsn for r in records] == list(range(meta.first_lsn, meta.last_lsn + 1)), what
    if (meta.header.prev_chain_digest, meta.chain_digest) == (SEALED.prev_chain_digest, SEALED.chain_digest):
        assert records == RECORDS, f"{what}: accepted with the original chain digest but different records"


def test_segment_parsers_survive_mutation() -> None:
    rng = rng_for("segment")
    for case in range(ROUNDS):
        data, what = mutated_segment(rng)
        check_segment(data, f"seed {SEED} case {case}: {what}")


def test_segments_command_line_survives_mutation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = rng_for("segments-cli")
    for case in range(max(ROUNDS // 10, 10)):
        data, what = mutated_segment(rng)
        path = tmp_path / NAME
        path.write_bytes(data)
        for command in (["verify", str(path)], ["verify", "--json", str(path)], ["dump", str(path)]):
            with bounded(what):
                code = segments_main(command)
            out, err = capsys.readouterr()
            assert code in (0, 1), f"seed {SEED} case {case}: {what}: {command} exited {code}: {err}"
            assert "Traceback" not in err + out
            if code == 1:
                assert NAME in err + out, f"seed {SEED} case {case}: {what}: {command} names no file"


def test_segments_verify_of_a_chain_blames_or_reads_true(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m segments verify` of two linked segments, the first mutated: exit 1 naming a file,
    or exit 0 only when the first still holds the original records and chain digest."""
    rng = rng_for("segments-chain")
    (first, first_sealed), (second, _) = seal_chain(RECORDS, [30], block_size=600)
    names = ["00000000000000001000-00000000000000001029.seg", "00000000000000001030-00000000000000001060.seg"]
    (tmp_path / names[1]).write_bytes(second)
    for case in range(max(ROUNDS // 10, 10)):
        mode = rng.choice(["raw", "reseal", "rebuild"])
        if mode == "rebuild":
            data, what = rebuild_segment(rng, first)
        else:
            data, what = mutate_bytes(rng, first)
            data = reseal_segment(data) if mode == "reseal" else data
        what = f"seed {SEED} case {case}: {mode} {what}"
        (tmp_path / names[0]).write_bytes(data)
        with bounded(what):
            code = segments_main(["verify", str(tmp_path / names[0]), str(tmp_path / names[1])])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, what
        assert code in (0, 1), what
        if code == 1:
            assert names[0] in out + err or names[1] in out + err, f"{what}: names no file"
            continue
        reader = SegmentReader(BytesSource(data, names[0]))
        assert reader.meta.chain_digest == first_sealed.chain_digest, f"{what}: verify passed a broken link"
        assert list(reader.iter_records()) == RECORDS[:30], f"{what}: verify passed altered records"


def test_resealing_reaches_past_the_checksums() -> None:
    """The re-sealers are right: an intact file re-sealed is unchanged, a rebuilt one passes its outer checks."""
    assert reseal_segment(SEGMENT) == SEGMENT
    assert reseal_snapshot(SNAPSHOT) == SNAPSHOT
    rng = rng_for("reseal")
    for _ in range(50):
        rebuilt, what = rebuild_segment(rng, SEGMENT)
        try:
            read_meta(BytesSource(rebuilt))  # header, index, pieces, trailer and chain digest all agree
        except SegmentsError as exc:
            if "bad size or record count" not in str(exc):  # a block cut shorter than its records can be
                pytest.fail(f"{what}: a rebuilt segment fails its outer checks: {exc}")


# snapshots -------------------------------------------------------------------------------------

ENTRIES: list[tuple[bytes, bytes, int | None]] = sorted(
    (b"key/%04d" % i, b"value %d " % i * (i % 7), 1_795_961_400_000_000_000 + i if i % 5 == 0 else None)
    for i in range(80))
SNAPSHOT = write_snapshot(ENTRIES, block_size=512, header=HEADER)
SNAP_NAME = "00000000000000000042-2026-11-29T14:09:47Z.snap"
ORIGINAL = SnapshotReader(BytesSource(SNAPSHOT, SNAP_NAME))


def mutated_snapshot(rng: random.Random) -> tuple[bytes, str]:
    mode = rng.choice(["raw", "reseal", "reseal-field"])
    if mode == "reseal-field":
        footer = len(SNAPSHOT) - 112
        region = rng.choice([(0, ORIGINAL.header.size), (ORIGINAL.footer.index_offset, footer),
                             (footer, len(SNAPSHOT) - 40)])
        data, what = mutate_field(rng, SNAPSHOT, *region)
    else:
        data, what = mutate_bytes(rng, SNAPSHOT)
    return (data if mode == "raw" else reseal_snapshot(data)), f"{mode} {what}"


def test_snapshot_parsers_survive_mutation() -> None:
    rng = rng_for("snapshot")
    probes = [ENTRIES[0][0], ENTRIES[37][0], ENTRIES[-1][0], b"absent", b""]
    for case in range(ROUNDS):
        data, what = mutated_snapshot(rng)
        what = f"seed {SEED} case {case}: {what}"
        with bounded(what):
            try:
                reader = SnapshotReader(BytesSource(data, SNAP_NAME))
                for key in probes:  # point reads do not verify the whole file, but must fail cleanly
                    reader.get(key)
                reader.verify()
                entries = list(reader.iter_entries())
            except SegmentsError as exc:
                names_file(exc, SNAP_NAME, what)
                continue
        if reader.footer.state_digest == ORIGINAL.footer.state_digest:
            assert entries == ENTRIES, f"{what}: accepted with the original state digest but other entries"


# repository documents --------------------------------------------------------------------------

IDENTITY = RepoIdentity(STORE_ID, "orders", 1_795_961_387_000_000_000, 1, b"\x01" * 32).encode()
WATERMARK = Watermark(STORE_ID, 1060, 1_795_961_387_000_200_000).encode()


def reseal_document(data: bytes) -> bytes:
    """Recompute the checksum line over everything before it (or append one)."""
    from crc32c import crc32c

    head, sep, _tail = data.rpartition(b"crc32c:")
    head = head if sep else data
    return head + f"crc32c:{crc32c(head):08x}\n".encode()


DECODERS: list[tuple[bytes, Callable[[bytes, str], Any]]] = [
    (IDENTITY, lambda data, name: decode_document(IDENTITY_MAGIC, 1, data, name)),
    (WATERMARK, lambda data, name: decode_document(WATERMARK_MAGIC, 1, data, name))]


def test_repository_documents_survive_mutation() -> None:
    """The document parser (the fields' types and ranges are checked after it, by identity.py)."""
    rng = rng_for("documents")
    for case in range(ROUNDS * 2):
        original, decode = rng.choice(DECODERS)
        data, what = mutate_bytes(rng, original)
        if rng.random() < 0.7:
            data, what = reseal_document(data), f"reseal {what}"
        what = f"seed {SEED} case {case}: {what}"
        with bounded(what):
            try:
                assert isinstance(decode(data, "identity"), dict)
            except CorruptData as exc:
                names_file(exc, "identity", what)


def test_a_deeply_nested_document_is_corrupt_data() -> None:
    data = encode_document(IDENTITY_MAGIC, 1, {}).replace(b"{}", b"[" * 30000 + b"]" * 30000)
    with pytest.raises(CorruptData, match="identity"):
        RepoIdentity.decode(reseal_document(data), "identity")


# a restore over a fuzzed repository --------------------------------------------------------------

HISTORY: list[Step] = []
for _i in range(36):
    HISTORY.append(("put", b"k%d" % (_i % 6), b"v%d" % _i, None) if _i % 7 else ("delete", b"k%d" % (_i % 6)))
    HISTORY.append(("tick", 1000))
    if _i % 9 == 8:
        HISTORY.append(("cycle",))
    if _i in (13, 27):
        HISTORY.append(("snapshot",))
HISTORY.append(("cycle",))


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Written]:
    root = tmp_path_factory.mktemp("fuzzed-repo")
    written: Written = trio.run(lambda: write_history(str(root), HISTORY, options=NO_MERGE))
    return root / "repo", written


def true_state(written: Written, lsn: int) -> dict[str, str]:
    state: dict[str, str] = {}
    for commit in written.commits:
        if commit.lsn > lsn:
            break
        for op in commit.ops:
            if op.kind == rec.PUT:
                state[op.key.decode()] = op.value.decode()
            else:
                state.pop(op.key.decode(), None)
    return state


def test_a_restore_over_a_fuzzed_repository_is_right_or_refuses(
        archived: tuple[Path, Written], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = rng_for("restore")
    pristine, written = archived
    files = sorted(p.relative_to(pristine) for p in pristine.rglob("*") if p.suffix in (".seg", ".snap"))
    last = written.commits[-1].lsn
    refused = 0
    for case in range(max(ROUNDS // 10, 12)):
        repo = tmp_path / f"repo-{case}"
        shutil.copytree(pristine, repo)
        victim = repo / rng.choice(files)
        original = victim.read_bytes()
        forged = False
        if victim.suffix == ".seg":
            mode = rng.choice(["raw", "reseal", "rebuild"])
            if mode == "rebuild":
                data, what = rebuild_segment(rng, original)
                # re-sealed down to its chain digest, a segment is a consistent forgery, not damage: only
                # the next segment's link (and a later snapshot's binding) can expose it, and a restore
                # that stops inside it never reads those (verify reports the broken link)
                forged = "+digests" in what
            else:
                data, what = mutate_bytes(rng, original)
                data = reseal_segment(data) if mode == "reseal" else data
        else:
            mode = rng.choice(["raw", "reseal"])
            data, what = mutate_bytes(rng, original)
            data = reseal_snapshot(data) if mode == "reseal" else data
        os.chmod(victim, 0o600)
        victim.write_bytes(data)
        lsn = rng.randrange(1, last + 1)
        what = f"seed {SEED} case {case}: {victim.name} {mode} {what}, restore --lsn {lsn}"
        monkeypatch.setenv("PITR_CACHE_DIR", str(tmp_path / f"cache-{case}"))
        dest = tmp_path / f"restored-{case}"
        flags = ["--no-verify"] if rng.random() < 0.3 else []
        # --no-verify trusts the block CRCs alone: records re-sealed inside a block, and a snapshot whose
        # block CRCs and file digest were recomputed over the change (its state digest is what a
        # verifying restore checks), are beyond its promise
        forged = forged or (bool(flags) and ("+record crcs" in what or (victim.suffix == ".snap"
                                                                        and mode == "reseal")))
        code, _out, err = run_cli(capsys, "restore", "--repo", str(repo), "--lsn", str(lsn), "--dest", str(dest),
                                  *flags)
        assert "Traceback" not in err, what
        if code != 0:
            assert code == 1, f"{what}: exit {code}: {err}"
            assert err.strip(), f"{what}: refused without a word"
            assert not dest.exists() or not any(dest.iterdir()), f"{what}: a refused restore left {dest}"
            refused += 1
            continue
        code, out, err = run_cli(capsys, "export", "--data", str(dest))
        assert code == 0, f"{what}: the restored store does not export: {err}"
        got = {str(json.loads(line)["key"]): str(json.loads(line)["value"]) for line in out.splitlines()}
        if not forged:
            assert got == true_state(written, lsn), f"{what}: restore exited 0 with a state other than the true one"
    print(f"{refused} restores refused")
