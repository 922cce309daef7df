# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of `pitr.store.run_encode.sequence_run_reference` for a run of single puts and
deletes without expiry: checked, timed and encoded in C into one buffer of records (the bytes
`segments.record.encode_record` makes of each). Returns None for any other run, and for one
holding a commit the rules would refuse, so that the reference sequences it and words the
refusal. `make_visible` is the twin of `make_visible_reference`. tests/store/test_run_encode.py
holds the two pairs equal on random runs.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_FromLongLong
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1

cdef extern from "_rowcodec_c.h":
    void pitr_crc_init()
    uint32_t pitr_crc32c_more(uint32_t crc, const unsigned char *p, size_t n) nogil

pitr_crc_init()

cdef enum:
    PUT = 1
    DELETE = 2
    MAX_KEY = 511  # pitr.datadir.state.MAX_KEY: LMDB's key limit, what check_ops holds a key to
    MAX_VALUE = 64 << 20
    RECORD_FIXED = 44  # record header and one operation header
    PAYLOAD_FIXED = 36  # what the length field counts besides the key and value

cdef int64_t MAX_I64 = 0x7FFFFFFFFFFFFFFF
cdef uint64_t MAX_LSN = 0x7FFFFFFFFFFFFFFF


cdef inline void _store32(unsigned char *out, uint32_t v) noexcept nogil:
    out[0] = v & 0xFF
    out[1] = (v >> 8) & 0xFF
    out[2] = (v >> 16) & 0xFF
    out[3] = (v >> 24) & 0xFF


cdef inline void _store64(unsigned char *out, uint64_t v) noexcept nogil:
    cdef int k
    for k in range(8):
        out[k] = <unsigned char>(v >> (8 * k))


cdef inline int _clock(object clock, int64_t *out):
    cdef int overflow = 0
    cdef object now = clock()
    if type(now) is not int:
        return 0
    out[0] = PyLong_AsLongLongAndOverflow(now, &overflow)
    return not overflow


