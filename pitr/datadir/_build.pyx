# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of `pitr.datadir.build`'s references: a restored state's rows made in key order
from the merged map, and read back against it with the state digest summed as they pass.

tests/store/test_build_rows.py holds the two equal on random maps and on damaged read-backs.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next, PyDict_Size
from cpython.list cimport PyList_Append
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memset

cdef extern from "_rowcodec_c.h":
    void pitr_crc_init()
    uint32_t pitr_crc32c_more(uint32_t crc, const unsigned char *p, size_t n) nogil
    ctypedef struct pitr_entry:
        uint64_t cache
        const unsigned char *data
        size_t len
        void *key
        void *value
    uint64_t pitr_cache_of(const unsigned char *data, size_t len, size_t skip) nogil
    int pitr_sort_entries(pitr_entry *entries, size_t n) nogil

cdef extern from *:
    void _prefetch "__builtin_prefetch"(const void *p) nogil

cdef extern from "_blake3_c.h":  # segments/_blake3_c.h: the one BLAKE3 of the compiled loops
    ctypedef struct pitr_sum256:
        uint64_t limb[4]
        uint64_t carry
    void pitr_sum256_add_hash(pitr_sum256 *sum, const unsigned char *p, size_t n) nogil

pitr_crc_init()

DEF HAS_EXPIRY = 1
DEF MISMATCH = 1
DEF ROW_DAMAGED = 2
DEF OUT_OF_ORDER = 3
DEF AHEAD = 8  # rows ahead whose objects sorted_rows fetches
DEF STAGED = 1024  # an entry up to this long is encoded for its hash on the stack


include "_row_bytes.pxi"
include "_sorted_entries.pxi"  # segments/ (setup.py gives Cython that include path)


cdef bytes _data_row(const unsigned char *key, Py_ssize_t klen, bytes value, unsigned char flags, int64_t expires):
    """The state's data row (pitr.datadir.entries.encode_value): flags, CRC-32C, [expiry], value."""
    cdef Py_ssize_t vlen = PyBytes_GET_SIZE(value), rhead = 13 if flags else 5
    cdef bytes row = PyBytes_FromStringAndSize(NULL, rhead + vlen)
    cdef unsigned char *w = <unsigned char *>PyBytes_AS_STRING(row)
    cdef uint32_t crc
    w[0] = flags
    if flags:
        _store64be(w + 5, expires)
    memcpy(w + rhead, PyBytes_AS_STRING(value), vlen)
    crc = pitr_crc32c_more(_key_crc(key, klen, flags), w + 5, <size_t>(rhead - 5 + vlen))
    w[1] = crc >> 24
    w[2] = (crc >> 16) & 0xFF
    w[3] = (crc >> 8) & 0xFF
    w[4] = crc & 0xFF
    return row


def sorted_rows(dict merged, object cutoff_ns):
    """See `pitr.datadir.build.sorted_rows_reference`."""
    cdef bint judge = cutoff_ns is not None
    cdef int64_t cutoff = cutoff_ns if judge else 0
    cdef Py_ssize_t n = PyDict_Size(merged), idx, klen
    cdef pitr_entry *entries
    cdef object change, value, key
    cdef int64_t expires
    cdef list rows = [], keys = [], changes = [], expiring = []
    cdef Py_ssize_t expired = 0
    if n == 0:
        return rows, keys, changes, expiring, 0
    entries = <pitr_entry *>malloc(n * sizeof(pitr_entry))
    if entries == NULL:
        raise MemoryError()
    try:
        fill_sorted_entries(merged, entries, n, True)
        # Fresh keys and rows, made in key order: LMDB reads them from memory in the order it
        # writes them, not from wherever the fold allocated each key.
        for idx in range(n):
            if idx + AHEAD < n:  # the map's objects lie in fold order: fetch those of a later row now
                _prefetch(entries[idx + AHEAD].data)
                _prefetch(entries[idx + AHEAD].value)
                _prefetch(<const char *>entries[idx + AHEAD].value + 64)
            change = <object>entries[idx].value
            if change is None:
                continue
            klen = <Py_ssize_t>entries[idx].len
            if type(change) is bytes:
                key = PyBytes_FromStringAndSize(<const char *>entries[idx].data, klen)
                PyList_Append(rows, (key, _data_row(entries[idx].data, klen, <bytes>change, 0, 0)))
            else:
                if type(change) is not tuple or PyTuple_GET_SIZE(change) != 2 \
                        or type(<object>PyTuple_GET_ITEM(change, 0)) is not bytes:
                    raise TypeError(f"a change is bytes, (bytes, int) or None, not {change!r}")
                value = <object>PyTuple_GET_ITEM(change, 0)
                expires = <object>PyTuple_GET_ITEM(change, 1)
                if judge and expires <= cutoff:
                    expired += 1
                    continue
                key = PyBytes_FromStringAndSize(<const char *>entries[idx].data, klen)
                PyList_Append(rows, (key, _data_row(entries[idx].data, klen, <bytes>value, HAS_EXPIRY, expires)))
                PyList_Append(expiring, (key, expires))
            PyList_Append(keys, <object>entries[idx].key)
            PyList_Append(changes, change)
    finally:
        free(entries)
    return rows, keys, changes, expiring, expired


