/*
 * quant.c — ggml's quantized tensor types: the type table, quantize and
 * dequantize of every supported type, the scalar reference dot products,
 * and the threaded matrix x vector / matrix x matrix on top of the dots.
 *
 * Dequantization is exact: it computes each value with the same float
 * operations in the same order as ggml's dequantize_row_* (Ref:
 * ggml/src/ggml-quants.c), so a tensor read from a GGUF file gives the very
 * floats llama.cpp would. The layouts are described in include/duet.h and
 * kernels/quant.h.
 *
 * Quantization is duet's own: the 32-blocks round each value to the nearest
 * level of the block's f16 scale (the scale is rounded away from zero so the
 * extreme value never clips); the K-quants fit each sub-block's scale (and
 * min) by a small search with least-squares refits, then quantize the
 * sub-block scales to 6 (or 8) bits. Files it writes are valid ggml files;
 * the bits are not identical to ggml's quantizer.
 *
 * Dot products pair a weight type with an activation type (Q8_0 for the
 * 32-blocks, Q8_K for the K-quants, f32 for f32/f16/bf16): the activations
 * are quantized once per matmul and each block's dot is an integer sum times
 * the two scales. The scalar ones here are the reference; quant_avx2.c and
 * quant_avx512.c hold the SIMD versions (tests/test_quant.c holds them to
 * these).
 *
 * Batches (duet_quant_matmul with N >= 16 rows, a prompt) take a GEMM path
 * instead: f32 weights straight into duet_sgemm; Q8_0 / Q4_0 on kernel sets
 * with an integer tile (AVX-512 VNNI) as 4-row x 3-token tiles of u8
 * weight codes times Q8_0 activations (layout: quant.h, duet_qgemm8_fn);
 * every other type as tiles of exactly dequantized
 * rows times duet_sgemm.
 *
 * What it is not: a ggml port — types ggml has but duet does not implement
 * (Q2_K, Q3_K, IQ*, ...) are known only by size, for the GGUF reader.
 */
#include "kernels/quant.h"
#include "kernels/quant_mv.h"

#include "core/internal.h"
#include "kernels/kernels.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* ======================================================================== */
/* Type table                                                                */
/* ======================================================================== */

typedef struct qtype_info {
    const char *name; /* NULL: not a ggml type duet knows */
    int64_t block;    /* elements per block */
    int64_t bytes;    /* bytes per block */
    int supported;    /* quantize / dequantize / dot implemented */
} qtype_info;

/* ggml's numbers (ggml.h enum ggml_type); the holes are types ggml removed. */
static const qtype_info qtypes[DUET_QTYPE_COUNT] = {
    [0] = {"f32", 1, 4, 1},         [1] = {"f16", 1, 2, 1},
    [2] = {"q4_0", 32, 18, 1},      [3] = {"q4_1", 32, 20, 1},
    [6] = {"q5_0", 32, 22, 1},      [7] = {"q5_1", 32, 24, 1},
    [8] = {"q8_0", 32, 34, 1},      [9] = {"q8_1", 32, 36, 0},
    [10] = {"q2_K", 256, 84, 0},    [11] = {"q3_K", 256, 110, 0},
    [12] = {"q4_K", 256, 144, 1},   [13] = {"q5_K", 256, 176, 1},
    [14] = {"q6_K", 256, 210, 1},   [15] = {"q8_K", 256, 292, 1},
    [16] = {"iq2_xxs", 256, 66, 0}, [17] = {"iq2_xs", 256, 74, 0},
    [18] = {"iq3_xxs", 256, 98, 0}, [19] = {"iq1_s", 256, 50, 0},
    [20] = {"iq4_nl", 32, 18, 0},   [21] = {"iq3_s", 256, 110, 0},
    [22] = {"iq2_s", 256, 82, 0},   [23] = {"iq4_xs", 256, 136, 0},
    [24] = {"i8", 1, 1, 0},         [25] = {"i16", 1, 2, 0},
    [26] = {"i32", 1, 4, 0},        [27] = {"i64", 1, 8, 0},
    [28] = {"f64", 1, 8, 0},        [29] = {"iq1_m", 256, 56, 0},
    [30] = {"bf16", 1, 2, 1},       [34] = {"tq1_0", 256, 54, 0},
    [35] = {"tq2_0", 256, 66, 0},   [39] = {"mxfp4", 32, 17, 0},
};

static const qtype_info *info(int t) {
    if (t < 0 || t >= DUET_QTYPE_COUNT || !qtypes[t].name) return NULL;
    return &qtypes[t];
}

const char *duet_qtype_name(int t) {
    const qtype_info *q = info(t);
    return q ? q->name : NULL;
}

int duet_qtype_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < DUET_QTYPE_COUNT; t++) {
        const char *a = qtypes[t].name, *b = name;
        if (!a) continue;
        while (*a && *b && (*a | 0x20) == (*b | 0x20)) a++, b++;
        if (!*a && !*b) return t;
    }
    return -1;
}

int duet_qtype_known(int t) { return info(t) != NULL; }
int duet_qtype_supported(int t) { return info(t) && info(t)->supported; }
int64_t duet_qtype_block_size(int t) { return info(t) ? info(t)->block : 0; }
int64_t duet_qtype_block_bytes(int t) { return info(t) ? info(t)->bytes : 0; }

int64_t duet_qtype_row_bytes(int t, int64_t n) {
    const qtype_info *q = info(t);
    if (!q || n < 0 || n % q->block) return -1;
    int64_t blocks = n / q->block;
    if (blocks > INT64_MAX / q->bytes) return -1;
    return blocks * q->bytes;
}

duet_qtype duet_qtype_dot_type(duet_qtype t) {
    switch (t) {
    case DUET_QTYPE_Q4_0: case DUET_QTYPE_Q4_1: case DUET_QTYPE_Q5_0: case DUET_QTYPE_Q5_1:
    case DUET_QTYPE_Q8_0:
        return DUET_QTYPE_Q8_0;
    case DUET_QTYPE_Q4_K: case DUET_QTYPE_Q5_K: case DUET_QTYPE_Q6_K: case DUET_QTYPE_Q8_K:
        return DUET_QTYPE_Q8_K;
    default:
        return DUET_QTYPE_F32;
    }
}

/* ======================================================================== */
/* Helpers                                                                   */
/* ======================================================================== */

/* Round to nearest (ties to even) after clamping to [lo, hi]: never UB. */
static inline int nint_clamp(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo; /* also NaN */
    if (v > (float)hi) return hi;
    return (int)lrintf(v);
}

/* The f16 nearest to x whose magnitude is >= |x| (so x / value never exceeds
 * 1 in magnitude); the largest finite f16 when |x| is beyond it. */
static uint16_t f16_up(float x) {
    if (!(fabsf(x) <= 65504.0f)) return (uint16_t)(x < 0 ? 0xfbff : 0x7bff);
    uint16_t h = duet_f32_to_f16_1(x);
    if (fabsf(duet_f16_to_f32_1(h)) < fabsf(x)) h++; /* sign-magnitude: one ulp outwards */
    return h;
}

/* The f16 nearest to x that is <= x (a min that never lies above the data). */
static uint16_t f16_down(float x) {
    if (!(x >= -65504.0f)) return 0xfbff;
    if (x > 65504.0f) return 0x7bff;
    uint16_t h = duet_f32_to_f16_1(x);
    if (duet_f16_to_f32_1(h) > x) {
        if (h == 0x0000 || h == 0x8000) h = 0x8001;  /* +-0 -> smallest negative */
        else if (h & 0x8000) h++;                     /* negative: larger magnitude */
        else h--;                                     /* positive: smaller magnitude */
    }
    return h;
}

