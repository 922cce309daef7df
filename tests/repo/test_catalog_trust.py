"""The catalog is derived and checked (issue 11, items 2, 6, 7, 15, 16): refuse or be right over its damage."""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lmdb
import pytest
import trio

from pitr.catalog.catalog import DB_NAMES, Catalog
from pitr.catalog.keytable import ENTRY_SIZE, key_digest
from pitr.catalog.rows import CRC_SIZE, dump_json, seal
from pitr.cli.main import main
from pitr.errors import CatalogDamaged, DiskFull, NotARepository
from pitr.repo.repository import _write_cache, open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.store import Store
from pitr.timeline import build_timeline
from pitr.verify import verify_repository
from pitr.verify.checks import chain_findings
from tests.repo.history import History, build_history, files

COMPARED = (b"segments", b"blocks", b"times", b"keytables", b"keychunks", b"snapshots")


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(str(tmp_path_factory.mktemp("merged")), commits=200, snapshot_every=80)


@pytest.fixture(scope="module")
def unmerged(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(str(tmp_path_factory.mktemp("unmerged")), commits=120, snapshot_every=60,
                         merge_count=1000)


def copy_repo(history: History, dst: Path, *, catalog: bool = True) -> str:
    ignore = shutil.ignore_patterns(".work") if catalog else shutil.ignore_patterns(".work", ".catalog")
    shutil.copytree(history.repo, dst, ignore=ignore)
    return str(dst)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    assert isinstance(exc.value.code, int)
    assert "Traceback" not in out + err
    return exc.value.code, out, err


async def verify(repo_dir: str, mode: str = "full", files: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    async with open_repository(repo_dir) as repo:
        return await verify_repository(repo, mode=mode, files=files)


async def timeline_of(repo_dir: str):  # type: ignore[no-untyped-def]
    async with open_repository(repo_dir) as repo:
        await repo.sync()
        return build_timeline(repo.catalog, await repo.require_identity())


async def sync_report(repo_dir: str):  # type: ignore[no-untyped-def]
    async with open_repository(repo_dir) as repo:
        return await repo.sync()


def raw_rows(repo_dir: str) -> dict[bytes, list[tuple[bytes, bytes]]]:
    catalog = Catalog(os.path.join(repo_dir, ".catalog"))
    assert catalog.env is not None
    try:
        with catalog.env.begin() as txn:
            return {name: [(bytes(k), bytes(v)) for k, v in txn.cursor(catalog._dbs[name])] for name in DB_NAMES}
    finally:
        catalog.close()


def put_raw(repo_dir: str, db: bytes, key: bytes, value: bytes | None) -> None:
    catalog = Catalog(os.path.join(repo_dir, ".catalog"))
    assert catalog.env is not None
    try:
        with catalog.env.begin(write=True) as txn:
            if value is None:
                txn.delete(key, db=catalog._dbs[db])
            else:
                txn.put(key, value, db=catalog._dbs[db])
    finally:
        catalog.close()


def decoded(repo_dir: str) -> tuple[object, ...]:
    catalog = Catalog(os.path.join(repo_dir, ".catalog"))
    try:
        return (catalog.segments(), catalog.blocks(), catalog.times(), list(catalog.key_index()),
                catalog.snapshots())
    finally:
        catalog.close()


def read_everything(catalog: Catalog) -> None:
    catalog.segments()
    catalog.blocks()
    catalog.times()
    list(catalog.key_index())
    catalog.snapshots()
    catalog.gaps()
    catalog.file_checks()
    catalog.watermark()
    catalog.get_meta("store_id")


def mutate(value: bytes, rng: random.Random) -> bytes:
    how = rng.choice(("flip", "truncate", "garbage", "empty", "extend"))
    if how == "flip":
        data = bytearray(value)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if how == "truncate":
        return value[: rng.randrange(len(value))]
    if how == "garbage":
        return rng.randbytes(rng.randrange(1, 64))
    if how == "empty":
        return b""
    return value + rng.randbytes(rng.randrange(1, 8))


# item 7: rows carry checksums ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(24))
def test_a_damaged_row_is_catalog_damaged_never_a_traceback(merged: History, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    repo = copy_repo(merged, tmp_path / "repo")
    rows = raw_rows(repo)
    db = rng.choice([name for name in DB_NAMES if rows[name] and name != b"meta"] + [b"meta"])
    key, value = rng.choice(rows[db])
    damaged = mutate(value, rng)
    if damaged == value:
        damaged = value + b"x"
    print(f"seed {seed}: {db.decode()}/{key.hex()} {value.hex()} -> {damaged.hex()}")
    put_raw(repo, db, key, damaged)
    catalog = Catalog(os.path.join(repo, ".catalog"))
    try:
        if catalog.damage is not None:
            exc_value: CatalogDamaged = catalog.damage
        else:
            with pytest.raises(CatalogDamaged) as exc:
                read_everything(catalog)
            exc_value = exc.value
        assert exc_value.hint is not None
        assert "reindex" in exc_value.hint
        assert ".catalog" in str(exc_value)
    finally:
        catalog.close()
    report = trio.run(verify, repo)
    if report.ok:  # only when catching up rewrote the row from the files (the watermark row)
        catalog = Catalog(os.path.join(repo, ".catalog"))
        try:
            read_everything(catalog)
        finally:
            catalog.close()
    else:
        assert any(f.kind == "catalog" and "reindex" in f.message for f in report.findings)


@pytest.mark.parametrize("seed", range(24))
def test_a_resealed_wrong_row_is_found_by_verify_or_is_harmless(merged: History, tmp_path: Path, seed: int) -> None:
    """Rows whose checksum was recomputed after the damage: the catalog-against-files check catches them."""
    rng = random.Random(1000 + seed)
    repo = copy_repo(merged, tmp_path / "repo")
    before = decoded(repo)
    rows = raw_rows(repo)
    db = rng.choice([name for name in COMPARED if rows[name]])
    key, value = rng.choice(rows[db])
    payload = value[:-CRC_SIZE]
    changed = mutate(payload, rng) if payload else rng.randbytes(4)
    print(f"seed {seed}: {db.decode()}/{key.hex()} payload {payload.hex()} -> {changed.hex()}")
    put_raw(repo, db, key, seal(db, key, changed))
    try:
        after = decoded(repo)
    except CatalogDamaged:
        after = None  # refused on read: fine
    report = trio.run(verify, repo)
    if after == before:
        return  # the change decodes to the same rows (such as a hex digit's case)
    assert not report.ok, f"verify passed a catalog whose {db.decode()} row was changed"
    assert any(f.kind == "catalog" for f in report.findings)


def test_a_missing_key_index_row_fails_verify_with_the_reindex_hint(
        merged: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = copy_repo(merged, tmp_path / "repo")
    key, _value = raw_rows(repo)[b"keychunks"][1]
    put_raw(repo, b"keychunks", key, None)
    code, out, _err = cli(capsys, "verify", "--repo", repo)
    assert code == 1
    table_lsn = int.from_bytes(key[:8], "big")
    assert f"the key table of LSNs {table_lsn}.." in out
    assert "reindex" in out
    assert cli(capsys, "reindex", "--repo", repo)[0] == 0
    assert cli(capsys, "verify", "--repo", repo)[0] == 0


def test_a_forged_key_index_row_fails_verify(merged: History, tmp_path: Path) -> None:
    repo = copy_repo(merged, tmp_path / "repo")
    key, value = raw_rows(repo)[b"keychunks"][1]
    payload = value[:-CRC_SIZE]
    last = payload[-ENTRY_SIZE:]  # its LSN one further on: a commit that did not touch the key
    forged = last[:16] + (int.from_bytes(last[16:24], "big") + 1).to_bytes(8, "big") + last[24:]
    put_raw(repo, b"keychunks", key, seal(b"keychunks", key, payload[:-ENTRY_SIZE] + forged))
    report = trio.run(verify, repo)
    assert not report.ok
    assert any("no segment implies" in f.message for f in report.findings)


def garble(catalog_dir: str, how: str) -> None:
    data = os.path.join(catalog_dir, "data.mdb")
    if how == "garbage":
        Path(data).write_bytes(random.Random(5).randbytes(os.path.getsize(data)))
    elif how == "meta pages zeroed":
        with open(data, "r+b") as fh:
            fh.write(b"\0" * 8192)
    elif how == "regular file":
        shutil.rmtree(catalog_dir)
        Path(catalog_dir).write_bytes(b"not a catalog\n")
    elif how in ("format 1", "format 2", "format 9"):
        shutil.rmtree(catalog_dir)
        env = lmdb.open(catalog_dir, max_dbs=12)
        with env.begin(write=True) as txn:
            meta = env.open_db(b"meta", txn=txn)
            if how == "format 1":
                txn.put(b"format", b"1", db=meta)
            else:  # a sealed row, as formats 2 and later write it, beside a row of the old layout
                txn.put(b"format", seal(b"meta", b"format", dump_json(int(how[-1]))), db=meta)
                txn.put(b"\0" * 8, b"an old key-index row", db=env.open_db(b"keys", txn=txn))
        env.close()


@pytest.mark.parametrize("how", ["garbage", "meta pages zeroed", "regular file", "format 9"])
def test_a_garbled_catalog_is_reported_by_every_command_and_reindex_rebuilds_it(
        merged: History, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    repo = copy_repo(merged, tmp_path / "repo")
    garble(os.path.join(repo, ".catalog"), how)
    code, out, _err = cli(capsys, "verify", "--repo", repo)
    assert code == 1
    assert "CATALOG" in out
    assert "reindex" in out
    for argv in (["timeline"], ["history", "key001"], ["log"], ["get", "key001", "--at", "2099-01-01T00:00:00Z"],
                 ["restore", "--latest", "--dest", str(tmp_path / "dest")]):
        code, _out, err = cli(capsys, *argv, "--repo", repo)
        assert code == 1, argv
        assert "catalog" in err, (argv, err)
        assert "pitr reindex" in err, (argv, err)
    assert not os.path.exists(tmp_path / "dest")
    code, out, _err = cli(capsys, "reindex", "--repo", repo, "--json")
    assert code == 0
    assert json.loads(out)[0]["segments"] > 0
    assert cli(capsys, "verify", "--repo", repo)[0] == 0
    assert cli(capsys, "timeline", "--repo", repo)[0] == 0


# item 15: what indexing could not read is remembered and is a hole naming the file ---------------------------------
def test_an_unindexable_segment_is_remembered_and_is_a_hole_naming_it(
        unmerged: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = copy_repo(unmerged, tmp_path / "repo", catalog=False)
    segs = sorted(files(repo, "segments"))
    victim = segs[len(segs) // 2]
    data = bytearray(Path(victim).read_bytes())
    data[len(data) // 2] ^= 0x10
    Path(victim).write_bytes(bytes(data))
    name = os.path.basename(victim)
    code, out, _err = cli(capsys, "reindex", "--repo", repo)
    assert code == 1
    assert f"cannot index {name}" in out
    # a later command, in a new process, still knows: the catalog recorded it
    report = trio.run(sync_report, repo)
    assert [c.name for c in report.unindexed] == [name]
    assert [n for n, _why in report.broken] == [name]
    tl = trio.run(timeline_of, repo)
    first, last = (int(x) for x in name[:-4].split("-"))
    assert any(h.first_lsn <= first and last <= h.last_lsn and name in h.reason for h in tl.holes)
    assert not any(w.start_lsn < first <= w.end_lsn for w in tl.windows)
    code, out, _err = cli(capsys, "timeline", "--repo", repo)
    assert code == 1
    assert name in out
    assert f"LSN {first}..{last}" in out
    code, out, err = cli(capsys, "verify", "--replay", "--repo", repo)
    assert code == 1
    assert f"BROKEN {name}" in out, err


# item 6: blame only damaged files; windows equal what restores and what timeline prints --------------------------------
def test_verify_blames_only_the_damaged_file_and_prints_the_timelines_windows(
        unmerged: History, tmp_path: Path) -> None:
    repo = copy_repo(unmerged, tmp_path / "repo")
    segs = sorted(files(repo, "segments"))
    victim = segs[len(segs) // 2]
    os.unlink(segs[1])  # a hole too, in front of the damage
    data = bytearray(Path(victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(victim).write_bytes(bytes(data))
    report = trio.run(verify, repo)
    assert not report.ok
    assert {f.file for f in report.findings} == {os.path.basename(victim)}
    assert len(report.holes) == 2
    tl = trio.run(timeline_of, repo)
    assert tl.windows == report.windows
    assert tl.holes == report.holes
    # every window restores: its end is exactly the model at that LSN
    models = {lsn: model for lsn, _ts, model in unmerged.commits}
    for w in report.windows:
        if w.end_lsn == 0:
            continue
        dest = str(tmp_path / f"dest{w.end_lsn}")

        async def restore_to(lsn: int = w.end_lsn, dest: str = dest) -> dict[bytes, bytes]:
            async with open_repository(repo) as r:
                await restore(r, RestoreOptions(target=RestoreTarget(lsn=lsn), dest=dest))
            async with Store(dest) as store:
                return dict(await store.scan())

        assert trio.run(restore_to) == models[w.end_lsn]


def test_verify_of_named_files_speaks_only_of_them(
        unmerged: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = copy_repo(unmerged, tmp_path / "repo")
    segs = sorted(files(repo, "segments"))
    os.unlink(segs[2])  # damage elsewhere must not show up
    healthy = os.path.basename(segs[-1])
    report = trio.run(verify, repo, "full", (healthy,))
    assert report.ok
    assert report.scope == "files"
    assert not report.windows
    assert report.checked == [healthy]
    code, out, _err = cli(capsys, "verify", healthy, "--repo", repo)
    assert code == 0
    assert out.strip() == f"{repo}: {healthy}: OK (full)"


# item 2 (verify side): nothing restorable, or a hole, is a failed check ------------------------------------------------
def test_verify_fails_when_nothing_is_restorable(unmerged: History, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    repo = copy_repo(unmerged, tmp_path / "repo")
    for path in files(repo, "segments"):
        os.unlink(path)
    for path in files(repo, "snapshots"):
        os.unlink(path)
    code, out, _err = cli(capsys, "verify", "--repo", repo)
    assert code == 1
    assert "nothing is restorable" in out
    code, out, _err = cli(capsys, "verify", "--repo", repo, "--json")
    assert code == 1
    assert json.loads(out)[0]["ok"] is False


def test_verify_and_timeline_json_name_holes_and_show_times(unmerged: History, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    repo = copy_repo(unmerged, tmp_path / "repo")
    segs = sorted(files(repo, "segments"))
    os.unlink(segs[len(segs) // 2])
    first, last = (int(x) for x in os.path.basename(segs[len(segs) // 2])[:-4].split("-"))
    code, out, _err = cli(capsys, "verify", "--repo", repo, "--json")
    doc = json.loads(out)[0]
    assert code == 1
    assert doc["holes"][0]["first_lsn"] == first
    assert doc["holes"][0]["last_lsn"] == last
    assert all(w["start"].endswith("Z") for w in doc["windows"])
    code, out, _err = cli(capsys, "timeline", "--repo", repo, "--json")
    assert code == 1
    assert json.loads(out)[0]["holes"] == doc["holes"]
    code, out, _err = cli(capsys, "verify", "--repo", repo)
    assert out.count("restorable:") == 1
    assert "Finding(" not in out
    assert len(set(line for line in out.splitlines() if "LSN" in line and ".." in line)) == \
        len([line for line in out.splitlines() if "LSN" in line and ".." in line])


# item 16 (catalog side): a full disk is DiskFull, one line, not a traceback ----------------------------------------------
class FullDiskEnv:
    """An LMDB environment whose write transactions fail as on a full disk."""

    def __init__(self, env: lmdb.Environment) -> None:
        self.env = env

    def begin(self, write: bool = False, **kw: object) -> object:
        if write:
            raise lmdb.Error("mdb_txn_commit: No space left on device")
        return self.env.begin(**kw)  # type: ignore[arg-type]


def test_a_full_disk_under_the_catalog_is_disk_full(merged: History, tmp_path: Path) -> None:
    repo = copy_repo(merged, tmp_path / "repo")
    catalog = Catalog(os.path.join(repo, ".catalog"))
    real = catalog.env
    assert real is not None
    catalog.env = FullDiskEnv(real)  # type: ignore[assignment]
    try:
        segment = catalog.segments()[0]
        with pytest.raises(DiskFull) as exc:
            catalog.add_segment(segment, [], [])
        assert ".catalog" in str(exc.value)
        assert exc.value.hint
        with pytest.raises(DiskFull):
            catalog.set_meta("watermark", [1, 2])
    finally:
        catalog.env = real
        catalog.close()


# private files, and a clear error for a missing repository --------------------------------------------------------------
def test_catalog_work_and_cache_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        async def open_new() -> None:
            async with open_repository(str(tmp_path / "repo"), create=True) as repo:
                repo.catalog.set_meta("probe", 1)

        trio.run(open_new)
        _write_cache(str(tmp_path / "cache" / "objects" / "segments" / "x.seg"), b"data")
    finally:
        os.umask(old)
    for path in (tmp_path / "repo", tmp_path / "repo" / ".catalog", tmp_path / "repo" / ".work",
                 tmp_path / "cache", tmp_path / "cache" / "objects" / "segments"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    for path in (tmp_path / "repo" / ".catalog" / "data.mdb", tmp_path / "repo" / ".catalog" / "lock.mdb",
                 tmp_path / "cache" / "objects" / "segments" / "x.seg"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


@pytest.mark.parametrize("how", ["format 1", "format 2"])
def test_a_catalog_of_an_older_format_is_rebuilt_by_the_next_command_with_a_notice(
        merged: History, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    """The catalog is derived data: one written by an earlier pitr is rebuilt, not a refusal to work around."""
    repo = copy_repo(merged, tmp_path / "repo")
    code, expected, err = cli(capsys, "history", "key001", "--repo", repo, "--json")
    assert code == 0, err
    garble(os.path.join(repo, ".catalog"), how)
    code, out, err = cli(capsys, "history", "key001", "--repo", repo, "--json")
    assert code == 0, err
    assert out == expected
    assert f"the catalog had format {how[-1]}" in err
    assert "rebuilding it" in err
    code, out, err = cli(capsys, "history", "key001", "--repo", repo, "--json")
    assert (code, out) == (0, expected)
    assert "catalog" not in err, "the rebuild happens once"
    assert cli(capsys, "verify", "--repo", repo)[0] == 0


def test_a_missing_repository_directory_is_not_a_repository(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    async def open_missing() -> None:
        async with open_repository(str(tmp_path / "nope")):
            pass

    with pytest.raises(NotARepository):
        trio.run(open_missing)
    code, _out, err = cli(capsys, "verify", "--repo", str(tmp_path / "nope"))
    assert code == 1
    assert "does not exist" in err
    assert "PITR_REPO" in err


def test_catalog_row_checksum_matches_the_format_spec_vectors() -> None:
    assert seal(b"meta", b"format", b"2").hex() == "324f9d08e2"
    key = (1).to_bytes(8, "big")
    assert seal(b"gaps", key, (5).to_bytes(8, "big")).hex() == "0000000000000005" "23310a8f"


def fake_meta(name: str, first: int, last: int, prev: bytes, digest: bytes) -> Any:
    header = SimpleNamespace(store_id="s", first_lsn=first, prev_chain_digest=prev)
    return SimpleNamespace(name=name, header=header, first_lsn=first, last_lsn=last, chain_digest=digest)


def test_a_replaced_segment_is_blamed_and_its_healthy_successor_is_not() -> None:
    a = fake_meta("a.seg", 1, 10, b"g", b"A")
    replaced = fake_meta("b.seg", 11, 20, b"forged", b"B'")  # links to nothing; the original ended in b"B"
    c = fake_meta("c.seg", 21, 30, b"B", b"C")
    d = fake_meta("d.seg", 41, 50, b"D0", b"D")  # after a hole: not a chain fault of d
    findings = chain_findings([(m.name, m) for m in (a, replaced, c, d)], b"g")
    assert [f.file for f in findings] == ["b.seg"]


def test_a_damaged_key_next_to_the_answer_is_damage_not_a_shorter_answer(merged: History, tmp_path: Path) -> None:
    """A row whose key was damaged moves out of the key's range; the lookups must not stop quietly before it."""
    repo = copy_repo(merged, tmp_path / "repo")
    catalog = Catalog(os.path.join(repo, ".catalog"))
    try:
        versions = list(catalog.key_versions(b"key001"))
        assert len(versions) > 2
    finally:
        catalog.close()
    digest = key_digest(b"key001")
    rows = [(k, v) for k, v in raw_rows(repo)[b"keychunks"]
            if any(v[at : at + 8] == digest for at in range(0, len(v) - CRC_SIZE, ENTRY_SIZE))]
    newest_key, newest_value = rows[-1]
    put_raw(repo, b"keychunks", newest_key, None)
    put_raw(repo, b"keychunks", newest_key + b"\0", newest_value)  # the key grew a byte: its checksum fails
    catalog = Catalog(os.path.join(repo, ".catalog"))
    try:
        with pytest.raises(CatalogDamaged):
            list(catalog.key_versions(b"key001"))
        with pytest.raises(CatalogDamaged):
            catalog.key_version_at(b"key001", 1 << 62)
    finally:
        catalog.close()
