/*
 * test_kernels.c — every kernel set this CPU can run (scalar, avx2, avx512)
 * held to the references: the GEMMs to the triple-loop duet_sgemm_ref, the
 * row kernels, dot and axpy to the scalar set (kernels_scalar.c), softmax also
 * to a double-precision softmax.
 *
 * GEMM tolerances come from the standard error bound of a K-term float dot
 * product: |C - C_ref| <= K * u * |alpha| * sum_p |a_ip||b_pj|
 * + 2u (|alpha| S + |beta C0|), u = 2^-24, computed per element (S from
 * the reference run on |A|, |B|). A dropped, doubled or misplaced term is
 * far outside it: that is O(|a||b|), the bound O(K^2 u |a||b|) for K <= 1000.
 *
 * Also: edge sizes 1, 7, 17, 33, 65, 129 in M, N and K; all four transposes;
 * alpha/beta cases incl. beta = 0 over a NaN-filled C and alpha = 0; leading
 * dimensions wider than the matrix with NaN in the gap (never read) and a
 * sentinel in C's gap (never written); shapes that cross every cache block;
 * threads 1 and 2 giving bitwise-equal results; no allocation once warm; an
 * exiting thread freeing its buffers; the fallback when no packing buffer can
 * be allocated.
 */
#include "testutil.h"

#include "kernels/gemm_blocked.h"
#include "kernels/kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const ISAS[] = {"scalar", "avx2", "avx512"};
#define NISA 3
static const double U = 5.9604644775390625e-08; /* 2^-24 */

/* ==== GEMM ==== */

typedef struct gemm_case {
    int tA, tB;
    int64_t M, N, K;
    int64_t pad;        /* extra leading-dimension columns on A, B and C */
    float alpha, beta;
    int nan_c;          /* C starts as NaN (only meaningful with beta == 0) */
} gemm_case;

static uint64_t seed_ctr = 1;

/* Runs one case with the current kernel set and thread count and, when
 * `check`, holds it to the reference; returns the result in a fresh array
 * (caller frees) so thread counts can be compared. */
