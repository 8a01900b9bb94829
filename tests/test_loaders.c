/*
 * test_loaders.c — language models in other programs' files
 * (src/models/loaders.c, hf.c, gguf_export.c) against tests/ref/gen_loaders.py:
 * tiny GGUF / llama2.c / Hugging Face models written from the specs with
 * random weights, and a float64 PyTorch reference run on the dequantized
 * weights.
 *
 * For every model: the logits of a fixed sequence fed as one batch (the
 * quantized matmul path) and token by token (the matvec path with the KV
 * cache) against the reference, and a greedy continuation that must equal
 * the reference wherever the reference's top-2 margin exceeds the logit
 * tolerance. Tolerances (relative to the largest reference logit):
 *   f32, f16, bf16 weights: 2e-5 — float32 arithmetic against float64
 *     (the activations stay f32 in these dots);
 *   32-blocks and K-quants: 4e-2 — duet quantizes the activations to
 *     Q8_0 / Q8_K blocks (8 bits, |error| <= max/254 per block) for the
 *     integer dots, as ggml does; the reference does not. A wrong layout, a
 *     wrong RoPE order or a wrong tensor is an O(1) error.
 * Plus: tokenizers from GGUF metadata against the independent SentencePiece
 * and byte-level BPE loops of gen_tokenizers_real.py; chat templates;
 * refusals of bad files with messages naming the file and the field.
 */
#include "testutil.h"

#include "kernels/quant_x16.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static t_fix *FX;

static const char *fixture_path(const char *name) {
    static char b[8][512];
    static int k;
    const char *dir = getenv("DUET_FIXTURES");
    char *p = b[k++ % 8];
    snprintf(p, 512, "%s/%s", dir && *dir ? dir : "tests/fixtures", name);
    return p;
}

/* max |got - want| / max |want| over n values */
static double rel_err(const float *got, const double *want, int64_t n) {
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= e)) e = d; /* NaN counts as the worst */
        if (fabs(want[i]) > m) m = fabs(want[i]);
    }
    return m > 0 ? e / m : e;
}

static int32_t argmax(const float *x, int64_t n) {
    int32_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = (int32_t)i;
    return b;
}

/* Logits (batch and one by one) and greedy decoding of a model vs the
 * reference `key` (ld_expect.bin), within tolerance tol. */
static void check_model_(duet_model *m, const char *key, double tol, int greedy_too) {
    char name[96];
    int64_t T, n, ng;
    snprintf(name, sizeof name, "%s.ids", key);
    int32_t *ids = t_fix_i32(FX, name, &T);
    snprintf(name, sizeof name, "%s.logits", key);
    double *ref = t_fix_f64(FX, name, &n);
    snprintf(name, sizeof name, "%s.greedy", key);
    int32_t *greedy = t_fix_i32(FX, name, &ng);
    snprintf(name, sizeof name, "%s.margin", key);
    double *margin = t_fix_f64(FX, name, NULL);
    if (!ids || !ref || !greedy || !margin || !m) return;
    const int64_t V = duet_tf_config(m->tf)->vocab;
    T_CHECK(n == T * V, "%s: reference logits %lld, want %lld x %lld", key, (long long)n,
            (long long)T, (long long)V);
    if (n != T * V) return;
    float *lg = malloc(sizeof(float) * (size_t)n);
    /* the whole sequence as one batch */
    duet_tf_reset(m->tf);
    duet_status s = duet_tf_feed(m->tf, ids, T, lg, 1);
    T_CHECK(s == DUET_OK, "%s: feed: %s", key, duet_last_error());
    double e = rel_err(lg, ref, n);
    T_CHECK(e <= tol, "%s: batch logits relative error %.3g > %.3g", key, e, tol);
    if (getenv("DUET_TEST_VERBOSE")) printf("  %-12s batch err %.3g (tol %.3g)\n", key, e, tol);
    /* token by token through the KV cache */
    duet_tf_reset(m->tf);
    double e1 = 0;
    for (int64_t t = 0; t < T; t++) {
        s = duet_tf_feed(m->tf, ids + t, 1, lg + t * V, 0);
        if (s != DUET_OK) break;
    }
    T_CHECK(s == DUET_OK, "%s: feed one: %s", key, duet_last_error());
    e1 = rel_err(lg, ref, n);
    T_CHECK(e1 <= tol, "%s: token-by-token logits relative error %.3g > %.3g", key, e1, tol);
    if (!greedy_too) {
        free(lg);
        return;
    }
    /* greedy continuation: equal while the reference margin is decisive */
    double maxref = 0;
    for (int64_t i = 0; i < n; i++) maxref = fmax(maxref, fabs(ref[i]));
    int32_t tok = argmax(lg + (T - 1) * V, V);
    int64_t decided = 0;
    for (int64_t i = 0; i < ng; i++) {
        if (margin[i] <= 2 * tol * maxref) break; /* too close to call */
        T_CHECK(tok == greedy[i], "%s: greedy token %lld is %d, the reference %d (margin %.3g)",
                key, (long long)i, tok, greedy[i], margin[i]);
        if (tok != greedy[i]) break;
        decided++;
        if (duet_tf_feed(m->tf, &tok, 1, lg, 0) != DUET_OK) break;
        tok = argmax(lg, V);
    }
    T_CHECK(decided >= 1, "%s: no greedy step was decisive enough to check", key);
    free(lg);
}

static void check_model(duet_model *m, const char *key, double tol) {
    check_model_(m, key, tol, 1);
}

static duet_model *open_fixture(const char *file) {
    duet_model *m = duet_model_open(fixture_path(file), NULL);
    T_CHECK(m != NULL, "open %s: %s", file, duet_last_error());
    return m;
}

/* ==== GGUF models ========================================================= */

