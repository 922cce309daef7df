"""Checksummed catalog rows: every value ends with a CRC-32C over its sub-database, key and payload.

A row that fails its checksum, or whose payload does not decode into fields of
the right type and range, raises `CatalogDamaged` (hint: `pitr reindex`): the
catalog is derived data and is never trusted beyond what its checksum proves.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any, TypeVar

from pitr.errors import CatalogDamaged
from pitr.jsontypes import JSONValue
from segments.crc import crc32c

_CRC = struct.Struct(">I")
CRC_SIZE = _CRC.size
U64_MAX = (1 << 64) - 1
I64_MIN = -(1 << 63)
T = TypeVar("T")


def row_crc(db: bytes, key: bytes, payload: bytes) -> int:
    """CRC-32C of `db || 0x00 || key || payload`: binds a value to the row it was written for."""
    return crc32c(db + b"\0" + key + payload)


def seal(db: bytes, key: bytes, payload: bytes) -> bytes:
    """The stored value: `payload || u32be crc`."""
    return payload + _CRC.pack(row_crc(db, key, payload))


def unseal(db: bytes, key: bytes | memoryview, value: bytes | memoryview, path: str) -> bytes:
    """The payload of a stored value, or `CatalogDamaged` naming the row."""
    key, value = bytes(key), bytes(value)
    if len(value) < CRC_SIZE or _CRC.unpack_from(value, len(value) - CRC_SIZE)[0] != \
            row_crc(db, key, value[:-CRC_SIZE]):
        raise CatalogDamaged(f"catalog row {db.decode()}/{key.hex()} fails its checksum", path=path)
    return value[:-CRC_SIZE]


def decode_row(db: bytes, key: bytes | memoryview, value: bytes | memoryview, path: str, decode: Callable[[bytes], T]) -> T:
    """Unseal and decode a row; any decoding failure is catalog damage, never a traceback."""
    payload = unseal(db, key, value, path)
    try:
        return decode(payload)
    except CatalogDamaged:
        raise
    except (ValueError, TypeError, KeyError, IndexError, struct.error, OverflowError, RecursionError,
            AttributeError) as exc:
        raise CatalogDamaged(f"catalog row {db.decode()}/{bytes(key).hex()} does not decode: {exc}", path=path) from exc


def load_json(payload: bytes) -> JSONValue:
    """JSON payload of a row (ValueError on anything else)."""
    value: JSONValue = json.loads(payload.decode("utf-8"))
    return value


def dump_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def want_int(doc: dict[str, Any], name: str, *, low: int = 0, high: int = U64_MAX) -> int:
    """An integer field within [low, high] (booleans and floats are refused)."""
    value = doc[name]
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"field {name!r} is not an integer in [{low}, {high}]")
    return value


def want_str(doc: dict[str, Any], name: str) -> str:
    value = doc[name]
    if not isinstance(value, str) or len(value) > (1 << 16):
        raise ValueError(f"field {name!r} is not a string")
    return value


def want_digest(doc: dict[str, Any], name: str) -> bytes:
    raw = bytes.fromhex(want_str(doc, name))
    if len(raw) != 32:
        raise ValueError(f"field {name!r} is not a 32-byte digest")
    return raw


def want_dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object")
    return value
