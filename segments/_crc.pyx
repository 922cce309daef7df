# cython: language_level=3
"""Compiled CRC-32C (Castagnoli) with the crc32c package's calling convention: `crc32c(data, value=0)`.

The checksum code is segments/_block_replay_c.h's (the SSE 4.2 instruction when the CPU has
it, a slicing-by-8 table otherwise). segments/crc.py picks this module when it is built and the
crc32c package (the reference) when it is not; tests/segments/test_crc.py holds the two equal.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t

cdef extern from "_block_replay_c.h":
    void pitr_crc_init()

cdef extern from *:
    """
    /* CRC-32C of p[0:n] continued from `value`, the CRC-32C of the bytes before them (0: none). */
    static uint32_t pitr_crc32c_update(uint32_t value, const unsigned char *p, size_t n, int use_hw) {
        uint32_t crc = value ^ 0xFFFFFFFFu;
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (use_hw && pitr_crc_hw) return pitr_crc_sse42(crc, p, n) ^ 0xFFFFFFFFu;
    #endif
        (void)use_hw;
        return pitr_crc_sw(crc, p, n) ^ 0xFFFFFFFFu;
    }
    """
    uint32_t pitr_crc32c_update(uint32_t value, const unsigned char *p, size_t n, int use_hw) nogil

pitr_crc_init()

# from this many bytes on, the GIL is released while the CRC runs (the crc32c package's own threshold)
cdef Py_ssize_t RELEASE_GIL_FROM = 32768


def crc32c(data, uint32_t value=0, bint hardware=True):
    """CRC-32C of `data` (bytes or any other contiguous buffer), continued from `value`:
    crc32c(b, crc32c(a)) == crc32c(a + b). `hardware=False` forces the table (for the tests)."""
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef Py_ssize_t n
    cdef uint32_t crc
    cdef bint viewed = type(data) is not bytes
    if viewed:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        p, n = <const unsigned char *>view.buf, view.len
    else:  # the common case: no buffer to acquire
        p, n = <const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)
    if n >= RELEASE_GIL_FROM:
        with nogil:
            crc = pitr_crc32c_update(value, p, <size_t>n, hardware)
    else:
        crc = pitr_crc32c_update(value, p, <size_t>n, hardware)
    if viewed:
        PyBuffer_Release(&view)
    return crc
