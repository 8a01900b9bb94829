/*
 * test_transformer.c — the storyteller (src/models/transformer.c):
 *  - GPT-2 and Llama tiny configs against PyTorch (tests/ref/gen_transformer.py):
 *    logits, loss, every parameter gradient, and 10 AdamW steps;
 *  - KV-cache decoding (one by one, in chunks, sliding) against the full forward;
 *  - init statistics, config checks, determinism, no allocation per step;
 *  - checkpoints: round trip, optimizer state, refusing other kinds, other
 *    archs and truncated files;
 *  - the `duet train text` / `duet text` commands end to end (when the CLI is
 *    built next to this binary).
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ==== helpers ============================================================ */

static char tmpdir[256];

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

/* A model with the fixture's config and initial weights. */
static duet_tf *fixture_model(t_fix *f, duet_tf_arch arch, int64_t *B) {
    int32_t *cfg = t_fix_i32(f, "cfg", NULL);
    double *hyper = t_fix_f64(f, "hyper", NULL);
    if (!cfg || !hyper) return NULL;
    duet_tf_params p;
    duet_tf_params_default(&p, arch);
    p.vocab = cfg[0];
    p.ctx = cfg[1];
    p.dim = cfg[2];
    p.layers = cfg[3];
    p.heads = cfg[4];
    p.kv_heads = cfg[5];
    p.hidden = cfg[6];
    p.tied = cfg[7];
    p.norm_eps = (float)hyper[3];
    if (arch == DUET_TF_ARCH_LLAMA) p.rope_theta = (float)hyper[4];
    *B = cfg[8];
    duet_tf *m = duet_tf_new(&p, 1);
    T_CHECK(m != NULL, "model for fixture: %s", duet_last_error());
    if (!m) return NULL;
    int n;
    duet_tensor **ps = duet_tf_params_list(m, &n);
    int loaded = 0;
    for (int i = 0; i < n; i++) {
        char key[96];
        snprintf(key, sizeof key, "w.%s", ps[i]->name);
        int64_t cnt = 0;
        float *w = t_fix_f32(f, key, &cnt);
        if (!w || cnt != duet_tensor_numel(ps[i])) continue;
        memcpy(ps[i]->data, w, (size_t)cnt * sizeof(float));
        loaded++;
    }
    T_CHECK(loaded == n, "every parameter of the model has a PyTorch weight (%d of %d)", loaded, n);
    return m;
}

/* Splits rows [B, T+1] into ids [B,T] and targets [B,T]. */
static void split_rows(const int32_t *rows, int64_t B, int64_t T, int32_t *ids, int32_t *tg) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            ids[b * T + t] = rows[b * (T + 1) + t];
            tg[b * T + t] = rows[b * (T + 1) + t + 1];
        }
}

/* Inference logits of one sequence ids[0..T) through the full forward. */
static void full_logits(duet_tf *m, const int32_t *ids, int64_t T, float *out) {
    duet_graph *g = duet_graph_new(1 << 16);
    duet_graph_set_training(g, 0);
    duet_tensor *lg = NULL;
    duet_tf_forward(m, g, ids, NULL, 1, T, &lg);
    T_CHECK(lg != NULL, "inference forward: %s", duet_last_error());
    if (lg) memcpy(out, lg->data, (size_t)(T * duet_tf_config(m)->vocab) * sizeof(float));
    duet_graph_free(g);
}

/* ==== config, init ======================================================= */

static void test_config(void) {
    T_CHECK(strcmp(duet_tf_arch_name(DUET_TF_ARCH_GPT2), "gpt2") == 0 &&
                strcmp(duet_tf_arch_name(DUET_TF_ARCH_LLAMA), "llama") == 0,
            "arch names");
    T_CHECK(duet_tf_arch_from_name("gpt2") == DUET_TF_ARCH_GPT2 &&
                duet_tf_arch_from_name("llama") == DUET_TF_ARCH_LLAMA &&
                duet_tf_arch_from_name("mamba") == -1 && duet_tf_arch_from_name(NULL) == -1,
            "arch from name");
    duet_tf_params p;
    duet_tf_params_default(&p, DUET_TF_ARCH_GPT2);
    T_CHECK(p.vocab == 512 && p.ctx == 256 && p.dim == 384 && p.layers == 6 && p.heads == 6 &&
                p.tied == 1,
            "gpt2 defaults");
    T_CHECK(duet_tf_params_check(&p) == DUET_OK, "defaults are valid");
    p.dim = 380;
    T_CHECK(duet_tf_params_check(&p) == DUET_ERR_ARG && strstr(duet_last_error(), "divisible"),
            "dim not divisible by heads: %s", duet_last_error());
    duet_tf_params_default(&p, DUET_TF_ARCH_LLAMA);
    T_CHECK(p.tied == 0, "llama is untied by default");
    p.kv_heads = 4;
    T_CHECK(duet_tf_params_check(&p) == DUET_ERR_ARG && strstr(duet_last_error(), "kv_heads"),
            "heads not a multiple of kv_heads: %s", duet_last_error());
    p.kv_heads = 2;
    p.dim = 6 * 5;
    T_CHECK(duet_tf_params_check(&p) == DUET_ERR_ARG && strstr(duet_last_error(), "even"),
            "llama with odd head size: %s", duet_last_error());
    duet_tf_params_default(&p, DUET_TF_ARCH_LLAMA);
    p.layers = 0;
    T_CHECK(duet_tf_params_check(&p) == DUET_ERR_ARG && strstr(duet_last_error(), "layers"),
            "zero layers: %s", duet_last_error());
    T_CHECK(duet_tf_new(&p, 1) == NULL, "duet_tf_new refuses a bad config");
}

static double std_of(const float *x, int64_t n, double *mean_out) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i];
    double mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) s2 += ((double)x[i] - mean) * ((double)x[i] - mean);
    if (mean_out) *mean_out = mean;
    return sqrt(s2 / (double)n);
}

