# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of `segments.block_scan` (the pure-Python reference): same arguments, same
results, the same CorruptFile (reason, offset, LSN, hint) for the same damage.

tests/segments/test_block_scan.py holds the two equal on random and damaged inputs.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_Append
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from segments._errors import CorruptFile

cdef extern from "_block_replay_c.h":
    void pitr_crc_init()
    uint32_t pitr_crc32c(const unsigned char *p, size_t n, int use_hw) nogil
    uint32_t pitr_load32(const unsigned char *p) nogil
    uint64_t pitr_load64(const unsigned char *p) nogil

cdef extern from "_block_scan_c.h":
    void pitr_b2_init(uint64_t h[8], size_t outlen, const unsigned char person[16]) nogil
    void pitr_b2_digest8(const uint64_t h0[8], const unsigned char *p, size_t n, unsigned char out[8]) nogil
    int pitr_sort_entries25(unsigned char *data, size_t n) nogil

pitr_crc_init()

DEF FLAG_GAP = 2
DEF ENTRY_SIZE = 25
DEF KIND_EXPIRY = 0x80

include "_record_header.pxi"


cdef int _init_person(uint64_t h0[8], object person) except -1:
    cdef unsigned char padded[16]
    if not isinstance(person, bytes) or PyBytes_GET_SIZE(person) > 16:
        raise ValueError("person must be at most 16 bytes")
    memset(padded, 0, 16)
    memcpy(padded, PyBytes_AS_STRING(person), PyBytes_GET_SIZE(person))
    pitr_b2_init(h0, 8, padded)
    return 0


def key_digest(bytes key, bytes person):
    """See `segments.block_scan.key_digest_reference`."""
    cdef uint64_t h0[8]
    cdef unsigned char out[8]
    _init_person(h0, person)
    pitr_b2_digest8(h0, <const unsigned char *>PyBytes_AS_STRING(key), <size_t>PyBytes_GET_SIZE(key), out)
    return PyBytes_FromStringAndSize(<const char *>out, 8)


cdef inline void _put_be64(unsigned char *out, uint64_t v) noexcept nogil:
    cdef int k
    for k in range(8):
        out[7 - k] = <unsigned char>(v >> (8 * k))


def scan_block(bytes buf, uint64_t first_lsn, int64_t after_ts_ns, object person=None):
    """See `segments.block_scan.scan_block_reference`."""
    cdef const unsigned char *data = <const unsigned char *>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t pos = 0, stop, p, used = 0
    cdef uint32_t length, count, klen, vlen, i
    cdef RecordHeader header
    cdef unsigned char rtype, flags, kind, oflags
    cdef uint64_t lsn, expected = first_lsn
    cdef int64_t ts, prev_ts = after_ts_ns, first_ts = after_ts_ns
    cdef bint keys = person is not None, expiring
    cdef uint64_t h0[8]
    cdef unsigned char *entries = NULL
    cdef unsigned char *entry
    cdef list ends = []
    cdef list gaps = []
    cdef dict seen
    cdef object digest, found
    if keys:
        _init_person(h0, person)
        # every operation is at least an operation header: the entries cannot outgrow this
        entries = <unsigned char *>malloc(<size_t>(end // OP_HEADER_SIZE + 1) * ENTRY_SIZE)
        if entries == NULL:
            raise MemoryError()
    try:
        while pos < end:
            check_record(data, pos, end, expected, prev_ts, &header)
            length, rtype, flags, count = header.length, header.rtype, header.flags, header.count
            lsn, ts, stop = header.lsn, header.ts, header.stop
            if keys:
                if flags & FLAG_GAP:
                    PyList_Append(gaps, lsn)
                p = pos + HEADER_SIZE
                if flags & FLAG_SOURCE_REV:
                    if stop - p < 8:
                        raise CorruptFile("source revision runs past the record", offset=pos, lsn=lsn)
                    p += 8
                if count == 0 or count > <uint64_t>((stop - p) // OP_HEADER_SIZE):
                    raise CorruptFile(f"operation count {count} does not fit the record", offset=pos, lsn=lsn)
                seen = None
                for i in range(count):
                    if stop - p < OP_HEADER_SIZE:
                        raise CorruptFile("operation header runs past the record", offset=pos, lsn=lsn)
                    kind = data[p]
                    oflags = data[p + 1]
                    klen = pitr_load32(data + p + 4)
                    vlen = pitr_load32(data + p + 8)
                    p += OP_HEADER_SIZE
                    expiring = oflags & OP_FLAG_EXPIRY
                    if expiring:
                        if stop - p < 8:
                            raise CorruptFile("expiry runs past the record", offset=pos, lsn=lsn)
                        p += 8
                    if klen > MAX_KEY or vlen > MAX_VALUE or <Py_ssize_t>klen + <Py_ssize_t>vlen > stop - p:
                        raise CorruptFile("key or value length runs past the record", offset=pos, lsn=lsn)
                    if kind == DELETE:
                        if vlen or expiring:
                            raise CorruptFile("delete carries a value or expiry", offset=pos, lsn=lsn)
                    elif kind != PUT:
                        raise CorruptFile(f"unknown operation kind {kind}", offset=pos, lsn=lsn)
                    entry = entries + used
                    pitr_b2_digest8(h0, data + p, klen, entry)
                    if count > 1:
                        # a commit touching one digest twice keeps one entry: the last operation's, in the
                        # place of the first
                        if seen is None:
                            seen = {}
                        digest = PyBytes_FromStringAndSize(<const char *>entry, 8)
                        found = seen.get(digest)
                        if found is not None:
                            entry = entries + <Py_ssize_t>found
                        else:
                            seen[digest] = used
                            used += ENTRY_SIZE
                    else:
                        used += ENTRY_SIZE
                    _put_be64(entry + 8, <uint64_t>ts + (<uint64_t>1 << 63))
                    _put_be64(entry + 16, lsn)
                    entry[24] = kind | (KIND_EXPIRY if expiring else 0)
                    p += klen + vlen
                if p != stop:
                    raise CorruptFile(f"{stop - p} stray bytes after the last operation", offset=pos, lsn=lsn)
            if expected == first_lsn:
                first_ts = ts
            PyList_Append(ends, stop)
            expected = lsn + 1
            prev_ts = ts
            pos = stop
        out = PyBytes_FromStringAndSize(<const char *>entries, used) if keys else b""
    finally:
        free(entries)
    return len(ends), first_ts, prev_ts, ends, out, gaps


def sort_entries(bytes entries):
    """See `segments.block_scan.sort_entries_reference`."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(entries)
    cdef int failed
    if size % ENTRY_SIZE:
        raise ValueError(f"{size} bytes are not whole {ENTRY_SIZE}-byte entries")
    out = PyBytes_FromStringAndSize(PyBytes_AS_STRING(entries), size)
    cdef unsigned char *data = <unsigned char *>PyBytes_AS_STRING(out)
    with nogil:
        failed = pitr_sort_entries25(data, <size_t>(size // ENTRY_SIZE))
    if failed:
        raise MemoryError()
    return out
