/*
 * loaders.c — language models in other programs' files: duet_model_open
 * (which format a path holds), GGUF models (llama.cpp: archs llama, qwen2,
 * gpt2) and llama2.c checkpoints as external-weight transformers
 * (tf_internal.h), the tokenizer of GGUF metadata and llama2.c's
 * tokenizer.bin. Hugging Face folders are read in hf.c; the GGUF writers
 * live in gguf_export.c.
 *
 * Layout facts the readers rely on:
 *  - GGUF dims are ggml's: ne[0] varies fastest, so a matrix with
 *    ne = {K, M} is M rows of K — duet's [M, K]. Rows are used in place.
 *  - GGUF "llama" stores wq/wk permuted for ggml's "normal" RoPE, which turns
 *    adjacent pairs (2i, 2i+1): duet's llama order, so no permutation.
 *    "qwen2" uses ggml's NeoX RoPE (pairs (i, i + HS/2)).
 *  - GGUF "gpt2" fuses q, k, v into attn_qkv (rows q | k | v): three views.
 *  - llama2.c's run.c turns adjacent pairs (i, i+1) with
 *    freq = 10000^(-(i mod HS)/HS), i even: the same convention; eps 1e-5.
 *
 * What it is not: a general GGUF model zoo — MoE, partial rotary, sliding
 * windows, YaRN and other archs are refused by name.
 */
#include "core/internal.h"
#include "formats/formats.h"
#include "models/loaders.h"
#include "models/tf_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ==== shared helpers ===================================================== */

void duet_model_params_default(duet_model_params *p) {
    memset(p, 0, sizeof *p);
}

int64_t loaders_ctx(const duet_model_params *p, int64_t file_ctx) {
    if (p && p->ctx > 0) return p->ctx;
    if (file_ctx <= 0) file_ctx = 2048;
    return DUET_MIN(file_ctx, 4096);
}

char *loaders_strndup(const char *s, int64_t n) {
    char *c = duet_alloc((size_t)n + 1);
    if (!c) return NULL;
    memcpy(c, s, (size_t)n);
    c[n] = 0;
    return c;
}

void duet_model_free(duet_model *m) {
    if (!m) return;
    duet_tf_free(m->tf);
    duet_tokenizer_free(m->tok);
    duet_free(m->chat_template);
    duet_free(m);
}

/* Copies s[0..n) into a fixed field (truncating, NUL-terminated). */
static void set_field(char *dst, size_t cap, const char *s, int64_t n) {
    size_t k = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
    memcpy(dst, s, k);
    dst[k] = 0;
}

/* ==== tokenizer from GGUF metadata ======================================== */

/* Reads an optional token id key into *id (-1 when absent); 0 on success. */
static int gguf_token_id(const duet_gguf *g, const char *key, int64_t n, int32_t *id) {
    *id = -1;
    if (duet_gguf_find_key(g, key) < 0) return 0;
    int64_t v;
    if (duet_gguf_get_int(g, key, &v) != DUET_OK) return -1;
    if (v < 0 || v >= n) {
        duet_set_error(DUET_ERR_FORMAT, "GGUF metadata %s = %lld is not a token id (the "
                       "vocabulary has %lld tokens)", key, (long long)v, (long long)n);
        return -1;
    }
    *id = (int32_t)v;
    return 0;
}

/* Reads an optional bool key (default dflt); 0 on success. */
static int gguf_opt_bool(const duet_gguf *g, const char *key, int dflt, int *out) {
    *out = dflt;
    if (duet_gguf_find_key(g, key) < 0) return 0;
    return duet_gguf_get_bool(g, key, out) == DUET_OK ? 0 : -1;
}

/* A string array key into pointer/length arrays (duet_alloc'ed); 0 on success. */
static int gguf_str_array(const duet_gguf *g, const char *key, const char ***s, int64_t **lens,
                          int64_t *n) {
    duet_gguf_type et;
    *s = NULL;
    *lens = NULL;
    if (duet_gguf_get_arr(g, key, &et, n) != DUET_OK) return -1;
    if (et != DUET_GGUF_TYPE_STRING) {
        duet_set_error(DUET_ERR_FORMAT, "GGUF metadata %s is an array of %s; expected strings",
                       key, duet_gguf_type_name(et));
        return -1;
    }
    *s = duet_alloc((size_t)(*n ? *n : 1) * sizeof **s);
    *lens = duet_alloc((size_t)(*n ? *n : 1) * sizeof **lens);
    if (!*s || !*lens) return -1;
    for (int64_t i = 0; i < *n; i++)
        if (duet_gguf_get_arr_str(g, key, i, &(*s)[i], &(*lens)[i]) != DUET_OK) return -1;
    return 0;
}

