/*
 * gemm_blocked.c — the shared cache-blocked SGEMM driver (see gemm_blocked.h)
 * and the portable plain-C GEMM of the scalar kernel set.
 *
 * Loop nest (GotoBLAS / BLIS, with the roles of A and B chosen for a
 * row-major C whose microkernel broadcasts A and loads rows of B):
 *
 *   for each K block (kc)                       beta applies on the first only
 *     for each M block (mc)       pack A block  -> stays in L3 (or L2)
 *       for each N block (nc)     pack B block  -> streams from L2/L3
 *         for each A panel (mr)                 -> stays in L1
 *           for each B panel (nr)  microkernel
 *
 * Threads, two ways (chosen by a cost model; tests can force either):
 *  - private: threads split M and run the whole nest alone (no barriers);
 *  - shared: threads split N and pack each A block together, between
 *    barriers (all of op(A) at once when it fits: one barrier per call).
 * Each thread keeps two packing buffers (thread-local, grown through
 * duet_alloc, reused by every later call): a steady training loop allocates
 * nothing here. Every element of C is computed by the same operations whatever
 * the thread count, so results do not depend on it.
 *
 * Shortcuts: matrix-vector products (M or N = 1) use the set's dot/axpy with
 * no packing; A B^T with few rows uses the set's unpacked dot-product tile
 * when it has one.
 *
 * Not here: the microkernels and vectorised packers (gemm_avx512.c,
 * gemm_avx2.c), and the reference (gemm_ref.c), which stays a triple loop.
 */
#include "core/internal.h"
#include "kernels/gemm_blocked.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

/* ==== packing buffers: two per thread, grown on demand ==== */

/* [0] holds A blocks (in the shared mode, the calling thread's [0] is the one
 * block every thread reads), [1] holds B blocks. A thread that exits frees
 * its buffers (a pthread key destructor); threads that live to the end of the
 * process (the main thread, OpenMP's pool) keep them. */
static _Thread_local float *tl_buf[2];
static _Thread_local size_t tl_cap[2]; /* floats */
static _Thread_local int tl_registered;
static pthread_key_t tl_key;
static pthread_once_t tl_key_once = PTHREAD_ONCE_INIT;

static void tl_release(void *unused) {
    (void)unused;
    for (int i = 0; i < 2; i++) {
        duet_free(tl_buf[i]);
        tl_buf[i] = NULL;
        tl_cap[i] = 0;
    }
}
static void tl_key_make(void) { (void)pthread_key_create(&tl_key, tl_release); }

