"""Small checksummed metadata documents in a repository: identity, watermark, wrapped keys.

Layout (docs/format.md, "Repository documents")::

    <MAGIC> " " <version> "\n" <JSON object, UTF-8> "\n" "crc32c:" <8 hex digits> "\n"

The CRC-32C covers every byte before "crc32c:". Documents are at most 64 KiB.
A checksum only proves the bytes are the ones written; every field is then
checked for its type and range (`Fields`), so a document that was written
wrongly (or forged with a fresh checksum) is refused as `CorruptData` naming
the file and the field, never used.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, NoReturn

from pitr.errors import CorruptData
from segments.crc import crc32c

MAX_DOCUMENT = 64 << 10
MAX_INT = (1 << 63) - 1
MAX_TEXT = 1024
DIGEST_BYTES = 32
_CRC_LINE = re.compile(rb"[0-9a-f]{8}\n")
_HEX = re.compile(r"[0-9a-f]*")


def encode_document(magic: str, version: int, body: dict[str, Any]) -> bytes:
    head = f"{magic} {version}\n".encode() + json.dumps(body, sort_keys=True).encode() + b"\n"
    return head + f"crc32c:{crc32c(head):08x}\n".encode()


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def decode_document(magic: str, supported: int, data: bytes, name: str) -> dict[str, Any]:
    """Parse and check a document; raises CorruptData naming `name`."""
    return decode_versioned(magic, supported, data, name)[1]


def decode_versioned(magic: str, supported: int, data: bytes, name: str) -> tuple[int, dict[str, Any]]:
    """`decode_document`, also returning the document's version (1 .. `supported`)."""
    if len(data) > MAX_DOCUMENT:
        raise CorruptData(f"{len(data)} bytes is too large for a repository document", path=name)
    head, sep, tail = data.rpartition(b"crc32c:")
    if not sep or not _CRC_LINE.fullmatch(tail):
        raise CorruptData("missing or unreadable checksum line", path=name)
    if crc32c(head) != int(tail[:-1], 16):
        raise CorruptData("CRC-32C mismatch", path=name)
    first, _, body = head.partition(b"\n")
    parts = first.decode("ascii", "replace").split(" ")
    if len(parts) != 2 or parts[0] != magic or not re.fullmatch(r"[0-9]{1,5}", parts[1]):
        raise CorruptData(f"not a {magic} document", path=name)
    version = int(parts[1])
    if version == 0:
        raise CorruptData(f"{magic} version 0 is not a valid version", path=name)
    if version > supported:
        raise CorruptData(f"{magic} version {version} is newer than supported {supported}",
                          path=name, hint="upgrade pitr")
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CorruptData(f"body is not JSON: {exc}", path=name) from exc
    if not isinstance(doc, dict):
        raise CorruptData("body is not a JSON object", path=name)
    return version, doc


class Fields:
    """Typed access to a decoded document's fields; any bad field is `CorruptData` naming it."""

    def __init__(self, doc: dict[str, Any], name: str, what: str, prefix: str = "") -> None:
        self.doc = doc
        self.name = name
        self.what = what
        self.prefix = prefix  # "parent." for the fields of a nested object

    def bad(self, key: str, expected: str) -> NoReturn:
        shown = repr(self.doc[key]) if key in self.doc else "nothing"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise CorruptData(f"{self.what} field {self.prefix + key!r} must be {expected}, found {shown}", path=self.name,
                          hint="the document has a valid checksum but wrong contents: it was not written "
                               "by pitr, or by a broken version of it")

    def integer(self, key: str, low: int = 0, high: int = MAX_INT) -> int:
        value = self.doc.get(key)
        if type(value) is not int or not low <= value <= high:  # bool and float are not integers here
            self.bad(key, f"an integer in {low}..{high}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.doc.get(key, default)
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            self.bad(key, f"a string of at most {MAX_TEXT} characters")
        return value

    def store_id(self, key: str = "store_id") -> uuid.UUID:
        value = self.doc.get(key)
        if isinstance(value, str) and len(value) == 36:
            try:
                parsed = uuid.UUID(value)
            except ValueError:
                pass
            else:
                if str(parsed) == value.lower():
                    return parsed
        self.bad(key, "a UUID (8-4-4-4-12 hex digits)")

    def digest(self, key: str) -> bytes:
        value = self.doc.get(key)
        if not isinstance(value, str) or len(value) != 2 * DIGEST_BYTES or not _HEX.fullmatch(value):
            self.bad(key, f"{DIGEST_BYTES} bytes as {2 * DIGEST_BYTES} lowercase hex digits")
        return bytes.fromhex(value)

    def hex_bytes(self, key: str, size: int) -> bytes:
        """Exactly `size` bytes written as 2 * `size` lowercase hex digits."""
        value = self.doc.get(key)
        if not isinstance(value, str) or len(value) != 2 * size or not _HEX.fullmatch(value):
            self.bad(key, f"{size} bytes as {2 * size} lowercase hex digits")
        return bytes.fromhex(value)

    def nested(self, key: str) -> Fields | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.bad(key, "null or an object")
        return Fields(value, self.name, self.what, f"{self.prefix}{key}.")
