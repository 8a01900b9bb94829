/*
 * bench_qmv.c — how fast the decode's row kernels stream weights, against
 * how fast this machine reads memory, at three working-set sizes: in each
 * core's L2, in the shared L3, and from DRAM.
 *
 * A decode token streams every weight matrix once through one matrix-vector
 * product per matrix (src/models/tf_decode.c), so its speed is the smaller
 * of two ceilings: the memory's read bandwidth and the row kernel's own
 * throughput. This bench measures both for each weight type, the same way
 * the decode runs them: rows of K = 2048 (the 1.1B shape's width), handed
 * to the threads in chunks of 1/8 of the matrix up to 1 MB (dynamic), each
 * row through duet_qmv_rows with a vector prepared by duet_qmv_prepare.
 * The buffer is huge-page memory (duet_huge_alloc, as `duet bench
 * --no-mmap` reads weights). The read test is a sum of the same buffer
 * with the widest loads the CPU has (duet_read_sum), in the same chunks on
 * the same threads. Both are timed alternately in the same process (read,
 * rows, read, ...), so each pair sees the same minute of a shared machine; the line gives the medians and the median of
 * the per-pair ratios (rows GB/s / mean of the reads around them).
 *
 * A ratio near 1 means the kernel keeps up with that level of the memory
 * hierarchy; well under 1 means the kernel, not the memory, sets the speed
 * there — in DRAM, that type's decode cannot reach the bandwidth bound that
 * `duet bench` prints.
 *
 * Not a test: never run by `make test`. Usage:
 *   build/bench/bench_qmv [--threads N] [--reps N] [--types f32,q8_0,...]
 *                         [--sizes l2,l3,dram]
 * Lines starting "qmv" are the results.
 */
#include "duet.h"
#include "core/internal.h"
#include "kernels/quant_mv.h"
#include "kernels/quant_x16.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define K 2048

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- one pass of each, in the decode's chunks ---- */
static int64_t chunk_bytes(int64_t total) {
    int64_t cb = total / 8;
    return cb < 16384 ? 16384 : cb > 1048576 ? 1048576 : cb;
}

static volatile uint64_t sink;

static void read_pass(const uint8_t *buf, int64_t bytes, int threads) {
    const int64_t cb = chunk_bytes(bytes) & ~(int64_t)255, nch = bytes / cb;
    uint64_t total = 0;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) reduction(+ : total)
    for (int64_t c = 0; c < nch; c++) total += duet_read_sum(buf + c * cb, (size_t)cb);
    sink += total;
}

static int64_t group = 4; /* rows per chunk are a multiple of this (16: x16 layout) */

static void rows_pass(const duet_qmv *mv, const uint8_t *W, int64_t M, float *y, int threads) {
    const int64_t rows = DUET_MAX(group, (chunk_bytes(M * mv->wrb) / mv->wrb) & ~(group - 1));
    const int64_t nch = (M + rows - 1) / rows;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t c = 0; c < nch; c++) {
        const int64_t r0 = c * rows, r1 = r0 + rows < M ? r0 + rows : M;
        duet_qmv_rows(mv, W, r0, r1, y);
    }
}