static void test_init(void) {
    duet_tf_params p;
    duet_tf_params_default(&p, DUET_TF_ARCH_GPT2);
    p.vocab = 300, p.ctx = 64, p.dim = 128, p.layers = 4, p.heads = 4, p.kv_heads = 4;
    duet_tf *m = duet_tf_new(&p, 7);
    T_CHECK(m != NULL, "gpt2 model");
    if (!m) return;
    T_CHECK(duet_tf_config(m)->hidden == 512, "gpt2 hidden defaults to 4C");
    /* 300*128 + 64*128 + 4*(2*128*2 + 4*(128*128+128) + 512*128+512 + 128*512+128) + 2*128 */
    int64_t want = 300 * 128 + 64 * 128 + 4 * (4 * 128 + 4 * (128 * 128 + 128) + 512 * 128 + 512 +
                                               128 * 512 + 128) + 2 * 128;
    T_CHECK(duet_tf_numel(m) == want, "gpt2 parameter count %lld (want %lld)",
            (long long)duet_tf_numel(m), (long long)want);
    T_CHECK(duet_tf_find(m, "output.weight") == NULL, "gpt2 ties the output to tok_embeddings");
    duet_tensor *wq = duet_tf_find(m, "layers.1.attention.wq.weight");
    duet_tensor *wo = duet_tf_find(m, "layers.1.attention.wo.weight");
    duet_tensor *w2 = duet_tf_find(m, "layers.3.feed_forward.w2.weight");
    duet_tensor *bq = duet_tf_find(m, "layers.0.attention.wq.bias");
    duet_tensor *ln = duet_tf_find(m, "layers.2.ffn_norm.weight");
    duet_tensor *te = duet_tf_find(m, "tok_embeddings.weight");
    T_CHECK(wq && wo && w2 && bq && ln && te, "named parameters exist");
    if (!(wq && wo && w2 && bq && ln && te)) return;
    double mean, sd = std_of(wq->data, duet_tensor_numel(wq), &mean);
    T_CHECK(fabs(sd - 0.02) < 0.001 && fabs(mean) < 0.001, "wq ~ N(0, 0.02): std %g mean %g", sd, mean);
    double rs = 0.02 / sqrt(8.0);
    sd = std_of(wo->data, duet_tensor_numel(wo), NULL);
    T_CHECK(fabs(sd - rs) < 0.05 * rs, "wo ~ N(0, 0.02/sqrt(2L)): std %g want %g", sd, rs);
    sd = std_of(w2->data, duet_tensor_numel(w2), NULL);
    T_CHECK(fabs(sd - rs) < 0.05 * rs, "w2 ~ N(0, 0.02/sqrt(2L)): std %g want %g", sd, rs);
    sd = std_of(te->data, duet_tensor_numel(te), NULL);
    T_CHECK(fabs(sd - 0.02) < 0.001, "tok_embeddings ~ N(0, 0.02): std %g", sd);
    int zeros = 1, ones = 1;
    for (int64_t i = 0; i < duet_tensor_numel(bq); i++) zeros &= ((float *)bq->data)[i] == 0.0f;
    for (int64_t i = 0; i < duet_tensor_numel(ln); i++) ones &= ((float *)ln->data)[i] == 1.0f;
    T_CHECK(zeros && ones, "biases start at 0, norm weights at 1");
    T_CHECK(duet_tf_param_decays(wq) && !duet_tf_param_decays(bq) && !duet_tf_param_decays(ln) &&
                duet_tf_param_decays(te),
            "weight decay on matrices and embeddings only");
    /* same seed -> same weights, other seed -> other weights */
    duet_tf *m2 = duet_tf_new(&p, 7), *m3 = duet_tf_new(&p, 8);
    int n;
    duet_tensor **a = duet_tf_params_list(m, &n), **b = duet_tf_params_list(m2, NULL),
                **c = duet_tf_params_list(m3, NULL);
    int same = 1, differ = 0;
    for (int i = 0; i < n; i++) {
        size_t nb = duet_tensor_nbytes(a[i]);
        same &= memcmp(a[i]->data, b[i]->data, nb) == 0;
        differ |= memcmp(a[i]->data, c[i]->data, nb) != 0;
    }
    T_CHECK(same && differ, "init is a function of the seed");
    /* parameters and grads are 64-byte aligned views into two blocks */
    int aligned = 1;
    for (int i = 0; i < n; i++)
        aligned &= ((uintptr_t)a[i]->data % 64) == 0 && ((uintptr_t)a[i]->grad % 64) == 0;
    T_CHECK(aligned, "parameter and gradient views are 64-byte aligned");
    duet_tf_free(m);
    duet_tf_free(m2);
    duet_tf_free(m3);

    duet_tf_params_default(&p, DUET_TF_ARCH_LLAMA);
    p.dim = 96, p.heads = 6, p.kv_heads = 2, p.layers = 1, p.vocab = 50, p.ctx = 16;
    m = duet_tf_new(&p, 1);
    T_CHECK(m && duet_tf_config(m)->hidden == 256, "llama hidden = 8C/3 rounded up to 32 (%lld)",
            m ? (long long)duet_tf_config(m)->hidden : -1LL);
    T_CHECK(m && duet_tf_find(m, "output.weight") && !duet_tf_find(m, "pos_embeddings.weight") &&
                !duet_tf_find(m, "layers.0.attention.wq.bias"),
            "llama: untied output, no positions, no biases");
    duet_tensor *wk = m ? duet_tf_find(m, "layers.0.attention.wk.weight") : NULL;
    T_CHECK(wk && wk->shape[0] == 32 && wk->shape[1] == 96, "llama wk is [NKV*HS, C]");
    duet_tf_free(m);
}

/* ==== against PyTorch ===================================================== */

static void test_vs_torch(const char *file, duet_tf_arch arch) {
    t_fix *f = t_fix_load(file);
    if (!f) return;
    int64_t B = 0;
    duet_tf *m = fixture_model(f, arch, &B);
    if (!m) {
        t_fix_free(f);
        return;
    }
    const duet_tf_params *p = duet_tf_config(m);
    const int64_t T = p->ctx, V = p->vocab;
    int32_t *ids = t_fix_i32(f, "ids", NULL), *tg = t_fix_i32(f, "targets", NULL);
    float *want_logits = t_fix_f32(f, "logits", NULL);
    double want_loss = t_fix_scalar(f, "loss");
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tf_zero_grad(m);
    duet_tensor *logits = NULL;
    duet_tensor *loss = duet_tf_forward(m, g, ids, tg, B, T, &logits);
    T_CHECK(loss && logits, "%s forward: %s", file, duet_last_error());
    if (!loss || !logits) goto out;
    T_CHECK(logits->ndim == 3 && logits->shape[0] == B && logits->shape[1] == T &&
                logits->shape[2] == V,
            "logits are [B,T,V]");
    char what[128];
    snprintf(what, sizeof what, "%s logits", file);
    /* Logits are O(1) sums of C products: fp32 reassociation leaves absolute
     * errors of a few 1e-7 times the terms, so small logits get an absolute floor. */
    t_close(what, logits->data, want_logits, B * T * V, 1e-5, 4e-6);
    float got_loss = *(float *)loss->data;
    T_CHECK(fabs((double)got_loss - want_loss) <= 1e-5 * fabs(want_loss), "%s loss %.7f want %.7f", file,
            (double)got_loss, want_loss);
    T_CHECK(duet_graph_backward(g, loss) == DUET_OK, "%s backward: %s", file, duet_last_error());
    int n;
    duet_tensor **ps = duet_tf_params_list(m, &n);
    int nchecked = 0;
    for (int i = 0; i < n; i++) {
        char key[96];
        snprintf(key, sizeof key, "g.%s", ps[i]->name);
        float *want = t_fix_f32(f, key, NULL);
        if (!want) continue;
        snprintf(what, sizeof what, "%s grad %s", file, ps[i]->name);
        /* Gradients go through the whole backward (softmax, norms, B*T-long
         * weight-gradient sums): fp32 reassociation differs from PyTorch's, so
         * 1e-4 relative, with an absolute floor for entries that nearly cancel. */
        t_close(what, ps[i]->grad, want, duet_tensor_numel(ps[i]), 1e-4, 2e-6);
        nchecked++;
    }
    T_CHECK(nchecked == n, "%s: all %d gradients compared", file, n);

    /* 10 AdamW steps on 10 batches, then the loss on the first batch again */
    {
        int32_t *rows = t_fix_i32(f, "train_data", NULL);
        double *want_losses = t_fix_f64(f, "train_losses", NULL);
        double *hyper = t_fix_f64(f, "hyper", NULL);
        float lr = (float)hyper[0], wd = (float)hyper[1], clip = (float)hyper[2];
        duet_adamw opt;
        T_CHECK(duet_adamw_init(&opt, ps, n, 0.9f, 0.95f, 1e-8f, wd) == DUET_OK, "adamw init");
        for (int i = 0; i < n; i++) duet_adamw_set_decay(&opt, i, duet_tf_param_decays(ps[i]));
        int32_t *bi = malloc(sizeof(int32_t) * (size_t)(B * T)), *bt = malloc(sizeof(int32_t) * (size_t)(B * T));
        double got[11];
        for (int s = 0; s <= 10; s++) {
            split_rows(rows + (s == 10 ? 0 : s) * B * (T + 1), B, T, bi, bt);
            duet_graph_reset(g);
            duet_tf_zero_grad(m);
            duet_tensor *l = duet_tf_forward(m, g, bi, bt, B, T, NULL);
            got[s] = l ? *(float *)l->data : NAN;
            if (s == 10) break;
            if (!l || duet_graph_backward(g, l) != DUET_OK) break;
            duet_clip_grad_norm(ps, n, clip);
            duet_adamw_step(&opt, ps, n, lr);
        }
        int ok = 1;
        int worst = 0;
        for (int s = 0; s <= 10; s++) {
            double e = fabs(got[s] - want_losses[s]) / fabs(want_losses[s]);
            if (!(e <= 1e-4)) ok = 0;
            if (fabs(got[s] - want_losses[s]) > fabs(got[worst] - want_losses[worst])) worst = s;
        }
        T_CHECK(ok, "%s: 10 AdamW steps track PyTorch within 1e-4 (worst step %d: %.7f want %.7f)",
                file, worst, got[worst], want_losses[worst]);
        T_CHECK(want_losses[10] < want_losses[0] - 0.2, "%s: training lowers the loss", file);
        free(bi);
        free(bt);
        duet_adamw_free(&opt);
    }
out:
    duet_graph_free(g);
    duet_tf_free(m);
    t_fix_free(f);
}