static void test_gguf_models(void) {
    duet_model *m = open_fixture("ld_llama_f32.gguf");
    if (m) {
        const duet_tf_params *p = duet_tf_config(m->tf);
        T_CHECK(strcmp(m->format, "gguf") == 0 && strcmp(m->arch, "llama") == 0 &&
                    strcmp(m->name, "tiny llama f32") == 0,
                "llama_f32: format %s arch %s name %s", m->format, m->arch, m->name);
        T_CHECK(p->arch == DUET_TF_ARCH_LLAMA && p->dim == 32 && p->heads == 4 &&
                    p->kv_heads == 2 && p->hidden == 64 && p->layers == 2 && p->vocab == 40 &&
                    !p->tied && p->ctx == 64,
                "llama_f32: config from the metadata");
        T_CHECK(duet_tf_is_external(m->tf) && m->weight_type == DUET_QTYPE_F32,
                "llama_f32: external, f32");
        check_model(m, "llama_f32", 2e-5);
        /* sampling from a q8_0 copy of the f32 views, then back */
        T_CHECK(duet_tf_set_sample_type(m->tf, DUET_QTYPE_Q8_0) == DUET_OK, "q8_0 copy");
        int64_t wb = duet_tf_weight_bytes(m->tf);
        check_model_(m, "llama_f32", 4e-2, 0); /* weights rounded too: logits only */
        T_CHECK(duet_tf_set_sample_type(m->tf, DUET_QTYPE_F32) == DUET_OK, "back to f32");
        T_CHECK(duet_tf_weight_bytes(m->tf) > 3 * wb, "f32 streams ~3.8x the q8_0 bytes");
        check_model(m, "llama_f32", 2e-5);
        { /* keeping a prefix of the cache: rows 4.. fed again give the same logits */
            int64_t T = 0, n = 0;
            int32_t *ids = t_fix_i32(FX, "llama_f32.ids", &T);
            double *ref = t_fix_f64(FX, "llama_f32.logits", &n);
            float *lg = malloc(sizeof(float) * (size_t)n);
            if (ids && ref && lg && T > 4) {
                duet_tf_reset(m->tf);
                duet_tf_feed(m->tf, ids, T, lg, 1);
                T_CHECK(duet_tf_set_pos(m->tf, T + 1) == DUET_ERR_ARG, "set_pos past the cache");
                T_CHECK(duet_tf_set_pos(m->tf, 4) == DUET_OK && duet_tf_pos(m->tf) == 4, "set_pos 4");
                duet_tf_feed(m->tf, ids + 4, T - 4, lg, 1);
                const int64_t V = n / T;
                double e = rel_err(lg, ref + 4 * V, (T - 4) * V);
                T_CHECK(e <= 2e-5, "after set_pos: logits relative error %.3g", e);
            }
            free(lg);
        }
        /* training refuses an external model */
        duet_graph *g = duet_graph_new(1 << 16);
        int32_t ids[2] = {1, 2};
        T_CHECK(duet_tf_forward(m->tf, g, ids, NULL, 1, 2, NULL) == NULL &&
                    strstr(duet_last_error(), "views into a file"),
                "forward refuses: %s", duet_last_error());
        duet_graph_free(g);
        T_CHECK(duet_tf_save(m->tf, "/tmp/duet_never_written.safetensors", NULL, NULL, 0) ==
                    DUET_ERR_UNSUPPORTED,
                "save refuses an external model");
    }
    duet_model_free(m);

    m = open_fixture("ld_llama_mix.gguf");
    if (m) {
        T_CHECK(duet_tf_config(m->tf)->tied == 1, "llama_mix: tied (no output.weight)");
        check_model(m, "llama_mix", 4e-2);
    }
    duet_model_free(m);
    m = open_fixture("ld_llama_kq.gguf");
    if (m) check_model(m, "llama_kq", 4e-2);
    duet_model_free(m);
    m = open_fixture("ld_llama_rope.gguf");
    if (m) {
        T_CHECK(duet_tf_config(m->tf)->rope_theta == 500000.0f, "llama_rope: freq_base");
        check_model(m, "llama_rope", 2e-5);
    }
    duet_model_free(m);
    m = open_fixture("ld_qwen2_f32.gguf");
    if (m) {
        T_CHECK(duet_tf_config(m->tf)->arch == DUET_TF_ARCH_QWEN2 && strcmp(m->arch, "qwen2") == 0,
                "qwen2 arch");
        check_model(m, "qwen2_f32", 2e-5);
    }
    duet_model_free(m);
    m = open_fixture("ld_qwen2_q8.gguf");
    if (m) {
        T_CHECK(m->weight_type == DUET_QTYPE_Q8_0, "qwen2_q8: weight type %d", m->weight_type);
        check_model(m, "qwen2_q8", 4e-2);
    }
    duet_model_free(m);

    /* a context asked for */
    duet_model_params mp;
    duet_model_params_default(&mp);
    mp.ctx = 7;
    m = duet_model_open(fixture_path("ld_llama_f32.gguf"), &mp);
    T_CHECK(m && duet_tf_config(m->tf)->ctx == 7, "ctx from the params");
    duet_model_free(m);
}

/* ==== tokenizers from GGUF metadata ======================================= */

/* Encodes every string of fixture group `key` and compares with the reference. */
static void check_encodings(const duet_tokenizer *tok, const char *key, unsigned flags) {
    char name[64];
    int64_t ns, ne;
    snprintf(name, sizeof name, "%s.str", key);
    const char *sb = (const char *)t_fix_i32(FX, name, NULL);
    snprintf(name, sizeof name, "%s.str_off", key);
    int32_t *so = t_fix_i32(FX, name, &ns);
    snprintf(name, sizeof name, "%s.enc", key);
    int32_t *eb = t_fix_i32(FX, name, NULL);
    snprintf(name, sizeof name, "%s.enc_off", key);
    int32_t *eo = t_fix_i32(FX, name, &ne);
    if (!so || !eo || !tok) return;
    int bad = 0;
    int32_t ids[4096];
    for (int64_t i = 0; i + 1 < ns; i++) {
        int64_t len = so[i + 1] - so[i];
        int64_t k = duet_tokenizer_encode(tok, sb + so[i], len, flags, ids, 4096);
        int64_t want = eo[i + 1] - eo[i];
        int ok = k == want;
        for (int64_t j = 0; ok && j < k; j++) ok = ids[j] == eb[eo[i] + j];
        if (!ok && bad++ < 3)
            T_CHECK(0, "%s: string %lld (%lld bytes) encodes to %lld ids, the reference %lld",
                    key, (long long)i, (long long)len, (long long)k, (long long)want);
        /* decoding gives the text back (no specials involved in these strings) */
    }
    T_CHECK(bad == 0, "%s: %d of %lld encodings differ", key, bad, (long long)(ns - 1));
}

static void test_gguf_tokenizers(void) {
    /* the model file's tiny SentencePiece vocabulary */
    duet_model *m = open_fixture("ld_llama_f32.gguf");
    if (m) {
        T_CHECK(m->tok && duet_tokenizer_get_kind(m->tok) == DUET_TOKENIZER_SPM &&
                    duet_tokenizer_vocab_size(m->tok) == 40 && duet_tokenizer_bos(m->tok) == 1 &&
                    duet_tokenizer_eos(m->tok) == 2 && duet_tokenizer_unk(m->tok) == 0 &&
                    duet_tokenizer_default_flags(m->tok) == DUET_TOK_ADD_BOS,
                "llama_f32: SentencePiece tokenizer, bos 1 eos 2 unk 0, add_bos");
        check_encodings(m->tok, "tiny_spm", 0);
        T_CHECK(m->chat_template != NULL, "llama_f32: chat template");
        duet_chat_template *ct = m->chat_template ? duet_chat_template_detect(m->chat_template,
                                                                              "<s>", "</s>")
                                                  : NULL;
        T_CHECK(ct && strcmp(duet_chat_template_name(ct), "llama2") == 0, "llama2 template: %s",
                ct ? duet_chat_template_name(ct) : duet_last_error());
        duet_chat_template_free(ct);
    }
    duet_model_free(m);

    duet_gguf *g = duet_gguf_open(fixture_path("ld_tok_spm.gguf"));
    T_CHECK(g != NULL, "open ld_tok_spm.gguf: %s", duet_last_error());
    char *tpl = NULL;
    duet_tokenizer *tok = g ? duet_tokenizer_from_gguf(g, &tpl) : NULL;
    T_CHECK(tok != NULL, "spm from gguf: %s", duet_last_error());
    if (tok) {
        T_CHECK(duet_tokenizer_vocab_size(tok) == (int64_t)t_fix_scalar(FX, "tok_spm.n") &&
                    duet_tokenizer_token_type(tok, 3) == DUET_TOKEN_BYTE,
                "spm: vocabulary and byte types");
        check_encodings(tok, "tok_spm", DUET_TOK_SPECIALS);
        T_CHECK(tpl && strstr(tpl, "<|im_start|>"), "spm: chat template copied");
    }
    duet_tokenizer_free(tok);
    duet_free(tpl);
    duet_gguf_close(g);

    g = duet_gguf_open(fixture_path("ld_tok_gpt2.gguf"));
    T_CHECK(g != NULL, "open ld_tok_gpt2.gguf: %s", duet_last_error());
    tok = g ? duet_tokenizer_from_gguf(g, NULL) : NULL;
    T_CHECK(tok != NULL, "gpt2 from gguf: %s", duet_last_error());
    if (tok) {
        int32_t *be = t_fix_i32(FX, "tok_gpt2.bos", NULL);
        T_CHECK(duet_tokenizer_get_kind(tok) == DUET_TOKENIZER_GPT2 &&
                    duet_tokenizer_vocab_size(tok) == (int64_t)t_fix_scalar(FX, "tok_gpt2.n") &&
                    be && duet_tokenizer_bos(tok) == be[0] && duet_tokenizer_eos(tok) == be[1],
                "gpt2: kind, vocabulary, bos/eos");
        check_encodings(tok, "tok_gpt2", DUET_TOK_SPECIALS);
    }
    duet_tokenizer_free(tok);
    duet_gguf_close(g);

    g = duet_gguf_open(fixture_path("ld_bad_tok.gguf"));
    tok = g ? duet_tokenizer_from_gguf(g, NULL) : NULL;
    T_CHECK(g && !tok && strstr(duet_last_error(), "'bert'") &&
                strstr(duet_last_error(), "tokenizer.ggml.model"),
            "unknown tokenizer model refused: %s", duet_last_error());
    duet_gguf_close(g);
}