/* ======================================================================== */
/* Dequantize (exact, ggml's arithmetic)                                     */
/* ======================================================================== */

static void deq_q4_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += Q4_0_BYTES, y += QK) {
        const float d = q_f16(b);
        const uint8_t *qs = b + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((qs[j] & 0xF) - 8) * d;
            y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += Q4_1_BYTES, y += QK) {
        const float d = q_f16(b), m = q_f16(b + 2);
        const uint8_t *qs = b + 4;
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(qs[j] & 0xF) * d + m;
            y[j + 16] = (float)(qs[j] >> 4) * d + m;
        }
    }
}

static void deq_q5_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += Q5_0_BYTES, y += QK) {
        const float d = q_f16(b);
        const uint32_t qh = q_u32(b + 2);
        const uint8_t *qs = b + 6;
        for (int j = 0; j < 16; j++) {
            int lo = (qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (float)(lo - 16) * d;
            y[j + 16] = (float)(hi - 16) * d;
        }
    }
}

static void deq_q5_1(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += Q5_1_BYTES, y += QK) {
        const float d = q_f16(b), m = q_f16(b + 2);
        const uint32_t qh = q_u32(b + 4);
        const uint8_t *qs = b + 8;
        for (int j = 0; j < 16; j++) {
            int lo = (qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (float)lo * d + m;
            y[j + 16] = (float)hi * d + m;
        }
    }
}

static void deq_q8_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += Q8_0_BYTES, y += QK) {
        const float d = q_f16(b);
        const int8_t *qs = (const int8_t *)(b + 2);
        for (int j = 0; j < QK; j++) y[j] = (float)qs[j] * d;
    }
}

/* Q4_K: chunk c of 64 values = sub-blocks 2c (low nibbles of qs[32c..32c+32))
 * and 2c+1 (high nibbles); value = (d*sc) * q - (dmin*m). */
static void deq_q4_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += Q4_K_BYTES) {
        const float d = q_f16(b), dmin = q_f16(b + 2);
        uint8_t sc[8], m[8];
        q_k_scales(b + Q4_K_SCALES, sc, m);
        const uint8_t *q = b + Q4_K_QS;
        for (int c = 0; c < 4; c++, q += 32) {
            const float d1 = d * (float)sc[2 * c], m1 = dmin * (float)m[2 * c];
            const float d2 = d * (float)sc[2 * c + 1], m2 = dmin * (float)m[2 * c + 1];
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Q5_K: as Q4_K; the fifth bit of value l of sub-block j is bit j of qh[l]. */
static void deq_q5_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += Q5_K_BYTES) {
        const float d = q_f16(b), dmin = q_f16(b + 2);
        uint8_t sc[8], m[8];
        q_k_scales(b + Q5_K_SCALES, sc, m);
        const uint8_t *qh = b + Q5_K_QH, *q = b + Q5_K_QS;
        for (int c = 0; c < 4; c++, q += 32) {
            const float d1 = d * (float)sc[2 * c], m1 = dmin * (float)m[2 * c];
            const float d2 = d * (float)sc[2 * c + 1], m2 = dmin * (float)m[2 * c + 1];
            const int s1 = 2 * c, s2 = 2 * c + 1;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((q[l] & 0xF) + (((qh[l] >> s1) & 1) << 4)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)((q[l] >> 4) + (((qh[l] >> s2) & 1) << 4)) - m2;
        }
    }
}

/* Q6_K: per half h (128 values) and l < 32, values l, l+32, l+64, l+96 take
 * their low nibbles from ql[64h + l] (low), ql[64h + l + 32] (low),
 * ql[64h + l] (high), ql[64h + l + 32] (high) and their top two bits from
 * bits 0-1, 2-3, 4-5, 6-7 of qh[32h + l]; value = (d * sc[v / 16]) * (q - 32). */
static void deq_q6_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += Q6_K_BYTES) {
        const float d = q_f16(b + Q6_K_D);
        const int8_t *sc = (const int8_t *)(b + Q6_K_SCALES);
        for (int h = 0; h < 2; h++, y += 128) {
            const uint8_t *ql = b + Q6_K_QL + 64 * h, *qh = b + Q6_K_QH + 32 * h;
            const int8_t *s = sc + 8 * h;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)s[is] * (float)q1;
                y[l + 32] = d * (float)s[is + 2] * (float)q2;
                y[l + 64] = d * (float)s[is + 4] * (float)q3;
                y[l + 96] = d * (float)s[is + 6] * (float)q4;
            }
        }
    }
}

static void deq_q8_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += Q8_K_BYTES, y += QK_K) {
        const float d = q_f32(b);
        const int8_t *qs = (const int8_t *)(b + Q8_K_QS);
        for (int j = 0; j < QK_K; j++) y[j] = d * (float)qs[j];
    }
}

duet_status duet_dequantize_row(duet_qtype t, const void *src, float *y, int64_t n) {
    const qtype_info *q = info(t);
    if (!q || !q->supported)
        return duet_set_error(DUET_ERR_UNSUPPORTED, "dequantize: tensor type %d (%s) is not "
                              "supported (duet reads f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 "
                              "q4_K q5_K q6_K q8_K)", (int)t, q ? q->name : "unknown");
    if (n < 0 || n % q->block)
        return duet_set_error(DUET_ERR_ARG, "dequantize %s: %lld values is not a multiple of "
                              "the block size %lld", q->name, (long long)n, (long long)q->block);
    const uint8_t *b = src;
    const int64_t nb = n / q->block;
    switch (t) {
    case DUET_QTYPE_F32: memcpy(y, src, (size_t)n * sizeof(float)); break;
    case DUET_QTYPE_F16:
        for (int64_t i = 0; i < n; i++) y[i] = q_f16(b + 2 * i);
        break;
    case DUET_QTYPE_BF16:
        for (int64_t i = 0; i < n; i++) y[i] = duet_bf16_to_f32_1(q_u16(b + 2 * i));
        break;
    case DUET_QTYPE_Q4_0: deq_q4_0(b, y, nb); break;
    case DUET_QTYPE_Q4_1: deq_q4_1(b, y, nb); break;
    case DUET_QTYPE_Q5_0: deq_q5_0(b, y, nb); break;
    case DUET_QTYPE_Q5_1: deq_q5_1(b, y, nb); break;
    case DUET_QTYPE_Q8_0: deq_q8_0(b, y, nb); break;
    case DUET_QTYPE_Q4_K: deq_q4_k(b, y, nb); break;
    case DUET_QTYPE_Q5_K: deq_q5_k(b, y, nb); break;
    case DUET_QTYPE_Q6_K: deq_q6_k(b, y, nb); break;
    case DUET_QTYPE_Q8_K: deq_q8_k(b, y, nb); break;
    default: return duet_set_error(DUET_ERR_INTERNAL, "dequantize: no case for type %d", (int)t);
    }
    return DUET_OK;
}

/* ======================================================================== */
/* Quantize: the 32-blocks                                                   */
/* ======================================================================== */

/* Symmetric blocks (Q8_0, Q4_0, Q5_0): d = (the value of largest magnitude)
 * / -lo for Q4_0/Q5_0 (so it lands exactly on the lowest level, as in ggml),
 * amax / 127 for Q8_0; d is rounded outwards to f16 and each value rounded
 * to the nearest level with the stored d. */