/* ==== KV cache ============================================================ */

static void test_kv_cache(const char *file, duet_tf_arch arch) {
    t_fix *f = t_fix_load(file);
    if (!f) return;
    int64_t B;
    duet_tf *m = fixture_model(f, arch, &B);
    if (!m) {
        t_fix_free(f);
        return;
    }
    const int64_t T = duet_tf_config(m)->ctx, V = duet_tf_config(m)->vocab;
    int32_t *ids = t_fix_i32(f, "ids", NULL); /* row 0: T tokens */
    float *full = malloc(sizeof(float) * (size_t)(T * V));
    float *got = malloc(sizeof(float) * (size_t)(T * V));
    full_logits(m, ids, T, full);
    char what[128];
    /* decode incrementally, one token at a time: each equals the full row.
     * The same ops at M = 1 instead of M = T: GEMM blocking may sum in
     * another order, hence 1e-5 rather than bitwise. */
    duet_tf_reset(m);
    int ok = 1;
    for (int64_t t = 0; t < T; t++) {
        ok &= duet_tf_feed(m, ids + t, 1, got + t * V, 0) == DUET_OK;
    }
    T_CHECK(ok && duet_tf_pos(m) == T, "%s: fed %lld tokens one by one: %s", file, (long long)T,
            duet_last_error());
    snprintf(what, sizeof what, "%s KV-cache decode, one token at a time", file);
    t_close(what, got, full, T * V, 1e-5, 1e-5);
    /* a prompt of 3 in one batch (all rows), then the rest one by one */
    duet_tf_reset(m);
    memset(got, 0, sizeof(float) * (size_t)(T * V));
    ok = duet_tf_feed(m, ids, 3, got, 1) == DUET_OK;
    for (int64_t t = 3; t < T; t++) ok &= duet_tf_feed(m, ids + t, 1, got + t * V, 0) == DUET_OK;
    T_CHECK(ok, "%s: prompt then tokens", file);
    snprintf(what, sizeof what, "%s KV-cache prompt of 3 then decode", file);
    t_close(what, got, full, T * V, 1e-5, 1e-5);
    /* last-row-only output of a prompt */
    duet_tf_reset(m);
    ok = duet_tf_feed(m, ids, T, got, 0) == DUET_OK;
    snprintf(what, sizeof what, "%s prompt of T, last row", file);
    T_CHECK(ok, "%s", what);
    t_close(what, got, full + (T - 1) * V, V, 1e-5, 1e-5);

    /* sliding: the cache holds T tokens; one more keeps the last T/2 */
    int32_t extra[8] = {5, 9, 1, 30, 2, 7, 11, 4};
    float *want = malloc(sizeof(float) * (size_t)(T * V));
    ok = duet_tf_feed(m, extra, 1, got, 0) == DUET_OK;
    T_CHECK(ok && duet_tf_pos(m) == T / 2, "%s: slide keeps ctx/2 = %lld tokens (pos %lld)", file,
            (long long)(T / 2), (long long)duet_tf_pos(m));
    int32_t win[16];
    int64_t K = T / 2;
    memcpy(win, ids + T - (K - 1), sizeof(int32_t) * (size_t)(K - 1));
    win[K - 1] = extra[0];
    full_logits(m, win, K, want);
    snprintf(what, sizeof what, "%s after a slide = fresh forward over the window", file);
    t_close(what, got, want + (K - 1) * V, V, 1e-5, 1e-5);
    /* a chunk longer than ctx/2 that overflows: the window is the last ctx tokens */
    int64_t nnew = T / 2 + 2;
    ok = duet_tf_feed(m, extra + 1, nnew, got, 1) == DUET_OK;
    T_CHECK(ok && duet_tf_pos(m) == T, "%s: long chunk slide keeps ctx tokens", file);
    int64_t from_old = T - nnew;
    memcpy(win, win + K - from_old, sizeof(int32_t) * (size_t)from_old);
    memcpy(win + from_old, extra + 1, sizeof(int32_t) * (size_t)nnew);
    full_logits(m, win, T, want);
    snprintf(what, sizeof what, "%s long-chunk slide, all rows", file);
    t_close(what, got, want + from_old * V, nnew * V, 1e-5, 1e-5);

    /* sampling from converted weights: close to f32, not identical */
    {
        const int types[3] = {DUET_QTYPE_F16, DUET_QTYPE_BF16, DUET_QTYPE_Q8_0};
        /* f16 rounds weights to 2^-11 relative, bf16 and q8_0 to ~2^-8 */
        const double tol[3] = {5e-3, 4e-2, 4e-2};
        for (int k = 0; k < 3; k++) {
            T_CHECK(duet_tf_set_sample_type(m, types[k]) == DUET_OK, "set sample type %s: %s",
                    duet_qtype_name(types[k]), duet_last_error());
            duet_tf_reset(m);
            ok = 1;
            for (int64_t t = 0; t < T; t++) ok &= duet_tf_feed(m, ids + t, 1, got + t * V, 0) == DUET_OK;
            double maxd = 0, maxv = 0;
            for (int64_t i = 0; i < T * V; i++) {
                maxd = fmax(maxd, fabs((double)got[i] - (double)full[i]));
                maxv = fmax(maxv, fabs((double)full[i]));
            }
            /* (q8_0 needs rows of 32: in the gpt2 fixture only w2 converts) */
            T_CHECK(ok && maxd <= tol[k] * maxv && maxd > 0,
                    "%s: decode with %s weights: max |diff| %g (logits up to %g)", file,
                    duet_qtype_name(types[k]), maxd, maxv);
        }
        T_CHECK(duet_tf_set_sample_type(m, DUET_QTYPE_Q4_0) == DUET_ERR_ARG,
                "q4_0 sampling weights are refused: %s", duet_last_error());
        duet_tf_set_sample_type(m, DUET_QTYPE_F32);
        duet_tf_reset(m);
        for (int64_t t = 0; t < T; t++) duet_tf_feed(m, ids + t, 1, got + t * V, 0);
        snprintf(what, sizeof what, "%s back to f32 weights", file);
        t_close(what, got, full, T * V, 1e-5, 1e-5);
    }

    /* bad ids are refused before the cache changes */
    int64_t pos = duet_tf_pos(m);
    int32_t bad = (int32_t)V;
    T_CHECK(duet_tf_feed(m, &bad, 1, got, 0) == DUET_ERR_ARG &&
                strstr(duet_last_error(), "vocabulary") && duet_tf_pos(m) == pos,
            "feed refuses an id outside the vocabulary: %s", duet_last_error());
    free(want);
    free(full);
    free(got);
    duet_tf_free(m);
    t_fix_free(f);
}