/* ==== llama2.c ============================================================ */

/* Copies fixture `name` to path; 0 on success. */
static int copy_file(const char *name, const char *path) {
    FILE *in = fopen(fixture_path(name), "rb"), *out = fopen(path, "wb");
    char buf[65536];
    size_t n;
    int ok = in && out;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out && fclose(out)) ok = 0;
    return ok ? 0 : -1;
}

static void test_llama2c(void) {
    duet_model_params mp;
    duet_model_params_default(&mp);
    mp.tokenizer = fixture_path("ld_l2c_tokenizer.bin");
    duet_model *m = duet_model_open(fixture_path("ld_l2c_legacy.bin"), &mp);
    T_CHECK(m != NULL, "llama2.c legacy: %s", duet_last_error());
    if (m) {
        const duet_tf_params *p = duet_tf_config(m->tf);
        T_CHECK(strcmp(m->format, "llama2.c") == 0 && p->tied && p->dim == 16 && p->heads == 2 &&
                    p->kv_heads == 1 && p->hidden == 40 && p->layers == 2 && p->ctx == 16,
                "legacy: header (shared classifier from a positive vocab_size)");
        check_model(m, "l2c_legacy", 2e-5);
        T_CHECK(m->tok && duet_tokenizer_bos(m->tok) == 1 && duet_tokenizer_eos(m->tok) == 2 &&
                    (duet_tokenizer_default_flags(m->tok) & DUET_TOK_ADD_BOS),
                "llama2.c tokenizer: bos 1, eos 2, adds bos");
        check_encodings(m->tok, "l2c_tok", 0);
        /* pieces spell the boundary ' '; after bos the dummy-prefix space is
         * dropped, as run.c does (bos itself is CONTROL: its text as stored) */
        int32_t ids[3] = {1, 9, 10}; /* "\n<s>\n" " a" " b" */
        char buf[32];
        int64_t n = duet_tokenizer_decode(m->tok, ids, 3, buf, sizeof buf);
        T_CHECK(n == 8 && memcmp(buf, "\n<s>\na b", 8) == 0, "decode of <s> a b: '%.*s'",
                (int)(n > 0 && n < 32 ? n : 0), buf);
    }
    duet_model_free(m);
    m = duet_model_open(fixture_path("ld_l2c_v1.bin"), &mp);
    T_CHECK(m != NULL, "llama2.c v1: %s", duet_last_error());
    if (m) {
        const duet_tf_params *p = duet_tf_config(m->tf);
        T_CHECK(!p->tied && p->layers == 3 && p->heads == 4 && p->kv_heads == 2,
                "v1: header and the shared-classifier byte");
        check_model(m, "l2c_v1", 2e-5);
    }
    duet_model_free(m);
    /* the tokenizer.bin beside the model is found; none beside means no tokenizer */
    char dir[256], model[300], tokp[300];
    snprintf(dir, sizeof dir, "/tmp/duet_test_l2c_%d", (int)getpid());
    snprintf(model, sizeof model, "%s/model.bin", dir);
    snprintf(tokp, sizeof tokp, "%s/tokenizer.bin", dir);
    mkdir(dir, 0700);
    if (copy_file("ld_l2c_v1.bin", model) == 0) {
        m = duet_model_open(model, NULL);
        T_CHECK(m && !m->tok, "no tokenizer.bin beside: a model without tokenizer");
        duet_model_free(m);
        T_CHECK(copy_file("ld_l2c_tokenizer.bin", tokp) == 0, "copy tokenizer");
        m = duet_model_open(model, NULL);
        T_CHECK(m && m->tok && duet_tokenizer_vocab_size(m->tok) == 40,
                "tokenizer.bin beside the model: %s", m ? "found" : duet_last_error());
        duet_model_free(m);
    }
    unlink(tokp);
    unlink(model);
    rmdir(dir);
    /* a tokenizer of the wrong size */
    duet_tokenizer *t = duet_tokenizer_load_llama2c(fixture_path("ld_l2c_tokenizer.bin"), 50);
    T_CHECK(!t && strstr(duet_last_error(), "ld_l2c_tokenizer.bin") &&
                strstr(duet_last_error(), "token 40"),
            "short tokenizer.bin: %s", duet_last_error());
    t = duet_tokenizer_load_llama2c(fixture_path("ld_l2c_tokenizer.bin"), 30);
    T_CHECK(!t && strstr(duet_last_error(), "more tokens"), "long tokenizer.bin: %s",
            duet_last_error());
}

/* ==== Hugging Face folders =============================================== */

