/*
 * cmd_bench.c — `duet bench`: prompt processing and token generation speed
 * of a language model, llama-bench style.
 *
 *   pp<P>: P random tokens fed as one batch into an empty cache (the
 *          quantized matmul path);
 *   tg<N>: N tokens fed one at a time from an empty cache (the matvec path,
 *          memory-bound: every token streams every matrix once).
 * Each test runs --reps times after one warm-up; the table shows the mean
 * and standard deviation of tokens/s. Below it: the bytes one generated
 * token must read — every weight matrix once, and the KV cache up to its
 * position (on average over the tg run) — the bandwidth generation
 * achieved (bytes x tokens/s), and the machine's read bandwidth measured
 * here: a streaming sum over a buffer far larger than the caches, on the
 * same threads, read just before and just after every timed tg run (a
 * shared VM's bandwidth moves from minute to minute: here 20-60 GB/s), so
 * each run is set against the bandwidth of its own minute. The fraction
 * printed is the median over the runs of (bytes x the run's tokens/s) /
 * (the mean of the bandwidth read before and after it).
 *
 * What it is not: a sampler benchmark (logits are computed, no sampling or
 * tokenizer work is timed).
 */
#include "cli/cli.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAX64(a, b) ((a) > (b) ? (a) : (b))

/* The bandwidth test's buffer: allocated and faulted in once, read before
 * and after every timed generation run. 2 MiB aligned and advised for
 * transparent huge pages, as --no-mmap reads weights: the bound is the
 * best read rate (here 4 KiB pages streamed ~5% slower than 2 MiB ones). */
typedef struct bw_buf {
    uint64_t *p;
    size_t n;     /* uint64 words */
    void *base;   /* the mapping */
    size_t len;
} bw_buf;

static int bw_open(bw_buf *b, size_t bytes, int threads) {
    const size_t hp = (size_t)2 << 20;
    b->n = bytes / sizeof(uint64_t);
    b->len = (bytes + hp - 1) / hp * hp + hp;
    b->base = mmap(NULL, b->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->base == MAP_FAILED) {
        b->base = NULL, b->p = NULL;
        return 0;
    }
    b->p = (uint64_t *)(((uintptr_t)b->base + hp - 1) & ~(uintptr_t)(hp - 1));
#ifdef MADV_HUGEPAGE
    madvise(b->p, b->len - (size_t)((char *)b->p - (char *)b->base), MADV_HUGEPAGE);
#endif
    uint64_t *p = b->p;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < b->n; i++) p[i] = i * 2654435761u;
    return 1;
}

static void bw_close(bw_buf *b) {
    if (b->base) munmap(b->base, b->len);
    b->base = NULL, b->p = NULL;
}

/* The sum of n words (n a multiple of 32), as wide as the CPU reads: a
 * bound is the best read rate, and the SSE2 loop the baseline build makes
 * of the plain C read 2-11% slower than the decode's own AVX-512 f32 rows
 * streamed (110M and 1.1B F32 at 107-111% of it). */
static uint64_t sum_words(const uint64_t *p, size_t n) {
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (size_t i = 0; i < n; i += 8) {
        a0 += p[i], a1 += p[i + 1], a2 += p[i + 2], a3 += p[i + 3];
        a4 += p[i + 4], a5 += p[i + 5], a6 += p[i + 6], a7 += p[i + 7];
    }
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx512f"))) static uint64_t sum_words_avx512(const uint64_t *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 32) {
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512((const void *)(p + i)));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512((const void *)(p + i + 8)));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512((const void *)(p + i + 16)));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512((const void *)(p + i + 24)));
    }
    uint64_t t[8]; /* unsigned: the sums wrap by design (GCC's reduce is a signed sum, UB) */
    _mm512_storeu_si512((void *)t, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
__attribute__((target("avx2"))) static uint64_t sum_words_avx2(const uint64_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 16) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
    }
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    return t[0] + t[1] + t[2] + t[3];
}
#endif

typedef uint64_t (*sum_fn)(const uint64_t *, size_t);

static sum_fn pick_sum(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return sum_words_avx512;
    if (__builtin_cpu_supports("avx2")) return sum_words_avx2;
#endif
    return sum_words;
}

/* Read bandwidth in GB/s: the sum of the buffer on `threads` threads, the
 * rate over 2 passes together. Not the better pass: this VM's bandwidth
 * moves within seconds, and the best of a few short reads sits above what
 * a decode lasting seconds can get (1.1B F32, one 33 s run, reached 72%
 * of such a figure). The buffer goes to the threads in 2 MiB chunks handed
 * out dynamically, as the decode hands out its row chunks: with a fixed
 * half per thread, a thread the hypervisor preempts (this VM shows 7-10%
 * steal) makes the other wait, and the test reads lower than what a
 * decode's own loop reaches. */
