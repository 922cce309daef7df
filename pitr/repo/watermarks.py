"""Watermarks as write-once objects: ``watermarks/<16-hex LSN>-<16-hex ns>.wmk`` (docs/format.md, "Watermarks").

Each watermark the archiver publishes is a new small object named for what it
says (its LSN and complete-through time); nothing is replaced. Readers take the
newest valid one by (LSN, time); a damaged one is skipped and reported, never
used, never fatal. The single ``watermark`` file of older repositories is still
read (as one more candidate) and never rewritten. `pitr cleanup` keeps the
newest `KEEP_WATERMARKS` objects and deletes the rest.

The body is the ``PITRWMK`` document of `pitr.repo.identity.Watermark`; in a
repository with a data key it is sealed with AES-256-GCM (one block of a
`segments.block_seal` file of kind 3), bound to the object's name: the block's
place is the name's LSN, and its "block first LSN" field carries the name's
time, so a sealed watermark opens only under the name it was published as.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from dataclasses import dataclass

from pitr.errors import CorruptData, ObjectNotFound
from pitr.repo.identity import Watermark
from pitr.storage.base import Storage
from segments import CorruptFile
from segments.block_seal import KIND_WATERMARK, SALT_BYTES, BlockPlace, SegmentKeys

log = logging.getLogger(__name__)

PREFIX = "watermarks/"
KEEP_WATERMARKS = 16  # cleanup keeps this many of the newest watermark objects
SEALED_MAGIC = b"PITRWMS\x01"  # a sealed watermark: magic (version 1 in its last byte), salt, sealed document
MAX_OBJECT = 4096  # a watermark object is ~140 bytes; anything larger is damage, never read whole
MAX_U64 = (1 << 64) - 1
_NAME = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16})\.wmk")


def object_name(lsn: int, complete_through_ns: int) -> str:
    """The object that holds the watermark (lsn, complete_through_ns)."""
    if not (0 <= lsn <= MAX_U64 and 0 <= complete_through_ns <= MAX_U64):
        raise ValueError(f"watermark ({lsn}, {complete_through_ns}) is not a pair of u64")
    return f"{PREFIX}{lsn:016x}-{complete_through_ns:016x}.wmk"


def parse_name(name: str) -> tuple[int, int] | None:
    """(lsn, complete_through_ns) of a watermark object name (with or without the prefix); None otherwise."""
    base = name[len(PREFIX):] if name.startswith(PREFIX) else name
    match = _NAME.fullmatch(base)
    if match is None:
        return None
    return int(match.group(1), 16), int(match.group(2), 16)


def _place(lsn: int) -> BlockPlace:
    return BlockPlace(KIND_WATERMARK, lsn, lsn)


def encode(mark: Watermark, keys: SegmentKeys | None, *, salt: bytes | None = None) -> bytes:
    """The object body for `mark`: its document, sealed under `keys` when the repository has a data key."""
    document = mark.encode()
    if keys is None:
        return document
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    sealer = keys.sealer(salt, _place(mark.lsn))
    return SEALED_MAGIC + salt + sealer.seal(0, mark.complete_through_ns, document)


def is_sealed(data: bytes) -> bool:
    """Whether an object body is a sealed watermark (of any version)."""
    return data.startswith(SEALED_MAGIC[:7])


def decode(data: bytes, name: str, where: str, keys: SegmentKeys | None) -> Watermark:
    """The watermark in object `name` (shown as `where`); `CorruptData` when it is damaged, sealed
    without a key given (or plaintext in a sealed repository), or says other than its name."""
    parsed = parse_name(name)
    if parsed is None:
        raise CorruptData("not a watermark object name", path=where)
    if len(data) > MAX_OBJECT:
        raise CorruptData(f"{len(data)} bytes is too large for a watermark object", path=where)
    sealed = is_sealed(data)
    if sealed and data[:8] != SEALED_MAGIC:
        raise CorruptData(f"sealed watermark version {data[7]} is not supported", path=where, hint="upgrade pitr")
    if keys is None and sealed:
        raise CorruptData("the watermark is sealed (encrypted) and no key was given", path=where,
                          hint="give the key file with --key-file FILE or PITR_KEY_FILE")
    if keys is not None and not sealed:
        raise CorruptData("a plaintext watermark in an encrypted repository: not written by pitr", path=where)
    if sealed:
        assert keys is not None
        salt, body = data[8:8 + SALT_BYTES], data[8 + SALT_BYTES:]
        if len(salt) != SALT_BYTES:
            raise CorruptData("sealed watermark is truncated", path=where)
        try:
            data = keys.sealer(salt, _place(parsed[0])).open(0, parsed[1], body, path=where)
        except CorruptFile as exc:
            raise CorruptData(f"sealed watermark fails its authentication tag: altered, renamed or sealed "
                              f"under another key ({exc})", path=where) from exc
    mark = Watermark.decode(data, where)
    if (mark.lsn, mark.complete_through_ns) != parsed:
        raise CorruptData(f"the watermark says LSN {mark.lsn} complete through {mark.complete_through_ns}, "
                          f"not what its name says", path=where)
    return mark


@dataclass(frozen=True, slots=True)
class DamagedWatermark:
    """A watermark object that could not be used: its name and why."""

    name: str
    reason: str


def candidates(names: list[str]) -> list[tuple[tuple[int, int], str]]:
    """Watermark objects by (LSN, time), newest first (names that are not watermark names are left out)."""
    found = [(parsed, n) for n in names if (parsed := parse_name(n)) is not None]
    found.sort(reverse=True)
    return found


def cleanup_victims(names: list[str], keep: int = KEEP_WATERMARKS) -> list[str]:
    """Watermark objects `pitr cleanup` deletes: all but the `keep` newest (by LSN, then time)."""
    ordered = candidates(names)
    return sorted(n for _, n in ordered[keep:])


class _Sealed(Exception):
    """A sealed watermark met by a reader without the key (not damage: nothing can be read)."""


async def read_newest(storage: Storage, url: str, store_id: uuid.UUID | None, encrypted: bool,
                      keys: SegmentKeys | None, *, known: tuple[int, int] | None = None, scan_all: bool = False,
                      ) -> tuple[tuple[Watermark, str] | None, list[DamagedWatermark]]:
    """The newest usable watermark object (and where it is), with the damaged ones met on the way.

    Objects are tried newest first; one that is damaged, of another store, or does not say what its
    name says is skipped, logged and listed. `known` (the catalog's last watermark) lists only the
    objects after it (a following archiver publishes one per interval until cleanup prunes them);
    when it and those are gone or damaged, the whole listing is read. `scan_all` reads every object
    (verify: every damaged one is reported). In an encrypted repository read without the key (a
    keyless `verify --quick`) nothing can be opened and nothing is damage: None and no list.
    """
    damaged: list[DamagedWatermark] = []
    tried: set[str] = set()
    try:
        if known is not None and not scan_all:
            known_name = object_name(*known)
            names = [i.name for i in await storage.list(PREFIX, after=known_name)] + [known_name]
            found = await _first_valid(storage, url, names, store_id, encrypted, keys, damaged, tried)
            if found is not None:
                return found, damaged
        names = [i.name for i in await storage.list(PREFIX) if i.name not in tried]
        found = await _first_valid(storage, url, names, store_id, encrypted, keys, damaged, tried, scan_all)
    except _Sealed:
        return None, []
    return found, damaged


async def _first_valid(storage: Storage, url: str, names: list[str], store_id: uuid.UUID | None, encrypted: bool,
                       keys: SegmentKeys | None, damaged: list[DamagedWatermark], tried: set[str],
                       every: bool = False) -> tuple[Watermark, str] | None:
    """The newest valid one of `names` (reading them all when `every`, to list every damaged one)."""
    found = None
    for _parsed, name in candidates(names):
        tried.add(name)
        where = f"{url}/{name}"
        try:
            mark = await _read_one(storage, name, where, store_id, encrypted, keys)
        except ObjectNotFound:
            continue  # removed by a cleanup since the listing
        except CorruptData as exc:
            damaged.append(DamagedWatermark(name, exc.message))
            log.warning("%s: damaged watermark skipped (%s); an older one is used", where, exc.message)
            continue
        if found is None:
            found = mark, where
        if not every:
            break
    return found


async def _read_one(storage: Storage, name: str, where: str, store_id: uuid.UUID | None,
                    encrypted: bool, keys: SegmentKeys | None) -> Watermark:
    data = await storage.read(name, 0, MAX_OBJECT + 1)  # bounded, whatever the object's size
    if len(data) > MAX_OBJECT:
        raise CorruptData(f"more than {MAX_OBJECT} bytes is too large for a watermark object", path=where)
    if keys is None and encrypted and is_sealed(data):
        raise _Sealed(name)
    mark = decode(data, name, where, keys)
    if store_id is not None and mark.store_id != store_id:
        raise CorruptData(f"the watermark is of store {mark.store_id}, not {store_id}", path=where)
    return mark