static void test_hf(void) {
    duet_model *m = open_fixture("ld_hf_llama");
    if (m) {
        const duet_tf_params *p = duet_tf_config(m->tf);
        T_CHECK(strcmp(m->format, "hf") == 0 && strcmp(m->arch, "llama") == 0 &&
                    strcmp(m->name, "ld_hf_llama") == 0 && m->weight_type == DUET_QTYPE_BF16,
                "hf llama: format %s arch %s name %s type %d", m->format, m->arch, m->name,
                m->weight_type);
        T_CHECK(p->arch == DUET_TF_ARCH_LLAMA && !p->tied && p->ctx == 128 &&
                    p->rope_theta == 500000.0f && p->kv_heads == 2,
                "hf llama: config.json");
        check_model(m, "hf_llama", 2e-5);
        T_CHECK(m->tok && duet_tokenizer_get_kind(m->tok) == DUET_TOKENIZER_SPM &&
                    duet_tokenizer_bos(m->tok) == 1 && duet_tokenizer_eos(m->tok) == 2 &&
                    (duet_tokenizer_default_flags(m->tok) & DUET_TOK_ADD_BOS),
                "hf llama: SentencePiece-style tokenizer.json, bos/eos from tokenizer_config");
        check_encodings(m->tok, "hf_spm", 0);
        T_CHECK(m->chat_template && strstr(m->chat_template, "[INST]"), "hf llama: template");
    }
    duet_model_free(m);
    m = open_fixture("ld_hf_qwen2");
    if (m) {
        T_CHECK(duet_tf_config(m->tf)->arch == DUET_TF_ARCH_QWEN2 && duet_tf_config(m->tf)->tied &&
                    m->weight_type == DUET_QTYPE_F16,
                "hf qwen2: arch, tied, f16 from two shards");
        check_model(m, "hf_qwen2", 2e-5);
        T_CHECK(m->tok && duet_tokenizer_get_kind(m->tok) == DUET_TOKENIZER_GPT2 &&
                    duet_tokenizer_eos(m->tok) == (int32_t)t_fix_scalar(FX, "hf_bl.eos") &&
                    duet_tokenizer_bos(m->tok) == -1 && duet_tokenizer_default_flags(m->tok) == 0,
                "hf qwen2: byte-level tokenizer, eos from tokenizer_config, no bos");
        check_encodings(m->tok, "hf_bl", 0);
        T_CHECK(m->chat_template && strstr(m->chat_template, "<|im_start|>"), "qwen2 template");
    }
    duet_model_free(m);
    m = duet_model_open(fixture_path("ld_hf_bad_arch"), NULL);
    T_CHECK(!m && strstr(duet_last_error(), "MambaForCausalLM") &&
                strstr(duet_last_error(), "ld_hf_bad_arch/config.json"),
            "hf: unknown architecture: %s", duet_last_error());
    duet_model_free(m);
    m = duet_model_open(fixture_path("ld_hf_bad_missing"), NULL);
    T_CHECK(!m && strstr(duet_last_error(), "model.layers.0.self_attn.k_proj.bias") &&
                strstr(duet_last_error(), "missing"),
            "hf: missing tensor: %s", duet_last_error());
    duet_model_free(m);
}

/* ==== writers: duet convert, duet quantize ================================ */

static const char CORPUS[] =
    "Once upon a time there was a little fox who lived in the woods. Every morning the fox "
    "ran to the river to drink, and every evening the fox ran home to sleep. One day the fox "
    "met a bear by the river. The bear said hello and the fox said hello back. ";

/* A small model of arch `a`, trained a few dozen AdamW steps on CORPUS (so
 * its greedy text is not a constant), saved as a duet checkpoint at path. */
static int train_tiny(duet_tf_arch a, const duet_tokenizer *tok, const char *path,
                      const char *tok_json) {
    int32_t ids[512];
    int64_t n = duet_tokenizer_encode(tok, CORPUS, (int64_t)strlen(CORPUS), 0, ids, 512);
    duet_tf_params p;
    duet_tf_params_default(&p, a);
    p.vocab = duet_tokenizer_vocab_size(tok);
    p.ctx = 32, p.dim = 32, p.layers = 2, p.heads = 4, p.hidden = 64;
    p.kv_heads = a == DUET_TF_ARCH_GPT2 ? 4 : 2;
    duet_tf *m = duet_tf_new(&p, 7);
    duet_graph *g = duet_graph_new(1 << 20);
    int np = 0;
    duet_tensor **params = m ? duet_tf_params_list(m, &np) : NULL;
    duet_adamw opt;
    int ok = m && g && n > 40 && duet_adamw_init(&opt, params, np, 0.9f, 0.95f, 1e-8f, 0.0f) == DUET_OK;
    for (int step = 0; ok && step < 40; step++) {
        const int64_t B = 4, T = 32;
        int32_t x[4 * 32], y[4 * 32];
        for (int64_t b = 0; b < B; b++) {
            int64_t o = (step * 7 + b * 13) % (n - T - 1);
            memcpy(x + b * T, ids + o, T * sizeof(int32_t));
            memcpy(y + b * T, ids + o + 1, T * sizeof(int32_t));
        }
        duet_graph_reset(g);
        duet_tf_zero_grad(m);
        duet_tensor *loss = duet_tf_forward(m, g, x, y, B, T, NULL);
        ok = loss && duet_graph_backward(g, loss) == DUET_OK;
        if (ok) duet_adamw_step(&opt, params, np, 1e-2f);
    }
    if (m && g) duet_adamw_free(&opt);
    ok = ok && duet_tf_save(m, path, tok_json, NULL, 0) == DUET_OK;
    T_CHECK(ok, "train a tiny %s: %s", duet_tf_arch_name(a), duet_last_error());
    duet_graph_free(g);
    duet_tf_free(m);
    return ok ? 0 : -1;
}

/* Greedy continuation of `prompt` for n tokens; also the first logits. */
static void greedy(duet_model *m, int32_t *out, int n, float *first) {
    int32_t ids[64];
    const int64_t V = duet_tf_config(m->tf)->vocab;
    int64_t k = duet_tokenizer_encode(m->tok, "the fox ", 8, 0, ids, 64);
    float *lg = malloc(sizeof(float) * (size_t)V);
    duet_tf_reset(m->tf);
    duet_tf_feed(m->tf, ids, k, lg, 0);
    memcpy(first, lg, sizeof(float) * (size_t)V);
    for (int i = 0; i < n; i++) {
        out[i] = argmax(lg, V);
        duet_tf_feed(m->tf, &out[i], 1, lg, 0);
    }
    free(lg);
}