static float *tl_buffer(int which, size_t nfloat) {
    if (nfloat <= tl_cap[which]) return tl_buf[which];
    if (!tl_registered) {
        pthread_once(&tl_key_once, tl_key_make);
        tl_registered = pthread_setspecific(tl_key, &tl_registered) == 0;
    }
    duet_free(tl_buf[which]);
    tl_buf[which] = NULL;
    tl_cap[which] = 0;
    float *p = duet_alloc(nfloat * sizeof(float));
    if (!p) return NULL;
    tl_buf[which] = p;
    tl_cap[which] = nfloat;
    return p;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

/* Splits n into ceil(n / cap) nearly equal blocks that are multiples of q. */
static int64_t balanced_block(int64_t n, int64_t cap, int64_t q) {
    int64_t nblk = ceil_div(n, cap);
    return DUET_MIN(cap, round_up(ceil_div(n, nblk), q));
}

/* ==== threads: spreading the team, backing off when the cores are taken ==== */

/* Two troubles of libgomp's default (non-yielding, milliseconds-long)
 * spin-wait on a small machine, both measured in this 2-vCPU VM:
 *
 *  - When a region wakes a sleeping worker, Linux often queues it on the
 *    waking thread's own core (70-96% of wake-ups after a 20 ms pause). The
 *    worker then starts only when the master is preempted, ~4 ms later: a
 *    0.1 ms region took 6 ms. So each region starts with the master yielding
 *    once (a queued worker runs at once), and a worker that finds itself on
 *    the master's core moves off it (its affinity briefly without that core,
 *    then restored): 0.28 ms. Cost: one sched_yield per region.
 *  - When another process holds a core, our thread queued behind it keeps
 *    the other spinning at the next barrier, and a small threaded GEMM takes
 *    10-30x longer than on one thread. So threaded calls measure themselves:
 *    each thread's "stolen" time (wall time since the fork minus its own CPU
 *    time: time it was runnable but not running). When that is over 30% of
 *    the call on two judged calls in a row, calls under a GFLOP run on one
 *    thread for a while (50 ms, doubling up to 0.8 s while it lasts), then
 *    probe again. Not judged: calls under ~40 MFLOP, and the first call after
 *    a pause (it pays the workers' wake-up). Calls over a GFLOP keep their
 *    threads: a few milliseconds at a barrier are small beside them.
 *
 * Results do not change: every element is computed the same way on any thread
 * count. Callers racing on the back-off state only blur the timing. */
static int64_t busy_until_ns, busy_backoff_ns, last_end_ns;
static int bad_streak;

int duet_gemm_mode_override; /* tests: see gemm_blocked.h; also disables the back-off */

static int64_t clock_ns(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (int64_t)t.tv_sec * 1000000000 + (int64_t)t.tv_nsec;
}

typedef struct team {
    int judge;       /* measure this call */
    int master_cpu;  /* core of the calling thread before the fork; -1 unknown */
    int64_t t0;      /* wall clock at the fork */
    int64_t stolen;  /* the largest stolen time of any thread, ns */
} team;

/* The thread count for a call of `flops` that would like nt; fills tm. */
static int team_size(int nt, double flops, team *tm) {
    tm->judge = 0;
    tm->master_cpu = -1;
    tm->stolen = 0;
    if (nt <= 1) return 1;
    int64_t now = clock_ns(CLOCK_MONOTONIC);
    if (flops < 1e9 && duet_gemm_mode_override == 0 &&
        now < __atomic_load_n(&busy_until_ns, __ATOMIC_RELAXED))
        return 1;
#if defined(__linux__)
    tm->master_cpu = sched_getcpu();
#endif
    tm->judge = flops >= 4e7;
    tm->t0 = now;
    return nt;
}

/* Called by every thread at the start of a region; returns its CPU clock. */
static int64_t team_begin(team *tm) {
#if defined(__linux__)
    if (omp_get_num_threads() > 1) {
        if (omp_get_thread_num() == 0) {
            sched_yield();
        } else if (tm->master_cpu >= 0 && sched_getcpu() == tm->master_cpu) {
            cpu_set_t all, others;
            if (pthread_getaffinity_np(pthread_self(), sizeof all, &all) == 0) {
                others = all;
                CPU_CLR(tm->master_cpu, &others);
                if (CPU_COUNT(&others) > 0 &&
                    pthread_setaffinity_np(pthread_self(), sizeof others, &others) == 0)
                    (void)pthread_setaffinity_np(pthread_self(), sizeof all, &all);
            }
        }
    }
#endif
    return tm->judge ? clock_ns(CLOCK_THREAD_CPUTIME_ID) : 0;
}

/* Called by every thread when its share is done (before any final wait). */
static void team_end(team *tm, int64_t cpu0) {
    if (!tm->judge) return;
    int64_t stolen = (clock_ns(CLOCK_MONOTONIC) - tm->t0) - (clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0);
    int64_t cur = __atomic_load_n(&tm->stolen, __ATOMIC_RELAXED);
    while (stolen > cur &&
           !__atomic_compare_exchange_n(&tm->stolen, &cur, stolen, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
    }
}

/* Called by the caller after the region: judges the call. */
static void team_done(const team *tm) {
    if (!tm->judge) return;
    int64_t now = clock_ns(CLOCK_MONOTONIC), wall = now - tm->t0;
    int64_t last = __atomic_exchange_n(&last_end_ns, now, __ATOMIC_RELAXED);
    if (tm->t0 - last > 1000000) return; /* the first call after a pause */
    int64_t backoff = __atomic_load_n(&busy_backoff_ns, __ATOMIC_RELAXED);
    if (tm->stolen > 150000 && (double)tm->stolen > 0.3 * (double)wall) {
        if (__atomic_add_fetch(&bad_streak, 1, __ATOMIC_RELAXED) < 2) return;
        __atomic_store_n(&bad_streak, 0, __ATOMIC_RELAXED);
        backoff = backoff ? DUET_MIN(2 * backoff, 800000000) : 50000000;
        __atomic_store_n(&busy_backoff_ns, backoff, __ATOMIC_RELAXED);
        __atomic_store_n(&busy_until_ns, now + backoff, __ATOMIC_RELAXED);
    } else {
        __atomic_store_n(&bad_streak, 0, __ATOMIC_RELAXED);
        if (backoff) __atomic_store_n(&busy_backoff_ns, 0, __ATOMIC_RELAXED);
    }
}

/* ==== small cases ==== */

/* C = beta * C over an M x N block (beta == 0 writes zeros, ignoring NaNs). */
static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
}

/* Matrix-vector: y[i*incy] = alpha * sum_p X(i,p) v[p*incv] + beta * y[i*incy]
 * for i < n, p < K, where X(i,p) = X[i*ld + p] (rowform) or X[p*ld + i]. */
static void gemv(const duet_gemm_arch *arch, int rowform, int64_t n, int64_t K, float alpha,
                 const float *X, int64_t ld, const float *v, int64_t incv, float beta, float *y,
                 int64_t incy) {
    team tm;
    int nt = team_size(omp_in_parallel() || n * K < 65536 ? 1 : duet_get_threads(),
                       2.0 * (double)n * (double)K, &tm);
    if (rowform) {
        const float *vc = v;
        if (incv != 1) {
            float *buf = tl_buffer(1, (size_t)K);
            if (!buf) {
                duet_sgemm_ref(0, 0, n, 1, K, alpha, X, ld, v, incv, beta, y, incy);
                return;
            }
            for (int64_t p = 0; p < K; p++) buf[p] = v[p * incv];
            vc = buf;
        }
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            int64_t c0 = team_begin(&tm);
#pragma omp for schedule(static) nowait
            for (int64_t i = 0; i < n; i++) {
                float s = alpha * arch->dot(X + i * ld, vc, K);
                y[i * incy] = beta == 0.0f ? s : s + beta * y[i * incy];
            }
            team_end(&tm, c0);
        }
        team_done(&tm);
        return;
    }
    /* column form: accumulate rows of X into a contiguous chunk of y with axpy */
    const int64_t chunk = 4096;
    int64_t nchunk = ceil_div(n, chunk);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t c0 = team_begin(&tm);
#pragma omp for schedule(static) nowait
        for (int64_t q = 0; q < nchunk; q++) {
            int64_t i0 = q * chunk, w = DUET_MIN(chunk, n - i0);
            float *acc = tl_buffer(1, (size_t)chunk);
            if (!acc) {
                duet_sgemm_ref(1, 0, w, 1, K, alpha, X + i0, ld, v, incv, beta, y + i0 * incy,
                               incy);
                continue;
            }
            memset(acc, 0, (size_t)w * sizeof(float));
            for (int64_t p = 0; p < K; p++) arch->axpy(acc, v[p * incv], X + p * ld + i0, w);
            for (int64_t i = 0; i < w; i++) {
                float s = alpha * acc[i];
                float *yi = y + (i0 + i) * incy;
                *yi = beta == 0.0f ? s : s + beta * *yi;
            }
        }
        team_end(&tm, c0);
    }
    team_done(&tm);
}

