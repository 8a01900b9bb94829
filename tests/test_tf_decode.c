/*
 * test_tf_decode.c — the single-token decode (src/models/tf_decode.c), the
 * path duet_tf_feed takes for one new token, against the graph path it
 * replaced (DUET_TF_GRAPH_DECODE=1), which test_transformer and
 * test_loaders hold to PyTorch and to the full forward:
 *  - duet's own models (GPT-2: LayerNorm, biases, GELU, tied; Llama: RMSNorm,
 *    RoPE, grouped-query attention, SwiGLU, untied), f32 weights: equal to
 *    rounding (the f32 dot here, the SGEMM's gemv there);
 *  - the same models sampling from f16 / bf16 / q8_0 copies, and GGUF files
 *    (duet's writer, then requantized to k-quants) opened as external views
 *    in F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K: the same
 *    bits, token after token, as the graph — but f32 / f16 weights, which
 *    go through four-row kernels here (equal to rounding);
 *  - those four-row kernels against a double-precision sum, odd sizes;
 *  - the f16 KV cache: the same bits on both paths, close to an f32 cache;
 *  - one thread and two give the same bits (and test_transformer /
 *    test_loaders, whose token-by-token checks against the full forward and
 *    PyTorch now run through this path too, hold it to the references);
 *  - the models are big enough (over 1 MB of weights streamed per token)
 *    that decode really splits rows between two threads.
 */
#include "testutil.h"
#include "kernels/quant_mv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T_TOK 40

static int32_t ids[T_TOK];

static duet_tf_params params(duet_tf_arch arch) {
    duet_tf_params p;
    duet_tf_params_default(&p, arch);
    p.vocab = 258; /* duet_tokenizer_new_bytes: 256 bytes + BOS, EOS */
    p.ctx = 48;
    p.dim = 256;
    p.layers = 3;
    p.heads = 8;
    p.kv_heads = arch == DUET_TF_ARCH_GPT2 ? 8 : 4;
    return p;
}

/* Feeds ids one at a time from an empty cache (the first two as a prompt
 * batch, which takes the graph either way) and keeps every row of logits. */
static int decode(duet_tf *m, const char *graph, float *out) {
    setenv("DUET_TF_GRAPH_DECODE", graph, 1);
    const int64_t V = duet_tf_config(m)->vocab;
    duet_tf_reset(m);
    if (duet_tf_feed(m, ids, 2, out, 1) != DUET_OK) return 0;
    for (int64_t t = 2; t < T_TOK; t++)
        if (duet_tf_feed(m, ids + t, 1, out + t * V, 0) != DUET_OK) return 0;
    return duet_tf_pos(m) == T_TOK;
}

static int same_bits(const float *a, const float *b, int64_t n, int64_t *at) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float)) != 0) {
            *at = i;
            return 0;
        }
    return 1;
}

/* fast (2 threads) vs graph, and fast 1 thread vs 2; exact unless tol > 0 */
static void compare(duet_tf *fast, duet_tf *fast1, duet_tf *graph, const char *what,
                    double tol) {
    const int64_t n = T_TOK * duet_tf_config(fast)->vocab;
    float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
    float *c = malloc(sizeof(float) * (size_t)n);
    duet_set_threads(2);
    int ok = decode(fast, "0", a) && decode(graph, "1", b);
    duet_set_threads(1);
    ok = ok && decode(fast1, "0", c);
    duet_set_threads(2);
    T_CHECK(ok, "%s: decoding: %s", what, duet_last_error());
    if (ok) {
        char msg[160];
        int64_t at = 0;
        if (tol > 0) {
            snprintf(msg, sizeof msg, "%s: single-region decode = graph decode", what);
            t_close(msg, a, b, n, tol, tol);
        } else {
            const int same = same_bits(a, b, n, &at);
            T_CHECK(same, "%s: single-region decode differs from the graph at %lld: %.9g vs "
                    "%.9g", what, (long long)at, (double)a[at], (double)b[at]);
        }
        const int same = same_bits(a, c, n, &at);
        T_CHECK(same, "%s: 1 and 2 threads differ at %lld: %.9g vs %.9g", what, (long long)at,
                (double)a[at], (double)c[at]);
        double mx = 0;
        for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)a[i]));
        T_CHECK(mx > 1e-3 && isfinite(mx), "%s: logits are not all zero (max %g)", what, mx);
    }
    free(a);
    free(b);
    free(c);
}