duet_tokenizer *duet_tokenizer_from_gguf(const duet_gguf *g, char **chat_template) {
    if (chat_template) *chat_template = NULL;
    const char *model;
    int64_t mlen;
    if (duet_gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen) != DUET_OK) return NULL;
    int spm;
    if (mlen == 5 && memcmp(model, "llama", 5) == 0) {
        spm = 1;
    } else if (mlen == 4 && memcmp(model, "gpt2", 4) == 0) {
        spm = 0;
    } else {
        duet_set_error(DUET_ERR_UNSUPPORTED, "GGUF tokenizer.ggml.model is '%.*s'; duet reads "
                       "'llama' (SentencePiece BPE) and 'gpt2' (byte-level BPE)", (int)mlen,
                       model);
        return NULL;
    }
    duet_tokenizer *t = NULL;
    const char **tokens = NULL, **merges = NULL;
    int64_t *lens = NULL, *mlens = NULL, n = 0, nm = 0;
    float *scores = NULL;
    int32_t *types = NULL;
    char pre[64];
    duet_tokenizer_vocab v;
    duet_tokenizer_vocab_default(&v);
    if (gguf_str_array(g, "tokenizer.ggml.tokens", &tokens, &lens, &n)) goto done;
    if (n < 1) {
        duet_set_error(DUET_ERR_FORMAT, "GGUF tokenizer.ggml.tokens is empty");
        goto done;
    }
    if (duet_gguf_find_key(g, "tokenizer.ggml.scores") >= 0) {
        scores = duet_alloc((size_t)n * sizeof *scores);
        if (!scores || duet_gguf_get_arr_f32(g, "tokenizer.ggml.scores", scores, n) != DUET_OK)
            goto done;
    }
    if (duet_gguf_find_key(g, "tokenizer.ggml.token_type") >= 0) {
        types = duet_alloc((size_t)n * sizeof *types);
        if (!types || duet_gguf_get_arr_i32(g, "tokenizer.ggml.token_type", types, n) != DUET_OK)
            goto done;
    }
    if (!spm && duet_gguf_find_key(g, "tokenizer.ggml.merges") >= 0 &&
        gguf_str_array(g, "tokenizer.ggml.merges", &merges, &mlens, &nm))
        goto done;
    if (gguf_token_id(g, "tokenizer.ggml.bos_token_id", n, &v.bos) ||
        gguf_token_id(g, "tokenizer.ggml.eos_token_id", n, &v.eos) ||
        gguf_token_id(g, "tokenizer.ggml.unknown_token_id", n, &v.unk) ||
        gguf_token_id(g, "tokenizer.ggml.padding_token_id", n, &v.pad) ||
        gguf_opt_bool(g, "tokenizer.ggml.add_bos_token", spm, &v.add_bos) ||
        gguf_opt_bool(g, "tokenizer.ggml.add_eos_token", 0, &v.add_eos) ||
        gguf_opt_bool(g, "tokenizer.ggml.add_space_prefix", 1, &v.add_space_prefix))
        goto done;
    if (spm && v.unk < 0 && duet_gguf_find_key(g, "tokenizer.ggml.unknown_token_id") < 0)
        v.unk = 0; /* llama.cpp's default for SentencePiece vocabularies */
    if (duet_gguf_find_key(g, "tokenizer.ggml.pre") >= 0) {
        const char *ps;
        int64_t pl;
        if (duet_gguf_get_str(g, "tokenizer.ggml.pre", &ps, &pl) != DUET_OK) goto done;
        set_field(pre, sizeof pre, ps, pl);
        v.pre = pre;
    }
    v.n = n;
    v.tokens = tokens;
    v.token_lens = lens;
    v.scores = scores;
    v.types = types;
    v.merges = merges;
    v.merge_lens = mlens;
    v.n_merges = nm;
    t = spm ? duet_tokenizer_new_spm(&v) : duet_tokenizer_new_gpt2(&v);
    if (t && chat_template && duet_gguf_find_key(g, "tokenizer.chat_template") >= 0) {
        const char *ct;
        int64_t cl;
        if (duet_gguf_get_str(g, "tokenizer.chat_template", &ct, &cl) != DUET_OK ||
            !(*chat_template = loaders_strndup(ct, cl))) {
            if (!duet_last_error()[0]) duet_set_error(DUET_ERR_NOMEM, "out of memory");
            duet_tokenizer_free(t);
            t = NULL;
        }
    }
done:
    duet_free(tokens);
    duet_free(lens);
    duet_free(merges);
    duet_free(mlens);
    duet_free(scores);
    duet_free(types);
    return t;
}

/* ==== GGUF models ========================================================= */

typedef struct gguf_src {
    const duet_gguf *g;
    const char *path;
    duet_tf_arch arch;
} gguf_src;

