/*
 * bench_gemm.c — SGEMM throughput of the kernel set duet picked (or --isa),
 * on the shapes the models use: squares 256..2048, the transformer's linear
 * layer (M = B*T = 4096 tokens, C = 768) forward and both backward products,
 * and a small-batch inference product.
 *
 * Each shape is first checked against duet_sgemm_ref on a slice, then timed:
 * warm-up, then repeats until both --reps samples and ~0.4 s are in; prints
 * the median and the best GFLOP/s, and how many samples looked disturbed (the
 * process got less CPU time than wall time x threads: another process had a
 * core). Lines starting "gemm" are read by bench/run_gemm.sh.
 *
 * Not a test: never run by `make test`. Usage:
 *   build/bench/bench_gemm [--threads N] [--reps N] [--isa scalar|avx2|avx512]
 *                          [--shape NAME]
 */
#include "duet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct shape {
    const char *name;
    int tA, tB;
    int64_t M, N, K;
} shape;

/* linear layer, N = 4096 tokens, C = OC = 768 (see src/nn/linear.c):
 *   forward  out   = inp  @ W^T     (0,1)  M=4096 N=768 K=768
 *   backward dinp  = dout @ W       (0,0)  M=4096 N=768 K=768
 *   backward dW    = dout^T @ inp   (1,0)  M=768  N=768 K=4096 */
static const shape SHAPES[] = {
    {"sq256", 0, 0, 256, 256, 256},
    {"sq1024", 0, 0, 1024, 1024, 1024},
    {"sq2048", 0, 0, 2048, 2048, 2048},
    {"lin_fwd", 0, 1, 4096, 768, 768},
    {"lin_dinp", 0, 0, 4096, 768, 768},
    {"lin_dW", 1, 0, 768, 768, 4096},
    /* the storyteller issue's config (C 384, hidden 1536, 4096 tokens):
     * qkv, attention output, MLP up and down, each forward / dinp / dW */
    {"qkv_fwd", 0, 1, 4096, 1152, 384},
    {"qkv_dinp", 0, 0, 4096, 384, 1152},
    {"qkv_dW", 1, 0, 1152, 384, 4096},
    {"prj_fwd", 0, 1, 4096, 384, 384},
    {"prj_dinp", 0, 0, 4096, 384, 384},
    {"prj_dW", 1, 0, 384, 384, 4096},
    {"up_fwd", 0, 1, 4096, 1536, 384},
    {"up_dinp", 0, 0, 4096, 384, 1536},
    {"up_dW", 1, 0, 1536, 384, 4096},
    {"dn_fwd", 0, 1, 4096, 384, 1536},
    {"dn_dinp", 0, 0, 4096, 1536, 384},
    {"dn_dW", 1, 0, 384, 1536, 4096},
    {"infer64", 0, 1, 64, 768, 768},
    {"infer16", 0, 1, 16, 768, 768},
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void fill(float *x, int64_t n, uint64_t seed) {
    duet_rng r;
    duet_rng_init(&r, seed);
    duet_rng_uniform(&r, x, n);
    for (int64_t i = 0; i < n; i++) x[i] -= 0.5f;
}

/* Checks rows [0, 64) x all columns against the reference; returns the
 * worst error relative to K * 2^-24 * sum |a||b| (the float error bound). */
static double check_shape(const shape *s, const float *A, const float *B, const float *C) {
    int64_t M = s->M < 64 ? s->M : 64, N = s->N, K = s->K;
    int64_t lda = s->tA ? s->M : K, ldb = s->tB ? K : N;
    float *R = malloc((size_t)(M * N) * sizeof(float));
    double worst = 0.0;
    duet_sgemm_ref(s->tA, s->tB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, R, N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double bound = (double)K * 5.96e-8 * 0.25 * (double)K + 1e-30;
            double e = fabs((double)C[i * N + j] - (double)R[i * N + j]) / bound;
            if (!(e <= worst)) worst = isnan(e) ? (double)INFINITY : e;
        }
    free(R);
    return worst;
}

int main(int argc, char **argv) {
    int threads = 2, reps = 9;
    const char *isa = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--isa") == 0 && i + 1 < argc) isa = argv[++i];
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--threads N] [--reps N] [--isa scalar|avx2|avx512] "
                    "[--shape NAME]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    duet_init();
    if (isa && duet_kernel_force(isa) != DUET_OK) {
        fprintf(stderr, "bench_gemm: %s\n", duet_last_error());
        return 1;
    }
    duet_set_threads(threads);
    char feat[256];
    printf("# duet %s, kernel set %s, %d threads, %s\n", DUET_VERSION, duet_kernel_isa(),
           duet_get_threads(), duet_compiler());
    printf("# cpu features: %s\n", duet_cpu_features_string(feat, sizeof feat));
    printf("# %-9s %2s %2s %5s %5s %5s %9s %9s %s\n", "shape", "tA", "tB", "M", "N", "K",
           "median", "best", "GFLOP/s (disturbed samples, check)");

    int bad_check = 0;
    for (size_t si = 0; si < sizeof SHAPES / sizeof *SHAPES; si++) {
        const shape *s = &SHAPES[si];
        if (only && strcmp(only, s->name) != 0) continue;
        int64_t M = s->M, N = s->N, K = s->K;
        int64_t lda = s->tA ? M : K, ldb = s->tB ? K : N;
        float *A = malloc((size_t)(M * K) * sizeof(float));
        float *B = malloc((size_t)(K * N) * sizeof(float));
        float *C = malloc((size_t)(M * N) * sizeof(float));
        if (!A || !B || !C) {
            fprintf(stderr, "bench_gemm: out of memory\n");
            return 1;
        }
        fill(A, M * K, 1 + si);
        fill(B, K * N, 100 + si);
        duet_sgemm(s->tA, s->tB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
        double chk = check_shape(s, A, B, C);
        if (!(chk <= 1.0)) bad_check = 1;
        duet_sgemm(s->tA, s->tB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);

        double flops = 2.0 * (double)M * (double)N * (double)K;
        int cap = 1000, n = 0, disturbed = 0;
        double *t = malloc((size_t)cap * sizeof(double)), t_start = now();
        while (n < cap && (n < reps || now() - t_start < 0.4)) {
            double c0 = cpu_now(), w0 = now();
            duet_sgemm(s->tA, s->tB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
            double w = now() - w0, c = cpu_now() - c0;
            if (c < 0.9 * w * duet_get_threads()) disturbed++;
            t[n++] = w;
        }
        qsort(t, (size_t)n, sizeof *t, cmp_double);
        double med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
        printf("gemm %-9s %2d %2d %5lld %5lld %5lld %9.1f %9.1f (%d/%d, %s)\n", s->name, s->tA,
               s->tB, (long long)M, (long long)N, (long long)K, flops / med * 1e-9,
               flops / t[0] * 1e-9, disturbed, n, chk <= 1.0 ? "ok" : "FAILED");
        fflush(stdout);
        free(t);
        free(A), free(B), free(C);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak_rss_mb %.1f\n", (double)ru.ru_maxrss / 1024.0);
    return bad_check;
}