/* The multi-row f32 / f16 kernels (AVX-512 kernel sets) and the one-dot
 * fallback, through duet_qmv_rows, against double sums. */
static void test_rows(void) {
    const int64_t Ks[] = {1, 15, 16, 17, 31, 32, 33, 48, 288, 300, 384};
    const int types[] = {DUET_QTYPE_F32, DUET_QTYPE_F16};
    uint64_t s = 99;
    int checked = 0, multi = 0;
    for (size_t ti = 0; ti < 2; ti++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
            const int64_t K = Ks[ki], M = 11;
            const duet_qtype t = (duet_qtype)types[ti];
            const int64_t rb = duet_qtype_row_bytes(t, K);
            float *w = malloc(sizeof(float) * (size_t)(M * K)), *x = malloc(sizeof(float) * (size_t)K);
            uint8_t *wq = malloc((size_t)(M * rb));
            float *y = malloc(sizeof(float) * (size_t)M);
            for (int64_t i = 0; i < M * K; i++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                w[i] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5);
            }
            for (int64_t i = 0; i < K; i++) x[i] = (float)sin((double)i * 0.37) + 0.25f;
            for (int64_t r = 0; r < M; r++) duet_quantize_row(t, w + r * K, wq + r * rb, K);
            float *wd = malloc(sizeof(float) * (size_t)(M * K)); /* the weights as stored */
            for (int64_t r = 0; r < M; r++) duet_dequantize_row(t, wq + r * rb, wd + r * K, K);
            duet_qmv mv;
            duet_qmv_prepare(&mv, t, K, x, NULL);
            multi += mv.rows != NULL;
            /* rows 1..9 only: a group of four, then a tail, at an odd start */
            for (int64_t r = 0; r < M; r++) y[r] = -12345.0f;
            duet_qmv_rows(&mv, wq, 1, 10, y);
            int ok = y[0] == -12345.0f && y[10] == -12345.0f;
            double worst = 0;
            for (int64_t r = 1; r < 10; r++) {
                double ref = 0, mag = 0;
                for (int64_t i = 0; i < K; i++) {
                    ref += (double)wd[r * K + i] * (double)x[i];
                    mag += fabs((double)wd[r * K + i] * (double)x[i]);
                }
                worst = fmax(worst, fabs((double)y[r] - ref) / (mag + 1e-30));
            }
            /* float sums of K products: error within a few K ulps of the magnitude */
            ok &= worst <= 1e-6 * (1.0 + (double)K / 16.0);
            T_CHECK(ok, "rows kernel %s K=%lld: worst error %.3g of the magnitude, rows "
                    "outside the range touched: %d", duet_qtype_name(t), (long long)K, worst,
                    !(y[0] == -12345.0f && y[10] == -12345.0f));
            checked++;
            free(w);
            free(x);
            free(wq);
            free(wd);
            free(y);
        }
    T_CHECK(checked == 22, "rows kernels: %d shapes", checked);
    if (getenv("DUET_TEST_VERBOSE")) printf("  multi-row kernels in use: %d of %d\n", multi, checked);
}

/* Own models: f32 (to rounding), then converted sampling copies (exact). */
static void test_own(duet_tf_arch arch) {
    duet_tf_params p = params(arch);
    duet_tf *m[3];
    for (int i = 0; i < 3; i++) m[i] = duet_tf_new(&p, 7);
    T_CHECK(m[0] && m[1] && m[2], "model: %s", duet_last_error());
    if (m[0] && m[1] && m[2]) {
        /* f32 weights: the graph's gemv and the dot here sum in other orders */
        char what[64];
        snprintf(what, sizeof what, "%s f32", duet_tf_arch_name(arch));
        /* fresh models per comparison: the path is chosen at the first token */
        compare(m[0], m[1], m[2], what, 2e-5);
        const int types[3] = {DUET_QTYPE_F16, DUET_QTYPE_BF16, DUET_QTYPE_Q8_0};
        for (int k = 0; k < 3; k++) {
            duet_tf *n[3];
            for (int i = 0; i < 3; i++) {
                n[i] = duet_tf_new(&p, 7);
                if (n[i]) duet_tf_set_sample_type(n[i], types[k]);
            }
            snprintf(what, sizeof what, "%s %s copy", duet_tf_arch_name(arch),
                     duet_qtype_name(types[k]));
            if (n[0] && n[1] && n[2])
                compare(n[0], n[1], n[2], what, types[k] == DUET_QTYPE_F16 ? 2e-5 : 0);
            for (int i = 0; i < 3; i++) duet_tf_free(n[i]);
        }
    }
    for (int i = 0; i < 3; i++) duet_tf_free(m[i]);
}

