# The byte order helpers and the key's CRC-32C of the state's rows (docs/format.md, "State database v2"),
# shared by pitr/datadir/_rowcodec.pyx and pitr/datadir/_build.pyx (a textual include: each declares
# pitr_crc32c_more from _rowcodec_c.h before it).

cdef inline uint32_t _load32be(const unsigned char *p) nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]


cdef inline int64_t _load64be(const unsigned char *p) nogil:
    cdef uint64_t u = 0
    cdef int k
    for k in range(8):
        u = (u << 8) | p[k]
    return <int64_t>u


cdef inline void _store64be(unsigned char *out, int64_t v) nogil:
    cdef uint64_t u = <uint64_t>v
    cdef int k
    for k in range(8):
        out[7 - k] = <unsigned char>(u >> (8 * k))


cdef inline void _store32le(unsigned char *out, uint32_t v) nogil:
    out[0] = v & 0xFF
    out[1] = (v >> 8) & 0xFF
    out[2] = (v >> 16) & 0xFF
    out[3] = v >> 24


cdef inline void _store64le(unsigned char *out, int64_t v) nogil:
    cdef uint64_t u = <uint64_t>v
    cdef int k
    for k in range(8):
        out[k] = <unsigned char>(u >> (8 * k))


cdef inline uint32_t _key_crc(const unsigned char *key, Py_ssize_t klen, unsigned char flags) nogil:
    cdef unsigned char head[2]
    head[0] = (klen >> 8) & 0xFF
    head[1] = klen & 0xFF
    cdef uint32_t crc = pitr_crc32c_more(0, head, 2)
    crc = pitr_crc32c_more(crc, key, <size_t>klen)
    return pitr_crc32c_more(crc, &flags, 1)