/* The activation quantizers (Q8_0, Q8_K) run once per matmul on every
 * activation row: a prompt's took 7% of a 1.1B pp128 through libm's fmaxf
 * and lrintf. Same results without calls: the max as a comparison (a NaN
 * never wins, as with fmaxf(amax, NaN)), and round-to-nearest-even of a
 * value clamped to [-127, 127] by adding and subtracting 1.5 * 2^23 (exact
 * for |v| < 2^22, the default rounding mode lrintf uses too). */
static inline float amax_of(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) {
        const float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    return amax;
}

static inline int8_t rne127(float v) {
    v = v > -127.0f ? v : -127.0f; /* also NaN -> -127, as nint_clamp */
    v = v < 127.0f ? v : 127.0f;
    return (int8_t)(int)((v + 12582912.0f) - 12582912.0f);
}

static void quant_q8_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, b += Q8_0_BYTES) {
        const float amax = amax_of(x, QK);
        uint16_t h = f16_up(amax / 127.0f);
        float d = duet_f16_to_f32_1(h), id = d > 0.0f ? 1.0f / d : 0.0f;
        q_put_u16(b, h);
        for (int j = 0; j < QK; j++) b[2 + j] = (uint8_t)rne127(x[j] * id);
    }
}

/* The signed value of largest magnitude (the first one on ties). */
static float signed_max(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    return max;
}

