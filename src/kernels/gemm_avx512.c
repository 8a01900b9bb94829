/*
 * gemm_avx512.c — AVX-512 SGEMM: register-blocked microkernels and the
 * panel packers for the shared blocked driver (gemm_blocked.c), compiled
 * with -mavx512f/bw/vl/dq.
 *
 * Microkernel: MR rows x 32 columns of C in 2*MR zmm accumulators; each k
 * step loads two vectors of the packed B panel and broadcasts MR values of
 * the packed A panel. One kernel is instantiated for every row count
 * 1..MR and for 16 or 32 columns, so edge tiles do only the work they need;
 * column edges are handled with store masks.
 *
 * Also a 4 x 4 dot-product tile for A B^T with few rows (no packing; see
 * gemm_dot in gemm_blocked.c). Block sizes can be overridden at compile time
 * (-DG5_KC=...) for tuning experiments.
 *
 * Not here: the loop nest, threads and buffers (gemm_blocked.c), the
 * matrix-vector shortcuts' dot/axpy (kernels_avx512.c).
 */
#include "core/internal.h"
#include "kernels/gemm_blocked.h"

#include <immintrin.h>

/* Tuned on an AMD EPYC (Zen 4, 2 cores, 1 MiB L2, 32 KiB L1d); see
 * bench/README.md for the measurements behind them. */
#ifndef G5_MR
#define G5_MR 14
#endif
#define G5_NV 2 /* vectors of 16 per row of the tile */
#ifndef G5_KC
#define G5_KC 384
#endif
#ifndef G5_MC
#define G5_MC (G5_MR * 192)
#endif
#ifndef G5_NC
#define G5_NC 1024
#endif

/* ==== microkernel ==== */

/* The body every instantiation shares; MR and NV are compile-time constants
 * at each call, so the accumulators live in registers. */
static inline __attribute__((always_inline)) void
ukr_body(const int MR, const int NV, int64_t kc, const float *restrict a,
         const float *restrict b, float *restrict C, int64_t ldc, int64_t mr, int64_t nr,
         float alpha, float beta) {
    __m512 acc[G5_MR][G5_NV];
    /* The C tile is touched only at the end. Prefetch it to L2 now (from L3
     * or memory), and to L1 shortly before the end: prefetched to L1 now,
     * it would be evicted by the B panel streaming through. */
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        _mm_prefetch((const char *)(C + r * ldc), _MM_HINT_T1);
        _mm_prefetch((const char *)(C + r * ldc + 16 * NV - 1), _MM_HINT_T1);
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();

#define UKR_STEP                                                                           \
    do {                                                                                   \
        __m512 bv[G5_NV];                                                                  \
        _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) bv[v] =                       \
            _mm512_load_ps(b + 16 * v);                                                    \
        _Pragma("GCC unroll 16") for (int r = 0; r < MR; r++) {                            \
            __m512 ar = _mm512_set1_ps(a[r]);                                              \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) acc[r][v] =               \
                _mm512_fmadd_ps(ar, bv[v], acc[r][v]);                                     \
        }                                                                                  \
        a += MR;                                                                           \
        b += 16 * NV;                                                                      \
    } while (0)

    int64_t p = 0, k_l1 = kc > 24 ? kc - 24 : 0;
    for (; p < k_l1; p++) UKR_STEP;
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        _mm_prefetch((const char *)(C + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + r * ldc + 16 * NV - 1), _MM_HINT_T0);
    }
    for (; p < kc; p++) UKR_STEP;
#undef UKR_STEP

    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __mmask16 mask[G5_NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) {
        int64_t n = nr - 16 * v;
        mask[v] = n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        float *c = C + r * ldc;
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            __m512 x = _mm512_mul_ps(acc[r][v], va);
            if (beta == 0.0f) {
            } else if (beta == 1.0f) {
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask[v], c + 16 * v));
            } else {
                x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], c + 16 * v), x);
            }
            _mm512_mask_storeu_ps(c + 16 * v, mask[v], x);
        }
    }
}

#define UKR_ARGS                                                                          \
    int64_t kc, const float *restrict a, const float *restrict b, float *restrict C,      \
        int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta
#define UKR_DEF(m, v)                                                                     \
    static void ukr_##m##_##v(UKR_ARGS) {                                                 \
        ukr_body(m, v, kc, a, b, C, ldc, mr, nr, alpha, beta);                            \
    }