static float *run_gemm_case(const gemm_case *gc, const char *isa, int check) {
    int64_t M = gc->M, N = gc->N, K = gc->K;
    int64_t ar = gc->tA ? K : M, ac = gc->tA ? M : K; /* A stored ar x ac */
    int64_t br = gc->tB ? N : K, bc = gc->tB ? K : N;
    int64_t lda = ac + gc->pad, ldb = bc + gc->pad, ldc = N + gc->pad;
    size_t na = (size_t)(ar * lda), nb = (size_t)(br * ldb), nc = (size_t)(M * ldc);
    float *A = malloc((na ? na : 1) * sizeof(float));
    float *B = malloc((nb ? nb : 1) * sizeof(float));
    float *C = malloc(nc * sizeof(float)), *R = malloc(nc * sizeof(float));
    float *Aa = malloc((na ? na : 1) * sizeof(float)), *Ba = malloc((nb ? nb : 1) * sizeof(float));
    float *S = malloc(nc * sizeof(float));
    uint64_t seed = seed_ctr++;
    /* NaN everywhere, then values inside the matrix: the gaps stay NaN */
    for (size_t i = 0; i < na; i++) A[i] = NAN;
    for (size_t i = 0; i < nb; i++) B[i] = NAN;
    for (int64_t i = 0; i < ar; i++) t_fill_uniform(A + i * lda, ac, seed * 1000 + (uint64_t)i, -1.0f, 1.0f);
    for (int64_t i = 0; i < br; i++) t_fill_uniform(B + i * ldb, bc, seed * 1000 + 500 + (uint64_t)i, -1.0f, 1.0f);
    for (int64_t i = 0; i < M; i++) {
        t_fill_uniform(C + i * ldc, N, seed * 7 + 3 + (uint64_t)i, -1.0f, 1.0f);
        for (int64_t j = N; j < ldc; j++) C[i * ldc + j] = 12345.0f; /* sentinel */
        if (gc->nan_c)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = NAN;
    }
    memcpy(R, C, nc * sizeof(float));
    float *C0 = malloc(nc * sizeof(float));
    memcpy(C0, C, nc * sizeof(float));

    duet_sgemm(gc->tA, gc->tB, M, N, K, gc->alpha, A, lda, B, ldb, gc->beta, C, ldc);
    if (!check) {
        free(A), free(B), free(R), free(Aa), free(Ba), free(S), free(C0);
        return C;
    }
    duet_sgemm_ref(gc->tA, gc->tB, M, N, K, gc->alpha, A, lda, B, ldb, gc->beta, R, ldc);
    /* S = |alpha| sum_p |a||b| (zeros in the gaps keep the reference finite) */
    for (size_t i = 0; i < na; i++) Aa[i] = isnan(A[i]) ? 0.0f : fabsf(A[i]);
    for (size_t i = 0; i < nb; i++) Ba[i] = isnan(B[i]) ? 0.0f : fabsf(B[i]);
    duet_sgemm_ref(gc->tA, gc->tB, M, N, K, fabsf(gc->alpha), Aa, lda, Ba, ldb, 0.0f, S, ldc);

    int64_t bad = 0, worst_i = -1;
    double worst = 0.0;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < ldc; j++) {
            int64_t k = i * ldc + j;
            if (j >= N) { /* the gap of C is never written */
                if (C[k] != 12345.0f) bad++, worst_i = k, worst = (double)INFINITY;
                continue;
            }
            double c0 = gc->beta == 0.0f ? 0.0 : fabs((double)gc->beta * (double)C0[k]);
            double tol = (double)K * U * (double)S[k] + 2.0 * U * ((double)S[k] + c0) + 1e-30;
            double err = fabs((double)C[k] - (double)R[k]);
            if (!(err <= tol)) {
                bad++;
                double ex = isnan(err) ? (double)INFINITY : err / tol;
                if (ex > worst || worst_i < 0) worst = ex, worst_i = k;
            }
        }
    }
    T_CHECK(bad == 0,
            "%s sgemm tA=%d tB=%d M=%lld N=%lld K=%lld pad=%lld alpha=%g beta=%g nanC=%d "
            "threads=%d: %lld bad, worst [%lld] got %.9g want %.9g (x%.3g of bound)",
            isa, gc->tA, gc->tB, (long long)M, (long long)N, (long long)K, (long long)gc->pad,
            (double)gc->alpha, (double)gc->beta, gc->nan_c, duet_get_threads(), (long long)bad,
            (long long)worst_i, worst_i >= 0 ? (double)C[worst_i] : 0.0,
            worst_i >= 0 ? (double)R[worst_i] : 0.0, worst);
    free(A), free(B), free(R), free(Aa), free(Ba), free(S), free(C0);
    return C;
}

/* Runs a case on 1 thread against the reference, then on 2 with each way
 * the driver can share the work between threads (its choice, shared A packed
 * whole, shared A block by block, private): the results must agree bit for
 * bit (each element is computed by the same operations whatever the split). */
static void gemm_case_threads(const gemm_case *gc, const char *isa) {
    duet_set_threads(1);
    float *c1 = run_gemm_case(gc, isa, 1);
    size_t n = (size_t)(gc->M * (gc->N + gc->pad));
    for (int mode = 0; mode <= 3; mode++) {
        duet_gemm_mode_override = mode;
        duet_set_threads(2);
        seed_ctr--; /* same data */
        float *c2 = run_gemm_case(gc, isa, 0);
        T_CHECK(memcmp(c1, c2, n * sizeof(float)) == 0,
                "%s sgemm M=%lld N=%lld K=%lld tA=%d tB=%d: 1 thread and 2 (mode %d) agree "
                "bitwise",
                isa, (long long)gc->M, (long long)gc->N, (long long)gc->K, gc->tA, gc->tB, mode);
        free(c2);
    }
    duet_gemm_mode_override = 0;
    seed_ctr++;
    free(c1);
}