static void quant_q4_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, b += Q4_0_BYTES) {
        uint16_t h = f16_up(signed_max(x, QK) / -8.0f);
        float d = duet_f16_to_f32_1(h), id = d != 0.0f ? 1.0f / d : 0.0f;
        q_put_u16(b, h);
        for (int j = 0; j < 16; j++) {
            int lo = nint_clamp(x[j] * id, -8, 7) + 8, hi = nint_clamp(x[j + 16] * id, -8, 7) + 8;
            b[2 + j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void quant_q5_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, b += Q5_0_BYTES) {
        uint16_t h = f16_up(signed_max(x, QK) / -16.0f);
        float d = duet_f16_to_f32_1(h), id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        q_put_u16(b, h);
        for (int j = 0; j < 16; j++) {
            int lo = nint_clamp(x[j] * id, -16, 15) + 16, hi = nint_clamp(x[j + 16] * id, -16, 15) + 16;
            b[6 + j] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            qh |= (uint32_t)(lo >> 4) << j;
            qh |= (uint32_t)(hi >> 4) << (j + 16);
        }
        q_put_u32(b + 2, qh);
    }
}

/* Affine blocks (Q4_1, Q5_1): m = min rounded down to f16, d = (max - m) /
 * levels rounded up to f16, so every value lies in [m, m + levels*d]. */
static void quant_affine(const float *x, uint8_t *b, int64_t nb, int levels, int bytes) {
    for (int64_t i = 0; i < nb; i++, x += QK, b += bytes) {
        float lo = x[0], hi = x[0];
        for (int j = 1; j < QK; j++) lo = fminf(lo, x[j]), hi = fmaxf(hi, x[j]);
        uint16_t mh = f16_down(lo);
        float m = duet_f16_to_f32_1(mh);
        uint16_t dh = f16_up((hi - m) / (float)levels);
        float d = duet_f16_to_f32_1(dh), id = d > 0.0f ? 1.0f / d : 0.0f;
        q_put_u16(b, dh);
        q_put_u16(b + 2, mh);
        int q[QK];
        for (int j = 0; j < QK; j++) q[j] = nint_clamp((x[j] - m) * id, 0, levels);
        if (levels == 15) {
            for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(q[j] | (q[j + 16] << 4));
        } else {
            uint32_t qh = 0;
            for (int j = 0; j < 16; j++) {
                b[8 + j] = (uint8_t)((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
                qh |= (uint32_t)(q[j] >> 4) << j;
                qh |= (uint32_t)(q[j + 16] >> 4) << (j + 16);
            }
            q_put_u32(b + 4, qh);
        }
    }
}

/* ======================================================================== */
/* Quantize: the K-quants                                                    */
/* ======================================================================== */

/* Fits x[0..n) ~ a * q - mn with integer q in [0, nmax], a >= 0, mn >= 0:
 * for a handful of trial scales around (max - lo) / nmax it assigns q, refits
 * (a, -mn) by least squares (mn clamped to >= 0), reassigns q with the refit
 * and keeps the pair with the least squared error. */
static void fit_affine(const float *x, int n, int nmax, float *a_out, float *mn_out) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
    if (lo > 0.0f) lo = 0.0f;
    *a_out = 0.0f;
    *mn_out = -lo;
    if (!(hi > lo)) return;
    double best = HUGE_VAL;
    for (int k = -6; k <= 6; k++) {
        const float iscale = ((float)nmax + 0.1f * (float)k) / (hi - lo);
        double sq = 0, sqq = 0, sx = 0, sqx = 0;
        for (int i = 0; i < n; i++) {
            double q = nint_clamp(iscale * (x[i] - lo), 0, nmax);
            sq += q, sqq += q * q, sx += (double)x[i], sqx += q * (double)x[i];
        }
        double det = n * sqq - sq * sq, a, c;
        if (det > 0) {
            a = (n * sqx - sq * sx) / det;
            c = (sqq * sx - sq * sqx) / det;
        } else {
            a = 0, c = 1;
        }
        if (c > 0) { /* the min must not be positive: fit a alone with c = 0 */
            c = 0;
            a = sqq > 0 ? sqx / sqq : 0;
        }
        if (!(a > 0)) continue;
        double err = 0;
        for (int i = 0; i < n; i++) {
            double q = nint_clamp((float)(((double)x[i] - c) / a), 0, nmax);
            double e = a * q + c - (double)x[i];
            err += e * e;
        }
        if (err < best) best = err, *a_out = (float)a, *mn_out = (float)-c;
    }
}

/* Fits x[0..n) ~ a * q with integer q in [-32, 31] (Q6_K's range): trial
 * scales map the value of largest magnitude near -32, then a least-squares
 * refit a = sum(q x) / sum(q q), keeping the best. a may be negative. */
static float fit_symmetric6(const float *x, int n) {
    const float max = signed_max(x, n);
    if (max == 0.0f) return 0.0f;
    double best = HUGE_VAL;
    float best_a = max / -32.0f;
    for (int k = -6; k <= 6; k++) {
        const float iscale = -(32.0f + 0.1f * (float)k) / max;
        double sqq = 0, sqx = 0;
        for (int i = 0; i < n; i++) {
            double q = nint_clamp(iscale * x[i], -32, 31);
            sqq += q * q, sqx += q * (double)x[i];
        }
        if (!(sqq > 0)) continue;
        const double a = sqx / sqq;
        if (a == 0) continue;
        double err = 0;
        for (int i = 0; i < n; i++) {
            double q = nint_clamp((float)((double)x[i] / a), -32, 31);
            double e = a * q - (double)x[i];
            err += e * e;
        }
        if (err < best) best = err, best_a = (float)a;
    }
    return best_a;
}

/* Packs eight 6-bit scales and mins into Q4_K/Q5_K's 12 bytes (the inverse
 * of q_k_scales). */
static void pack_k_scales(uint8_t *s, const uint8_t sc[8], const uint8_t m[8]) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

/* Q4_K (nmax 15) and Q5_K (nmax 31): per sub-block fit, then d = max scale /
 * 63 and dmin = max min / 63 (f16, rounded up), 6-bit sc and m, and the final
 * q from the quantized (d*sc, dmin*m). */
static void quant_k_affine(const float *x, uint8_t *b, int64_t nb, int nmax) {
    const int bytes = nmax == 15 ? Q4_K_BYTES : Q5_K_BYTES;
    for (int64_t i = 0; i < nb; i++, x += QK_K, b += bytes) {
        float a[8], mn[8], amax = 0.0f, mmax = 0.0f;
        for (int j = 0; j < 8; j++) {
            fit_affine(x + 32 * j, 32, nmax, &a[j], &mn[j]);
            amax = fmaxf(amax, a[j]);
            mmax = fmaxf(mmax, mn[j]);
        }
        const uint16_t dh = f16_up(amax / 63.0f), mh = f16_up(mmax / 63.0f);
        const float d = duet_f16_to_f32_1(dh), dmin = duet_f16_to_f32_1(mh);
        const float id = d > 0 ? 1.0f / d : 0.0f, imin = dmin > 0 ? 1.0f / dmin : 0.0f;
        uint8_t sc[8], m[8];
        int q[QK_K];
        for (int j = 0; j < 8; j++) {
            sc[j] = (uint8_t)nint_clamp(a[j] * id, 0, 63);
            m[j] = (uint8_t)nint_clamp(mn[j] * imin, 0, 63);
            const float ds = d * (float)sc[j], dm = dmin * (float)m[j];
            const float ids = ds > 0 ? 1.0f / ds : 0.0f;
            for (int l = 0; l < 32; l++) q[32 * j + l] = nint_clamp((x[32 * j + l] + dm) * ids, 0, nmax);
        }
        q_put_u16(b, dh);
        q_put_u16(b + 2, mh);
        pack_k_scales(b + 4, sc, m);
        uint8_t *qs = b + (nmax == 15 ? Q4_K_QS : Q5_K_QS);
        if (nmax == 31) memset(b + Q5_K_QH, 0, 32);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const int q1 = q[64 * c + l], q2 = q[64 * c + 32 + l];
                qs[32 * c + l] = (uint8_t)((q1 & 0xF) | ((q2 & 0xF) << 4));
                if (nmax == 31)
                    b[Q5_K_QH + l] |= (uint8_t)(((q1 >> 4) << (2 * c)) | ((q2 >> 4) << (2 * c + 1)));
            }
    }
}

/* Q6_K: 16 sub-blocks of 16 fitted symmetrically, d = max |scale| / 127
 * (f16, rounded up), 8-bit signed sc, q from the quantized d*sc. */
static void quant_q6_k(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K, b += Q6_K_BYTES) {
        float a[16], amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            a[j] = fit_symmetric6(x + 16 * j, 16);
            amax = fmaxf(amax, fabsf(a[j]));
        }
        const uint16_t dh = f16_up(amax / 127.0f);
        const float d = duet_f16_to_f32_1(dh), id = d > 0 ? 1.0f / d : 0.0f;
        int q[QK_K];
        for (int j = 0; j < 16; j++) {
            const int s = nint_clamp(a[j] * id, -127, 127);
            b[Q6_K_SCALES + j] = (uint8_t)(int8_t)s;
            const float ds = d * (float)s, ids = ds != 0.0f ? 1.0f / ds : 0.0f;
            for (int l = 0; l < 16; l++) q[16 * j + l] = nint_clamp(x[16 * j + l] * ids, -32, 31) + 32;
        }
        q_put_u16(b + Q6_K_D, dh);
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = b + Q6_K_QL + 64 * h, *qh = b + Q6_K_QH + 32 * h;
            const int *e = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((e[l] & 0xF) | ((e[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((e[l + 32] & 0xF) | ((e[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((e[l] >> 4) | ((e[l + 32] >> 4) << 2) | ((e[l + 64] >> 4) << 4) |
                                  ((e[l + 96] >> 4) << 6));
            }
        }
    }
}

/* Q8_K (activations of the K-quant dots): d = amax / 127 in f32, values in
 * [-127, 127], bsums[g] = sum of the 16 values of group g. */
static void quant_q8_k(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K, b += Q8_K_BYTES) {
        const float amax = amax_of(x, QK_K);
        const float iscale = amax > 0.0f ? 127.0f / amax : 0.0f;
        q_put_f32(b, amax > 0.0f ? 1.0f / iscale : 0.0f);
        int8_t *qs = (int8_t *)(b + Q8_K_QS);
        for (int j = 0; j < QK_K; j++) qs[j] = rne127(iscale * x[j]);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += qs[16 * g + l];
            q_put_i16(b + Q8_K_BSUMS + 2 * g, (int16_t)s);
        }
    }
}

static const duet_quant_kernels *current(void);

duet_status duet_quantize_row(duet_qtype t, const float *x, void *dst, int64_t n) {
    const qtype_info *q = info(t);
    if (!q || !q->supported)
        return duet_set_error(DUET_ERR_UNSUPPORTED, "quantize: tensor type %d (%s) is not "
                              "supported", (int)t, q ? q->name : "unknown");
    if (n < 0 || n % q->block)
        return duet_set_error(DUET_ERR_ARG, "quantize %s: %lld values is not a multiple of "
                              "the block size %lld", q->name, (long long)n, (long long)q->block);
    uint8_t *b = dst;
    const int64_t nb = n / q->block;
    switch (t) {
    case DUET_QTYPE_F32: memcpy(dst, x, (size_t)n * sizeof(float)); break;
    case DUET_QTYPE_F16:
        for (int64_t i = 0; i < n; i++) q_put_u16(b + 2 * i, duet_f32_to_f16_1(x[i]));
        break;
    case DUET_QTYPE_BF16:
        for (int64_t i = 0; i < n; i++) q_put_u16(b + 2 * i, duet_f32_to_bf16_1(x[i]));
        break;
    case DUET_QTYPE_Q4_0: quant_q4_0(x, b, nb); break;
    case DUET_QTYPE_Q4_1: quant_affine(x, b, nb, 15, Q4_1_BYTES); break;
    case DUET_QTYPE_Q5_0: quant_q5_0(x, b, nb); break;
    case DUET_QTYPE_Q5_1: quant_affine(x, b, nb, 31, Q5_1_BYTES); break;
    case DUET_QTYPE_Q8_0:
        if (current()->quant_q8_0) current()->quant_q8_0(x, b, nb);
        else quant_q8_0(x, b, nb);
        break;
    case DUET_QTYPE_Q4_K: quant_k_affine(x, b, nb, 15); break;
    case DUET_QTYPE_Q5_K: quant_k_affine(x, b, nb, 31); break;
    case DUET_QTYPE_Q6_K: quant_q6_k(x, b, nb); break;
    case DUET_QTYPE_Q8_K:
        if (current()->quant_q8_k) current()->quant_q8_k(x, b, nb);
        else quant_q8_k(x, b, nb);
        break;
    default: return duet_set_error(DUET_ERR_INTERNAL, "quantize: no case for type %d", (int)t);
    }
    return DUET_OK;
}

/* ======================================================================== */
/* Scalar reference dot products                                             */
/* ======================================================================== */
/* Each block: an exact integer sum, times the block's scales in float; the
 * blocks are summed in double, in order. */

static float dot_f32_ref(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i] * (double)x[i];
    return (float)s;
}

static float dot_f16_ref(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw;
    const float *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)q_f16(w + 2 * i) * (double)x[i];
    return (float)s;
}

static float dot_bf16_ref(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw;
    const float *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)duet_bf16_to_f32_1(q_u16(w + 2 * i)) * (double)x[i];
    return (float)s;
}

