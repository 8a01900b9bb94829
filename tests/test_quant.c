/*
 * test_quant.c — ggml's quantized types:
 *  - the type table against ggml-common.h's block sizes;
 *  - dequantization bit-exact against an independent numpy reading of the
 *    layouts (tests/ref/gen_quant.py -> fixtures/quant_blocks.bin), also
 *    from unaligned addresses;
 *  - quantize -> dequantize error bounds per format (per-value bounds for
 *    the 32-blocks and Q8_K, RMSE bounds for the K-quants);
 *  - every dot kernel of every kernel set the CPU runs (scalar, AVX2,
 *    AVX-512 with and without VNNI) against the scalar reference, and the
 *    reference against a double-precision dot of the dequantized values;
 *  - matvec / matmul against per-row dots, thread-count independence, errors;
 *  - the prompt path's integer tile layouts, and duet quantize's Q4_K_M mix.
 * With DUET_QUANT_BENCH=1 it also times matvec on a 2048 x 5632 matrix
 * (never part of the pass/fail).
 */
#include "testutil.h"

#include "kernels/quant.h"
#include "kernels/quant_mv.h"
#include "kernels/quant_x16.h"
#include "kernels/kernels.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const duet_qtype SUPPORTED[] = {
    DUET_QTYPE_F32,  DUET_QTYPE_F16,  DUET_QTYPE_BF16, DUET_QTYPE_Q4_0,
    DUET_QTYPE_Q4_1, DUET_QTYPE_Q5_0, DUET_QTYPE_Q5_1, DUET_QTYPE_Q8_0,
    DUET_QTYPE_Q4_K, DUET_QTYPE_Q5_K, DUET_QTYPE_Q6_K, DUET_QTYPE_Q8_K,
};
#define NSUP ((int)(sizeof SUPPORTED / sizeof SUPPORTED[0]))

/* weight types that have dot kernels (Q8_K is an activation type) */
static const duet_qtype WEIGHTS[] = {
    DUET_QTYPE_F32,  DUET_QTYPE_F16,  DUET_QTYPE_BF16, DUET_QTYPE_Q4_0, DUET_QTYPE_Q4_1,
    DUET_QTYPE_Q5_0, DUET_QTYPE_Q5_1, DUET_QTYPE_Q8_0, DUET_QTYPE_Q4_K, DUET_QTYPE_Q5_K,
    DUET_QTYPE_Q6_K,
};
#define NW ((int)(sizeof WEIGHTS / sizeof WEIGHTS[0]))

static void gauss(float *x, int64_t n, uint64_t seed, float std) {
    duet_rng r;
    duet_rng_init(&r, seed);
    duet_rng_normal(&r, x, n, 0.0f, std);
}

/* ======================================================================== */
/* The type table                                                            */
/* ======================================================================== */

static void test_table(void) {
    /* (number, name, block, bytes) from ggml.h / ggml-common.h */
    static const struct { int t; const char *name; int64_t bs, bytes; } spec[] = {
        {0, "f32", 1, 4},        {1, "f16", 1, 2},         {2, "q4_0", 32, 18},
        {3, "q4_1", 32, 20},     {6, "q5_0", 32, 22},      {7, "q5_1", 32, 24},
        {8, "q8_0", 32, 34},     {9, "q8_1", 32, 36},      {10, "q2_K", 256, 84},
        {11, "q3_K", 256, 110},  {12, "q4_K", 256, 144},   {13, "q5_K", 256, 176},
        {14, "q6_K", 256, 210},  {15, "q8_K", 256, 292},   {16, "iq2_xxs", 256, 66},
        {17, "iq2_xs", 256, 74}, {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},
        {20, "iq4_nl", 32, 18},  {21, "iq3_s", 256, 110},  {22, "iq2_s", 256, 82},
        {23, "iq4_xs", 256, 136},{24, "i8", 1, 1},         {25, "i16", 1, 2},
        {26, "i32", 1, 4},       {27, "i64", 1, 8},        {28, "f64", 1, 8},
        {29, "iq1_m", 256, 56},  {30, "bf16", 1, 2},       {34, "tq1_0", 256, 54},
        {35, "tq2_0", 256, 66},  {39, "mxfp4", 32, 17},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        const char *nm = duet_qtype_name(spec[i].t);
        ok &= duet_qtype_known(spec[i].t) && nm && strcmp(nm, spec[i].name) == 0 &&
              duet_qtype_block_size(spec[i].t) == spec[i].bs &&
              duet_qtype_block_bytes(spec[i].t) == spec[i].bytes &&
              duet_qtype_from_name(spec[i].name) == spec[i].t;
        if (!ok) {
            T_CHECK(0, "type %d (%s) table entry", spec[i].t, spec[i].name);
            return;
        }
    }
    T_CHECK(ok, "type table matches ggml's numbers, names, block sizes and bytes");
    int unknown = 1;
    for (int t = -3; t < 64; t++) {
        int listed = 0;
        for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) listed |= spec[i].t == t;
        if (!listed) unknown &= !duet_qtype_known(t) && !duet_qtype_name(t) && !duet_qtype_supported(t);
    }
    T_CHECK(unknown, "removed and out-of-range type numbers (4, 5, 31-33, 36-38, 40+) are unknown");
    T_CHECK(duet_qtype_from_name("Q4_K") == 12 && duet_qtype_from_name("BF16") == 30 &&
                duet_qtype_from_name("q4") == -1 && duet_qtype_from_name("") == -1,
            "from_name is case-insensitive and exact");
    T_CHECK(duet_qtype_row_bytes(DUET_QTYPE_Q4_K, 512) == 288 &&
                duet_qtype_row_bytes(DUET_QTYPE_Q4_K, 300) == -1 &&
                duet_qtype_row_bytes(DUET_QTYPE_Q8_0, -32) == -1 &&
                duet_qtype_row_bytes(99, 32) == -1 &&
                duet_qtype_row_bytes(DUET_QTYPE_Q8_0, INT64_MAX - 31) == -1,
            "row_bytes: multiples only, overflow refused");
    int dt = duet_qtype_dot_type(DUET_QTYPE_Q4_0) == DUET_QTYPE_Q8_0 &&
             duet_qtype_dot_type(DUET_QTYPE_Q5_1) == DUET_QTYPE_Q8_0 &&
             duet_qtype_dot_type(DUET_QTYPE_Q6_K) == DUET_QTYPE_Q8_K &&
             duet_qtype_dot_type(DUET_QTYPE_F16) == DUET_QTYPE_F32 &&
             duet_qtype_dot_type(DUET_QTYPE_BF16) == DUET_QTYPE_F32;
    T_CHECK(dt, "activation types");
    int sup = 1;
    for (int i = 0; i < NSUP; i++) sup &= duet_qtype_supported(SUPPORTED[i]);
    sup &= !duet_qtype_supported(DUET_QTYPE_Q2_K) && !duet_qtype_supported(DUET_QTYPE_Q3_K);
    T_CHECK(sup, "supported set");
}

/* ======================================================================== */
/* Dequantization, bit-exact against numpy                                   */
/* ======================================================================== */

static void test_dequant_fixture(void) {
    t_fix *f = t_fix_load("quant_blocks.bin");
    if (!f) return;
    for (int i = 0; i < NSUP; i++) {
        duet_qtype t = SUPPORTED[i];
        char kb[64], kv[64];
        snprintf(kb, sizeof kb, "%s.blocks", duet_qtype_name(t));
        snprintf(kv, sizeof kv, "%s.values", duet_qtype_name(t));
        int64_t nbytes = 0, n = 0;
        int32_t *bytes = t_fix_i32(f, kb, &nbytes);
        float *want = t_fix_f32(f, kv, &n);
        if (!bytes || !want) continue;
        T_CHECK(duet_qtype_row_bytes(t, n) == nbytes, "%s: fixture sizes agree", duet_qtype_name(t));
        /* at offset 1: blocks need not be aligned */
        uint8_t *raw = malloc((size_t)nbytes + 1);
        for (int64_t j = 0; j < nbytes; j++) raw[1 + j] = (uint8_t)bytes[j];
        float *got = malloc((size_t)n * sizeof(float));
        duet_status st = duet_dequantize_row(t, raw + 1, got, n);
        int64_t bad = -1;
        for (int64_t j = 0; j < n && bad < 0; j++)
            if (memcmp(&got[j], &want[j], sizeof(float)) != 0) bad = j;
        T_CHECK(st == DUET_OK && bad < 0, "%s: %lld values bit-exact vs numpy (first mismatch %lld: "
                "got %.9g want %.9g)", duet_qtype_name(t), (long long)n, (long long)bad,
                bad >= 0 ? (double)got[bad] : 0.0, bad >= 0 ? (double)want[bad] : 0.0);
        free(raw);
        free(got);
    }
    t_fix_free(f);
}

