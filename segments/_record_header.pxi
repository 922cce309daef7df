# The checks of one record's header and CRC, shared by _block_replay.pyx and _block_scan.pyx
# (included where both have declared CorruptFile and the CRC helpers), with the record format's
# constants (segments/record.py, docs/format.md "Record").

DEF HEADER_SIZE = 32
DEF PAYLOAD_FIXED = 24
DEF OP_HEADER_SIZE = 12
DEF TYPE_COMMIT = 1
DEF FLAG_SOURCE_REV = 1
DEF PUT = 1
DEF DELETE = 2
DEF OP_FLAG_EXPIRY = 1
DEF MAX_KEY = 1 << 20
DEF MAX_VALUE = 64 << 20
DEF MAX_PAYLOAD = 256 << 20

_UNKNOWN_TYPE_HINT = "a newer pitr wrote this record; upgrade pitr to verify and restore it"


cdef struct RecordHeader:
    uint32_t length
    unsigned char rtype
    unsigned char flags
    uint32_t count
    uint64_t lsn
    int64_t ts
    Py_ssize_t stop


cdef inline int check_record(const unsigned char *data, Py_ssize_t pos, Py_ssize_t end, uint64_t expected,
                             int64_t prev_ts, RecordHeader *h) except -1:
    """Read the header of the record at `pos` into `h` and check it (the same CorruptFile as the references
    for the same damage): bounds, CRC-32C, the dense LSN, the increasing time, a known type."""
    if end - pos < HEADER_SIZE:
        raise CorruptFile("incomplete record header", offset=pos)
    cdef uint32_t crc = pitr_load32(data + pos)
    h.length = pitr_load32(data + pos + 4)
    h.rtype = data[pos + 8]
    h.flags = data[pos + 9]
    h.count = pitr_load32(data + pos + 12)
    h.lsn = pitr_load64(data + pos + 16)
    h.ts = <int64_t>pitr_load64(data + pos + 24)
    if h.length < PAYLOAD_FIXED or h.length > MAX_PAYLOAD:
        raise CorruptFile(f"record length {h.length} out of bounds", offset=pos)
    h.stop = pos + 8 + h.length
    if h.stop > end:
        raise CorruptFile(f"record length {h.length} runs past the end of the data "
                          f"({end - pos - 8} bytes remain)", offset=pos)
    if pitr_crc32c(data + pos + 4, <size_t>(h.stop - pos - 4), 1) != crc:
        raise CorruptFile("record CRC-32C mismatch", offset=pos, lsn=h.lsn)
    if h.lsn != expected:
        raise CorruptFile(f"expected LSN {expected}, found {h.lsn}", offset=pos, lsn=h.lsn)
    if h.ts <= prev_ts:
        raise CorruptFile(f"commit time {h.ts} does not follow {prev_ts}", offset=pos, lsn=h.lsn)
    if h.rtype != TYPE_COMMIT:
        raise CorruptFile(f"unknown record type {h.rtype}", offset=pos, lsn=h.lsn, hint=_UNKNOWN_TYPE_HINT)
    return 0