/* ==== the blocked product ==== */

typedef struct gemm_args {
    const duet_gemm_arch *arch;
    int transA, transB;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int64_t lda, ldb, ldc;
    int64_t kc; /* K block, the same for every thread */
} gemm_args;

/* Packs rows [i0, i0+mb) x depth [p0, p0+kb) of op(A) into panels of mr. */
static void pack_a(const gemm_args *g, float *dst, int64_t i0, int64_t mb, int64_t p0,
                   int64_t kb) {
    const float *src = g->transA ? g->A + p0 * g->lda + i0 : g->A + i0 * g->lda + p0;
    g->arch->pack(dst, src, g->lda, g->transA, kb, mb, g->arch->mr, 1);
}

/* Packs depth [p0, p0+kb) x columns [j0, j0+nb) of op(B) into panels of nr. */
static void pack_b(const gemm_args *g, float *dst, int64_t p0, int64_t kb, int64_t j0,
                   int64_t nb) {
    const float *src = g->transB ? g->B + j0 * g->ldb + p0 : g->B + p0 * g->ldb + j0;
    g->arch->pack(dst, src, g->ldb, !g->transB, kb, nb, g->arch->nr, g->arch->vl);
}

/* C[i0:i0+mb, j0:j0+nb] (+)= packed A block x packed B block. */
static void macro_kernel(const gemm_args *g, const float *Ap, const float *Bp, int64_t i0,
                         int64_t mb, int64_t j0, int64_t nb, int64_t kb, float beta) {
    const duet_gemm_arch *ar = g->arch;
    int64_t njr = ceil_div(nb, ar->nr);
    for (int64_t ir = 0; ir < mb; ir += ar->mr) {
        float *c = g->C + (i0 + ir) * g->ldc + j0;
        int64_t mw = DUET_MIN(ar->mr, mb - ir);
        /* The next A panel comes from L3 (or memory); fetched only when its
         * first microkernel runs, its broadcasts would stall on every line.
         * So each call of this row of tiles prefetches a slice of it to L2. */
        const char *next = (const char *)(Ap + (ir + mw) * kb);
        int64_t next_lines = ir + mw < mb ? ceil_div(DUET_MIN(ar->mr, mb - ir - mw) * kb * 4, 64) : 0;
        int64_t slice = ceil_div(next_lines, njr);
        for (int64_t jr = 0, q = 0; jr < nb; jr += ar->nr, q++) {
            for (int64_t l = q * slice; l < DUET_MIN((q + 1) * slice, next_lines); l++)
                __builtin_prefetch(next + 64 * l, 0, 2);
            ar->ukr(kb, Ap + ir * kb, Bp + jr * kb, c + jr, g->ldc, mw, DUET_MIN(ar->nr, nb - jr),
                    g->alpha, beta);
        }
    }
}