static void test_errors(void) {
    float x[64] = {0};
    uint8_t b[64 * 4];
    T_CHECK(duet_quantize_row(DUET_QTYPE_Q4_0, x, b, 31) == DUET_ERR_ARG &&
                strstr(duet_last_error(), "multiple"), "quantize: n not a block multiple");
    T_CHECK(duet_dequantize_row(DUET_QTYPE_Q4_K, b, x, 32) == DUET_ERR_ARG,
            "dequantize: n not a block multiple");
    T_CHECK(duet_dequantize_row(DUET_QTYPE_Q2_K, b, x, 256) == DUET_ERR_UNSUPPORTED &&
                strstr(duet_last_error(), "q2_K"), "dequantize: known but unsupported type named");
    T_CHECK(duet_quantize_row((duet_qtype)4, x, b, 32) == DUET_ERR_UNSUPPORTED,
            "quantize: unknown type");
    float y[64];
    T_CHECK(duet_quant_matvec(DUET_QTYPE_Q8_0, b, 1, 48, x, y, NULL) == DUET_ERR_ARG,
            "matvec: K not a block multiple");
    T_CHECK(duet_quant_matvec(DUET_QTYPE_Q2_K, b, 1, 256, x, y, NULL) == DUET_ERR_UNSUPPORTED,
            "matvec: type without kernels");
    T_CHECK(duet_quant_scratch_bytes(DUET_QTYPE_Q4_K, 512, 3) == 3 * 2 * Q8_K_BYTES &&
                /* Q4_0: the Q8_0 rows, then 2 floats per block (scales, offset
                 * terms) and 64 bytes to align them */
                duet_quant_scratch_bytes(DUET_QTYPE_Q4_0, 64, 2) == 2 * 2 * (Q8_0_BYTES + 8) + 64 &&
                duet_quant_scratch_bytes(DUET_QTYPE_F16, 64, 2) == 0,
            "scratch sizes");
}

/* ======================================================================== */
/* Quantize -> dequantize error                                              */
/* ======================================================================== */

/* Test signals, n values: 0 gaussian, 1 gaussian with outliers, 2 all zero,
 * 3 constant, 4 tiny (1e-6), 5 large (1e3), 6 all positive, 7 all negative. */
static void signal(float *x, int64_t n, int kind, uint64_t seed) {
    gauss(x, n, seed, 1.0f);
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case 1: if (i % 37 == 5) x[i] *= 12.0f; break;
        case 2: x[i] = 0.0f; break;
        case 3: x[i] = 0.75f; break;
        case 4: x[i] *= 1e-6f; break;
        case 5: x[i] *= 1e3f; break;
        case 6: x[i] = fabsf(x[i]) + 0.5f; break;
        case 7: x[i] = -fabsf(x[i]) - 2.0f; break;
        default: break;
        }
    }
}
#define NSIGNALS 8

/* Per-value bound for the 32-blocks and Q8_K from the stored scales:
 * Q8_0/Q8_K half a step; Q4_0/Q5_0 a full step (the extreme value of the
 * other sign than the one mapped to the lowest level can clip by one step,
 * as in ggml); Q4_1/Q5_1 half a step plus the rounding of q*d + m. */
static double value_bound(duet_qtype t, const uint8_t *blk, const float *x, int i) {
    (void)x;
    const double rel = 1e-5; /* x * (1/d) in float */
    switch (t) {
    case DUET_QTYPE_Q8_0: return 0.5 * fabs((double)q_f16(blk)) * (1 + rel);
    case DUET_QTYPE_Q4_0:
    case DUET_QTYPE_Q5_0: return fabs((double)q_f16(blk)) * (1 + rel);
    case DUET_QTYPE_Q4_1:
    case DUET_QTYPE_Q5_1: {
        double d = q_f16(blk), m = q_f16(blk + 2);
        double top = fabs(m) + 31 * d;
        return 0.5 * d * (1 + rel) + top * 1.2e-7;
    }
    case DUET_QTYPE_Q8_K: return 0.5 * (double)q_f32(blk) * (1 + rel);
    default: return INFINITY;
    }
    (void)i;
}

static void test_quant_error(void) {
    /* RMSE / RMS(x) bounds for gaussian data, ~15% above what this quantizer
     * measures; they catch a wrong scale, a wrong packing or a bad fit. With
     * outliers (signal 1) blocks holding one get coarse steps: a second bound.
     * Tiny values (signal 4, 1e-6) need scales below f16's subnormal range:
     * every format with f16 scales loses precision there (f16 itself has
     * ~1.8% error), so only a loose bound applies. */
    static const struct { duet_qtype t; double rmse, outliers; } bounds[] = {
        {DUET_QTYPE_Q4_0, 0.10, 0.20},     {DUET_QTYPE_Q4_1, 0.092, 0.125},
        {DUET_QTYPE_Q5_0, 0.05, 0.107},    {DUET_QTYPE_Q5_1, 0.044, 0.061},
        {DUET_QTYPE_Q8_0, 0.0064, 0.0134}, {DUET_QTYPE_Q4_K, 0.083, 0.118},
        {DUET_QTYPE_Q5_K, 0.042, 0.06},    {DUET_QTYPE_Q6_K, 0.0206, 0.038},
        {DUET_QTYPE_Q8_K, 0.0085, 0.027},  {DUET_QTYPE_F16, 2.5e-4, 2.5e-4},
        {DUET_QTYPE_BF16, 1.9e-3, 1.9e-3}, {DUET_QTYPE_F32, 0.0, 0.0},
    };
    const int64_t n = 4096;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    uint8_t *b = malloc((size_t)n * sizeof(float)); /* the widest type, f32 */
    for (size_t k = 0; k < sizeof bounds / sizeof bounds[0]; k++) {
        const duet_qtype t = bounds[k].t;
        const int64_t bs = duet_qtype_block_size(t), bb = duet_qtype_block_bytes(t);
        for (int kind = 0; kind < NSIGNALS; kind++) {
            signal(x, n, kind, 100 + (uint64_t)kind);
            duet_status st = duet_quantize_row(t, x, b, n);
            st = st == DUET_OK ? duet_dequantize_row(t, b, y, n) : st;
            double se = 0, sx = 0, worst = 0;
            int finite = 1, within = 1;
            for (int64_t i = 0; i < n; i++) {
                double e = (double)y[i] - (double)x[i];
                finite &= isfinite(y[i]);
                se += e * e, sx += (double)x[i] * (double)x[i];
                double bound = value_bound(t, b + (i / bs) * bb, x, (int)(i % bs));
                if (fabs(e) > bound) within = 0;
                if (isfinite(bound) && fabs(e) / (bound > 0 ? bound : 1) > worst)
                    worst = fabs(e) / (bound > 0 ? bound : 1);
            }
            double rel = sx > 0 ? sqrt(se / sx) : sqrt(se / (double)n);
            T_CHECK(st == DUET_OK && finite, "%s signal %d: quantizes to finite values",
                    duet_qtype_name(t), kind);
            T_CHECK(within, "%s signal %d: every value within its block's bound (worst %.3f "
                    "of the bound)", duet_qtype_name(t), kind, worst);
            /* exact signals: zeros everywhere; constants exactly for the affine types */
            if (kind == 2) T_CHECK(se == 0, "%s: zeros stay zero", duet_qtype_name(t));
            else if (kind == 4)
                T_CHECK(rel <= 0.15, "%s tiny values: relative RMSE %.5f <= 0.15",
                        duet_qtype_name(t), rel);
            else {
                const double bound = kind == 1 ? bounds[k].outliers : bounds[k].rmse;
                T_CHECK(rel <= bound, "%s signal %d: relative RMSE %.5f <= %.5f",
                        duet_qtype_name(t), kind, rel, bound);
            }
            if (getenv("DUET_TEST_VERBOSE"))
                printf("  %-5s signal %d: rel rmse %.5f\n", duet_qtype_name(t), kind, rel);
        }
    }
    /* Q8_K invariants the dots rely on: |q| <= 127 and bsums = group sums */
    signal(x, n, 1, 7);
    duet_quantize_row(DUET_QTYPE_Q8_K, x, b, n);
    int ok = 1;
    for (int64_t blk = 0; blk < n / QK_K; blk++) {
        const uint8_t *p = b + blk * Q8_K_BYTES;
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) {
                int q = (int8_t)p[Q8_K_QS + 16 * g + l];
                ok &= q >= -127 && q <= 127;
                s += q;
            }
            ok &= s == q_i16(p + Q8_K_BSUMS + 2 * g);
        }
    }
    T_CHECK(ok, "q8_K: values in [-127, 127], bsums are the 16-value sums");
    /* Q8_0 activations stay in [-127, 127] (the SIMD sign trick needs it) */
    duet_quantize_row(DUET_QTYPE_Q8_0, x, b, n);
    ok = 1;
    for (int64_t blk = 0; blk < n / QK; blk++)
        for (int l = 0; l < QK; l++) ok &= (int8_t)b[blk * Q8_0_BYTES + 2 + l] != -128;
    T_CHECK(ok, "q8_0: quantizer never emits -128");
    /* f16 / bf16 quantize = the round-to-nearest-even conversions */
    uint16_t h[64];
    duet_quantize_row(DUET_QTYPE_F16, x, b, 64);
    duet_f32_to_f16(h, x, 64);
    T_CHECK(memcmp(b, h, sizeof h) == 0, "f16 quantize = duet_f32_to_f16");
    duet_quantize_row(DUET_QTYPE_BF16, x, b, 64);
    duet_f32_to_bf16(h, x, 64);
    T_CHECK(memcmp(b, h, sizeof h) == 0, "bf16 quantize = duet_f32_to_bf16");
    free(x);
    free(y);
    free(b);
}