int loaders_gguf_name(duet_tf_arch arch, const char *name, char *out, size_t cap,
                            int *slice) {
    static const char *const globals[][2] = {
        {"tok_embeddings.weight", "token_embd.weight"},
        {"pos_embeddings.weight", "position_embd.weight"},
        {"norm.weight", "output_norm.weight"},
        {"norm.bias", "output_norm.bias"},
        {"output.weight", "output.weight"},
    };
    /* per layer: duet suffix, llama/qwen2 name, gpt2 name (NULL: fused) */
    static const char *const layer[][3] = {
        {"attention_norm.weight", "attn_norm.weight", "attn_norm.weight"},
        {"attention_norm.bias", "attn_norm.bias", "attn_norm.bias"},
        {"attention.wq.weight", "attn_q.weight", NULL},
        {"attention.wq.bias", "attn_q.bias", NULL},
        {"attention.wk.weight", "attn_k.weight", NULL},
        {"attention.wk.bias", "attn_k.bias", NULL},
        {"attention.wv.weight", "attn_v.weight", NULL},
        {"attention.wv.bias", "attn_v.bias", NULL},
        {"attention.wo.weight", "attn_output.weight", "attn_output.weight"},
        {"attention.wo.bias", "attn_output.bias", "attn_output.bias"},
        {"ffn_norm.weight", "ffn_norm.weight", "ffn_norm.weight"},
        {"ffn_norm.bias", "ffn_norm.bias", "ffn_norm.bias"},
        {"feed_forward.w1.weight", "ffn_gate.weight", "ffn_up.weight"},
        {"feed_forward.w1.bias", "ffn_gate.bias", "ffn_up.bias"},
        {"feed_forward.w2.weight", "ffn_down.weight", "ffn_down.weight"},
        {"feed_forward.w2.bias", "ffn_down.bias", "ffn_down.bias"},
        {"feed_forward.w3.weight", "ffn_up.weight", NULL},
    };
    *slice = -1;
    for (size_t i = 0; i < sizeof globals / sizeof *globals; i++)
        if (strcmp(name, globals[i][0]) == 0) {
            snprintf(out, cap, "%s", globals[i][1]);
            return 0;
        }
    int l, used = 0;
    if (sscanf(name, "layers.%d.%n", &l, &used) != 1 || used == 0) return -1;
    const char *suffix = name + used;
    for (size_t i = 0; i < sizeof layer / sizeof *layer; i++) {
        if (strcmp(suffix, layer[i][0]) != 0) continue;
        const char *gn = arch == DUET_TF_ARCH_GPT2 ? layer[i][2] : layer[i][1];
        if (!gn) { /* gpt2: q, k, v are thirds of attn_qkv */
            *slice = suffix[11] == 'q' ? 0 : suffix[11] == 'k' ? 1 : 2;
            gn = strstr(suffix, ".bias") ? "attn_qkv.bias" : "attn_qkv.weight";
        }
        snprintf(out, cap, "blk.%d.%s", l, gn);
        return 0;
    }
    return -1;
}

static duet_status gguf_get(void *ud, const char *name, int ndim, const int64_t *shape,
                            tf_ext_weight *w) {
    const gguf_src *s = ud;
    char gname[96];
    int slice;
    if (loaders_gguf_name(s->arch, name, gname, sizeof gname, &slice))
        return duet_set_error(DUET_ERR_INTERNAL, "%s: no GGUF name for '%s'", s->path, name);
    const duet_gguf_tensor *t = duet_gguf_find_tensor(s->g, gname);
    if (!t)
        return duet_set_error(DUET_ERR_FORMAT, "%s: tensor '%s' is missing (a %s model of this "
                              "config needs it)", s->path, gname, duet_tf_arch_name(s->arch));
    /* expected ggml dims: a vector {n}, a matrix {cols, rows}; fused parts x3 */
    int64_t want[2] = {shape[ndim - 1], ndim == 2 ? shape[0] : 1};
    const int parts = slice >= 0 ? 3 : 1;
    want[ndim - 1] *= parts;
    int ok = t->n_dims == ndim && t->ne[0] == want[0] && (ndim == 1 || t->ne[1] == want[1]);
    /* the position table may be longer than the context asked for */
    if (!ok && strcmp(name, "pos_embeddings.weight") == 0 && t->n_dims == 2)
        ok = t->ne[0] == want[0] && t->ne[1] >= want[1];
    if (!ok) {
        char got[96], need[64];
        int k = snprintf(got, sizeof got, "[");
        for (int d = 0; d < t->n_dims && k < (int)sizeof got - 24; d++)
            k += snprintf(got + k, sizeof got - (size_t)k, "%s%lld", d ? ", " : "",
                          (long long)t->ne[d]);
        snprintf(got + k, sizeof got - (size_t)k, "]");
        if (ndim == 1) snprintf(need, sizeof need, "[%lld]", (long long)want[0]);
        else snprintf(need, sizeof need, "[%lld, %lld]", (long long)want[0], (long long)want[1]);
        return duet_set_error(DUET_ERR_FORMAT, "%s: tensor '%s' has ne %s (ggml order, fastest "
                              "first); the config (%s) needs %s", s->path, gname, got,
                              duet_tf_arch_name(s->arch), need);
    }
    w->type = t->type;
    w->data = t->data;
    if (slice > 0) { /* rows (or elements) of q, then k, then v */
        const int64_t rows = ndim == 2 ? shape[0] : 1;
        w->data = (const uint8_t *)t->data +
                  slice * rows * duet_qtype_row_bytes(t->type, ndim == 2 ? shape[1] : shape[0]);
    }
    return DUET_OK;
}

/* Reads {arch}.<suffix> as an integer. */
static int gguf_arch_int(const duet_gguf *g, const char *arch, const char *suffix, int64_t *out,
                         int required) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!required && duet_gguf_find_key(g, key) < 0) return 0;
    return duet_gguf_get_int(g, key, out) == DUET_OK ? 0 : -1;
}

