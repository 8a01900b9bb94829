/*
 * kernels_avx2.c — AVX2 + FMA kernel set (compiled with -mavx2 -mfma): the
 * row kernels (softmax, LayerNorm, RMSNorm), dot and axpy, plus the set's
 * table entry. The GEMM itself is in gemm_avx2.c.
 *
 * Like the AVX-512 set, each kernel follows its scalar reference in
 * kernels_scalar.c where that matters for rounding (sums in double,
 * mul-then-add where the reference does not fuse). Row tails shorter than a
 * vector run in scalar code (AVX2 has no cheap masks).
 * Entries left NULL fall back to the scalar reference.
 */
#include "core/internal.h"
#include "kernels/gemm_blocked.h"
#include "kernels/kernels.h"

#include <immintrin.h>
#include <math.h>

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline double hsum256d(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

static inline float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Adds the 8 floats of v into a double accumulator pair. */
static inline void add_pd8(__m256d *s0, __m256d *s1, __m256 v) {
    *s0 = _mm256_add_pd(*s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    *s1 = _mm256_add_pd(*s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

/* 2^n for integral n in [-150, 128] as the product of two normal powers, so
 * that denormal and overflowing results come out of one final rounding. */
static inline __m256 mul_pow2(__m256 p, __m256 n) {
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h = _mm256_srai_epi32(ni, 1);
    __m256i l = _mm256_sub_epi32(ni, h);
    __m256 sh = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
    __m256 sl = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(l, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, sh), sl);
}

/* exp(x) for 8 floats: the same reduction and polynomial as exp_avx512 in
 * kernels_avx512.c (within 1 ulp; -inf -> 0, +inf -> inf, NaN -> NaN), with
 * the scaling by 2^n done by mul_pow2. */
static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x); /* operand order keeps NaN */
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
    __m256 q = _mm256_set1_ps(1.0f / 5040.0f);
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 720.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 120.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 24.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 6.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5f));
    __m256 p = _mm256_fmadd_ps(q, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    return mul_pow2(p, n);
}

/* ==== softmax ==== */

static void softmax_rows_avx2(float *out, const float *inp, int64_t N, int64_t C) {
    for (int64_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float *y = out + r * C;
        int64_t C8 = C / 8 * 8;
        float mx = -INFINITY;
        if (C8) {
            __m256 vm = _mm256_set1_ps(-INFINITY);
            for (int64_t i = 0; i < C8; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
            mx = hmax256(vm);
        }
        for (int64_t i = C8; i < C; i++) mx = x[i] > mx ? x[i] : mx;
        __m256 vmx = _mm256_set1_ps(mx);
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
        for (int64_t i = 0; i < C8; i += 8) {
            __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
            _mm256_storeu_ps(y + i, e);
            add_pd8(&s0, &s1, e);
        }
        if (C8 < C) {
            float tx[8] = {0}, te[8];
            for (int64_t i = C8; i < C; i++) tx[i - C8] = x[i];
            _mm256_storeu_ps(te, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(tx), vmx)));
            for (int64_t i = C8; i < C; i++) y[i] = te[i - C8];
        }
        double sum = hsum256d(_mm256_add_pd(s0, s1));
        for (int64_t i = C8; i < C; i++) sum += (double)y[i];
        float inv = (float)(1.0 / sum);
        __m256 vinv = _mm256_set1_ps(inv);
        for (int64_t i = 0; i < C8; i += 8)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vinv));
        for (int64_t i = C8; i < C; i++) y[i] *= inv;
    }
}

/* ==== LayerNorm and RMSNorm ==== */

/* sum of (x[i] - m)^2 in double */
static double sumsq_dev_d(const float *x, int64_t C, double m) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), vm = _mm256_set1_pd(m);
    int64_t i = 0;
    for (; i + 8 <= C; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vm);
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vm);
        s0 = _mm256_fmadd_pd(d0, d0, s0);
        s1 = _mm256_fmadd_pd(d1, d1, s1);
    }
    double s = hsum256d(_mm256_add_pd(s0, s1));
    for (; i < C; i++) s += ((double)x[i] - m) * ((double)x[i] - m);
    return s;
}

static void layernorm_rows_avx2(float *out, float *mean, float *rstd, const float *inp,
                                const float *weight, const float *bias, int64_t N, int64_t C,
                                float eps) {
    for (int64_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float *y = out + r * C;
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
        int64_t i = 0;
        for (; i + 8 <= C; i += 8) add_pd8(&s0, &s1, _mm256_loadu_ps(x + i));
        double sum = hsum256d(_mm256_add_pd(s0, s1));
        for (; i < C; i++) sum += (double)x[i];
        double m = sum / (double)C;
        double v = sumsq_dev_d(x, C, m) / (double)C;
        float s = (float)(1.0 / sqrt(v + (double)eps));
        float mf = (float)m;
        __m256 vmf = _mm256_set1_ps(mf), vs = _mm256_set1_ps(s);
        for (i = 0; i + 8 <= C; i += 8) {
            /* (x - mean) * rstd * w + b, unfused like the reference */
            __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmf), vs);
            if (weight) n = _mm256_mul_ps(n, _mm256_loadu_ps(weight + i));
            if (bias) n = _mm256_add_ps(n, _mm256_loadu_ps(bias + i));
            _mm256_storeu_ps(y + i, n);
        }
        for (; i < C; i++) {
            float n = (x[i] - mf) * s;
            y[i] = n * (weight ? weight[i] : 1.0f) + (bias ? bias[i] : 0.0f);
        }
        if (mean) mean[r] = mf;
        if (rstd) rstd[r] = s;
    }
}

static void rmsnorm_rows_avx2(float *out, float *rstd, const float *inp, const float *weight,
                              int64_t N, int64_t C, float eps) {
    for (int64_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float *y = out + r * C;
        double ss = sumsq_dev_d(x, C, 0.0);
        float s = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        __m256 vs = _mm256_set1_ps(s);
        int64_t i = 0;
        for (; i + 8 <= C; i += 8) {
            __m256 n = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
            if (weight) n = _mm256_mul_ps(n, _mm256_loadu_ps(weight + i));
            _mm256_storeu_ps(y + i, n);
        }
        for (; i < C; i++) y[i] = x[i] * s * (weight ? weight[i] : 1.0f);
        if (rstd) rstd[r] = s;
    }
}

/* ==== dot, axpy ==== */

float duet_dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void duet_axpy_avx2(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 y0 = _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        __m256 y1 = _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
        _mm256_storeu_ps(y + i, y0);
        _mm256_storeu_ps(y + i + 8, y1);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

const duet_kernels duet_kernels_avx2 = {
    .isa = "avx2",
    .sgemm = duet_sgemm_avx2,
    .softmax_rows = softmax_rows_avx2,
    .layernorm_rows = layernorm_rows_avx2,
    .rmsnorm_rows = rmsnorm_rows_avx2,
    .dot = duet_dot_avx2,
    .axpy = duet_axpy_avx2,
};
