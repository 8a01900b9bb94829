/*
 * quant_mv_avx512.c — four weight rows at a time for the caller-split
 * matrix-vector product (quant_mv.h), f32 and f16 weights with an f32
 * vector. Per row the one-row dot costs a call, its own loads of x and a
 * 16-lane horizontal sum; for rows of a few hundred elements (a 15M-shape
 * model's 32000 x 288 output matrix, GPT-2 small's 384-wide rows) that
 * adds up. Here a group of four rows is one call and one reduction tree
 * sums all four; each row is still swept front to back on its own (four
 * rows interleaved load by load measured 15-30% slower: four streams
 * instead of one for the prefetchers). The summation order differs from
 * the one-row dot's: results agree to rounding, not bit for bit.
 */
#include "kernels/quant_mv.h"

#include <immintrin.h>

/* The four row sums of acc[0..3] as one vector of four floats. */
static inline __m128 sum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    const __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(b), 1)));
    const __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c), 1)));
    const __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1)));
    /* per 128-bit half: [a0+a1, a2+a3, b0+b1, b2+b3] then [a, b, c, d] quarter sums */
    const __m256 ab = _mm256_hadd_ps(a8, b8), cd = _mm256_hadd_ps(c8, d8);
    const __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

static inline float sum1(__m512 a, __m512 b) { return _mm512_reduce_add_ps(_mm512_add_ps(a, b)); }

/* One row, front to back (one sequential stream, which the hardware
 * prefetchers follow best), into accumulators a and b. */
#define ROW_SWEEP(LOAD, LOADM, p, a, b)                                                                       \
    {                                                                                              \
        int64_t i = 0;                                                                             \
        for (; i < k32; i += 32) {                                                                 \
            a = _mm512_fmadd_ps(LOAD(p, i), _mm512_loadu_ps(x + i), a);                            \
            b = _mm512_fmadd_ps(LOAD(p, i + 16), _mm512_loadu_ps(x + i + 16), b);                  \
        }                                                                                          \
        if (i < k16) {                                                                             \
            a = _mm512_fmadd_ps(LOAD(p, i), _mm512_loadu_ps(x + i), a);                            \
            i += 16;                                                                               \
        }                                                                                          \
        if (km) b = _mm512_fmadd_ps(LOADM(km, p, i), _mm512_maskz_loadu_ps(km, x + i), b);         \
    }

/* LOAD(p, i): 16 weights from row pointer p at element i, as floats;
 * LOADM(k, p, i): the first lanes of k only. */
#define ROWS_KERNEL(NAME, T, LOAD, LOADM)                                                          \
    void NAME(const void *W, int64_t K, const float *x, int64_t r0, int64_t r1, float *y) {       \
        const T *w = (const T *)W;                                                                \
        const int64_t k32 = K & ~(int64_t)31, k16 = K & ~(int64_t)15;                             \
        const __mmask16 km = (__mmask16)((1u << (K - k16)) - 1);                                  \
        int64_t r = r0;                                                                           \
        for (; r + 4 <= r1; r += 4) {                                                             \
            const T *p0 = w + r * K, *p1 = p0 + K, *p2 = p1 + K, *p3 = p2 + K;                    \
            __m512 a0 = _mm512_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0,         \
                   a3 = a0, b3 = a0;                                                              \
            ROW_SWEEP(LOAD, LOADM, p0, a0, b0)                                                                 \
            ROW_SWEEP(LOAD, LOADM, p1, a1, b1)                                                                 \
            ROW_SWEEP(LOAD, LOADM, p2, a2, b2)                                                                 \
            ROW_SWEEP(LOAD, LOADM, p3, a3, b3)                                                                 \
            _mm_storeu_ps(y + r, sum4(_mm512_add_ps(a0, b0), _mm512_add_ps(a1, b1),               \
                                      _mm512_add_ps(a2, b2), _mm512_add_ps(a3, b3)));             \
        }                                                                                         \
        for (; r < r1; r++) {                                                                     \
            const T *p0 = w + r * K;                                                              \
            __m512 a0 = _mm512_setzero_ps(), b0 = a0;                                             \
            int64_t i = 0;                                                                        \
            for (; i < k16; i += 16) {                                                            \
                if (i & 16) b0 = _mm512_fmadd_ps(LOAD(p0, i), _mm512_loadu_ps(x + i), b0);        \
                else a0 = _mm512_fmadd_ps(LOAD(p0, i), _mm512_loadu_ps(x + i), a0);               \
            }                                                                                     \
            if (km) a0 = _mm512_fmadd_ps(LOADM(km, p0, i), _mm512_maskz_loadu_ps(km, x + i), a0); \
            y[r] = sum1(a0, b0);                                                                  \
        }                                                                                         \
    }

#define LD_F32(p, i) _mm512_loadu_ps((p) + (i))
#define LDM_F32(k, p, i) _mm512_maskz_loadu_ps(k, (p) + (i))
#define LD_F16(p, i) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((p) + (i))))
#define LDM_F16(k, p, i) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (p) + (i)))

ROWS_KERNEL(duet_qmv_rows_f32_avx512, float, LD_F32, LDM_F32)
ROWS_KERNEL(duet_qmv_rows_f16_avx512, uint16_t, LD_F16, LDM_F16)
