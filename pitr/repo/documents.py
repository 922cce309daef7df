"""Small checksummed metadata documents in a repository: identity and watermark.

Layout (docs/format.md, "Repository documents")::

    <MAGIC> " " <version> "\n" <JSON object, UTF-8> "\n" "crc32c:" <8 hex digits> "\n"

The CRC-32C covers every byte before "crc32c:". Documents are at most 64 KiB.
"""

from __future__ import annotations

import json
from typing import Any

from crc32c import crc32c

from pitr.errors import CorruptData

MAX_DOCUMENT = 64 << 10


def encode_document(magic: str, version: int, body: dict[str, Any]) -> bytes:
    head = f"{magic} {version}\n".encode() + json.dumps(body, sort_keys=True).encode() + b"\n"
    return head + f"crc32c:{crc32c(head):08x}\n".encode()


def decode_document(magic: str, supported: int, data: bytes, name: str) -> dict[str, Any]:
    """Parse and check a document; raises CorruptData naming `name`."""
    if len(data) > MAX_DOCUMENT:
        raise CorruptData(f"{name}: {len(data)} bytes is too large for a repository document", path=name)
    head, sep, tail = data.rpartition(b"crc32c:")
    if not sep or not tail.endswith(b"\n"):
        raise CorruptData(f"{name}: missing checksum line", path=name)
    try:
        expected = int(tail[:-1], 16)
    except ValueError as exc:
        raise CorruptData(f"{name}: unreadable checksum", path=name) from exc
    if crc32c(head) != expected:
        raise CorruptData(f"{name}: CRC-32C mismatch", path=name)
    first, _, body = head.partition(b"\n")
    parts = first.decode("ascii", "replace").split(" ")
    if len(parts) != 2 or parts[0] != magic or not parts[1].isdigit():
        raise CorruptData(f"{name}: not a {magic} document", path=name)
    if int(parts[1]) > supported:
        raise CorruptData(f"{name}: {magic} version {parts[1]} is newer than supported {supported}",
                          path=name, hint="upgrade pitr")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise CorruptData(f"{name}: body is not JSON: {exc}", path=name) from exc
    if not isinstance(doc, dict):
        raise CorruptData(f"{name}: body is not a JSON object", path=name)
    return doc
