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

/* Seven rounds, unrolled, with the quarter-round G given: round r reads the message words in the
 * order of the permutation {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8} applied r times. */
#define PITR_B3_ROUNDS(G) \
    do { \
    G(0, 4, 8, 12, m[0], m[1]); \
    G(1, 5, 9, 13, m[2], m[3]); \
    G(2, 6, 10, 14, m[4], m[5]); \
    G(3, 7, 11, 15, m[6], m[7]); \
    G(0, 5, 10, 15, m[8], m[9]); \
    G(1, 6, 11, 12, m[10], m[11]); \
    G(2, 7, 8, 13, m[12], m[13]); \
    G(3, 4, 9, 14, m[14], m[15]); \
    G(0, 4, 8, 12, m[2], m[6]); \
    G(1, 5, 9, 13, m[3], m[10]); \
    G(2, 6, 10, 14, m[7], m[0]); \
    G(3, 7, 11, 15, m[4], m[13]); \
    G(0, 5, 10, 15, m[1], m[11]); \
    G(1, 6, 11, 12, m[12], m[5]); \
    G(2, 7, 8, 13, m[9], m[14]); \
    G(3, 4, 9, 14, m[15], m[8]); \
    G(0, 4, 8, 12, m[3], m[4]); \
    G(1, 5, 9, 13, m[10], m[12]); \
    G(2, 6, 10, 14, m[13], m[2]); \
    G(3, 7, 11, 15, m[7], m[14]); \
    G(0, 5, 10, 15, m[6], m[5]); \
    G(1, 6, 11, 12, m[9], m[0]); \
    G(2, 7, 8, 13, m[11], m[15]); \
    G(3, 4, 9, 14, m[8], m[1]); \
    G(0, 4, 8, 12, m[10], m[7]); \
    G(1, 5, 9, 13, m[12], m[9]); \
    G(2, 6, 10, 14, m[14], m[3]); \
    G(3, 7, 11, 15, m[13], m[15]); \
    G(0, 5, 10, 15, m[4], m[0]); \
    G(1, 6, 11, 12, m[11], m[2]); \
    G(2, 7, 8, 13, m[5], m[8]); \
    G(3, 4, 9, 14, m[1], m[6]); \
    G(0, 4, 8, 12, m[12], m[13]); \
    G(1, 5, 9, 13, m[9], m[11]); \
    G(2, 6, 10, 14, m[15], m[10]); \
    G(3, 7, 11, 15, m[14], m[8]); \
    G(0, 5, 10, 15, m[7], m[2]); \
    G(1, 6, 11, 12, m[5], m[3]); \
    G(2, 7, 8, 13, m[0], m[1]); \
    G(3, 4, 9, 14, m[6], m[4]); \
    G(0, 4, 8, 12, m[9], m[14]); \
    G(1, 5, 9, 13, m[11], m[5]); \
    G(2, 6, 10, 14, m[8], m[12]); \
    G(3, 7, 11, 15, m[15], m[1]); \
    G(0, 5, 10, 15, m[13], m[3]); \
    G(1, 6, 11, 12, m[0], m[10]); \
    G(2, 7, 8, 13, m[2], m[6]); \
    G(3, 4, 9, 14, m[4], m[7]); \
    G(0, 4, 8, 12, m[11], m[15]); \
    G(1, 5, 9, 13, m[5], m[0]); \
    G(2, 6, 10, 14, m[1], m[9]); \
    G(3, 7, 11, 15, m[8], m[6]); \
    G(0, 5, 10, 15, m[14], m[10]); \
    G(1, 6, 11, 12, m[2], m[12]); \
    G(2, 7, 8, 13, m[3], m[4]); \
    G(3, 4, 9, 14, m[7], m[13]); \
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
    PITR_B3_ROUNDS(PITR_B3_G);
    for (int i = 0; i < 8; i++) cv[i] = s[i] ^ s[i + 8];
}

/* out = BLAKE3-256(in[0..len)), len <= PITR_B3_CHUNK (the caller checks). */
static void pitr_b3_small(const uint8_t *in, size_t len, uint8_t out[32]) {
    uint32_t cv[8];
    uint8_t block[64];
    size_t blocks = len == 0 ? 1 : (len + 63) / 64;
    memcpy(cv, pitr_b3_iv, sizeof(cv));
    for (size_t b = 0; b + 1 < blocks; b++) /* whole blocks, read in place */
        pitr_b3_compress(cv, in + b * 64, 64, b == 0 ? PITR_B3_CHUNK_START : 0);
    size_t at = (blocks - 1) * 64;
    memset(block, 0, 64);
    memcpy(block, in + at, len - at);
    pitr_b3_compress(cv, block, (uint32_t)(len - at),
                     (blocks == 1 ? PITR_B3_CHUNK_START : 0) | PITR_B3_CHUNK_END | PITR_B3_ROOT);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)cv[i];
        out[4 * i + 1] = (uint8_t)(cv[i] >> 8);
        out[4 * i + 2] = (uint8_t)(cv[i] >> 16);
        out[4 * i + 3] = (uint8_t)(cv[i] >> 24);
    }
}