static void test_gemm_set(const char *isa) {
    static const int64_t sizes[] = {1, 7, 17, 33, 65};
    static const int64_t ks[] = {1, 17, 129};
    /* every trans, M, N over the edge sizes, three depths; alpha/beta vary */
    int v = 0;
    for (int t = 0; t < 4; t++)
        for (int im = 0; im < 5; im++)
            for (int in = 0; in < 5; in++)
                for (int ik = 0; ik < 3; ik++, v++) {
                    gemm_case gc = {t & 1, t >> 1, sizes[im], sizes[in], ks[ik], 0, 1.0f, 0.0f, 0};
                    switch (v % 4) {
                    case 1: gc.beta = 1.0f; break;
                    case 2: gc.alpha = 0.5f, gc.beta = -2.0f; break;
                    case 3: gc.alpha = -1.5f, gc.nan_c = 1, gc.pad = 3; break;
                    default: break;
                    }
                    duet_set_threads(v % 2 ? 2 : 1);
                    free(run_gemm_case(&gc, isa, 1));
                }
    /* shapes crossing the cache blocks of every set (K > kc, M > mc, N > nc),
     * the transformer's shapes in small, and matrix-vector products; 1 and 2
     * threads must agree bitwise */
    static const gemm_case big[] = {
        {0, 0, 129, 129, 129, 0, 1.0f, 0.0f, 0},
        {0, 1, 200, 150, 800, 5, 1.0f, 1.0f, 0},
        {1, 0, 150, 200, 900, 0, 0.7f, 0.0f, 1},
        {1, 1, 96, 97, 513, 2, 1.0f, 0.5f, 0},
        {0, 0, 2800, 40, 48, 1, 1.0f, 0.0f, 0},
        {1, 1, 2800, 33, 64, 0, 1.0f, 1.0f, 0},
        {0, 1, 20, 1100, 200, 0, 1.0f, 0.0f, 1},
        {1, 0, 20, 1100, 200, 3, 2.0f, 1.0f, 0},
        {0, 1, 64, 768, 96, 0, 1.0f, 0.0f, 0},
        {0, 0, 16, 300, 900, 0, 1.0f, 1.0f, 0},
        {1, 0, 300, 300, 64, 0, 1.0f, 1.0f, 0},
        {0, 0, 5000, 1, 300, 2, 1.0f, 0.0f, 1},
        {1, 0, 5000, 1, 300, 0, 0.5f, 2.0f, 0},
        {0, 1, 1, 5000, 300, 1, 1.0f, 1.0f, 0},
        {1, 0, 1, 5000, 300, 0, 1.0f, 0.0f, 1},
        {0, 0, 1, 1, 1000, 0, 1.0f, 0.0f, 0},
        {0, 0, 2, 3, 1, 0, 1.0f, 0.0f, 0},
    };
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) gemm_case_threads(&big[i], isa);

    /* K = 0 and alpha = 0: C = beta * C, and beta = 0 clears NaNs */
    for (int threads = 1; threads <= 2; threads++) {
        duet_set_threads(threads);
        gemm_case z[] = {
            {0, 0, 9, 10, 0, 0, 1.0f, 0.5f, 0},
            {0, 0, 9, 10, 0, 0, 1.0f, 0.0f, 1},
            {1, 1, 40, 40, 20, 0, 0.0f, 0.5f, 0},
            {0, 1, 40, 40, 20, 2, 0.0f, 0.0f, 1},
        };
        for (size_t i = 0; i < sizeof z / sizeof *z; i++) free(run_gemm_case(&z[i], isa, 1));
    }
    /* M or N = 0 writes nothing */
    float c = 7.0f;
    duet_sgemm(0, 0, 0, 1, 1, 1.0f, &c, 1, &c, 1, 0.0f, &c, 1);
    duet_sgemm(0, 0, 1, 0, 1, 1.0f, &c, 1, &c, 1, 0.0f, &c, 1);
    T_CHECK(c == 7.0f, "%s sgemm with M or N = 0 writes nothing", isa);
}

/* ==== allocation: none once warm; the fallback without memory ==== */

static int alloc_count, alloc_fail, free_count;
static void *counting_alloc(void *ud, size_t size, size_t align) {
    (void)ud;
#pragma omp atomic update
    alloc_count++;
    if (alloc_fail) return NULL;
    void *p = NULL;
    return posix_memalign(&p, align, size ? size : 1) ? NULL : p;
}
static void counting_free(void *ud, void *p) {
    (void)ud;
    if (p) {
#pragma omp atomic update
        free_count++;
    }
    free(p);
}

/* Runs first in the process: no packing buffer exists yet, and none can be
 * had, so every set must fall back to the reference and still be right. */