static double bw_measure(const bw_buf *b, int threads) {
    const size_t chunk = ((size_t)2 << 20) / sizeof(uint64_t), nch = b->n / chunk;
    const uint64_t *buf = b->p;
    const sum_fn sum = pick_sum();
    volatile uint64_t sink = 0;
    const double t0 = cli_now();
    for (int pass = 0; pass < 2; pass++) {
        uint64_t total = 0;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) reduction(+ : total)
        for (size_t c = 0; c < nch; c++) total += sum(buf + c * chunk, chunk);
        sink += total;
    }
    const double dt = cli_now() - t0;
    (void)sink;
    return dt > 0 ? 2.0 * (double)(nch * chunk * sizeof(uint64_t)) / dt / 1e9 : 0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts x. */
static double median(double *x, int64_t n) {
    qsort(x, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static void mean_std(const double *x, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

static void human_bytes(double b, char *out, size_t cap) {
    if (b >= 1024.0 * 1024 * 1024) snprintf(out, cap, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) snprintf(out, cap, "%.2f MiB", b / (1024.0 * 1024));
    else snprintf(out, cap, "%.2f KiB", b / 1024.0);
}

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench";
    const char *model_path = NULL, *precision = "auto", *cache_type = "f32";
    int64_t np = 128, ng = 256, reps = 3, bw_mib = 1024;
    int no_mmap = 0;
    enum { O_MODEL, O_P, O_N, O_REPS, O_PREC, O_BW, O_CACHE, O_NOMMAP, O_COUNT };
    cli_opt opts[O_COUNT] = {
        [O_MODEL] = {"model", 'm', OPT_STR, &model_path, "a .gguf, llama2.c .bin, Hugging Face folder or duet model (required)", 0},
        [O_P] = {"prompt", 'p', OPT_I64, &np, "prompt tokens fed as one batch (128; 0 = skip)", 0},
        [O_N] = {"gen", 'n', OPT_I64, &ng, "tokens generated one at a time (256; 0 = skip)", 0},
        [O_REPS] = {"reps", 'r', OPT_I64, &reps, "repetitions of each test (3)", 0},
        [O_PREC] = {"precision", 0, OPT_STR, &precision, "auto (the stored types; f16 for duet's f32 models), f32, f16, bf16, q8_0", 0},
        [O_BW] = {"bandwidth-mib", 0, OPT_I64, &bw_mib, "buffer for the bandwidth test in MiB (1024; 0 = skip)", 0},
        [O_CACHE] = {"cache-type", 0, OPT_STR, &cache_type, "KV cache: f32 or f16 (f32)", 0},
        [O_NOMMAP] = {"no-mmap", 0, OPT_FLAG, &no_mmap, "read the weights into memory (huge pages where the kernel gives them) instead of mapping the file: faster decode, a copy up front", 0},
    };
    int npos = 0;
    int rc = cli_parse(cmd, "--model MODEL [-p 128] [-n 256] [--threads N]\n\n"
                       "Prompt and generation speed in tokens/s, llama-bench style, and the\n"
                       "memory bandwidth generation achieves against a measured figure.",
                       argc, argv, opts, O_COUNT, NULL, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (!model_path) {
        cli_error(cmd, "--model is required");
        return EXIT_USAGE;
    }
    if (np < 0 || ng < 0 || np + ng < 1 || np > 65536 || ng > 65536 || reps < 1 || reps > 100 ||
        bw_mib < 0 || bw_mib > 65536 || (bw_mib > 0 && bw_mib < 16)) {
        cli_error(cmd, "-p and -n must be in 0..65536 (not both 0), --reps in 1..100, "
                  "--bandwidth-mib 0 or 16..65536");
        return EXIT_USAGE;
    }
    duet_model *m = NULL;
    rc = cli_open_model(cmd, model_path, NULL, MAX64(np, ng + 1), precision, 0, no_mmap, &m);
    if (rc) return rc;
    if ((rc = cli_set_cache_type(cmd, m, cache_type)) != 0) {
        duet_model_free(m);
        return rc;
    }
    const duet_tf_params *p = duet_tf_config(m->tf);
    if (MAX64(np, ng + 1) > p->ctx)
        fprintf(stderr, "duet bench: note: the model's context is %lld tokens; longer tests "
                "slide the cache\n", (long long)p->ctx);
    const int64_t V = p->vocab;
    const int threads = duet_get_threads();
    float *logits = malloc(sizeof(float) * (size_t)V);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(np > ng + 1 ? np : ng + 1));
    double *tps = malloc(sizeof(double) * (size_t)reps * 4 + sizeof(double));
    bw_buf bwb = {NULL, 0, NULL, 0};
    if (!logits || !ids || !tps ||
        (ng > 0 && bw_mib > 0 && !bw_open(&bwb, (size_t)bw_mib << 20, threads))) {
        cli_error(cmd, "out of memory (--bandwidth-mib %lld: the bandwidth test's buffer)",
                  (long long)bw_mib);
        free(logits), free(ids), free(tps), bw_close(&bwb);
        duet_model_free(m);
        return EXIT_FAIL;
    }
    duet_rng rng;
    duet_rng_init(&rng, 1234);
    for (int64_t i = 0; i < MAX64(np, ng + 1); i++)
        ids[i] = (int32_t)(duet_rng_next(&rng) * (float)V) % (int32_t)V;

    /* cli_open_model set the precision: the bytes of the types in use */
    const double wbytes = (double)duet_tf_weight_bytes(m->tf);
    char size[32], model[96];
    human_bytes(wbytes, size, sizeof size);
    snprintf(model, sizeof model, "%s %s", m->arch, duet_qtype_name(m->weight_type));
    printf("| %-24s | %10s | %8s | %-8s | %7s | %6s | %18s |\n", "model", "size", "params",
           "backend", "threads", "test", "t/s");
    printf("| %-24s | %10s | %8s | %-8s | %7s | %6s | %18s |\n", "------------------------",
           "---------:", "-------:", "--------", "------:", "-----:", "-----------------:");
    double tg_mean = 0;
    /* bandwidth read around the tg runs; each run's bound and fraction */
    double *bws = tps + reps, *bound = bws + reps + 1, *frac = bound + reps;
    for (int test = 0; test < 2; test++) {
        const int64_t n = test ? ng : np;
        if (n == 0) continue;
        for (int64_t r = -1; r < reps; r++) { /* r = -1: warm-up */
            duet_tf_reset(m->tf);
            double t0 = cli_now(), dt;
            duet_status s = DUET_OK;
            if (!test) {
                s = duet_tf_feed(m->tf, ids, n, logits, 0);
                dt = cli_now() - t0;
            } else {
                s = duet_tf_feed(m->tf, ids, 1, logits, 0); /* the first token: not timed */
                if (r == 0 && bwb.p) bws[0] = bw_measure(&bwb, threads);
                t0 = cli_now();
                for (int64_t i = 1; i <= n && s == DUET_OK; i++)
                    s = duet_tf_feed(m->tf, ids + i, 1, logits, 0);
                dt = cli_now() - t0;
            }
            if (s != DUET_OK) {
                cli_error(cmd, "%s", duet_last_error());
                free(logits), free(ids), free(tps), bw_close(&bwb);
                duet_model_free(m);
                return EXIT_FAIL;
            }
            if (r >= 0) tps[r] = dt > 0 ? (double)n / dt : 0;
            if (test && r >= 0 && bwb.p) bws[r + 1] = bw_measure(&bwb, threads);
        }
        double mean, sd;
        mean_std(tps, (int)reps, &mean, &sd);
        if (test) tg_mean = mean;
        char tname[16], cell[32];
        snprintf(tname, sizeof tname, "%s%lld", test ? "tg" : "pp", (long long)n);
        snprintf(cell, sizeof cell, "%.2f ± %.2f", mean, sd);
        printf("| %-24s | %10s | %7.2fM | %-8s | %7d | %6s | %19s |\n", model, size,
               (double)m->n_params / 1e6, duet_kernel_isa(), threads, tname, cell);
        fflush(stdout);
    }
    printf("\nweights streamed per token: %s (%s, %s; %s)\n", size, m->format, m->name,
           no_mmap ? "read into memory" : "mapped");
    if (ng > 0) {
        /* token i of the tg run (i = 1..ng) attends over positions 0..i:
         * K and V rows of every layer, from the cache */
        const int64_t HS = p->dim / p->heads, kvrow = p->layers * 2 * p->kv_heads * HS;
        const double esz = strcmp(cache_type, "f16") == 0 ? 2.0 : 4.0;
        double pos_sum = 0;
        for (int64_t i = 1; i <= ng; i++) pos_sum += (double)(i + 1 < p->ctx ? i + 1 : p->ctx);
        const double kvbytes = esz * (double)kvrow * pos_sum / (double)ng, bytes = wbytes + kvbytes;
        char kvs[32];
        human_bytes(kvbytes, kvs, sizeof kvs);
        printf("KV cache read per token: %s (%s cache, mean over tg%lld)\n", kvs, cache_type,
               (long long)ng);
        const double got = bytes * tg_mean / 1e9;
        if (bwb.p) {
            double lo = bws[0], hi = bws[0];
            for (int64_t r = 0; r < reps; r++) {
                bound[r] = 0.5 * (bws[r] + bws[r + 1]);
                frac[r] = bytes * tps[r] / 1e9 / bound[r];
                lo = fmin(lo, bws[r + 1]), hi = fmax(hi, bws[r + 1]);
            }
            char per[256] = "";
            size_t k = 0;
            for (int64_t r = 0; r < reps && k + 8 < sizeof per; r++)
                k += (size_t)snprintf(per + k, sizeof per - k, "%s%.0f%%", r ? " " : "", 100 * frac[r]);
            const double med = median(frac, reps), bw = median(bound, reps);
            printf("generation: %.2f GB/s of weights and KV cache; measured read bandwidth "
                   "%.2f GB/s (median; %.1f-%.1f around the runs; %d threads, %lld MiB buffer); "
                   "each run against its own: %s; median: %.0f%%\n",
                   got, bw, lo, hi, threads, (long long)bw_mib, per, 100 * med);
        } else {
            printf("generation: %.2f GB/s of weights and KV cache\n", got);
        }
    }
    bw_close(&bwb);
    free(logits);
    free(ids);
    free(tps);
    duet_model_free(m);
    return 0;
}