#if defined(__GNUC__) || defined(__clang__)
/* Four inputs at once, each of at most one chunk, in the lanes of 128-bit vectors (GCC's vector
 * extension: SSE2 on x86-64, NEON on arm64): input i at `lanes + i * stride`, `len[i]` bytes, readable
 * and zero-padded up to a whole number of 64-byte blocks; its digest at `out + 32 * i`. A lane whose
 * input has fewer blocks keeps its chaining value from its last block on. */
#define PITR_B3_HAVE4 1
typedef uint32_t pitr_b3_v4 __attribute__((vector_size(16)));
#define PITR_B3_ROTV(w, c) (((w) >> (c)) | ((w) << (32 - (c))))
#define PITR_B3_GV(a, b, c, d, x, y)                 \
    do {                                             \
        s[a] = s[a] + s[b] + (x);                    \
        s[d] = PITR_B3_ROTV(s[d] ^ s[a], 16);        \
        s[c] = s[c] + s[d];                          \
        s[b] = PITR_B3_ROTV(s[b] ^ s[c], 12);        \
        s[a] = s[a] + s[b] + (y);                    \
        s[d] = PITR_B3_ROTV(s[d] ^ s[a], 8);         \
        s[c] = s[c] + s[d];                          \
        s[b] = PITR_B3_ROTV(s[b] ^ s[c], 7);         \
    } while (0)

static void pitr_b3_small4(const uint8_t *lanes, size_t stride, const size_t len[4], uint8_t *out) {
    size_t blocks[4], most = 0;
    pitr_b3_v4 cv[8], s[16], m[16];
    for (int i = 0; i < 4; i++) {
        blocks[i] = len[i] == 0 ? 1 : (len[i] + 63) / 64;
        if (blocks[i] > most) most = blocks[i];
    }
    for (int j = 0; j < 8; j++) cv[j] = (pitr_b3_v4){pitr_b3_iv[j], pitr_b3_iv[j], pitr_b3_iv[j], pitr_b3_iv[j]};
    for (size_t b = 0; b < most; b++) {
        uint32_t block_len[4], flags[4], keep[4];
        for (int i = 0; i < 4; i++) {
            int active = b < blocks[i];
            size_t at = b * 64, n = active ? (len[i] - at < 64 ? len[i] - at : 64) : 0;
            block_len[i] = (uint32_t)n;
            flags[i] = (b == 0 ? PITR_B3_CHUNK_START : 0) |
                       (b + 1 == blocks[i] ? PITR_B3_CHUNK_END | PITR_B3_ROOT : 0);
            keep[i] = active ? 0 : 0xFFFFFFFFu;
        }
        for (int w = 0; w < 16; w++) {
            uint32_t lane[4];
            for (int i = 0; i < 4; i++) lane[i] = b < blocks[i] ? pitr_b3_load32(lanes + i * stride + b * 64 + 4 * w) : 0;
            m[w] = (pitr_b3_v4){lane[0], lane[1], lane[2], lane[3]};
        }
        for (int j = 0; j < 8; j++) s[j] = cv[j];
        for (int j = 0; j < 4; j++) s[8 + j] = (pitr_b3_v4){pitr_b3_iv[j], pitr_b3_iv[j], pitr_b3_iv[j], pitr_b3_iv[j]};
        s[12] = (pitr_b3_v4){0, 0, 0, 0};
        s[13] = (pitr_b3_v4){0, 0, 0, 0};
        s[14] = (pitr_b3_v4){block_len[0], block_len[1], block_len[2], block_len[3]};
        s[15] = (pitr_b3_v4){flags[0], flags[1], flags[2], flags[3]};
        PITR_B3_ROUNDS(PITR_B3_GV);
        pitr_b3_v4 mask = (pitr_b3_v4){keep[0], keep[1], keep[2], keep[3]};
        for (int j = 0; j < 8; j++) cv[j] = (cv[j] & mask) | ((s[j] ^ s[j + 8]) & ~mask);
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++) {
            uint32_t w = cv[j][i];
            out[32 * i + 4 * j] = (uint8_t)w;
            out[32 * i + 4 * j + 1] = (uint8_t)(w >> 8);
            out[32 * i + 4 * j + 2] = (uint8_t)(w >> 16);
            out[32 * i + 4 * j + 3] = (uint8_t)(w >> 24);
        }
}
#else
#define PITR_B3_HAVE4 0
static void pitr_b3_small4(const uint8_t *lanes, size_t stride, const size_t len[4], uint8_t *out) {
    for (int i = 0; i < 4; i++) pitr_b3_small(lanes + i * stride, len[i], out + 32 * i);
}
#endif

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