/* ==== errors in forward ================================================== */

static void test_forward_errors(void) {
    duet_tf_params p;
    duet_tf_params_default(&p, DUET_TF_ARCH_LLAMA);
    p.vocab = 20, p.ctx = 8, p.dim = 16, p.layers = 1, p.heads = 2, p.kv_heads = 1;
    duet_tf *m = duet_tf_new(&p, 3);
    duet_graph *g = duet_graph_new(1 << 16);
    int32_t ids[16] = {0}, tg[16] = {0};
    ids[5] = 20;
    duet_tensor *l = duet_tf_forward(m, g, ids, tg, 2, 8, NULL);
    T_CHECK(l == NULL && duet_graph_status(g) != DUET_OK, "forward refuses an id >= V: %s",
            duet_last_error());
    duet_graph_reset(g);
    ids[5] = 0;
    l = duet_tf_forward(m, g, ids, tg, 1, 9, NULL);
    T_CHECK(l == NULL && strstr(duet_last_error(), "ctx"), "forward refuses T > ctx: %s",
            duet_last_error());
    duet_graph_free(g);
    duet_tf_free(m);
}

/* ==== determinism and allocation ========================================= */

static int alloc_calls;
static void *counting_alloc(void *ud, size_t size, size_t align) {
    (void)ud;
    alloc_calls++;
    void *q = NULL;
    return posix_memalign(&q, align, size ? size : 1) ? NULL : q;
}
static void counting_free(void *ud, void *q) {
    (void)ud;
    free(q);
}

/* Trains `steps` steps on random tokens; losses into out; counts the
 * allocations made from the third step on into *late_allocs. Then samples
 * 24 tokens with a seeded draw into sample. */
static void run_small(duet_tf_arch arch, uint64_t seed, int steps, float *out, int *late_allocs,
                      int32_t *sample) {
    duet_tf_params p;
    duet_tf_params_default(&p, arch);
    p.vocab = 40, p.ctx = 16, p.dim = 32, p.layers = 2, p.heads = 4,
    p.kv_heads = arch == DUET_TF_ARCH_LLAMA ? 2 : 4;
    duet_tf *m = duet_tf_new(&p, seed);
    int n;
    duet_tensor **ps = duet_tf_params_list(m, &n);
    duet_adamw opt;
    duet_adamw_init(&opt, ps, n, 0.9f, 0.95f, 1e-8f, 0.1f);
    duet_graph *g = duet_graph_new(1 << 12);
    const int64_t B = 3, T = 16;
    int32_t ids[48], tg[48];
    duet_rng rng;
    duet_rng_init(&rng, 99);
    duet_allocator counter = {counting_alloc, counting_free, NULL};
    for (int s = 0; s < steps; s++) {
        if (s == 2) { /* step 1's reset merges the arena into one block, once */
            duet_set_allocator(&counter);
            alloc_calls = 0;
        }
        for (int i = 0; i < B * T; i++) {
            ids[i] = (int32_t)(duet_rng_next(&rng) * 40.0f) % 40;
            tg[i] = (ids[i] * 7 + 3) % 40; /* a learnable map */
        }
        duet_graph_reset(g);
        duet_tf_zero_grad(m);
        duet_tensor *l = duet_tf_forward(m, g, ids, tg, B, T, NULL);
        out[s] = l ? *(float *)l->data : NAN;
        if (!l || duet_graph_backward(g, l) != DUET_OK) break;
        duet_clip_grad_norm(ps, n, 1.0f);
        duet_adamw_step(&opt, ps, n, 3e-3f);
    }
    *late_allocs = alloc_calls;
    duet_set_allocator(NULL);
    /* sampling (f16 weights): prompt of 2, then 24 draws from the softmax */
    duet_tf_set_sample_type(m, DUET_QTYPE_F16);
    float logits[40];
    int32_t tok[2] = {1, 2};
    duet_tf_feed(m, tok, 2, logits, 0);
    duet_rng_init(&rng, seed + 1000);
    for (int i = 0; i < 24; i++) {
        float mx = logits[0], sum = 0;
        for (int v = 1; v < 40; v++) mx = logits[v] > mx ? logits[v] : mx;
        for (int v = 0; v < 40; v++) sum += expf(logits[v] - mx);
        float u = duet_rng_next(&rng) * sum, c = 0;
        int32_t pick = 39;
        for (int v = 0; v < 40; v++) {
            c += expf(logits[v] - mx);
            if (u < c) {
                pick = v;
                break;
            }
        }
        sample[i] = pick;
        if (i == 4) duet_set_allocator(&counter), alloc_calls = 0;
        duet_tf_feed(m, &pick, 1, logits, 0);
    }
    *late_allocs += alloc_calls;
    duet_set_allocator(NULL);
    duet_graph_free(g);
    duet_adamw_free(&opt);
    duet_tf_free(m);
}

static void test_determinism(void) {
    for (int a = 0; a < 2; a++) {
        duet_tf_arch arch = a ? DUET_TF_ARCH_LLAMA : DUET_TF_ARCH_GPT2;
        float l1[6], l2[6], l3[6];
        int32_t s1[24], s2[24], s3[24];
        int late1, late2, late3;
        run_small(arch, 5, 6, l1, &late1, s1);
        run_small(arch, 5, 6, l2, &late2, s2);
        run_small(arch, 6, 6, l3, &late3, s3);
        T_CHECK(memcmp(l1, l2, sizeof l1) == 0, "%s: same seed, same losses", duet_tf_arch_name(arch));
        T_CHECK(memcmp(s1, s2, sizeof s1) == 0, "%s: same seed, same samples", duet_tf_arch_name(arch));
        T_CHECK(memcmp(l1, l3, sizeof l1) != 0, "%s: another seed, other losses", duet_tf_arch_name(arch));
        T_CHECK(l1[5] < l1[0], "%s: loss goes down (%g -> %g)", duet_tf_arch_name(arch),
                (double)l1[0], (double)l1[5]);
        T_CHECK(late1 == 0, "%s: no allocation in later training steps or while decoding "
                "(%d calls)", duet_tf_arch_name(arch), late1);
    }
}