/* ======================================================================== */
/* Dot products                                                              */
/* ======================================================================== */

/* Random-bytes weights with valid scales: every bit pattern of the quants
 * (Q8_0's -128 included), scales finite. */
static void random_blocks(duet_qtype t, uint8_t *w, int64_t n, uint64_t seed) {
    const int64_t bytes = duet_qtype_row_bytes(t, n), nb = n / duet_qtype_block_size(t);
    const int64_t bb = duet_qtype_block_bytes(t);
    duet_rng r;
    duet_rng_init(&r, seed);
    for (int64_t i = 0; i < bytes; i++) w[i] = (uint8_t)(duet_rng_next(&r) * 256.0f);
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *p = w + i * bb;
        uint16_t d = duet_f32_to_f16_1((duet_rng_next(&r) - 0.5f) * 0.05f);
        uint16_t m = duet_f32_to_f16_1((duet_rng_next(&r) - 0.5f) * 0.5f);
        switch (t) {
        case DUET_QTYPE_F32: { float v = duet_rng_next(&r) - 0.5f; memcpy(p, &v, 4); break; }
        case DUET_QTYPE_F16: q_put_u16(p, duet_f32_to_f16_1(duet_rng_next(&r) - 0.5f)); break;
        case DUET_QTYPE_BF16: q_put_u16(p, duet_f32_to_bf16_1(duet_rng_next(&r) - 0.5f)); break;
        case DUET_QTYPE_Q6_K: q_put_u16(p + Q6_K_D, d); break;
        case DUET_QTYPE_Q4_1: case DUET_QTYPE_Q5_1: case DUET_QTYPE_Q4_K: case DUET_QTYPE_Q5_K:
            q_put_u16(p, d);
            q_put_u16(p + 2, m);
            break;
        default: q_put_u16(p, d); break;
        }
    }
}

/* An honest scale for rounding: sum over values of |x| times the largest
 * magnitude a weight of that (sub-)block can have from its parts (scale
 * term plus min term), so cancellation inside a block's sum is covered. */
static double dot_mag(duet_qtype t, const uint8_t *w, const float *w_deq, const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double cap;
        const int64_t bs = duet_qtype_block_size(t);
        const uint8_t *p = w + (i / bs) * duet_qtype_block_bytes(t);
        const int j = (int)(i % bs);
        uint8_t sc[8], m[8];
        switch (t) {
        case DUET_QTYPE_Q4_0: cap = 8 * fabs((double)q_f16(p)); break;
        case DUET_QTYPE_Q5_0: cap = 16 * fabs((double)q_f16(p)); break;
        case DUET_QTYPE_Q8_0: cap = 128 * fabs((double)q_f16(p)); break;
        case DUET_QTYPE_Q4_1: cap = 15 * fabs((double)q_f16(p)) + fabs((double)q_f16(p + 2)); break;
        case DUET_QTYPE_Q5_1: cap = 31 * fabs((double)q_f16(p)) + fabs((double)q_f16(p + 2)); break;
        case DUET_QTYPE_Q4_K: case DUET_QTYPE_Q5_K:
            q_k_scales(p + 4, sc, m);
            cap = (t == DUET_QTYPE_Q4_K ? 15 : 31) * fabs((double)q_f16(p)) * sc[j / 32] +
                  fabs((double)q_f16(p + 2)) * m[j / 32];
            break;
        case DUET_QTYPE_Q6_K:
            cap = 32 * fabs((double)q_f16(p + Q6_K_D)) * abs((int8_t)p[Q6_K_SCALES + j / 16]);
            break;
        default: cap = fabs((double)w_deq[i]); break;
        }
        s += cap * fabs((double)x[i]);
    }
    return s;
}

typedef struct ktable {
    const char *name;
    const duet_quant_kernels *k;
} ktable;

static int kernel_tables(ktable *out) {
    int n = 0;
    out[n++] = (ktable){"scalar", &duet_quant_kernels_scalar};
#if defined(__x86_64__)
    unsigned f = duet_cpu_features();
    unsigned avx2 = DUET_CPU_AVX2 | DUET_CPU_FMA | DUET_CPU_F16C;
    unsigned avx512 = DUET_CPU_AVX512F | DUET_CPU_AVX512BW | DUET_CPU_AVX512VL | DUET_CPU_AVX512DQ |
                      DUET_CPU_FMA | DUET_CPU_F16C;
    if ((f & avx2) == avx2) out[n++] = (ktable){"avx2", &duet_quant_kernels_avx2};
    if ((f & avx512) == avx512) out[n++] = (ktable){"avx512", &duet_quant_kernels_avx512};
    if ((f & avx512) == avx512 && (f & DUET_CPU_AVX512_VNNI))
        out[n++] = (ktable){"avx512-vnni", &duet_quant_kernels_avx512_vnni};
#endif
    return n;
}

