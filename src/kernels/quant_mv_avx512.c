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
#include <string.h>

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
    void NAME(const duet_qmv *mv, const void *W, int64_t r0, int64_t r1, float *y) {             \
        const T *w = (const T *)W;                                                                \
        const int64_t K = mv->K;                                                                  \
        const float *x = (const float *)mv->x;                                                    \
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

/* ---- Q4_0 x Q8_0 (VNNI), the activations prepared as duet_qmv_prepare does ----
 *
 * The AVX-512 BW kernel (quant_avx512.c, dot_q4_0_prep_bw) spreads a
 * block's 16 code bytes into 32 bytes of nibbles with a shift and a 128-bit
 * insert (a shuffle-port uop) per block. With VNNI (no 16-bit saturating
 * pairs to stay under) the 16 bytes are broadcast to both
 * halves by the load itself and one AND keeps the low nibbles in the lower
 * half and the high nibbles, times 16, in the upper; vpdpbusd's upper four
 * lanes then hold 16 x the high-nibble sums (exact multiples of 16), which
 * one arithmetic shift per 4 blocks brings back after the first reduction
 * step. The integer block sums are the ones the BW kernel forms, and the
 * float steps are its own, in its order: the same bits. This is the VNNI
 * kernel set's q4_0_prep, for duet_quant_matmul's matvec and the decode. */

static inline __m256 q4_scales8(const uint8_t *p) {
    uint64_t lo = 0, hi = 0;
    for (int j = 0; j < 4; j++) {
        uint16_t a, b;
        memcpy(&a, p + j * Q4_0_BYTES, 2);
        memcpy(&b, p + (j + 4) * Q4_0_BYTES, 2);
        lo |= (uint64_t)a << (16 * j);
        hi |= (uint64_t)b << (16 * j);
    }
    return _mm256_cvtph_ps(_mm_unpacklo_epi64(_mm_cvtsi64_si128((long long)lo),
                                              _mm_cvtsi64_si128((long long)hi)));
}

__attribute__((target("avx512vnni"))) float duet_q4_0_prep_vnni(int64_t n, const void *vw,
                                                                 const void *vx, const float *xd,
                                                                 const float *xs) {
    const int64_t nb = n / QK;
    const __m256i zero = _mm256_setzero_si256();
    const __m256i mask = _mm256_setr_epi64x(0x0F0F0F0F0F0F0F0FLL, 0x0F0F0F0F0F0F0F0FLL,
                                            (long long)0xF0F0F0F0F0F0F0F0ULL,
                                            (long long)0xF0F0F0F0F0F0F0F0ULL);
    const __m256i sh = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    const uint8_t *w = vw, *x = vx;
    __m256 acc = _mm256_setzero_ps(), acc2 = acc;
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8, w += 8 * Q4_0_BYTES, x += 8 * Q8_0_BYTES) {
        __m256i p[8];
        _mm_prefetch((const char *)w + 2048, _MM_HINT_T0);
        _mm_prefetch((const char *)w + 2048 + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)w + 2048 + 128, _MM_HINT_T0);
        for (int j = 0; j < 8; j++) {
            const __m256i b = _mm256_broadcastsi128_si256(
                _mm_loadu_si128((const __m128i *)(w + j * Q4_0_BYTES + 2)));
            p[j] = _mm256_dpbusd_epi32(zero, _mm256_and_si256(b, mask),
                                       _mm256_loadu_si256((const __m256i *)(x + j * Q8_0_BYTES + 2)));
        }
        const __m256i t0 = _mm256_hadd_epi32(p[0], p[1]), t1 = _mm256_hadd_epi32(p[2], p[3]);
        const __m256i t2 = _mm256_hadd_epi32(p[4], p[5]), t3 = _mm256_hadd_epi32(p[6], p[7]);
        /* lower halves: low-nibble sums; upper: 16 x high-nibble sums */
        const __m256i u0 = _mm256_srav_epi32(_mm256_hadd_epi32(t0, t1), sh);
        const __m256i u1 = _mm256_srav_epi32(_mm256_hadd_epi32(t2, t3), sh);
        const __m256i h = _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                                           _mm256_permute2x128_si256(u0, u1, 0x31));
        const __m256 dw = q4_scales8(w);
        acc = _mm256_fmadd_ps(dw, _mm256_mul_ps(_mm256_loadu_ps(xd + i), _mm256_cvtepi32_ps(h)),
                              acc);
        acc2 = _mm256_fmadd_ps(dw, _mm256_loadu_ps(xs + i), acc2);
    }
    __m256 acc1 = _mm256_setzero_ps();
    for (; i < nb; i++, w += Q4_0_BYTES, x += Q8_0_BYTES) {
        const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w + 2)));
        const __m256i p = _mm256_srav_epi32(
            _mm256_dpbusd_epi32(zero, _mm256_and_si256(b, mask),
                                _mm256_loadu_si256((const __m256i *)(x + 2))),
            sh);
        uint16_t h16;
        memcpy(&h16, w, 2);
        const float dw = _cvtsh_ss(h16);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd[i]), _mm256_cvtepi32_ps(p), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_set1_ps(dw), _mm256_set1_ps(xs[i] * 0.125f), acc2);
    }
    acc = _mm256_sub_ps(_mm256_add_ps(acc, acc1), acc2);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s4, _mm_movehdup_ps(s4)));
}

/* Rows of the caller-split matvec: one call for a chunk of rows. */
__attribute__((target("avx512vnni"))) void duet_qmv_rows_q4_0_vnni(const duet_qmv *mv,
                                                                   const void *W, int64_t r0,
                                                                   int64_t r1, float *y) {
    for (int64_t r = r0; r < r1; r++)
        y[r] = duet_q4_0_prep_vnni(mv->K, (const uint8_t *)W + r * mv->wrb, mv->x, mv->xd, mv->xs);
}