#define UKR_ROW(m) UKR_DEF(m, 1) UKR_DEF(m, 2)
UKR_ROW(1) UKR_ROW(2) UKR_ROW(3) UKR_ROW(4) UKR_ROW(5) UKR_ROW(6) UKR_ROW(7) UKR_ROW(8)
#if G5_MR > 8
UKR_ROW(9) UKR_ROW(10) UKR_ROW(11) UKR_ROW(12)
#endif
#if G5_MR > 12
UKR_ROW(13) UKR_ROW(14)
#endif
#if G5_MR > 14
UKR_ROW(15) UKR_ROW(16)
#endif

typedef void (*ukr_fn)(UKR_ARGS);
#define UKR_ENT(m) {ukr_##m##_1, ukr_##m##_2}
static const ukr_fn ukr_table[G5_MR][G5_NV] = {
    UKR_ENT(1), UKR_ENT(2), UKR_ENT(3), UKR_ENT(4), UKR_ENT(5), UKR_ENT(6), UKR_ENT(7), UKR_ENT(8),
#if G5_MR > 8
    UKR_ENT(9), UKR_ENT(10), UKR_ENT(11), UKR_ENT(12),
#endif
#if G5_MR > 12
    UKR_ENT(13), UKR_ENT(14),
#endif
#if G5_MR > 14
    UKR_ENT(15), UKR_ENT(16),
#endif
};

static void ukr_avx512(UKR_ARGS) {
    ukr_table[mr - 1][(nr + 15) / 16 - 1](kc, a, b, C, ldc, mr, nr, alpha, beta);
}

/* ==== dot-product tile (A B^T with few rows, no packing) ==== */

#define DK_MR 4
#define DK_NR 4

static inline __attribute__((always_inline)) void
dotk_body(const int MR, const int NR, int64_t K, const float *restrict a, int64_t lda,
          const float *restrict b, int64_t ldb, float *restrict C, int64_t ldc, float alpha,
          float beta) {
    __m512 acc[DK_MR][DK_NR];
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
#define DOTK_STEP(LOAD)                                                                    \
    do {                                                                                   \
        __m512 av[DK_MR], bv[DK_NR];                                                       \
        _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) av[i] = LOAD(a + i * lda + p); \
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) bv[j] = LOAD(b + j * ldb + p); \
        _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)                               \
            _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)                           \
                acc[i][j] = _mm512_fmadd_ps(av[i], bv[j], acc[i][j]);                      \
    } while (0)
    int64_t p = 0;
    for (; p + 16 <= K; p += 16) DOTK_STEP(_mm512_loadu_ps);
    if (p < K) {
        __mmask16 k = (__mmask16)((1u << (K - p)) - 1);
#define DOTK_MASKED(ptr) _mm512_maskz_loadu_ps(k, ptr)
        DOTK_STEP(DOTK_MASKED);
#undef DOTK_MASKED
    }
#undef DOTK_STEP
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) {
            float s = alpha * _mm512_reduce_add_ps(acc[i][j]);
            float *c = C + i * ldc + j;
            *c = beta == 0.0f ? s : s + beta * *c;
        }
}

#define DOTK_ARGS                                                                         \
    int64_t K, const float *restrict a, int64_t lda, const float *restrict b, int64_t ldb, \
        float *restrict C, int64_t ldc, float alpha, float beta
#define DOTK_DEF(m, n)                                                                    \
    static void dotk_##m##_##n(DOTK_ARGS) { dotk_body(m, n, K, a, lda, b, ldb, C, ldc, alpha, beta); }
#define DOTK_ROW(m) DOTK_DEF(m, 1) DOTK_DEF(m, 2) DOTK_DEF(m, 3) DOTK_DEF(m, 4)
DOTK_ROW(1) DOTK_ROW(2) DOTK_ROW(3) DOTK_ROW(4)
#define DOTK_ENT(m) {dotk_##m##_1, dotk_##m##_2, dotk_##m##_3, dotk_##m##_4}
static void (*const dotk_table[DK_MR][DK_NR])(DOTK_ARGS) = {
    DOTK_ENT(1), DOTK_ENT(2), DOTK_ENT(3), DOTK_ENT(4),
};

static void dotk_avx512(int64_t K, const float *a, int64_t lda, const float *b, int64_t ldb,
                        float *C, int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta) {
    dotk_table[mr - 1][nr - 1](K, a, lda, b, ldb, C, ldc, alpha, beta);
}

