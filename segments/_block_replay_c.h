/* C helpers of segments/_block_replay.pyx: CRC-32C, little-endian loads, the key sort.
 *
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial and final value 0xFFFFFFFF) is the
 * checksum of every record; it uses the SSE 4.2 instruction when the CPU has it and a slicing-by-8
 * table otherwise. tests/segments/test_block_replay.py checks both against the crc32c package.
 */
#ifndef PITR_BLOCK_REPLAY_C_H
#define PITR_BLOCK_REPLAY_C_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t pitr_crc_table[8][256];
static int pitr_crc_hw = 0;

static void pitr_crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        pitr_crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++)
            pitr_crc_table[t][n] = (pitr_crc_table[t - 1][n] >> 8) ^ pitr_crc_table[0][pitr_crc_table[t - 1][n] & 0xFF];
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    pitr_crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static inline uint32_t pitr_load32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t pitr_load64(const unsigned char *p) {
    return (uint64_t)pitr_load32(p) | ((uint64_t)pitr_load32(p + 4) << 32);
}

static uint32_t pitr_crc_sw(uint32_t crc, const unsigned char *p, size_t n) {
    while (n >= 8) {
        uint32_t lo = crc ^ pitr_load32(p);
        uint32_t hi = pitr_load32(p + 4);
        crc = pitr_crc_table[7][lo & 0xFF] ^ pitr_crc_table[6][(lo >> 8) & 0xFF] ^
              pitr_crc_table[5][(lo >> 16) & 0xFF] ^ pitr_crc_table[4][lo >> 24] ^
              pitr_crc_table[3][hi & 0xFF] ^ pitr_crc_table[2][(hi >> 8) & 0xFF] ^
              pitr_crc_table[1][(hi >> 16) & 0xFF] ^ pitr_crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ pitr_crc_table[0][(crc ^ *p++) & 0xFF];
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t pitr_crc_sse42(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        c = __builtin_ia32_crc32di(c, pitr_load64(p));
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c;
    while (n--) crc = __builtin_ia32_crc32qi(crc, *p++);
    return crc;
}
#endif

/* use_hw: 1 to use the CPU instruction when there is one, 0 to force the table (for the tests). */
static uint32_t pitr_crc32c(const unsigned char *p, size_t n, int use_hw) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (use_hw && pitr_crc_hw) return pitr_crc_sse42(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
#endif
    (void)use_hw;
    return pitr_crc_sw(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
}

/* One key to sort: the 8 bytes after the keys' common prefix (big-endian, zero-padded) decide
 * most comparisons without touching the key's memory. */
typedef struct {
    uint64_t cache;
    const unsigned char *data;
    size_t len;
    void *key;
    void *value;
} pitr_entry;

static inline uint64_t pitr_cache_of(const unsigned char *data, size_t len, size_t skip) {
    uint64_t c = 0;
    for (size_t i = 0; i < 8; i++) c = (c << 8) | (skip + i < len ? data[skip + i] : 0);
    return c;
}

/* The order LMDB keeps keys in: memcmp over the shorter length, then the shorter first. */
static int pitr_entry_cmp(const void *pa, const void *pb) {
    const pitr_entry *a = (const pitr_entry *)pa, *b = (const pitr_entry *)pb;
    if (a->cache != b->cache) return a->cache < b->cache ? -1 : 1;
    size_t n = a->len < b->len ? a->len : b->len;
    int r = memcmp(a->data, b->data, n);
    if (r) return r;
    return a->len < b->len ? -1 : (a->len > b->len ? 1 : 0);
}

/* Sort `n` entries: an LSD radix sort on the cached 8 bytes (16 bits a pass, passes whose digit is
 * the same for every entry skipped), then each run of equal caches sorted on the whole key.
 * Returns 0, or -1 when out of memory. */
static int pitr_sort_entries(pitr_entry *entries, size_t n) {
    if (n < 2) return 0;
    pitr_entry *tmp = (pitr_entry *)malloc(n * sizeof(pitr_entry));
    size_t *count = (size_t *)malloc(65536 * sizeof(size_t));
    if (tmp == NULL || count == NULL) {
        free(tmp);
        free(count);
        return -1;
    }
    pitr_entry *src = entries, *dst = tmp;
    for (int shift = 0; shift < 64; shift += 16) {
        memset(count, 0, 65536 * sizeof(size_t));
        for (size_t i = 0; i < n; i++) count[(src[i].cache >> shift) & 0xFFFF]++;
        if (count[(src[0].cache >> shift) & 0xFFFF] == n) continue; /* one digit for all: nothing to do */
        size_t total = 0;
        for (size_t d = 0; d < 65536; d++) {
            size_t c = count[d];
            count[d] = total;
            total += c;
        }
        for (size_t i = 0; i < n; i++) dst[count[(src[i].cache >> shift) & 0xFFFF]++] = src[i];
        pitr_entry *t = src;
        src = dst;
        dst = t;
    }
    if (src != entries) memcpy(entries, src, n * sizeof(pitr_entry));
    free(tmp);
    free(count);
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && entries[j].cache == entries[i].cache) j++;
        if (j - i > 1) qsort(entries + i, j - i, sizeof(pitr_entry), pitr_entry_cmp);
        i = j;
    }
    return 0;
}

#endif