static void test_gemm_nomem(void) {
    duet_allocator a = {counting_alloc, counting_free, NULL};
    duet_set_allocator(&a);
    alloc_fail = 1;
    for (int i = 0; i < NISA; i++) {
        if (duet_kernel_force(ISAS[i]) != DUET_OK) continue;
        gemm_case gc = {0, 1, 100, 70, 50, 0, 1.0f, 0.0f, 1};
        duet_set_threads(2);
        free(run_gemm_case(&gc, ISAS[i], 1));
        gemm_case gv = {0, 0, 100, 1, 50, 0, 1.0f, 0.0f, 0}; /* gemv, strided x */
        free(run_gemm_case(&gv, ISAS[i], 1));
    }
    alloc_fail = 0;
    duet_set_allocator(NULL);
}

static void test_gemm_no_alloc_when_warm(const char *isa) {
    int64_t M = 300, N = 260, K = 500;
    float *A = calloc((size_t)(M * K), sizeof(float)), *B = calloc((size_t)(K * N), sizeof(float));
    float *C = calloc((size_t)(M * N), sizeof(float));
    duet_allocator a = {counting_alloc, counting_free, NULL};
    duet_set_threads(2);
    duet_set_allocator(&a);
    duet_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N); /* warms the buffers */
    alloc_count = 0;
    for (int r = 0; r < 3; r++) duet_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
    duet_set_allocator(NULL);
    T_CHECK(alloc_count == 0, "%s sgemm allocates nothing once warm (%d allocations)", isa,
            alloc_count);
    free(A), free(B), free(C);
}

/* A thread that used the GEMM and exits gives its packing buffers back. */
static void *gemm_in_thread(void *arg) {
    (void)arg;
    int64_t M = 100, N = 90, K = 80;
    float *A = calloc((size_t)(M * K), sizeof(float)), *B = calloc((size_t)(K * N), sizeof(float));
    float *C = calloc((size_t)(M * N), sizeof(float));
    duet_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    duet_sgemm(1, 1, 1, N, K, 1.0f, A, 1, B, K, 0.0f, C, N); /* gemv, strided x */
    free(A), free(B), free(C);
    return NULL;
}

static void test_gemm_thread_exit(const char *isa) {
    duet_allocator a = {counting_alloc, counting_free, NULL};
    duet_set_threads(1);
    duet_set_allocator(&a);
    alloc_count = free_count = 0;
    pthread_t th;
    int ok = pthread_create(&th, NULL, gemm_in_thread, NULL) == 0;
    if (ok) pthread_join(th, NULL);
    duet_set_allocator(NULL);
    T_CHECK(ok && alloc_count > 0 && free_count == alloc_count,
            "%s sgemm: an exiting thread frees its buffers (%d allocated, %d freed)", isa,
            alloc_count, free_count);
}

/* ==== row kernels, dot, axpy ==== */

static const int64_t ROW_C[] = {1, 7, 15, 16, 17, 33, 100, 768, 1000};
#define NROW_C 9

