"""The byte layout of the live state's LMDB rows, format 2 (docs/format.md, "State database v2").

Every row carries a CRC-32C over what it means, so a garbled page is caught
when a row is read instead of answering with wrong bytes:

    data    key -> flags u8 | crc u32 BE | [expiry i64 BE if flags & 1] | value
            crc = CRC-32C(u16 BE len(key) | key | flags | [expiry] | value)
    expiry  key -> expiry i64 BE | crc u32 BE      crc = CRC-32C(u16 BE len(key) | key | expiry)
    meta    name -> payload | crc u32 BE          crc = CRC-32C(u16 BE len(name) | name | payload)

The expiry sub-database is an index (which keys expire, for `drop_expired`);
the expiry a read answers with is the one inside the data row.

Decoders raise `RowDamage` (a plain exception with a message); the state
turns it into `StateDamaged` naming its file and the key.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from segments.crc import crc32c

FORMAT = 2
HAS_EXPIRY = 0x01
_HEAD = struct.Struct(">BI")  # flags, crc
_HEAD_EXPIRY = struct.Struct(">BIq")  # flags, crc, expiry
_LEN = struct.Struct(">H")
_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")
_INDEX = struct.Struct(">qI")


class RowDamage(Exception):
    """A row of the state fails its checksum or its layout."""


def _key_crc(key: bytes) -> int:
    return crc32c(_LEN.pack(len(key)) + key)


def encode_value(key: bytes, value: bytes, expires: int | None) -> bytes:
    """The data row of `key`."""
    if expires is None:
        return b"\x00" + _U32.pack(crc32c(value, crc32c(_LEN.pack(len(key)) + key + b"\x00"))) + value
    packed = _I64.pack(expires)
    crc = crc32c(value, crc32c(_LEN.pack(len(key)) + key + b"\x01" + packed))
    return b"\x01" + _U32.pack(crc) + packed + value


def decode_value(key: bytes, raw: bytes) -> tuple[bytes, int | None]:
    """(value, expiry) of the data row `raw` of `key`, checked.

    The CRC covers `len16(key) | key | flags` and then the row from byte 5 on (expiry and value,
    contiguous there), so it is taken over the row in place."""
    if len(raw) < _HEAD.size or raw[0] > HAS_EXPIRY or (raw[0] and len(raw) < _HEAD_EXPIRY.size):
        raise RowDamage(f"its row has {len(raw)} bytes{f' and flags {raw[0]:#x}' if raw else ''}")
    rest = raw[5:]  # the expiry, if any, then the value: the CRC runs over them as they lie
    if crc32c(rest, crc32c(_LEN.pack(len(key)) + key + raw[:1])) != _U32.unpack_from(raw, 1)[0]:
        raise RowDamage("its row fails its CRC-32C")
    if raw[0]:
        return rest[8:], _I64.unpack_from(rest)[0]
    return rest, None


def encode_expiry(key: bytes, expires: int) -> bytes:
    """The expiry-index row of `key`."""
    packed = _I64.pack(expires)
    return packed + _U32.pack(crc32c(packed, _key_crc(key)))


def decode_expiry(key: bytes, raw: bytes) -> int:
    """The expiry in the expiry-index row `raw` of `key`, checked."""
    if len(raw) != _INDEX.size:
        raise RowDamage(f"its expiry row is {len(raw)} bytes, not {_INDEX.size}")
    expires, crc = _INDEX.unpack(raw)
    if crc32c(raw[:8], _key_crc(key)) != crc:
        raise RowDamage("its expiry row fails its CRC-32C")
    return int(expires)


def seal_meta(name: bytes, payload: bytes) -> bytes:
    """A meta row: the payload and a CRC-32C over its name and the payload."""
    return payload + _U32.pack(crc32c(payload, _key_crc(name)))


def unseal_meta(name: bytes, raw: bytes) -> bytes:
    """The payload of the meta row `raw` named `name`, checked."""
    if len(raw) < 4 or crc32c(raw[:-4], _key_crc(name)) != _U32.unpack_from(raw, len(raw) - 4)[0]:
        raise RowDamage(f"meta row {name.decode(errors='replace')!r} fails its CRC-32C")
    return raw[:-4]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What the state holds, committed in the same transaction as the data it covers.

    `digest` and `count` are the order-independent state digest (`segments.snapshot.StateDigest`)
    of every row, expired ones included until they are dropped. `wal_first_lsn` and `wal_offset`
    say where the record after `applied_lsn` starts in the WAL (0, 0 when unknown): a hint a
    reader checks, never trusts.
    """

    applied_lsn: int
    applied_ts_ns: int
    digest_total: int  # the digest's sum, reduced mod 2**256
    count: int
    wal_first_lsn: int = 0
    wal_offset: int = 0

    @property
    def digest(self) -> bytes:
        return self.digest_total.to_bytes(32, "little")


_CHECKPOINT = struct.Struct(">Qq32sQQQ")
DIGEST_MOD = 1 << 256


def encode_checkpoint(cp: Checkpoint) -> bytes:
    return seal_meta(b"checkpoint", _CHECKPOINT.pack(cp.applied_lsn, cp.applied_ts_ns, cp.digest, cp.count,
                                                     cp.wal_first_lsn, cp.wal_offset))


def decode_checkpoint(raw: bytes) -> Checkpoint:
    payload = unseal_meta(b"checkpoint", raw)
    if len(payload) != _CHECKPOINT.size:
        raise RowDamage(f"the checkpoint row is {len(payload)} bytes, not {_CHECKPOINT.size}")
    lsn, ts, digest, count, wal_first, wal_offset = _CHECKPOINT.unpack(payload)
    return Checkpoint(lsn, ts, int.from_bytes(digest, "little"), count, wal_first, wal_offset)


def encode_format() -> bytes:
    return seal_meta(b"format", _U32.pack(FORMAT))


def decode_format(raw: bytes) -> int:
    payload = unseal_meta(b"format", raw)
    if len(payload) != 4:
        raise RowDamage(f"the format row is {len(payload)} bytes, not 4")
    return int(_U32.unpack(payload)[0])
