/*
 * kernels_avx512.c — AVX-512 kernel set (compiled with -mavx512f/bw/vl/dq):
 * the row kernels (softmax, LayerNorm, RMSNorm), dot and axpy, plus the set's
 * table entry. The GEMM itself is in gemm_avx512.c.
 *
 * Each kernel follows its scalar reference in kernels_scalar.c operation for
 * operation where that matters for rounding (sums in double, mul-then-add
 * where the reference does not fuse), so tests can hold them to a few ulp.
 * Entries left NULL fall back to the scalar reference.
 */
#include "core/internal.h"
#include "kernels/gemm_blocked.h"
#include "kernels/kernels.h"

#include <immintrin.h>
#include <math.h>

static __mmask16 lanes(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* exp(x) for 16 floats, within 1 ulp of the correctly rounded result over the
 * whole float range (denormals included; -inf -> 0, +inf -> inf, NaN -> NaN).
 * Range reduction x = n*ln2 + r, |r| <= ln2/2, with ln2 split in two (the high
 * part has 9 trailing zero bits, so n*ln2_hi is exact for |n| <= 150); exp(r)
 * by its degree-7 Taylor polynomial (truncation < 6e-9 relative), evaluated as
 * 1 + (r + r^2*q(r)) so the final rounding dominates; 2^n by vscalefps, which
 * also produces denormals, zero and infinity correctly. */
static inline __m512 exp_avx512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x); /* operand order keeps NaN */
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 q = _mm512_set1_ps(1.0f / 5040.0f);
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0f / 720.0f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0f / 120.0f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0f / 24.0f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0f / 6.0f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0.5f));
    __m512 p = _mm512_fmadd_ps(q, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Adds the 16 floats of v into two double accumulators. */
static inline void add_pd16(__m512d *s0, __m512d *s1, __m512 v) {
    *s0 = _mm512_add_pd(*s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    *s1 = _mm512_add_pd(*s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
}

/* ==== softmax ==== */

static void softmax_rows_avx512(float *out, const float *inp, int64_t N, int64_t C) {
    for (int64_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float *y = out + r * C;
        __m512 vm = _mm512_set1_ps(-INFINITY);
        int64_t i = 0;
        for (; i + 16 <= C; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + i));
        if (i < C) vm = _mm512_mask_max_ps(vm, lanes(C - i), vm, _mm512_maskz_loadu_ps(lanes(C - i), x + i));
        float mx = _mm512_reduce_max_ps(vm);
        vm = _mm512_set1_ps(mx);
        __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
        for (i = 0; i + 16 <= C; i += 16) {
            __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
            _mm512_storeu_ps(y + i, e);
            add_pd16(&s0, &s1, e);
        }
        if (i < C) {
            __mmask16 m = lanes(C - i);
            __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm));
            e = _mm512_maskz_mov_ps(m, e);
            _mm512_mask_storeu_ps(y + i, m, e);
            add_pd16(&s0, &s1, e);
        }
        double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
        __m512 vinv = _mm512_set1_ps((float)(1.0 / sum));
        for (i = 0; i + 16 <= C; i += 16)
            _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), vinv));
        if (i < C) {
            __mmask16 m = lanes(C - i);
            _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), vinv));
        }
    }
}

/* ==== LayerNorm and RMSNorm ==== */

/* sum of x[0..C) in double */
static double sum_d(const float *x, int64_t C) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= C; i += 16) add_pd16(&s0, &s1, _mm512_loadu_ps(x + i));
    if (i < C) add_pd16(&s0, &s1, _mm512_maskz_loadu_ps(lanes(C - i), x + i));
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

/* sum of (x[i] - m)^2 in double */
static double sumsq_dev_d(const float *x, int64_t C, double m) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd(), vm = _mm512_set1_pd(m);
    int64_t i = 0;
    for (; i + 16 <= C; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), vm);
        __m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), vm);
        s0 = _mm512_fmadd_pd(d0, d0, s0);
        s1 = _mm512_fmadd_pd(d1, d1, s1);
    }
    double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (; i < C; i++) s += ((double)x[i] - m) * ((double)x[i] - m);
    return s;
}

