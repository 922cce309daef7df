"""Golden bytes: the test vectors printed in docs/format.md, checked against the code."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from segments import chain, wal
from segments import record as rec

DOC = Path(__file__).resolve().parents[2] / "docs" / "format.md"
TS = 1_795_961_387_250_000_000
NIL = uuid.UUID(int=0)
FIRST = rec.encode_record(1, TS, [rec.put(b"k", b"v"), rec.delete(b"old")])
SECOND = rec.encode_record(7, TS, [rec.put(b"user:1", b"{}", 1_795_961_388_000_000_000)], source_rev=42)
PIECE = chain.Piece(1, 1, chain.records_digest(FIRST))


def doc_hex_blocks() -> list[str]:
    """The indented hex blocks of the "Test vectors" section, whitespace removed."""
    section = DOC.read_text().split("## Test vectors", 1)[1]
    blocks = re.findall(r"(?:^    [0-9a-f ]+\n)+", section, flags=re.MULTILINE)
    return ["".join(block.split()) for block in blocks]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("first record", FIRST),
        ("second record", SECOND),
        ("WAL header", wal.encode_header(wal.WalHeader(NIL, 1, 0))),
        ("version 1 WAL header", wal.encode_header(wal.WalHeader(NIL, 1, 0, version=1))),
        ("WAL frame header", wal.encode_frame(1, 1, FIRST)),
    ],
)
def test_documented_bytes(name: str, data: bytes) -> None:
    assert data.hex() in doc_hex_blocks(), f"docs/format.md does not show the {name} as the code writes it"


def test_documented_chain_digests() -> None:
    text = DOC.read_text()
    for label, digest in [("genesis", chain.genesis(NIL)), ("records_digest", PIECE.records_digest),
                          ("link", chain.link(chain.genesis(NIL), PIECE))]:
        assert re.search(rf"^    {label} +{digest.hex()}$", text, flags=re.MULTILINE), label


def test_documented_records_decode() -> None:
    assert rec.decode_record(FIRST) == rec.Record(1, TS, (rec.put(b"k", b"v"), rec.delete(b"old")))
    assert rec.decode_record(SECOND).source_rev == 42