/* GB/s of `bytes` per pass, passes repeated for at least 0.1 s. */
static double time_read(const uint8_t *buf, int64_t bytes, int threads) {
    int n = 0;
    double t0 = now(), t;
    do read_pass(buf, bytes, threads), n++;
    while ((t = now() - t0) < 0.1);
    return (double)bytes * n / t / 1e9;
}
static double time_rows(const duet_qmv *mv, const uint8_t *W, int64_t M, float *y, int threads) {
    int n = 0;
    double t0 = now(), t;
    do rows_pass(mv, W, M, y, threads), n++;
    while ((t = now() - t0) < 0.1);
    return (double)(M * mv->wrb) * n / t / 1e9;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_d);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static int listed(const char *list, const char *name) {
    if (!list) return 1;
    const size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

int main(int argc, char **argv) {
    int threads = 2, reps = 5;
    const char *types = NULL, *sizes = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) sizes = argv[++i];
        else {
            fprintf(stderr, "usage: bench_qmv [--threads N] [--reps N] [--types f32,f16,q8_0,q4_0,"
                            "q4_k,q5_k,q6_k,q8_0x16,q4_0x16,q4_Kx16,q5_Kx16,q6_Kx16] [--sizes l2,l3,dram]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 256 || reps < 1 || reps > 1000) {
        fprintf(stderr, "bench_qmv: --threads 1..256, --reps 1..1000\n");
        return 2;
    }
    duet_init();
    /* the file layouts, then Q8_0 / Q4_0 / Q4_K / Q5_K / Q6_K in the 16-row layout
     * (quant_x16.h; where the CPU has the VNNI kernels) */
    static const duet_qtype T[] = {DUET_QTYPE_F32,  DUET_QTYPE_F16,  DUET_QTYPE_Q8_0,
                                   DUET_QTYPE_Q4_0, DUET_QTYPE_Q4_K, DUET_QTYPE_Q5_K,
                                   DUET_QTYPE_Q6_K, DUET_QTYPE_Q8_0, DUET_QTYPE_Q4_0,
                                   DUET_QTYPE_Q4_K, DUET_QTYPE_Q5_K, DUET_QTYPE_Q6_K};
    const size_t NFILE = 7; /* T[NFILE..]: the 16-row layout */
    /* L2: 256 KiB a thread; L3: 8 MiB in all; DRAM: 1 GiB */
    const char *sname[] = {"l2", "l3", "dram"};
    const int64_t sbytes[] = {(int64_t)threads << 18, (int64_t)8 << 20, (int64_t)1 << 30};
    /* 64 rows of every type, from one set of weights, repeated over the buffer */
    const int64_t R0 = 64;
    float *wf = malloc(sizeof(float) * R0 * K), *x = malloc(sizeof(float) * K);
    uint8_t *rows0 = malloc((size_t)duet_qtype_row_bytes(DUET_QTYPE_F32, K) * R0);
    uint8_t *packed = malloc((size_t)duet_qtype_row_bytes(DUET_QTYPE_F32, K) * R0);
    uint8_t *scratch = malloc((size_t)duet_qmv_scratch_bytes(DUET_QTYPE_Q4_0, K) +
                              (size_t)duet_qmv_scratch_bytes(DUET_QTYPE_Q4_K, K) + 4096);
    double *rd = malloc(sizeof(double) * (size_t)(reps + 1)), *rg = malloc(sizeof(double) * (size_t)reps);
    double *ra = malloc(sizeof(double) * (size_t)reps);
    /* huge-page memory, as duet bench's read test and --no-mmap weights */
    duet_huge mem;
    uint8_t *buf = duet_huge_alloc((size_t)sbytes[2], &mem);
    float *y = malloc(sizeof(float) * ((size_t)sbytes[2] / 1088 + 1)); /* most rows: Q4_0 */
    if (!wf || !x || !rows0 || !scratch || !rd || !rg || !ra || !buf || !y) {
        fprintf(stderr, "bench_qmv: out of memory (needs ~1.1 GB)\n");
        return 1;
    }
    uint64_t s = 88172645463325252ull;
    for (int64_t i = 0; i < R0 * K; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        wf[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.1f;
    }
    for (int64_t i = 0; i < K; i++) x[i] = sinf(0.37f * (float)i);
    printf("# bench_qmv: K %d, %d threads, %d reps, kernel set %s\n", K, threads, reps,
           duet_kernel_isa());
    for (int si = 0; si < 3; si++) {
        if (sizes && !listed(sizes, sname[si])) continue;
        for (size_t ti = 0; ti < sizeof T / sizeof *T; ti++) {
            const duet_qtype t = T[ti];
            const int x16 = ti >= NFILE;
            char name[16];
            snprintf(name, sizeof name, "%s%s", duet_qtype_name(t), x16 ? "x16" : "");
            if (types && !listed(types, name)) continue;
            if (x16 && !duet_x16_ok(t, R0, K)) continue;
            const int64_t wrb = duet_qtype_row_bytes(t, K);
            int64_t M = sbytes[si] / wrb;
            if (duet_quantize_row(t, wf, rows0, R0 * K) != DUET_OK) {
                fprintf(stderr, "bench_qmv: %s: %s\n", duet_qtype_name(t), duet_last_error());
                return 1;
            }
            duet_qmv mv;
            group = 4;
            if (x16) { /* 64 rows repacked, repeated: whole groups of 16 */
                duet_x16_pack(t, rows0, R0, K, packed);
                const int64_t pr = duet_x16_bytes(t, R0, K) / R0; /* bytes a row */
                M = (sbytes[si] / pr) & ~(int64_t)15;
                for (int64_t r = 0; r < M; r += R0)
                    memcpy(buf + r * pr, packed, (size_t)(DUET_MIN(R0, M - r) * pr));
                duet_qmv_prepare_x16(&mv, t, K, x, scratch);
                group = 16;
            } else {
                for (int64_t r = 0; r < M; r += R0)
                    memcpy(buf + r * wrb, rows0, (size_t)(DUET_MIN(R0, M - r) * wrb));
                duet_qmv_prepare(&mv, t, K, x, scratch);
            }
            const int64_t bytes = (M * mv.wrb) & ~(int64_t)255;
            time_rows(&mv, buf, M, y, threads); /* warm-up */
            rd[0] = time_read(buf, bytes, threads);
            for (int r = 0; r < reps; r++) {
                rg[r] = time_rows(&mv, buf, M, y, threads);
                rd[r + 1] = time_read(buf, bytes, threads);
                ra[r] = rg[r] / (0.5 * (rd[r] + rd[r + 1]));
            }
            const double g = median(rg, reps), a = median(ra, reps), b = median(rd, reps + 1);
            printf("qmv %-8s %-4s %d threads: rows %6.1f GB/s, read %6.1f GB/s, ratio %.2f\n",
                   name, sname[si], threads, g, b, a);
            fflush(stdout);
        }
    }
    free(wf), free(x), free(rows0), free(packed), free(scratch), free(rd), free(rg), free(ra), free(y);
    duet_huge_free(&mem);
    return (int)(sink & 0);
}