static void test_convert(void) {
    char dir[128], ckpt[192], gguf[192], tokp[192];
    snprintf(dir, sizeof dir, "/tmp/duet_test_conv_%d", (int)getpid());
    snprintf(ckpt, sizeof ckpt, "%s/m.safetensors", dir);
    snprintf(gguf, sizeof gguf, "%s/m.gguf", dir);
    snprintf(tokp, sizeof tokp, "%s/tok.json", dir);
    mkdir(dir, 0700);
    duet_tokenizer *tok = duet_tokenizer_train(CORPUS, (int64_t)strlen(CORPUS), 300, NULL);
    char *tj = NULL;
    FILE *f = NULL;
    if (tok && duet_tokenizer_save(tok, tokp) == DUET_OK && (f = fopen(tokp, "rb"))) {
        tj = calloc(1, 1 << 20);
        fread(tj, 1, (1 << 20) - 1, f);
        fclose(f);
    }
    T_CHECK(tj != NULL, "tokenizer json");
    const duet_tf_arch archs[3] = {DUET_TF_ARCH_LLAMA, DUET_TF_ARCH_GPT2, DUET_TF_ARCH_QWEN2};
    for (int ai = 0; tj && ai < 3; ai++) {
        const char *an = duet_tf_arch_name(archs[ai]);
        if (train_tiny(archs[ai], tok, ckpt, tj)) continue;
        duet_model_params mp;
        duet_model_params_default(&mp);
        duet_model *orig = duet_model_open(ckpt, &mp);
        T_CHECK(orig && strcmp(orig->format, "duet") == 0 && orig->tok, "%s: open the checkpoint: %s",
                an, duet_last_error());
        if (!orig) continue;
        const int64_t V = duet_tf_config(orig->tf)->vocab;
        float *l0 = malloc(sizeof(float) * (size_t)V), *l1 = malloc(sizeof(float) * (size_t)V);
        int32_t g0[24], g1[24];
        greedy(orig, g0, 24, l0);
        int distinct = 0;
        for (int i = 1; i < 24; i++) distinct += g0[i] != g0[0];
        T_CHECK(distinct > 0, "%s: the trained model's greedy text is not one token repeated", an);
        /* f32: the same arithmetic, so the same logits and text */
        duet_status s = duet_tf_save_gguf(orig->tf, orig->tok, gguf, DUET_QTYPE_F32, "tiny");
        T_CHECK(s == DUET_OK, "%s: save gguf f32: %s", an, duet_last_error());
        duet_model *back = duet_model_open(gguf, &mp);
        T_CHECK(back && strcmp(back->format, "gguf") == 0 && strcmp(back->arch, an) == 0 &&
                    back->tok && strcmp(back->name, "tiny") == 0,
                "%s: GGUF opens back: %s", an, back ? back->arch : duet_last_error());
        if (back) {
            const duet_tf_params *a = duet_tf_config(orig->tf), *b = duet_tf_config(back->tf);
            T_CHECK(a->dim == b->dim && a->layers == b->layers && a->heads == b->heads &&
                        a->kv_heads == b->kv_heads && a->hidden == b->hidden &&
                        a->vocab == b->vocab && a->tied == b->tied && a->ctx == b->ctx &&
                        a->norm_eps == b->norm_eps && a->rope_theta == b->rope_theta,
                    "%s: config round trip", an);
            greedy(back, g1, 24, l1);
            T_CHECK(memcmp(g0, g1, sizeof g0) == 0, "%s: greedy text after GGUF f32 differs", an);
            double e = 0, mx = 0;
            for (int64_t i = 0; i < V; i++) {
                e = fmax(e, fabs((double)l0[i] - (double)l1[i]));
                mx = fmax(mx, fabs((double)l0[i]));
            }
            T_CHECK(e <= 1e-5 * mx, "%s: f32 GGUF logits differ by %.3g (max %.3g)", an, e, mx);
            /* the tokenizer: same ids for ASCII text, same bytes back */
            int32_t x[256], y[256];
            const char *txt = "Every evening the bear, the fox and 3 owls ran home!\n";
            int64_t nx = duet_tokenizer_encode(orig->tok, txt, (int64_t)strlen(txt), 0, x, 256);
            int64_t ny = duet_tokenizer_encode(back->tok, txt, (int64_t)strlen(txt), 0, y, 256);
            char buf[256];
            int64_t nb = duet_tokenizer_decode(back->tok, y, ny, buf, sizeof buf);
            T_CHECK(nx == ny && memcmp(x, y, sizeof(int32_t) * (size_t)nx) == 0 &&
                        nb == (int64_t)strlen(txt) && memcmp(buf, txt, (size_t)nb) == 0,
                    "%s: tokenizer round trip through tokenizer.ggml.*", an);
            T_CHECK(duet_tokenizer_eos(back->tok) == duet_tokenizer_eos(orig->tok),
                    "%s: eos id kept", an);
        }
        duet_model_free(back);
        /* q8_0: the linears as duet's own q8_0 copy, the token table q8_0 too */
        s = duet_tf_save_gguf(orig->tf, orig->tok, gguf, DUET_QTYPE_Q8_0, NULL);
        back = s == DUET_OK ? duet_model_open(gguf, &mp) : NULL;
        T_CHECK(back && back->weight_type == DUET_QTYPE_Q8_0, "%s: q8_0 GGUF: %s", an,
                duet_last_error());
        if (back) {
            greedy(back, g1, 1, l1);
            double e = 0, mx = 0;
            for (int64_t i = 0; i < V; i++) {
                e = fmax(e, fabs((double)l0[i] - (double)l1[i]));
                mx = fmax(mx, fabs((double)l0[i]));
            }
            /* weights rounded to 8 bits and activations too: ~1e-2 relative */
            T_CHECK(e <= 4e-2 * mx, "%s: q8_0 GGUF logits differ by %.3g (max %.3g)", an, e, mx);
        }
        duet_model_free(back);
        free(l0);
        free(l1);
        /* an external model cannot be converted */
        back = duet_model_open(fixture_path("ld_llama_f32.gguf"), NULL);
        T_CHECK(back && duet_tf_save_gguf(back->tf, NULL, gguf, DUET_QTYPE_F32, NULL) ==
                            DUET_ERR_UNSUPPORTED,
                "converting an external model is refused");
        duet_model_free(back);
        duet_model_free(orig);
    }
    duet_tokenizer_free(tok);
    free(tj);

    /* duet quantize: f32 GGUF -> q8_0; metadata (tokenizer, template) kept */
    duet_status s = duet_gguf_requantize(fixture_path("ld_llama_f32.gguf"), gguf, DUET_QTYPE_Q8_0);
    T_CHECK(s == DUET_OK, "requantize q8_0: %s", duet_last_error());
    duet_gguf *g = s == DUET_OK ? duet_gguf_open(gguf) : NULL;
    duet_gguf *g0 = duet_gguf_open(fixture_path("ld_llama_f32.gguf"));
    if (g && g0) {
        int types_ok = duet_gguf_tensor_count(g) == duet_gguf_tensor_count(g0);
        for (int64_t i = 0; types_ok && i < duet_gguf_tensor_count(g); i++) {
            const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
            types_ok = t->type == (t->n_dims == 1 ? DUET_QTYPE_F32 : DUET_QTYPE_Q8_0);
        }
        int64_t ft = -1;
        T_CHECK(types_ok && duet_gguf_get_int(g, "general.file_type", &ft) == DUET_OK && ft == 7 &&
                    duet_gguf_kv_count(g) == duet_gguf_kv_count(g0) + 1,
                "requantize: matrices q8_0, vectors f32, keys kept, file_type 7");
    }
    duet_gguf_close(g);
    duet_gguf_close(g0);
    duet_model *m = duet_model_open(gguf, NULL);
    T_CHECK(m && m->tok && m->chat_template, "requantized file opens with its tokenizer");
    if (m) check_model_(m, "llama_f32", 4e-2, 0);
    duet_model_free(m);
    /* K-quants: rows of 256 -> q4_K, rows of 32 fall back to q8_0 */
    s = duet_gguf_requantize(fixture_path("ld_llama_kq.gguf"), gguf, DUET_QTYPE_Q4_K);
    g = s == DUET_OK ? duet_gguf_open(gguf) : NULL;
    T_CHECK(g != NULL, "requantize q4_K: %s", duet_last_error());
    if (g) {
        const duet_gguf_tensor *down = duet_gguf_find_tensor(g, "blk.1.ffn_down.weight");
        const duet_gguf_tensor *up = duet_gguf_find_tensor(g, "blk.1.ffn_up.weight");
        const duet_gguf_tensor *nrm = duet_gguf_find_tensor(g, "blk.1.ffn_norm.weight");
        T_CHECK(down && down->type == DUET_QTYPE_Q4_K && up && up->type == DUET_QTYPE_Q8_0 && nrm &&
                    nrm->type == DUET_QTYPE_F32,
                "q4_K: rows of 256 in q4_K, rows of 32 in q8_0, norms f32");
    }
    duet_gguf_close(g);
    m = duet_model_open(gguf, NULL);
    /* 4-bit weights: a sanity bound only (test_quant holds the quantizer) */
    if (m) check_model_(m, "llama_kq", 0.25, 0);
    duet_model_free(m);
    s = duet_gguf_requantize(fixture_path("ld_llama_f32.gguf"), gguf, DUET_QTYPE_Q8_K);
    T_CHECK(s == DUET_ERR_ARG, "q8_K is not a weight type");
    unlink(gguf);
    unlink(ckpt);
    unlink(tokp);
    rmdir(dir);
}

