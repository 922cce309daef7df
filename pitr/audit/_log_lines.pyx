# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of `pitr.audit.log_lines.block_lines_reference`: the JSON lines `pitr log --json`
writes for the records of one checked block, the common commit (one put without expiry, or one
delete, of printable ASCII text, with no flags) formatted in C; it stops at any other record,
which the caller formats through the exact path. tests/audit/test_log_lines.py holds the two equal.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

cdef extern from "Python.h":
    object PyUnicode_DecodeASCII(const char *s, Py_ssize_t size, const char *errors)

cdef enum:
    HEADER = 32
    OP_HEADER = 12
    PUT = 1
    DELETE = 2


cdef inline uint32_t _u32(const unsigned char *p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t _u64(const unsigned char *p) noexcept nogil:
    return <uint64_t>_u32(p) | (<uint64_t>_u32(p + 4) << 32)


cdef inline bint _plain(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    """Printable ASCII without a quote or a backslash: what json.dumps writes as itself."""
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] < 0x20 or p[i] > 0x7E or p[i] == 34 or p[i] == 92:
            return False
    return True


cdef struct Out:
    char *buf
    Py_ssize_t size
    Py_ssize_t cap


cdef int _reserve(Out *out, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap = out.cap
    cdef char *grown
    if out.size + more <= cap:
        return 0
    while cap < out.size + more:
        cap = cap * 2 if cap else 1 << 16
    grown = <char *>realloc(out.buf, cap)
    if grown == NULL:
        raise MemoryError()
    out.buf, out.cap = grown, cap
    return 0


cdef inline void _put(Out *out, const char *text, Py_ssize_t n) noexcept nogil:
    memcpy(out.buf + out.size, text, n)
    out.size += n


cdef inline void _digits(Out *out, uint64_t value, int width) noexcept nogil:
    """`value` in decimal, zero-padded to `width` digits (at least)."""
    cdef char tmp[24]
    cdef int n = 0, k
    while value or n < width:
        tmp[n] = <char>(48 + value % 10)
        value //= 10
        n += 1
    for k in range(n):
        out.buf[out.size + k] = tmp[n - 1 - k]
    out.size += n


cdef inline void _time(Out *out, int64_t ts) noexcept nogil:
    """ts (>= 0) as format_time writes it: YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ."""
    cdef int64_t seconds = ts // 1000000000, nanos = ts % 1000000000
    cdef int64_t days = seconds // 86400, rest = seconds % 86400
    cdef int64_t z = days + 719468, era, doe, yoe, y, doy, mp, d, m
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    _digits(out, <uint64_t>y, 4)
    out.buf[out.size] = 45
    out.size += 1
    _digits(out, <uint64_t>m, 2)
    out.buf[out.size] = 45
    out.size += 1
    _digits(out, <uint64_t>d, 2)
    out.buf[out.size] = 84
    out.size += 1
    _digits(out, <uint64_t>(rest // 3600), 2)
    out.buf[out.size] = 58
    out.size += 1
    _digits(out, <uint64_t>(rest // 60 % 60), 2)
    out.buf[out.size] = 58
    out.size += 1
    _digits(out, <uint64_t>(rest % 60), 2)
    out.buf[out.size] = 46
    out.size += 1
    _digits(out, <uint64_t>nanos, 9)
    out.buf[out.size] = 90
    out.size += 1


def block_lines(bytes raw, list ends, Py_ssize_t start, object lo_lsn, object hi_lsn, object since_ns,
                object until_ns):
    """See `pitr.audit.log_lines.block_lines_reference`."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t count = len(ends), index, pos, stop, klen, vlen
    cdef uint64_t lsn, lo = 0, hi = 0xFFFFFFFFFFFFFFFF
    cdef int64_t ts, since = -0x7FFFFFFFFFFFFFFF - 1, until = 0x7FFFFFFFFFFFFFFF
    cdef Out out
    cdef unsigned char kind
    cdef bint ended = False
    if lo_lsn is not None:
        lo = lo_lsn
    if hi_lsn is not None:
        hi = hi_lsn
    if since_ns is not None:
        since = since_ns
    if until_ns is not None:
        until = until_ns
    out.buf, out.size, out.cap = NULL, 0, 0
    try:
        index = start
        while index < count:
            pos = 0 if index == 0 else ends[index - 1]
            stop = ends[index]
            if stop - pos < HEADER + OP_HEADER or stop > PyBytes_GET_SIZE(raw):
                break
            lsn = _u64(p + pos + 16)
            ts = <int64_t>_u64(p + pos + 24)
            if lsn > hi or ts > until:
                ended = True
                break
            if lsn < lo or ts < since:
                index += 1
                continue
            if p[pos + 8] != 1 or p[pos + 9] != 0 or _u32(p + pos + 12) != 1 or ts < 0:
                break  # not a plain commit of one operation: the exact path
            kind = p[pos + 32]
            klen = _u32(p + pos + 36)
            vlen = _u32(p + pos + 40)
            if p[pos + 33] != 0 or klen < 1 or HEADER + OP_HEADER + klen + vlen != stop - pos:
                break
            if not _plain(p + pos + HEADER + OP_HEADER, klen + vlen):
                break
            if kind == DELETE and vlen:
                break
            if kind != PUT and kind != DELETE:
                break
            _reserve(&out, 120 + klen + vlen)
            _put(&out, b'{"lsn": ', 8)
            _digits(&out, lsn, 1)
            _put(&out, b', "ts": "', 9)
            _time(&out, ts)
            if kind == PUT:
                _put(&out, b'", "op": "put", "key": "', 24)
            else:
                _put(&out, b'", "op": "delete", "key": "', 27)
            _put(&out, <const char *>p + pos + HEADER + OP_HEADER, klen)
            if kind == PUT:
                _put(&out, b'", "value": "', 13)
                _put(&out, <const char *>p + pos + HEADER + OP_HEADER + klen, vlen)
            _put(&out, b'"}\n', 3)
            index += 1
        return PyUnicode_DecodeASCII(out.buf, out.size, NULL), index, ended
    finally:
        free(out.buf)