/* GGUF files opened as views: every weight type the dots support. */
static void test_gguf(duet_tf_arch arch) {
    duet_tf_params p = params(arch);
    duet_tf *src = duet_tf_new(&p, 11);
    duet_tokenizer *tok = duet_tokenizer_new_bytes();
    char base[256], path[300];
    snprintf(base, sizeof base, "/tmp/duet_test_tfdec_%d_%s", (int)getpid(),
             duet_tf_arch_name(arch));
    T_CHECK(src && tok, "source model: %s", duet_last_error());
    if (!src || !tok) goto out;
    const int direct[] = {DUET_QTYPE_F32, DUET_QTYPE_F16, DUET_QTYPE_Q8_0, DUET_QTYPE_Q4_0};
    const int requant[] = {DUET_QTYPE_Q4_1, DUET_QTYPE_Q5_0, DUET_QTYPE_Q5_1,
                           DUET_QTYPE_Q4_K, DUET_QTYPE_Q5_K, DUET_QTYPE_Q6_K};
    char f32path[300];
    snprintf(f32path, sizeof f32path, "%s_f32.gguf", base);
    for (size_t k = 0; k < sizeof direct / sizeof direct[0] + sizeof requant / sizeof requant[0];
         k++) {
        const int direct_n = (int)(sizeof direct / sizeof direct[0]);
        const int qt = (int)k < direct_n ? direct[k] : requant[k - (size_t)direct_n];
        snprintf(path, sizeof path, "%s_%s.gguf", base, duet_qtype_name(qt));
        duet_status s = (int)k < direct_n ? duet_tf_save_gguf(src, tok, path, qt, "tfdec")
                                          : duet_gguf_requantize(f32path, path, qt);
        T_CHECK(s == DUET_OK, "write %s: %s", path, duet_last_error());
        if (s != DUET_OK) continue;
        duet_model *mm[3];
        for (int i = 0; i < 3; i++) mm[i] = duet_model_open(path, NULL);
        T_CHECK(mm[0] && mm[1] && mm[2], "open %s: %s", path, duet_last_error());
        if (mm[0] && mm[1] && mm[2]) {
            char what[64];
            snprintf(what, sizeof what, "%s gguf %s", duet_tf_arch_name(arch),
                     duet_qtype_name(qt));
            T_CHECK(duet_tf_is_external(mm[0]->tf), "%s: external views", what);
            const int rows4 = qt == DUET_QTYPE_F32 || qt == DUET_QTYPE_F16;
            compare(mm[0]->tf, mm[1]->tf, mm[2]->tf, what, rows4 ? 2e-5 : 0);
        }
        for (int i = 0; i < 3; i++) duet_model_free(mm[i]);
        if (qt != DUET_QTYPE_F32) unlink(path);
    }
    unlink(f32path);
out:
    duet_tokenizer_free(tok);
    duet_tf_free(src);
}

/* The PyTorch-checked fixtures of test_loaders (tiny: one thread): Llama 3
 * style rope_freqs with a linear scale, NeoX-order qwen2 with q/k/v biases,
 * mixed and k-quant types, to rounding. */
static void test_fixtures(void) {
    static const char *const files[] = {"ld_llama_rope.gguf", "ld_qwen2_f32.gguf",
                                        "ld_qwen2_q8.gguf", "ld_llama_mix.gguf",
                                        "ld_llama_kq.gguf", "ld_hf_qwen2"};
    const char *dir = getenv("DUET_FIXTURES");
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "tests/fixtures", files[i]);
        duet_model *mm[3];
        for (int k = 0; k < 3; k++) mm[k] = duet_model_open(path, NULL);
        T_CHECK(mm[0] && mm[1] && mm[2], "open %s: %s", path, duet_last_error());
        if (mm[0] && mm[1] && mm[2]) {
            const int64_t V = duet_tf_config(mm[0]->tf)->vocab;
            int32_t keep[T_TOK];
            memcpy(keep, ids, sizeof keep);
            for (int t = 0; t < T_TOK; t++) ids[t] = (int32_t)(keep[t] % V);
            /* most hold some f32 / f16 matrices, whose rows take the
             * four-row kernels: equal to rounding */
            compare(mm[0]->tf, mm[1]->tf, mm[2]->tf, files[i], 2e-5);
            memcpy(ids, keep, sizeof keep);
        }
        for (int k = 0; k < 3; k++) duet_model_free(mm[k]);
    }
}

