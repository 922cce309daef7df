"""A check of an LMDB data file before it is mapped: is it as long as its own meta pages say?

LMDB maps `data.mdb` into memory and follows page numbers without bounds
checks, so a file cut short (a truncated copy, a full disk during a copy)
kills the reading process with SIGBUS at the first access past its end: no
exception, no message. The two meta pages at the start of the file name the
last page in use (`mm_last_pg`) of each of the two last transactions; the
file must hold every page of the newer one. This is the only damage of an
LMDB file that can be refused cheaply before opening it; other damage is
caught by the checksums pitr keeps in its rows.

Meta page layout (LMDB 0.9, 64-bit, little-endian): a 16-byte page header,
then `mm_magic` u32 (0xBEEFC0DE) at 16, `mm_version` u32 at 20, the page size
in the free database's `md_pad` u32 at 40, `mm_last_pg` u64 at 136 and
`mm_txnid` u64 at 144. Meta page 0 starts at byte 0, meta page 1 at the page size.
"""

from __future__ import annotations

import os
import struct

MAGIC = 0xBEEFC0DE
_U32 = struct.Struct("<I")
_LAST = struct.Struct("<QQ")
_MIN_PAGE, _MAX_PAGE = 512, 1 << 16


def truncation_problem(directory: str) -> str | None:
    """Why `directory/data.mdb` cannot be mapped safely, or None (also None when there is no file yet)."""
    path = os.path.join(directory, "data.mdb")
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return None  # created, never written: LMDB initialises it
            first = fh.read(_MAX_PAGE + 160)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # unreadable files are reported by the open that follows, with its own error
    if len(first) < 160 or _U32.unpack_from(first, 16)[0] != MAGIC:
        return None  # not an LMDB file at all: LMDB's open refuses it with a clear error
    page = _U32.unpack_from(first, 40)[0]
    if not _MIN_PAGE <= page <= _MAX_PAGE or page & (page - 1):
        return f"{path}: the meta page gives an impossible page size {page}"
    metas = [first[off:off + 160] for off in (0, page)]
    newest = max((_LAST.unpack_from(m, 136) for m in metas if len(m) == 160 and _U32.unpack_from(m, 16)[0] == MAGIC),
                 key=lambda pair: pair[1], default=None)
    if newest is None:
        return f"{path}: both meta pages are damaged"
    needed = (newest[0] + 1) * page
    if size < needed:
        return f"{path}: {size} bytes, but its pages reach to byte {needed}: the file was cut short"
    return None