static void test_dots(void) {
    ktable tabs[4];
    const int ntabs = kernel_tables(tabs);
    printf("  dot kernels tested:");
    for (int i = 0; i < ntabs; i++) printf(" %s", tabs[i].name);
    printf("\n");
    const int64_t NMAX = 8192;
    float *x = malloc(NMAX * sizeof(float)), *xd = malloc(NMAX * sizeof(float));
    float *wf = malloc(NMAX * sizeof(float)), *wd = malloc(NMAX * sizeof(float));
    uint8_t *w = malloc((size_t)NMAX * 4 + 64), *xq = malloc((size_t)NMAX * 4 + 64);
    static const int64_t sizes[] = {256, 512, 768, 2048, 4096 + 256, 8192};
    for (int ti = 0; ti < NW; ti++) {
        const duet_qtype t = WEIGHTS[ti], dt = duet_qtype_dot_type(t);
        double worst_simd[4] = {0}, worst_ref = 0;
        int ok_ref = 1, ok_simd[4] = {1, 1, 1, 1}, ok_exact = 1, ok_f32 = 1;
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            const int64_t n = sizes[si];
            for (int mode = 0; mode < 3; mode++) {
                const uint64_t seed = 1000 * (uint64_t)ti + 10 * si + (uint64_t)mode;
                /* weights: 0 quantized gaussian, 1 random bytes, 2 quantized outliers */
                if (mode == 1) random_blocks(t, w, n, seed);
                else {
                    signal(wf, n, mode == 2 ? 1 : 0, seed);
                    duet_quantize_row(t, wf, w, n);
                }
                signal(x, n, mode == 2 ? 1 : 0, seed + 7);
                duet_quantize_row(dt, x, xq, n);
                duet_dequantize_row(t, w, wd, n);
                duet_dequantize_row(dt, xq, xd, n);
                double exact = 0;
                for (int64_t i = 0; i < n; i++) exact += (double)wd[i] * (double)xd[i];
                const double mag = dot_mag(t, w, wd, xd, n) + 1e-30;
                const float ref = duet_quant_dot_ref(t, n, w, xq);
                /* f32 activations: the dequantized weights against x itself */
                double exact32 = 0, mag32 = 0;
                for (int64_t i = 0; i < n; i++)
                    exact32 += (double)wd[i] * (double)x[i], mag32 += fabs((double)wd[i] * (double)x[i]);
                ok_f32 &= fabs((double)duet_quant_dot_f32(t, n, w, x) - exact32) <= 1e-6 * mag32 + 1e-30;
                const double eref = fabs((double)ref - exact) / mag;
                worst_ref = fmax(worst_ref, eref);
                ok_ref &= eref <= 1e-6;
                for (int k = 0; k < ntabs; k++) {
                    const float got = duet_quant_dot_fn(tabs[k].k, t)(n, w, xq);
                    const double e = fabs((double)got - (double)ref) / mag;
                    worst_simd[k] = fmax(worst_simd[k], e);
                    ok_simd[k] &= e <= 1e-5;
                    if (k == 0) ok_exact &= memcmp(&got, &ref, sizeof got) == 0;
                }
            }
        }
        T_CHECK(ok_ref, "%s: reference dot vs double dot of dequantized values (worst %.2e of "
                "the magnitude)", duet_qtype_name(t), worst_ref);
        T_CHECK(ok_exact, "%s: scalar table entry is the reference", duet_qtype_name(t));
        T_CHECK(ok_f32, "%s: duet_quant_dot_f32 = double dot of the dequantized weights with x",
                duet_qtype_name(t));
        for (int k = 1; k < ntabs; k++)
            T_CHECK(ok_simd[k], "%s: %s dot vs reference (worst %.2e of the magnitude)",
                    duet_qtype_name(t), tabs[k].name, worst_simd[k]);
    }
    /* the public entry follows duet_kernel_force */
    const char *sets[] = {"scalar", "avx2", "avx512"};
    const duet_qtype t = DUET_QTYPE_Q4_K;
    const int64_t n = 1024;
    signal(wf, n, 0, 5);
    signal(x, n, 0, 6);
    duet_quantize_row(t, wf, w, n);
    duet_quantize_row(DUET_QTYPE_Q8_K, x, xq, n);
    for (int s = 0; s < 3; s++) {
        if (duet_kernel_force(sets[s]) != DUET_OK) continue;
        const duet_quant_kernels *k = duet_quant_kernels_select(sets[s], duet_cpu_features());
        float a = duet_quant_dot(t, n, w, xq), b = duet_quant_dot_fn(k, t)(n, w, xq);
        T_CHECK(memcmp(&a, &b, sizeof a) == 0, "duet_quant_dot uses the %s set's kernel", sets[s]);
    }
    duet_kernel_force("scalar");
    duet_kernel_force(duet_kernel_isa()); /* no-op; restore the best below */
    free(x), free(xd), free(wf), free(wd), free(w), free(xq);
}

/* ======================================================================== */
/* matvec / matmul                                                           */
/* ======================================================================== */

static void test_matmul(void) {
    const char *sets[] = {"scalar", "avx2", "avx512"};
    const int64_t M = 37, K = 512, N = 5;
    float *X = malloc(N * K * sizeof(float)), *Wf = malloc(M * K * sizeof(float));
    float *Y = malloc(N * M * sizeof(float)), *Y2 = malloc(N * M * sizeof(float));
    float *Wd = malloc(M * K * sizeof(float)), *Xd = malloc(N * K * sizeof(float));
    uint8_t *W = malloc((size_t)M * K * 4), *xq = malloc((size_t)K * 4);
    signal(X, N * K, 0, 11);
    signal(Wf, M * K, 0, 12);
    const int threads0 = duet_get_threads();
    for (int s = 0; s < 3; s++) {
        if (duet_kernel_force(sets[s]) != DUET_OK) continue;
        for (int ti = 0; ti < NW; ti++) {
            const duet_qtype t = WEIGHTS[ti], dt = duet_qtype_dot_type(t);
            const int64_t wrb = duet_qtype_row_bytes(t, K);
            duet_quantize_row(t, Wf, W, M * K);
            /* matvec = one dot per row, with the activations quantized once */
            duet_status st = duet_quant_matvec(t, W, M, K, X, Y, NULL);
            duet_quantize_row(dt, X, xq, K);
            int same = st == DUET_OK;
            /* Q4_0 on a set with q4_0_prep: the same integer block sums,
             * scaled in another float order -> within a few ulps of the sum
             * of |terms| (the dot of |w| and |x| bounds it); */
            /* the same for types with a multi-row kernel in this set (the
             * matvec runs the decode's rows kernels, quant_mv.h) */
            duet_qmv mvk;
            void *mvs = malloc((size_t)duet_qmv_scratch_bytes(t, K) + 1);
            duet_qmv_prepare(&mvk, t, K, X, mvs);
            free(mvs);
            const int prep = dt != DUET_QTYPE_F32 && (mvk.rows || mvk.prep);
            for (int64_t r = 0; r < M; r++) {
                float want = duet_quant_dot(t, K, W + r * wrb, dt == DUET_QTYPE_F32 ? (const void *)X : xq);
                if (prep) {
                    double mag = 0;
                    duet_dequantize_row(t, W + r * wrb, Wd, K);
                    duet_dequantize_row(dt, xq, Xd, K);
                    for (int64_t k = 0; k < K; k++) mag += fabs((double)Wd[k] * (double)Xd[k]);
                    same &= fabs((double)Y[r] - (double)want) <= 1e-6 * mag;
                } else {
                    same &= memcmp(&Y[r], &want, sizeof want) == 0;
                }
            }
            T_CHECK(same, "%s %s: matvec rows = duet_quant_dot", sets[s], duet_qtype_name(t));
            /* matmul: each output is the dot of its activation row, whatever
             * the thread count; with caller scratch */
            int64_t sb = duet_quant_scratch_bytes(t, K, N);
            void *scratch = malloc((size_t)(sb > 0 ? sb : 1));
            duet_set_threads(1);
            st = duet_quant_matmul(t, W, M, K, X, N, Y, scratch);
            duet_set_threads(2);
            duet_status st2 = duet_quant_matmul(t, W, M, K, X, N, Y2, NULL);
            duet_set_threads(threads0);
            same = st == DUET_OK && st2 == DUET_OK && memcmp(Y, Y2, N * M * sizeof(float)) == 0;
            T_CHECK(same, "%s %s: matmul identical with 1 and 2 threads", sets[s], duet_qtype_name(t));
            duet_dequantize_row(t, W, Wd, M * K);
            double worst = 0;
            for (int64_t n = 0; n < N; n++) {
                duet_quantize_row(dt, X + n * K, xq, K);
                duet_dequantize_row(dt, xq, Xd + n * K, K);
                for (int64_t r = 0; r < M; r++) {
                    double e = 0, mag = 0;
                    for (int64_t k = 0; k < K; k++) {
                        e += (double)Wd[r * K + k] * (double)Xd[n * K + k];
                        mag += fabs((double)Wd[r * K + k] * (double)Xd[n * K + k]);
                    }
                    worst = fmax(worst, fabs(e - (double)Y[n * M + r]) / (mag + 1e-30));
                }
            }
            T_CHECK(worst < 1e-4, "%s %s: matmul Y[n, r] = X[n] . W[r] (worst %.2e)", sets[s],
                    duet_qtype_name(t), worst);
            free(scratch);
        }
    }
    duet_kernel_force("scalar");
    free(X), free(Wf), free(Y), free(Y2), free(Wd), free(Xd), free(W), free(xq);
}

/* The caller-split matvec (quant_mv.h) of every weight type in every kernel
 * set: duet_qmv_rows over any split of the rows gives each row the same bits
 * as that row alone (so neither the chunking of the decode nor the thread
 * count changes a result), equal to rounding to the one-row dot and to the
 * scalar reference (test_dots' bound), with row counts that are not
 * multiples of the kernels' groups of four and K with blocks left over
 * after the 8-block steps. Gaussian and random-bytes weights (Q8_0's -128
 * codes, every nibble and scale pattern). */
/* n weights of type t into w: mode 1 random block bytes (every code and
 * scale bit pattern), mode 0 a quantized Gaussian signal (wf: n floats of
 * scratch). */