/* ==== the CLI: duet text, chat, bench, convert, quantize ================== */

static char duet_bin[512], cli_tmp[128];

/* Runs `duet args` with stdin from `input` (may be NULL); returns the exit
 * status; *out gets stdout (malloc'ed, NUL-terminated). */
static int run_duet(const char *args, const char *input, char **out) {
    char cmd[2048], of[192], inf[192];
    snprintf(of, sizeof of, "%s/out.txt", cli_tmp);
    snprintf(inf, sizeof inf, "%s/in.txt", cli_tmp);
    FILE *f = fopen(inf, "wb");
    if (f) {
        if (input) fputs(input, f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "%s %s <%s >%s 2>%s/err.txt", duet_bin, args, inf, of, cli_tmp);
    int st = system(cmd);
    *out = calloc(1, 65536);
    f = fopen(of, "rb");
    if (f && *out) {
        size_t n = fread(*out, 1, 65535, f);
        (*out)[n] = 0;
    }
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    const char *build = getenv("BUILD");
    char cwd[256];
    snprintf(duet_bin, sizeof duet_bin, "%s/%s/duet", getcwd(cwd, sizeof cwd) ? cwd : ".",
             build && *build ? build : "build");
    if (access(duet_bin, X_OK) != 0) {
        T_CHECK(0, "%s not found: run from the repository root after `make`", duet_bin);
        return;
    }
    snprintf(cli_tmp, sizeof cli_tmp, "/tmp/duet_test_ldcli_%d", (int)getpid());
    mkdir(cli_tmp, 0700);
    char args[1024], *out = NULL;
    /* duet text: the greedy text of the library, with bos and the space rules */
    duet_model *m = open_fixture("ld_llama_f32.gguf");
    if (m) {
        int32_t ids[64];
        const int64_t V = duet_tf_config(m->tf)->vocab;
        int64_t n = duet_tokenizer_encode(m->tok, "ab ba", 5, DUET_TOK_ADD_BOS, ids, 64);
        float *lg = malloc(sizeof(float) * (size_t)V);
        char want[256] = "ab ba";
        size_t wl = 5;
        duet_tf_feed(m->tf, ids, n, lg, 0);
        int32_t prev = ids[n - 1];
        for (int i = 0; i < 6; i++) {
            int32_t id = argmax(lg, V);
            if (id == duet_tokenizer_eos(m->tok)) break;
            wl += (size_t)duet_tokenizer_decode_piece(m->tok, prev, id, want + wl, 64);
            prev = id;
            duet_tf_feed(m->tf, &id, 1, lg, 0);
        }
        want[wl++] = '\n';
        want[wl] = 0;
        free(lg);
        snprintf(args, sizeof args, "text --model %s -t 0 -n 6 'ab ba'",
                 fixture_path("ld_llama_f32.gguf"));
        int rc = run_duet(args, NULL, &out);
        T_CHECK(rc == 0 && out && strcmp(out, want) == 0, "duet text gguf: rc %d, '%s' want '%s'",
                rc, out ? out : "", want);
        free(out);
    }
    duet_model_free(m);
    /* llama2.c with --tokenizer; a Hugging Face folder */
    snprintf(args, sizeof args, "text --model %s --tokenizer %s -t 0 -n 4 ab",
             fixture_path("ld_l2c_v1.bin"), fixture_path("ld_l2c_tokenizer.bin"));
    int rc = run_duet(args, NULL, &out);
    T_CHECK(rc == 0 && out && strncmp(out, "ab", 2) == 0, "duet text llama2.c: rc %d", rc);
    free(out);
    snprintf(args, sizeof args, "text --model %s -n 4 ab", fixture_path("ld_l2c_v1.bin"));
    rc = run_duet(args, NULL, &out);
    T_CHECK(rc == 4, "duet text llama2.c without tokenizer: rc %d (want 4)", rc);
    free(out);
    snprintf(args, sizeof args, "text --model %s -t 0 -n 4 'hello'", fixture_path("ld_hf_qwen2"));
    rc = run_duet(args, NULL, &out);
    T_CHECK(rc == 0 && out && strncmp(out, "hello", 5) == 0, "duet text hf: rc %d", rc);
    free(out);
    snprintf(args, sizeof args, "text --model %s x", fixture_path("ld_bad_arch.gguf"));
    rc = run_duet(args, NULL, &out);
    T_CHECK(rc == 4, "duet text on a bad file: rc %d (want 4)", rc);
    free(out);
    /* duet chat: two turns and a reset from a pipe, one reply line each */
    snprintf(args, sizeof args, "chat -q --model %s -t 0 -n 5", fixture_path("ld_llama_f32.gguf"));
    rc = run_duet(args, "ab ba\nabc\n/reset\ncab\n", &out);
    int lines = 0;
    for (const char *c = out; c && *c; c++) lines += *c == '\n';
    T_CHECK(rc == 0 && lines == 3, "duet chat: rc %d, %d reply lines", rc, lines);
    free(out);
    snprintf(args, sizeof args, "chat -q --model %s", fixture_path("ld_l2c_v1.bin"));
    rc = run_duet(args, "hi\n", &out);
    T_CHECK(rc == 4, "duet chat without a tokenizer: rc %d", rc);
    free(out);
    /* duet bench */
    snprintf(args, sizeof args, "bench --model %s -p 8 -n 8 -r 1 --bandwidth-mib 16",
             fixture_path("ld_llama_mix.gguf"));
    rc = run_duet(args, NULL, &out);
    T_CHECK(rc == 0 && out && strstr(out, "pp8") && strstr(out, "tg8") && strstr(out, "GB/s") &&
                strstr(out, "; median: "),
            "duet bench: rc %d: %s", rc, out ? out : "");
    {   /* the KV bytes in the bound: tg8's tokens 1..8 read positions 0..i of
         * every layer's K and V (f32): on average 5.5 positions */
        duet_model *mm = open_fixture("ld_llama_mix.gguf");
        char want[96] = "(no model)";
        if (mm) {
            const duet_tf_params *q = duet_tf_config(mm->tf);
            const double kv = 4.0 * (double)(q->layers * 2 * q->kv_heads * (q->dim / q->heads)) * 5.5;
            snprintf(want, sizeof want, "KV cache read per token: %.2f KiB (f32 cache", kv / 1024);
            duet_model_free(mm);
        }
        T_CHECK(out && strstr(out, want), "duet bench counts the KV cache: want '%s' in %s", want,
                out ? out : "");
    }
    free(out);
    snprintf(args, sizeof args, "bench --model %s -p 8 -n 8 -r 1 --bandwidth-mib 0 --no-mmap",
             fixture_path("ld_llama_mix.gguf"));
    rc = run_duet(args, NULL, &out);
    T_CHECK(rc == 0 && out && strstr(out, "tg8") && strstr(out, "read into memory"),
            "duet bench --no-mmap: rc %d: %s", rc, out ? out : "");
    free(out);
    {
        const int vnni = duet_x16_ok(DUET_QTYPE_Q4_K, 16, 256);
        snprintf(args, sizeof args, "bench --model %s -p 8 -n 8 -r 1 --bandwidth-mib 0",
                 fixture_path("ld_llama_kq.gguf"));
        rc = run_duet(args, NULL, &out);
        T_CHECK(rc == 0 && out && strstr(out, "tg8") && !strstr(out, "repacked") == !vnni,
                "duet bench says what it repacked (%s): rc %d: %s", vnni ? "VNNI" : "no VNNI", rc,
                out ? out : "");
        free(out);
        snprintf(args, sizeof args, "bench --model %s -p 8 -n 8 -r 1 --bandwidth-mib 0 --no-repack",
                 fixture_path("ld_llama_kq.gguf"));
        rc = run_duet(args, NULL, &out);
        T_CHECK(rc == 0 && out && strstr(out, "tg8") && !strstr(out, "repacked"),
                "duet bench --no-repack: rc %d: %s", rc, out ? out : "");
        free(out);
    }
    snprintf(args, sizeof args, "bench --model %s -p 8 -n 8 -r 1 --bandwidth-mib 3",
             fixture_path("ld_llama_mix.gguf"));
    rc = run_duet(args, NULL, &out);
    T_CHECK(rc == 2, "duet bench --bandwidth-mib 3 refused: rc %d", rc);
    free(out);
    /* duet quantize and convert */
    snprintf(args, sizeof args, "quantize %s %s/q4.gguf --type q4_0", fixture_path("ld_llama_f32.gguf"),
             cli_tmp);
    rc = run_duet(args, NULL, &out);
    free(out);
    snprintf(args, sizeof args, "text --model %s/q4.gguf -n 3 ab", cli_tmp);
    int rc2 = run_duet(args, NULL, &out);
    T_CHECK(rc == 0 && rc2 == 0, "duet quantize q4_0, then text: rc %d %d", rc, rc2);
    free(out);
    snprintf(args, sizeof args, "quantize %s %s/x.gguf --type q3_k", fixture_path("ld_llama_f32.gguf"),
             cli_tmp);
    rc = run_duet(args, NULL, &out);
    T_CHECK(rc == 2, "duet quantize --type q3_k refused: rc %d", rc);
    free(out);
    snprintf(args, sizeof args, "convert %s --out %s/x.gguf", fixture_path("ld_llama_f32.gguf"),
             cli_tmp);
    rc = run_duet(args, NULL, &out);
    T_CHECK(rc == 2, "duet convert of a GGUF is refused: rc %d", rc);
    free(out);
    snprintf(args, sizeof args, "rm -rf %s", cli_tmp);
    if (system(args) != 0) fprintf(stderr, "could not remove %s\n", cli_tmp);
}

/* ==== refusals ============================================================ */

static void expect_refusal(const char *file, const char *w1, const char *w2) {
    const char *path = fixture_path(file);
    duet_model *m = duet_model_open(path, NULL);
    const char *e = duet_last_error();
    T_CHECK(m == NULL && strstr(e, file) && strstr(e, w1) && (!w2 || strstr(e, w2)),
            "%s: refused naming the file, '%s'%s%s: got \"%s\"", file, w1, w2 ? " and " : "",
            w2 ? w2 : "", m ? "(opened)" : e);
    duet_model_free(m);
}

static void test_refusals(void) {
    expect_refusal("ld_bad_arch.gguf", "mamba", "general.architecture");
    expect_refusal("ld_bad_missing.gguf", "blk.0.ffn_up.weight", "missing");
    expect_refusal("ld_bad_shape.gguf", "blk.0.attn_k.weight", "[32, 16]");
    expect_refusal("ld_bad_moe.gguf", "expert_count", NULL);
    expect_refusal("ld_bad_nokey.gguf", "llama.block_count", NULL);
    expect_refusal("ld_l2c_bad_trunc.bin", "llama2.c", "truncated");
    expect_refusal("ld_l2c_bad_v2.bin", "version 2", NULL);
    duet_model *m = duet_model_open("/nonexistent/model.gguf", NULL);
    T_CHECK(!m && strstr(duet_last_error(), "/nonexistent/model.gguf"), "missing file: %s",
            duet_last_error());
    m = duet_model_open(fixture_path("ld_expect.bin"), NULL);
    T_CHECK(!m && strstr(duet_last_error(), "not a model file"), "not a model: %s",
            duet_last_error());
}

/* ==== read into memory (duet_model_params.no_mmap) ========================== */

/* The same model read instead of mapped: the same logits, bit for bit, for
 * every format the loaders map (GGUF, quantized GGUF, llama2.c, a Hugging
 * Face folder's safetensors). */
static void test_no_mmap(void) {
    static const char *files[] = {"ld_llama_f32.gguf", "ld_llama_mix.gguf", "ld_llama_kq.gguf",
                                  "ld_l2c_v1.bin", "ld_hf_llama", "ld_qwen2_q8.gguf"};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        duet_model_params mp;
        duet_model_params_default(&mp);
        duet_model *a = duet_model_open(fixture_path(files[f]), &mp);
        mp.no_mmap = 1;
        duet_model *b = duet_model_open(fixture_path(files[f]), &mp);
        int same = a && b;
        if (same) {
            const int64_t V = duet_tf_config(a->tf)->vocab;
            float *la = malloc(sizeof(float) * (size_t)V), *lb = malloc(sizeof(float) * (size_t)V);
            const int32_t ids[4] = {1, 2, 3, 1};
            same = la && lb && duet_tf_feed(a->tf, ids, 4, la, 0) == DUET_OK &&
                   duet_tf_feed(b->tf, ids, 4, lb, 0) == DUET_OK &&
                   memcmp(la, lb, sizeof(float) * (size_t)V) == 0;
            for (int i = 0; i < 3 && same; i++) /* and one token at a time */
                same = duet_tf_feed(a->tf, ids + i, 1, la, 0) == DUET_OK &&
                       duet_tf_feed(b->tf, ids + i, 1, lb, 0) == DUET_OK &&
                       memcmp(la, lb, sizeof(float) * (size_t)V) == 0;
            free(la), free(lb);
        }
        T_CHECK(same, "%s read into memory (no_mmap): the mapped model's logits, bit for bit (%s)",
                files[f], a && b ? "ok" : duet_last_error());
        duet_model_free(a);
        duet_model_free(b);
    }
    duet_model_params mp;
    duet_model_params_default(&mp);
    mp.no_mmap = 1;
    duet_model *m = duet_model_open("/nonexistent/model.gguf", &mp);
    T_CHECK(!m && strstr(duet_last_error(), "/nonexistent/model.gguf"),
            "no_mmap: a missing file is refused by name: %s", duet_last_error());
    duet_model_free(m);
}