static int gguf_arch_float(const duet_gguf *g, const char *arch, const char *suffix, double *out,
                           int required) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!required && duet_gguf_find_key(g, key) < 0) return 0;
    return duet_gguf_get_float(g, key, out) == DUET_OK ? 0 : -1;
}

static void gguf_owner_free(void *g) { duet_gguf_close(g); }

static duet_status gguf_open_model(const char *path, const duet_model_params *mp,
                                   duet_model *out) {
    duet_gguf *g = duet_gguf_open(path);
    if (!g) return DUET_ERR_FORMAT; /* the reader's message names the file and field */
    duet_status st = DUET_ERR_FORMAT;
    float *freqs = NULL;
    const char *as;
    int64_t al;
    if (duet_gguf_get_str(g, "general.architecture", &as, &al) != DUET_OK) goto fail;
    char arch[32];
    set_field(arch, sizeof arch, as, al);
    set_field(out->arch, sizeof out->arch, as, al);
    duet_tf_arch a;
    if (strcmp(arch, "llama") == 0) a = DUET_TF_ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0) a = DUET_TF_ARCH_QWEN2;
    else if (strcmp(arch, "gpt2") == 0) a = DUET_TF_ARCH_GPT2;
    else {
        st = duet_set_error(DUET_ERR_UNSUPPORTED, "%s: general.architecture is '%.*s'; duet runs "
                            "llama, qwen2 and gpt2 models", path, (int)al, as);
        goto fail;
    }
    if (duet_gguf_find_key(g, "general.name") >= 0 &&
        duet_gguf_get_str(g, "general.name", &as, &al) == DUET_OK)
        set_field(out->name, sizeof out->name, as, al);

    /* ---- the config ---- */
    duet_tf_params p;
    duet_tf_params_default(&p, a);
    int64_t ctx = 0, kv = -1, rope_dim = -1, experts = 0, key_len = -1, val_len = -1;
    double eps = 1e-5, theta = 10000.0, scale = 1.0;
    if (gguf_arch_int(g, arch, "embedding_length", &p.dim, 1) ||
        gguf_arch_int(g, arch, "block_count", &p.layers, 1) ||
        gguf_arch_int(g, arch, "feed_forward_length", &p.hidden, 1) ||
        gguf_arch_int(g, arch, "attention.head_count", &p.heads, 1) ||
        gguf_arch_int(g, arch, "attention.head_count_kv", &kv, 0) ||
        gguf_arch_int(g, arch, "context_length", &ctx, 0) ||
        gguf_arch_int(g, arch, "rope.dimension_count", &rope_dim, 0) ||
        gguf_arch_int(g, arch, "attention.key_length", &key_len, 0) ||
        gguf_arch_int(g, arch, "attention.value_length", &val_len, 0) ||
        gguf_arch_int(g, arch, "expert_count", &experts, 0) ||
        gguf_arch_float(g, arch, "rope.freq_base", &theta, 0) ||
        gguf_arch_float(g, arch, "rope.scale_linear", &scale, 0))
        goto fail;
    if (a == DUET_TF_ARCH_GPT2 ? gguf_arch_float(g, arch, "attention.layer_norm_epsilon", &eps, 1)
                               : gguf_arch_float(g, arch, "attention.layer_norm_rms_epsilon",
                                                 &eps, 1))
        goto fail;
    if (experts > 0) {
        st = duet_set_error(DUET_ERR_UNSUPPORTED, "%s: %s.expert_count = %lld: mixture-of-experts "
                            "models are not supported", path, arch, (long long)experts);
        goto fail;
    }
    p.kv_heads = kv > 0 ? kv : p.heads;
    if (p.heads < 1 || p.dim % p.heads) {
        st = duet_set_error(DUET_ERR_FORMAT, "%s: %s.embedding_length %lld is not a multiple of "
                            "%s.attention.head_count %lld", path, arch, (long long)p.dim, arch,
                            (long long)p.heads);
        goto fail;
    }
    const int64_t HS = p.dim / p.heads;
    if ((rope_dim >= 0 && rope_dim != HS && a != DUET_TF_ARCH_GPT2) ||
        (key_len >= 0 && key_len != HS) || (val_len >= 0 && val_len != HS)) {
        st = duet_set_error(DUET_ERR_UNSUPPORTED, "%s: head size %lld with rope.dimension_count "
                            "%lld, key_length %lld, value_length %lld: duet needs all of them "
                            "equal to embedding_length / head_count (no partial rotary)", path,
                            (long long)HS, (long long)rope_dim, (long long)key_len,
                            (long long)val_len);
        goto fail;
    }
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (duet_gguf_find_key(g, key) >= 0) {
        const char *ty;
        int64_t tl;
        if (duet_gguf_get_str(g, key, &ty, &tl) != DUET_OK) goto fail;
        if (tl == 6 && memcmp(ty, "linear", 6) == 0) {
            if (gguf_arch_float(g, arch, "rope.scaling.factor", &scale, 1)) goto fail;
        } else if (!(tl == 4 && memcmp(ty, "none", 4) == 0)) {
            st = duet_set_error(DUET_ERR_UNSUPPORTED, "%s: %s = '%.*s': duet knows RoPE scaling "
                                "'none' and 'linear'", path, key, (int)tl, ty);
            goto fail;
        }
    }
    if (!(scale > 0.0) || !isfinite(scale)) {
        st = duet_set_error(DUET_ERR_FORMAT, "%s: RoPE scaling factor %g must be > 0", path,
                            scale);
        goto fail;
    }
    p.norm_eps = (float)eps;
    p.rope_theta = (float)theta;
    const duet_gguf_tensor *emb = duet_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) {
        st = duet_set_error(DUET_ERR_FORMAT, "%s: tensor 'token_embd.weight' is %s", path,
                            emb ? "not a matrix" : "missing");
        goto fail;
    }
    p.vocab = emb->ne[1];
    p.tied = duet_gguf_find_tensor(g, "output.weight") == NULL;
    p.ctx = loaders_ctx(mp, ctx);
    if (a == DUET_TF_ARCH_GPT2) { /* positions are a table: no longer than it */
        const duet_gguf_tensor *pe = duet_gguf_find_tensor(g, "position_embd.weight");
        if (pe && pe->n_dims == 2 && p.ctx > pe->ne[1]) p.ctx = pe->ne[1];
        if (p.kv_heads != p.heads) {
            st = duet_set_error(DUET_ERR_UNSUPPORTED, "%s: gpt2 with head_count_kv %lld != "
                                "head_count %lld", path, (long long)p.kv_heads,
                                (long long)p.heads);
            goto fail;
        }
    }
    if (duet_tf_params_check(&p) != DUET_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", duet_last_error());
        st = duet_set_error(DUET_ERR_FORMAT, "%s: the metadata gives a config duet cannot run: "
                            "%s", path, msg);
        goto fail;
    }
    const duet_gguf_tensor *rf = duet_gguf_find_tensor(g, "rope_freqs.weight");
    if (rf) {
        if (rf->n_dims != 1 || rf->ne[0] != HS / 2 || rf->type != DUET_QTYPE_F32) {
            st = duet_set_error(DUET_ERR_FORMAT, "%s: tensor 'rope_freqs.weight' must be f32 "
                                "[%lld] (one factor per rotated pair)", path, (long long)(HS / 2));
            goto fail;
        }
        freqs = duet_alloc((size_t)(HS / 2) * sizeof(float));
        if (!freqs) goto nomem;
        memcpy(freqs, rf->data, (size_t)(HS / 2) * sizeof(float));
    }

    /* ---- the tokenizer (copied), then the model (owns the map) ---- */
    if (duet_gguf_find_key(g, "tokenizer.ggml.model") >= 0) {
        out->tok = duet_tokenizer_from_gguf(g, &out->chat_template);
        if (!out->tok) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", duet_last_error());
            st = duet_set_error(DUET_ERR_FORMAT, "%s: %s", path, msg);
            goto fail;
        }
        if (duet_tokenizer_vocab_size(out->tok) > p.vocab) {
            st = duet_set_error(DUET_ERR_FORMAT, "%s: the tokenizer has %lld tokens, "
                                "token_embd.weight only %lld rows", path,
                                (long long)duet_tokenizer_vocab_size(out->tok),
                                (long long)p.vocab);
            goto fail;
        }
    }
    gguf_src src = {g, path, a};
    tf_ext_params e = {path, gguf_get, &src, -1, (float)(1.0 / scale), freqs, g, gguf_owner_free};
    out->tf = tf_new_external(&p, &e); /* from here on g belongs to the model */
    duet_free(freqs);
    return out->tf ? DUET_OK : DUET_ERR_FORMAT;