static void test_weights(duet_qtype t, uint8_t *w, float *wf, int64_t n, int mode, uint64_t seed) {
    if (mode == 1) {
        random_blocks(t, w, n, seed);
        return;
    }
    signal(wf, n, 0, seed);
    duet_quantize_row(t, wf, w, n);
}

static void test_qmv_rows(void) {
    const char *sets[] = {"scalar", "avx2", "avx512"};
    static const int64_t Ks32[] = {32, 224, 416, 2048 + 96}, KsK[] = {256, 768, 1280};
    const int64_t MR = 11, KMAX = 2048 + 256;
    float *x = malloc(KMAX * sizeof(float)), *wf = malloc(MR * KMAX * sizeof(float));
    float *wd = malloc(KMAX * sizeof(float)), *xd = malloc(KMAX * sizeof(float));
    float *y = malloc(MR * sizeof(float)), *y1 = malloc(MR * sizeof(float));
    uint8_t *w = malloc((size_t)MR * KMAX * 4 + 64), *xq = malloc((size_t)KMAX * 4 + 64);
    for (int s = 0; s < 3; s++) {
        if (duet_kernel_force(sets[s]) != DUET_OK) continue;
        for (int ti = 0; ti < NW; ti++) {
            const duet_qtype t = WEIGHTS[ti], dt = duet_qtype_dot_type(t);
            const int kq = duet_qtype_block_size(t) == QK_K;
            const int nk = kq ? 3 : 4;
            int split_same = 1, near_dot = 1, near_ref = 1, grouped = 0;
            double worst = 0;
            for (int ki = 0; ki < nk; ki++) {
                const int64_t K = kq ? KsK[ki] : Ks32[ki];
                const int64_t wrb = duet_qtype_row_bytes(t, K);
                for (int mode = 0; mode < 2; mode++) {
                    const uint64_t seed = 7000 + 100 * (uint64_t)ti + 10 * (uint64_t)ki + (uint64_t)mode;
                    test_weights(t, w, wf, MR * K, mode, seed);
                    signal(x, K, 0, seed + 3);
                    void *scratch = malloc((size_t)duet_qmv_scratch_bytes(t, K) + 1);
                    duet_qmv mv;
                    duet_qmv_prepare(&mv, t, K, x, scratch);
                    grouped |= mv.rows != NULL;
                    /* each row alone (f32 / f16: the rows in fours) */
                    for (int64_t r = 0; r < MR; r++)
                        if (dt != DUET_QTYPE_F32) duet_qmv_rows(&mv, w, r, r + 1, y1);
                        else if (r % 4 == 0) duet_qmv_rows(&mv, w, r, r + 4 < MR ? r + 4 : MR, y1);
                    /* whole, and in splits at every offset (f32 / f16: at
                     * multiples of four, their kernels' groups — they sum a
                     * group's rows in another order than a lone row's, and
                     * the decode's chunks are multiples of four) */
                    const int64_t step = dt == DUET_QTYPE_F32 ? 4 : 1;
                    for (int64_t a = 0; a < MR; a += step)
                        for (int64_t b = a + step; b <= MR + step - 1; b += step) {
                            if (b > MR) b = MR;
                            for (int64_t r = 0; r < MR; r++) y[r] = -1.0f;
                            if (a > 0) duet_qmv_rows(&mv, w, 0, a, y);
                            duet_qmv_rows(&mv, w, a, b, y);
                            if (b < MR) duet_qmv_rows(&mv, w, b, MR, y);
                            split_same &= memcmp(y, y1, MR * sizeof(float)) == 0;
                        }
                    /* against the one-row dot and the scalar reference */
                    if (dt != DUET_QTYPE_F32) duet_quantize_row(dt, x, xq, K);
                    const void *xv = dt == DUET_QTYPE_F32 ? (const void *)x : xq;
                    if (dt != DUET_QTYPE_F32) duet_dequantize_row(dt, xq, xd, K);
                    else memcpy(xd, x, K * sizeof(float));
                    for (int64_t r = 0; r < MR; r++) {
                        const uint8_t *wr = w + r * wrb;
                        duet_dequantize_row(t, wr, wd, K);
                        const double mag = dot_mag(t, wr, wd, xd, K) + 1e-30;
                        const double e1 = fabs((double)y1[r] - (double)duet_quant_dot(t, K, wr, xv)) / mag;
                        const double e2 = fabs((double)y1[r] - (double)duet_quant_dot_ref(t, K, wr, xv)) / mag;
                        worst = fmax(worst, e2);
                        near_dot &= e1 <= 1e-6;
                        near_ref &= e2 <= 1e-5;
                    }
                    free(scratch);
                }
            }
            T_CHECK(split_same, "%s %s: qmv rows in any split = each row alone, bit for bit%s",
                    sets[s], duet_qtype_name(t), grouped ? " (multi-row kernel)" : "");
            T_CHECK(near_dot, "%s %s: qmv rows = one-row dot to rounding", sets[s], duet_qtype_name(t));
            T_CHECK(near_ref, "%s %s: qmv rows vs scalar reference (worst %.2e of the magnitude)",
                    sets[s], duet_qtype_name(t), worst);
        }
    }
    duet_kernel_force("scalar");
    free(x), free(wf), free(wd), free(xd), free(y), free(y1), free(w), free(xq);
}

/* Batches of >= 16 rows (the GEMM path): f32 activations times exactly
 * dequantized weights, so Y must match the double product of X and the
 * dequantized W (fp32 SGEMM accumulation over K <= 512: relative to the sum
 * of |terms| ~1e-6; 1e-5 allows for the order), identical with 1 and 2
 * threads, with and without caller scratch. Shapes: M = 601 spans several
 * tiles and 32-row chunks; the others give partial row tiles (M not a
 * multiple of 4 or 32), partial token tiles (N not a multiple of 3 or 4),
 * and K whose block count is odd or not a multiple of 8 (the integer tile's
 * groups of 8 blocks padded). */
static void test_matmul_gemm(void) {
    static const struct { int64_t M, K, N; } shapes[] = {
        {601, 512, 41}, {37, 416, 16}, {64, 288, 18}, {5, 32, 17}, {70, 768, 19},
    };
    const int threads0 = duet_get_threads();
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t M = shapes[si].M, K = shapes[si].K, N = shapes[si].N;
        float *X = malloc(N * K * sizeof(float)), *Wf = malloc(M * K * sizeof(float));
        float *Xr = malloc(N * K * sizeof(float));
        float *Y = malloc(N * M * sizeof(float)), *Y2 = malloc(N * M * sizeof(float));
        float *Wd = malloc(M * K * sizeof(float));
        uint8_t *W = malloc((size_t)M * K * 4), *xq = malloc((size_t)K / 32 * Q8_0_BYTES);
        signal(X, N * K, (int)si % 2, 21 + si);
        signal(Wf, M * K, 0, 22 + si);
        for (int ti = 0; ti < NW; ti++) {
            const duet_qtype t = WEIGHTS[ti];
            if (K % duet_qtype_block_size(t)) continue; /* K-quants: K = 256 k only */
            duet_quantize_row(t, Wf, W, M * K);
            duet_dequantize_row(t, W, Wd, M * K);
            duet_set_threads(1);
            const int64_t sb = duet_quant_scratch_bytes(t, K, N);
            void *scratch = malloc((size_t)(sb > 0 ? sb : 1));
            duet_status st = duet_quant_matmul(t, W, M, K, X, N, Y, scratch);
            free(scratch);
            duet_set_threads(2);
            duet_status st2 = duet_quant_matmul(t, W, M, K, X, N, Y2, NULL);
            duet_set_threads(threads0);
            T_CHECK(st == DUET_OK && st2 == DUET_OK && memcmp(Y, Y2, N * M * sizeof(float)) == 0,
                    "gemm path %s %lldx%lldx%lld: identical with 1 and 2 threads",
                    duet_qtype_name(t), (long long)M, (long long)K, (long long)N);
            /* kernel sets with an integer tile (gemm8: AVX-512 VNNI) run Q8_0 / Q4_0
             * batches on Q8_0 activations, as the dots do: then the reference
             * multiplies the dequantized Q8_0 activations */
            const int int8 = duet_k.quant && duet_k.quant->gemm8 &&
                             (t == DUET_QTYPE_Q8_0 || t == DUET_QTYPE_Q4_0);
            for (int64_t n = 0; n < N; n++) {
                if (int8) {
                    duet_quantize_row(DUET_QTYPE_Q8_0, X + n * K, xq, K);
                    duet_dequantize_row(DUET_QTYPE_Q8_0, xq, Xr + n * K, K);
                } else {
                    memcpy(Xr + n * K, X + n * K, K * sizeof(float));
                }
            }
            double worst = 0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t r = 0; r < M; r++) {
                    double e = 0, mag = 0;
                    for (int64_t k = 0; k < K; k++) {
                        e += (double)Wd[r * K + k] * (double)Xr[n * K + k];
                        mag += fabs((double)Wd[r * K + k] * (double)Xr[n * K + k]);
                    }
                    worst = fmax(worst, fabs(e - (double)Y[n * M + r]) / (mag + 1e-30));
                }
            T_CHECK(worst < 1e-5, "gemm path %s%s %lldx%lldx%lld: Y = X . dequant(W)^T (worst %.2e)",
                    duet_qtype_name(t), int8 ? " (int8 tiles)" : "", (long long)M, (long long)K,
                    (long long)N, worst);
        }
        free(X), free(Xr), free(Wf), free(Y), free(Y2), free(Wd), free(W), free(xq);
    }
}

