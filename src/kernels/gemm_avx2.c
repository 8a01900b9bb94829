/*
 * gemm_avx2.c — AVX2 + FMA SGEMM for CPUs without AVX-512: register-blocked
 * microkernels and panel packers for the shared blocked driver
 * (gemm_blocked.c), compiled with -mavx2 -mfma.
 *
 * Microkernel: 6 rows x 16 columns of C in 12 ymm accumulators (with the two
 * B vectors and one broadcast that is 15 of the 16 registers); each k step
 * loads two vectors of the packed B panel and broadcasts 6 values of the
 * packed A panel. One kernel per row count 1..6 and for 8 or 16 columns; a
 * partial column tile goes through a small buffer (AVX2 masked stores are
 * slow on some CPUs, and edges are rare).
 *
 * Not here: the loop nest, threads and buffers (gemm_blocked.c), the
 * matrix-vector shortcuts' dot/axpy (kernels_avx2.c).
 */
#include "core/internal.h"
#include "kernels/gemm_blocked.h"

#include <immintrin.h>

#define G2_MR 6
#define G2_NV 2 /* vectors of 8 per row of the tile */
#define G2_KC 384
#define G2_MC (G2_MR * 384)
#define G2_NC 512

/* ==== microkernel ==== */

static inline __attribute__((always_inline)) void
ukr_body(const int MR, const int NV, int64_t kc, const float *restrict a,
         const float *restrict b, float *restrict C, int64_t ldc, int64_t mr, int64_t nr,
         float alpha, float beta) {
    __m256 acc[G2_MR][G2_NV];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        _mm_prefetch((const char *)(C + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + r * ldc + 8 * NV - 1), _MM_HINT_T0);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();

    for (int64_t p = 0; p < kc; p++) {
        __m256 bv[G2_NV];
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) bv[v] = _mm256_load_ps(b + 8 * v);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m256 ar = _mm256_broadcast_ss(a + r);
#pragma GCC unroll 2
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
        }
        a += MR;
        b += 8 * NV;
    }

    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (nr == 8 * NV) {
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            if (r >= mr) break;
            float *c = C + r * ldc;
#pragma GCC unroll 2
            for (int v = 0; v < NV; v++) {
                __m256 x = _mm256_mul_ps(acc[r][v], va);
                if (beta == 1.0f) x = _mm256_add_ps(x, _mm256_loadu_ps(c + 8 * v));
                else if (beta != 0.0f) x = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8 * v), x);
                _mm256_storeu_ps(c + 8 * v, x);
            }
        }
        return;
    }
    /* partial columns: through a buffer, touching only the nr valid ones */
    float tile[8 * G2_NV] = {0.0f};
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        float *c = C + r * ldc;
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) _mm256_storeu_ps(tile + 8 * v, _mm256_mul_ps(acc[r][v], va));
        for (int64_t j = 0; j < nr; j++) {
            float x = tile[j];
            c[j] = beta == 0.0f ? x : beta == 1.0f ? x + c[j] : x + beta * c[j];
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
UKR_ROW(1) UKR_ROW(2) UKR_ROW(3) UKR_ROW(4) UKR_ROW(5) UKR_ROW(6)

typedef void (*ukr_fn)(UKR_ARGS);
#define UKR_ENT(m) {ukr_##m##_1, ukr_##m##_2}
static const ukr_fn ukr_table[G2_MR][G2_NV] = {
    UKR_ENT(1), UKR_ENT(2), UKR_ENT(3), UKR_ENT(4), UKR_ENT(5), UKR_ENT(6),
};

static void ukr_avx2(UKR_ARGS) {
    ukr_table[mr - 1][(nr + 7) / 8 - 1](kc, a, b, C, ldc, mr, nr, alpha, beta);
}

/* ==== packing ==== */

/* In-register transpose of 8 rows of 8 floats. */
static inline __attribute__((always_inline)) void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* rows 4g..4g+3: u[4g+k] holds, per 128-bit half L, column 4L+k */
    for (int g = 0; g < 2; g++) {
        __m256d t0 = _mm256_castps_pd(t[4 * g]), t1 = _mm256_castps_pd(t[4 * g + 1]);
        __m256d t2 = _mm256_castps_pd(t[4 * g + 2]), t3 = _mm256_castps_pd(t[4 * g + 3]);
        u[4 * g + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2));
        u[4 * g + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2));
        u[4 * g + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3));
        u[4 * g + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3));
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
        r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
}

static void pack_avx2(float *dst, const float *src, int64_t ld, int contig, int64_t kc,
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
                int64_t c = 0;
                for (; c + 8 <= panel; c += 8) _mm256_storeu_ps(d + c, _mm256_loadu_ps(s + c0 + c));
                for (; c < panel; c++) d[c] = s[c0 + c];
            }
            if (wl) {
                float *d = dst + full * kc + p * pwl;
                int64_t c = 0;
                for (; c < wl; c++) d[c] = s[full + c];
                for (; c < pwl; c++) d[c] = 0.0f;
            }
        }
        return;
    }
    /* src[c*ld + p]: transpose 8 x 8 blocks, panel by panel */
    for (int64_t q0 = 0; q0 < width; q0 += panel) {
        int64_t w = DUET_MIN(panel, width - q0), pw = (w + padq - 1) / padq * padq;
        float *d = dst + q0 * kc;
        const float *s = src + q0 * ld;
        int64_t kfull = kc / 8 * 8;
        for (int64_t c0 = 0; c0 < pw; c0 += 8) {
            int64_t nc = DUET_MIN(8, w - c0); /* <= 0 for an all-padding group */
            int64_t ns = DUET_MIN(8, pw - c0);
            for (int64_t p0 = 0; p0 < kfull; p0 += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; i++)
                    r[i] = i < nc ? _mm256_loadu_ps(s + (c0 + i) * ld + p0) : _mm256_setzero_ps();
                transpose8(r);
                if (ns == 8) {
                    for (int j = 0; j < 8; j++) _mm256_storeu_ps(d + (p0 + j) * pw + c0, r[j]);
                } else {
                    float tmp[8];
                    for (int j = 0; j < 8; j++) {
                        _mm256_storeu_ps(tmp, r[j]);
                        for (int64_t i = 0; i < ns; i++) d[(p0 + j) * pw + c0 + i] = tmp[i];
                    }
                }
            }
            for (int64_t p = kfull; p < kc; p++)
                for (int64_t i = 0; i < ns; i++)
                    d[p * pw + c0 + i] = i < nc ? s[(c0 + i) * ld + p] : 0.0f;
        }
    }
}

/* ==== the arch and the entry ==== */

_Static_assert(G2_MC % G2_MR == 0, "G2_MC must be a multiple of G2_MR");
_Static_assert(G2_NC % (8 * G2_NV) == 0, "G2_NC must be a multiple of the tile width");

static const duet_gemm_arch arch_avx2 = {
    .name = "avx2",
    .mr = G2_MR,
    .nr = 8 * G2_NV,
    .vl = 8,
    .kc = G2_KC,
    .mc = G2_MC,
    .nc = G2_NC,
    .ukr = ukr_avx2,
    .pack = pack_avx2,
    .dot = duet_dot_avx2,
    .axpy = duet_axpy_avx2,
};

void duet_sgemm_avx2(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc) {
    duet_gemm_blocked(&arch_avx2, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
