# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of `segments.block_replay` (the pure-Python reference): same arguments, same
results, the same CorruptFile (reason, offset, LSN, hint) for the same damage.

tests/segments/test_block_replay.py holds the two equal on random and damaged inputs.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next, PyDict_SetItem, PyDict_Size
from cpython.list cimport PyList_Append
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from segments._errors import CorruptFile

cdef extern from "_block_replay_c.h":
    void pitr_crc_init()
    uint32_t pitr_crc32c(const unsigned char *p, size_t n, int use_hw) nogil
    uint32_t pitr_load32(const unsigned char *p) nogil
    uint64_t pitr_load64(const unsigned char *p) nogil
    ctypedef struct pitr_entry:
        uint64_t cache
        const unsigned char *data
        size_t len
        void *key
        void *value
    uint64_t pitr_cache_of(const unsigned char *data, size_t len, size_t skip) nogil
    int pitr_sort_entries(pitr_entry *entries, size_t n) nogil

pitr_crc_init()


include "_record_header.pxi"
include "_sorted_entries.pxi"


def crc32c(bytes data, bint hardware=True):
    """CRC-32C of `data` (the CPU instruction when there is one, unless `hardware` is false)."""
    return pitr_crc32c(<const unsigned char *>PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data),
                       hardware)


def replay_block(bytes buf, dict changes, uint64_t first_lsn, int64_t after_ts_ns, uint64_t fold_from,
                 uint64_t fold_to, bint want_ends=False):
    """See `segments.block_replay.replay_block_reference`."""
    cdef const unsigned char *data = <const unsigned char *>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t pos = 0, stop, p
    cdef uint32_t length, count, klen, vlen, i
    cdef RecordHeader header
    cdef unsigned char rtype, flags, kind, oflags
    cdef uint64_t lsn, expected = first_lsn
    cdef int64_t ts, prev_ts = after_ts_ns, first_ts = after_ts_ns, expires
    cdef bint fold, has_expiry
    cdef Py_ssize_t records = 0
    cdef list ends = [] if want_ends else None
    cdef object key, value
    while pos < end:
        check_record(data, pos, end, expected, prev_ts, &header)
        length, rtype, flags, count = header.length, header.rtype, header.flags, header.count
        lsn, ts, stop = header.lsn, header.ts, header.stop
        fold = fold_from <= lsn <= fold_to
        p = pos + HEADER_SIZE
        if flags & FLAG_SOURCE_REV:
            if stop - p < 8:
                raise CorruptFile("source revision runs past the record", offset=pos, lsn=lsn)
            p += 8
        if count == 0 or count > <uint64_t>((stop - p) // OP_HEADER_SIZE):
            raise CorruptFile(f"operation count {count} does not fit the record", offset=pos, lsn=lsn)
        for i in range(count):
            if stop - p < OP_HEADER_SIZE:
                raise CorruptFile("operation header runs past the record", offset=pos, lsn=lsn)
            kind = data[p]
            oflags = data[p + 1]
            klen = pitr_load32(data + p + 4)
            vlen = pitr_load32(data + p + 8)
            p += OP_HEADER_SIZE
            has_expiry = oflags & OP_FLAG_EXPIRY
            expires = 0
            if has_expiry:
                if stop - p < 8:
                    raise CorruptFile("expiry runs past the record", offset=pos, lsn=lsn)
                expires = <int64_t>pitr_load64(data + p)
                p += 8
            if klen > MAX_KEY or vlen > MAX_VALUE or <Py_ssize_t>klen + <Py_ssize_t>vlen > stop - p:
                raise CorruptFile("key or value length runs past the record", offset=pos, lsn=lsn)
            if kind == PUT:
                if fold:
                    key = PyBytes_FromStringAndSize(<const char *>data + p, klen)
                    value = PyBytes_FromStringAndSize(<const char *>data + p + klen, vlen)
                    if has_expiry:
                        value = (value, expires)
                    PyDict_SetItem(changes, key, value)
                p += klen + vlen
            elif kind == DELETE:
                if vlen or has_expiry:
                    raise CorruptFile("delete carries a value or expiry", offset=pos, lsn=lsn)
                if fold:
                    PyDict_SetItem(changes, PyBytes_FromStringAndSize(<const char *>data + p, klen), None)
                p += klen
            else:
                raise CorruptFile(f"unknown operation kind {kind}", offset=pos, lsn=lsn)
        if p != stop:
            raise CorruptFile(f"{stop - p} stray bytes after the last operation", offset=pos, lsn=lsn)
        if records == 0:
            first_ts = ts
        records += 1
        if want_ends:
            ends.append(stop)
        expected = lsn + 1
        prev_ts = ts
        pos = stop
    return records, first_ts, prev_ts, ends


cdef inline bytes _i64be(int64_t v):
    cdef unsigned char out[8]
    cdef uint64_t u = <uint64_t>v
    cdef int k
    for k in range(8):
        out[7 - k] = <unsigned char>(u >> (8 * k))
    return PyBytes_FromStringAndSize(<const char *>out, 8)


def live_rows(dict merged, int64_t cutoff_ns):
    """See `segments.block_replay.live_rows_reference`."""
    cdef Py_ssize_t n = PyDict_Size(merged), idx
    cdef pitr_entry *entries
    cdef object change, value
    cdef int64_t expires
    cdef list puts = [], expiring = []
    cdef Py_ssize_t expired = 0
    cdef object key
    if n == 0:
        return puts, expiring, 0
    entries = <pitr_entry *>malloc(n * sizeof(pitr_entry))
    if entries == NULL:
        raise MemoryError()
    try:
        fill_sorted_entries(merged, entries, n, False)
        # The rows are fresh copies, made in key order: LMDB then reads them from memory in the
        # order it writes them, not from wherever the fold allocated each key (half the time of
        # putmulti on 1M keys went to those cache misses).
        for idx in range(n):
            change = <object>entries[idx].value
            if change is None:
                continue
            key = PyBytes_FromStringAndSize(<const char *>entries[idx].data, <Py_ssize_t>entries[idx].len)
            if type(change) is bytes:
                PyList_Append(puts, (key, PyBytes_FromStringAndSize(PyBytes_AS_STRING(change),
                                                                    PyBytes_GET_SIZE(change))))
                continue
            if type(change) is not tuple or PyTuple_GET_SIZE(change) != 2:
                raise TypeError(f"a change is bytes, (bytes, int) or None, not {change!r}")
            value = <object>PyTuple_GET_ITEM(change, 0)
            expires = <object>PyTuple_GET_ITEM(change, 1)
            if expires <= cutoff_ns:
                expired += 1
                continue
            PyList_Append(expiring, (key, _i64be(expires)))
            PyList_Append(puts, (key, value))
    finally:
        free(entries)
    return puts, expiring, expired