static void test_softmax(const char *isa) {
    for (int ic = 0; ic < NROW_C; ic++) {
        int64_t C = ROW_C[ic], N = 3;
        float *x = malloc((size_t)(N * C) * sizeof(float)), *y = malloc((size_t)(N * C) * sizeof(float));
        float *r = malloc((size_t)(N * C) * sizeof(float));
        double *d = malloc((size_t)(N * C) * sizeof(double));
        t_fill_uniform(x, C, 11 + (uint64_t)C, -5.0f, 5.0f);
        t_fill_uniform(x + C, C, 12 + (uint64_t)C, -80.0f, 80.0f); /* wide: tiny and huge terms */
        t_fill_uniform(x + 2 * C, C, 13 + (uint64_t)C, 1000.0f, 1010.0f); /* needs the max shift */
        for (int64_t i = 0; i < C; i += 3) x[i] = -INFINITY; /* masked logits */
        if (C == 1) x[0] = 0.5f;
        duet_k.softmax_rows(y, x, N, C);
        duet_kernels_scalar.softmax_rows(r, x, N, C);
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + n * C;
            /* the shift x - max is a float subtraction in the kernels' contract;
             * its rounding (up to 4e-6 relative near -87) is not exp's error */
            float mx = -INFINITY;
            double s = 0.0;
            for (int64_t i = 0; i < C; i++) mx = xr[i] > mx ? xr[i] : mx;
            for (int64_t i = 0; i < C; i++) s += exp((double)(xr[i] - mx));
            for (int64_t i = 0; i < C; i++) d[n * C + i] = exp((double)(xr[i] - mx)) / s;
        }
        char what[96];
        /* a few ulp: exp within 1 ulp, the float sum of exps, one multiply */
        snprintf(what, sizeof what, "%s softmax C=%lld vs scalar set", isa, (long long)C);
        t_close(what, y, r, N * C, 5e-7, 1e-37);
        snprintf(what, sizeof what, "%s softmax C=%lld vs double softmax", isa, (long long)C);
        t_close_d(what, y, d, N * C, 5e-7, 1e-37);
        free(x), free(y), free(r), free(d);
    }
    /* exp over the float range, through one-element rows (softmax = exp(0)
     * = 1 is useless), so exp itself: two-element rows [0, t] give
     * y1 = e^t / (1 + e^t); compare with double */
    int64_t n = 4001;
    float *x = malloc((size_t)(2 * n) * sizeof(float)), *y = malloc((size_t)(2 * n) * sizeof(float));
    double *d = malloc((size_t)(2 * n) * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        float t = -100.0f + 0.05f * (float)i; /* -100 .. 100 */
        x[2 * i] = t > 0.0f ? t : 0.0f;
        x[2 * i + 1] = t > 0.0f ? 0.0f : t;
        double e = exp(-fabs((double)t));
        d[2 * i] = t > 0.0f ? 1.0 / (1.0 + e) : 1.0 / (1.0 + e);
        d[2 * i + 1] = e / (1.0 + e);
    }
    duet_k.softmax_rows(y, x, n, 2);
    char what[64];
    snprintf(what, sizeof what, "%s softmax of [0, t], t in [-100, 100]", isa);
    t_close_d(what, y, d, 2 * n, 5e-7, 1e-44);
    /* for t < -18, 1/(1 + e^t) rounds to 1 and y1 is exp(t) itself: within 1 ulp
     * (1.19e-7 relative), denormals within one of their ulps */
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        float t = -100.0f + 0.05f * (float)i;
        if (t >= -18.0f) break;
        y[m] = y[2 * i + 1];
        d[m++] = exp((double)t);
    }
    snprintf(what, sizeof what, "%s exp(t), t in [-100, -18]: 1 ulp", isa);
    t_close_d(what, y, d, m, 1.1921e-7, 1.5e-45);
    free(x), free(y), free(d);
}

static void test_norms(const char *isa) {
    for (int ic = 0; ic < NROW_C; ic++) {
        int64_t C = ROW_C[ic], N = 4;
        size_t nn = (size_t)(N * C);
        float *x = malloc(nn * sizeof(float)), *w = malloc((size_t)C * sizeof(float));
        float *b = malloc((size_t)C * sizeof(float));
        float *y = malloc(nn * sizeof(float)), *r = malloc(nn * sizeof(float));
        float m1[4], s1[4], m2[4], s2[4];
        t_fill_uniform(x, (int64_t)nn, 21 + (uint64_t)C, -2.0f, 2.0f);
        for (int64_t i = 0; i < C; i++) x[C + i] += 100.0f; /* large mean */
        t_fill_uniform(w, C, 22, 0.5f, 1.5f);
        t_fill_uniform(b, C, 23, -1.0f, 1.0f);
        char what[96];
        for (int mode = 0; mode < 4; mode++) {
            const float *wp = mode & 1 ? w : NULL, *bp = mode & 2 ? b : NULL;
            duet_k.layernorm_rows(y, m1, s1, x, wp, bp, N, C, 1e-5f);
            duet_kernels_scalar.layernorm_rows(r, m2, s2, x, wp, bp, N, C, 1e-5f);
            /* same operations as the reference but the order of the double
             * sums: the statistics agree to a float ulp; outputs to a few ulp
             * of their size, absolutely where a bias cancels them */
            snprintf(what, sizeof what, "%s layernorm C=%lld w=%d b=%d", isa, (long long)C,
                     mode & 1, mode >> 1);
            t_close(what, y, r, N * C, 1e-6, 1e-6);
            t_close(what, m1, m2, N, 2e-7, 1e-12);
            t_close(what, s1, s2, N, 2e-7, 0.0);
            duet_k.rmsnorm_rows(y, s1, x, wp, N, C, 1e-5f);
            duet_kernels_scalar.rmsnorm_rows(r, s2, x, wp, N, C, 1e-5f);
            snprintf(what, sizeof what, "%s rmsnorm C=%lld w=%d", isa, (long long)C, mode & 1);
            t_close(what, y, r, N * C, 1e-6, 0.0);
            t_close(what, s1, s2, N, 2e-7, 0.0);
        }
        /* NULL mean/rstd outputs are allowed */
        duet_k.layernorm_rows(y, NULL, NULL, x, w, b, N, C, 1e-5f);
        duet_k.rmsnorm_rows(y, NULL, x, w, N, C, 1e-5f);
        T_CHECK(isfinite(y[0]), "%s norms with NULL statistics", isa);
        free(x), free(w), free(b), free(y), free(r);
    }
}

