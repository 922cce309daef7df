"""The catalog format's documented examples (docs/format.md, "Catalog") checked against the code."""

from __future__ import annotations

import struct

from pitr.catalog.environment import FORMAT_VERSION
from pitr.catalog.keyindex import TABLE_ROW, TABLES_DB
from pitr.catalog.keytable import chunk_rows, entry_of, key_digest
from pitr.catalog.rows import dump_json, seal

ENTRY = "05 56 86 f0 c5 23 98 ab 80 00 00 00 00 00 03 e8 00 00 00 00 00 00 00 05 81"


def test_documented_catalog_vectors() -> None:
    assert FORMAT_VERSION == 3
    assert seal(b"meta", b"format", dump_json(3)) == bytes.fromhex("33 bd f6 8b e1")
    digest = key_digest(b"k")
    assert digest == bytes.fromhex("05 56 86 f0 c5 23 98 ab")
    entry = entry_of(digest, 1000, 5, 1, True)
    assert entry == bytes.fromhex(ENTRY)
    [(key, value)] = chunk_rows(5, [entry])
    assert key == bytes.fromhex("00 00 00 00 00 00 00 05") + entry[:24]
    assert value == entry + bytes.fromhex("1c 7c 65 0b")
    table = seal(TABLES_DB, struct.pack(">Q", 5), TABLE_ROW.pack(9, 1000, 1000, 1))
    assert table == bytes.fromhex("00 00 00 00 00 00 00 09 00 00 00 00 00 00 03 e8 00 00 00 00 00 00 03 e8"
                                  " 00 00 00 00 00 00 00 01 fd d2 10 a0")