static float dot_q4_0_ref(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n / QK; i++, w += Q4_0_BYTES, x += Q8_0_BYTES) {
        const int8_t *xq = (const int8_t *)(x + 2);
        int si = 0;
        for (int j = 0; j < 16; j++)
            si += ((w[2 + j] & 0xF) - 8) * xq[j] + ((w[2 + j] >> 4) - 8) * xq[j + 16];
        s += (double)((float)si * (q_f16(w) * q_f16(x)));
    }
    return (float)s;
}

static float dot_q4_1_ref(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n / QK; i++, w += Q4_1_BYTES, x += Q8_0_BYTES) {
        const int8_t *xq = (const int8_t *)(x + 2);
        int si = 0, sx = 0;
        for (int j = 0; j < 16; j++) {
            si += (w[4 + j] & 0xF) * xq[j] + (w[4 + j] >> 4) * xq[j + 16];
            sx += xq[j] + xq[j + 16];
        }
        const float dx = q_f16(x);
        s += (double)((float)si * (q_f16(w) * dx) + (float)sx * (q_f16(w + 2) * dx));
    }
    return (float)s;
}

static float dot_q5_0_ref(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n / QK; i++, w += Q5_0_BYTES, x += Q8_0_BYTES) {
        const int8_t *xq = (const int8_t *)(x + 2);
        const uint32_t qh = q_u32(w + 2);
        int si = 0;
        for (int j = 0; j < 16; j++) {
            int lo = ((w[6 + j] & 0xF) | (int)(((qh >> j) & 1) << 4)) - 16;
            int hi = ((w[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16;
            si += lo * xq[j] + hi * xq[j + 16];
        }
        s += (double)((float)si * (q_f16(w) * q_f16(x)));
    }
    return (float)s;
}

static float dot_q5_1_ref(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n / QK; i++, w += Q5_1_BYTES, x += Q8_0_BYTES) {
        const int8_t *xq = (const int8_t *)(x + 2);
        const uint32_t qh = q_u32(w + 4);
        int si = 0, sx = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (w[8 + j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            int hi = (w[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            si += lo * xq[j] + hi * xq[j + 16];
            sx += xq[j] + xq[j + 16];
        }
        const float dx = q_f16(x);
        s += (double)((float)si * (q_f16(w) * dx) + (float)sx * (q_f16(w + 2) * dx));
    }
    return (float)s;
}

static float dot_q8_0_ref(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n / QK; i++, w += Q8_0_BYTES, x += Q8_0_BYTES) {
        const int8_t *wq = (const int8_t *)(w + 2), *xq = (const int8_t *)(x + 2);
        int si = 0;
        for (int j = 0; j < QK; j++) si += wq[j] * xq[j];
        s += (double)((float)si * (q_f16(w) * q_f16(x)));
    }
    return (float)s;
}

/* Sum of the activations of sub-block j (32 values) from the Q8_K bsums. */
static inline int q8k_bsum32(const uint8_t *x, int j) {
    return q_i16(x + Q8_K_BSUMS + 4 * j) + q_i16(x + Q8_K_BSUMS + 4 * j + 2);
}

static float dot_q4_k_ref(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n / QK_K; i++, w += Q4_K_BYTES, x += Q8_K_BYTES) {
        uint8_t sc[8], m[8];
        q_k_scales(w + Q4_K_SCALES, sc, m);
        const uint8_t *q = w + Q4_K_QS;
        const int8_t *xq = (const int8_t *)(x + Q8_K_QS);
        int isum = 0, imin = 0;
        for (int c = 0; c < 4; c++, q += 32, xq += 64) {
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++) {
                s1 += (q[l] & 0xF) * xq[l];
                s2 += (q[l] >> 4) * xq[l + 32];
            }
            isum += sc[2 * c] * s1 + sc[2 * c + 1] * s2;
        }
        for (int j = 0; j < 8; j++) imin += m[j] * q8k_bsum32(x, j);
        const float dx = q_f32(x);
        s += (double)(q_f16(w) * dx * (float)isum - q_f16(w + 2) * dx * (float)imin);
    }
    return (float)s;
}

static float dot_q5_k_ref(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n / QK_K; i++, w += Q5_K_BYTES, x += Q8_K_BYTES) {
        uint8_t sc[8], m[8];
        q_k_scales(w + Q5_K_SCALES, sc, m);
        const uint8_t *q = w + Q5_K_QS, *qh = w + Q5_K_QH;
        const int8_t *xq = (const int8_t *)(x + Q8_K_QS);
        int isum = 0, imin = 0;
        for (int c = 0; c < 4; c++, q += 32, xq += 64) {
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++) {
                s1 += ((q[l] & 0xF) | (((qh[l] >> (2 * c)) & 1) << 4)) * xq[l];
                s2 += ((q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4)) * xq[l + 32];
            }
            isum += sc[2 * c] * s1 + sc[2 * c + 1] * s2;
        }
        for (int j = 0; j < 8; j++) imin += m[j] * q8k_bsum32(x, j);
        const float dx = q_f32(x);
        s += (double)(q_f16(w) * dx * (float)isum - q_f16(w + 2) * dx * (float)imin);
    }
    return (float)s;
}

static float dot_q6_k_ref(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n / QK_K; i++, w += Q6_K_BYTES, x += Q8_K_BYTES) {
        const int8_t *sc = (const int8_t *)(w + Q6_K_SCALES);
        const int8_t *xq = (const int8_t *)(x + Q8_K_QS);
        int g16[16] = {0};
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w + Q6_K_QL + 64 * h, *qh = w + Q6_K_QH + 32 * h;
            const int8_t *xh = xq + 128 * h;
            for (int l = 0; l < 32; l++) {
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                g16[8 * h + l / 16] += q1 * xh[l];
                g16[8 * h + 2 + l / 16] += q2 * xh[l + 32];
                g16[8 * h + 4 + l / 16] += q3 * xh[l + 64];
                g16[8 * h + 6 + l / 16] += q4 * xh[l + 96];
            }
        }
        int isum = 0;
        for (int g = 0; g < 16; g++) isum += sc[g] * g16[g];
        s += (double)(q_f16(w + Q6_K_D) * q_f32(x) * (float)isum);
    }
    return (float)s;
}

static float dot_q8_k_ref(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n / QK_K; i++, w += Q8_K_BYTES, x += Q8_K_BYTES) {
        const int8_t *wq = (const int8_t *)(w + Q8_K_QS), *xq = (const int8_t *)(x + Q8_K_QS);
        int si = 0;
        for (int j = 0; j < QK_K; j++) si += wq[j] * xq[j];
        s += (double)((float)si * (q_f32(w) * q_f32(x)));
    }
    return (float)s;
}

const duet_quant_kernels duet_quant_kernels_scalar = {
    .isa = "scalar",
    .dot = {
        [DUET_QTYPE_F32] = dot_f32_ref,   [DUET_QTYPE_F16] = dot_f16_ref,
        [DUET_QTYPE_BF16] = dot_bf16_ref, [DUET_QTYPE_Q4_0] = dot_q4_0_ref,
        [DUET_QTYPE_Q4_1] = dot_q4_1_ref, [DUET_QTYPE_Q5_0] = dot_q5_0_ref,
        [DUET_QTYPE_Q5_1] = dot_q5_1_ref, [DUET_QTYPE_Q8_0] = dot_q8_0_ref,
        [DUET_QTYPE_Q4_K] = dot_q4_k_ref, [DUET_QTYPE_Q5_K] = dot_q5_k_ref,
        [DUET_QTYPE_Q6_K] = dot_q6_k_ref, [DUET_QTYPE_Q8_K] = dot_q8_k_ref,
    },
};

