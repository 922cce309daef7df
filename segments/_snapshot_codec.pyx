# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of `segments.snapshot_codec`'s references: the state digest's terms summed with a C
BLAKE3 (segments/_blake3_c.h), a run of entry encodings checked, and a snapshot block's entries
checked, hashed and (for a restore) decoded in one pass.

tests/segments/test_snapshot_codec.py holds the two equal on random and damaged inputs.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_Append
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp

cdef extern from "_blake3_c.h":
    ctypedef struct pitr_sum256:
        uint64_t limb[4]
        uint64_t carry
    void pitr_blake3(const unsigned char *p, size_t n, uint32_t out[8]) nogil
    void pitr_sum256_add_hash(pitr_sum256 *sum, const unsigned char *p, size_t n) noexcept nogil
    void pitr_sum256_bytes(const pitr_sum256 *sum, unsigned char out[40]) nogil

DEF FLAG_EXPIRY = 1
DEF HEAD = 9  # u8 flags | u32 key_len | u32 value_len
DEF MAX_KEY = 1 << 20
DEF MAX_VALUE = 64 << 20

# status codes (segments.snapshot_codec)
DEF OK = 0
DEF DAMAGED = 1
DEF OUT_OF_ORDER = 2


cdef inline uint32_t _load32(const unsigned char *p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline int64_t _load64(const unsigned char *p) noexcept nogil:
    return <int64_t>(<uint64_t>_load32(p) | (<uint64_t>_load32(p + 4) << 32))


cdef inline object _sum_int(pitr_sum256 *sum):
    cdef unsigned char out[40]
    pitr_sum256_bytes(sum, out)
    return int.from_bytes(PyBytes_FromStringAndSize(<const char *>out, 40), "little")


cdef inline int _before(const unsigned char *a, Py_ssize_t la, const unsigned char *b, Py_ssize_t lb) noexcept nogil:
    """a < b in bytes order."""
    cdef int r = memcmp(a, b, la if la < lb else lb)
    if r != 0:
        return r < 0
    return la < lb


def blake3_256(bytes data):
    """See `segments.snapshot_codec.blake3_256_reference`."""
    cdef uint32_t w[8]
    cdef unsigned char out[32]
    cdef int i
    pitr_blake3(<const unsigned char *>PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data), w)
    for i in range(32):
        out[i] = <unsigned char>(w[i // 4] >> (8 * (i % 4)))
    return PyBytes_FromStringAndSize(<const char *>out, 32)


def digest_terms(encoded):
    """See `segments.snapshot_codec.digest_terms_reference`."""
    cdef pitr_sum256 sum
    cdef bytes data
    sum.limb[0] = sum.limb[1] = sum.limb[2] = sum.limb[3] = sum.carry = 0
    for item in encoded:
        data = <bytes?>item
        pitr_sum256_add_hash(&sum, <const unsigned char *>PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
    return _sum_int(&sum)


def check_encoded(list encoded, object previous):
    """See `segments.snapshot_codec.check_encoded_reference` (the hashing without the interpreter's
    lock, so that a writer thread hashes while another reads the next rows)."""
    cdef pitr_sum256 sum
    cdef Py_ssize_t i, n = len(encoded), size, head
    cdef bytes data, last = previous
    cdef const unsigned char *p
    cdef const unsigned char *lastp = NULL
    cdef Py_ssize_t lastlen = 0, lastoff = 0
    cdef uint32_t klen, vlen
    cdef unsigned long long logical = 0
    cdef const unsigned char **starts
    cdef size_t *sizes
    sum.limb[0] = sum.limb[1] = sum.limb[2] = sum.limb[3] = sum.carry = 0
    if previous is not None:
        lastp = <const unsigned char *>PyBytes_AS_STRING(last)
        lastlen = PyBytes_GET_SIZE(last)
    starts = <const unsigned char **>malloc((n + 1) * sizeof(void *))
    sizes = <size_t *>malloc((n + 1) * sizeof(size_t))
    if starts == NULL or sizes == NULL:
        free(starts)
        free(sizes)
        raise MemoryError()
    try:
        for i in range(n):
            data = <bytes?>encoded[i]
            p = <const unsigned char *>PyBytes_AS_STRING(data)
            size = PyBytes_GET_SIZE(data)
            if size < HEAD or p[0] > FLAG_EXPIRY:
                return DAMAGED, i, 0, 0, previous
            head = HEAD + 8 if p[0] else HEAD
            klen = _load32(p + 1)
            vlen = _load32(p + 5)
            if klen > MAX_KEY or vlen > MAX_VALUE or size != head + <Py_ssize_t>klen + <Py_ssize_t>vlen:
                return DAMAGED, i, 0, 0, previous
            if lastp != NULL and not _before(lastp + lastoff, lastlen, p + head, klen):
                return OUT_OF_ORDER, i, 0, 0, previous
            lastp, lastoff, lastlen = p, head, klen
            starts[i] = p
            sizes[i] = <size_t>size
            logical += klen + vlen
        with nogil:  # the list holds every entry: none is freed while the lock is released
            for i in range(n):
                pitr_sum256_add_hash(&sum, starts[i], sizes[i])
    finally:
        free(starts)
        free(sizes)
    if n:
        data = <bytes>encoded[n - 1]
        last = data[lastoff:lastoff + lastlen]
    return OK, -1, _sum_int(&sum), logical, last


def scan_block(bytes raw, Py_ssize_t entry_count, object previous, bint decode, bint terms=True):
    """See `segments.snapshot_codec.scan_block_reference`."""
    cdef pitr_sum256 sum
    cdef const unsigned char *r = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(raw), pos = 0, start, i, head
    cdef const unsigned char *lastp = NULL
    cdef Py_ssize_t lastlen = 0
    cdef bytes prev_key
    cdef uint32_t klen, vlen
    cdef unsigned char flags
    cdef unsigned long long logical = 0
    cdef list out = [] if decode else None
    cdef object first = None, key, value
    sum.limb[0] = sum.limb[1] = sum.limb[2] = sum.limb[3] = sum.carry = 0
    if previous is not None:
        prev_key = <bytes?>previous
        lastp = <const unsigned char *>PyBytes_AS_STRING(prev_key)
        lastlen = PyBytes_GET_SIZE(prev_key)
    for i in range(entry_count):
        start = pos
        if end - pos < HEAD:
            return DAMAGED, i, 0, 0, None, None, None
        flags = r[pos]
        klen = _load32(r + pos + 1)
        vlen = _load32(r + pos + 5)
        head = HEAD + 8 if flags & FLAG_EXPIRY else HEAD
        if end - pos < head or <Py_ssize_t>klen + <Py_ssize_t>vlen > end - pos - head:
            return DAMAGED, i, 0, 0, None, None, None
        pos += head
        if lastp != NULL and not _before(lastp, lastlen, r + pos, klen):
            return OUT_OF_ORDER, i, 0, 0, None, None, None
        lastp, lastlen = r + pos, klen
        if terms:
            pitr_sum256_add_hash(&sum, r + start, <size_t>(head + klen + vlen))
        logical += klen + vlen
        if decode or first is None:
            key = PyBytes_FromStringAndSize(<const char *>(r + pos), klen)
            if first is None:
                first = key
            if decode:
                value = PyBytes_FromStringAndSize(<const char *>(r + pos + klen), vlen)
                if flags & FLAG_EXPIRY:
                    PyList_Append(out, (key, (value, _load64(r + start + HEAD))))
                else:
                    PyList_Append(out, (key, value))
        pos += klen + vlen
    if pos != end:
        return DAMAGED, entry_count, 0, 0, None, None, None
    last = PyBytes_FromStringAndSize(<const char *>lastp, lastlen) if entry_count else previous
    return OK, -1, _sum_int(&sum), logical, first, last, out


cdef inline bytes _i64be(int64_t v):
    cdef unsigned char out[8]
    cdef uint64_t u = <uint64_t>v
    cdef int k
    for k in range(8):
        out[7 - k] = <unsigned char>(u >> (8 * k))
    return PyBytes_FromStringAndSize(<const char *>out, 8)


cdef inline int _emit(object key, object change, object pair, list puts, list expiring, int64_t cutoff) except -1:
    """Append the rows of one (key, change) (`pair` is that tuple, or None); returns 1 if it expired."""
    cdef int64_t expires
    if change is None:
        return 0
    if type(change) is bytes:
        PyList_Append(puts, pair if pair is not None else (key, change))
        return 0
    if type(change) is not tuple or PyTuple_GET_SIZE(change) != 2:
        raise TypeError(f"a change is bytes, (bytes, int) or None, not {change!r}")
    expires = <object>PyTuple_GET_ITEM(change, 1)
    if expires <= cutoff:
        return 1
    PyList_Append(expiring, (key, _i64be(expires)))
    PyList_Append(puts, (key, <object>PyTuple_GET_ITEM(change, 0)))
    return 0


def merge_live(blocks, list changes, int64_t cutoff_ns):
    """See `segments.snapshot_codec.merge_live_reference`."""
    cdef list puts = [], expiring = []
    cdef Py_ssize_t expired = 0, j = 0, n = len(changes), i, m
    cdef list entries
    cdef tuple item, other
    cdef bytes key, ckey, last = None
    cdef int order
    for block in blocks:
        entries = <list?>block
        m = len(entries)
        for i in range(m):
            item = <tuple?>entries[i]
            key = <bytes?>item[0]
            if last is not None and not _before(<const unsigned char *>PyBytes_AS_STRING(last), PyBytes_GET_SIZE(last),
                                                <const unsigned char *>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)):
                raise ValueError(f"base keys out of order: {key!r} after {last!r}")
            last = key
            while j < n:  # the changes to keys before this one
                other = <tuple?>changes[j]
                ckey = <bytes?>other[0]
                order = memcmp(PyBytes_AS_STRING(ckey), PyBytes_AS_STRING(key),
                               min(PyBytes_GET_SIZE(ckey), PyBytes_GET_SIZE(key)))
                if order == 0:
                    order = (PyBytes_GET_SIZE(ckey) > PyBytes_GET_SIZE(key)) - (PyBytes_GET_SIZE(ckey) < PyBytes_GET_SIZE(key))
                if order > 0:
                    break
                expired += _emit(ckey, other[1], other, puts, expiring, cutoff_ns)
                j += 1
                if order == 0:
                    break
            else:
                order = 1
            if order != 0:  # no change to this key: the base's entry as it is
                expired += _emit(key, item[1], item, puts, expiring, cutoff_ns)
    while j < n:
        other = <tuple?>changes[j]
        expired += _emit(<bytes?>other[0], other[1], other, puts, expiring, cutoff_ns)
        j += 1
    return puts, expiring, expired


cdef int _block_terms(const unsigned char *r, Py_ssize_t end, Py_ssize_t entry_count, pitr_sum256 *sum) noexcept nogil:
    cdef Py_ssize_t pos = 0, start, i, head
    cdef uint32_t klen, vlen
    for i in range(entry_count):
        start = pos
        if end - pos < HEAD:
            return DAMAGED
        klen = _load32(r + pos + 1)
        vlen = _load32(r + pos + 5)
        head = HEAD + 8 if r[pos] & FLAG_EXPIRY else HEAD
        if end - pos < head or <Py_ssize_t>klen + <Py_ssize_t>vlen > end - pos - head:
            return DAMAGED
        pos += head + klen + vlen
        pitr_sum256_add_hash(sum, r + start, <size_t>(pos - start))
    return OK if pos == end else DAMAGED


def block_terms(bytes raw, Py_ssize_t entry_count):
    """See `segments.snapshot_codec.block_terms_reference` (the interpreter's lock released)."""
    cdef pitr_sum256 sum
    cdef const unsigned char *r = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(raw)
    cdef int status
    sum.limb[0] = sum.limb[1] = sum.limb[2] = sum.limb[3] = sum.carry = 0
    with nogil:
        status = _block_terms(r, end, entry_count, &sum)
    if status != OK:
        return status, 0
    return OK, _sum_int(&sum)
