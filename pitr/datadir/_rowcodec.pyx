# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of `pitr.datadir.rowcodec`'s references: the state's data rows (format 2) checked
a batch at a time as a scan reads them, and encoded a batch at a time as a restore appends them.

tests/store/test_rowcodec.py holds the two equal on random and damaged rows.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_Append
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

cdef extern from "_rowcodec_c.h":
    void pitr_crc_init()
    uint32_t pitr_crc32c_more(uint32_t crc, const unsigned char *p, size_t n) nogil

pitr_crc_init()

DEF HAS_EXPIRY = 1


include "_row_bytes.pxi"


cdef inline int _less_equal(bytes a, bytes b):
    """a <= b in bytes order (as LMDB keeps keys)."""
    cdef Py_ssize_t la = PyBytes_GET_SIZE(a), lb = PyBytes_GET_SIZE(b)
    cdef int r = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), la if la < lb else lb)
    if r != 0:
        return r < 0
    return la <= lb


cdef inline bytes _snapshot_entry(const unsigned char *key, Py_ssize_t klen, const unsigned char *value,
                                  Py_ssize_t vlen, unsigned char flags, int64_t expires):
    """The entry's snapshot encoding (segments.snapshot.encode_entry): what the state digest hashes."""
    cdef Py_ssize_t hlen = 17 if flags else 9
    cdef bytes entry = PyBytes_FromStringAndSize(NULL, hlen + klen + vlen)
    cdef unsigned char *e = <unsigned char *>PyBytes_AS_STRING(entry)
    e[0] = flags
    _store32le(e + 1, <uint32_t>klen)
    _store32le(e + 5, <uint32_t>vlen)
    if flags:
        _store64le(e + 9, expires)
    memcpy(e + hlen, key, klen)
    memcpy(e + hlen + klen, value, vlen)
    return entry


def scan_rows(list batch, bytes previous, object stop, bytes prefix, object live_at, bint encode):
    """See `pitr.datadir.rowcodec.scan_rows_reference`."""
    cdef list out = []
    cdef Py_ssize_t i, n = len(batch), klen, rlen, plen = PyBytes_GET_SIZE(prefix)
    cdef tuple item
    cdef bytes key, raw, value
    cdef const unsigned char *r
    cdef unsigned char flags
    cdef uint32_t crc
    cdef int64_t expires = 0, cutoff = 0
    cdef bint has_cutoff = live_at is not None, has_stop = stop is not None
    cdef bytes stop_key = stop if has_stop else b""
    cdef Py_ssize_t vstart, vlen
    if has_cutoff:
        cutoff = live_at
    for i in range(n):
        item = <tuple>batch[i]
        key = <bytes>item[0]
        raw = <bytes>item[1]
        klen = PyBytes_GET_SIZE(key)
        rlen = PyBytes_GET_SIZE(raw)
        r = <const unsigned char *>PyBytes_AS_STRING(raw)
        if rlen < 5 or klen > 0xFFFF:
            return out, previous, False, i, 1
        flags = r[0]
        if flags > HAS_EXPIRY or (flags and rlen < 13):
            return out, previous, False, i, 1
        crc = pitr_crc32c_more(_key_crc(<const unsigned char *>PyBytes_AS_STRING(key), klen, flags), r + 5,
                               <size_t>(rlen - 5))
        if crc != _load32be(r + 1):
            return out, previous, False, i, 1
        if _less_equal(key, previous):
            return out, previous, False, i, 2
        previous = key
        if has_stop and _less_equal(stop_key, key):  # key >= stop
            return out, previous, True, -1, 0
        if plen and (klen < plen or memcmp(PyBytes_AS_STRING(key), PyBytes_AS_STRING(prefix), plen) != 0):
            return out, previous, True, -1, 0
        vstart = 13 if flags else 5
        vlen = rlen - vstart
        if flags:
            expires = _load64be(r + 5)
            if has_cutoff and expires <= cutoff:
                continue
        if encode:
            PyList_Append(out, _snapshot_entry(<const unsigned char *>PyBytes_AS_STRING(key), klen, r + vstart, vlen,
                                               flags, expires))
        else:
            value = PyBytes_FromStringAndSize(<const char *>(r + vstart), vlen)
            PyList_Append(out, (key, value, expires if flags else None))
    return out, previous, False, -1, 0


def encode_rows(list keys, list values, list expiries):
    """See `pitr.datadir.rowcodec.encode_rows_reference`."""
    cdef Py_ssize_t i, n = len(keys), klen, vlen, rhead
    cdef list rows = [], entries = []
    cdef bytes key, value, row
    cdef object exp
    cdef unsigned char flags
    cdef int64_t expires = 0
    cdef unsigned char *w
    cdef uint32_t crc
    for i in range(n):
        key = <bytes>keys[i]
        value = <bytes>values[i]
        exp = expiries[i]
        klen = PyBytes_GET_SIZE(key)
        vlen = PyBytes_GET_SIZE(value)
        if klen > 0xFFFF:
            raise OverflowError("a state key is longer than 65,535 bytes")
        flags = 0 if exp is None else HAS_EXPIRY
        if flags:
            expires = exp
        rhead = 13 if flags else 5
        row = PyBytes_FromStringAndSize(NULL, rhead + vlen)
        w = <unsigned char *>PyBytes_AS_STRING(row)
        w[0] = flags
        if flags:
            _store64be(w + 5, expires)
        memcpy(w + rhead, PyBytes_AS_STRING(value), vlen)
        crc = pitr_crc32c_more(_key_crc(<const unsigned char *>PyBytes_AS_STRING(key), klen, flags), w + 5,
                               <size_t>(rhead - 5 + vlen))
        w[1] = crc >> 24
        w[2] = (crc >> 16) & 0xFF
        w[3] = (crc >> 8) & 0xFF
        w[4] = crc & 0xFF
        PyList_Append(rows, row)
        PyList_Append(entries, _snapshot_entry(<const unsigned char *>PyBytes_AS_STRING(key), klen,
                                               <const unsigned char *>PyBytes_AS_STRING(value), vlen, flags, expires))
    return rows, entries