/* The f16 KV cache: the single-region decode (attend_row_f16 on the f16
 * rows) and the graph (the rows converted back to f32, attend_row) give the
 * same bits; against an f32 cache, logits within f16's rounding. */
static void test_f16_cache(duet_tf_arch arch) {
    duet_tf_params p = params(arch);
    duet_tf *m[4];
    for (int i = 0; i < 4; i++) {
        m[i] = duet_tf_new(&p, 5);
        if (m[i]) duet_tf_set_sample_type(m[i], DUET_QTYPE_Q8_0);
    }
    T_CHECK(m[0] && m[1] && m[2] && m[3], "models: %s", duet_last_error());
    if (m[0] && m[1] && m[2] && m[3]) {
        T_CHECK(duet_tf_set_cache_type(m[0], DUET_QTYPE_Q8_0) == DUET_ERR_ARG &&
                    duet_tf_cache_type(m[0]) == DUET_QTYPE_F32,
                "a q8_0 cache is refused: %s", duet_last_error());
        for (int i = 0; i < 3; i++) duet_tf_set_cache_type(m[i], DUET_QTYPE_F16);
        T_CHECK(duet_tf_cache_type(m[0]) == DUET_QTYPE_F16, "cache type f16");
        char what[64];
        snprintf(what, sizeof what, "%s f16 KV cache", duet_tf_arch_name(arch));
        compare(m[0], m[1], m[2], what, 0);
        /* against an f32 cache, f32 weights (with q8_0 weights the rounding
         * of the activations to 8 bits would amplify the difference) */
        const int64_t n = T_TOK * p.vocab;
        float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
        duet_tf_set_sample_type(m[0], DUET_QTYPE_F32);
        duet_tf_set_sample_type(m[3], DUET_QTYPE_F32);
        int ok = decode(m[0], "0", a) && decode(m[3], "0", b);
        double md = 0, mx = 0;
        for (int64_t i = 0; i < n; i++) {
            md = fmax(md, fabs((double)a[i] - (double)b[i]));
            mx = fmax(mx, fabs((double)b[i]));
        }
        /* keys and values rounded to 2^-11 relative: measured ~3e-4 */
        T_CHECK(ok && md > 0 && md <= 2e-3 * mx, "%s: against an f32 cache max |diff| %g of %g",
                what, md, mx);
        /* switching type empties the cache */
        T_CHECK(duet_tf_pos(m[0]) == T_TOK && duet_tf_set_cache_type(m[0], DUET_QTYPE_F32) ==
                    DUET_OK && duet_tf_pos(m[0]) == 0,
                "changing the cache type empties it");
        ok = decode(m[0], "0", a);
        int same = ok;
        for (int64_t i = 0; i < n && same; i++) same = memcmp(a + i, b + i, sizeof(float)) == 0;
        T_CHECK(same, "%s: back to f32, the f32 cache's logits", what);
        free(a);
        free(b);
    }
    for (int i = 0; i < 4; i++) duet_tf_free(m[i]);
}

int main(void) {
    duet_init();
    uint64_t s = 12345;
    for (int i = 0; i < T_TOK; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = (int32_t)((s >> 33) % 256);
    }
    test_rows();
    test_own(DUET_TF_ARCH_GPT2);
    test_own(DUET_TF_ARCH_LLAMA);
    test_gguf(DUET_TF_ARCH_LLAMA);
    test_gguf(DUET_TF_ARCH_GPT2);
    test_fixtures();
    test_f16_cache(DUET_TF_ARCH_LLAMA);
    test_f16_cache(DUET_TF_ARCH_GPT2);
    unsetenv("DUET_TF_GRAPH_DECODE");
    return t_done();
}