/* ======================================================================== */
/* Dispatch                                                                  */
/* ======================================================================== */

const duet_quant_kernels *duet_quant_kernels_select(const char *isa, unsigned features) {
#if defined(__x86_64__)
    if (isa && strcmp(isa, "avx512") == 0)
        return (features & DUET_CPU_AVX512_VNNI) ? &duet_quant_kernels_avx512_vnni
                                                 : &duet_quant_kernels_avx512;
    if (isa && strcmp(isa, "avx2") == 0) return &duet_quant_kernels_avx2;
#else
    (void)isa, (void)features;
#endif
    return &duet_quant_kernels_scalar;
}

duet_qdot_fn duet_quant_dot_fn(const duet_quant_kernels *k, duet_qtype t) {
    if ((int)t < 0 || t >= DUET_QTYPE_COUNT) return NULL;
    for (; k; k = k->fallback)
        if (k->dot[t]) return k->dot[t];
    return duet_quant_kernels_scalar.dot[t];
}

static const duet_quant_kernels *current(void) {
    if (!duet_k.quant) duet_init();
    return duet_k.quant ? duet_k.quant : &duet_quant_kernels_scalar;
}

float duet_quant_dot(duet_qtype t, int64_t n, const void *w, const void *xq) {
    duet_qdot_fn f = duet_quant_dot_fn(current(), t);
    DUET_ASSERT(f != NULL && n >= 0 && n % duet_qtype_block_size(t) == 0);
    return f(n, w, xq);
}

float duet_quant_dot_ref(duet_qtype t, int64_t n, const void *w, const void *xq) {
    duet_qdot_fn f = duet_quant_dot_fn(&duet_quant_kernels_scalar, t);
    DUET_ASSERT(f != NULL && n >= 0 && n % duet_qtype_block_size(t) == 0);
    return f(n, w, xq);
}

float duet_quant_dot_f32(duet_qtype t, int64_t n, const void *w, const float *x) {
    const int64_t bs = duet_qtype_block_size(t);
    DUET_ASSERT(duet_qtype_supported(t) && n >= 0 && n % bs == 0);
    const int64_t step = QK_K; /* a multiple of every supported block size */
    const int64_t sb = duet_qtype_row_bytes(t, step);
    const uint8_t *p = w;
    float tmp[QK_K];
    double s = 0;
    for (int64_t i = 0; i < n; i += step, p += sb) {
        const int64_t m = DUET_MIN(step, n - i);
        duet_dequantize_row(t, p, tmp, m);
        for (int64_t j = 0; j < m; j++) s += (double)tmp[j] * (double)x[i + j];
    }
    return (float)s;
}

/* ======================================================================== */
/* Matrix x vector, matrix x matrix                                          */
/* ======================================================================== */

/* Batches of at least this many activation rows take the GEMM path:
 * blocks of weight rows dequantized to f32 and multiplied by duet_sgemm
 * (the per-row dots re-read and re-decode every weight block once per
 * activation row; the SGEMM reuses each decoded block across the batch from
 * registers and cache). Below it, the dots: decode is memory-bound and the
 * quantized activations keep the weights' bytes the only stream. */
#define GEMM_MIN_N 16

/* Weight rows per dequantized tile of the GEMM path: ~2 MB of floats (the
 * L2 is 1 MB per core and the L3 32 MB here: the tile is read once per
 * 128-row panel of activations), a multiple of 16, 16..512. */
static int64_t gemm_tile_rows(int64_t K) {
    int64_t rb = ((int64_t)2 << 20) / (4 * DUET_MAX(K, 1));
    rb = DUET_MAX(16, DUET_MIN(512, rb)) & ~(int64_t)15;
    return rb;
}

static int gemm_path(duet_qtype t, int64_t N) { return N >= GEMM_MIN_N && t != DUET_QTYPE_Q8_K; }

/* Bytes of per-thread tiles the GEMM path needs (0: none). */
static int64_t gemm_scratch(duet_qtype t, int64_t K, int64_t M, int64_t N) {
    if (!gemm_path(t, N) || t == DUET_QTYPE_F32) return 0;
    const int64_t rb = DUET_MIN(gemm_tile_rows(K), DUET_MAX(M, 1));
    return (int64_t)duet_get_threads() * ((rb * K + 16) * (int64_t)sizeof(float)) + 64;
}

/* ---- the integer prompt path (Q8_0 / Q4_0 weights, a gemm8 kernel) ---- */

#define I8_ROWS 32 /* weight rows a thread packs at a time (8 tiles of 4) */
#define I8_SLAB 8  /* groups of 8 blocks per K slab: 8 x 1152 B of a tile's weights */

static int int8_path(duet_qtype t, int64_t N) {
    return gemm_path(t, N) && (t == DUET_QTYPE_Q8_0 || t == DUET_QTYPE_Q4_0) && current()->gemm8;
}

/* Bytes: the packed Q8_0 activations (Q8_GEMM_T-token groups) and each
 * thread's packed rows and their sums for every token, each part 64-aligned. */
static int64_t int8_thread_bytes(int64_t ng, int64_t ntg) { /* packed rows + sums, 64-aligned */
    const int64_t b = I8_ROWS / Q8_GEMM_R * ng * Q8_GEMM_WG + ntg * Q8_GEMM_T * I8_ROWS * 4;
    return (b + 63) & ~(int64_t)63;
}
static int64_t int8_scratch(int64_t K, int64_t N) {
    const int64_t nb = K / QK, ng = (nb + 7) / 8, ntg = (N + Q8_GEMM_T - 1) / Q8_GEMM_T;
    return ntg * ng * Q8_GEMM_XG + 64 + (int64_t)duet_get_threads() * int8_thread_bytes(ng, ntg) + 64;
}