/* ==== checkpoints ========================================================= */

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t w = fwrite(data, 1, n, fp);
    fclose(fp);
    return w == n ? 0 : -1;
}

static void *read_bytes(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    void *buf = malloc((size_t)sz + 1);
    *n = fread(buf, 1, (size_t)sz, fp);
    fclose(fp);
    return buf;
}

static void test_checkpoint(duet_tf_arch arch) {
    const char *an = duet_tf_arch_name(arch);
    duet_tf_params p;
    duet_tf_params_default(&p, arch);
    p.vocab = 30, p.ctx = 12, p.dim = 24, p.layers = 2, p.heads = 4,
    p.kv_heads = arch == DUET_TF_ARCH_LLAMA ? 2 : 4, p.rope_theta = 500.0f;
    duet_tf *m = duet_tf_new(&p, 11);
    char path[512], opath[512], bad[512];
    tmp_path(path, sizeof path, "m.safetensors");
    tmp_path(opath, sizeof opath, "m.optim.safetensors");
    const char *tok = "{\"model\": {\"type\": \"BPE\"}, \"note\": \"quote \\\" and \\n\"}";
    const char *extra[] = {"duet.step", "17", "duet.note", "hello"};
    T_CHECK(duet_tf_save(m, path, tok, extra, 2) == DUET_OK, "%s save: %s", an, duet_last_error());
    char *tok2 = NULL;
    duet_tf *m2 = duet_tf_load(path, &tok2);
    T_CHECK(m2 != NULL, "%s load: %s", an, duet_last_error());
    if (!m2) {
        duet_tf_free(m);
        return;
    }
    T_CHECK(tok2 && strcmp(tok2, tok) == 0, "%s: tokenizer JSON round trip", an);
    duet_free(tok2);
    const duet_tf_params *q = duet_tf_config(m2), *p1 = duet_tf_config(m);
    T_CHECK(q->arch == p1->arch && q->vocab == p1->vocab && q->ctx == p1->ctx && q->dim == p1->dim &&
                q->layers == p1->layers && q->heads == p1->heads && q->kv_heads == p1->kv_heads &&
                q->hidden == p1->hidden && q->tied == p1->tied && q->norm_eps == p1->norm_eps &&
                q->rope_theta == p1->rope_theta,
            "%s: config round trip", an);
    int32_t ids[12] = {1, 5, 7, 29, 0, 3, 3, 3, 8, 12, 2, 1};
    float *a = malloc(sizeof(float) * 12 * 30), *b = malloc(sizeof(float) * 12 * 30);
    full_logits(m, ids, 12, a);
    full_logits(m2, ids, 12, b);
    T_CHECK(memcmp(a, b, sizeof(float) * 12 * 30) == 0, "%s: loaded model gives identical logits", an);
    duet_st *st = duet_st_open(path);
    T_CHECK(st && duet_st_meta(st, "duet.step") && strcmp(duet_st_meta(st, "duet.step"), "17") == 0 &&
                strcmp(duet_st_meta(st, "duet.kind"), "storyteller") == 0 &&
                strcmp(duet_st_meta(st, "duet.arch"), an) == 0,
            "%s: metadata (kind, arch, extra keys) in the file", an);
    if (arch == DUET_TF_ARCH_LLAMA)
        T_CHECK(st && duet_st_meta(st, "duet.rope") && strcmp(duet_st_meta(st, "duet.rope"), "adjacent") == 0,
                "llama checkpoint records the RoPE layout");
    duet_st_close(st);

    /* optimizer state round trip */
    int n;
    duet_tensor **ps = duet_tf_params_list(m, &n);
    duet_adamw o1, o2;
    duet_adamw_init(&o1, ps, n, 0.9f, 0.95f, 1e-8f, 0.1f);
    duet_graph *g = duet_graph_new(1 << 12);
    int32_t tg[12] = {5, 7, 29, 0, 3, 3, 3, 8, 12, 2, 1, 4};
    for (int s = 0; s < 2; s++) {
        duet_graph_reset(g);
        duet_tf_zero_grad(m);
        duet_tensor *l = duet_tf_forward(m, g, ids, tg, 1, 12, NULL);
        duet_graph_backward(g, l);
        duet_adamw_step(&o1, ps, n, 1e-3f);
    }
    const char *oextra[] = {"duet.data_pos", "123"};
    T_CHECK(duet_tf_save_optim(m, &o1, opath, oextra, 1) == DUET_OK, "%s save optim: %s", an,
            duet_last_error());
    duet_adamw_init(&o2, ps, n, 0.9f, 0.95f, 1e-8f, 0.1f);
    T_CHECK(duet_tf_load_optim(m, &o2, opath) == DUET_OK, "%s load optim: %s", an, duet_last_error());
    int same = o2.step == o1.step && o1.step == 2;
    for (int i = 0; i < n; i++) {
        size_t nb = duet_tensor_nbytes(ps[i]);
        same &= memcmp(o1.m[i], o2.m[i], nb) == 0 && memcmp(o1.v[i], o2.v[i], nb) == 0;
    }
    T_CHECK(same, "%s: optimizer m, v and step round trip", an);

    /* refusals */
    T_CHECK(duet_tf_load(opath, NULL) == NULL && strstr(duet_last_error(), "storyteller-optim"),
            "%s: an optimizer file is not a model: %s", an, duet_last_error());
    T_CHECK(duet_tf_load_optim(m, &o2, path) == DUET_ERR_FORMAT, "%s: a model is not optimizer state: %s",
            an, duet_last_error());
    duet_st_writer *w = duet_st_writer_new();
    float x[4] = {0};
    duet_st_writer_add(w, "conv_in.weight", DUET_DTYPE_F32, 1, (int64_t[]){4}, x);
    duet_st_writer_meta(w, "duet.kind", "painter");
    tmp_path(bad, sizeof bad, "painter.safetensors");
    duet_st_writer_write(w, bad);
    duet_st_writer_free(w);
    T_CHECK(duet_tf_load(bad, NULL) == NULL && strstr(duet_last_error(), "painter") &&
                strstr(duet_last_error(), "storyteller"),
            "%s: a painter checkpoint is refused: %s", an, duet_last_error());
    w = duet_st_writer_new();
    duet_st_writer_add(w, "tok_embeddings.weight", DUET_DTYPE_F32, 1, (int64_t[]){4}, x);
    duet_st_writer_meta(w, "duet.kind", "storyteller");
    duet_st_writer_meta(w, "duet.format", "1");
    duet_st_writer_meta(w, "duet.arch", "rwkv");
    tmp_path(bad, sizeof bad, "rwkv.safetensors");
    duet_st_writer_write(w, bad);
    duet_st_writer_free(w);
    T_CHECK(duet_tf_load(bad, NULL) == NULL && strstr(duet_last_error(), "rwkv"),
            "%s: an unknown architecture is refused: %s", an, duet_last_error());
    size_t nbytes = 0;
    unsigned char *bytes = read_bytes(path, &nbytes);
    tmp_path(bad, sizeof bad, "trunc.safetensors");
    write_bytes(bad, bytes, nbytes - 100);
    T_CHECK(duet_tf_load(bad, NULL) == NULL && duet_last_error()[0],
            "%s: a truncated checkpoint is refused: %s", an, duet_last_error());
    write_bytes(bad, bytes, 6);
    T_CHECK(duet_tf_load(bad, NULL) == NULL && duet_last_error()[0],
            "%s: a 6-byte file is refused: %s", an, duet_last_error());
    tmp_path(bad, sizeof bad, "no-such-file.safetensors");
    T_CHECK(duet_tf_load(bad, NULL) == NULL && strstr(duet_last_error(), "no-such-file"),
            "%s: a missing file names the path: %s", an, duet_last_error());
    free(bytes);
    free(a);
    free(b);
    duet_adamw_free(&o1);
    duet_adamw_free(&o2);
    duet_graph_free(g);
    duet_tf_free(m);
    duet_tf_free(m2);
}


