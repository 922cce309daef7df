"""The sealed snapshot test vector of docs/format.md, "Sealed snapshots (snapshot version 2)", checked
against the code both ways: the writer produces the documented bytes, and the reader opens them."""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

from blake3 import blake3

from pitr.crypto import DataKey
from segments.snapshot import SnapshotHeader, SnapshotReader, SnapshotWriter
from segments.source import BytesSource

DOC = Path(__file__).resolve().parents[2] / "docs" / "format.md"
KEYS = DataKey(bytes(range(32, 64))).segment_keys()
STORE = uuid.UUID("0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11")
ENTRIES = [(b"alpha", b"one", None), (b"beta", b"two", 1234)]


def documented() -> dict[str, str]:
    section = DOC.read_text().split("### Sealed snapshots (snapshot version 2)", 1)[1].split("\n### ", 1)[0]
    return dict(re.findall(r"^    (snap_[a-z0-9_]+) +(\S+)$", section, flags=re.MULTILINE))


def vector_file() -> bytes:
    out = io.BytesIO()
    header = SnapshotHeader(STORE, 42, 1_000_000, bytes(32), 0, 0, 2_000_000, {"store_name": "s"},
                            salt=bytes(range(64, 96)))
    writer = SnapshotWriter(out, header, block_size=1, compress=False, keys=KEYS)
    for key, value, expires in ENTRIES:
        writer.add(key, value, expires)
    writer.finish(chain_digest=bytes(range(32)))
    return out.getvalue()


def test_the_writer_produces_the_documented_bytes() -> None:
    blob = vector_file()
    reader = SnapshotReader(BytesSource(blob, "vector"))
    blocks = {f"snap_block{i}": blob[b.offset:b.offset + b.compressed_size].hex() for i, b in enumerate(reader.blocks)}
    table_at = reader.footer.index_offset + 28 * len(reader.blocks)
    computed = {**blocks, "snap_key_table": blob[table_at:reader.footer.index_offset + reader.footer.index_size].hex(),
                "snap_file": blake3(blob).hexdigest()}
    assert documented() == computed


def test_the_documented_file_opens_to_its_entries() -> None:
    blob = vector_file()
    assert blake3(blob).hexdigest() == documented()["snap_file"]
    reader = SnapshotReader(BytesSource(blob, "vector"), keys=KEYS)
    reader.verify()
    assert list(reader.iter_entries()) == ENTRIES
    assert [b.first_key for b in reader.blocks] == [b"alpha", b"beta"]