nomem:
    st = duet_set_error(DUET_ERR_NOMEM, "%s: out of memory", path);
fail:
    duet_free(freqs);
    duet_gguf_close(g);
    return st;
}

/* ==== llama2.c ============================================================ */

/* The tensors of a llama2.c checkpoint, in floats from the file's start. */
typedef struct l2c_src {
    const duet_mapped *map;
    const char *path;
    int64_t C, H, L, KVD, V;
    /* offsets (floats) of each group; per-layer groups hold L tensors */
    int64_t tok, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls, end;
} l2c_src;

/* Lays out the groups in file order: legacy (v0) or version 1. */
static void l2c_layout(l2c_src *s, int version, int shared, int64_t seq, int64_t HS) {
    const int64_t C = s->C, H = s->H, L = s->L, KVD = s->KVD, V = s->V;
    int64_t o = version == 1 ? 256 / 4 : 28 / 4;
    if (version == 1) {
        s->rms_att = o, o += L * C;
        s->rms_ffn = o, o += L * C;
        s->rms_final = o, o += C;
        s->tok = o, o += V * C;
        s->wq = o, o += L * C * C;
        s->wk = o, o += L * KVD * C;
        s->wv = o, o += L * KVD * C;
        s->wo = o, o += L * C * C;
        s->w1 = o, o += L * H * C;
        s->w2 = o, o += L * C * H;
        s->w3 = o, o += L * H * C;
    } else {
        s->tok = o, o += V * C;
        s->rms_att = o, o += L * C;
        s->wq = o, o += L * C * C;
        s->wk = o, o += L * KVD * C;
        s->wv = o, o += L * KVD * C;
        s->wo = o, o += L * C * C;
        s->rms_ffn = o, o += L * C;
        s->w1 = o, o += L * H * C;
        s->w2 = o, o += L * C * H;
        s->w3 = o, o += L * H * C;
        s->rms_final = o, o += C;
        o += seq * HS; /* freq_cis_real and _imag, [seq, HS/2] each: unused */
    }
    s->wcls = shared ? s->tok : o;
    if (!shared) o += V * C;
    s->end = o;
}