def sequence_run(list commits, object first_lsn, object last_ts, object promised, object clock,
                 object max_skew):
    """(ops of each commit, times, [records]) of a run of single puts and deletes, or None."""
    cdef Py_ssize_t count = len(commits), i, total = 0, klen, vlen, pos
    cdef int64_t *stamps
    cdef int64_t *kinds
    cdef int64_t last, floor, now, ts, first
    cdef int overflow = 0
    cdef bint limited
    cdef uint64_t skew = 0
    cdef object commit, ops, op, key, value, ts_obj, kind
    cdef list queued, times
    cdef bytes data
    cdef unsigned char *out
    cdef uint32_t crc, length
    if count == 0:
        return None
    first = PyLong_AsLongLongAndOverflow(first_lsn, &overflow)
    if overflow or first < 0 or <uint64_t>first > MAX_LSN - <uint64_t>count + 1:
        return None
    last = PyLong_AsLongLongAndOverflow(last_ts, &overflow)
    if overflow:
        return None
    floor = PyLong_AsLongLongAndOverflow(promised, &overflow)
    if overflow:
        return None
    limited = max_skew == max_skew and max_skew < 9223372036854775807.0
    if limited:
        if max_skew < 0:
            return None
        skew = <uint64_t>int(max_skew)
    stamps = <int64_t *>malloc(count * sizeof(int64_t) * 2)
    if stamps == NULL:
        raise MemoryError()
    kinds = stamps + count
    try:
        for i in range(count):
            commit = commits[i]
            if type(commit) is not tuple or PyTuple_GET_SIZE(commit) != 2:
                return None
            ops = <object>PyTuple_GET_ITEM(commit, 0)
            ts_obj = <object>PyTuple_GET_ITEM(commit, 1)
            if type(ops) is not tuple or PyTuple_GET_SIZE(ops) != 1:
                return None
            op = <object>PyTuple_GET_ITEM(ops, 0)
            if not isinstance(op, tuple) or PyTuple_GET_SIZE(op) != 4:
                return None
            kind = <object>PyTuple_GET_ITEM(op, 0)
            key = <object>PyTuple_GET_ITEM(op, 1)
            value = <object>PyTuple_GET_ITEM(op, 2)
            if type(kind) is not int or type(key) is not bytes or <object>PyTuple_GET_ITEM(op, 3) is not None:
                return None
            klen = PyBytes_GET_SIZE(key)
            if klen < 1 or klen > MAX_KEY:
                return None
            if kind == PUT:
                if type(value) is not bytes:
                    return None
                vlen = PyBytes_GET_SIZE(value)
                if vlen > MAX_VALUE:
                    return None
                kinds[i] = PUT
            elif kind == DELETE:
                vlen = 0
                kinds[i] = DELETE
            else:
                return None
            # `_stamp`'s rules, as the reference applies them
            if last > floor:
                floor = last
            if ts_obj is None:
                if not _clock(clock, &now):
                    return None
                if now > floor:
                    ts = now
                elif floor == MAX_I64:
                    return None
                else:
                    ts = floor + 1
            else:
                if type(ts_obj) is not int:
                    return None
                ts = PyLong_AsLongLongAndOverflow(ts_obj, &overflow)
                if overflow or ts <= floor or not _clock(clock, &now):
                    return None
                if limited and ts > now and <uint64_t>ts - <uint64_t>now > skew:
                    return None
            stamps[i] = ts
            last = ts
            total += RECORD_FIXED + klen + vlen
        data = PyBytes_FromStringAndSize(NULL, total)
        out = <unsigned char *>PyBytes_AS_STRING(data)
        queued = [None] * count
        times = [None] * count
        pos = 0
        for i in range(count):
            commit = commits[i]
            ops = <object>PyTuple_GET_ITEM(commit, 0)
            op = <object>PyTuple_GET_ITEM(ops, 0)
            key = <object>PyTuple_GET_ITEM(op, 1)
            klen = PyBytes_GET_SIZE(key)
            if kinds[i] == PUT:
                value = <object>PyTuple_GET_ITEM(op, 2)
                vlen = PyBytes_GET_SIZE(value)
            else:
                vlen = 0
            length = <uint32_t>(PAYLOAD_FIXED + klen + vlen)
            _store32(out + pos + 4, length)
            out[pos + 8] = 1  # a commit
            out[pos + 9] = 0
            out[pos + 10] = 0
            out[pos + 11] = 0
            _store32(out + pos + 12, 1)
            _store64(out + pos + 16, <uint64_t>(first + i))
            _store64(out + pos + 24, <uint64_t>stamps[i])
            out[pos + 32] = <unsigned char>kinds[i]
            out[pos + 33] = 0
            out[pos + 34] = 0
            out[pos + 35] = 0
            _store32(out + pos + 36, <uint32_t>klen)
            _store32(out + pos + 40, <uint32_t>vlen)
            memcpy(out + pos + RECORD_FIXED, PyBytes_AS_STRING(key), klen)
            if vlen:
                memcpy(out + pos + RECORD_FIXED + klen, PyBytes_AS_STRING(value), vlen)
            crc = pitr_crc32c_more(0, out + pos + 4, RECORD_FIXED - 4 + klen + vlen)
            _store32(out + pos, crc)
            pos += RECORD_FIXED + klen + vlen
            queued[i] = ops
            times[i] = PyLong_FromLongLong(stamps[i])
        return queued, times, [data]
    finally:
        free(stamps)


def make_visible(object unacked, Py_ssize_t count, dict pending):
    """See `pitr.store.run_encode.make_visible_reference`."""
    cdef Py_ssize_t i, j, size
    cdef object popleft = unacked.popleft, ops, op, kind, key, value, expires
    for i in range(count):
        ops = popleft()
        if type(ops) is not tuple:
            ops = tuple(ops)
        size = PyTuple_GET_SIZE(ops)
        for j in range(size):
            op = <object>PyTuple_GET_ITEM(ops, j)
            if isinstance(op, tuple) and PyTuple_GET_SIZE(op) == 4:
                kind = <object>PyTuple_GET_ITEM(op, 0)
                key = <object>PyTuple_GET_ITEM(op, 1)
                value = <object>PyTuple_GET_ITEM(op, 2)
                expires = <object>PyTuple_GET_ITEM(op, 3)
            else:
                kind, key, value, expires = op
            if kind == PUT:
                pending[key] = value if expires is None else (value, expires)
            else:
                pending[key] = None
