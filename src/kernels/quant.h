/*
 * quant.h — private to src/kernels/quant*.c (and tests): ggml block layouts
 * as byte offsets, little-endian field readers, the 6-bit scale unpacking of
 * Q4_K/Q5_K, and the table of quantized dot kernels one kernel set provides.
 *
 * Blocks are read through byte pointers and memcpy (never by casting to a
 * struct), so a block may sit at any address — GGUF data opened from memory
 * need not be aligned, and UBSan stays quiet.
 *
 * The public API (duet_quantize_row, duet_quant_dot, duet_quant_matvec, ...)
 * is in include/duet.h, section "GGUF and quantized tensors".
 */
#ifndef DUET_KERNELS_QUANT_H
#define DUET_KERNELS_QUANT_H

#include "duet.h"

#include <stdint.h>
#include <string.h>

/* ---- block geometry (ggml-common.h) ---- */

#define QK 32     /* elements of a Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 block */
#define QK_K 256  /* elements of a K-quant super-block */

#define Q4_0_BYTES 18  /* f16 d | qs[16] */
#define Q4_1_BYTES 20  /* f16 d | f16 m | qs[16] */
#define Q5_0_BYTES 22  /* f16 d | qh[4] | qs[16] */
#define Q5_1_BYTES 24  /* f16 d | f16 m | qh[4] | qs[16] */
#define Q8_0_BYTES 34  /* f16 d | i8 qs[32] */
#define Q4_K_BYTES 144 /* f16 d | f16 dmin | scales[12] | qs[128] */
#define Q5_K_BYTES 176 /* f16 d | f16 dmin | scales[12] | qh[32] | qs[128] */
#define Q6_K_BYTES 210 /* ql[128] | qh[64] | i8 scales[16] | f16 d */
#define Q8_K_BYTES 292 /* f32 d | i8 qs[256] | i16 bsums[16] */

/* field offsets inside the K blocks */
#define Q4_K_SCALES 4
#define Q4_K_QS 16
#define Q5_K_SCALES 4
#define Q5_K_QH 16
#define Q5_K_QS 48
#define Q6_K_QL 0
#define Q6_K_QH 128
#define Q6_K_SCALES 192
#define Q6_K_D 208
#define Q8_K_QS 4
#define Q8_K_BSUMS 260

/* ---- little-endian field access (x86 and every target duet builds on are
 * little-endian; GGUF is little-endian) ---- */

