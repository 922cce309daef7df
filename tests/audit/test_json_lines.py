"""The JSON-lines form of the log: printable text as strings, anything else as {"b64": ...}."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pitr.audit import LogCommit, LogOp, bytes_from_json, bytes_to_json, to_import_json
from pitr.errors import InvalidArgument
from pitr.timefmt import parse_time

TS = 1_795_961_387_250_000_000


@given(st.binary() | st.text().map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_bytes_survive_json(data: bytes) -> None:
    field = bytes_to_json(data)
    assert bytes_from_json(json.loads(json.dumps(field))) == data


@pytest.mark.parametrize(("data", "expected"), [
    (b"user:42", "user:42"),
    (b"", ""),
    (b"line one\nline two\ttab\r", "line one\nline two\ttab\r"),
    ("caf\u00e9 \u2603".encode(), "caf\u00e9 \u2603"),
    (b"\xff\xfe", {"b64": "//4="}),
    (b"nul\x00", {"b64": "bnVsAA=="}),
    (b"esc\x1b[0m", {"b64": "ZXNjG1swbQ=="}),
    ("zero\u200bwidth".encode(), {"b64": "emVyb+KAi3dpZHRo"}),
])
def test_text_or_base64(data: bytes, expected: object) -> None:
    assert bytes_to_json(data) == expected


@pytest.mark.parametrize("field", [{"b64": "not base64!"}, {"b64": 3}, {"b64": "AA==", "x": 1}, 42, None,
                                   "\ud800"])
def test_bad_fields_are_rejected(field: object) -> None:
    with pytest.raises(InvalidArgument):
        bytes_from_json(field, what="value")


def test_single_operation_commits() -> None:
    put = LogCommit(7, TS, [LogOp("put", b"k", b"v", TS + 5_000_000_000)])
    assert to_import_json(put) == {"lsn": 7, "ts": "2026-11-29T14:09:47.250000000Z", "op": "put", "key": "k",
                                   "value": "v", "expires_at": "2026-11-29T14:09:52.250000000Z"}
    assert parse_time(to_import_json(put)["expires_at"]) == TS + 5_000_000_000
    plain = LogCommit(8, TS + 1, [LogOp("put", b"\x00", b"v", None)])
    assert to_import_json(plain) == {"lsn": 8, "ts": "2026-11-29T14:09:47.250000001Z", "op": "put",
                                     "key": {"b64": "AA=="}, "value": "v"}
    delete = LogCommit(9, TS + 2, [LogOp("delete", b"k", None, None)])
    assert to_import_json(delete) == {"lsn": 9, "ts": "2026-11-29T14:09:47.250000002Z", "op": "delete",
                                      "key": "k"}


def test_batches() -> None:
    batch = LogCommit(10, TS, [LogOp("put", b"a", b"1", None), LogOp("delete", b"b", None, None),
                               LogOp("put", b"c", b"\xff", TS + 1)])
    doc = to_import_json(batch)
    assert doc == {"lsn": 10, "ts": "2026-11-29T14:09:47.250000000Z", "batch": [
        {"op": "put", "key": "a", "value": "1"},
        {"op": "delete", "key": "b"},
        {"op": "put", "key": "c", "value": {"b64": "/w=="}, "expires_at": "2026-11-29T14:09:47.250000001Z"},
    ]}
    assert json.loads(json.dumps(doc)) == doc