static duet_status l2c_get(void *ud, const char *name, int ndim, const int64_t *shape,
                           tf_ext_weight *w) {
    const l2c_src *s = ud;
    const int64_t C = s->C, H = s->H, KVD = s->KVD;
    int64_t off = -1;
    int l = 0, used = 0;
    if (strcmp(name, "tok_embeddings.weight") == 0) off = s->tok;
    else if (strcmp(name, "norm.weight") == 0) off = s->rms_final;
    else if (strcmp(name, "output.weight") == 0) off = s->wcls;
    else if (sscanf(name, "layers.%d.%n", &l, &used) == 1 && used > 0) {
        const char *x = name + used;
        if (strcmp(x, "attention_norm.weight") == 0) off = s->rms_att + l * C;
        else if (strcmp(x, "attention.wq.weight") == 0) off = s->wq + l * C * C;
        else if (strcmp(x, "attention.wk.weight") == 0) off = s->wk + l * KVD * C;
        else if (strcmp(x, "attention.wv.weight") == 0) off = s->wv + l * KVD * C;
        else if (strcmp(x, "attention.wo.weight") == 0) off = s->wo + l * C * C;
        else if (strcmp(x, "ffn_norm.weight") == 0) off = s->rms_ffn + l * C;
        else if (strcmp(x, "feed_forward.w1.weight") == 0) off = s->w1 + l * H * C;
        else if (strcmp(x, "feed_forward.w2.weight") == 0) off = s->w2 + l * C * H;
        else if (strcmp(x, "feed_forward.w3.weight") == 0) off = s->w3 + l * H * C;
    }
    (void)ndim;
    (void)shape;
    if (off < 0)
        return duet_set_error(DUET_ERR_INTERNAL, "%s: no llama2.c tensor for '%s'", s->path, name);
    w->type = DUET_QTYPE_F32;
    w->data = s->map->data + off * 4;
    return DUET_OK;
}

static void l2c_owner_free(void *p) {
    duet_mapped *m = p;
    duet_unmap_file(m);
    duet_free(m);
}

static int32_t rd_i32(const unsigned char *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Parses the header into p and the layout into s; 0 on success, else an
 * error (DUET_ERR_FORMAT) naming the field. With quiet (no magic: maybe not
 * llama2.c at all), a header out of range returns -1 without a message; a
 * plausible header whose sizes do not add up returns -2 with one. */
static int l2c_header(const duet_mapped *map, const char *path, duet_tf_params *p, l2c_src *s,
                      int quiet) {
    const unsigned char *d = map->data;
    int version = 0, shared;
    int64_t f[7];
    if (map->size >= 8 && rd_i32(d) == 0x616b3432) {
        version = rd_i32(d + 4);
        if (version != 1) {
            duet_set_error(DUET_ERR_UNSUPPORTED, "%s: llama2.c export version %d; duet reads the "
                           "legacy format and version 1 (f32); re-export with --version 1",
                           path, version);
            return -1;
        }
        if (map->size < 256) {
            duet_set_error(DUET_ERR_FORMAT, "%s: %zu bytes, shorter than the 256-byte llama2.c "
                           "version 1 header", path, map->size);
            return -1;
        }
        for (int i = 0; i < 7; i++) f[i] = rd_i32(d + 8 + 4 * i);
        if (d[36] > 1) {
            duet_set_error(DUET_ERR_FORMAT, "%s: shared_classifier flag (byte 36) is %d, want 0 "
                           "or 1", path, d[36]);
            return -1;
        }
        shared = d[36];
    } else {
        if (map->size < 28) {
            if (!quiet)
                duet_set_error(DUET_ERR_FORMAT, "%s: %zu bytes, shorter than a llama2.c header",
                               path, map->size);
            return -1;
        }
        for (int i = 0; i < 7; i++) f[i] = rd_i32(d + 4 * i);
        shared = f[5] > 0; /* legacy: a negative vocab_size means an own classifier */
        f[5] = f[5] < 0 ? -f[5] : f[5];
    }
    static const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++)
        if (f[i] < 1 || f[i] > (1 << 24) || (i == 2 && f[i] > 1024)) {
            if (!quiet)
                duet_set_error(DUET_ERR_FORMAT, "%s: llama2.c header field %s = %lld is out of "
                               "range", path, names[i], (long long)f[i]);
            return -1;
        }
    if (f[0] % f[3] || f[3] % f[4] || (f[0] / f[3]) % 2) {
        if (!quiet)
            duet_set_error(DUET_ERR_FORMAT, "%s: llama2.c header: dim %lld, n_heads %lld, "
                           "n_kv_heads %lld do not fit (dim/n_heads must be even, n_heads a "
                           "multiple of n_kv_heads)", path, (long long)f[0], (long long)f[3],
                           (long long)f[4]);
        return -1;
    }
    duet_tf_params_default(p, DUET_TF_ARCH_LLAMA);
    p->dim = f[0], p->hidden = f[1], p->layers = f[2], p->heads = f[3], p->kv_heads = f[4];
    p->vocab = f[5], p->ctx = f[6], p->tied = shared;
    p->norm_eps = 1e-5f;     /* run.c's rmsnorm */
    p->rope_theta = 10000.0f; /* run.c's rope */
    const int64_t HS = f[0] / f[3];
    s->C = f[0], s->H = f[1], s->L = f[2], s->KVD = f[4] * HS, s->V = f[5];
    l2c_layout(s, version, shared, f[6], HS);
    if ((uint64_t)s->end * 4 != map->size) {
        duet_set_error(DUET_ERR_FORMAT, "%s: %zu bytes, but a llama2.c %s checkpoint of dim "
                           "%lld, hidden %lld, %lld layers, %lld kv heads, vocab %lld, seq_len "
                           "%lld (%s classifier) has %lld: truncated, or another format", path,
                           map->size, version ? "version 1" : "legacy", (long long)f[0],
                           (long long)f[1], (long long)f[2], (long long)f[4], (long long)f[5],
                           (long long)f[6], shared ? "shared" : "own", (long long)(s->end * 4));
        return -2;
    }
    return 0;
}