static void test_dot_axpy(const char *isa) {
    static const int64_t ns[] = {0, 1, 7, 8, 15, 16, 17, 31, 33, 64, 65, 100, 1000, 4099};
    for (size_t t = 0; t < sizeof ns / sizeof *ns; t++) {
        int64_t n = ns[t];
        float *a = malloc((size_t)(n + 1) * sizeof(float)), *b = malloc((size_t)(n + 1) * sizeof(float));
        float *y = malloc((size_t)(n + 1) * sizeof(float)), *r = malloc((size_t)(n + 1) * sizeof(float));
        t_fill_uniform(a, n, 31 + (uint64_t)n, -1.0f, 1.0f);
        t_fill_uniform(b, n, 32 + (uint64_t)n, -1.0f, 1.0f);
        double exact = 0.0, absum = 0.0;
        for (int64_t i = 0; i < n; i++) {
            exact += (double)a[i] * (double)b[i];
            absum += fabs((double)a[i] * (double)b[i]);
        }
        float got = duet_k.dot(a, b, n);
        double tol = (double)n * U * absum + 1e-30;
        T_CHECK(fabs((double)got - exact) <= tol, "%s dot n=%lld: got %.9g want %.9g (bound %g)",
                isa, (long long)n, (double)got, exact, tol);
        memcpy(y, b, (size_t)n * sizeof(float));
        memcpy(r, b, (size_t)n * sizeof(float));
        duet_k.axpy(y, -0.75f, a, n);
        for (int64_t i = 0; i < n; i++) r[i] = (float)((double)r[i] - 0.75 * (double)a[i]);
        /* fused or not, each element is within one rounding of the exact value
         * plus one of the product: 2u (|y| + |a x|) */
        int ok = 1;
        for (int64_t i = 0; i < n; i++) {
            double tl = 2.0 * U * (fabs((double)b[i]) + 0.75 * fabs((double)a[i])) + 1e-30;
            if (!(fabs((double)y[i] - (double)r[i]) <= tl)) ok = 0;
        }
        T_CHECK(ok, "%s axpy n=%lld within one rounding", isa, (long long)n);
        free(a), free(b), free(y), free(r);
    }
}

/* One query row of attention against a double-precision softmax and sum:
 * head sizes on and off the AVX-512 kernel's 16..128 fast path, key counts
 * around its groups of four, a row stride wider than the head. */
