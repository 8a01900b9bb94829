/*
 * bench_train_text.c — storyteller speed: training tokens/s (forward,
 * backward, grad clip, AdamW on B x T random tokens) and sampling time per
 * token (KV cache, batch 1, greedy), for the comparison with PyTorch in
 * bench/train_text_torch.py (same config, same threads).
 *
 *   build/bench/bench_train_text [--arch gpt2|llama] [--vocab 512] [--ctx 256]
 *       [--layers 6] [--heads 6] [--kv-heads 6] [--dim 384] [--batch 16]
 *       [--steps 10] [--tokens 255] [--threads 2] [--sample-type f32|f16|bf16|q8_0]
 *
 * Correctness is the job of tests/test_transformer.c (PyTorch reference);
 * here the first step's loss is printed as a sanity check (~ln V at init).
 * Prints one line per measurement plus the machine and build.
 */
#include "duet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t arg_i(int argc, char **argv, const char *name, int64_t def) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return strtoll(argv[i + 1], NULL, 10);
    return def;
}
static const char *arg_s(int argc, char **argv, const char *name, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

int main(int argc, char **argv) {
    duet_prefer_short_spin(argv); /* as the duet CLI does */
    duet_init();
    int arch = duet_tf_arch_from_name(arg_s(argc, argv, "--arch", "gpt2"));
    if (arch < 0) {
        fprintf(stderr, "--arch: gpt2 or llama\n");
        return 2;
    }
    duet_tf_params p;
    duet_tf_params_default(&p, (duet_tf_arch)arch);
    p.vocab = arg_i(argc, argv, "--vocab", 512);
    p.ctx = arg_i(argc, argv, "--ctx", 256);
    p.layers = arg_i(argc, argv, "--layers", 6);
    p.heads = arg_i(argc, argv, "--heads", 6);
    p.kv_heads = arg_i(argc, argv, "--kv-heads", p.heads);
    p.dim = arg_i(argc, argv, "--dim", 384);
    const int64_t B = arg_i(argc, argv, "--batch", 16), T = p.ctx;
    const int64_t steps = arg_i(argc, argv, "--steps", 10);
    const int64_t ntok = arg_i(argc, argv, "--tokens", p.ctx - 1);
    const int64_t threads = arg_i(argc, argv, "--threads", 0);
    if (threads > 0) duet_set_threads((int)threads);
    duet_tf *m = duet_tf_new(&p, 1);
    if (!m) {
        fprintf(stderr, "model: %s\n", duet_last_error());
        return 1;
    }
    char feats[256];
    printf("machine: %s | kernels %s | threads %d | %s\n",
           duet_cpu_features_string(feats, sizeof feats), duet_kernel_isa(), duet_get_threads(),
           duet_compiler());
    printf("model: %s V %lld T %lld L %lld NH %lld NKV %lld C %lld hidden %lld, %.2fM params; "
           "batch %lld\n",
           duet_tf_arch_name(p.arch), (long long)p.vocab, (long long)p.ctx, (long long)p.layers,
           (long long)p.heads, (long long)p.kv_heads, (long long)p.dim,
           (long long)duet_tf_config(m)->hidden, (double)duet_tf_numel(m) / 1e6, (long long)B);

    /* ---- training ---- */
    int np;
    duet_tensor **ps = duet_tf_params_list(m, &np);
    duet_adamw opt;
    duet_adamw_init(&opt, ps, np, 0.9f, 0.95f, 1e-8f, 0.1f);
    for (int i = 0; i < np; i++) duet_adamw_set_decay(&opt, i, duet_tf_param_decays(ps[i]));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * T));
    int32_t *tg = malloc(sizeof(int32_t) * (size_t)(B * T));
    duet_rng rng;
    duet_rng_init(&rng, 7);
    duet_graph *g = duet_graph_new((size_t)64 << 20);
    double t_fwd = 0, t_bwd = 0, t_opt = 0, t_total = 0;
    float first_loss = 0;
    const int64_t warm = 2;
    for (int64_t s = 0; s < warm + steps; s++) {
        for (int64_t i = 0; i < B * T; i++) {
            ids[i] = (int32_t)(duet_rng_next(&rng) * (float)p.vocab) % (int32_t)p.vocab;
            tg[i] = (int32_t)(duet_rng_next(&rng) * (float)p.vocab) % (int32_t)p.vocab;
        }
        double t0 = now_s();
        duet_graph_reset(g);
        duet_tf_zero_grad(m);
        duet_tensor *loss = duet_tf_forward(m, g, ids, tg, B, T, NULL);
        double t1 = now_s();
        if (!loss || duet_graph_backward(g, loss) != DUET_OK) {
            fprintf(stderr, "step: %s\n", duet_last_error());
            return 1;
        }
        double t2 = now_s();
        duet_clip_grad_norm(ps, np, 1.0f);
        duet_adamw_step(&opt, ps, np, 1e-4f);
        double t3 = now_s();
        if (s == 0) first_loss = *(float *)loss->data;
        if (s >= warm) {
            t_fwd += t1 - t0;
            t_bwd += t2 - t1;
            t_opt += t3 - t2;
            t_total += t3 - t0;
        }
    }
    printf("train: %.0f tokens/s (%.1f ms/step: forward %.1f, backward %.1f, clip+adamw %.1f) "
           "first loss %.4f (ln V = %.4f), scratch %.0f MB\n",
           (double)(B * T * steps) / t_total, 1e3 * t_total / (double)steps,
           1e3 * t_fwd / (double)steps, 1e3 * t_bwd / (double)steps, 1e3 * t_opt / (double)steps,
           (double)first_loss, log((double)p.vocab), (double)duet_graph_peak_bytes(g) / 1e6);

    /* ---- sampling: greedy, KV cache, one token at a time ---- */
    float *logits = malloc(sizeof(float) * (size_t)p.vocab);
    const char *stype = arg_s(argc, argv, "--sample-type", "f32");
    if (duet_tf_set_sample_type(m, duet_qtype_from_name(stype)) != DUET_OK) {
        fprintf(stderr, "--sample-type: %s\n", duet_last_error());
        return 2;
    }
    for (int rep = 0; rep < 2; rep++) { /* the first pass warms up */
        duet_tf_reset(m);
        int32_t tok = 1;
        double t0 = now_s();
        for (int64_t i = 0; i < ntok; i++) {
            if (duet_tf_feed(m, &tok, 1, logits, 0) != DUET_OK) {
                fprintf(stderr, "feed: %s\n", duet_last_error());
                return 1;
            }
            int32_t best = 0;
            for (int32_t v = 1; v < (int32_t)p.vocab; v++)
                if (logits[v] > logits[best]) best = v;
            tok = best;
        }
        double dt = now_s() - t0;
        if (rep == 1)
            printf("sample: %.3f ms/token (%.0f tokens/s) over %lld tokens, batch 1, KV cache, "
                   "%s weights\n", 1e3 * dt / (double)ntok, (double)ntok / dt, (long long)ntok,
                   stype);
    }
    free(logits);
    free(ids);
    free(tg);
    duet_graph_free(g);
    duet_adamw_free(&opt);
    duet_tf_free(m);
    return 0;
}