/* The integer tile's packing (quant.h, duet_qgemm8_fn), read back by its
 * documented layout: gemm8_quant gives the bytes and scales of
 * duet_quantize_row's Q8_0 (also for NaN, zero, huge and tiny blocks) and
 * the offset terms -off * sum(codes); gemm8_pack the weight codes (+128 for
 * Q8_0, the nibbles for Q4_0) and scales; padding is zero. 13 blocks: one
 * full and one partial group of 8. */
static void test_gemm8_layout(void) {
    const duet_quant_kernels *k = duet_k.quant;
    if (!k || !k->gemm8) {
        printf("  (no integer tile on this CPU: layout test skipped)\n");
        return;
    }
    enum { R = Q8_GEMM_R, T = Q8_GEMM_T, NB = 13, K = NB * 32, NG = 2 };
    float *X = malloc(T * K * sizeof(float));
    uint8_t *xq = malloc(NB * Q8_0_BYTES), *out = malloc(NG * Q8_GEMM_XG);
    uint8_t *W = malloc(R * NB * Q8_0_BYTES), *wout = malloc(NG * Q8_GEMM_WG);
    signal(X, T * K, 1, 31);
    X[5] = NAN;                                              /* block 0 */
    for (int j = 0; j < 32; j++) X[32 + j] = 0.0f;           /* block 1: d = 0 */
    for (int j = 0; j < 32; j++) X[64 + j] *= 1e-7f;         /* block 2: subnormal f16 scale */
    X[K + 100] = 1e30f;                                      /* token 1, block 3: capped scale */
    X[K + 200] = -INFINITY;                                  /* token 1, block 6 */
    for (int ntok = 1; ntok <= T; ntok++)
        for (int off = 8; off <= 128; off += 120) {
            memset(out, 0xAB, NG * Q8_GEMM_XG);
            k->gemm8_quant(X, K, ntok, NB, off, out);
            int ok = 1;
            for (int t = 0; t < T; t++) {
                if (t < ntok) duet_quantize_row(DUET_QTYPE_Q8_0, X + t * K, xq, K);
                for (int b = 0; b < NG * 8; b++) {
                    const uint8_t *grp = out + (b / 8) * Q8_GEMM_XG;
                    const int l = b % 8, real = t < ntok && b < NB;
                    float dx;
                    int32_t xc;
                    memcpy(&dx, grp + 8 * T * 32 + (8 * t + l) * 4, 4);
                    memcpy(&xc, grp + 8 * T * 32 + T * 32 + (8 * t + l) * 4, 4);
                    int sum = 0;
                    for (int j = 0; j < 32; j++) {
                        const uint8_t c = grp[((j / 4) * T + t) * 32 + 4 * l + j % 4];
                        const uint8_t want = real ? xq[b * Q8_0_BYTES + 2 + j] : 0;
                        ok &= c == want;
                        sum += (int8_t)want;
                    }
                    const float dwant = real ? q_f16(xq + b * Q8_0_BYTES) : 0.0f;
                    ok &= memcmp(&dx, &dwant, 4) == 0 && xc == -off * sum;
                }
            }
            T_CHECK(ok, "gemm8_quant: %d token(s), off %d = duet_quantize_row's Q8_0, packed", ntok, off);
        }
    /* weights: 1..R rows of Q8_0 and Q4_0 */
    const duet_qtype types[] = {DUET_QTYPE_Q8_0, DUET_QTYPE_Q4_0};
    for (int ti = 0; ti < 2; ti++) {
        const duet_qtype t = types[ti];
        const int64_t wrb = duet_qtype_row_bytes(t, K);
        for (int r = 0; r < R; r++) duet_quantize_row(t, X + (r % T) * K, W + r * wrb, K);
        for (int rows = 1; rows <= R; rows++) {
            memset(wout, 0xAB, NG * Q8_GEMM_WG);
            k->gemm8_pack(t, W, wrb, rows, NB, wout);
            int ok = 1;
            for (int r = 0; r < R; r++) {
                const uint8_t *blk0 = W + r * wrb;
                for (int b = 0; b < NG * 8; b++) {
                    const uint8_t *grp = wout + (b / 8) * Q8_GEMM_WG;
                    const int l = b % 8, real = r < rows && b < NB;
                    const uint8_t *blk = blk0 + b * duet_qtype_block_bytes(t);
                    for (int j = 0; j < 32; j++) {
                        const uint8_t c = grp[((j / 4) * R + r) * 32 + 4 * l + j % 4];
                        uint8_t want = 0;
                        if (real && t == DUET_QTYPE_Q8_0) want = (uint8_t)(blk[2 + j] + 128);
                        if (real && t == DUET_QTYPE_Q4_0)
                            want = (uint8_t)(j < 16 ? blk[2 + j] & 15 : blk[2 + j - 16] >> 4);
                        ok &= c == want;
                    }
                    float d;
                    memcpy(&d, grp + 8 * R * 32 + (8 * r + l) * 4, 4);
                    const float dwant = real ? q_f16(blk) : 0.0f;
                    ok &= memcmp(&d, &dwant, 4) == 0;
                }
            }
            T_CHECK(ok, "gemm8_pack %s: %d row(s) in the documented layout", duet_qtype_name(t), rows);
        }
    }
    free(X), free(xq), free(out), free(W), free(wout);
}

/* duet_gguf_requantize with DUET_QUANT_MIX_Q4_K_M on a synthetic 16-layer
 * file, against llama.cpp's rule as its llama-quant.cpp states it
 * (LLAMA_FTYPE_MOSTLY_Q4_K_M): output.weight Q6_K; attn_v.weight and
 * ffn_down Q6_K where use_more_bits(i, n) = i < n/8 || i >= 7n/8 ||
 * (i - n/8) % 3 == 2 — for n = 16 the layers 0, 1, 4, 7, 10, 13, 14, 15 —
 * else Q4_K; every other matrix Q4_K; rows of 64 fall back to Q8_0 (and still
 * count for the layer rule); 1-D tensors keep F32; file_type 15. Then the
 * values: each requantized matrix dequantizes to its own quantize ->
 * dequantize round trip of the f32 source, bit for bit. */