static void layernorm_rows_avx512(float *out, float *mean, float *rstd, const float *inp,
                                  const float *weight, const float *bias, int64_t N, int64_t C,
                                  float eps) {
    for (int64_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float *y = out + r * C;
        double m = sum_d(x, C) / (double)C;
        double v = sumsq_dev_d(x, C, m) / (double)C;
        float s = (float)(1.0 / sqrt(v + (double)eps));
        float mf = (float)m;
        __m512 vmf = _mm512_set1_ps(mf), vs = _mm512_set1_ps(s);
        for (int64_t i = 0; i < C; i += 16) {
            __mmask16 k = lanes(C - i);
            /* (x - mean) * rstd * w + b, unfused like the reference */
            __m512 n = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vmf), vs);
            if (weight) n = _mm512_mul_ps(n, _mm512_maskz_loadu_ps(k, weight + i));
            if (bias) n = _mm512_add_ps(n, _mm512_maskz_loadu_ps(k, bias + i));
            _mm512_mask_storeu_ps(y + i, k, n);
        }
        if (mean) mean[r] = mf;
        if (rstd) rstd[r] = s;
    }
}

static void rmsnorm_rows_avx512(float *out, float *rstd, const float *inp, const float *weight,
                                int64_t N, int64_t C, float eps) {
    for (int64_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float *y = out + r * C;
        double ss = sumsq_dev_d(x, C, 0.0);
        float s = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        __m512 vs = _mm512_set1_ps(s);
        for (int64_t i = 0; i < C; i += 16) {
            __mmask16 k = lanes(C - i);
            __m512 n = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), vs);
            if (weight) n = _mm512_mul_ps(n, _mm512_maskz_loadu_ps(k, weight + i));
            _mm512_mask_storeu_ps(y + i, k, n);
        }
        if (rstd) rstd[r] = s;
    }
}

/* ==== dot, axpy ==== */

float duet_dot_avx512(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i < n; i += 16) {
        __mmask16 k = lanes(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

void duet_axpy_avx512(float *y, float a, const float *x, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 y0 = _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
        __m512 y1 = _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16));
        _mm512_storeu_ps(y + i, y0);
        _mm512_storeu_ps(y + i + 16, y1);
    }
    for (; i < n; i += 16) {
        __mmask16 k = lanes(n - i);
        __m512 v = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, y + i));
        _mm512_mask_storeu_ps(y + i, k, v);
    }
}

/* ==== one query row of attention (decode) ==== */

/* The four sums of a, b, c, d as one vector. */
static inline __m128 sum4_ps(__m512 a, __m512 b, __m512 c, __m512 d) {
#define HALF(x) _mm256_add_ps(_mm512_castps512_ps256(x), \
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)))
    const __m256 ab = _mm256_hadd_ps(HALF(a), HALF(b)), cd = _mm256_hadd_ps(HALF(c), HALF(d));
#undef HALF
    const __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

/* HS = 16 NV: q stays in registers, keys four at a time (one reduction tree
 * for four scores), then the output in registers across all S values rows
 * (two accumulator sets, even and odd rows), stored once. The graph's
 * decode and tf_decode.c both come here, so they agree bit for bit. */