/* ==== repacked matrices (duet_model_params.no_repack) ===================== */

/* Q4_0 / Q8_0 / Q4_K / Q5_K / Q6_K matrices are repacked at open where the CPU has the
 * VNNI kernels (kernels/quant_x16.h); the reference tests above run that
 * way. Here: the same model with no_repack gives the same logits to
 * rounding (integer block sums are exact in both; the float scaling runs in
 * another order), for a batch (the prompt's GEMM) and token by token (the
 * decode), mapped and read into memory. */
static void test_repack(void) {
    static const char *files[] = {"ld_llama_mix.gguf", "ld_llama_kq.gguf"};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        for (int nm = 0; nm < 2; nm++) {
            duet_model_params mp;
            duet_model_params_default(&mp);
            mp.no_mmap = nm;
            duet_model *a = duet_model_open(fixture_path(files[f]), &mp);
            mp.no_repack = 1;
            duet_model *b = duet_model_open(fixture_path(files[f]), &mp);
            T_CHECK(a && b, "%s: opens with and without repacking (%s)", files[f],
                    a && b ? "ok" : duet_last_error());
            if (!a || !b) {
                duet_model_free(a);
                duet_model_free(b);
                continue;
            }
            const int vnni = duet_x16_ok(DUET_QTYPE_Q4_K, 16, 256);
            T_CHECK(b->repacked == 0 && (vnni ? a->repacked > 0 : a->repacked == 0),
                    "%s%s: %lld bytes repacked (%s), none with no_repack", files[f],
                    nm ? " read" : "", (long long)a->repacked, vnni ? "VNNI" : "no VNNI here");
            const int64_t V = duet_tf_config(a->tf)->vocab;
            float *la = malloc(sizeof(float) * (size_t)V), *lb = malloc(sizeof(float) * (size_t)V);
            const int32_t ids[5] = {1, 2, 3, 1, 4};
            double worst = 0;
            int ok = la && lb;
            for (int step = 0; step < 3 && ok; step++) { /* a batch of 4, then 1 token twice */
                const int32_t *in = step == 0 ? ids : ids + 2 + step;
                const int64_t n = step == 0 ? 4 : 1;
                ok = duet_tf_feed(a->tf, in, n, la, 0) == DUET_OK &&
                     duet_tf_feed(b->tf, in, n, lb, 0) == DUET_OK;
                double mx = 0;
                for (int64_t i = 0; i < V && ok; i++) mx = fmax(mx, fabs((double)lb[i]));
                for (int64_t i = 0; i < V && ok; i++)
                    worst = fmax(worst, fabs((double)la[i] - (double)lb[i]) / (mx + 1e-30));
            }
            T_CHECK(ok && worst <= 1e-4, "%s%s: repacked logits = file layout's to %.1e of the "
                    "largest (batch and decode)", files[f], nm ? " read" : "", worst);
            free(la), free(lb);
            duet_model_free(a);
            duet_model_free(b);
        }
    }
    /* a tied model (the token table is the output matrix) in Q4_0, vocab a
     * multiple of 16: the table is repacked with the rest, and its lookups
     * read the repacked rows — read into memory, whose file pages of the
     * repacked matrices are given back (the table's 147 KB: zeros if they
     * were read) */
    char path[128];
    snprintf(path, sizeof path, "/tmp/duet_test_tied_%d.gguf", (int)getpid());
    duet_tf_params p;
    duet_tf_params_default(&p, DUET_TF_ARCH_LLAMA);
    p.vocab = 4096, p.dim = 64, p.hidden = 128, p.layers = 2, p.heads = 4, p.kv_heads = 2;
    p.ctx = 16, p.tied = 1;
    duet_tf *tf = duet_tf_new(&p, 11);
    T_CHECK(tf && duet_tf_save_gguf(tf, NULL, path, DUET_QTYPE_Q4_0, "tied") == DUET_OK,
            "tied Q4_0 GGUF written: %s", duet_last_error());
    duet_tf_free(tf);
    duet_model_params mp;
    duet_model_params_default(&mp);
    mp.no_mmap = 1;
    duet_model *a = duet_model_open(path, &mp);
    mp.no_repack = 1;
    duet_model *b = duet_model_open(path, &mp);
    if (a && b) {
        /* every matrix: q, k, v, o, gate, up, down per layer, and the table */
        const int64_t KV = p.kv_heads * (p.dim / p.heads);
        const int64_t per = 2 * p.dim * p.dim + 2 * KV * p.dim + 3 * p.hidden * p.dim;
        const int64_t want = duet_x16_ok(DUET_QTYPE_Q4_0, 16, 32)
                                 ? (p.layers * per + p.vocab * p.dim) / QK * Q4_0_BYTES : 0;
        T_CHECK(a->repacked == want, "tied Q4_0: %lld bytes repacked, want %lld (the token "
                "table included)", (long long)a->repacked, (long long)want);
        static float la[4096], lb[4096];
        const int32_t ids[6] = {1, 700, 3000, 4095, 2, 9};
        double worst = 0;
        int ok = 1;
        for (int step = 0; step < 3 && ok; step++) {
            const int32_t *in = step == 0 ? ids : ids + 3 + step;
            const int64_t n = step == 0 ? 4 : 1;
            ok = duet_tf_feed(a->tf, in, n, la, 0) == DUET_OK &&
                 duet_tf_feed(b->tf, in, n, lb, 0) == DUET_OK;
            double mx = 0;
            for (int i = 0; i < 4096 && ok; i++) mx = fmax(mx, fabs((double)lb[i]));
            for (int i = 0; i < 4096 && ok; i++)
                worst = fmax(worst, fabs((double)la[i] - (double)lb[i]) / (mx + 1e-30));
        }
        T_CHECK(ok && worst <= 1e-4, "tied Q4_0 read into memory: repacked logits = file "
                "layout's to %.1e of the largest (batch and decode)", worst);
        /* another kernel set forced after the repacking: the matrices stay
         * repacked and are still multiplied (the x16 kernels need only the
         * CPU's VNNI) */
        char isa[16];
        snprintf(isa, sizeof isa, "%s", duet_kernel_isa());
        if (duet_kernel_force("avx2") == DUET_OK) {
            duet_tf_reset(a->tf);
            duet_tf_reset(b->tf);
            const int fa = duet_tf_feed(a->tf, ids, 4, la, 0) == DUET_OK;
            const int fb = duet_tf_feed(b->tf, ids, 4, lb, 0) == DUET_OK;
            double w2 = 0, mx = 0;
            for (int i = 0; i < 4096; i++) mx = fmax(mx, fabs((double)lb[i]));
            for (int i = 0; i < 4096; i++)
                w2 = fmax(w2, fabs((double)la[i] - (double)lb[i]) / (mx + 1e-30));
            T_CHECK(fa && fb && w2 <= 1e-4, "repacked model after forcing the avx2 set: runs (%s), "
                    "logits to %.1e", fa ? "ok" : duet_last_error(), w2);
            duet_kernel_force(isa);
        }
    } else {
        T_CHECK(0, "tied Q4_0 GGUF opens: %s", duet_last_error());
    }
    duet_model_free(a);
    duet_model_free(b);
    unlink(path);
}

int main(void) {
    duet_init();
    FX = t_fix_load("ld_expect.bin");
    if (!FX) return t_done();
    test_gguf_models();
    test_gguf_tokenizers();
    test_llama2c();
    test_hf();
    test_convert();
    test_cli();
    test_refusals();
    test_no_mmap();
    test_repack();
    t_fix_free(FX);
    return t_done();
}