static void test_attend_row(const char *isa) {
    static const int64_t hss[] = {16, 48, 64, 80, 128, 20, 144, 256};
    static const int64_t ss[] = {1, 2, 3, 4, 5, 7, 8, 33, 130};
    for (size_t h = 0; h < sizeof hss / sizeof *hss; h++)
        for (size_t si = 0; si < sizeof ss / sizeof *ss; si++) {
            const int64_t HS = hss[h], S = ss[si], ld = 3 * HS + 5;
            float *q = malloc(sizeof(float) * (size_t)HS), *kv = malloc(sizeof(float) * (size_t)(2 * S * ld));
            float *att = malloc(sizeof(float) * (size_t)S), *out = malloc(sizeof(float) * (size_t)HS);
            double *p = malloc(sizeof(double) * (size_t)S);
            t_fill_uniform(q, HS, 101 + (uint64_t)(HS * 7 + S), -1.0f, 1.0f);
            t_fill_uniform(kv, 2 * S * ld, 202 + (uint64_t)(HS * 7 + S), -1.0f, 1.0f);
            const float *k = kv, *v = kv + S * ld;
            const float scale = 1.0f / sqrtf((float)HS) * 2.5f; /* peaky enough to matter */
            double mx = -1e300, z = 0;
            for (int64_t s = 0; s < S; s++) {
                double d = 0;
                for (int64_t i = 0; i < HS; i++) d += (double)q[i] * (double)k[s * ld + i];
                p[s] = (double)scale * d;
                mx = fmax(mx, p[s]);
            }
            for (int64_t s = 0; s < S; s++) z += (p[s] = exp(p[s] - mx));
            for (int64_t s = 0; s < S; s++) p[s] /= z;
            duet_k.attend_row(out, att, q, k, v, ld, S, HS, scale);
            double ea = 0, eo = 0;
            for (int64_t s = 0; s < S; s++) ea = fmax(ea, fabs((double)att[s] - p[s]));
            for (int64_t i = 0; i < HS; i++) {
                double o = 0;
                for (int64_t s = 0; s < S; s++) o += p[s] * (double)v[s * ld + i];
                eo = fmax(eo, fabs((double)out[i] - o));
            }
            /* scores: HS-term float sums (|q.k| <= HS); softmax: exp and one
             * division in float; values within 1 in magnitude */
            T_CHECK(ea <= 2e-6 * (double)HS * (double)scale + 1e-6 && eo <= 2e-5,
                    "%s attend_row HS=%lld S=%lld: probabilities off by %.3g, output by %.3g",
                    isa, (long long)HS, (long long)S, ea, eo);
            /* the f16-cache twin: the same bits as attend_row on the rows
             * rounded to f16 and converted back */
            {
                uint16_t *kv16 = malloc(sizeof(uint16_t) * (size_t)(2 * S * ld));
                float *kvr = malloc(sizeof(float) * (size_t)(2 * S * ld));
                float *att2 = malloc(sizeof(float) * (size_t)S), *out2 = malloc(sizeof(float) * (size_t)HS);
                duet_f32_to_f16(kv16, kv, 2 * S * ld);
                duet_f16_to_f32(kvr, kv16, 2 * S * ld);
                duet_k.attend_row(out, att, q, kvr, kvr + S * ld, ld, S, HS, scale);
                duet_k.attend_row_f16(out2, att2, q, kv16, kv16 + S * ld, ld, S, HS, scale);
                T_CHECK(memcmp(out, out2, sizeof(float) * (size_t)HS) == 0 &&
                            memcmp(att, att2, sizeof(float) * (size_t)S) == 0,
                        "%s attend_row_f16 HS=%lld S=%lld = attend_row on the rounded rows", isa,
                        (long long)HS, (long long)S);
                free(kv16), free(kvr), free(att2), free(out2);
            }
            free(q), free(kv), free(att), free(out), free(p);
        }
}

int main(void) {
    duet_init();
    const char *def = duet_kernel_isa();
    int nt = duet_get_threads();
    test_gemm_nomem();
    int ran = 0;
    for (int i = 0; i < NISA; i++) {
        if (duet_kernel_force(ISAS[i]) != DUET_OK) {
            fprintf(stderr, "test_kernels: this CPU cannot run the %s set; skipped\n", ISAS[i]);
            continue;
        }
        T_CHECK(strcmp(duet_kernel_isa(), ISAS[i]) == 0, "forced %s", ISAS[i]);
        T_CHECK(duet_k.sgemm && duet_k.softmax_rows && duet_k.layernorm_rows &&
                    duet_k.rmsnorm_rows && duet_k.dot && duet_k.axpy && duet_k.attend_row &&
                    duet_k.attend_row_f16,
                "%s: every entry is set", ISAS[i]);
        ran++;
        test_gemm_set(ISAS[i]);
        test_gemm_no_alloc_when_warm(ISAS[i]);
        test_gemm_thread_exit(ISAS[i]);
        test_softmax(ISAS[i]);
        test_norms(ISAS[i]);
        test_dot_axpy(ISAS[i]);
        test_attend_row(ISAS[i]);
    }
    T_CHECK(ran >= 1, "at least the scalar set ran");
    duet_kernel_force(def);
    duet_set_threads(nt);
    return t_done();
}