static inline uint16_t q_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline uint32_t q_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline float q_f32(const uint8_t *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}
static inline int16_t q_i16(const uint8_t *p) {
    int16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline void q_put_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void q_put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void q_put_f32(uint8_t *p, float v) { memcpy(p, &v, 4); }
static inline void q_put_i16(uint8_t *p, int16_t v) { memcpy(p, &v, 2); }

/* f16 field -> float (exact). */
static inline float q_f16(const uint8_t *p) { return duet_f16_to_f32_1(q_u16(p)); }

/* The sum of a Q8_0 block's 32 signed codes (the activation side of the
 * weight codes' offset terms). */
static inline int q8_0_code_sum(const uint8_t *blk) {
    int s = 0;
    for (int i = 0; i < QK; i++) s += (int8_t)blk[2 + i];
    return s;
}

/* The 12 scale bytes of Q4_K/Q5_K hold eight 6-bit scales sc[j] and eight
 * 6-bit mins m[j]: for j < 4 the low 6 bits of bytes j (scale) and j + 4
 * (min); for j >= 4 the low / high nibble of byte j + 4 gives the low 4 bits
 * of scale / min and the top 2 bits of bytes j - 4 / j give their high 2. */
static inline void q_k_scales(const uint8_t *s, uint8_t sc[8], uint8_t m[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        m[j] = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* ---- kernel tables ---- */

/* sum over n elements of w (type t) times x (type duet_qtype_dot_type(t)). */
typedef float (*duet_qdot_fn)(int64_t n, const void *w, const void *x);

/* The integer GEMM tile of the prompt path (quant.c, matmul_int8):
 * Q8_GEMM_R weight rows x Q8_GEMM_T activation rows (tokens) over ng groups
 * of 8 consecutive 32-blocks. In a group, i32 lane l of every 256-bit
 * vector belongs to block l, and step s (0..7) holds that block's codes
 * 4s..4s+3 — the 8 blocks transposed as an 8 x 8 matrix of 4-byte words —
 * so 8 vpdpbusd leave each lane with its block's whole integer dot and the
 * float scales are applied once per block, not once per instruction.
 * Packed group g (blocks past the matrix's end are zero codes with zero
 * scales):
 *   weights (Q8_GEMM_WG bytes a group): 8 steps x Q8_GEMM_R rows x 32 code
 *     bytes, u8 (Q8_0: q + 128; Q4_0: the nibble q, elements 0-15 from the
 *     low nibbles), then Q8_GEMM_R x 8 float scales (lane l: block l);
 *   activations (Q8_GEMM_XG bytes a group): 8 steps x Q8_GEMM_T tokens x 32
 *     Q8_0 codes (s8), then Q8_GEMM_T x 8 float scales dx, then Q8_GEMM_T x
 *     8 i32 offset terms xc = -off * (sum of the block's codes), off = 128
 *     (Q8_0) or 8 (Q4_0), the weight codes' offset: a lane's integer sum
 *     starts at xc, so after the 8 steps it is exactly the signed dot.
 * y[t * ldy + r] += sum over the ng groups' blocks of dw * (dx * dot), in
 * float (8 lanes accumulated group by group, then summed). */
#define Q8_GEMM_R 4
#define Q8_GEMM_T 3
#define Q8_GEMM_WG (8 * Q8_GEMM_R * 32 + Q8_GEMM_R * 8 * 4)
#define Q8_GEMM_XG (8 * Q8_GEMM_T * 32 + Q8_GEMM_T * 8 * 4 * 2)
typedef void (*duet_qgemm8_fn)(int64_t ng, const uint8_t *w, const uint8_t *x, float *y,
                               int64_t ldy);
/* Quantizes ntok (1..Q8_GEMM_T; missing tokens are zeros) f32 rows of 32 nb
 * values, row t at X + t * ldx, to Q8_0 — the same codes and scales as
 * duet_quantize_row — straight into ng = ceil(nb / 8) packed activation
 * groups at out, with off the weight codes' offset (layout above). */
typedef void (*duet_qquant8_fn)(const float *X, int64_t ldx, int ntok, int64_t nb, int off,
                                uint8_t *out);
/* Packs rows (1..Q8_GEMM_R; missing rows are zeros) of Q8_0 or Q4_0 weights,
 * row r at W + r * wrb, nb blocks each, into ng = ceil(nb / 8) groups at
 * out (layout above). */
typedef void (*duet_qpack8_fn)(duet_qtype t, const uint8_t *W, int64_t wrb, int rows, int64_t nb,
                               uint8_t *out);

/* Q4_0 x Q8_0 with the activation side prepared once per matvec (quant.c):
 * xd[b] = block b's scale as a float, xs[b] = 8 * xd[b] * sum of its codes
 * (the -8 offset of the weight codes), so a row costs one integer dot per
 * block. Same integer block sums as dot[Q4_0]; the float rounding differs. */
typedef float (*duet_qdot_q4_0_prep_fn)(int64_t n, const void *w, const void *x, const float *xd,
                                         const float *xs);

/* Quantizes nb blocks of activations (Q8_0: 32 values a block; Q8_K: 256)
 * to exactly the bytes quant.c's scalar quantizer writes. */
typedef void (*duet_qact_fn)(const float *x, uint8_t *b, int64_t nb);

typedef struct duet_quant_kernels {
    const char *isa;
    duet_qact_fn quant_q8_0, quant_q8_k; /* NULL: the scalar quantizers */
    duet_qdot_q4_0_prep_fn q4_0_prep; /* NULL: the matvec uses dot[Q4_0] */
    duet_qgemm8_fn gemm8; /* NULL: the prompt path dequantizes to f32 for duet_sgemm */
    duet_qpack8_fn gemm8_pack;   /* the weight packing for gemm8 */
    duet_qquant8_fn gemm8_quant; /* the activation quantizing and packing */
    duet_qdot_fn dot[DUET_QTYPE_COUNT]; /* indexed by duet_qtype; NULL = ask fallback */
    const struct duet_quant_kernels *fallback; /* for NULL entries; NULL = scalar */
} duet_quant_kernels;

extern const duet_quant_kernels duet_quant_kernels_scalar;
#if defined(__x86_64__)
extern const duet_quant_kernels duet_quant_kernels_avx2;
extern const duet_quant_kernels duet_quant_kernels_avx512;      /* AVX-512 BW */
extern const duet_quant_kernels duet_quant_kernels_avx512_vnni; /* + VNNI vpdpbusd */
#endif

/* The table the kernel set `isa` ("scalar", "avx2", "avx512") uses on a CPU
 * with DUET_CPU_* features (VNNI picks the vpdpbusd variant). */
const duet_quant_kernels *duet_quant_kernels_select(const char *isa, unsigned features);

/* The dot for type t in table k, else its fallback chain, else scalar. */
duet_qdot_fn duet_quant_dot_fn(const duet_quant_kernels *k, duet_qtype t);

#endif