static void test_requantize_q4_k_m(void) {
    enum { L = 16, C = 256, ROWS = 4 };
    static const int more[L] = {1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1};
    char in[64], out[64];
    snprintf(in, sizeof in, "/tmp/duet_tq_%d_in.gguf", (int)getpid());
    snprintf(out, sizeof out, "/tmp/duet_tq_%d_out.gguf", (int)getpid());
    float *data = malloc((size_t)C * 8 * sizeof(float));
    gauss(data, C * 8, 41, 1.0f);
    duet_gguf_writer *w = duet_gguf_writer_new();
    char names[L * 4 + 3][48];
    int nn = 0;
    int64_t ne_big[2] = {C, 8}, ne_mat[2] = {C, ROWS}, ne_small[2] = {64, ROWS}, ne_vec[1] = {C};
    duet_gguf_writer_add_u32(w, "general.file_type", 0);
    duet_gguf_writer_add_tensor(w, "token_embd.weight", DUET_QTYPE_F32, 2, ne_big, data);
    for (int l = 0; l < L; l++) {
        static const char *kinds[4] = {"attn_q.weight", "attn_v.weight", "ffn_down.weight", "attn_norm.weight"};
        for (int k = 0; k < 4; k++) {
            snprintf(names[nn], sizeof names[nn], "blk.%d.%s", l, kinds[k]);
            /* layer 3's ffn_down has rows of 64: the Q8_0 fallback */
            const int64_t *ne = k == 3 ? ne_vec : (k == 2 && l == 3) ? ne_small : ne_mat;
            duet_gguf_writer_add_tensor(w, names[nn], DUET_QTYPE_F32, k == 3 ? 1 : 2, ne, data);
            nn++;
        }
    }
    duet_gguf_writer_add_tensor(w, "output.weight", DUET_QTYPE_F32, 2, ne_big, data);
    duet_status st = duet_gguf_writer_write(w, in);
    duet_gguf_writer_free(w);
    T_CHECK(st == DUET_OK, "q4_K_M: source file written: %s", duet_last_error());
    st = duet_gguf_requantize(in, out, DUET_QUANT_MIX_Q4_K_M);
    T_CHECK(st == DUET_OK, "q4_K_M: requantized: %s", duet_last_error());
    duet_gguf *g = st == DUET_OK ? duet_gguf_open(out) : NULL;
    if (g) {
        int types_ok = duet_gguf_tensor_count(g) == 2 + 4 * L, values_ok = 1;
        float *a = malloc((size_t)C * 8 * sizeof(float)), *b = malloc((size_t)C * 8 * sizeof(float));
        uint8_t *q = malloc((size_t)C * 8 * sizeof(float));
        for (int64_t i = 0; i < duet_gguf_tensor_count(g); i++) {
            const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
            int want = DUET_QTYPE_Q4_K, layer = -1;
            sscanf(t->name, "blk.%d.", &layer);
            if (t->n_dims == 1) want = DUET_QTYPE_F32;
            else if (strcmp(t->name, "output.weight") == 0) want = DUET_QTYPE_Q6_K;
            else if (layer == 3 && strstr(t->name, "ffn_down")) want = DUET_QTYPE_Q8_0;
            else if (strstr(t->name, "attn_v") || strstr(t->name, "ffn_down"))
                want = more[layer] ? DUET_QTYPE_Q6_K : DUET_QTYPE_Q4_K;
            if ((int)t->type != want) {
                types_ok = 0;
                printf("  %s: %s, want %s\n", t->name, duet_qtype_name(t->type), duet_qtype_name(want));
            }
            if (t->n_dims == 2) {
                const int64_t n = t->numel;
                duet_dequantize_row(t->type, t->data, a, n);
                duet_quantize_row(t->type, data, q, n);
                duet_dequantize_row(t->type, q, b, n);
                values_ok &= memcmp(a, b, (size_t)n * sizeof(float)) == 0;
            }
        }
        int64_t ft = -1;
        T_CHECK(types_ok, "q4_K_M: output q6_K, attn_v / ffn_down q6_K in layers 0 1 4 7 10 13 "
                "14 15, rows of 64 q8_0, the rest q4_K, vectors f32");
        T_CHECK(values_ok, "q4_K_M: every matrix = its type's quantize of the source");
        T_CHECK(duet_gguf_get_int(g, "general.file_type", &ft) == DUET_OK && ft == 15,
                "q4_K_M: general.file_type 15 (got %lld)", (long long)ft);
        free(a), free(b), free(q);
    }
    duet_gguf_close(g);
    unlink(in);
    unlink(out);
    free(data);
}

/* ======================================================================== */
/* Timing (DUET_QUANT_BENCH=1 only)                                          */
/* ======================================================================== */

static double now_s(void) { return omp_get_wtime(); }

/* Weights are rotated through copies totalling ~256 MB, 8x the 32 MB L3 of
 * the test machine, so every call streams its matrix from DRAM. */
static void bench_matvec(void) {
    const int64_t M = 5632, K = 2048; /* ne = {2048, 5632}: an FFN up/gate matrix */
    const duet_qtype types[] = {DUET_QTYPE_F32, DUET_QTYPE_F16, DUET_QTYPE_Q8_0, DUET_QTYPE_Q6_K,
                                DUET_QTYPE_Q5_K, DUET_QTYPE_Q4_K, DUET_QTYPE_Q4_0};
    float *wf = malloc(M * K * sizeof(float)), *x = malloc(K * sizeof(float)), *y = malloc(M * sizeof(float));
    int64_t sbmax = 1;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        sbmax = sbmax > duet_quant_scratch_bytes(types[i], K, 1) ? sbmax : duet_quant_scratch_bytes(types[i], K, 1);
    uint8_t *scratch = malloc((size_t)sbmax);
    signal(wf, M * K, 0, 1);
    signal(x, K, 0, 2);
    printf("  matvec %lld x %lld, %d threads, kernels %s (weights from DRAM)\n", (long long)M,
           (long long)K, duet_get_threads(), duet_kernel_isa());
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const duet_qtype t = types[i];
        const int64_t bytes = duet_qtype_row_bytes(t, K) * M;
        const int copies = (int)(((int64_t)256 << 20) / bytes) + 1;
        uint8_t *w = malloc((size_t)bytes * (size_t)copies);
        duet_quantize_row(t, wf, w, M * K);
        for (int c = 1; c < copies; c++) memcpy(w + c * bytes, w, (size_t)bytes);
        /* each call timed alone: the best and the median of 5 passes over the
         * copies (the best shows the kernel; the median what a busy shared
         * machine gives) */
        const int calls = 5 * copies;
        double *dt = malloc((size_t)calls * sizeof(double));
        for (int k = 0; k < calls; k++) {
            double t0 = now_s();
            duet_quant_matvec(t, w + (k % copies) * bytes, M, K, x, y, scratch);
            dt[k] = now_s() - t0;
        }
        for (int a = 1; a < calls; a++) /* insertion sort: a few hundred values */
            for (int b = a; b > 0 && dt[b] < dt[b - 1]; b--) {
                double tmp = dt[b];
                dt[b] = dt[b - 1], dt[b - 1] = tmp;
            }
        printf("    %-5s %7.2f MB  best %7.3f ms %6.2f GB/s   median %7.3f ms %6.2f GB/s\n",
               duet_qtype_name(t), (double)bytes / 1e6, dt[0] * 1e3, (double)bytes / dt[0] / 1e9,
               dt[calls / 2] * 1e3, (double)bytes / dt[calls / 2] / 1e9);
        free(dt);
        free(w);
    }
    free(wf), free(x), free(y), free(scratch);
}

/* The activation quantizers (Q8_0, Q8_K) of every kernel set write the
 * bytes of the scalar ones: every signal kind, values on rounding ties
 * (k + 0.5 steps of a block's scale), blocks with a NaN, an infinity, -0,
 * f16-overflowing and subnormal magnitudes. */
static void test_act_quant(void) {
    const char *sets[] = {"avx2", "avx512"};
    const duet_qtype types[] = {DUET_QTYPE_Q8_0, DUET_QTYPE_Q8_K};
    const int64_t n = 4096;
    float *x = malloc(n * sizeof(float));
    uint8_t *want = malloc((size_t)n * 2), *got = malloc((size_t)n * 2);
    for (int ti = 0; ti < 2; ti++) {
        const duet_qtype t = types[ti];
        const int64_t bytes = duet_qtype_row_bytes(t, n);
        for (int s = 0; s < 2; s++) {
            int same = 1, cases = 0;
            for (int kind = 0; kind < 11; kind++) {
                if (kind < 8) signal(x, n, kind, 900 + (uint64_t)kind);
                else {
                    signal(x, n, 0, 950 + (uint64_t)kind);
                    for (int64_t i = 0; i < n; i++) {
                        if (kind == 8) x[i] = (float)((int)(x[i] * 40.0f)) + 0.5f; /* ties */
                        if (kind == 9) x[i] *= 1e-30f;                            /* tiny d */
                        if (kind == 10) x[i] *= 3e6f;                             /* d over f16 */
                    }
                }
                x[33] = NAN, x[300] = INFINITY, x[301] = -INFINITY, x[700] = -0.0f;
                x[1024] = NAN; /* first of a block */
                duet_kernel_force("scalar");
                duet_quantize_row(t, x, want, n);
                if (duet_kernel_force(sets[s]) != DUET_OK) continue;
                duet_quantize_row(t, x, got, n);
                same &= memcmp(want, got, (size_t)bytes) == 0;
                cases++;
            }
            if (cases)
                T_CHECK(same, "%s %s activation quantizer = the scalar one, byte for byte (%d inputs)",
                        sets[s], duet_qtype_name(t), cases);
        }
    }
    duet_kernel_force("scalar");
    free(x), free(want), free(got);
}

