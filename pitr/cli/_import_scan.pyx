# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of `pitr.cli.import_scan.spool_lines_reference`: the checking pass of `pitr import`
over the common line, a put of text without expiry (what `pitr log --json` writes, with or
without its "lsn" and canonical "ts"), parsed and checked in C, one run of lines per call.

A line is taken only when this parser is certain `spool_line` gives the same item and the time
checks of the checking pass let it through; on any other line it stops and the caller takes
that line through the exact path (so a refusal is always worded by the Python code). The
grammar taken is a strict subset of JSON: one object of the members "op" (exactly "put"),
"key", "value" (strings of printable ASCII, escapes other than \\u allowed), "ts" (null, an
integer that fits 64 bits, or the canonical time YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ) and "lsn"
(an integer), each at most once, with JSON whitespace between tokens.
tests/cli/test_import_scan.py holds the two equal on random and hostile lines.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.long cimport PyLong_FromLongLong
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    void *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1

cdef enum:
    MAX_KEY = 511
    MAX_VALUE = 64 << 20
    F_OP = 1
    F_KEY = 2
    F_VALUE = 4
    F_TS = 8
    F_LSN = 16

cdef object PUT = 1


cdef struct Span:
    Py_ssize_t start
    Py_ssize_t end
    Py_ssize_t escapes


cdef inline Py_ssize_t _ws(const unsigned char *p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 10 or p[i] == 13):
        i += 1
    return i


cdef inline Py_ssize_t _string(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, Span *out) noexcept nogil:
    """p[i] is the opening quote; returns the index after the closing one, or -1 when not taken."""
    cdef unsigned char c
    i += 1
    out.start = i
    out.escapes = 0
    while i < n:
        c = p[i]
        if c == 34:  # "
            out.end = i
            return i + 1
        if c < 32:
            return -1  # a control character: json.loads refuses it
        if c == 92:  # backslash
            if i + 1 >= n:
                return -1
            c = p[i + 1]
            if c != 34 and c != 92 and c != 47 and c != 98 and c != 102 and c != 110 and c != 114 and c != 116:
                return -1  # \u (or a bad escape): the exact path
            out.escapes += 1
            i += 2
            continue
        i += 1
    return -1


cdef inline Py_ssize_t _integer(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, int64_t *out) noexcept nogil:
    """A JSON integer that fits a signed 64-bit value at p[i]; the index after it, or -1."""
    cdef bint negative = False
    cdef uint64_t value = 0
    cdef Py_ssize_t first
    if i < n and p[i] == 45:  # -
        negative = True
        i += 1
    first = i
    while i < n and 48 <= p[i] <= 57:
        if i - first >= 19:
            return -1
        value = value * 10 + (p[i] - 48)
        i += 1
    if i == first or (p[first] == 48 and i - first > 1):
        return -1  # no digits, or a leading zero: not JSON
    if i < n and (p[i] == 46 or p[i] == 101 or p[i] == 69):
        return -1  # a fraction or an exponent: a float, which the exact path refuses
    if negative:
        if value > (<uint64_t>1 << 63):
            return -1
        out[0] = <int64_t>(0 - value)
    else:
        if value > (<uint64_t>1 << 63) - 1:
            return -1
        out[0] = <int64_t>value
    return i


cdef inline int _digits(const unsigned char *p, int count, int64_t *out) noexcept nogil:
    cdef int64_t value = 0
    cdef int k
    for k in range(count):
        if not 48 <= p[k] <= 57:
            return 0
        value = value * 10 + (p[k] - 48)
    out[0] = value
    return 1


cdef int _canonical_time(const unsigned char *p, Py_ssize_t length, int64_t *out) noexcept nogil:
    """YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ (what `pitr log --json` writes) in 1970..2261 as ns; 0 if not."""
    cdef int64_t year, month, day, hour, minute, second, nanos, y, era, yoe, doy, doe, days
    cdef int leap
    if length != 30 or p[4] != 45 or p[7] != 45 or p[10] != 84 or p[13] != 58 or p[16] != 58 \
            or p[19] != 46 or p[29] != 90:
        return 0
    if not (_digits(p, 4, &year) and _digits(p + 5, 2, &month) and _digits(p + 8, 2, &day)
            and _digits(p + 11, 2, &hour) and _digits(p + 14, 2, &minute) and _digits(p + 17, 2, &second)
            and _digits(p + 20, 9, &nanos)):
        return 0
    if year < 1970 or year > 2261 or month < 1 or month > 12 or day < 1 or hour > 23 or minute > 59 \
            or second > 59:
        return 0
    leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
    if month == 2:
        if day > (29 if leap else 28):
            return 0
    elif month == 4 or month == 6 or month == 9 or month == 11:
        if day > 30:
            return 0
    elif day > 31:
        return 0
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    out[0] = ((days * 86400 + hour * 3600 + minute * 60 + second) * 1000000000) + nanos
    return 1


cdef bytes _text_bytes(const unsigned char *p, Span s):
    """The bytes of a parsed ASCII string (its escapes decoded)."""
    cdef Py_ssize_t size = s.end - s.start - s.escapes
    cdef unsigned char *buf
    cdef Py_ssize_t i, j
    cdef unsigned char c
    if s.escapes == 0:
        return PyBytes_FromStringAndSize(<const char *>p + s.start, size)
    buf = <unsigned char *>malloc(size if size > 0 else 1)
    if buf == NULL:
        raise MemoryError()
    try:
        i, j = s.start, 0
        while i < s.end:
            c = p[i]
            if c == 92:
                c = p[i + 1]
                i += 2
                if c == 98:
                    c = 8
                elif c == 102:
                    c = 12
                elif c == 110:
                    c = 10
                elif c == 114:
                    c = 13
                elif c == 116:
                    c = 9
            else:
                i += 1
            buf[j] = c
            j += 1
        return PyBytes_FromStringAndSize(<const char *>buf, size)
    finally:
        free(buf)