static inline uint8_t *align64(void *p) { return (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* Y = X W^T for Q8_0 / Q4_0 weights with the activations quantized to Q8_0
 * (as the dots do): the integer tiles of the kernel set's gemm8 over
 * weights and activations repacked into its layout (quant.h). Threads take
 * 32-row chunks (dynamic): a chunk is packed once and meets every token
 * group while it sits in L2. Results do not depend on the thread count. */
static duet_status matmul_int8(duet_qtype t, const uint8_t *W, int64_t M, int64_t K,
                               const float *X, int64_t N, float *Y, void *scratch) {
    enum { R = Q8_GEMM_R, T = Q8_GEMM_T };
    const duet_qgemm8_fn gemm8 = current()->gemm8;
    const duet_qpack8_fn pack = current()->gemm8_pack;
    const duet_qquant8_fn quant = current()->gemm8_quant;
    const int64_t nb = K / QK, ng = (nb + 7) / 8, ntg = (N + T - 1) / T;
    const int64_t wrb = duet_qtype_row_bytes(t, K);
    const int off = t == DUET_QTYPE_Q8_0 ? 128 : 8;
    void *owned = NULL;
    if (!scratch) {
        scratch = owned = duet_alloc((size_t)int8_scratch(K, N));
        if (!owned) return duet_set_error(DUET_ERR_NOMEM, "quant matmul: out of memory for "
                                          "%lld bytes of packed operands",
                                          (long long)int8_scratch(K, N));
    }
    uint8_t *xp = align64(scratch);
    uint8_t *wpk = align64(xp + ntg * ng * Q8_GEMM_XG);
    const int64_t tile_bytes = ng * Q8_GEMM_WG;
    const int64_t wpk_bytes = int8_thread_bytes(ng, ntg);
    const int64_t nslab = (ng + I8_SLAB - 1) / I8_SLAB;
    const int64_t nchunks = (M + I8_ROWS - 1) / I8_ROWS;
    const int nt = (int)DUET_MAX(1, DUET_MIN((int64_t)duet_get_threads(), nchunks));
    int64_t next_chunk = nt;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (int64_t g = 0; g < ntg; g++)
            quant(X + T * g * K, K, (int)DUET_MIN(T, N - T * g), nb, off, xp + g * ng * Q8_GEMM_XG);
        const int tid = omp_get_thread_num();
        uint8_t *wp = wpk + (int64_t)tid * wpk_bytes;
        float *acc = (float *)(wp + I8_ROWS / R * tile_bytes); /* [token][I8_ROWS rows] */
        /* chunks handed out by a shared counter (thread i starts with
         * chunk i): a thread claims its next chunk before computing the
         * current one and prefetches its rows into L2 meanwhile — packing
         * otherwise waited on DRAM for every block */
        int64_t c = tid;
        while (c < nchunks) {
            int64_t cn;
#pragma omp atomic capture
            cn = next_chunk++;
            const int64_t r0 = c * I8_ROWS, rows = DUET_MIN(I8_ROWS, M - r0);
            const int64_t nq = (rows + R - 1) / R;
            for (int64_t q = 0; q < nq; q++)
                pack(t, W + (r0 + R * q) * wrb, wrb, (int)DUET_MIN(R, rows - R * q), nb, wp + q * tile_bytes);
            const uint8_t *pf = W + DUET_MIN(cn, nchunks - 1) * I8_ROWS * wrb;
            const int64_t pf_lines = cn < nchunks ? (DUET_MIN(I8_ROWS, M - cn * I8_ROWS) * wrb + 63) / 64 : 0;
            const int64_t calls = nq * ntg * nslab;
            int64_t call = 0, pf_done = 0;
            memset(acc, 0, (size_t)(ntg * T * I8_ROWS) * sizeof(float));
            /* K in slabs of I8_SLAB groups: a tile's slab of weights stays in
             * L1 while every token group's slab passes */
            for (int64_t g0 = 0; g0 < ng; g0 += I8_SLAB) {
                const int64_t gn = DUET_MIN(I8_SLAB, ng - g0);
                if (g0 + I8_SLAB >= ng) /* the last slab: ask for Y's lines (written next) */
                    for (int64_t n = 0; n < N; n++) {
                        __builtin_prefetch(Y + n * M + r0, 1, 3);
                        __builtin_prefetch(Y + n * M + r0 + rows - 1, 1, 3);
                    }
                for (int64_t q = 0; q < nq; q++) {
                    const uint8_t *cw = wp + q * tile_bytes + g0 * Q8_GEMM_WG;
                    for (int64_t g = 0; g < ntg; g++) {
                        gemm8(gn, cw, xp + (g * ng + g0) * Q8_GEMM_XG, acc + g * T * I8_ROWS + q * R, I8_ROWS);
                        const int64_t pf_to = pf_lines * ++call / calls;
                        for (; pf_done < pf_to; pf_done++) __builtin_prefetch(pf + 64 * pf_done, 0, 2);
                    }
                }
            }
            for (int64_t n = 0; n < N; n++) memcpy(Y + n * M + r0, acc + n * I8_ROWS, (size_t)rows * sizeof(float));
            c = cn;
        }
    }
    duet_free(owned);
    return DUET_OK;
}

int64_t duet_quant_scratch_bytes(duet_qtype t, int64_t K, int64_t N) {
    if (gemm_path(t, N)) {
        /* the tiles, for any M (a tile never has more rows than gemm_tile_rows) */
        int64_t g = gemm_scratch(t, K, INT64_MAX / 2, N);
        if (t == DUET_QTYPE_Q8_0 || t == DUET_QTYPE_Q4_0) g = DUET_MAX(g, int8_scratch(K, N));
        return g < 0 ? -1 : g;
    }
    const duet_qtype dt = duet_qtype_dot_type(t);
    if (dt == DUET_QTYPE_F32) return 0; /* the f32 activations are used as they are */
    if (N == 1) return duet_qmv_scratch_bytes(t, K); /* the matvec prepares through quant_mv */
    int64_t rb = duet_qtype_row_bytes(dt, K);
    if (t == DUET_QTYPE_Q4_0 && rb >= 0) rb += (K / QK) * 2 * (int64_t)sizeof(float); /* xd, xs */
    if (rb < 0 || N < 0 || (N > 0 && rb > INT64_MAX / N)) return -1;
    return rb * N + (t == DUET_QTYPE_Q4_0 ? 64 : 0);
}

static duet_status check_mm(const char *what, duet_qtype t, int64_t M, int64_t K, int64_t N) {
    if (!duet_qtype_supported(t) || t == DUET_QTYPE_Q8_K)
        return duet_set_error(DUET_ERR_UNSUPPORTED, "%s: weights of type %s have no kernels "
                              "(supported: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q4_K q5_K q6_K)",
                              what, duet_qtype_name(t) ? duet_qtype_name(t) : "unknown");
    if (M < 0 || N < 0 || K < 0 || K % duet_qtype_block_size(t))
        return duet_set_error(DUET_ERR_ARG, "%s: K = %lld is not a multiple of the %s block "
                              "size %lld (or a size is negative)", what, (long long)K,
                              duet_qtype_name(t), (long long)duet_qtype_block_size(t));
    return DUET_OK;
}

duet_status duet_quant_matvec(duet_qtype t, const void *W, int64_t M, int64_t K, const float *x,
                              float *y, void *scratch) {
    return duet_quant_matmul(t, W, M, K, x, 1, y, scratch);
}

/* Activation rows per pass over the weights: their quantized bytes stay in
 * L2 (~128 KiB) while a thread streams its rows of W past them. */
static int64_t act_tile(int64_t xrb, int64_t N) {
    int64_t nt = xrb > 0 ? (int64_t)131072 / xrb : N;
    return DUET_MAX(1, DUET_MIN(nt, N));
}

/* Y[N, M] = X[N, K] W[M, K]^T through duet_sgemm: f32 weights directly;
 * other types a tile of weight rows at a time, dequantized exactly (the
 * floats llama.cpp's dequantize gives) into the calling thread's tile.
 * Threads take tiles (dynamic); each product runs on its thread (the SGEMM
 * driver does not nest), so the result does not depend on the thread count. */
static duet_status matmul_gemm(duet_qtype t, const uint8_t *W, int64_t M, int64_t K,
                               const float *X, int64_t N, float *Y, void *scratch) {
    if (t == DUET_QTYPE_F32) {
        duet_sgemm(0, 1, N, M, K, 1.0f, X, K, (const float *)W, K, 0.0f, Y, M);
        return DUET_OK;
    }
    const int64_t rb = DUET_MIN(gemm_tile_rows(K), M), wrb = duet_qtype_row_bytes(t, K);
    const int64_t ntiles = (M + rb - 1) / rb;
    const int nt = (int)DUET_MAX(1, DUET_MIN((int64_t)duet_get_threads(), ntiles));
    const int64_t per = rb * K + 16; /* floats per thread's tile */
    void *owned = NULL;
    if (!scratch) {
        scratch = owned = duet_alloc((size_t)(nt * per) * sizeof(float) + 64);
        if (!owned) return duet_set_error(DUET_ERR_NOMEM, "quant matmul: out of memory for "
                                          "%lld bytes of weight tiles",
                                          (long long)(nt * per * 4));
    }
    float *tiles = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
    for (int64_t c = 0; c < ntiles; c++) {
        float *tile = tiles + (int64_t)omp_get_thread_num() * per;
        const int64_t r0 = c * rb, rows = DUET_MIN(rb, M - r0);
        duet_dequantize_row(t, W + r0 * wrb, tile, rows * K);
        duet_sgemm(0, 1, N, rows, K, 1.0f, X, K, tile, K, 0.0f, Y + r0, M);
    }
    duet_free(owned);
    return DUET_OK;
}

/* One vector and quantized weights: the decode's caller-split matvec
 * (quant_mv.h) over chunks of rows, so the graph's matvec and the
 * single-token decode run the same kernels on the same prepared vector and
 * give the same bits. Chunks of 128 KB of weights (at least two per
 * thread, at least 32 KB), handed out dynamically: a thread that gets
 * preempted (a shared machine) delays one chunk, not half the matrix. With
 * 32 KB chunks a 2048 x 5632 matvec streamed 18-24 GB/s, with 128 KB 26-29
 * (each chunk is a new stream for the prefetchers). A row's value does not
 * depend on the chunks (quant_mv.h), so neither on the thread count. */
static duet_status matvec_rows(duet_qtype t, const void *W, int64_t M, int64_t K, const float *x,
                               float *y, void *scratch) {
    void *owned = NULL;
    if (!scratch) {
        const int64_t sb = duet_qmv_scratch_bytes(t, K);
        scratch = owned = duet_alloc((size_t)sb);
        if (!owned) return duet_set_error(DUET_ERR_NOMEM, "quant matvec: out of memory for "
                                          "%lld bytes of quantized activations", (long long)sb);
    }
    duet_qmv mv;
    duet_qmv_prepare(&mv, t, K, x, scratch);
    const int64_t wrb = mv.wrb;
    const int64_t cbytes = DUET_MAX((int64_t)32768, DUET_MIN((int64_t)131072,
                                    wrb * M / (2 * (int64_t)duet_get_threads())));
    const int64_t chunk = DUET_MAX(1, DUET_MIN(cbytes / DUET_MAX(wrb, 1), M));
    const int64_t nchunks = (M + chunk - 1) / chunk;
    const int par = duet_omp_enough(M * K) && nchunks > 1;
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int64_t c = 0; c < nchunks; c++)
        duet_qmv_rows(&mv, W, c * chunk, DUET_MIN(M, (c + 1) * chunk), y);
    duet_free(owned);
    return DUET_OK;
}

