/* C helpers of segments/_block_scan.pyx: BLAKE2b (RFC 7693) with an 8-byte output, personalised, for the
 * catalog's key digests (pitr.catalog.keytable.key_digest: BLAKE2b-64 of the key, person "pitr-key-index"),
 * and the sort of 25-byte key-table entries.
 *
 * tests/segments/test_block_scan.py checks the digest against hashlib.blake2b on random keys of every
 * length up to three blocks, and the sort against Python's sorted().
 */
#ifndef PITR_BLOCK_SCAN_C_H
#define PITR_BLOCK_SCAN_C_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const uint64_t pitr_b2_iv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

static const uint8_t pitr_b2_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

static inline uint64_t pitr_b2_load64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static inline uint64_t pitr_b2_rotr(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

#define PITR_B2_G(a, b, c, d, x, y)          \
    do {                                     \
        a = a + b + (x);                     \
        d = pitr_b2_rotr(d ^ a, 32);         \
        c = c + d;                           \
        b = pitr_b2_rotr(b ^ c, 24);         \
        a = a + b + (y);                     \
        d = pitr_b2_rotr(d ^ a, 16);         \
        c = c + d;                           \
        b = pitr_b2_rotr(b ^ c, 63);         \
    } while (0)

static void pitr_b2_compress(uint64_t h[8], const unsigned char block[128], uint64_t t, int last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++) m[i] = pitr_b2_load64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = pitr_b2_iv[i];
    }
    v[12] ^= t; /* the counter's high word is 0: keys are at most 1 MiB */
    if (last) v[14] = ~v[14];
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = pitr_b2_sigma[r];
        PITR_B2_G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
        PITR_B2_G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
        PITR_B2_G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
        PITR_B2_G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
        PITR_B2_G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
        PITR_B2_G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
        PITR_B2_G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
        PITR_B2_G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/* The state after the parameter block of an unkeyed BLAKE2b of `outlen` bytes with a 16-byte person. */
static void pitr_b2_init(uint64_t h[8], size_t outlen, const unsigned char person[16]) {
    for (int i = 0; i < 8; i++) h[i] = pitr_b2_iv[i];
    h[0] ^= 0x01010000ULL | (uint64_t)outlen;
    h[6] ^= pitr_b2_load64(person);
    h[7] ^= pitr_b2_load64(person + 8);
}

/* BLAKE2b of p[0:n] from the initial state `h0`; writes the first 8 bytes of the digest to out. */
static void pitr_b2_digest8(const uint64_t h0[8], const unsigned char *p, size_t n, unsigned char out[8]) {
    uint64_t h[8];
    unsigned char last[128];
    memcpy(h, h0, sizeof h);
    uint64_t t = 0;
    while (n > 128) {
        t += 128;
        pitr_b2_compress(h, p, t, 0);
        p += 128;
        n -= 128;
    }
    memset(last, 0, sizeof last);
    if (n) memcpy(last, p, n);
    t += n;
    pitr_b2_compress(h, last, t, 1);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(h[0] >> (8 * i));
}

#define PITR_ENTRY_SIZE 25 /* a key-table entry: digest u64 | ts + 2**63 u64 | lsn u64 | kind u8 */

static int pitr_entry_bytes_cmp(const void *a, const void *b) { return memcmp(a, b, PITR_ENTRY_SIZE); }

static inline uint64_t pitr_be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

typedef struct {
    uint64_t head;
    size_t index;
} pitr_head;

/* Sort n key-table entries in place, bytewise (memcmp order): an LSD radix sort on the first 8 bytes
 * (16 bits a pass, passes whose digit is the same for every entry skipped), then each run of equal
 * first 8 bytes sorted whole with qsort. Returns 0, or -1 when out of memory. */
static int pitr_sort_entries25(unsigned char *data, size_t n) {
    const size_t width = PITR_ENTRY_SIZE;
    if (n < 2) return 0;
    pitr_head *a = (pitr_head *)malloc(n * sizeof(pitr_head));
    pitr_head *b = (pitr_head *)malloc(n * sizeof(pitr_head));
    size_t *count = (size_t *)malloc(65536 * sizeof(size_t));
    unsigned char *out = (unsigned char *)malloc(n * width);
    if (a == NULL || b == NULL || count == NULL || out == NULL) {
        free(a);
        free(b);
        free(count);
        free(out);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        a[i].head = pitr_be64(data + i * width);
        a[i].index = i;
    }
    pitr_head *src = a, *dst = b;
    for (int shift = 0; shift < 64; shift += 16) {
        memset(count, 0, 65536 * sizeof(size_t));
        for (size_t i = 0; i < n; i++) count[(src[i].head >> shift) & 0xFFFF]++;
        if (count[(src[0].head >> shift) & 0xFFFF] == n) continue;
        size_t total = 0;
        for (size_t d = 0; d < 65536; d++) {
            size_t c = count[d];
            count[d] = total;
            total += c;
        }
        for (size_t i = 0; i < n; i++) dst[count[(src[i].head >> shift) & 0xFFFF]++] = src[i];
        pitr_head *t = src;
        src = dst;
        dst = t;
    }
    for (size_t i = 0; i < n; i++) memcpy(out + i * width, data + src[i].index * width, width);
    memcpy(data, out, n * width);
    free(a);
    free(b);
    free(count);
    free(out);
    /* a run of equal heads (one key's versions) is sorted on the whole entry */
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && memcmp(data + j * width, data + i * width, 8) == 0) j++;
        if (j - i > 1) qsort(data + i * width, j - i, width, pitr_entry_bytes_cmp);
        i = j;
    }
    return 0;
}

#endif
