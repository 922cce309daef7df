/* BLAKE3-256 of an input of at most one chunk (1,024 bytes), portable C, for the state digest's
 * per-entry terms (pitr/datadir/_build.pyx). Longer inputs are hashed by the blake3 package: a
 * caller checks the length first (PITR_B3_CHUNK). The function follows the BLAKE3 specification
 * (https://github.com/BLAKE3-team/BLAKE3-specs): one chunk, counter 0, blocks of 64 bytes, the
 * first flagged CHUNK_START, the last CHUNK_END | ROOT, the root output's first 32 bytes.
 * tests/store/test_build_rows.py checks it against the blake3 package on every entry length up to
 * one chunk and past it. */
#ifndef PITR_BLAKE3_C_H
#define PITR_BLAKE3_C_H

#include <stdint.h>
#include <string.h>

#define PITR_B3_CHUNK 1024
#define PITR_B3_CHUNK_START 1
#define PITR_B3_CHUNK_END 2
#define PITR_B3_ROOT 8

static const uint32_t pitr_b3_iv[8] = {0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
                                       0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u};
static const uint8_t pitr_b3_permutation[16] = {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8};
static uint8_t pitr_b3_schedule[7][16];

/* Round r reads the message words in the order of the permutation applied r times. */
static void pitr_b3_init(void) {
    for (int i = 0; i < 16; i++) pitr_b3_schedule[0][i] = (uint8_t)i;
    for (int r = 1; r < 7; r++)
        for (int i = 0; i < 16; i++) pitr_b3_schedule[r][i] = pitr_b3_schedule[r - 1][pitr_b3_permutation[i]];
}

static inline uint32_t pitr_b3_rotr(uint32_t w, int c) { return (w >> c) | (w << (32 - c)); }

static inline uint32_t pitr_b3_load32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#define PITR_B3_G(a, b, c, d, x, y)                  \
    do {                                             \
        s[a] = s[a] + s[b] + (x);                    \
        s[d] = pitr_b3_rotr(s[d] ^ s[a], 16);        \
        s[c] = s[c] + s[d];                          \
        s[b] = pitr_b3_rotr(s[b] ^ s[c], 12);        \
        s[a] = s[a] + s[b] + (y);                    \
        s[d] = pitr_b3_rotr(s[d] ^ s[a], 8);         \
        s[c] = s[c] + s[d];                          \
        s[b] = pitr_b3_rotr(s[b] ^ s[c], 7);         \
    } while (0)

/* The compression function, in place on the chaining value (the first 8 words of its output). */
static void pitr_b3_compress(uint32_t cv[8], const uint8_t block[64], uint32_t block_len, uint32_t flags) {
    uint32_t m[16], s[16];
    for (int i = 0; i < 16; i++) m[i] = pitr_b3_load32(block + 4 * i);
    for (int i = 0; i < 8; i++) s[i] = cv[i];
    s[8] = pitr_b3_iv[0];
    s[9] = pitr_b3_iv[1];
    s[10] = pitr_b3_iv[2];
    s[11] = pitr_b3_iv[3];
    s[12] = 0; /* the chunk counter, low and high words: one chunk, number 0 */
    s[13] = 0;
    s[14] = block_len;
    s[15] = flags;
    for (int r = 0; r < 7; r++) {
        const uint8_t *o = pitr_b3_schedule[r];
        PITR_B3_G(0, 4, 8, 12, m[o[0]], m[o[1]]);
        PITR_B3_G(1, 5, 9, 13, m[o[2]], m[o[3]]);
        PITR_B3_G(2, 6, 10, 14, m[o[4]], m[o[5]]);
        PITR_B3_G(3, 7, 11, 15, m[o[6]], m[o[7]]);
        PITR_B3_G(0, 5, 10, 15, m[o[8]], m[o[9]]);
        PITR_B3_G(1, 6, 11, 12, m[o[10]], m[o[11]]);
        PITR_B3_G(2, 7, 8, 13, m[o[12]], m[o[13]]);
        PITR_B3_G(3, 4, 9, 14, m[o[14]], m[o[15]]);
    }
    for (int i = 0; i < 8; i++) cv[i] = s[i] ^ s[i + 8];
}

/* out = BLAKE3-256(in[0..len)), len <= PITR_B3_CHUNK (the caller checks). */
static void pitr_b3_small(const uint8_t *in, size_t len, uint8_t out[32]) {
    uint32_t cv[8];
    uint8_t block[64];
    size_t blocks = len == 0 ? 1 : (len + 63) / 64;
    memcpy(cv, pitr_b3_iv, sizeof(cv));
    for (size_t b = 0; b < blocks; b++) {
        size_t at = b * 64, n = len - at < 64 ? len - at : 64;
        uint32_t flags = (b == 0 ? PITR_B3_CHUNK_START : 0) | (b + 1 == blocks ? PITR_B3_CHUNK_END | PITR_B3_ROOT : 0);
        memset(block, 0, 64);
        memcpy(block, in + at, n);
        pitr_b3_compress(cv, block, (uint32_t)n, flags);
    }
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)cv[i];
        out[4 * i + 1] = (uint8_t)(cv[i] >> 8);
        out[4 * i + 2] = (uint8_t)(cv[i] >> 16);
        out[4 * i + 3] = (uint8_t)(cv[i] >> 24);
    }
}

/* acc += the 256-bit little-endian number in digest, modulo 2**256 (the state digest's sum). */
static inline void pitr_b3_accumulate(uint64_t acc[4], const uint8_t digest[32]) {
    unsigned __int128 carry = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t limb = 0;
        for (int k = 7; k >= 0; k--) limb = (limb << 8) | digest[8 * i + k];
        carry += (unsigned __int128)acc[i] + limb;
        acc[i] = (uint64_t)carry;
        carry >>= 64;
    }
}

#endif
