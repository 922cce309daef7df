"""Repository documents (identity, watermark) are untrusted input: a valid checksum is not enough,
every field is checked for type and range, and anything wrong is CorruptData naming file and field."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from crc32c import crc32c
from hypothesis import given
from hypothesis import strategies as st

from pitr.cli.main import main
from pitr.errors import CorruptData, NotARepository
from pitr.repo import layout, watermarks
from pitr.repo.documents import MAX_INT
from pitr.repo.identity import IDENTITY_MAGIC, WATERMARK_MAGIC, RepoIdentity, Watermark
from pitr.repo.repository import open_repository
from pitr.timeline import build_timeline

NAME = "/repo/pitr-repository"
GOOD_IDENTITY: dict[str, Any] = {
    "store_id": "0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11", "name": "orders", "created_ns": 1_800_000_000_000_000_000,
    "first_lsn": 1, "start_chain_digest": "ab" * 32, "source": "embedded",
    "parent": {"store_id": "5e0f53a6-6f7e-4b1d-8f55-3d2a1c0b9e8f", "lsn": 41, "ts_ns": 7, "target": "LSN 41"}}
GOOD_WATERMARK: dict[str, Any] = {"store_id": GOOD_IDENTITY["store_id"], "lsn": 9, "complete_through_ns": 5}


def document(magic: str, body: str | bytes, version: int = 1) -> bytes:
    """A document with a correct checksum over whatever body it is given."""
    raw = body.encode() if isinstance(body, str) else body
    head = f"{magic} {version}\n".encode() + raw + b"\n"
    return head + f"crc32c:{crc32c(head):08x}\n".encode()


def test_good_documents_decode() -> None:
    ident = RepoIdentity.decode(document(IDENTITY_MAGIC, json.dumps(GOOD_IDENTITY)), NAME)
    assert ident.store_id == uuid.UUID(GOOD_IDENTITY["store_id"])
    assert ident.start_chain_digest == bytes.fromhex("ab" * 32)
    assert ident.parent == GOOD_IDENTITY["parent"]
    assert RepoIdentity.decode(ident.encode(), NAME) == ident
    mark = Watermark.decode(document(WATERMARK_MAGIC, json.dumps(GOOD_WATERMARK)), NAME)
    assert (mark.lsn, mark.complete_through_ns) == (9, 5)


BAD_IDENTITY_FIELDS = [
    ("store_id", 5), ("store_id", "not-a-uuid"), ("store_id", None), ("store_id", "0" * 36),
    ("name", 5), ("name", ["x"]), ("name", "x" * 5000),
    ("created_ns", "12"), ("created_ns", 1.5), ("created_ns", True), ("created_ns", -1), ("created_ns", 2**70),
    ("first_lsn", 0), ("first_lsn", -3), ("first_lsn", 2**63), ("first_lsn", False), ("first_lsn", {"a": 1}),
    ("start_chain_digest", "zz" * 32), ("start_chain_digest", "ab" * 31), ("start_chain_digest", 7),
    ("start_chain_digest", "AB" * 32),
    ("source", 3), ("source", "postgres"),
    ("parent", "x"), ("parent", []), ("parent", {"store_id": 5, "lsn": 1, "ts_ns": 1}),
    ("parent", {"store_id": GOOD_IDENTITY["store_id"], "lsn": -1, "ts_ns": 1}),
    ("parent", {"store_id": GOOD_IDENTITY["store_id"], "lsn": 1, "ts_ns": 1, "target": [[[]]]}),
]


@pytest.mark.parametrize(("field", "value"), BAD_IDENTITY_FIELDS)
def test_identity_with_a_wrong_field_is_corrupt_data_naming_file_and_field(field: str, value: object) -> None:
    body = {**GOOD_IDENTITY, field: value}
    with pytest.raises(CorruptData) as info:
        RepoIdentity.decode(document(IDENTITY_MAGIC, json.dumps(body)), NAME)
    assert info.value.path == NAME
    assert NAME in str(info.value)
    assert f"'{field}" in str(info.value)


@pytest.mark.parametrize("missing", ["store_id", "name", "created_ns", "first_lsn", "start_chain_digest"])
def test_identity_missing_a_field_is_corrupt_data(missing: str) -> None:
    body = {k: v for k, v in GOOD_IDENTITY.items() if k != missing}
    with pytest.raises(CorruptData, match=repr(missing)):
        RepoIdentity.decode(document(IDENTITY_MAGIC, json.dumps(body)), NAME)


@pytest.mark.parametrize(("field", "value"), [
    ("store_id", 5), ("lsn", -1), ("lsn", 1.0), ("lsn", True), ("lsn", 2**64),
    ("complete_through_ns", 2**70), ("complete_through_ns", "5"), ("complete_through_ns", None),
])
def test_watermark_with_a_wrong_field_is_corrupt_data(field: str, value: object) -> None:
    body = {**GOOD_WATERMARK, field: value}
    with pytest.raises(CorruptData, match=repr(field)) as info:
        Watermark.decode(document(WATERMARK_MAGIC, json.dumps(body)), NAME)
    assert info.value.path == NAME


@pytest.mark.parametrize("body", [
    '{"store_id": "x", "lsn": 1e400, "complete_through_ns": 1}',  # a float that overflows int()
    '{"lsn": NaN}', '{"lsn": Infinity}', "[" * 20000 + "]" * 20000, '"just a string"', "[1, 2]",
    b'{"lsn": "\xff\xfe"}', '{"lsn": ' + "9" * 5000 + "}",
])
def test_bodies_that_are_not_plain_json_objects_are_corrupt_data(body: str | bytes) -> None:
    with pytest.raises(CorruptData) as info:
        Watermark.decode(document(WATERMARK_MAGIC, body), NAME)
    assert info.value.path == NAME


@pytest.mark.parametrize("data", [
    b"", b"PITRWMK 1\n{}\ncrc32c:zzzzzzzz\n", b"PITRWMK 1\n{}\ncrc32c: 1_0\n",
    document(WATERMARK_MAGIC, "{}", version=0), document(WATERMARK_MAGIC, "{}", version=9),
    document(IDENTITY_MAGIC, json.dumps(GOOD_WATERMARK)), b"x" * (70 << 10),
])
def test_framing_damage_is_corrupt_data(data: bytes) -> None:
    with pytest.raises(CorruptData):
        Watermark.decode(data, NAME)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)


def outcome(decode: Any, data: bytes) -> Any:
    """What decoding gives: the document, or the CorruptData refusal (any other exception escapes)."""
    try:
        return decode(data, NAME)
    except CorruptData as exc:
        return exc


@given(fields=st.dictionaries(st.sampled_from(sorted(GOOD_IDENTITY)), json_values, max_size=4))
def test_any_identity_body_decodes_to_valid_fields_or_is_corrupt_data(fields: dict[str, Any]) -> None:
    ident = outcome(RepoIdentity.decode, document(IDENTITY_MAGIC, json.dumps({**GOOD_IDENTITY, **fields})))
    if isinstance(ident, CorruptData):
        assert ident.path == NAME
        # (type too: True == 1, yet True is a changed, invalid first_lsn)
        assert all(key in GOOD_IDENTITY and (GOOD_IDENTITY[key] != value or type(GOOD_IDENTITY[key]) is not type(value))
                   for key, value in fields.items()
                   if f"'{key}" in str(ident)), "the field named is one that was changed"
    else:
        assert isinstance(ident.store_id, uuid.UUID)
        assert isinstance(ident.name, str)
        assert type(ident.created_ns) is int
        assert 0 <= ident.created_ns <= MAX_INT
        assert type(ident.first_lsn) is int
        assert 1 <= ident.first_lsn <= MAX_INT
        assert len(ident.start_chain_digest) == 32
        assert ident.parent is None or isinstance(ident.parent, dict)


@given(data=st.binary(max_size=300))
def test_random_bytes_with_a_fresh_checksum_never_escape_as_another_error(data: bytes) -> None:
    for magic, decode in ((IDENTITY_MAGIC, RepoIdentity.decode), (WATERMARK_MAGIC, Watermark.decode)):
        result = outcome(decode, document(magic, data))
        assert isinstance(result, CorruptData | RepoIdentity | Watermark)


@pytest.mark.anyio
async def test_require_identity_is_not_a_repository_with_a_hint(tmp_path: Path) -> None:
    async with open_repository(str(tmp_path / "repo"), create=True) as repo:
        with pytest.raises(NotARepository) as info:
            await repo.require_identity()
    assert str(tmp_path / "repo") in str(info.value)
    assert info.value.hint is not None
    assert "pitr archive" in info.value.hint


@pytest.mark.parametrize("command", [["verify"], ["timeline"], ["restore", "--latest", "--dest", "OUT"]])
def test_commands_refuse_a_wrong_typed_identity_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str],
                                                          command: list[str]) -> None:
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    for argv in (["put", "k", "v"], ["archive"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
    path = tmp_path / "repo" / layout.IDENTITY
    body = json.loads(path.read_bytes().split(b"\n")[1])
    path.write_bytes(document(IDENTITY_MAGIC, json.dumps({**body, "store_id": 5})))
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([a.replace("OUT", str(tmp_path / "out")) for a in command])
    _out, err = capsys.readouterr()
    assert done.value.code == 1, err
    assert str(path) in err
    assert "'store_id'" in err
    assert "Traceback" not in err


def test_the_format_spec_watermark_vector() -> None:
    """docs/format.md, "Repository documents": the watermark test vector."""
    vector = (b'PITRWMK 1\n{"complete_through_ns": 1795961387250000001, "lsn": 42, '
              b'"store_id": "0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11"}\ncrc32c:4cdaa639\n')
    mark = Watermark(uuid.UUID("0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11"), 42, 1795961387250000001)
    assert mark.encode() == vector
    assert len(vector) == 134
    assert Watermark.decode(vector, NAME) == mark


@pytest.mark.anyio
async def test_a_watermark_beyond_the_history_or_the_present_is_not_trusted(tmp_path: Path) -> None:
    from pitr.archiver import ArchiveOptions
    from pitr.archiving import archiving
    from pitr.store import Store

    repo_dir = tmp_path / "repo"
    async with Store(str(tmp_path / "data")) as store:
        async with archiving(store, str(repo_dir), options=ArchiveOptions(interval=3600.0)):
            for n in range(3):
                await store.put(b"k%d" % n, b"v")
        assert store.identity is not None
        store_id = store.identity.store_id
    path = repo_dir / watermarks.object_name(3, 2**62)
    async with open_repository(str(repo_dir)) as repo:
        mark = await repo.read_watermark(now_ns=2**62)
        assert mark is not None
        assert mark.lsn == 3
        now = mark.complete_through_ns
        path.write_bytes(Watermark(store_id, 3, 2**62).encode())  # restore --latest would drop every TTL key
        with pytest.raises(CorruptData, match="later than now") as info:
            await repo.read_watermark(now_ns=now)
        assert info.value.path == str(path)
        assert (await repo.read_watermark(now_ns=2**62 - 1)) is not None, "within the skew"
        (repo_dir / watermarks.object_name(9, now)).write_bytes(Watermark(store_id, 9, now).encode())
        mark = await repo.read_watermark(now_ns=now)  # evidence of lost newest segments, not damage
        assert mark is not None
        assert mark.lsn == 9
        await repo.sync()
        timeline = build_timeline(repo.catalog, await repo.require_identity())
        assert [(h.first_lsn, h.last_lsn) for h in timeline.holes] == [(4, 9)]
        assert "watermark" in timeline.holes[0].reason
        assert all(w.end_lsn <= 3 for w in timeline.windows)
