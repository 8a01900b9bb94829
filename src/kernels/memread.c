/*
 * memread.c — reading memory as fast as the CPU can: duet_read_sum, and the
 * bandwidth test `duet bench` prints its bound from (duet_membw, duet.h;
 * bench/bench_qmv reads with duet_read_sum in its own chunks). A bound is the best
 * read rate, so the loads are the widest the CPU has (the plain C loop
 * became SSE2 in the baseline build and read 2-11% slower than the decode's
 * own AVX-512 f32 rows streamed). The 64-bit lanes are summed as unsigned:
 * the total wraps by design, and GCC's _mm512_reduce_add_epi64 is a signed
 * sum (UBSan stops on its overflow).
 */
#include "core/internal.h"

#include <omp.h>
#include <time.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

static uint64_t sum_plain(const uint8_t *p, size_t n) {
    const uint64_t *q = (const uint64_t *)(const void *)p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (size_t i = 0; i < n / 8; i += 8) {
        a0 += q[i], a1 += q[i + 1], a2 += q[i + 2], a3 += q[i + 3];
        a4 += q[i + 4], a5 += q[i + 5], a6 += q[i + 6], a7 += q[i + 7];
    }
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The 256-bit lanes' total, as unsigned. */
__attribute__((target("avx2"))) static uint64_t lanes4(__m256i v) {
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)(void *)t, v);
    return t[0] + t[1] + t[2] + t[3];
}

__attribute__((target("avx512f"))) static uint64_t sum_avx512(const uint8_t *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 256) {
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512((const void *)(p + i)));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512((const void *)(p + i + 64)));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512((const void *)(p + i + 128)));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512((const void *)(p + i + 192)));
    }
    const __m512i s = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
    return lanes4(_mm256_add_epi64(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1)));
}

__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(const void *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 96)));
    }
    return lanes4(_mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
}
#endif

uint64_t duet_read_sum(const void *p, size_t n) {
    typedef uint64_t (*sum_fn)(const uint8_t *, size_t);
    static _Atomic(sum_fn) fn; /* NULL until the first call picks */
    sum_fn f = fn;
    if (!f) {
        f = sum_plain;
#if defined(__x86_64__) && defined(__GNUC__)
        const unsigned cpu = duet_cpu_features();
        if (cpu & DUET_CPU_AVX512F) f = sum_avx512;
        else if (cpu & DUET_CPU_AVX2) f = sum_avx2;
#endif
        fn = f;
    }
    return f((const uint8_t *)p, n);
}

/* ---- the bandwidth test ---- */

#define MEMBW_CHUNK ((size_t)2 << 20)

struct duet_membw {
    duet_huge mem;
    unsigned char *p;
    size_t nch; /* 2 MiB chunks */
};

duet_membw *duet_membw_new(size_t bytes, int threads) {
    duet_membw *b = duet_calloc(1, sizeof *b);
    if (!b) return NULL;
    b->nch = bytes / MEMBW_CHUNK ? bytes / MEMBW_CHUNK : 1;
    b->p = duet_huge_alloc(b->nch * MEMBW_CHUNK, &b->mem);
    if (!b->p) {
        duet_free(b);
        duet_set_error(DUET_ERR_NOMEM, "no memory for a %zu MiB bandwidth test buffer", bytes >> 20);
        return NULL;
    }
    uint64_t *q = (uint64_t *)(void *)b->p;
    const size_t n = b->nch * MEMBW_CHUNK / sizeof(uint64_t);
#pragma omp parallel for num_threads(threads > 0 ? threads : 1) schedule(static)
    for (size_t i = 0; i < n; i++) q[i] = i * 2654435761u;
    return b;
}

/* The rate over both reads, not the better one: this VM's bandwidth moves
 * within seconds, and the best of a few short reads sits above what a
 * decode lasting seconds can get (1.1B F32, one 33 s run, reached 72% of
 * such a figure). The chunks go to the threads dynamically, as the decode
 * hands out its rows: with a fixed half per thread, a thread the hypervisor
 * preempts (this VM shows 7-10% steal) makes the other wait, and the test
 * reads lower than the decode's own loop. */
double duet_membw_read(duet_membw *b, int threads) {
    if (!b) return 0;
    const unsigned char *p = b->p;
    const int64_t nch = (int64_t)b->nch;
    volatile uint64_t sink = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int pass = 0; pass < 2; pass++) {
        uint64_t total = 0;
#pragma omp parallel for num_threads(threads > 0 ? threads : 1) schedule(dynamic, 1) reduction(+ : total)
        for (int64_t c = 0; c < nch; c++) total += duet_read_sum(p + (size_t)c * MEMBW_CHUNK, MEMBW_CHUNK);
        sink += total;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    (void)sink;
    const double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return dt > 0 ? 2.0 * (double)(b->nch * MEMBW_CHUNK) / dt / 1e9 : 0;
}

void duet_membw_free(duet_membw *b) {
    if (!b) return;
    duet_huge_free(&b->mem);
    duet_free(b);
}