/* One thread alone on rows [m0, m1) x columns [n0, n1) of C. Returns 0, or -1
 * when its packing buffers cannot be had (nothing written then). */
static int gemm_block(const gemm_args *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const duet_gemm_arch *ar = g->arch;
    int64_t kc = g->kc;
    int64_t mc = balanced_block(m1 - m0, ar->mc, ar->mr);
    int64_t nc = balanced_block(n1 - n0, ar->nc, ar->nr);
    float *Ap = tl_buffer(0, (size_t)(mc * kc));
    float *Bp = Ap ? tl_buffer(1, (size_t)(nc * kc)) : NULL;
    if (!Bp) return -1;
    for (int64_t p0 = 0; p0 < g->K; p0 += kc) {
        int64_t kb = DUET_MIN(kc, g->K - p0);
        float beta = p0 == 0 ? g->beta : 1.0f; /* later K blocks accumulate */
        for (int64_t i0 = m0; i0 < m1; i0 += mc) {
            int64_t mb = DUET_MIN(mc, m1 - i0);
            pack_a(g, Ap, i0, mb, p0, kb);
            for (int64_t j0 = n0; j0 < n1; j0 += nc) {
                int64_t nb = DUET_MIN(nc, n1 - j0);
                pack_b(g, Bp, p0, kb, j0, nb);
                macro_kernel(g, Ap, Bp, i0, mb, j0, nb, kb, beta);
            }
        }
    }
    return 0;
}