duet_status duet_quant_matmul(duet_qtype t, const void *W, int64_t M, int64_t K, const float *X,
                              int64_t N, float *Y, void *scratch) {
    duet_status st = check_mm(N == 1 ? "quant matvec" : "quant matmul", t, M, K, N);
    if (st != DUET_OK) return st;
    if (M == 0 || N == 0) return DUET_OK;
    if (int8_path(t, N)) return matmul_int8(t, W, M, K, X, N, Y, scratch);
    if (gemm_path(t, N)) return matmul_gemm(t, W, M, K, X, N, Y, scratch);
    const duet_qtype dt = duet_qtype_dot_type(t);
    if (N == 1 && dt != DUET_QTYPE_F32) return matvec_rows(t, W, M, K, X, Y, scratch);
    const duet_qdot_fn dot = duet_quant_dot_fn(current(), t);
    const int64_t wrb = duet_qtype_row_bytes(t, K);
    const int64_t xrb = dt == DUET_QTYPE_F32 ? K * (int64_t)sizeof(float) : duet_qtype_row_bytes(dt, K);
    void *owned = NULL;
    const uint8_t *xq = (const uint8_t *)X;
    const duet_qdot_q4_0_prep_fn prep = t == DUET_QTYPE_Q4_0 ? current()->q4_0_prep : NULL;
    const int64_t nb = K / QK;
    float *xd = NULL, *xs = NULL;
    if (dt != DUET_QTYPE_F32) {
        if (!scratch) {
            scratch = owned = duet_alloc((size_t)duet_quant_scratch_bytes(t, K, N));
            if (!owned) return duet_set_error(DUET_ERR_NOMEM, "quant matmul: out of memory for "
                                              "%lld bytes of quantized activations",
                                              (long long)(xrb * N));
        }
        uint8_t *q = scratch;
        /* quantizing is O(N K), a sliver of the O(M N K) work; rows in parallel */
#pragma omp parallel for schedule(static) if (N > 1 && N * K > 65536)
        for (int64_t n = 0; n < N; n++) duet_quantize_row(dt, X + n * K, q + n * xrb, K);
        xq = q;
        if (prep) { /* the activations' scales and offset terms, once for all rows */
            xd = (float *)align64(q + N * xrb);
            xs = xd + N * nb;
            for (int64_t j = 0; j < N * nb; j++) {
                const uint8_t *blk = q + (j / nb) * xrb + (j % nb) * Q8_0_BYTES;
                int sum = 0;
                for (int k = 0; k < QK; k++) sum += (int8_t)blk[2 + k];
                xd[j] = q_f16(blk);
                xs[j] = xd[j] * (float)(8 * sum);
            }
        }
    }
    const uint8_t *w = W;
    const int64_t tile = act_tile(xrb, N);
    /* rows in chunks handed out dynamically: a thread that gets preempted
     * (a shared machine) delays one chunk, not half the matrix; each output
     * is still one dot, so results do not depend on the thread count or the
     * schedule. Chunks of 128 KB of weights (at least two per thread, at
     * least 32 KB): with 32 KB chunks a 2048 x 5632 matvec streamed 18-24
     * GB/s, with 128 KB 26-29 (every type; each chunk is a new stream for
     * the prefetchers) */
    const int64_t cbytes = DUET_MAX((int64_t)32768, DUET_MIN((int64_t)131072,
                                    wrb * M / (2 * (int64_t)duet_get_threads())));
    const int64_t chunk = DUET_MAX(1, DUET_MIN(cbytes / DUET_MAX(wrb, 1), M));
    const int64_t nchunks = (M + chunk - 1) / chunk;
    const int par = duet_omp_enough(M * K) && nchunks > 1;
#pragma omp parallel if (par)
    for (int64_t n0 = 0; n0 < N; n0 += tile) {
        const int64_t n1 = DUET_MIN(N, n0 + tile);
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t c = 0; c < nchunks; c++) {
            const int64_t r1 = DUET_MIN(M, (c + 1) * chunk);
            for (int64_t r = c * chunk; r < r1; r++) {
                const uint8_t *wr = w + r * wrb;
                if (prep)
                    for (int64_t n = n0; n < n1; n++)
                        Y[n * M + r] = prep(K, wr, xq + n * xrb, xd + n * nb, xs + n * nb);
                else
                    for (int64_t n = n0; n < n1; n++) Y[n * M + r] = dot(K, wr, xq + n * xrb);
            }
        }
    }
    duet_free(owned);
    return DUET_OK;
}