cdef inline bint _less_equal(const unsigned char *a, Py_ssize_t la, const unsigned char *b, Py_ssize_t lb) nogil:
    """a <= b in bytes order (as LMDB keeps keys)."""
    cdef int r = memcmp(a, b, la if la < lb else lb)
    if r != 0:
        return r < 0
    return la <= lb


def read_back(list batch, list keys, list changes, Py_ssize_t at, bytes previous):
    # keys None: the rows are checked and hashed, compared with nothing
    """See `pitr.datadir.build.read_back_reference`."""
    cdef Py_ssize_t i, n = len(batch), klen, rlen, vlen, vstart, elen, hlen, plen = PyBytes_GET_SIZE(previous)
    cdef tuple item
    cdef bytes key, raw, want_value
    cdef object want, want_key
    cdef const unsigned char *r
    cdef const unsigned char *kp
    cdef const unsigned char *prev = <const unsigned char *>PyBytes_AS_STRING(previous)
    cdef unsigned char flags
    cdef int64_t expires = 0
    cdef bint want_expiry
    cdef pitr_sum256 acc
    cdef unsigned char staged[STAGED]
    cdef unsigned char *e
    cdef bytes big
    cdef int bad = -1, why = 0
    cdef bint compare = keys is not None
    memset(&acc, 0, sizeof(acc))
    if compare and n > len(keys) - at:
        n = len(keys) - at
    if n < 0:
        n = 0
    last = previous
    for i in range(n):
        item = <tuple>batch[i]
        key = <bytes>item[0]
        raw = <bytes>item[1]
        klen = PyBytes_GET_SIZE(key)
        rlen = PyBytes_GET_SIZE(raw)
        kp = <const unsigned char *>PyBytes_AS_STRING(key)
        r = <const unsigned char *>PyBytes_AS_STRING(raw)
        # the row's own checks, as every scan makes them (pitr.datadir._rowcodec.scan_rows)
        if rlen < 5 or klen > 0xFFFF:
            bad = i
            why = ROW_DAMAGED
            break
        flags = r[0]
        if flags > HAS_EXPIRY or (flags and rlen < 13):
            bad = i
            why = ROW_DAMAGED
            break
        if pitr_crc32c_more(_key_crc(kp, klen, flags), r + 5, <size_t>(rlen - 5)) != _load32be(r + 1):
            bad = i
            why = ROW_DAMAGED
            break
        if _less_equal(kp, klen, prev, plen):
            bad = i
            why = OUT_OF_ORDER
            break
        prev = kp
        plen = klen
        last = key
        vstart = 13 if flags else 5
        vlen = rlen - vstart
        if flags:
            expires = _load64be(r + 5)
        # the row must be the entry the build meant: its key, value and expiry, byte for byte
        if compare:
            want_key = keys[at + i]
            want = changes[at + i]
            if type(want) is bytes:
                want_value = <bytes>want
                want_expiry = False
            else:
                want_value = <bytes><object>PyTuple_GET_ITEM(want, 0)
                want_expiry = True
            if (type(want_key) is not bytes or PyBytes_GET_SIZE(want_key) != klen
                    or memcmp(PyBytes_AS_STRING(want_key), kp, klen) != 0
                    or PyBytes_GET_SIZE(want_value) != vlen
                    or memcmp(PyBytes_AS_STRING(want_value), r + vstart, vlen) != 0
                    or want_expiry != (flags != 0)
                    or (want_expiry and <object>PyTuple_GET_ITEM(want, 1) != expires)):
                bad = i
                why = MISMATCH
                break
        # the state digest's term: BLAKE3 of the entry's snapshot encoding (segments.snapshot.encode_entry)
        hlen = 17 if flags else 9
        elen = hlen + klen + vlen
        if elen <= STAGED:
            e = staged
        else:
            big = PyBytes_FromStringAndSize(NULL, elen)
            e = <unsigned char *>PyBytes_AS_STRING(big)
        e[0] = flags
        _store32le(e + 1, <uint32_t>klen)
        _store32le(e + 5, <uint32_t>vlen)
        if flags:
            _store64le(e + 9, expires)
        memcpy(e + hlen, kp, klen)
        memcpy(e + hlen + klen, r + vstart, vlen)
        pitr_sum256_add_hash(&acc, e, <size_t>elen)  # the sum modulo 2**256: the carries out are left
    total = (<object>acc.limb[0]) | ((<object>acc.limb[1]) << 64) | ((<object>acc.limb[2]) << 128) | \
        ((<object>acc.limb[3]) << 192)
    return bad, why, total, last