/* The reference on one block, used when packing memory is not available. */
static void ref_block(const gemm_args *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const float *a = g->transA ? g->A + m0 : g->A + m0 * g->lda;
    const float *b = g->transB ? g->B + n0 * g->ldb : g->B + n0;
    duet_sgemm_ref(g->transA, g->transB, m1 - m0, n1 - n0, g->K, g->alpha, a, g->lda, b, g->ldb,
                   g->beta, g->C + m0 * g->ldc + n0, g->ldc);
}

/* The shared mode, run by every thread of a team: threads split the columns;
 * each A block is packed once, by all threads together, into `Ashared`,
 * between barriers; each thread packs its own B blocks. With `whole`, every
 * K block of all M rows is packed up front (Ashared holds M x K), so the only
 * synchronisation is one barrier; otherwise Ashared holds one mc x kc block
 * and each block costs two. Every thread passes the same barriers (the K and
 * M loops are the same for all). `failed` counts threads without a B buffer:
 * then all fall back to the reference. */
static void gemm_shared(const gemm_args *g, float *Ashared, int64_t mc, int whole, int *failed) {
    const duet_gemm_arch *ar = g->arch;
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t tiles_n = ceil_div(g->N, ar->nr), kc = g->kc;
    int64_t n0 = DUET_MIN(g->N, tiles_n * t / nt * ar->nr);
    int64_t n1 = DUET_MIN(g->N, tiles_n * (t + 1) / nt * ar->nr);
    int64_t nc = n1 > n0 ? balanced_block(n1 - n0, ar->nc, ar->nr) : ar->nr;
    float *Bp = tl_buffer(1, (size_t)(nc * kc));
    if (!Bp) {
#pragma omp atomic update
        (*failed)++;
    }
    int first = 1;
    for (int64_t p0 = 0, ib = 0; p0 < g->K; p0 += kc, ib++) {
        int64_t kb = DUET_MIN(kc, g->K - p0);
        float beta = p0 == 0 ? g->beta : 1.0f;
        for (int64_t i0 = 0; i0 < g->M; i0 += mc) {
            int64_t mb = DUET_MIN(mc, g->M - i0);
            int64_t npan = ceil_div(mb, ar->mr);
            int64_t q0 = npan * t / nt * ar->mr, q1 = DUET_MIN(mb, npan * (t + 1) / nt * ar->mr);
            if (!whole || first) {
                if (!first) {
#pragma omp barrier /* everyone is done with the previous block */
                }
                if (whole) {
                    /* my panels of every K block; block j at Ashared + j*M*kc */
                    for (int64_t p = 0, j = 0; p < g->K && q0 < q1; p += kc, j++)
                        pack_a(g, Ashared + j * g->M * kc + q0 * DUET_MIN(kc, g->K - p), q0,
                               q1 - q0, p, DUET_MIN(kc, g->K - p));
                } else if (q0 < q1) {
                    pack_a(g, Ashared + q0 * kb, i0 + q0, q1 - q0, p0, kb);
                }
#pragma omp barrier /* the block is complete (and `failed` final) */
                if (first) {
                    int bad;
#pragma omp atomic read
                    bad = *failed;
                    if (bad) {
                        if (n0 < n1) ref_block(g, 0, g->M, n0, n1);
                        return;
                    }
                    first = 0;
                }
            }
            const float *Ab = whole ? Ashared + ib * g->M * kc : Ashared;
            for (int64_t j0 = n0; j0 < n1; j0 += nc) {
                int64_t nb = DUET_MIN(nc, n1 - j0);
                pack_b(g, Bp, p0, kb, j0, nb);
                macro_kernel(g, Ab, Bp, i0, mb, j0, nb, kb, beta);
            }
        }
    }
}

/* Few rows times B^T (inference: activations x a weight matrix stored
 * [N, K]): dot-product tiles straight from A and B, no packing. Threads split
 * the columns; a tile of B (dk_nr rows of K) stays in L1 across the row tiles. */