cdef int _parse(const unsigned char *p, Py_ssize_t n, Span *key, Span *value, int64_t *ts,
                int *has_time) noexcept nogil:
    """The line's members seen (F_* bits; `has_time` when its "ts" is not null), or 0 when the line
    is not taken."""
    cdef Py_ssize_t i = _ws(p, 0, n), name_start, name_len
    cdef int seen = 0, field
    cdef int64_t lsn
    cdef Span name, text
    if i >= n or p[i] != 123:  # {
        return 0
    i = _ws(p, i + 1, n)
    while True:
        if i >= n or p[i] != 34:
            return 0
        i = _string(p, i, n, &name)
        if i < 0 or name.escapes:
            return 0
        i = _ws(p, i, n)
        if i >= n or p[i] != 58:  # :
            return 0
        i = _ws(p, i + 1, n)
        if i >= n:
            return 0
        name_start, name_len = name.start, name.end - name.start
        if name_len == 2 and p[name_start] == 111 and p[name_start + 1] == 112:  # op
            field = F_OP
            if p[i] != 34:
                return 0
            i = _string(p, i, n, &text)
            if i < 0 or text.escapes or text.end - text.start != 3 or p[text.start] != 112 \
                    or p[text.start + 1] != 117 or p[text.start + 2] != 116:  # put
                return 0
        elif name_len == 3 and p[name_start] == 107 and p[name_start + 1] == 101 and p[name_start + 2] == 121:
            field = F_KEY
            if p[i] != 34:
                return 0
            i = _string(p, i, n, key)
        elif name_len == 5 and p[name_start] == 118 and p[name_start + 1] == 97 and p[name_start + 2] == 108 \
                and p[name_start + 3] == 117 and p[name_start + 4] == 101:  # value
            field = F_VALUE
            if p[i] != 34:
                return 0
            i = _string(p, i, n, value)
        elif name_len == 2 and p[name_start] == 116 and p[name_start + 1] == 115:  # ts
            field = F_TS
            if p[i] == 110:  # null
                if i + 4 > n or p[i + 1] != 117 or p[i + 2] != 108 or p[i + 3] != 108:
                    return 0
                i += 4
                has_time[0] = 0
            elif p[i] == 34:
                i = _string(p, i, n, &text)
                if i < 0 or text.escapes or not _canonical_time(p + text.start, text.end - text.start, ts):
                    return 0
                has_time[0] = 1
            else:
                i = _integer(p, i, n, ts)
                has_time[0] = 1
        elif name_len == 3 and p[name_start] == 108 and p[name_start + 1] == 115 and p[name_start + 2] == 110:
            field = F_LSN
            i = _integer(p, i, n, &lsn)
        else:
            return 0  # another member: the exact path decides what it means
        if i < 0 or seen & field:
            return 0  # not taken, or a member given twice
        seen |= field
        i = _ws(p, i, n)
        if i < n and p[i] == 44:  # ,
            i = _ws(p, i + 1, n)
            continue
        if i < n and p[i] == 125:  # }
            break
        return 0
    if _ws(p, i + 1, n) != n or not (seen & F_OP) or not (seen & F_KEY) or not (seen & F_VALUE):
        return 0
    if key.end - key.start - key.escapes < 1 or key.end - key.start - key.escapes > MAX_KEY \
            or value.end - value.start - value.escapes > MAX_VALUE:
        return 0
    return seen


def spool_lines(list lines, Py_ssize_t start, object last_ts, object now, object skew_ns, list out):
    """See `pitr.cli.import_scan.spool_lines_reference`."""
    cdef Py_ssize_t index, n, count = len(lines)
    cdef const unsigned char *p
    cdef Span key, value
    cdef int64_t last = 0, clock, ts = 0
    cdef int flags, overflow, has_time
    cdef bint has_last = last_ts is not None, limited
    cdef uint64_t skew = 0
    cdef object line, ts_obj
    if has_last:
        last = PyLong_AsLongLongAndOverflow(last_ts, &overflow)
        if overflow:
            return start, last_ts
    limited = skew_ns == skew_ns and skew_ns < 18446744073709551616.0  # neither NaN nor beyond 64 bits
    if limited:
        skew = <uint64_t>int(skew_ns)
    for index in range(start, count):
        line = lines[index]
        if type(line) is not str or not PyUnicode_IS_ASCII(line):
            return index, (last if has_last else None)
        p = <const unsigned char *>PyUnicode_DATA(line)
        n = PyUnicode_GET_LENGTH(line)
        has_time = 0
        flags = _parse(p, n, &key, &value, &ts, &has_time)
        if flags == 0:
            return index, (last if has_last else None)
        # the checking pass's time rules (check_and_spool), each clock read where it reads one
        if has_time:
            if has_last and ts <= last:
                return index, last
            clock = PyLong_AsLongLongAndOverflow(now(), &overflow)
            if overflow:
                return index, (last if has_last else None)
            if limited and ts > clock and <uint64_t>ts - <uint64_t>clock > skew:
                return index, (last if has_last else None)
            last, has_last = ts, True
            ts_obj = PyLong_FromLongLong(ts)
        else:
            clock = PyLong_AsLongLongAndOverflow(now(), &overflow)
            if overflow:
                return index, (last if has_last else None)
            if not has_last or clock > last:
                last, has_last = clock, True
            ts_obj = None
        out.append((((PUT, _text_bytes(p, key), _text_bytes(p, value), None),), ts_obj))
    return count, (last if has_last else None)
