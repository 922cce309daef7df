"""Shared pieces of the operator tools: file-type detection and how values are shown."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

from segments import segment_format, snapshot, wal
from segments._errors import ChainError, CorruptFile, SegmentsError, UnsupportedVersion

WAL = "wal"
SEGMENT = "segment"
SNAPSHOT = "snapshot"
_MAGICS = {wal.MAGIC: WAL, segment_format.MAGIC: SEGMENT, snapshot.MAGIC: SNAPSHOT}
_MAGIC_SIZE = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TEXT_CONTROLS = frozenset("\t\n\r")


def detect_kind(path: str) -> str | None:
    """"wal", "segment" or "snapshot" from the file's magic; None for anything else."""
    with open(path, "rb") as fh:
        magic = fh.read(_MAGIC_SIZE)
    return _MAGICS.get(magic)


def describe_magic(path: str) -> str:
    """The first bytes of a file that is not a pitr file, for the error message."""
    with open(path, "rb") as fh:
        head = fh.read(_MAGIC_SIZE)
    return f"{os.path.getsize(path)} bytes starting {head!r}" if head else "an empty file"


def format_time(ts_ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, e.g. 2026-11-24T14:03:07.250000000Z."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    try:
        moment = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:  # outside datetime's years 1..9999: show the raw number
        return f"{ts_ns}ns"
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def as_text(data: bytes) -> str | None:
    """`data` as a string when it is UTF-8 without control characters other than tab and newlines."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(ch.isprintable() or ch in _TEXT_CONTROLS for ch in text):
        return text
    return None


def bytes_fields(name: str, data: bytes) -> dict[str, object]:
    """JSON fields for a key or value: `name` (text) or `name_base64` (binary), and `name_size`."""
    text = as_text(data)
    if text is not None:
        return {name: text, f"{name}_size": len(data)}
    return {f"{name}_base64": base64.b64encode(data).decode("ascii"), f"{name}_size": len(data)}


def show_bytes(data: bytes, limit: int) -> str:
    """A key or value for text output: quoted text or base64, cut to `limit` bytes (0: no limit)."""
    shown = data if limit <= 0 or len(data) <= limit else data[:limit]
    more = "…" if len(shown) < len(data) else ""
    text = as_text(shown)
    if text is None and more:
        # the cut may split a UTF-8 sequence: back off up to three bytes before giving up on text
        for back in (1, 2, 3):
            text = as_text(shown[:-back])
            if text is not None:
                break
    if text is not None:
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace(
            "\r", "\\r").replace("\t", "\\t")
        return f'"{escaped}"{more} ({len(data)} B)'
    return f"base64:{base64.b64encode(shown).decode('ascii')}{more} ({len(data)} B)"


def error_fields(exc: BaseException) -> dict[str, object]:
    """JSON description of an error, keeping the path, offset and LSN it carries."""
    fields: dict[str, object] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, CorruptFile):
        fields.update(path=exc.path, offset=exc.offset, lsn=exc.lsn, hint=exc.hint)
    elif isinstance(exc, UnsupportedVersion):
        fields.update(path=exc.path, found=exc.found, supported=exc.supported)
    elif isinstance(exc, ChainError):
        fields.update(path=exc.path, previous=exc.previous)
    elif isinstance(exc, OSError):
        fields.update(path=exc.filename, errno=exc.errno)
    return fields


def is_expected_failure(exc: BaseException) -> bool:
    """Errors the tools report as findings rather than crash on."""
    return isinstance(exc, SegmentsError | OSError) and not isinstance(exc, BrokenPipeError)