static void gemm_dot(const duet_gemm_arch *ar, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc) {
    double flops = 2.0 * (double)M * (double)N * (double)K;
    int64_t tiles_n = ceil_div(N, ar->dk_nr);
    int nt = omp_in_parallel() ? 1 : duet_get_threads();
    if (flops < 4e6 * nt) nt = (int)(flops / 4e6);
    team tm;
    nt = team_size((int)DUET_MAX(1, DUET_MIN(nt, tiles_n)), flops, &tm);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t c0 = team_begin(&tm);
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t j0 = DUET_MIN(N, tiles_n * t / n * ar->dk_nr);
        int64_t j1 = DUET_MIN(N, tiles_n * (t + 1) / n * ar->dk_nr);
        for (int64_t j = j0; j < j1; j += ar->dk_nr)
            for (int64_t i = 0; i < M; i += ar->dk_mr)
                ar->dotk(K, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc,
                         DUET_MIN(ar->dk_mr, M - i), DUET_MIN(ar->dk_nr, j1 - j), alpha, beta);
        team_end(&tm, c0);
    }
    team_done(&tm);
}

/* Cost of a split in flop-equivalents for the busiest thread: padded
 * multiply-adds plus packing (a packed element costs about what 16 flops do).
 * shared: threads split N, A blocks packed once between them.
 * private: threads split M, each packs its own A rows and all of B. */
static double split_cost(const duet_gemm_arch *ar, int64_t M, int64_t N, int64_t K, int nt,
                         int shared) {
    int64_t tiles_m = ceil_div(M, ar->mr), tiles_n = ceil_div(N, ar->nr);
    double rows, cols, packed;
    if (shared) {
        rows = (double)(tiles_m * ar->mr);
        cols = (double)(ceil_div(tiles_n, nt) * ar->nr);
        packed = rows / nt + cols * (double)ceil_div(M, ar->mc);
    } else {
        rows = (double)(ceil_div(tiles_m, nt) * ar->mr);
        cols = (double)(tiles_n * ar->nr);
        packed = rows + cols * (double)ceil_div((int64_t)rows, ar->mc);
    }
    return (2.0 * rows * cols + 16.0 * packed) * (double)K;
}