/* ==== the commands, end to end =========================================== */

static char duet_bin[1024];

/* Runs `duet <args>` with stdout and stderr captured in tmpdir; returns the
 * exit code (-1 when it did not exit normally). env may be "" or "VAR=x ". */
static int run_duet(const char *env, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s'%s' %s >out.txt 2>err.txt", tmpdir, env, duet_bin, args);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc)) return -1;
    return WEXITSTATUS(rc);
}

static char *tmp_read(const char *name, size_t *n) {
    char path[512];
    tmp_path(path, sizeof path, name);
    size_t dummy;
    char *b = read_bytes(path, n ? n : &dummy);
    if (b) b[n ? *n : dummy] = 0;
    return b;
}

static int tmp_exists(const char *name) {
    char path[512];
    tmp_path(path, sizeof path, name);
    return access(path, F_OK) == 0;
}

/* Column `col` (0-based) of every data row of a CSV, as text joined by '|'. */
static void csv_column(const char *csv, int col, char *out, size_t n) {
    out[0] = 0;
    const char *line = strchr(csv, '\n');
    while (line && line[1]) {
        line++;
        const char *f = line;
        for (int c = 0; c < col && f; c++) {
            f = strchr(f, ',');
            if (f) f++;
        }
        const char *end = f ? strpbrk(f, ",\n") : NULL;
        if (f && end) {
            size_t k = strlen(out);
            snprintf(out + k, n - k, "%.*s|", (int)(end - f), f);
        }
        line = strchr(line, '\n');
    }
}

static void write_corpus(const char *name, int64_t words) {
    static const char *const vocab[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog",
                                        "ran", "to", "house", "little", "big", "red", "saw",
                                        "happy", "sun", "moon", "tree", "bird"};
    char path[512];
    tmp_path(path, sizeof path, name);
    FILE *f = fopen(path, "w");
    uint32_t x = 12345;
    for (int64_t i = 0; i < words; i++) {
        x = x * 1664525u + 1013904223u;
        fputs(vocab[(x >> 16) % 20], f);
        fputc((x >> 8) % 9 == 0 ? '.' : ' ', f);
        if ((x >> 4) % 13 == 0) fputc('\n', f);
    }
    fclose(f);
}