/* ==== packing ==== */

static __mmask16 lanes(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* In-register transpose of 16 rows of 16 floats. */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* rows 4g..4g+3: u[4g+k] holds, per 128-bit block L, column 4L+k */
    for (int g = 0; g < 4; g++) {
        __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
        __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int k = 0; k < 4; k++) {
        __m512 x01lo = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x44);
        __m512 x01hi = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xee);
        __m512 x23lo = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x44);
        __m512 x23hi = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xee);
        r[k] = _mm512_shuffle_f32x4(x01lo, x23lo, 0x88);
        r[4 + k] = _mm512_shuffle_f32x4(x01lo, x23lo, 0xdd);
        r[8 + k] = _mm512_shuffle_f32x4(x01hi, x23hi, 0x88);
        r[12 + k] = _mm512_shuffle_f32x4(x01hi, x23hi, 0xdd);
    }
}

static void pack_avx512(float *dst, const float *src, int64_t ld, int contig, int64_t kc,
                        int64_t width, int64_t panel, int64_t padq) {
    if (contig) {
        /* read each source row once, front to back, scattering it over the
         * panels (the packed block is small enough to stay in cache) */
        int64_t full = width / panel * panel, wl = width - full;
        int64_t pwl = (wl + padq - 1) / padq * padq;
        for (int64_t p = 0; p < kc; p++) {
            const float *s = src + p * ld;
            for (int64_t c0 = 0; c0 < full; c0 += panel) {
                float *d = dst + c0 * kc + p * panel;
                for (int64_t c = 0; c < panel; c += 16) {
                    __mmask16 k = lanes(panel - c);
                    _mm512_mask_storeu_ps(d + c, k, _mm512_maskz_loadu_ps(k, s + c0 + c));
                }
            }
            if (wl) {
                float *d = dst + full * kc + p * pwl;
                for (int64_t c = 0; c < pwl; c += 16) {
                    __m512 x = _mm512_maskz_loadu_ps(lanes(wl - c), s + full + c);
                    _mm512_mask_storeu_ps(d + c, lanes(pwl - c), x);
                }
            }
        }
        return;
    }
    /* src[c*ld + p]: transpose 16 x 16 blocks, panel by panel */
    for (int64_t q0 = 0; q0 < width; q0 += panel) {
        int64_t w = DUET_MIN(panel, width - q0), pw = (w + padq - 1) / padq * padq;
        float *d = dst + q0 * kc;
        const float *s = src + q0 * ld;
        for (int64_t c0 = 0; c0 < pw; c0 += 16) {
            int64_t nc = DUET_MIN(16, w - c0); /* <= 0 for an all-padding group */
            __mmask16 smask = lanes(pw - c0);
            for (int64_t p0 = 0; p0 < kc; p0 += 16) {
                int64_t np = DUET_MIN(16, kc - p0);
                __mmask16 lmask = lanes(np);
                __m512 r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = i < nc ? _mm512_maskz_loadu_ps(lmask, s + (c0 + i) * ld + p0)
                                  : _mm512_setzero_ps();
                transpose16(r);
                for (int64_t j = 0; j < np; j++)
                    _mm512_mask_storeu_ps(d + (p0 + j) * pw + c0, smask, r[j]);
            }
        }
    }
}

/* ==== the arch and the entry ==== */

_Static_assert(G5_MC % G5_MR == 0, "G5_MC must be a multiple of G5_MR");
_Static_assert(G5_NC % (16 * G5_NV) == 0, "G5_NC must be a multiple of the tile width");

static const duet_gemm_arch arch_avx512 = {
    .name = "avx512",
    .mr = G5_MR,
    .nr = 16 * G5_NV,
    .vl = 16,
    .kc = G5_KC,
    .mc = G5_MC,
    .nc = G5_NC,
    .ukr = ukr_avx512,
    .pack = pack_avx512,
    .dotk = dotk_avx512,
    .dk_mr = DK_MR,
    .dk_nr = DK_NR,
#ifndef G5_DK_MAX_M
    .dk_max_m = 32,
#else
    .dk_max_m = G5_DK_MAX_M,
#endif
    .dot = duet_dot_avx512,
    .axpy = duet_axpy_avx512,
};

const duet_gemm_arch *duet_gemm_arch_avx512(void) { return &arch_avx512; }

void duet_sgemm_avx512(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc) {
    duet_gemm_blocked(&arch_avx512, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C,
                      ldc);
}
