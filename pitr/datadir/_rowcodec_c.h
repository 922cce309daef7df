/* C helpers of pitr/datadir/_rowcodec.pyx: a CRC-32C that continues from an earlier value (as the
 * crc32c package's crc32c(data, value) does), over the CRC code of segments/_block_replay_c.h. */
#include "_block_replay_c.h"

static uint32_t pitr_crc32c_more(uint32_t crc, const unsigned char *p, size_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (pitr_crc_hw) return pitr_crc_sse42(crc ^ 0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
#endif
    return pitr_crc_sw(crc ^ 0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
}
