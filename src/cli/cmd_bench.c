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
 * here (duet_membw): a streaming sum over a buffer far larger than the
 * caches, on the same threads, read just before and just after every timed
 * tg run (a shared VM's bandwidth moves from minute to minute: here 20-60
 * GB/s), so each run is set against the bandwidth of its own minute. The fraction
 * printed is the median over the runs of (bytes x the run's tokens/s) /
 * (the mean of the bandwidth read before and after it).
 *
 * What it is not: a sampler benchmark (logits are computed, no sampling or
 * tokenizer work is timed).
 */
#include "cli/cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX64(a, b) ((a) > (b) ? (a) : (b))

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
    int no_mmap = 0, no_repack = 0;
    enum { O_MODEL, O_P, O_N, O_REPS, O_PREC, O_BW, O_CACHE, O_NOMMAP, O_NOREPACK, O_COUNT };
    cli_opt opts[O_COUNT] = {
        [O_MODEL] = {"model", 'm', OPT_STR, &model_path, "a .gguf, llama2.c .bin, Hugging Face folder or duet model (required)", 0},
        [O_P] = {"prompt", 'p', OPT_I64, &np, "prompt tokens fed as one batch (128; 0 = skip)", 0},
        [O_N] = {"gen", 'n', OPT_I64, &ng, "tokens generated one at a time (256; 0 = skip)", 0},
        [O_REPS] = {"reps", 'r', OPT_I64, &reps, "repetitions of each test (3)", 0},
        [O_PREC] = {"precision", 0, OPT_STR, &precision, "auto (the stored types; f16 for duet's f32 models), f32, f16, bf16, q8_0", 0},
        [O_BW] = {"bandwidth-mib", 0, OPT_I64, &bw_mib, "buffer for the bandwidth test in MiB (1024; 0 = skip)", 0},
        [O_CACHE] = {"cache-type", 0, OPT_STR, &cache_type, "KV cache: f32 or f16 (f32)", 0},
        [O_NOMMAP] = {"no-mmap", 0, OPT_FLAG, &no_mmap, "read the weights into memory (huge pages where the kernel gives them) instead of mapping the file: faster decode, a copy up front", 0},
        [O_NOREPACK] = {"no-repack", 0, OPT_FLAG, &no_repack, "keep Q4_0 / Q8_0 / Q4_K / Q5_K / Q6_K matrices in the file's layout (zero copy) instead of repacking them at load for the AVX-512 VNNI kernels", 0},
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
    rc = cli_open_model(cmd, model_path, NULL, MAX64(np, ng + 1), precision, 0,
                        (no_mmap ? CLI_NO_MMAP : 0) | (no_repack ? CLI_NO_REPACK : 0), &m);
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
    /* the read test's buffer, read just before and after every timed tg run */
    duet_membw *bwb = NULL;
    if (!logits || !ids || !tps ||
        (ng > 0 && bw_mib > 0 && !(bwb = duet_membw_new((size_t)bw_mib << 20, threads)))) {
        cli_error(cmd, "out of memory (--bandwidth-mib %lld: the bandwidth test's buffer)",
                  (long long)bw_mib);
        free(logits), free(ids), free(tps), duet_membw_free(bwb);
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
                if (r == 0 && bwb) bws[0] = duet_membw_read(bwb, threads);
                t0 = cli_now();
                for (int64_t i = 1; i <= n && s == DUET_OK; i++)
                    s = duet_tf_feed(m->tf, ids + i, 1, logits, 0);
                dt = cli_now() - t0;
            }
            if (s != DUET_OK) {
                cli_error(cmd, "%s", duet_last_error());
                free(logits), free(ids), free(tps), duet_membw_free(bwb);
                duet_model_free(m);
                return EXIT_FAIL;
            }
            if (r >= 0) tps[r] = dt > 0 ? (double)n / dt : 0;
            if (test && r >= 0 && bwb) bws[r + 1] = duet_membw_read(bwb, threads);
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
    char rep[48] = "";
    if (m->repacked > 0) {
        char rb[24];
        human_bytes((double)m->repacked, rb, sizeof rb);
        snprintf(rep, sizeof rep, "; %s repacked for VNNI", rb);
    }
    printf("\nweights streamed per token: %s (%s, %s; %s%s)\n", size, m->format, m->name,
           no_mmap ? "read into memory" : "mapped", rep);
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
        if (bwb) {
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
    duet_membw_free(bwb);
    free(logits);
    free(ids);
    free(tps);
    duet_model_free(m);
    return 0;
}
