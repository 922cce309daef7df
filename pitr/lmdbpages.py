"""A structural check of an LMDB data file, page by page, before LMDB is let loose on it.

LMDB does not checksum its pages and trusts every offset, size and page
number it finds in them. A garbled page makes it read past the end of the
mapped file (SIGBUS), past its mapping (SIGSEGV) or fail one of its own
assertions (SIGABRT): the process dies with no message. The rows pitr stores
carry checksums (`pitr.catalog.rows`), so wrong bytes are caught once read;
what this module rules out is everything that happens before a row is read.

`check_pages` walks the tree of the newest meta page (the one every new
transaction uses) as LMDB 0.9 (64-bit, little-endian) lays it out, reading
the file with `pread` (never a mapping), and returns the first problem found:

- every page's own number equals its index, and its type is the one its
  parent says (branch or leaf at the depth the database record gives, overflow);
- lower/upper bounds, every node offset, key size and data size lie inside the page;
- every child and overflow page number lies inside the file's used pages, and
  no page is reached twice (no cycles, no sharing);
- keys are in order within each page and inside the bounds their parent gives;
- page and entry counts equal those the database record claims;
- named databases are plain records (no duplicate-sort or fixed-size flags,
  which pitr never uses and which would make LMDB read fixed-size keys);
- the free list names only pages inside the file that no tree reaches (a
  writer reusing a live page would damage the catalog further).

Layout (lmdb mdb.c, 0.9): a page starts with `mp_pgno` u64, `mp_pad` u16,
`mp_flags` u16, then `mp_lower` u16 and `mp_upper` u16 (overflow pages: `mp_pages`
u32); node offsets (u16) follow from byte 16. A node is `mn_lo` u16, `mn_hi` u16,
`mn_flags` u16, `mn_ksize` u16, then the key, then the data (leaf: `mn_lo | mn_hi << 16`
bytes, or an overflow page number with F_BIGDATA; branch: the child page
number is `mn_lo | mn_hi << 16 | mn_flags << 32`). A database record (`MDB_db`,
48 bytes) is `md_pad` u32, `md_flags` u16, `md_depth` u16, then branch, leaf
and overflow page counts, entries and the root page number, u64 each. The
meta pages hold the free and main database records at bytes 40 and 88.
"""

from __future__ import annotations

import bisect
import os
import struct

from pitr.lmdbfile import MAGIC

