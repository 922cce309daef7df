/* BLAKE3-256 of a whole buffer in portable C, for segments/_snapshot_codec.pyx: the state digest
 * hashes every entry (about a hundred bytes each) separately, and a call through the Python binding
 * costs more than the hash. Written from the BLAKE3 specification (hash mode, 32-byte output): the
 * compression function, chunks of 1024 bytes in blocks of 64, and the binary tree of chaining
 * values for inputs longer than one chunk. No SIMD: one entry is one chunk, hashed serially
 * anyway; the file digest of a whole snapshot still goes through the binding.
 * tests/segments/test_snapshot_codec.py checks it against the blake3 package on random inputs.
 */
#ifndef PITR_BLAKE3_C_H
#define PITR_BLAKE3_C_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PITR_B3_CHUNK_START 1u
#define PITR_B3_CHUNK_END 2u
#define PITR_B3_PARENT 4u
#define PITR_B3_ROOT 8u
#define PITR_B3_BLOCK 64
#define PITR_B3_CHUNK 1024

static const uint32_t pitr_b3_iv[8] = {0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
                                       0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u};

/* the message word order of each of the seven rounds (the permutation applied round after round) */
static const uint8_t pitr_b3_schedule[7][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
    {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
    {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

static inline uint32_t pitr_b3_rotr(uint32_t w, int c) { return (w >> c) | (w << (32 - c)); }

static inline uint32_t pitr_b3_load32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#define PITR_B3_G(a, b, c, d, x, y)               \
    do {                                          \
        s[a] = s[a] + s[b] + (x);                 \
        s[d] = pitr_b3_rotr(s[d] ^ s[a], 16);     \
        s[c] = s[c] + s[d];                       \
        s[b] = pitr_b3_rotr(s[b] ^ s[c], 12);     \
        s[a] = s[a] + s[b] + (y);                 \
        s[d] = pitr_b3_rotr(s[d] ^ s[a], 8);      \
        s[c] = s[c] + s[d];                       \
        s[b] = pitr_b3_rotr(s[b] ^ s[c], 7);      \
    } while (0)

/* The compression function; writes the first 8 output words (a chaining value, or the 32-byte
 * output of a root node) to `out`. */
static void pitr_b3_compress(const uint32_t cv[8], const unsigned char block[PITR_B3_BLOCK], uint64_t counter,
                             uint32_t block_len, uint32_t flags, uint32_t out[8]) {
    uint32_t m[16], s[16];
    for (int i = 0; i < 16; i++) m[i] = pitr_b3_load32(block + 4 * i);
    for (int i = 0; i < 8; i++) s[i] = cv[i];
    s[8] = pitr_b3_iv[0];
    s[9] = pitr_b3_iv[1];
    s[10] = pitr_b3_iv[2];
    s[11] = pitr_b3_iv[3];
    s[12] = (uint32_t)counter;
    s[13] = (uint32_t)(counter >> 32);
    s[14] = block_len;
    s[15] = flags;
    for (int r = 0; r < 7; r++) {
        const uint8_t *w = pitr_b3_schedule[r];
        PITR_B3_G(0, 4, 8, 12, m[w[0]], m[w[1]]);
        PITR_B3_G(1, 5, 9, 13, m[w[2]], m[w[3]]);
        PITR_B3_G(2, 6, 10, 14, m[w[4]], m[w[5]]);
        PITR_B3_G(3, 7, 11, 15, m[w[6]], m[w[7]]);
        PITR_B3_G(0, 5, 10, 15, m[w[8]], m[w[9]]);
        PITR_B3_G(1, 6, 11, 12, m[w[10]], m[w[11]]);
        PITR_B3_G(2, 7, 8, 13, m[w[12]], m[w[13]]);
        PITR_B3_G(3, 4, 9, 14, m[w[14]], m[w[15]]);
    }
    for (int i = 0; i < 8; i++) out[i] = s[i] ^ s[i + 8];
}

/* A node whose compression is still to be done: the last block of a chunk, or a parent. */
typedef struct {
    uint32_t cv[8];
    unsigned char block[PITR_B3_BLOCK];
    uint64_t counter;
    uint32_t block_len;
    uint32_t flags;
} pitr_b3_node;

/* Every block of chunk `index` but its last compressed; the last one left in `node`. */
static void pitr_b3_chunk(const unsigned char *p, size_t n, uint64_t index, pitr_b3_node *node) {
    uint32_t cv[8];
    uint32_t start = PITR_B3_CHUNK_START;
    memcpy(cv, pitr_b3_iv, sizeof cv);
    while (n > PITR_B3_BLOCK) {
        pitr_b3_compress(cv, p, index, PITR_B3_BLOCK, start, cv);
        start = 0;
        p += PITR_B3_BLOCK;
        n -= PITR_B3_BLOCK;
    }
    memcpy(node->cv, cv, sizeof cv);
    memset(node->block, 0, PITR_B3_BLOCK);
    if (n) memcpy(node->block, p, n);
    node->counter = index;
    node->block_len = (uint32_t)n;
    node->flags = start | PITR_B3_CHUNK_END;
}

static void pitr_b3_parent(const uint32_t left[8], const uint32_t right[8], pitr_b3_node *node) {
    memcpy(node->cv, pitr_b3_iv, sizeof node->cv);
    for (int i = 0; i < 8; i++) {
        for (int k = 0; k < 4; k++) {
            node->block[4 * i + k] = (unsigned char)(left[i] >> (8 * k));
            node->block[32 + 4 * i + k] = (unsigned char)(right[i] >> (8 * k));
        }
    }
    node->counter = 0;
    node->block_len = PITR_B3_BLOCK;
    node->flags = PITR_B3_PARENT;
}

/* BLAKE3-256 of p[0, n): 8 little-endian words in `out`. */
static void pitr_blake3(const unsigned char *p, size_t n, uint32_t out[8]) {
    uint32_t stack[64][8];  /* chaining values of complete subtrees, at most one per bit of the chunk count */
    int depth = 0;
    uint64_t index = 0;
    pitr_b3_node node;
    while (n > PITR_B3_CHUNK) {  /* every chunk but the last: its chaining value joins the tree */
        uint32_t cv[8];
        pitr_b3_chunk(p, PITR_B3_CHUNK, index, &node);
        pitr_b3_compress(node.cv, node.block, node.counter, node.block_len, node.flags, cv);
        index++;
        for (uint64_t total = index; (total & 1) == 0; total >>= 1) {  /* merge equal subtrees */
            pitr_b3_node parent;
            depth--;
            pitr_b3_parent(stack[depth], cv, &parent);
            pitr_b3_compress(parent.cv, parent.block, parent.counter, parent.block_len, parent.flags, cv);
        }
        memcpy(stack[depth++], cv, sizeof cv);
        p += PITR_B3_CHUNK;
        n -= PITR_B3_CHUNK;
    }
    pitr_b3_chunk(p, n, index, &node);
    while (depth > 0) {  /* fold the right edge of the tree into the root */
        uint32_t cv[8];
        pitr_b3_compress(node.cv, node.block, node.counter, node.block_len, node.flags, cv);
        depth--;
        pitr_b3_parent(stack[depth], cv, &node);
    }
    pitr_b3_compress(node.cv, node.block, node.counter, node.block_len, node.flags | PITR_B3_ROOT, out);
}

/* The unreduced sum of 256-bit little-endian terms: four 64-bit limbs and a count of carries out. */
typedef struct {
    uint64_t limb[4];
    uint64_t carry;
} pitr_sum256;

static inline void pitr_sum256_add_words(pitr_sum256 *sum, const uint32_t w[8]) {
    unsigned __int128 acc = 0;
    for (int k = 0; k < 4; k++) {
        acc += (unsigned __int128)sum->limb[k] + ((uint64_t)w[2 * k] | ((uint64_t)w[2 * k + 1] << 32));
        sum->limb[k] = (uint64_t)acc;
        acc >>= 64;
    }
    sum->carry += (uint64_t)acc;
}

/* Adds BLAKE3-256(p[0, n)), read as a little-endian integer, to the sum. */
static inline void pitr_sum256_add_hash(pitr_sum256 *sum, const unsigned char *p, size_t n) {
    uint32_t words[8];
    pitr_blake3(p, n, words);
    pitr_sum256_add_words(sum, words);
}

/* The sum as 40 little-endian bytes (the 256-bit limbs, then the carries). */
static inline void pitr_sum256_bytes(const pitr_sum256 *sum, unsigned char out[40]) {
    for (int k = 0; k < 4; k++)
        for (int b = 0; b < 8; b++) out[8 * k + b] = (unsigned char)(sum->limb[k] >> (8 * b));
    for (int b = 0; b < 8; b++) out[32 + b] = (unsigned char)(sum->carry >> (8 * b));
}

#endif