duet_tokenizer *duet_tokenizer_load_llama2c(const char *path, int64_t n_vocab) {
    char *buf = NULL;
    size_t size = 0;
    if (duet_read_file(path, &buf, &size) != DUET_OK) return NULL;
    duet_tokenizer *t = NULL;
    const char **tokens = duet_alloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *tokens);
    int64_t *lens = duet_alloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *lens);
    float *scores = duet_alloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *scores);
    if (!tokens || !lens || !scores) {
        duet_set_error(DUET_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (n_vocab < 3) {
        duet_set_error(DUET_ERR_ARG, "%s: a llama2.c vocabulary of %lld tokens (need unk, bos, "
                       "eos at least)", path, (long long)n_vocab);
        goto done;
    }
    const unsigned char *d = (const unsigned char *)buf;
    size_t o = 4;
    if (size < 4) {
        duet_set_error(DUET_ERR_FORMAT, "%s: %zu bytes, too short for a llama2.c tokenizer.bin",
                       path, size);
        goto done;
    }
    int32_t maxlen = rd_i32(d);
    for (int64_t i = 0; i < n_vocab; i++) {
        if (o + 8 > size) {
            duet_set_error(DUET_ERR_FORMAT, "%s: the file ends at token %lld of %lld (a "
                           "tokenizer for a smaller vocabulary? the model has %lld tokens)",
                           path, (long long)i, (long long)n_vocab, (long long)n_vocab);
            goto done;
        }
        memcpy(&scores[i], d + o, 4);
        int32_t len = rd_i32(d + o + 4);
        o += 8;
        if (len < 0 || len > maxlen || (size_t)len > size - o) {
            duet_set_error(DUET_ERR_FORMAT, "%s: token %lld has length %d (max_token_length "
                           "%d, %zu bytes left)", path, (long long)i, (int)len, (int)maxlen,
                           size - o);
            goto done;
        }
        tokens[i] = buf + o;
        lens[i] = len;
        o += (size_t)len;
    }
    if (o != size) {
        duet_set_error(DUET_ERR_FORMAT, "%s: %zu bytes left after %lld tokens: the tokenizer "
                       "has more tokens than the model (%lld)", path, size - o,
                       (long long)n_vocab, (long long)n_vocab);
        goto done;
    }
    duet_tokenizer_vocab v;
    duet_tokenizer_vocab_default(&v);
    v.n = n_vocab;
    v.tokens = tokens;
    v.token_lens = lens;
    v.scores = scores;
    v.unk = 0, v.bos = 1, v.eos = 2; /* sentencepiece's, as run.c assumes */
    v.add_bos = 1;                   /* run.c encodes with bos */
    v.add_space_prefix = 1;          /* run.c's dummy prefix */
    v.ascii_space = 1;               /* tokenizer.bin spells "▁" as ' ' */
    t = duet_tokenizer_new_spm(&v);
    if (!t) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", duet_last_error());
        duet_set_error(DUET_ERR_FORMAT, "%s: %s", path, msg);
    }
done:
    duet_free(tokens);
    duet_free(lens);
    duet_free(scores);
    duet_free(buf);
    return t;
}

/* The tokenizer.bin beside a model file: "<dir>/tokenizer.bin". */
static void sibling(const char *path, const char *file, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, cap, "%s", file);
    else snprintf(out, cap, "%.*s/%s", (int)(slash - path), path, file);
}