PAGE_HEADER = 16
NODE_HEADER = 8
P_BRANCH, P_LEAF, P_OVERFLOW, P_DIRTY = 0x01, 0x02, 0x04, 0x10
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
P_INVALID = (1 << 64) - 1
MAX_DEPTH = 32  # LMDB's cursor stack
_HEADER = struct.Struct("<QHHHH")
_NODE = struct.Struct("<HHHH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_DB = struct.Struct("<IHHQQQQQ")
_META_TAIL = struct.Struct("<QQ")  # mm_last_pg, mm_txnid


class PageDamage(Exception):
    """One structural problem of the file (its message names the page)."""


class _Tree:
    """Counts of one database's tree as walked."""

    def __init__(self) -> None:
        self.branch = self.leaf = self.overflow = self.entries = 0


class _File:
    def __init__(self, fd: int, page_size: int, last_pg: int) -> None:
        self.fd, self.page_size, self.last_pg = fd, page_size, last_pg
        self.seen: set[int] = set()

    def page(self, pgno: int, what: str) -> bytes:
        if not 2 <= pgno <= self.last_pg:
            raise PageDamage(f"{what} names page {pgno}, outside pages 2..{self.last_pg}")
        if pgno in self.seen:
            raise PageDamage(f"{what} names page {pgno}, which another node already names")
        self.seen.add(pgno)
        raw = os.pread(self.fd, self.page_size, pgno * self.page_size)
        if len(raw) != self.page_size:
            raise PageDamage(f"page {pgno} is cut short")
        if _U64.unpack_from(raw, 0)[0] != pgno:
            raise PageDamage(f"page {pgno} says it is page {_U64.unpack_from(raw, 0)[0]}")
        return raw

    def overflow(self, pgno: int, size: int, what: str) -> None:
        pages = (PAGE_HEADER - 1 + size) // self.page_size + 1
        if pgno + pages - 1 > self.last_pg:
            raise PageDamage(f"{what}: an overflow value of {size} bytes at page {pgno} runs past page {self.last_pg}")
        raw = self.page(pgno, what)
        _pg, _pad, flags, _lo, _hi = _HEADER.unpack_from(raw, 0)
        count = _U32.unpack_from(raw, 12)[0]
        if flags & ~P_DIRTY != P_OVERFLOW or count < pages:
            raise PageDamage(f"page {pgno} is not the start of an overflow run of {pages} pages")
        for extra in range(pgno + 1, pgno + pages):
            if extra in self.seen:
                raise PageDamage(f"overflow run at page {pgno} overlaps page {extra}, named elsewhere")
            self.seen.add(extra)

    def nodes(self, raw: bytes, pgno: int) -> list[tuple[int, int, int, int, int]]:
        """(offset, lo, hi, flags, key size) of every node, with its key inside the page."""
        _pg, _pad, _flags, lower, upper = _HEADER.unpack_from(raw, 0)
        if lower < PAGE_HEADER or lower & 1 or upper > self.page_size or lower > upper:
            raise PageDamage(f"page {pgno} has bounds lower {lower}, upper {upper}")
        out = []
        for i in range((lower - PAGE_HEADER) // 2):
            offset = _U16.unpack_from(raw, PAGE_HEADER + 2 * i)[0]
            if offset < upper or offset + NODE_HEADER > self.page_size:
                raise PageDamage(f"page {pgno} node {i} is at offset {offset}, outside {upper}..{self.page_size}")
            lo, hi, flags, ksize = _NODE.unpack_from(raw, offset)
            if offset + NODE_HEADER + ksize > self.page_size:
                raise PageDamage(f"page {pgno} node {i} has a {ksize}-byte key running past the page")
            out.append((offset, lo, hi, flags, ksize))
        return out


def _key(raw: bytes, offset: int, ksize: int) -> bytes:
    return raw[offset + NODE_HEADER : offset + NODE_HEADER + ksize]


def _walk(f: _File, pgno: int, depth: int, low: bytes | None, high: bytes | None, tree: _Tree,
          integer_keys: bool, leaf_data: list[tuple[bytes, bytes, int]], what: str) -> None:
    raw = f.page(pgno, what)
    flags = _HEADER.unpack_from(raw, 0)[2] & ~P_DIRTY
    want = P_LEAF if depth == 1 else P_BRANCH
    if flags != want:
        raise PageDamage(f"page {pgno} has flags {flags:#x}, not a {'leaf' if depth == 1 else 'branch'} page")
    nodes = f.nodes(raw, pgno)
    if not nodes:
        raise PageDamage(f"page {pgno} has no nodes")

    def order(k: bytes) -> bytes | int:
        if integer_keys:
            if len(k) != 8:
                raise PageDamage(f"page {pgno} has a {len(k)}-byte integer key")
            return int(_U64.unpack(k)[0])
        return k

    keys = [_key(raw, off, ks) for off, _lo, _hi, _fl, ks in nodes]
    start = 1 if depth > 1 else 0  # a branch page's first key is not compared
    ordered = [order(k) for k in keys[start:]]
    low_o, high_o = (None if low is None else order(low)), (None if high is None else order(high))
    for a, b in zip(ordered, ordered[1:], strict=False):
        if not a < b:  # type: ignore[operator]
            raise PageDamage(f"page {pgno} has keys out of order")
    if ordered and ((low_o is not None and ordered[0] < low_o) or  # type: ignore[operator]
                    (high_o is not None and ordered[-1] >= high_o)):  # type: ignore[operator]
        raise PageDamage(f"page {pgno} has keys outside the range its parent gives")
    if depth > 1:
        tree.branch += 1
        bounds = [low, *keys[1:], high]
        for i, (_off, lo, hi, fl, _ks) in enumerate(nodes):
            child = lo | hi << 16 | fl << 32
            _walk(f, child, depth - 1, bounds[i], bounds[i + 1], tree, integer_keys, leaf_data,
                  f"page {pgno} node {i}")
        return
    tree.leaf += 1
    for i, (off, lo, hi, fl, ks) in enumerate(nodes):
        size = lo | hi << 16
        data_at = off + NODE_HEADER + ks
        tree.entries += 1
        if fl & ~(F_BIGDATA | F_SUBDATA):
            raise PageDamage(f"page {pgno} node {i} has flags {fl:#x} (duplicate data is never written)")
        if fl & F_BIGDATA:
            if data_at + 8 > f.page_size or fl & F_SUBDATA:
                raise PageDamage(f"page {pgno} node {i} has a malformed overflow reference")
            first = int(_U64.unpack_from(raw, data_at)[0])
            f.overflow(first, size, f"page {pgno} node {i}")
            tree.overflow += (PAGE_HEADER - 1 + size) // f.page_size + 1
            leaf_data.append((keys[i], b"", fl))
            if integer_keys:  # the free list's pages: read them to check the page numbers they name
                value = os.pread(f.fd, size, first * f.page_size + PAGE_HEADER)
                leaf_data[-1] = (keys[i], value, fl)
            continue
        if data_at + size > f.page_size:
            raise PageDamage(f"page {pgno} node {i} has {size} bytes of data running past the page")
        leaf_data.append((keys[i], raw[data_at : data_at + size], fl))


def _tree(f: _File, record: bytes, integer_keys: bool, what: str) -> list[tuple[bytes, bytes, int]]:
    pad, flags, depth, branch, leaf, overflow, entries, root = _DB.unpack(record)
    if (pad != 0 and not integer_keys) or flags & ~(0x08 if integer_keys else 0):
        raise PageDamage(f"{what} has flags {flags:#x} and pad {pad}, which pitr never writes")
    rows: list[tuple[bytes, bytes, int]] = []
    if root == P_INVALID:
        if depth or branch or leaf or overflow or entries:
            raise PageDamage(f"{what} is empty but counts pages or entries")
        return rows
    if not 1 <= depth <= MAX_DEPTH:
        raise PageDamage(f"{what} has depth {depth}")
    tree = _Tree()
    _walk(f, root, depth, None, None, tree, integer_keys, rows, what)
    if (tree.branch, tree.leaf, tree.overflow, tree.entries) != (branch, leaf, overflow, entries):
        raise PageDamage(f"{what} counts {branch}/{leaf}/{overflow} pages and {entries} entries; its tree has "
                         f"{tree.branch}/{tree.leaf}/{tree.overflow} and {tree.entries}")
    return rows


def newest_meta(head: bytes) -> tuple[int, bytes] | None:
    """(page size, newest meta page) from the file's first bytes, or None if no meta page is valid."""
    if len(head) < 160 or _U32.unpack_from(head, 16)[0] != MAGIC:
        return None
    page_size = _U32.unpack_from(head, 40)[0]
    metas = [head[off : off + 160] for off in (0, page_size)]
    valid = [m for m in metas if len(m) == 160 and _U32.unpack_from(m, 16)[0] == MAGIC]
    if not valid:
        return None
    return page_size, max(valid, key=lambda m: _META_TAIL.unpack_from(m, 136)[1])


def check_pages(path: str, txnid: int | None = None) -> str | None:
    """Why the LMDB file at `path` is structurally unsafe to read, or None when every reachable page is sound.

    With `txnid`, the meta page of that transaction is checked (the caller holds a
    read transaction on it, so no writer reuses its pages meanwhile).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        head = os.pread(fd, (1 << 16) + 160, 0)
        found = newest_meta(head)
        if found is None:
            return f"{path}: no valid meta page"
        page_size, meta = found
        if txnid is not None:
            for off in (0, page_size):
                m = head[off : off + 160]
                if len(m) == 160 and _U32.unpack_from(m, 16)[0] == MAGIC and _META_TAIL.unpack_from(m, 136)[1] == txnid:
                    meta = m
        last_pg, _txn = _META_TAIL.unpack_from(meta, 136)
        if _U32.unpack_from(meta, 20)[0] != 1 or last_pg < 1:
            return f"{path}: the meta page has version {_U32.unpack_from(meta, 20)[0]} and last page {last_pg}"
        f = _File(fd, page_size, last_pg)
        try:
            main = _tree(f, meta[88:136], False, "the main database")
            for name, value, flags in main:
                if flags != F_SUBDATA or len(value) != _DB.size:
                    raise PageDamage(f"the main database row {name!r} is not a database record")
                _tree(f, value, False, f"database {name!r}")
            free = _tree(f, meta[40:88], True, "the free list")
            live = set(f.seen)
            for _txnid, value, _fl in free:
                if len(value) < 8 or len(value) < 8 * (1 + _U64.unpack_from(value, 0)[0]):
                    raise PageDamage("a free-list row is shorter than the page numbers it counts")
                for i in range(_U64.unpack_from(value, 0)[0]):
                    pg = _U64.unpack_from(value, 8 + 8 * i)[0]
                    if not 2 <= pg <= last_pg or pg in live:
                        raise PageDamage(f"the free list names page {pg}, which is outside the file or in use")
        except PageDamage as exc:
            return f"{path}: {exc}"
        except OSError as exc:
            return f"{path}: cannot be read ({exc.strerror})"
        return None
    finally:
        os.close(fd)


class _Level:
    """One branch page on a lookup's path: its child keys and pages, and the bounds its parent gives."""

    def __init__(self, keys: list[bytes], children: list[int], low: bytes | None, high: bytes | None) -> None:
        self.keys, self.children, self.low, self.high = keys, children, low, high

    def bounds(self, i: int) -> tuple[bytes | None, bytes | None]:
        return (self.low if i == 0 else self.keys[i]), (self.high if i + 1 == len(self.keys) else self.keys[i + 1])


def _checked_keys(f: _File, pgno: int, want: int, low: bytes | None, high: bytes | None,
                  what: str) -> tuple[list[bytes], list[tuple[int, int, int, int, int]]]:
    """The keys of page `pgno` (of type `want`), checked in order and inside [low, high)."""
    raw = f.page(pgno, what)
    flags = _HEADER.unpack_from(raw, 0)[2] & ~P_DIRTY
    if flags != want:
        raise PageDamage(f"page {pgno} has flags {flags:#x}, not a {'leaf' if want == P_LEAF else 'branch'} page")
    nodes = f.nodes(raw, pgno)
    if not nodes:
        raise PageDamage(f"page {pgno} has no nodes")
    keys = [_key(raw, off, ks) for off, _lo, _hi, _fl, ks in nodes]
    compared = keys[1:] if want == P_BRANCH else keys
    if any(not a < b for a, b in zip(compared, compared[1:], strict=False)):
        raise PageDamage(f"page {pgno} has keys out of order")
    if compared and ((low is not None and compared[0] < low) or (high is not None and compared[-1] >= high)):
        raise PageDamage(f"page {pgno} has keys outside the range its parent gives")
    for i, (off, lo, hi, fl, ks) in enumerate(nodes):
        if want == P_LEAF:
            size = lo | hi << 16
            data_at = off + NODE_HEADER + ks
            if fl & ~(F_BIGDATA | F_SUBDATA):
                raise PageDamage(f"page {pgno} node {i} has flags {fl:#x}")
            if fl & F_BIGDATA:
                if data_at + 8 > f.page_size or fl & F_SUBDATA:
                    raise PageDamage(f"page {pgno} node {i} has a malformed overflow reference")
                f.overflow(int(_U64.unpack_from(raw, data_at)[0]), size, f"page {pgno} node {i}")
            elif data_at + size > f.page_size:
                raise PageDamage(f"page {pgno} node {i} has {size} bytes of data running past the page")
    return keys, nodes


def _descend_edge(f: _File, pgno: int, depth: int, low: bytes | None, high: bytes | None, last: bool) -> None:
    """Check the pages from `pgno` down to its first (or last) leaf."""
    while depth > 1:
        keys, nodes = _checked_keys(f, pgno, P_BRANCH, low, high, "a neighbour's branch")
        level = _Level(keys, [lo | hi << 16 | fl << 32 for _off, lo, hi, fl, _ks in nodes], low, high)
        i = len(keys) - 1 if last else 0
        low, high = level.bounds(i)
        pgno, depth = level.children[i], depth - 1
    _checked_keys(f, pgno, P_LEAF, low, high, "a neighbour leaf")


def check_lookup(path: str, txnid: int | None, db_name: bytes, key: bytes) -> str | None:
    """Why a lookup of `key` in the named database `db_name` of the LMDB file at `path` cannot be
    trusted, or None: every page on its path from the root (and the leaves on either side, where a
    cursor steps next) is structurally sound, its keys in order and inside its parent's bounds.

    `txnid` is the caller's read transaction (`Transaction.id()`): the check reads that
    transaction's tree, whose pages no writer reuses while it is open. None is also returned
    when neither meta page is that transaction's any more (a writer committed twice since it
    began). Without `txnid`, the newest meta page's tree is read: a writer committing meanwhile
    can make that a false alarm, so a caller checks again before believing it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror})"
    try:
        head = os.pread(fd, (1 << 16) + 160, 0)
        found = newest_meta(head)
        if found is None:
            return f"{path}: no valid meta page"
        page_size, meta = found
        metas = [head[off : off + 160] for off in (0, page_size)]
        mine = [m for m in metas if len(m) == 160 and _META_TAIL.unpack_from(m, 136)[1] == txnid] \
            if txnid is not None else [meta]
        if not mine:
            return None
        last_pg = _META_TAIL.unpack_from(mine[0], 136)[0]
        f = _File(fd, page_size, last_pg)
        try:
            rows = _tree(f, mine[0][88:136], False, "the main database")
            record = next((value for name, value, fl in rows if name == db_name and fl == F_SUBDATA), None)
            if record is None or len(record) != _DB.size:
                raise PageDamage(f"the main database has no record of database {db_name!r}")
            _check_path(f, record, key)
        except PageDamage as exc:
            return f"{path}: {exc}"
        except OSError as exc:
            return f"{path}: cannot be read ({exc.strerror})"
        return None
    finally:
        os.close(fd)


def _check_path(f: _File, record: bytes, key: bytes) -> None:
    _pad, flags, depth, _branch, _leaf, _overflow, _entries, root = _DB.unpack(record)
    if flags:
        raise PageDamage(f"a database record has flags {flags:#x}, which pitr never writes")
    if root == P_INVALID:
        return
    if not 1 <= depth <= MAX_DEPTH:
        raise PageDamage(f"a database record has depth {depth}")
    path: list[tuple[_Level, int]] = []
    low: bytes | None = None
    high: bytes | None = None
    pgno = root
    for _ in range(depth - 1):
        keys, nodes = _checked_keys(f, pgno, P_BRANCH, low, high, "a lookup's branch")
        level = _Level(keys, [lo | hi << 16 | fl << 32 for _off, lo, hi, fl, _ks in nodes], low, high)
        i = max(0, bisect.bisect_right(keys, key, 1) - 1)
        path.append((level, i))
        low, high = level.bounds(i)
        pgno = level.children[i]
    keys, _nodes = _checked_keys(f, pgno, P_LEAF, low, high, "a lookup's leaf")
    pos = bisect.bisect_left(keys, key)
    # a cursor at the leaf's end steps to the next leaf; one at its start, back to the previous
    for step, needed in ((1, pos >= len(keys) - 1), (-1, pos <= 0)):
        if not needed:
            continue
        for depth_left, (level, i) in enumerate(reversed(path), start=1):
            j = i + step
            if 0 <= j < len(level.children):
                low_j, high_j = level.bounds(j)
                _descend_edge(f, level.children[j], depth_left, low_j, high_j, last=step < 0)
                break


def _newest_txnid(path: str) -> int | None:
    try:
        with open(path, "rb") as fh:
            found = newest_meta(fh.read((1 << 16) + 160))
    except OSError:
        return None
    return None if found is None else int(_META_TAIL.unpack_from(found[1], 136)[1])


def check_open(path: str, db_name: bytes, key: bytes) -> str | None:
    """Why opening the LMDB file at `path` read-only (its main database, then a lookup of `key` in
    `db_name`) is unsafe, or None. Asked again when a writer commits during the check (its pages
    may move under it), so a live writer never makes it a false alarm; an empty or missing file
    is left to the open that follows."""
    problem = None
    for _ in range(5):
        try:
            if os.path.getsize(path) == 0:
                return None  # created, never written: LMDB initialises it
        except OSError:
            return None  # reported by the open that follows, with its own error
        txnid = _newest_txnid(path)
        problem = check_lookup(path, None, db_name, key)
        if problem is None or _newest_txnid(path) == txnid:
            return problem
    return problem