void duet_gemm_blocked(const duet_gemm_arch *arch, int transA, int transB, int64_t M, int64_t N,
                       int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                       int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    /* matrix-vector products: no packing, one dot or axpy per row */
    if (N == 1) {
        gemv(arch, !transA, M, K, alpha, A, lda, B, transB ? 1 : ldb, beta, C, ldc);
        return;
    }
    if (M == 1) {
        gemv(arch, transB, N, K, alpha, B, ldb, A, transA ? lda : 1, beta, C, 1);
        return;
    }
    if (arch->dotk && !transA && transB && M <= arch->dk_max_m) {
        gemm_dot(arch, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    DUET_ASSERT(arch->mc % arch->mr == 0 && arch->nc % arch->nr == 0);
    gemm_args g = {arch, transA, transB, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc,
                   balanced_block(K, arch->kc, 1)};

    /* Called from inside a parallel region (e.g. attention's per-head tasks),
     * a nested region gets one thread: the split below must not assume more.
     * Otherwise at least ~4 MFLOP per thread, or the fork costs more than it
     * saves. */
    double flops = 2.0 * (double)M * (double)N * (double)K;
    int nt = omp_in_parallel() ? 1 : duet_get_threads();
    if (flops < 4e6 * nt) nt = (int)(flops / 4e6);
    nt = (int)DUET_MIN(nt, DUET_MAX(ceil_div(M, arch->mr), ceil_div(N, arch->nr)));
    team tm;
    nt = team_size(nt, flops, &tm);
    if (nt <= 1) {
        if (gemm_block(&g, 0, M, 0, N) != 0) ref_block(&g, 0, M, 0, N);
        return;
    }
    /* the shared mode's barriers make every hiccup of one thread (another
     * process taking its core) stall the others: it must win clearly */
    int mode = duet_gemm_mode_override;
    if (mode == 0)
        mode = split_cost(arch, M, N, K, nt, 1) < 0.97 * split_cost(arch, M, N, K, nt, 0) ? 1 : 3;
    if (mode == 1 || mode == 2) {
        /* all of op(A) packed up front when it is one M block of <= 4 MiB */
        int whole = mode == 1 && M <= arch->mc && round_up(M, arch->mr) * K <= ((int64_t)1 << 20);
        int64_t mc = whole ? M : balanced_block(M, arch->mc, arch->mr);
        float *Ashared = tl_buffer(0, (size_t)(whole ? M * K : mc * g.kc));
        if (Ashared) {
            int failed = 0;
#pragma omp parallel num_threads(nt)
            {
                int64_t c0 = team_begin(&tm);
                gemm_shared(&g, Ashared, mc, whole, &failed);
                team_end(&tm, c0);
            }
            team_done(&tm);
            return;
        }
    }
    int64_t tiles_m = ceil_div(M, arch->mr);
#pragma omp parallel num_threads(nt)
    {
        int64_t c0 = team_begin(&tm);
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t m0 = DUET_MIN(M, tiles_m * t / n * arch->mr);
        int64_t m1 = DUET_MIN(M, tiles_m * (t + 1) / n * arch->mr);
        if (m0 < m1 && gemm_block(&g, m0, m1, 0, N) != 0) ref_block(&g, m0, m1, 0, N);
        team_end(&tm, c0);
    }
    team_done(&tm);
}

/* ==== the portable GEMM (scalar kernel set) ==== */

/* Plain C written so that a compiler vectorises it for whatever the base
 * target is (SSE2 on x86-64, NEON on arm64): a 4 x 16 tile of accumulators. */
enum { PORT_MR = 4, PORT_NR = 16 };

static void ukr_portable(int64_t kc, const float *a, const float *b, float *C, int64_t ldc,
                         int64_t mr, int64_t nr, float alpha, float beta) {
    float acc[PORT_MR][PORT_NR] = {{0.0f}};
    for (int64_t p = 0; p < kc; p++) {
        const float *bp = b + p * PORT_NR;
        for (int64_t i = 0; i < PORT_MR; i++) {
            /* a panels of a short last row group are mr wide; reading zeros
             * past them is avoided by the i < mr guard */
            float ai = i < mr ? a[p * mr + i] : 0.0f;
            for (int64_t j = 0; j < PORT_NR; j++) acc[i][j] += ai * bp[j];
        }
    }
    for (int64_t i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        for (int64_t j = 0; j < nr; j++) {
            float s = alpha * acc[i][j];
            c[j] = beta == 0.0f ? s : s + beta * c[j];
        }
    }
}

static void pack_portable(float *dst, const float *src, int64_t ld, int contig, int64_t kc,
                          int64_t width, int64_t panel, int64_t padq) {
    for (int64_t c0 = 0; c0 < width; c0 += panel) {
        int64_t w = DUET_MIN(panel, width - c0), pw = round_up(w, padq);
        float *d = dst + c0 * kc;
        for (int64_t p = 0; p < kc; p++, d += pw) {
            if (contig)
                for (int64_t c = 0; c < w; c++) d[c] = src[p * ld + c0 + c];
            else
                for (int64_t c = 0; c < w; c++) d[c] = src[(c0 + c) * ld + p];
            for (int64_t c = w; c < pw; c++) d[c] = 0.0f;
        }
    }
}

static float dot_portable(const float *a, const float *b, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    float t = 0.0f;
    for (; i < n; i++) t += a[i] * b[i];
    return t + ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static void axpy_portable(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static const duet_gemm_arch arch_portable = {
    .name = "portable",
    .mr = PORT_MR,
    .nr = PORT_NR,
    .vl = PORT_NR,
    .kc = 256,
    .mc = 128,
    .nc = 1024,
    .ukr = ukr_portable,
    .pack = pack_portable,
    .dot = dot_portable,
    .axpy = axpy_portable,
};

void duet_sgemm_portable(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc) {
    duet_gemm_blocked(&arch_portable, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C,
                      ldc);
}