/* The 16-row layout (quant_x16.h), on CPUs with the VNNI kernel set:
 * repacking and back gives the file bytes exactly, a row's dequantization
 * from it equals the file row's, and the products (decode matvec, batches
 * of 2-17 tokens in passes of 1-4) agree with the scalar reference dot of
 * each row with the same quantized activations (to 1e-5 of the sum of
 * |terms|: exact integer block sums, float scaling in another order); a
 * token's result does not depend on the batch it came in, nor on the split
 * of the rows, nor on the thread count. Weights: quantized signals and
 * random block bytes (every code and scale bit pattern). */
static void test_x16(void) {
    static const duet_qtype TS[] = {DUET_QTYPE_Q4_0, DUET_QTYPE_Q8_0, DUET_QTYPE_Q4_K,
                                    DUET_QTYPE_Q5_K, DUET_QTYPE_Q6_K};
    static const int64_t Ks32[] = {32, 224, 2048}, KsK[] = {256, 768, 2048};
    static const int64_t Ns[] = {1, 2, 3, 4, 5, 7, 17};
    const int64_t M = 48, KMAX = 2048, NMAX = 17;
    if (!duet_x16_ok(DUET_QTYPE_Q4_K, M, 256)) {
        T_CHECK(!duet_x16_ok(DUET_QTYPE_Q4_0, M, 32) && !duet_x16_ok(DUET_QTYPE_Q6_K, M, 256),
                "x16: no VNNI kernel set here, no repacking");
        return;
    }
    T_CHECK(!duet_x16_ok(DUET_QTYPE_Q4_K, 40, 256) && !duet_x16_ok(DUET_QTYPE_Q5_0, 48, 256) &&
                !duet_x16_ok(DUET_QTYPE_Q4_K, 48, 128),
            "x16: refuses rows not a multiple of 16, other types, partial blocks");
    float *wf = malloc(M * KMAX * sizeof(float)), *X = malloc(NMAX * KMAX * sizeof(float));
    float *wd = malloc(KMAX * sizeof(float)), *wd2 = malloc(KMAX * sizeof(float));
    float *xd = malloc(KMAX * sizeof(float)), *Y = malloc(NMAX * M * sizeof(float));
    float *Y1 = malloc(NMAX * M * sizeof(float)), *y = malloc(M * sizeof(float));
    uint8_t *w = malloc((size_t)M * KMAX * 2 + 64), *w2 = malloc((size_t)M * KMAX * 2 + 64);
    uint8_t *P = malloc((size_t)M * KMAX * 2 + 64 * M), *xq = malloc((size_t)NMAX * KMAX * 2 + 64);
    for (int ti = 0; ti < 5; ti++) {
        const duet_qtype t = TS[ti], dt = duet_qtype_dot_type(t);
        int round = 1, deq = 1, near = 1, batch_same = 1, rows_same = 1, thr_same = 1;
        double worst = 0;
        for (int ki = 0; ki < 3; ki++) {
            const int64_t K = duet_qtype_block_size(t) == QK ? Ks32[ki] : KsK[ki];
            const int64_t wrb = duet_qtype_row_bytes(t, K);
            for (int mode = 0; mode < 2; mode++) {
                const uint64_t seed = 9100 + 100 * (uint64_t)ti + 10 * (uint64_t)ki + (uint64_t)mode;
                test_weights(t, w, wf, M * K, mode, seed);
                signal(X, NMAX * K, 0, seed + 3);
                duet_x16_pack(t, w, M, K, P);
                memset(w2, 0xA5, (size_t)(M * wrb));
                duet_x16_unpack(t, P, M, K, w2);
                round &= memcmp(w, w2, (size_t)(M * wrb)) == 0;
                for (int64_t r = 0; r < M; r += 7) {
                    duet_dequantize_row(t, w + r * wrb, wd, K);
                    duet_x16_dequantize_row(t, P, K, r, wd2);
                    deq &= memcmp(wd, wd2, (size_t)K * sizeof(float)) == 0;
                }
                /* the decode's path: prepared vector, rows in splits of 16 */
                void *sc = malloc((size_t)duet_qmv_scratch_bytes_x16(t, K));
                duet_qmv mv;
                duet_qmv_prepare_x16(&mv, t, K, X, sc);
                duet_qmv_rows(&mv, P, 0, M, y);
                for (int64_t a = 0; a < M; a += 16) {
                    float yy[48];
                    for (int64_t r = 0; r < M; r++) yy[r] = -1.0f;
                    if (a > 0) duet_qmv_rows(&mv, P, 0, a, yy);
                    duet_qmv_rows(&mv, P, a, a + 16, yy);
                    if (a + 16 < M) duet_qmv_rows(&mv, P, a + 16, M, yy);
                    rows_same &= memcmp(yy, y, sizeof(float) * (size_t)M) == 0;
                }
                free(sc);
                /* against the scalar reference, row by row */
                duet_quantize_row(dt, X, xq, K);
                duet_dequantize_row(dt, xq, xd, K);
                for (int64_t r = 0; r < M; r++) {
                    const uint8_t *wr = w + r * wrb;
                    duet_dequantize_row(t, wr, wd, K);
                    const double mag = dot_mag(t, wr, wd, xd, K) + 1e-30;
                    const double e = fabs((double)y[r] - (double)duet_quant_dot_ref(t, K, wr, xq)) / mag;
                    worst = fmax(worst, e);
                    near &= e <= 1e-5;
                }
                /* batches: every token as it is alone */
                int ok = 1;
                for (int64_t n = 0; n < NMAX; n++)
                    ok &= duet_x16_matmul(t, P, M, K, X + n * K, 1, Y1 + n * M, NULL) == DUET_OK;
                rows_same &= memcmp(Y1, y, sizeof(float) * (size_t)M) == 0;
                for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
                    const int64_t N = Ns[ni];
                    for (int th = 1; th <= 2; th++) {
                        omp_set_num_threads(th);
                        void *s2 = th == 2 ? malloc((size_t)duet_x16_scratch_bytes(t, K, N)) : NULL;
                        ok &= duet_x16_matmul(t, P, M, K, X, N, Y, s2) == DUET_OK;
                        free(s2);
                        const int same = memcmp(Y, Y1, sizeof(float) * (size_t)(N * M)) == 0;
                        if (th == 1) batch_same &= same;
                        else thr_same &= same;
                    }
                }
                batch_same &= ok;
            }
        }
        omp_set_num_threads(2);
        const char *tn = duet_qtype_name(t);
        T_CHECK(round, "x16 %s: repack then unpack gives the file bytes", tn);
        T_CHECK(deq, "x16 %s: a row dequantized from the repacked layout = the file row's", tn);
        T_CHECK(near, "x16 %s: matvec vs scalar reference dot (worst %.2e of the magnitude)", tn, worst);
        T_CHECK(rows_same, "x16 %s: decode rows in any 16-row split = matmul N=1, bit for bit", tn);
        T_CHECK(batch_same, "x16 %s: a token in a batch of 1-17 = alone, bit for bit", tn);
        T_CHECK(thr_same, "x16 %s: 2 threads and caller scratch = 1 thread, bit for bit", tn);
    }
    T_CHECK(duet_x16_matmul(DUET_QTYPE_Q4_1, P, 48, 256, X, 1, Y, NULL) == DUET_ERR_ARG,
            "x16 matmul refuses a type it does not repack");
    free(wf), free(X), free(wd), free(wd2), free(xd), free(Y), free(Y1), free(y);
    free(w), free(w2), free(P), free(xq);
}

int main(void) {
    duet_init();
    const char *best = duet_kernel_isa();
    char isa[16];
    snprintf(isa, sizeof isa, "%s", best);
    test_table();
    test_dequant_fixture();
    test_errors();
    test_quant_error();
    test_dots();
    test_matmul();
    test_qmv_rows();
    test_act_quant();
    duet_kernel_force(isa);
    test_matmul_gemm();
    test_gemm8_layout();
    test_requantize_q4_k_m();
    test_x16();
    if (getenv("DUET_QUANT_BENCH")) bench_matvec();
    return t_done();
}