static void test_cli(void) {
    if (access(duet_bin, X_OK) != 0) {
        printf("skipping the command tests: %s is not built (make all)\n", duet_bin);
        return;
    }
    write_corpus("corpus.txt", 6000);
    const char *small = "--layers 1 --heads 2 --dim 32 --ctx 32 --batch 4 --eval-batches 2";
    char args[2048];

    /* DUET_ISA picks the kernel set at start-up (it once hung there: the
     * start-up re-entered itself); an unknown one is ignored with a word */
    {
        int rc0 = run_duet("DUET_ISA=scalar timeout 60 ", "version");
        char *o = tmp_read("out.txt", NULL);
        T_CHECK(rc0 == 0 && o && strstr(o, "kernels: scalar"),
                "DUET_ISA=scalar duet version: exit 0 (rc %d), kernels scalar: %s", rc0, o ? o : "");
        free(o);
        rc0 = run_duet("DUET_ISA=bogus timeout 60 ", "version");
        o = tmp_read("out.txt", NULL);
        char *e = tmp_read("err.txt", NULL);
        T_CHECK(rc0 == 0 && e && strstr(e, "DUET_ISA=bogus ignored") && o && strstr(o, "kernels: "),
                "DUET_ISA=bogus: ignored with a message (rc %d): %s", rc0, e ? e : "");
        free(o), free(e);
    }

    /* a BPE llama run: files, CSV, PNG, summary */
    snprintf(args, sizeof args, "train text --data corpus.txt --vocab 300 --arch llama --kv-heads 1 "
             "%s --steps 12 --eval-every 4 --out bpe.safetensors", small);
    int rc = run_duet("", args);
    char *out = tmp_read("out.txt", NULL), *err = tmp_read("err.txt", NULL);
    T_CHECK(rc == 0, "train text (BPE, llama) exits 0 (rc %d): %s", rc, err ? err : "");
    T_CHECK(out && strstr(out, "12 steps") && strstr(out, "bits/byte") && strstr(out, "val loss"),
            "summary line: %s", out ? out : "");
    T_CHECK(tmp_exists("bpe.safetensors") && tmp_exists("bpe.safetensors.optim.safetensors") &&
                tmp_exists("bpe.safetensors.loss.png"),
            "model, optimizer state and loss curve written");
    size_t pn = 0;
    char *png = tmp_read("bpe.safetensors.loss.png", &pn);
    T_CHECK(png && pn > 8 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0, "the loss curve is a PNG");
    free(png);
    char *csv = tmp_read("bpe.safetensors.csv", NULL);
    T_CHECK(csv && strncmp(csv, "step,lr,train_loss,val_loss,val_bpb,tokens_per_s,elapsed_s\n", 59) == 0,
            "CSV header");
    int rows = 0;
    for (const char *c = csv; c && *c; c++) rows += *c == '\n';
    T_CHECK(rows == 13, "CSV has a row per step (%d lines)", rows);
    char vals[4096];
    if (csv) csv_column(csv, 3, vals, sizeof vals);
    {
        int ok = csv != NULL, k = 0;
        for (const char *v = vals; *v; k++) { /* fields "x|" or "|" for steps 1..12 */
            const char *bar = strchr(v, '|');
            if (!bar) break;
            ok &= ((k + 1) % 4 == 0) == (bar > v);
            v = bar + 1;
        }
        T_CHECK(ok && k == 12, "validation loss at steps 4, 8 and 12 only: %s", vals);
    }
    free(csv);
    char path[512];
    tmp_path(path, sizeof path, "bpe.safetensors");
    char *tj = NULL;
    duet_tf *m = duet_tf_load(path, &tj);
    T_CHECK(m && duet_tf_config(m)->arch == DUET_TF_ARCH_LLAMA && duet_tf_config(m)->vocab == 300 &&
                duet_tf_config(m)->kv_heads == 1 && tj && strstr(tj, "merges"),
            "the checkpoint is a llama with a 300-id BPE embedded");
    duet_free(tj);
    duet_tf_free(m);
    free(out);
    free(err);

    /* sampling: same seed same text; greedy is repeatable; tokens/s on stderr */
    char *a = NULL, *b = NULL;
    rc = run_duet("", "text --model bpe.safetensors \"the cat\" -n 30 --seed 5");
    a = tmp_read("out.txt", NULL);
    err = tmp_read("err.txt", NULL);
    T_CHECK(rc == 0 && a && strncmp(a, "the cat", 7) == 0 && strlen(a) > 10,
            "duet text streams the prompt and a story (rc %d): %s %s", rc, a ? a : "", err ? err : "");
    T_CHECK(err && strstr(err, "tokens/s"), "tokens/s on stderr: %s", err ? err : "");
    free(err);
    run_duet("", "text --model bpe.safetensors \"the cat\" -n 30 --seed 5");
    b = tmp_read("out.txt", NULL);
    T_CHECK(a && b && strcmp(a, b) == 0, "same seed, same story");
    free(b);
    run_duet("", "text --model bpe.safetensors --prompt \"the cat\" -n 30 --seed 6");
    b = tmp_read("out.txt", NULL);
    T_CHECK(a && b && strcmp(a, b) != 0, "another seed, another story");
    free(a);
    free(b);
    run_duet("", "text --model bpe.safetensors \"the\" -n 20 --temperature 0 --seed 1");
    a = tmp_read("out.txt", NULL);
    run_duet("", "text --model bpe.safetensors \"the\" -n 20 --temperature 0 --seed 2");
    b = tmp_read("out.txt", NULL);
    T_CHECK(a && b && strcmp(a, b) == 0, "greedy ignores the seed");
    free(b);
    /* an f16 KV cache: runs, and a cache type it cannot have is a usage error */
    rc = run_duet("", "text --model bpe.safetensors \"the\" -n 20 --temperature 0 --cache-type f16");
    b = tmp_read("out.txt", NULL);
    T_CHECK(rc == 0 && b && strncmp(b, "the", 3) == 0 && strlen(b) > 3,
            "--cache-type f16: rc %d, %s", rc, b ? b : "");
    free(b);
    rc = run_duet("", "text --model bpe.safetensors \"the\" -n 5 --cache-type q8_0");
    b = tmp_read("err.txt", NULL);
    T_CHECK(rc == 2 && b && strstr(b, "--cache-type"), "--cache-type q8_0 refused: rc %d, %s",
            rc, b ? b : "");
    free(a);
    free(b);
    rc = run_duet("", "text --model bpe.safetensors \"the\" -n 5 --temperature 0 --show-probs");
    a = tmp_read("out.txt", NULL);
    T_CHECK(rc == 0 && a && strstr(a, "p=") && strstr(a, "runners-up"), "--show-probs: %s", a ? a : "");
    free(a);
    /* --stop: the same story as without it, cut before the first stop text */
    run_duet("", "text --model bpe.safetensors \"the\" -n 60 --seed 3");
    size_t na = 0, nb = 0;
    b = tmp_read("out.txt", &nb);
    {
        /* the stop text: a letter from the middle of that story (bytes, not
         * strings: an untrained model may emit NUL) */
        char stopc = 0;
        for (size_t i = nb / 2; b && i < nb && !stopc; i++)
            if (b[i] >= 'a' && b[i] <= 'z') stopc = b[i];
        snprintf(args, sizeof args, "text --model bpe.safetensors \"the\" -n 60 --seed 3 --stop %c", stopc);
        rc = run_duet("", args);
        a = tmp_read("out.txt", &na);
        const char *hit = stopc ? memchr(b + 3, stopc, nb - 3) : NULL;
        size_t keep = hit ? (size_t)(hit - b) : 0;
        T_CHECK(rc == 0 && a && hit && na == keep + 1 && memcmp(a, b, keep) == 0 && a[keep] == '\n',
                "--stop %c ends the story right before the stop text (%zu of %zu bytes)", stopc, na, nb);
    }
    free(a);
    free(b);
    /* a story longer than ctx slides the cache */
    rc = run_duet("", "text --model bpe.safetensors \"the\" -n 100 --seed 3");
    T_CHECK(rc == 0, "a story past the context length (rc %d)", rc);

    /* kill and resume == uninterrupted */
    snprintf(args, sizeof args, "train text --data corpus.txt --vocab 256 %s --steps 12 "
             "--save-every 4 --eval-every 3 --out full.safetensors", small);
    rc = run_duet("", args);
    T_CHECK(rc == 0, "uninterrupted run (rc %d)", rc);
    snprintf(args, sizeof args, "train text --data corpus.txt --vocab 256 %s --steps 12 "
             "--save-every 4 --eval-every 3 --out part.safetensors", small);
    rc = run_duet("DUET_TRAIN_KILL_AT=7 ", args);
    T_CHECK(rc != 0, "the run killed at step 7 dies (rc %d)", rc);
    rc = run_duet("", "train text --data corpus.txt --resume --out part.safetensors");
    err = tmp_read("err.txt", NULL);
    T_CHECK(rc == 0 && err && strstr(err, "resuming at step 4"), "--resume continues from the "
            "step-4 checkpoint (rc %d): %s", rc, err ? err : "");
    free(err);
    char *c1 = tmp_read("full.safetensors.csv", NULL), *c2 = tmp_read("part.safetensors.csv", NULL);
    char t1[4096] = "", t2[4096] = "", v1[4096] = "", v2[4096] = "";
    if (c1 && c2) {
        csv_column(c1, 2, t1, sizeof t1);
        csv_column(c2, 2, t2, sizeof t2);
        csv_column(c1, 3, v1, sizeof v1);
        csv_column(c2, 3, v2, sizeof v2);
    }
    T_CHECK(c1 && c2 && t1[0] && strcmp(t1, t2) == 0,
            "killed + resumed run has the same train losses as an uninterrupted one:\n  %s\n  %s", t1, t2);
    T_CHECK(c1 && c2 && strcmp(v1, v2) == 0, "... and the same validation losses:\n  %s\n  %s", v1, v2);
    free(c1);
    free(c2);
    size_t n1 = 0, n2 = 0;
    char *m1 = tmp_read("full.safetensors", &n1), *m2 = tmp_read("part.safetensors", &n2);
    /* the metadata holds wall-clock values; compare the weights through the API */
    free(m1);
    free(m2);
    {
        char p1[512], p2[512];
        tmp_path(p1, sizeof p1, "full.safetensors");
        tmp_path(p2, sizeof p2, "part.safetensors");
        duet_tf *x = duet_tf_load(p1, NULL), *y = duet_tf_load(p2, NULL);
        int same = x && y;
        if (same) {
            int n;
            duet_tensor **px = duet_tf_params_list(x, &n), **py = duet_tf_params_list(y, NULL);
            for (int i = 0; i < n; i++)
                same &= memcmp(px[i]->data, py[i]->data, duet_tensor_nbytes(px[i])) == 0;
        }
        T_CHECK(same, "... and bit-identical final weights");
        duet_tf_free(x);
        duet_tf_free(y);
    }

    /* --tokenizer FILE and --minutes */
    {
        size_t n = 0;
        char *text = tmp_read("corpus.txt", &n);
        duet_tokenizer *tk = text ? duet_tokenizer_train(text, (int64_t)n, 280, NULL) : NULL;
        tmp_path(path, sizeof path, "tok.json");
        T_CHECK(tk && duet_tokenizer_save(tk, path) == DUET_OK, "a tokenizer file for --tokenizer");
        duet_tokenizer_free(tk);
        free(text);
    }
    snprintf(args, sizeof args, "train text --data corpus.txt --tokenizer tok.json %s "
             "--minutes 0.01 --out timed.safetensors", small);
    rc = run_duet("", args);
    out = tmp_read("out.txt", NULL);
    csv = tmp_read("timed.safetensors.csv", NULL);
    rows = 0;
    for (const char *c = csv; c && *c; c++) rows += *c == '\n';
    tmp_path(path, sizeof path, "timed.safetensors");
    m = duet_tf_load(path, NULL);
    T_CHECK(rc == 0 && out && strstr(out, "done:") && rows >= 2 && m &&
                duet_tf_config(m)->vocab == 280,
            "--minutes trains until the time is up, with the --tokenizer's 280 ids (rc %d, %d "
            "CSV lines): %s", rc, rows, out ? out : "");
    duet_tf_free(m);
    free(out);
    free(csv);
    rc = run_duet("", "train");
    T_CHECK(rc == 2, "duet train without a kind: exit 2 (rc %d)", rc);
    rc = run_duet("", "train --help");
    out = tmp_read("out.txt", NULL);
    T_CHECK(rc == 0 && out && strstr(out, "text"), "duet train --help lists the kinds");
    free(out);

    /* errors: exit codes, messages, nothing written */
    rc = run_duet("", "train text --data missing.txt --out e1.safetensors");
    err = tmp_read("err.txt", NULL);
    T_CHECK(rc == 3 && err && strstr(err, "missing.txt") && !tmp_exists("e1.safetensors") &&
                !tmp_exists("e1.safetensors.csv"),
            "missing data: exit 3, names the file, writes nothing (rc %d): %s", rc, err ? err : "");
    free(err);
    tmp_path(path, sizeof path, "empty.txt");
    write_bytes(path, "", 0);
    rc = run_duet("", "train text --data empty.txt --out e2.safetensors");
    T_CHECK(rc == 4 && !tmp_exists("e2.safetensors.csv"), "empty data: exit 4 (rc %d)", rc);
    tmp_path(path, sizeof path, "short.txt");
    write_bytes(path, "just a few words of text here, not enough", 41);
    rc = run_duet("", "train text --data short.txt --vocab 256 --ctx 64 --out e3.safetensors");
    err = tmp_read("err.txt", NULL);
    T_CHECK(rc == 4 && err && strstr(err, "ctx") && !tmp_exists("e3.safetensors") &&
                !tmp_exists("e3.safetensors.csv"),
            "corpus shorter than ctx+1: exit 4, nothing written (rc %d): %s", rc, err ? err : "");
    free(err);
    rc = run_duet("", "train text --data corpus.txt --out e4.safetensors --bogus 3");
    err = tmp_read("err.txt", NULL);
    T_CHECK(rc == 2 && err && strstr(err, "--bogus"), "unknown flag: exit 2 (rc %d): %s", rc, err ? err : "");
    free(err);
    rc = run_duet("", "train text --data corpus.txt --out e4.safetensors --layers 0");
    T_CHECK(rc == 2, "--layers 0: exit 2 (rc %d)", rc);
    rc = run_duet("", "train text --data corpus.txt --out e4.safetensors --lr abc");
    T_CHECK(rc == 2, "--lr abc: exit 2 (rc %d)", rc);
    rc = run_duet("", "train text --data corpus.txt --out e4.safetensors --steps 3 --minutes 1");
    T_CHECK(rc == 2, "--steps with --minutes: exit 2 (rc %d)", rc);
    rc = run_duet("", "train text --data corpus.txt --out e4.safetensors --arch rnn");
    T_CHECK(rc == 2, "--arch rnn: exit 2 (rc %d)", rc);
    rc = run_duet("", "train text --data corpus.txt --out e4.safetensors --vocab 257");
    T_CHECK(rc == 2, "--vocab 257: exit 2 (rc %d)", rc);
    rc = run_duet("", "train text --data corpus.txt --out nothing-here.safetensors --resume");
    T_CHECK(rc == 3, "--resume without a checkpoint: exit 3 (rc %d)", rc);
    T_CHECK(!tmp_exists("e4.safetensors") && !tmp_exists("e4.safetensors.csv"),
            "bad command lines write nothing");
    rc = run_duet("", "train image --data x");
    T_CHECK(rc == 2, "train with an unknown kind: exit 2 (rc %d)", rc);
    rc = run_duet("", "text --model nothing-here.safetensors hi");
    T_CHECK(rc == 3, "text with a missing model: exit 3 (rc %d)", rc);
    rc = run_duet("", "text --model bpe.safetensors.optim.safetensors hi");
    err = tmp_read("err.txt", NULL);
    T_CHECK(rc == 4 && err && strstr(err, "storyteller"), "text with an optimizer file: exit 4 (rc %d): %s",
            rc, err ? err : "");
    free(err);
    rc = run_duet("DUET_MODELS=/nonexistent ", "text hi");
    err = tmp_read("err.txt", NULL);
    T_CHECK(rc == 3 && err && strstr(err, "storyteller.safetensors"),
            "text without --model and no built-in model says so (rc %d): %s", rc, err ? err : "");
    free(err);
    rc = run_duet("", "text --model bpe.safetensors hi --precision q4_0");
    T_CHECK(rc == 2, "--precision q4_0: exit 2 (rc %d)", rc);
    run_duet("", "text --model bpe.safetensors \"the\" -n 20 --temperature 0 --precision f32");
    a = tmp_read("out.txt", NULL);
    rc = run_duet("", "text --model bpe.safetensors \"the\" -n 20 --temperature 0 --precision q8_0");
    T_CHECK(rc == 0 && a && strncmp(a, "the", 3) == 0, "--precision f32 and q8_0 run (rc %d)", rc);
    free(a);
    rc = run_duet("", "text --model bpe.safetensors hi --top-p 2");
    T_CHECK(rc == 2, "--top-p 2: exit 2 (rc %d)", rc);
}