#define LD_F32(p) _mm512_loadu_ps(p)
#define LD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define ATTEND_NV(NAME, T, LD)                                                                  \
static inline __attribute__((always_inline)) void NAME(float *out, float *att, const float *q,  \
                                                            const T *k, const T *v,             \
                                                            int64_t ld, int64_t S, float scale, \
                                                            const int NV) {                     \
    __m512 qv[8], a[8], b[8];                                                                   \
    for (int j = 0; j < NV; j++) qv[j] = _mm512_loadu_ps(q + 16 * j);                           \
    const __m128 sc4 = _mm_set1_ps(scale);                                                      \
    int64_t s = 0;                                                                              \
    for (; s + 4 <= S; s += 4) {                                                                \
        const T *k0 = k + s * ld, *k1 = k0 + ld, *k2 = k1 + ld, *k3 = k2 + ld;                  \
        __m512 c0 = _mm512_mul_ps(qv[0], LD(k0));                                               \
        __m512 c1 = _mm512_mul_ps(qv[0], LD(k1));                                               \
        __m512 c2 = _mm512_mul_ps(qv[0], LD(k2));                                               \
        __m512 c3 = _mm512_mul_ps(qv[0], LD(k3));                                               \
        for (int j = 1; j < NV; j++) {                                                          \
            c0 = _mm512_fmadd_ps(qv[j], LD(k0 + 16 * j), c0);                                   \
            c1 = _mm512_fmadd_ps(qv[j], LD(k1 + 16 * j), c1);                                   \
            c2 = _mm512_fmadd_ps(qv[j], LD(k2 + 16 * j), c2);                                   \
            c3 = _mm512_fmadd_ps(qv[j], LD(k3 + 16 * j), c3);                                   \
        }                                                                                       \
        _mm_storeu_ps(att + s, _mm_mul_ps(sc4, sum4_ps(c0, c1, c2, c3)));                       \
    }                                                                                           \
    for (; s < S; s++) {                                                                        \
        const T *k0 = k + s * ld;                                                               \
        __m512 c0 = _mm512_mul_ps(qv[0], LD(k0));                                               \
        for (int j = 1; j < NV; j++) c0 = _mm512_fmadd_ps(qv[j], LD(k0 + 16 * j), c0);          \
        att[s] = scale * _mm512_reduce_add_ps(c0);                                              \
    }                                                                                           \
    softmax_rows_avx512(att, att, 1, S);                                                        \
    for (int j = 0; j < NV; j++) a[j] = b[j] = _mm512_setzero_ps();                             \
    s = 0;                                                                                      \
    for (; s + 2 <= S; s += 2) {                                                                \
        const __m512 p0 = _mm512_set1_ps(att[s]), p1 = _mm512_set1_ps(att[s + 1]);              \
        const T *v0 = v + s * ld, *v1 = v0 + ld;                                                \
        for (int j = 0; j < NV; j++) {                                                          \
            a[j] = _mm512_fmadd_ps(p0, LD(v0 + 16 * j), a[j]);                                  \
            b[j] = _mm512_fmadd_ps(p1, LD(v1 + 16 * j), b[j]);                                  \
        }                                                                                       \
    }                                                                                           \
    if (s < S) {                                                                                \
        const __m512 p0 = _mm512_set1_ps(att[s]);                                               \
        for (int j = 0; j < NV; j++) a[j] = _mm512_fmadd_ps(p0, LD(v + s * ld + 16 * j), a[j]); \
    }                                                                                           \
    for (int j = 0; j < NV; j++) _mm512_storeu_ps(out + 16 * j, _mm512_add_ps(a[j], b[j]));     \
}

ATTEND_NV(attend_nv, float, LD_F32)
ATTEND_NV(attend_nv16, uint16_t, LD_F16)

/* HS of 16..128 in steps of 16 through the unrolled template, other sizes
 * through the generic composition. */
#define ATTEND_ROW(NAME, T, NV_FN, GENERIC)                                                        \
    static void NAME(float *out, float *att, const float *q, const T *k, const T *v, int64_t ld,   \
                     int64_t S, int64_t HS, float scale) {                                         \
        if (S < 1 || HS % 16 != 0 || HS > 128) {                                                   \
            GENERIC(out, att, q, k, v, ld, S, HS, scale);                                          \
            return;                                                                                \
        }                                                                                          \
        switch (HS / 16) {                                                                         \
        case 1: NV_FN(out, att, q, k, v, ld, S, scale, 1); break;                                  \
        case 2: NV_FN(out, att, q, k, v, ld, S, scale, 2); break;                                  \
        case 3: NV_FN(out, att, q, k, v, ld, S, scale, 3); break;                                  \
        case 4: NV_FN(out, att, q, k, v, ld, S, scale, 4); break;                                  \
        case 5: NV_FN(out, att, q, k, v, ld, S, scale, 5); break;                                  \
        case 6: NV_FN(out, att, q, k, v, ld, S, scale, 6); break;                                  \
        case 7: NV_FN(out, att, q, k, v, ld, S, scale, 7); break;                                  \
        default: NV_FN(out, att, q, k, v, ld, S, scale, 8); break;                                 \
        }                                                                                          \
    }

ATTEND_ROW(attend_row_avx512, float, attend_nv, duet_attend_row_generic)
ATTEND_ROW(attend_row_f16_avx512, uint16_t, attend_nv16, duet_attend_row_f16_generic)

const duet_kernels duet_kernels_avx512 = {
    .isa = "avx512",
    .sgemm = duet_sgemm_avx512,
    .softmax_rows = softmax_rows_avx512,
    .layernorm_rows = layernorm_rows_avx512,
    .rmsnorm_rows = rmsnorm_rows_avx512,
    .dot = duet_dot_avx512,
    .axpy = duet_axpy_avx512,
    .attend_row = attend_row_avx512,
    .attend_row_f16 = attend_row_f16_avx512,
};
