/*
 * cmd_bench.c — `duet bench`: prompt processing and token generation speed
 * of a language model, llama-bench style.
 *
 *   pp<P>: P random tokens fed as one batch into an empty cache (the
 *          quantized matmul path);
 *   tg<N>: N tokens fed one at a time from an empty cache (the matvec path,
 *          memory-bound: every token streams every matrix once).
 * Each test runs --reps times after one warm-up; the table shows the mean
 * and standard deviation of tokens/s. Below it: the bytes of weights one
 * token streams, the bandwidth generation achieved (bytes x tokens/s) and
 * the machine's read bandwidth measured here — a streaming sum over a
 * buffer far larger than the caches, on 2 threads (the best of 3 passes) —
 * so the tg number can be read as a fraction of what memory allows.
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

#define MAX64(a, b) ((a) > (b) ? (a) : (b))

/* Read bandwidth in GB/s: sum of a `bytes` buffer on `threads` threads,
 * best of 3 passes after one that faults the pages in. */
static double measure_bandwidth(size_t bytes, int threads) {
    const size_t n = bytes / sizeof(uint64_t);
    uint64_t *buf = malloc(n * sizeof(uint64_t));
    if (!buf) return 0;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i * 2654435761u;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int pass = 0; pass < 4; pass++) {
        double t0 = cli_now();
        uint64_t total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            const size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
            const size_t per = (n / nt) & ~(size_t)7;
            const uint64_t *p = buf + id * per;
            uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
            for (size_t i = 0; i < per; i += 8) {
                a0 += p[i], a1 += p[i + 1], a2 += p[i + 2], a3 += p[i + 3];
                a4 += p[i + 4], a5 += p[i + 5], a6 += p[i + 6], a7 += p[i + 7];
            }
            total += a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
        }
        double dt = cli_now() - t0;
        sink += total;
        if (pass > 0 && dt > 0) best = fmax(best, (double)(n * sizeof(uint64_t)) / dt / 1e9);
    }
    (void)sink;
    free(buf);
    return best;
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
    else snprintf(out, cap, "%.2f MiB", b / (1024.0 * 1024));
}

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench";
    const char *model_path = NULL, *precision = "auto", *cache_type = "f32";
    int64_t np = 128, ng = 256, reps = 3, bw_mib = 1024;
    enum { O_MODEL, O_P, O_N, O_REPS, O_PREC, O_BW, O_CACHE, O_COUNT };
    cli_opt opts[O_COUNT] = {
        [O_MODEL] = {"model", 'm', OPT_STR, &model_path, "a .gguf, llama2.c .bin, Hugging Face folder or duet model (required)", 0},
        [O_P] = {"prompt", 'p', OPT_I64, &np, "prompt tokens fed as one batch (128; 0 = skip)", 0},
        [O_N] = {"gen", 'n', OPT_I64, &ng, "tokens generated one at a time (256; 0 = skip)", 0},
        [O_REPS] = {"reps", 'r', OPT_I64, &reps, "repetitions of each test (3)", 0},
        [O_PREC] = {"precision", 0, OPT_STR, &precision, "auto (the stored types; f16 for duet's f32 models), f32, f16, bf16, q8_0", 0},
        [O_BW] = {"bandwidth-mib", 0, OPT_I64, &bw_mib, "buffer for the bandwidth test in MiB (1024; 0 = skip)", 0},
        [O_CACHE] = {"cache-type", 0, OPT_STR, &cache_type, "KV cache: f32 or f16 (f32)", 0},
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
        bw_mib < 0 || bw_mib > 65536) {
        cli_error(cmd, "-p and -n must be in 0..65536 (not both 0), --reps in 1..100");
        return EXIT_USAGE;
    }
    duet_model *m = NULL;
    rc = cli_open_model(cmd, model_path, NULL, MAX64(np, ng + 1), precision, 0, &m);
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
    double *tps = malloc(sizeof(double) * (size_t)reps);
    if (!logits || !ids || !tps) {
        cli_error(cmd, "out of memory");
        free(logits), free(ids), free(tps);
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
                t0 = cli_now();
                for (int64_t i = 1; i <= n && s == DUET_OK; i++)
                    s = duet_tf_feed(m->tf, ids + i, 1, logits, 0);
                dt = cli_now() - t0;
            }
            if (s != DUET_OK) {
                cli_error(cmd, "%s", duet_last_error());
                free(logits), free(ids), free(tps);
                duet_model_free(m);
                return EXIT_FAIL;
            }
            if (r >= 0) tps[r] = dt > 0 ? (double)n / dt : 0;
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
    printf("\nweights streamed per token: %s (%s, %s)\n", size, m->format, m->name);
    if (ng > 0) {
        const double got = wbytes * tg_mean / 1e9;
        if (bw_mib > 0) {
            const double bw = measure_bandwidth((size_t)bw_mib << 20, 2);
            printf("generation: %.2f GB/s of weights; measured read bandwidth %.2f GB/s "
                   "(2 threads, %lld MiB buffer): %.0f%%\n",
                   got, bw, (long long)bw_mib, bw > 0 ? 100.0 * got / bw : 0.0);
        } else {
            printf("generation: %.2f GB/s of weights\n", got);
        }
    }
    free(logits);
    free(ids);
    free(tps);
    duet_model_free(m);
    return 0;
}