int main(int argc, char **argv) {
    (void)argc;
    duet_init();
    /* the CLI sits next to the tests folder: <build>/tests/test_x -> <build>/duet */
    {
        char exe[900];
        snprintf(exe, sizeof exe, "%s", argv[0]);
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        else snprintf(exe, sizeof exe, ".");
        char abs[1000];
        if (exe[0] != '/' && getcwd(abs, sizeof abs)) {
            size_t k = strlen(abs);
            snprintf(abs + k, sizeof abs - k, "/%s", exe);
        } else {
            snprintf(abs, sizeof abs, "%s", exe);
        }
        snprintf(duet_bin, sizeof duet_bin, "%s/../duet", abs);
    }
    const char *td = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/duet-test-tf-XXXXXX", td ? td : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_config();
    test_init();
    test_vs_torch("tf_gpt2.bin", DUET_TF_ARCH_GPT2);
    test_vs_torch("tf_llama.bin", DUET_TF_ARCH_LLAMA);
    test_kv_cache("tf_gpt2.bin", DUET_TF_ARCH_GPT2);
    test_kv_cache("tf_llama.bin", DUET_TF_ARCH_LLAMA);
    test_forward_errors();
    test_determinism();
    test_checkpoint(DUET_TF_ARCH_GPT2);
    test_checkpoint(DUET_TF_ARCH_LLAMA);
    test_cli();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (!getenv("DUET_TEST_KEEP") && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return t_done();
}