static duet_status l2c_open_model(const char *path, duet_mapped *map, const duet_model_params *mp,
                                  duet_model *out) {
    duet_mapped *own = duet_alloc(sizeof *own);
    if (!own) {
        duet_unmap_file(map);
        return duet_set_error(DUET_ERR_NOMEM, "%s: out of memory", path);
    }
    *own = *map;
    memset(map, 0, sizeof *map);
    duet_tf_params p;
    l2c_src s;
    memset(&s, 0, sizeof s);
    s.map = own;
    s.path = path;
    if (l2c_header(own, path, &p, &s, 0)) {
        l2c_owner_free(own);
        return DUET_ERR_FORMAT;
    }
    snprintf(out->arch, sizeof out->arch, "llama");
    const char *base = strrchr(path, '/');
    snprintf(out->name, sizeof out->name, "%s", base ? base + 1 : path);
    if (mp && mp->ctx > 0) p.ctx = mp->ctx; /* RoPE needs no table: any context works */
    /* the tokenizer: the one named, else tokenizer.bin beside the model (optional) */
    char tpath[4096];
    if (mp && mp->tokenizer) snprintf(tpath, sizeof tpath, "%s", mp->tokenizer);
    else sibling(path, "tokenizer.bin", tpath, sizeof tpath);
    struct stat sb;
    if ((mp && mp->tokenizer) || stat(tpath, &sb) == 0) {
        out->tok = duet_tokenizer_load_llama2c(tpath, p.vocab);
        if (!out->tok) {
            l2c_owner_free(own);
            return DUET_ERR_FORMAT;
        }
    }
    tf_ext_params e = {path, l2c_get, &s, 0, 1.0f, NULL, own, l2c_owner_free};
    out->tf = tf_new_external(&p, &e);
    return out->tf ? DUET_OK : DUET_ERR_FORMAT;
}

/* ==== duet's own checkpoints ============================================== */

static duet_status duet_open_model(const char *path, duet_model *out) {
    char *json = NULL;
    out->tf = duet_tf_load(path, &json);
    if (!out->tf) return DUET_ERR_FORMAT;
    snprintf(out->arch, sizeof out->arch, "%s", duet_tf_arch_name(duet_tf_config(out->tf)->arch));
    const char *base = strrchr(path, '/');
    snprintf(out->name, sizeof out->name, "%s", base ? base + 1 : path);
    if (json) {
        out->tok = duet_tokenizer_from_json(json, -1, path);
        duet_free(json);
        if (!out->tok) return DUET_ERR_FORMAT;
    }
    return DUET_OK;
}

/* ==== duet_model_open ===================================================== */

static duet_model *model_open(const char *path, const duet_model_params *mp);

duet_model *duet_model_open(const char *path, const duet_model_params *mp) {
    const int prev = duet_map_set_read(mp && mp->no_mmap);
    duet_model *m = model_open(path, mp);
    duet_map_set_read(prev);
    return m;
}

static duet_model *model_open(const char *path, const duet_model_params *mp) {
    duet_model *m = duet_calloc(1, sizeof *m);
    if (!m) return NULL;
    duet_status st;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        duet_set_error(DUET_ERR_IO, "cannot open model '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(sb.st_mode)) {
        snprintf(m->format, sizeof m->format, "hf");
        st = hf_open(path, mp, m);
    } else {
        duet_mapped map;
        if (duet_map_file(path, &map) != DUET_OK) goto fail;
        const unsigned char *d = map.data;
        uint64_t hlen = 0;
        if (map.size >= 8) memcpy(&hlen, d, 8);
        if (map.size >= 4 && memcmp(d, "GGUF", 4) == 0) {
            duet_unmap_file(&map);
            snprintf(m->format, sizeof m->format, "gguf");
            st = gguf_open_model(path, mp, m);
        } else if (map.size >= 4 && rd_i32(d) == 0x616b3432) {
            snprintf(m->format, sizeof m->format, "llama2.c");
            st = l2c_open_model(path, &map, mp, m);
        } else if (map.size > 9 && hlen > 1 && hlen <= map.size - 8 && d[8] == '{') {
            duet_unmap_file(&map);
            snprintf(m->format, sizeof m->format, "duet");
            st = duet_open_model(path, m);
        } else {
            duet_tf_params p;
            l2c_src s;
            memset(&s, 0, sizeof s);
            s.map = &map;
            int hr = l2c_header(&map, path, &p, &s, 1);
            if (hr == 0) {
                snprintf(m->format, sizeof m->format, "llama2.c");
                st = l2c_open_model(path, &map, mp, m);
            } else if (hr == -2) { /* a llama2.c header whose sizes do not add up */
                duet_unmap_file(&map);
                st = DUET_ERR_FORMAT;
            } else {
                duet_unmap_file(&map);
                duet_set_error(DUET_ERR_FORMAT, "%s: not a model file duet knows (GGUF, a "
                               "llama2.c checkpoint, a duet .safetensors checkpoint or a "
                               "Hugging Face folder)", path);
                st = DUET_ERR_FORMAT;
            }
        }
    }
    if (st != DUET_OK) goto fail;
    if (!(mp && mp->no_repack)) tf_repack(m->tf);
    m->repacked = tf_repacked_bytes(m->tf);
    m->n_params = duet_tf_numel(m->tf);
    m->weight_type = tf_main_weight_type(m->tf);
    if (!m->name[0]) {
        const char *base = strrchr(path, '/');
        snprintf(m->name, sizeof m->name, "%s", base && base[1] ? base + 1 : path);
    }
    return m;
fail:
    duet_model_free(m);
    return NULL;
}
