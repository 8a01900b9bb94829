/*
 * transformer.c — the storyteller: a decoder-only transformer language model
 * in three families chosen by config, GPT-2 (learned positions, LayerNorm,
 * GELU-tanh MLP, biases, tied embeddings), Llama (RMSNorm, RoPE, SwiGLU,
 * grouped-query attention, no biases, untied output) and Qwen2 (Llama with
 * q/k/v biases and NeoX-order RoPE).
 *
 * The model is composed from tape ops (src/nn), layer by layer, llm.c
 * gpt2_forward style; the same forward serves training (graph recording) and
 * sampling (graph in inference mode plus a KV cache). All parameters live in
 * one block and all gradients in another, with a duet_tensor per parameter
 * pointing into them (llm.c fill_in_parameter_sizes style, computed from a
 * table of specs).
 *
 * Sampling (duet_tf_feed) runs the same trunk on a graph in inference mode,
 * batch 1, writing each chunk's keys and values into a per-layer f32 KV
 * cache and attending over it; when the window would pass ctx it slides
 * (keeps the newest ctx/2 tokens and re-encodes them). Decoding one token is
 * a stream over every weight (memory-bound), so the matrices can be read
 * from an f16 / bf16 / q8_0 copy (duet_tf_set_sample_type).
 *
 * RoPE convention: adjacent pairs (2i, 2i+1), neox = 0 — the order Meta's
 * llama checkpoints and llama.cpp's GGUF "llama" arch use for wq/wk, so a
 * GGUF export copies our weights as they are (a Hugging Face export would
 * need the usual q/k row permutation). Qwen2, and llama weights as Hugging
 * Face stores them, rotate (i, i + HS/2): neox = 1.
 *
 * External weights (tf_new_external, src/models/tf_internal.h): a model whose
 * matrices are views into a file someone else maps (GGUF, llama2.c, Hugging
 * Face safetensors), of any type the quantized kernels multiply. Only the
 * small 1-D tensors are copied (to f32). Such a model samples only: the
 * linears call duet_quant_matmul on the stored rows, the embedding
 * dequantizes the rows it looks up, and RoPE may carry a linear position
 * scale and per-pair frequency divisors (Llama 3's rope_freqs).
 *
 * What it is not: a general model zoo (no MoE, no sliding-window attention,
 * no dropout, no training on quantized weights); the tokenizer and sampler
 * live in src/tokenizer and src/gen; the file readers in loaders.c and hf.c;
 * the training loop in src/cli.
 */
#include "core/internal.h"
#include "kernels/quant_x16.h"
#include "models/tf_internal.h"
#include "models/tf_model.h"
#include "nn/nn.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ==== config ============================================================== */

static const char *const arch_names[DUET_TF_ARCH_COUNT] = {
    [DUET_TF_ARCH_GPT2] = "gpt2",
    [DUET_TF_ARCH_LLAMA] = "llama",
    [DUET_TF_ARCH_QWEN2] = "qwen2",
};

const char *duet_tf_arch_name(duet_tf_arch a) {
    if ((int)a < 0 || a >= DUET_TF_ARCH_COUNT) return "?";
    return arch_names[a];
}

int duet_tf_arch_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < DUET_TF_ARCH_COUNT; i++)
        if (strcmp(arch_names[i], name) == 0) return i;
    return -1;
}

void duet_tf_params_default(duet_tf_params *p, duet_tf_arch arch) {
    memset(p, 0, sizeof *p);
    p->arch = arch;
    p->vocab = 512;
    p->ctx = 256;
    p->dim = 384;
    p->layers = 6;
    p->heads = 6;
    p->kv_heads = 6;
    p->hidden = 0;
    p->norm_eps = 1e-5f;
    p->rope_theta = 10000.0f;
    p->tied = arch == DUET_TF_ARCH_GPT2;
}

/* MLP width when hidden == 0: GPT-2 4C; Llama int(2 * 4C / 3) rounded up to
 * a multiple of 32 (Meta's rule with multiple_of = 32 for small models). */
static int64_t default_hidden(const duet_tf_params *p) {
    if (p->arch == DUET_TF_ARCH_GPT2) return 4 * p->dim;
    int64_t h = (2 * 4 * p->dim) / 3;
    return (h + 31) / 32 * 32;
}

#define TF_MAX_SIZE ((int64_t)1 << 24)

duet_status duet_tf_params_check(const duet_tf_params *p) {
    if ((int)p->arch < 0 || p->arch >= DUET_TF_ARCH_COUNT)
        return duet_set_error(DUET_ERR_ARG, "transformer: unknown arch %d (use gpt2, llama or "
                              "qwen2)",
                              (int)p->arch);
    struct { const char *name; int64_t v; } f[] = {
        {"vocab", p->vocab}, {"ctx", p->ctx},     {"dim", p->dim},
        {"layers", p->layers}, {"heads", p->heads}, {"kv_heads", p->kv_heads},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (f[i].v < 1 || f[i].v > TF_MAX_SIZE)
            return duet_set_error(DUET_ERR_ARG, "transformer: %s = %lld must be in 1..%lld",
                                  f[i].name, (long long)f[i].v, (long long)TF_MAX_SIZE);
    if (p->layers > 1024)
        return duet_set_error(DUET_ERR_ARG, "transformer: %lld layers is too many (max 1024)",
                              (long long)p->layers);
    if (p->hidden < 0 || p->hidden > TF_MAX_SIZE)
        return duet_set_error(DUET_ERR_ARG, "transformer: hidden = %lld must be 0 (default) "
                              "or in 1..%lld", (long long)p->hidden, (long long)TF_MAX_SIZE);
    if (p->dim % p->heads)
        return duet_set_error(DUET_ERR_ARG, "transformer: dim %lld is not divisible by heads "
                              "%lld (head size = dim / heads)",
                              (long long)p->dim, (long long)p->heads);
    if (p->heads % p->kv_heads)
        return duet_set_error(DUET_ERR_ARG, "transformer: heads %lld is not a multiple of "
                              "kv_heads %lld", (long long)p->heads, (long long)p->kv_heads);
    if (p->arch != DUET_TF_ARCH_GPT2 && (p->dim / p->heads) % 2)
        return duet_set_error(DUET_ERR_ARG, "transformer: %s needs an even head size for "
                              "RoPE, got dim/heads = %lld", duet_tf_arch_name(p->arch),
                              (long long)(p->dim / p->heads));
    if (!(p->norm_eps > 0.0f) || !isfinite(p->norm_eps))
        return duet_set_error(DUET_ERR_ARG, "transformer: norm_eps %g must be > 0",
                              (double)p->norm_eps);
    if (p->arch != DUET_TF_ARCH_GPT2 && (!(p->rope_theta > 1.0f) || !isfinite(p->rope_theta)))
        return duet_set_error(DUET_ERR_ARG, "transformer: rope_theta %g must be > 1 "
                              "(usually 10000)", (double)p->rope_theta);
    if (p->tied != 0 && p->tied != 1)
        return duet_set_error(DUET_ERR_ARG, "transformer: tied must be 0 or 1, got %d", p->tied);
    return DUET_OK;
}

/* ==== parameters: specs, one block, named views ========================= */

enum { INIT_ZERO, INIT_ONE, INIT_NORMAL, INIT_RESID };

/* One parameter: its name, shape and init. */
typedef struct tf_spec {
    char name[64];
    int ndim;
    int64_t shape[2];
    int init;
    duet_tensor **slot; /* where the model keeps a pointer to it */
} tf_spec;


/* Appends a spec (or only counts when specs == NULL). */
static void add_spec(tf_spec *specs, int *n, duet_tensor **slot, int init, int ndim, int64_t d0,
                     int64_t d1, const char *suffix, int64_t layer) {
    if (specs) {
        tf_spec *s = &specs[*n];
        if (layer < 0) snprintf(s->name, sizeof s->name, "%s", suffix);
        else snprintf(s->name, sizeof s->name, "layers.%lld.%s", (long long)layer, suffix);
        s->ndim = ndim;
        s->shape[0] = d0;
        s->shape[1] = d1;
        s->init = init;
        s->slot = slot;
    }
    (*n)++;
}

/* The parameter table in checkpoint order. m may be NULL (count only). */
static int tf_specs(duet_tf *m, const duet_tf_params *p, tf_spec *specs) {
    int n = 0;
    const int gpt2 = p->arch == DUET_TF_ARCH_GPT2;
    const int qkvb = gpt2 || p->arch == DUET_TF_ARCH_QWEN2; /* biases on q, k, v */
    const int64_t C = p->dim, V = p->vocab, H = p->hidden ? p->hidden : default_hidden(p);
    const int64_t HS = p->dim / p->heads, Q = p->heads * HS, K = p->kv_heads * HS;
    duet_tensor *dummy = NULL;
#define SLOT(field) (m ? &(field) : &dummy)
    add_spec(specs, &n, SLOT(m->tok_emb), INIT_NORMAL, 2, V, C, "tok_embeddings.weight", -1);
    if (gpt2)
        add_spec(specs, &n, SLOT(m->pos_emb), INIT_NORMAL, 2, p->ctx, C, "pos_embeddings.weight", -1);
    for (int64_t l = 0; l < p->layers; l++) {
        tf_layer *ly = m ? &m->layers[l] : NULL;
        add_spec(specs, &n, SLOT(ly->attn_norm_w), INIT_ONE, 1, C, 0,
                 "attention_norm.weight", l);
        if (gpt2)
            add_spec(specs, &n, SLOT(ly->attn_norm_b), INIT_ZERO, 1, C, 0,
                     "attention_norm.bias", l);
        add_spec(specs, &n, SLOT(ly->wq), INIT_NORMAL, 2, Q, C, "attention.wq.weight", l);
        if (qkvb) add_spec(specs, &n, SLOT(ly->bq), INIT_ZERO, 1, Q, 0, "attention.wq.bias", l);
        add_spec(specs, &n, SLOT(ly->wk), INIT_NORMAL, 2, K, C, "attention.wk.weight", l);
        if (qkvb) add_spec(specs, &n, SLOT(ly->bk), INIT_ZERO, 1, K, 0, "attention.wk.bias", l);
        add_spec(specs, &n, SLOT(ly->wv), INIT_NORMAL, 2, K, C, "attention.wv.weight", l);
        if (qkvb) add_spec(specs, &n, SLOT(ly->bv), INIT_ZERO, 1, K, 0, "attention.wv.bias", l);
        add_spec(specs, &n, SLOT(ly->wo), INIT_RESID, 2, C, Q, "attention.wo.weight", l);
        if (gpt2) add_spec(specs, &n, SLOT(ly->bo), INIT_ZERO, 1, C, 0, "attention.wo.bias", l);
        add_spec(specs, &n, SLOT(ly->ffn_norm_w), INIT_ONE, 1, C, 0, "ffn_norm.weight", l);
        if (gpt2)
            add_spec(specs, &n, SLOT(ly->ffn_norm_b), INIT_ZERO, 1, C, 0, "ffn_norm.bias", l);
        add_spec(specs, &n, SLOT(ly->w1), INIT_NORMAL, 2, H, C, "feed_forward.w1.weight", l);
        if (gpt2) add_spec(specs, &n, SLOT(ly->b1), INIT_ZERO, 1, H, 0, "feed_forward.w1.bias", l);
        add_spec(specs, &n, SLOT(ly->w2), INIT_RESID, 2, C, H, "feed_forward.w2.weight", l);
        if (gpt2) add_spec(specs, &n, SLOT(ly->b2), INIT_ZERO, 1, C, 0, "feed_forward.w2.bias", l);
        if (!gpt2)
            add_spec(specs, &n, SLOT(ly->w3), INIT_NORMAL, 2, H, C, "feed_forward.w3.weight", l);
    }
    add_spec(specs, &n, SLOT(m->norm_w), INIT_ONE, 1, C, 0, "norm.weight", -1);
    if (gpt2) add_spec(specs, &n, SLOT(m->norm_b), INIT_ZERO, 1, C, 0, "norm.bias", -1);
    if (!p->tied) add_spec(specs, &n, SLOT(m->output), INIT_NORMAL, 2, V, C, "output.weight", -1);
#undef SLOT
    return n;
}

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

/* Allocates a model with parameters uninitialised (zeroed). An external
 * model (weights in someone else's memory) gets storage for its 1-D tensors
 * only, no gradients, and matrices with data == NULL for the caller to set. */
static duet_tf *tf_alloc(const duet_tf_params *p, int external) {
    if (duet_tf_params_check(p) != DUET_OK) return NULL;
    duet_tf *m = duet_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->p = *p;
    if (!m->p.hidden) m->p.hidden = default_hidden(p);
    m->HS = p->dim / p->heads;
    m->neox = p->arch == DUET_TF_ARCH_QWEN2;
    m->rope_freq_scale = 1.0f;
    m->external = external;
    m->layers = duet_calloc((size_t)p->layers, sizeof *m->layers);
    int nt = tf_specs(NULL, &m->p, NULL);
    tf_spec *specs = duet_calloc((size_t)nt, sizeof *specs);
    m->tensors = duet_calloc((size_t)nt, sizeof *m->tensors);
    m->list = duet_calloc((size_t)nt, sizeof *m->list);
    m->init = duet_calloc((size_t)nt, 1);
    m->wptr = duet_calloc((size_t)nt, sizeof *m->wptr);
    m->wtype = duet_calloc((size_t)nt, sizeof *m->wtype);
    m->nat_ptr = duet_calloc((size_t)nt, sizeof *m->nat_ptr);
    m->nat_type = duet_calloc((size_t)nt, sizeof *m->nat_type);
    if (!m->layers || !specs || !m->tensors || !m->list || !m->init || !m->wptr || !m->wtype ||
        !m->nat_ptr || !m->nat_type)
        goto fail;
    m->nt = nt;
    tf_specs(m, &m->p, specs);

    /* sizes first, then one block each for parameters and gradients */
    int64_t total = 0, real = 0;
    for (int i = 0; i < nt; i++) {
        int64_t n = specs[i].shape[0] * (specs[i].ndim == 2 ? specs[i].shape[1] : 1);
        if (!external || specs[i].ndim == 1) total += round16(n);
        real += n;
    }
    m->nfloats = total;
    m->numel = real;
    m->params = duet_calloc((size_t)(total ? total : 1), sizeof(float));
    m->grads = external ? NULL : duet_calloc((size_t)(total ? total : 1), sizeof(float));
    if (!m->params || (!external && !m->grads)) goto fail;
    int64_t off = 0;
    for (int i = 0; i < nt; i++) {
        duet_tensor *t = &m->tensors[i];
        const int view = external && specs[i].ndim == 2;
        duet_tensor_init(t, DUET_DTYPE_F32, specs[i].ndim, specs[i].shape,
                         view ? NULL : m->params + off);
        t->grad = external ? NULL : m->grads + off;
        t->requires_grad = !external;
        memcpy(t->name, specs[i].name, sizeof t->name);
        *specs[i].slot = t;
        m->init[i] = (unsigned char)specs[i].init;
        m->list[i] = t;
        m->wtype[i] = m->nat_type[i] = DUET_QTYPE_F32;
        if (!view) off += round16(duet_tensor_numel(t));
    }
    if (m->p.tied) m->output = m->tok_emb;
    duet_free(specs);
    return m;
fail:
    duet_free(specs);
    duet_tf_free(m);
    duet_set_error(DUET_ERR_NOMEM, "transformer: out of memory allocating a model (dim %lld, "
                   "%lld layers, vocab %lld)", (long long)p->dim, (long long)p->layers,
                   (long long)p->vocab);
    return NULL;
}

/* GPT-2 init from one rng stream, parameter by parameter in table order. */
static void tf_init_weights(duet_tf *m, uint64_t seed) {
    duet_rng rng;
    duet_rng_init(&rng, seed);
    const float std = 0.02f;
    const float resid = 0.02f / sqrtf(2.0f * (float)m->p.layers);
    for (int i = 0; i < m->nt; i++) {
        duet_tensor *t = m->list[i];
        float *d = t->data;
        int64_t n = duet_tensor_numel(t);
        switch (m->init[i]) {
        case INIT_ZERO: memset(d, 0, (size_t)n * sizeof(float)); break;
        case INIT_ONE:
            for (int64_t j = 0; j < n; j++) d[j] = 1.0f;
            break;
        case INIT_NORMAL: duet_rng_normal(&rng, d, n, 0.0f, std); break;
        default: duet_rng_normal(&rng, d, n, 0.0f, resid); break;
        }
    }
}

duet_tf *duet_tf_new(const duet_tf_params *p, uint64_t seed) {
    duet_tf *m = tf_alloc(p, 0);
    if (!m) return NULL;
    tf_init_weights(m, seed);
    return m;
}

void duet_tf_free(duet_tf *m) {
    if (!m) return;
    duet_graph_free(m->ig);
    tf_decode_free(m);
    duet_free(m->kcache);
    duet_free(m->vcache);
    duet_free(m->kc16);
    duet_free(m->vc16);
    duet_free(m->cache_ids);
    duet_free(m->window);
    duet_free(m->qw);
    duet_free(m->wptr);
    duet_free(m->wtype);
    duet_free(m->nat_ptr);
    duet_free(m->nat_type);
    duet_free(m->rep);
    duet_huge_free(&m->rep_mem);
    duet_free(m->rope_freqs);
    if (m->copies)
        for (int i = 0; i < m->nt; i++) duet_free(m->copies[i]);
    duet_free(m->copies);
    if (m->owner_free) m->owner_free(m->owner);
    duet_free(m->params);
    duet_free(m->grads);
    duet_free(m->tensors);
    duet_free(m->list);
    duet_free(m->init);
    duet_free(m->layers);
    duet_free(m);
}

const duet_tf_params *duet_tf_config(const duet_tf *m) { return &m->p; }

duet_tensor **duet_tf_params_list(duet_tf *m, int *n) {
    if (n) *n = m->nt;
    return m->list;
}

duet_tensor *duet_tf_find(duet_tf *m, const char *name) {
    for (int i = 0; i < m->nt; i++)
        if (strcmp(m->list[i]->name, name) == 0) return m->list[i];
    return NULL;
}

int64_t duet_tf_numel(const duet_tf *m) { return m->numel; }

void duet_tf_zero_grad(duet_tf *m) {
    if (m->grads) memset(m->grads, 0, (size_t)m->nfloats * sizeof(float));
}

int duet_tf_param_decays(const duet_tensor *t) { return t->ndim >= 2; }

/* ==== forward ============================================================= */

/* linear for the trunk: the tape op, or (sampling from a converted copy or
 * from external weights) a quantized matmul straight into a graph tensor. */
static duet_tensor *tf_linear(duet_tf *m, duet_graph *g, duet_tensor *x, duet_tensor *w,
                              duet_tensor *b, int sampling) {
    if (!x) return NULL;
    const int64_t idx = w - m->tensors;
    if (!sampling || !m->wptr[idx]) return duet_nn_linear(g, x, w, b);
    const duet_qtype qt = (duet_qtype)m->wtype[idx];
    const int64_t OC = w->shape[0], C = w->shape[1], N = duet_tensor_numel(x) / C;
    const void *rep = m->rep && m->wptr[idx] == m->nat_ptr[idx] ? m->rep[idx] : NULL;
    int64_t shape[DUET_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = OC;
    duet_tensor *out = nn_out(g, x->ndim, shape);
    const int64_t sb = rep ? duet_x16_scratch_bytes(qt, C, N) : duet_quant_scratch_bytes(qt, C, N);
    void *scratch = duet_graph_alloc(g, (size_t)sb + 64);
    if (!out || !scratch) return NULL;
    const duet_status st = rep ? duet_x16_matmul(qt, rep, OC, C, x->data, N, out->data, scratch)
                               : duet_quant_matmul(qt, m->wptr[idx], OC, C, x->data, N, out->data, scratch);
    if (st != DUET_OK) return nn_fail(g, DUET_ERR_INTERNAL, "%s", duet_last_error());
    if (b) {
        float *o = out->data;
        const float *bias = b->data;
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < OC; j++) o[n * OC + j] += bias[j];
    }
    return out;
}

/* Embedding rows [B,T,C] of table (tok_emb or pos_emb): the tape op on an
 * f32 table, or (a table the model holds in another type) each row
 * dequantized. ids are checked by the caller. */
static duet_tensor *tf_embed(duet_tf *m, duet_graph *g, duet_tensor *ids, duet_tensor *table_t) {
    const int64_t idx = table_t - m->tensors;
    if (!ids || !m->nat_ptr[idx]) return duet_nn_embedding(g, ids, table_t);
    const int64_t C = m->p.dim, N = duet_tensor_numel(ids);
    duet_tensor *out = nn_out(g, 3, (int64_t[]){ids->shape[0], ids->shape[1], C});
    if (!out) return NULL;
    const int32_t *id = ids->data;
    for (int64_t i = 0; i < N; i++) tf_table_row(m, idx, id[i], (float *)out->data + i * C);
    return out;
}

void tf_table_row(const duet_tf *m, int64_t i, int64_t row, float *out) {
    const duet_qtype qt = (duet_qtype)m->nat_type[i];
    const int64_t C = m->p.dim;
    if (m->rep && m->rep[i])
        duet_x16_dequantize_row(qt, m->rep[i], C, row, out);
    else
        duet_dequantize_row(qt, (const uint8_t *)m->nat_ptr[i] + row * duet_qtype_row_bytes(qt, C), out, C);
}

/* RoPE for sampling with a linear position scale or per-pair frequency
 * divisors (external models only; no backward): pair i of a head turns by
 * pos * scale * theta^(-2i/HS) / freqs[i]. Angles in double, reduced to
 * [-pi, pi] before the float sin/cos, as duet_rope_forward does. */
void tf_rope_scaled_rows(const duet_tf *m, float *y, const float *in, int64_t BT, int64_t T,
                         int64_t NH, int64_t pos0, float *cs) {
    const int64_t HS = m->HS, P = HS / 2;
    const double lt = log((double)m->p.rope_theta), two_pi = 6.283185307179586;
    for (int64_t t = 0; t < T; t++) {
        const double pos = (double)(pos0 + t) * (double)m->rope_freq_scale;
        for (int64_t i = 0; i < P; i++) {
            double freq = exp(-lt * (double)(2 * i) / (double)HS);
            if (m->rope_freqs) freq /= (double)m->rope_freqs[i];
            const double ang = pos * freq;
            const float red = (float)(ang - two_pi * nearbyint(ang / two_pi));
            cs[(t * P + i) * 2] = cosf(red);
            cs[(t * P + i) * 2 + 1] = sinf(red);
        }
    }
    const int64_t e0 = m->neox ? 1 : 2, off = m->neox ? P : 1; /* pair i: (i*e0, i*e0 + off) */
    for (int64_t bt = 0; bt < BT; bt++) {
        const float *c = cs + (bt % T) * P * 2;
        for (int64_t h = 0; h < NH; h++) {
            const int64_t base = (bt * NH + h) * HS;
            for (int64_t i = 0; i < P; i++) {
                const int64_t a = base + i * e0;
                const float x0 = in[a], x1 = in[a + off];
                y[a] = x0 * c[2 * i] - x1 * c[2 * i + 1];
                y[a + off] = x0 * c[2 * i + 1] + x1 * c[2 * i];
            }
        }
    }
}

static duet_tensor *tf_rope_scaled(duet_tf *m, duet_graph *g, duet_tensor *x, int64_t pos0) {
    duet_tensor *out = nn_out_like(g, x);
    const int64_t P = m->HS / 2, T = x->shape[1], NH = x->shape[2];
    float *cs = duet_graph_alloc(g, (size_t)(2 * T * P) * sizeof(float));
    if (!out || !cs) return NULL;
    tf_rope_scaled_rows(m, out->data, x->data, x->shape[0] * T, T, NH, pos0, cs);
    return out;
}

static duet_tensor *tf_rope(duet_tf *m, duet_graph *g, duet_tensor *x, int64_t pos0) {
    if (!x) return NULL;
    if (m->rope_freq_scale == 1.0f && !m->rope_freqs)
        return duet_nn_rope(g, x, pos0, m->p.rope_theta, m->neox);
    return tf_rope_scaled(m, g, x, pos0);
}

/* Embeddings, blocks and the final norm over B sequences of T tokens at
 * positions pos0..pos0+T-1. ids: i32 [B,T]. With use_cache (B == 1), the
 * new keys and values are written to the KV cache at pos0 and attention
 * reads cache rows 0..pos0+T. Returns the normed hidden state [B,T,C]. */
static duet_tensor *tf_trunk(duet_tf *m, duet_graph *g, duet_tensor *ids, int64_t B, int64_t T,
                             int64_t pos0, int use_cache) {
    const duet_tf_params *p = &m->p;
    const int gpt2 = p->arch == DUET_TF_ARCH_GPT2;
    const int64_t NH = p->heads, NKV = p->kv_heads, HS = m->HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const float eps = p->norm_eps;

    duet_tensor *x = tf_embed(m, g, ids, m->tok_emb); /* [B,T,C] */
    if (gpt2) {
        int32_t *pid = duet_graph_alloc(g, (size_t)(B * T) * sizeof(int32_t));
        if (!pid) return NULL;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) pid[b * T + t] = (int32_t)(pos0 + t);
        duet_tensor *pos = duet_graph_input(g, pid, DUET_DTYPE_I32, 2, (int64_t[]){B, T});
        x = duet_nn_add(g, x, tf_embed(m, g, pos, m->pos_emb));
    }
    const int64_t qshape[4] = {B, T, NH, HS}, kshape[4] = {B, T, NKV, HS};
    for (int64_t l = 0; l < p->layers; l++) {
        const tf_layer *ly = &m->layers[l];
        /* attention */
        duet_tensor *h = gpt2 ? duet_nn_layernorm(g, x, ly->attn_norm_w, ly->attn_norm_b, eps)
                              : duet_nn_rmsnorm(g, x, ly->attn_norm_w, eps);
        const int sc = use_cache; /* sampling: maybe converted weights */
        duet_tensor *q = duet_nn_reshape(g, tf_linear(m, g, h, ly->wq, ly->bq, sc), 4, qshape);
        duet_tensor *k = duet_nn_reshape(g, tf_linear(m, g, h, ly->wk, ly->bk, sc), 4, kshape);
        duet_tensor *v = duet_nn_reshape(g, tf_linear(m, g, h, ly->wv, ly->bv, sc), 4, kshape);
        if (!gpt2) {
            q = tf_rope(m, g, q, pos0);
            k = tf_rope(m, g, k, pos0);
        }
        if (!q || !k || !v) return NULL;
        if (use_cache) {
            /* append this chunk's k and v, then attend over the whole cache */
            const int64_t row = NKV * HS, S = pos0 + T;
            float *kc, *vc;
            if (m->cache_type == DUET_QTYPE_F16) {
                /* rows stored as f16; attention reads them back as f32
                 * (this chunk's too, so it sees what later tokens will) */
                uint16_t *k16 = m->kc16 + l * p->ctx * row, *v16 = m->vc16 + l * p->ctx * row;
                duet_f32_to_f16(k16 + pos0 * row, k->data, T * row);
                duet_f32_to_f16(v16 + pos0 * row, v->data, T * row);
                kc = duet_graph_alloc(g, (size_t)(S * row) * sizeof(float));
                vc = duet_graph_alloc(g, (size_t)(S * row) * sizeof(float));
                if (!kc || !vc) return NULL;
                duet_f16_to_f32(kc, k16, S * row);
                duet_f16_to_f32(vc, v16, S * row);
            } else {
                kc = m->kcache + l * p->ctx * row, vc = m->vcache + l * p->ctx * row;
                memcpy(kc + pos0 * row, k->data, (size_t)(T * row) * sizeof(float));
                memcpy(vc + pos0 * row, v->data, (size_t)(T * row) * sizeof(float));
            }
            const int64_t sshape[4] = {1, S, NKV, HS};
            k = duet_graph_input(g, kc, DUET_DTYPE_F32, 4, sshape);
            v = duet_graph_input(g, vc, DUET_DTYPE_F32, 4, sshape);
        }
        duet_tensor *a = duet_nn_attention(g, q, k, v, 1, scale); /* [B,T,NH,HS] */
        a = duet_nn_reshape(g, a, 3, (int64_t[]){B, T, NH * HS});
        a = tf_linear(m, g, a, ly->wo, ly->bo, sc);
        x = duet_nn_add(g, x, a);
        /* MLP */
        h = gpt2 ? duet_nn_layernorm(g, x, ly->ffn_norm_w, ly->ffn_norm_b, eps)
                 : duet_nn_rmsnorm(g, x, ly->ffn_norm_w, eps);
        duet_tensor *f;
        if (gpt2) {
            f = duet_nn_gelu(g, tf_linear(m, g, h, ly->w1, ly->b1, sc), 1);
        } else {
            f = duet_nn_swiglu(g, tf_linear(m, g, h, ly->w1, NULL, sc),
                               tf_linear(m, g, h, ly->w3, NULL, sc));
        }
        x = duet_nn_add(g, x, tf_linear(m, g, f, ly->w2, ly->b2, sc));
        if (!x) return NULL;
    }
    return gpt2 ? duet_nn_layernorm(g, x, m->norm_w, m->norm_b, eps)
                : duet_nn_rmsnorm(g, x, m->norm_w, eps);
}

duet_tensor *duet_tf_forward(duet_tf *m, duet_graph *g, const int32_t *ids,
                             const int32_t *targets, int64_t B, int64_t T,
                             duet_tensor **logits) {
    if (logits) *logits = NULL;
    if (m->external)
        return nn_fail(g, DUET_ERR_UNSUPPORTED, "transformer forward: this model's weights are "
                       "views into a file (GGUF, llama2.c, Hugging Face); it can sample "
                       "(duet_tf_feed) but not train");
    if (B < 1 || T < 1 || T > m->p.ctx)
        return nn_fail(g, DUET_ERR_ARG,
                       "transformer forward: batch %lld x %lld tokens; need B >= 1 and "
                       "1 <= T <= ctx (%lld)",
                       (long long)B, (long long)T, (long long)m->p.ctx);
    duet_tensor *tid = duet_graph_input(g, (void *)ids, DUET_DTYPE_I32, 2, (int64_t[]){B, T});
    duet_tensor *h = tid ? tf_trunk(m, g, tid, B, T, 0, 0) : NULL;
    duet_tensor *lg = duet_nn_linear(g, h, m->output, NULL); /* [B,T,V] */
    if (logits) *logits = lg;
    if (!targets) return lg;
    duet_tensor *tt = duet_graph_input(g, (void *)targets, DUET_DTYPE_I32, 2, (int64_t[]){B, T});
    return duet_nn_cross_entropy(g, lg, tt, NULL, -100);
}

/* ==== sampling: KV cache ================================================== */

void duet_tf_reset(duet_tf *m) { m->pos = 0; }

duet_status duet_tf_set_pos(duet_tf *m, int64_t pos) {
    if (pos < 0 || pos > m->pos)
        return duet_set_error(DUET_ERR_ARG, "transformer: cannot keep %lld tokens of a cache "
                              "holding %lld", (long long)pos, (long long)m->pos);
    m->pos = pos; /* rows past pos are overwritten by the next feed */
    return DUET_OK;
}
int64_t duet_tf_pos(const duet_tf *m) { return m->pos; }

/* 1 for the matrices a sampling linear reads: the 2-D parameters but the
 * position table and an untied token table (those are only looked up). */
static int tf_is_linear_weight(const duet_tf *m, const duet_tensor *t) {
    return t->ndim == 2 && t != m->pos_emb && (t != m->tok_emb || m->p.tied);
}

duet_status duet_tf_set_sample_type(duet_tf *m, int qtype) {
    if (qtype != DUET_QTYPE_F32 && qtype != DUET_QTYPE_F16 && qtype != DUET_QTYPE_BF16 &&
        qtype != DUET_QTYPE_Q8_0)
        return duet_set_error(DUET_ERR_ARG, "transformer: sampling weights can be f32, f16, "
                              "bf16 or q8_0, not %s", duet_qtype_name(qtype));
    /* back to what the model holds natively */
    duet_free(m->qw);
    m->qw = NULL;
    for (int i = 0; i < m->nt; i++) {
        m->wptr[i] = m->nat_ptr[i];
        m->wtype[i] = m->nat_type[i];
    }
    m->qtype = DUET_QTYPE_F32;
    if (qtype == DUET_QTYPE_F32) return DUET_OK;
    /* sizes: the f32 linear weights whose rows split into blocks */
    int64_t total = 0;
    const int64_t bs = duet_qtype_block_size(qtype);
    for (int i = 0; i < m->nt; i++) {
        const duet_tensor *t = m->list[i];
        if (!tf_is_linear_weight(m, t) || m->nat_ptr[i] || t->shape[1] % bs) continue;
        total += (duet_qtype_row_bytes(qtype, t->shape[1]) * t->shape[0] + 63) & ~(int64_t)63;
    }
    uint8_t *qw = duet_alloc((size_t)total + 64);
    if (!qw)
        return duet_set_error(DUET_ERR_NOMEM, "transformer: out of memory for %lld bytes of %s "
                              "weights", (long long)total, duet_qtype_name(qtype));
    int64_t off = 0;
    for (int i = 0; i < m->nt; i++) {
        const duet_tensor *t = m->list[i];
        if (!tf_is_linear_weight(m, t) || m->nat_ptr[i] || t->shape[1] % bs) continue;
        const int64_t rows = t->shape[0], C = t->shape[1], rb = duet_qtype_row_bytes(qtype, C);
        for (int64_t r = 0; r < rows; r++) {
            duet_status s = duet_quantize_row(qtype, (const float *)t->data + r * C,
                                              qw + off + r * rb, C);
            if (s != DUET_OK) {
                duet_free(qw);
                for (int j = 0; j < m->nt; j++) {
                    m->wptr[j] = m->nat_ptr[j];
                    m->wtype[j] = m->nat_type[j];
                }
                return s;
            }
        }
        m->wptr[i] = qw + off;
        m->wtype[i] = qtype;
        off += (rb * rows + 63) & ~(int64_t)63;
    }
    m->qw = qw;
    m->qtype = qtype;
    return DUET_OK;
}

/* 1 when matrix i is held natively in a type and shape the 16-row kernels
 * take; a tied model's token table too (its lookups read the repacked rows,
 * tf_table_row). */
static int tf_repackable(const duet_tf *m, int i) {
    const duet_tensor *t = m->list[i];
    return tf_is_linear_weight(m, t) && m->nat_ptr[i] &&
           duet_x16_ok((duet_qtype)m->nat_type[i], t->shape[0], t->shape[1]);
}

static int64_t tf_repacked_size(const duet_tf *m, int i) {
    const duet_tensor *t = m->list[i];
    return duet_x16_bytes((duet_qtype)m->nat_type[i], t->shape[0], t->shape[1]);
}

void tf_repack(duet_tf *m) {
    const char *e = getenv("DUET_REPACK");
    if (m->rep || (e && strcmp(e, "0") == 0)) return;
    int64_t total = 0;
    for (int i = 0; i < m->nt; i++)
        if (tf_repackable(m, i)) total += (tf_repacked_size(m, i) + 63) & ~(int64_t)63;
    if (total == 0) return;
    m->rep = duet_calloc((size_t)m->nt, sizeof *m->rep);
    uint8_t *dst = m->rep ? duet_huge_alloc((size_t)total, &m->rep_mem) : NULL;
    if (!dst) { /* keep the file layout */
        duet_free(m->rep);
        m->rep = NULL;
        return;
    }
    for (int i = 0; i < m->nt; i++) {
        if (!tf_repackable(m, i)) continue;
        const duet_qtype qt = (duet_qtype)m->nat_type[i];
        const int64_t M = m->list[i]->shape[0], K = m->list[i]->shape[1];
        duet_x16_pack(qt, m->nat_ptr[i], M, K, dst);
        m->rep[i] = dst;
        duet_pages_release(m->nat_ptr[i], (size_t)(M * duet_qtype_row_bytes(qt, K)));
        dst += (tf_repacked_size(m, i) + 63) & ~(int64_t)63;
    }
}

int64_t duet_tf_weight_bytes(const duet_tf *m) {
    int64_t total = 0;
    for (int i = 0; i < m->nt; i++) {
        const duet_tensor *t = m->list[i];
        if (!tf_is_linear_weight(m, t)) continue;
        if (m->rep && m->rep[i] && m->wptr[i] == m->nat_ptr[i]) /* what is streamed */
            total += tf_repacked_size(m, i);
        else
            total += duet_qtype_row_bytes(m->wtype[i], t->shape[1]) * t->shape[0];
    }
    return total;
}

int64_t tf_repacked_bytes(const duet_tf *m) {
    int64_t total = 0;
    for (int i = 0; m->rep && i < m->nt; i++)
        if (m->rep[i]) total += tf_repacked_size(m, i);
    return total;
}

int duet_tf_is_external(const duet_tf *m) { return m->external; }

int tf_main_weight_type(const duet_tf *m) {
    int64_t bytes[DUET_QTYPE_COUNT] = {0};
    int best = DUET_QTYPE_F32;
    for (int i = 0; i < m->nt; i++) {
        const duet_tensor *t = m->list[i];
        if (!tf_is_linear_weight(m, t)) continue;
        bytes[m->wtype[i]] += duet_qtype_row_bytes(m->wtype[i], t->shape[1]) * t->shape[0];
        if (bytes[m->wtype[i]] > bytes[best]) best = m->wtype[i];
    }
    return best;
}

/* ==== external weights ==================================================== */

duet_tf *tf_new_external(const duet_tf_params *p, const tf_ext_params *e) {
    duet_tf *m = tf_alloc(p, 1);
    if (!m) {
        if (e->owner_free) e->owner_free(e->owner);
        return NULL;
    }
    m->owner = e->owner;
    m->owner_free = e->owner_free;
    if (e->rope_neox >= 0) m->neox = e->rope_neox != 0;
    if (e->rope_freq_scale > 0.0f) m->rope_freq_scale = e->rope_freq_scale;
    const int64_t P = m->HS / 2;
    m->copies = duet_calloc((size_t)m->nt, sizeof *m->copies);
    if (!m->copies) goto nomem;
    if (e->rope_freqs) {
        m->rope_freqs = duet_alloc((size_t)P * sizeof(float));
        if (!m->rope_freqs) goto nomem;
        for (int64_t i = 0; i < P; i++) {
            if (!(e->rope_freqs[i] > 0.0f) || !isfinite(e->rope_freqs[i])) {
                duet_set_error(DUET_ERR_FORMAT, "%s: RoPE frequency factor %lld is %g (want a "
                               "positive number)", e->path, (long long)i,
                               (double)e->rope_freqs[i]);
                goto fail;
            }
            m->rope_freqs[i] = e->rope_freqs[i];
        }
    }
    for (int i = 0; i < m->nt; i++) {
        duet_tensor *t = m->list[i];
        tf_ext_weight w = {NULL, DUET_QTYPE_F32};
        if (e->get(e->ud, t->name, t->ndim, t->shape, &w) != DUET_OK) goto fail;
        const int64_t cols = t->shape[t->ndim - 1], rows = t->ndim == 2 ? t->shape[0] : 1;
        const char *tn = duet_qtype_name(w.type) ? duet_qtype_name(w.type) : "unknown";
        if (t->ndim == 1) {
            if (w.type != DUET_QTYPE_F32 && w.type != DUET_QTYPE_F16 &&
                w.type != DUET_QTYPE_BF16) {
                duet_set_error(DUET_ERR_UNSUPPORTED, "%s: tensor for '%s' is %s; vectors (norms, "
                               "biases) must be f32, f16 or bf16", e->path, t->name, tn);
                goto fail;
            }
            duet_dequantize_row(w.type, w.data, t->data, cols);
            continue;
        }
        if (!duet_qtype_supported(w.type) || w.type == DUET_QTYPE_Q8_K ||
            cols % duet_qtype_block_size(w.type)) {
            duet_set_error(DUET_ERR_UNSUPPORTED, "%s: tensor for '%s' is %s with rows of %lld; "
                           "duet multiplies f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_K q5_K q6_K "
                           "(re-quantize it: duet quantize IN OUT --type q8_0)", e->path, t->name,
                           tn, (long long)cols);
            goto fail;
        }
        if (w.type != DUET_QTYPE_F32) {
            m->nat_ptr[i] = m->wptr[i] = w.data;
            m->nat_type[i] = m->wtype[i] = w.type;
        } else if (((uintptr_t)w.data & 3) == 0) {
            t->data = (void *)(uintptr_t)w.data; /* read only: nothing trains an external model */
        } else {
            m->copies[i] = duet_alloc((size_t)(rows * cols) * sizeof(float));
            if (!m->copies[i]) goto nomem;
            memcpy(m->copies[i], w.data, (size_t)(rows * cols) * sizeof(float));
            t->data = m->copies[i];
        }
    }
    return m;
nomem:
    duet_set_error(DUET_ERR_NOMEM, "%s: out of memory setting up the model", e->path);
fail:
    duet_tf_free(m);
    return NULL;
}

static duet_status tf_cache_alloc(duet_tf *m) {
    const duet_tf_params *p = &m->p;
    const size_t n = (size_t)(p->layers * p->ctx * p->kv_heads * m->HS);
    if (!m->ig) {
        m->cache_ids = duet_alloc((size_t)p->ctx * sizeof(int32_t));
        m->window = duet_alloc((size_t)p->ctx * sizeof(int32_t));
        m->ig = duet_graph_new((size_t)1 << 20);
        if (!m->cache_ids || !m->window || !m->ig) {
            duet_graph_free(m->ig);
            m->ig = NULL;
            return duet_set_error(DUET_ERR_NOMEM, "transformer: out of memory for the "
                                  "sampling state");
        }
        duet_graph_set_training(m->ig, 0);
    }
    const int f16 = m->cache_type == DUET_QTYPE_F16;
    if (f16 ? !m->kc16 || !m->vc16 : !m->kcache || !m->vcache) {
        const size_t es = f16 ? sizeof(uint16_t) : sizeof(float);
        void *k = duet_alloc(n * es), *v = duet_alloc(n * es);
        if (!k || !v) {
            duet_free(k);
            duet_free(v);
            return duet_set_error(DUET_ERR_NOMEM, "transformer: out of memory allocating the "
                                  "KV cache (%zu MB)", (2 * n * es) >> 20);
        }
        if (f16) m->kc16 = k, m->vc16 = v;
        else m->kcache = k, m->vcache = v;
    }
    return DUET_OK;
}

duet_status duet_tf_set_cache_type(duet_tf *m, int qtype) {
    if (qtype != DUET_QTYPE_F32 && qtype != DUET_QTYPE_F16)
        return duet_set_error(DUET_ERR_ARG, "transformer: the KV cache can be f32 or f16, not "
                              "%s", duet_qtype_name(qtype));
    if (qtype == DUET_QTYPE_F16 && m->HS > 512)
        return duet_set_error(DUET_ERR_ARG, "transformer: an f16 KV cache needs heads of at "
                              "most 512 values (this model's are %lld)", (long long)m->HS);
    if (qtype == m->cache_type) return DUET_OK;
    /* the other type's rows go; the cache starts empty */
    duet_free(m->kcache);
    duet_free(m->vcache);
    duet_free(m->kc16);
    duet_free(m->vc16);
    m->kcache = m->vcache = NULL;
    m->kc16 = m->vc16 = NULL;
    m->cache_type = qtype;
    m->pos = 0;
    return DUET_OK;
}

int duet_tf_cache_type(const duet_tf *m) { return m->cache_type; }

/* Runs `n` tokens (already copied to cache_ids[pos..pos+n)) at the cache
 * position; writes logits of the last row, or the last `rows` rows. */
static duet_status tf_run_chunk(duet_tf *m, int64_t n, float *logits, int64_t rows) {
    duet_graph *g = m->ig;
    const int64_t C = m->p.dim, V = m->p.vocab;
    if (n == 1 && rows == 1) { /* one token: the single-region decode */
        duet_status st;
        if (tf_decode_one(m, m->cache_ids[m->pos], logits, &st)) {
            if (st == DUET_OK) m->pos++;
            return st;
        }
    }
    duet_graph_reset(g);
    duet_tensor *tid =
        duet_graph_input(g, m->cache_ids + m->pos, DUET_DTYPE_I32, 2, (int64_t[]){1, n});
    duet_tensor *h = tid ? tf_trunk(m, g, tid, 1, n, m->pos, 1) : NULL;
    if (!h) return duet_graph_status(g);
    /* Only the rows asked for go through the output projection. */
    duet_tensor *last = duet_graph_input(g, (float *)h->data + (n - rows) * C, DUET_DTYPE_F32, 2,
                                         (int64_t[]){rows, C});
    duet_tensor *lg = tf_linear(m, g, last, m->output, NULL, 1);
    if (!lg) return duet_graph_status(g);
    memcpy(logits, lg->data, (size_t)(rows * V) * sizeof(float));
    m->pos += n;
    /* rewound now as well: where this pass grew the arena, the merged block
     * is made (and its pages faulted in) here rather than inside the next */
    duet_graph_reset(g);
    return DUET_OK;
}

duet_status duet_tf_feed(duet_tf *m, const int32_t *ids, int64_t n, float *logits, int all) {
    const int64_t ctx = m->p.ctx, V = m->p.vocab;
    if (n < 1 || !ids || !logits)
        return duet_set_error(DUET_ERR_ARG, "transformer feed: need at least one token and a "
                              "logits buffer (got n = %lld)", (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return duet_set_error(DUET_ERR_ARG, "transformer feed: token %lld is id %d, outside "
                                  "the vocabulary 0..%lld (wrong tokenizer for this model?)",
                                  (long long)i, (int)ids[i], (long long)V - 1);
    duet_status s = tf_cache_alloc(m);
    if (s != DUET_OK) return s;
    if (m->pos + n <= ctx) {
        memcpy(m->cache_ids + m->pos, ids, (size_t)n * sizeof(int32_t));
        if (!all) return tf_run_chunk(m, n, logits, 1);
        return tf_run_chunk(m, n, logits, n);
    }
    /* Slide: keep the most recent K tokens of (cache + new), re-encode from 0. */
    const int64_t half = ctx / 2 > 0 ? ctx / 2 : 1;
    const int64_t K = n > half ? ctx : half;
    int64_t from_new = n < K ? n : K;
    int64_t from_old = K - from_new;
    memcpy(m->window, m->cache_ids + m->pos - from_old, (size_t)from_old * sizeof(int32_t));
    memcpy(m->window + from_old, ids + n - from_new, (size_t)from_new * sizeof(int32_t));
    memcpy(m->cache_ids, m->window, (size_t)K * sizeof(int32_t));
    m->pos = 0;
    if (!all) return tf_run_chunk(m, K, logits, 1);
    if (from_new < n) memset(logits, 0, (size_t)((n - from_new) * V) * sizeof(float));
    return tf_run_chunk(m, K, logits + (n - from_new) * V, from_new);
}

/* ==== checkpoints ========================================================= */

#define TF_FORMAT "1"

static duet_status add_meta_i(duet_st_writer *w, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return duet_st_writer_meta(w, key, buf);
}

static duet_status add_meta_f(duet_st_writer *w, const char *key, float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", (double)v);
    return duet_st_writer_meta(w, key, buf);
}

static duet_status add_extra(duet_st_writer *w, const char *const *extra, int nextra) {
    duet_status s = DUET_OK;
    for (int i = 0; i < nextra && s == DUET_OK; i++)
        s = duet_st_writer_meta(w, extra[2 * i], extra[2 * i + 1]);
    return s;
}

duet_status duet_tf_save(const duet_tf *m, const char *path, const char *tokenizer_json,
                         const char *const *extra_meta, int nextra) {
    if (m->external)
        return duet_set_error(DUET_ERR_UNSUPPORTED, "saving %s: this model's weights are views "
                              "into another file (GGUF, llama2.c, Hugging Face); convert that "
                              "file instead (duet convert / duet quantize)", path);
    duet_st_writer *w = duet_st_writer_new();
    if (!w) return duet_set_error(DUET_ERR_NOMEM, "saving %s: out of memory", path);
    const duet_tf_params *p = &m->p;
    duet_status s = DUET_OK;
    for (int i = 0; i < m->nt && s == DUET_OK; i++) {
        const duet_tensor *t = m->list[i];
        s = duet_st_writer_add(w, t->name, DUET_DTYPE_F32, t->ndim, t->shape, t->data);
    }
    if (s == DUET_OK) s = duet_st_writer_meta(w, "duet.kind", "storyteller");
    if (s == DUET_OK) s = duet_st_writer_meta(w, "duet.format", TF_FORMAT);
    if (s == DUET_OK) s = duet_st_writer_meta(w, "duet.arch", duet_tf_arch_name(p->arch));
    if (s == DUET_OK) s = add_meta_i(w, "duet.vocab", p->vocab);
    if (s == DUET_OK) s = add_meta_i(w, "duet.ctx", p->ctx);
    if (s == DUET_OK) s = add_meta_i(w, "duet.dim", p->dim);
    if (s == DUET_OK) s = add_meta_i(w, "duet.layers", p->layers);
    if (s == DUET_OK) s = add_meta_i(w, "duet.heads", p->heads);
    if (s == DUET_OK) s = add_meta_i(w, "duet.kv_heads", p->kv_heads);
    if (s == DUET_OK) s = add_meta_i(w, "duet.hidden", p->hidden);
    if (s == DUET_OK) s = add_meta_f(w, "duet.norm_eps", p->norm_eps);
    if (s == DUET_OK) s = add_meta_f(w, "duet.rope_theta", p->rope_theta);
    if (s == DUET_OK) s = add_meta_i(w, "duet.tied", p->tied);
    if (s == DUET_OK && p->arch != DUET_TF_ARCH_GPT2)
        s = duet_st_writer_meta(w, "duet.rope", m->neox ? "neox" : "adjacent");
    if (s == DUET_OK && tokenizer_json)
        s = duet_st_writer_meta(w, "duet.tokenizer", tokenizer_json);
    if (s == DUET_OK) s = add_extra(w, extra_meta, nextra);
    if (s == DUET_OK) s = duet_st_writer_write(w, path);
    duet_st_writer_free(w);
    return s;
}

/* The status of a failed duet_st_open: I/O when the file cannot be read,
 * else a format error (the message is already set). */
static duet_status open_failure(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return DUET_ERR_IO;
    fclose(f);
    return DUET_ERR_FORMAT;
}

/* Reads an integer metadata field; 0 on success. */
static int meta_i64(const duet_st *st, const char *path, const char *key, int64_t *out) {
    const char *v = duet_st_meta(st, key);
    if (!v) {
        duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s' is missing (not written by duet "
                       "train text?)", path, key);
        return -1;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno) {
        duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s' = '%s' is not a whole number", path,
                       key, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int meta_f32(const duet_st *st, const char *path, const char *key, float *out) {
    const char *v = duet_st_meta(st, key);
    if (!v) {
        duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s' is missing", path, key);
        return -1;
    }
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (!*v || *end || errno || !isfinite(x)) {
        duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s' = '%s' is not a number", path, key, v);
        return -1;
    }
    *out = x;
    return 0;
}

/* Checks duet.kind; 0 when it is `want`. */
static int check_kind(const duet_st *st, const char *path, const char *want, const char *what) {
    const char *kind = duet_st_meta(st, "duet.kind");
    if (!kind) {
        duet_set_error(DUET_ERR_FORMAT, "%s: no 'duet.kind' in the metadata — not a duet %s "
                       "file", path, what);
        return -1;
    }
    if (strcmp(kind, want) != 0) {
        duet_set_error(DUET_ERR_FORMAT, "%s is a '%s' file, not a %s ('%s'); pass a file "
                       "written by duet train text", path, kind, what, want);
        return -1;
    }
    return 0;
}

/* Copies tensor `name` from st into dst after checking its shape. */
static duet_status read_exact(const duet_st *st, const char *path, const char *name,
                              const duet_tensor *like, float *dst) {
    int i = duet_st_find(st, name);
    if (i < 0)
        return duet_set_error(DUET_ERR_FORMAT, "%s: tensor '%s' is missing", path, name);
    duet_tensor view;
    duet_status s = duet_st_tensor(st, i, &view);
    if (s != DUET_OK) return s;
    int same = view.ndim == like->ndim;
    for (int d = 0; same && d < like->ndim; d++) same = view.shape[d] == like->shape[d];
    if (!same) {
        char a[64], b[64];
        return duet_set_error(DUET_ERR_FORMAT, "%s: tensor '%s' is %s, the config needs %s",
                              path, name, duet_tensor_describe(&view, a, sizeof a),
                              duet_tensor_describe(like, b, sizeof b));
    }
    return duet_st_read_f32(st, name, dst, duet_tensor_numel(like));
}

duet_tf *duet_tf_load(const char *path, char **tokenizer_json) {
    if (tokenizer_json) *tokenizer_json = NULL;
    duet_st *st = duet_st_open(path);
    if (!st) return NULL;
    duet_tf *m = NULL;
    if (check_kind(st, path, "storyteller", "storyteller (language model) checkpoint")) goto fail;
    const char *fmt = duet_st_meta(st, "duet.format");
    if (!fmt || strcmp(fmt, TF_FORMAT) != 0) {
        duet_set_error(DUET_ERR_FORMAT, "%s: storyteller format '%s', this duet reads '%s' "
                       "(re-train or convert the model)", path, fmt ? fmt : "(none)", TF_FORMAT);
        goto fail;
    }
    const char *arch = duet_st_meta(st, "duet.arch");
    int a = duet_tf_arch_from_name(arch);
    if (a < 0) {
        duet_set_error(DUET_ERR_FORMAT, "%s: architecture '%s' is not one duet knows (gpt2, "
                       "llama, qwen2)", path, arch ? arch : "(none)");
        goto fail;
    }
    duet_tf_params p;
    duet_tf_params_default(&p, (duet_tf_arch)a);
    int64_t tied = 0;
    if (meta_i64(st, path, "duet.vocab", &p.vocab) || meta_i64(st, path, "duet.ctx", &p.ctx) ||
        meta_i64(st, path, "duet.dim", &p.dim) || meta_i64(st, path, "duet.layers", &p.layers) ||
        meta_i64(st, path, "duet.heads", &p.heads) ||
        meta_i64(st, path, "duet.kv_heads", &p.kv_heads) ||
        meta_i64(st, path, "duet.hidden", &p.hidden) || meta_i64(st, path, "duet.tied", &tied) ||
        meta_f32(st, path, "duet.norm_eps", &p.norm_eps) ||
        meta_f32(st, path, "duet.rope_theta", &p.rope_theta))
        goto fail;
    if (tied != 0 && tied != 1) {
        duet_set_error(DUET_ERR_FORMAT, "%s: duet.tied = %lld (want 0 or 1)", path, (long long)tied);
        goto fail;
    }
    p.tied = (int)tied;
    int neox = 0;
    if (p.arch != DUET_TF_ARCH_GPT2) {
        const char *rope = duet_st_meta(st, "duet.rope");
        if (rope && strcmp(rope, "neox") == 0) {
            neox = 1;
        } else if (!rope || strcmp(rope, "adjacent") != 0) {
            duet_set_error(DUET_ERR_FORMAT, "%s: RoPE layout '%s'; duet knows 'adjacent' "
                           "(pairs (2i, 2i+1), Meta/GGUF order) and 'neox' (pairs (i, i+HS/2))",
                           path, rope ? rope : "(none)");
            goto fail;
        }
    }
    if (duet_tf_params_check(&p) != DUET_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", duet_last_error());
        duet_set_error(DUET_ERR_FORMAT, "%s: bad config in metadata: %s", path, msg);
        goto fail;
    }
    m = tf_alloc(&p, 0);
    if (!m) goto fail;
    m->neox = neox;
    if (duet_st_count(st) != m->nt) {
        duet_set_error(DUET_ERR_FORMAT, "%s: %d tensors, a %s model of this config has %d", path,
                       duet_st_count(st), duet_tf_arch_name(p.arch), m->nt);
        goto fail;
    }
    for (int i = 0; i < m->nt; i++)
        if (read_exact(st, path, m->list[i]->name, m->list[i], m->list[i]->data) != DUET_OK)
            goto fail;
    if (tokenizer_json) {
        const char *tj = duet_st_meta(st, "duet.tokenizer");
        if (tj) {
            size_t len = strlen(tj);
            *tokenizer_json = duet_alloc(len + 1);
            if (!*tokenizer_json) goto fail;
            memcpy(*tokenizer_json, tj, len + 1);
        }
    }
    duet_st_close(st);
    return m;
fail:
    duet_st_close(st);
    duet_tf_free(m);
    return NULL;
}

duet_status duet_tf_save_optim(const duet_tf *m, const duet_adamw *opt, const char *path,
                               const char *const *extra_meta, int nextra) {
    if (opt->nparams != m->nt)
        return duet_set_error(DUET_ERR_ARG, "saving %s: optimizer has %d parameters, the model "
                              "%d", path, opt->nparams, m->nt);
    duet_st_writer *w = duet_st_writer_new();
    if (!w) return duet_set_error(DUET_ERR_NOMEM, "saving %s: out of memory", path);
    /* names live until the write: one buffer for all of them */
    char (*names)[72] = duet_alloc((size_t)(2 * m->nt) * sizeof *names);
    duet_status s = names ? DUET_OK
                          : duet_set_error(DUET_ERR_NOMEM, "saving %s: out of memory", path);
    for (int i = 0; i < m->nt && s == DUET_OK; i++) {
        const duet_tensor *t = m->list[i];
        if (!opt->m[i] || !opt->v[i]) {
            s = duet_set_error(DUET_ERR_ARG, "saving %s: no optimizer state for '%s'", path,
                               t->name);
            break;
        }
        snprintf(names[2 * i], sizeof names[0], "m.%s", t->name);
        snprintf(names[2 * i + 1], sizeof names[0], "v.%s", t->name);
        s = duet_st_writer_add(w, names[2 * i], DUET_DTYPE_F32, t->ndim, t->shape, opt->m[i]);
        if (s == DUET_OK)
            s = duet_st_writer_add(w, names[2 * i + 1], DUET_DTYPE_F32, t->ndim, t->shape,
                                   opt->v[i]);
    }
    if (s == DUET_OK) s = duet_st_writer_meta(w, "duet.kind", "storyteller-optim");
    if (s == DUET_OK) s = duet_st_writer_meta(w, "duet.arch", duet_tf_arch_name(m->p.arch));
    if (s == DUET_OK) s = add_meta_i(w, "duet.adam_step", opt->step);
    if (s == DUET_OK) s = add_extra(w, extra_meta, nextra);
    if (s == DUET_OK) s = duet_st_writer_write(w, path);
    duet_free(names);
    duet_st_writer_free(w);
    return s;
}

duet_status duet_tf_load_optim(duet_tf *m, duet_adamw *opt, const char *path) {
    if (opt->nparams != m->nt)
        return duet_set_error(DUET_ERR_ARG, "loading %s: optimizer has %d parameters, the model "
                              "%d", path, opt->nparams, m->nt);
    duet_st *st = duet_st_open(path);
    if (!st) return open_failure(path);
    duet_status s = DUET_OK;
    if (check_kind(st, path, "storyteller-optim", "storyteller optimizer state")) {
        s = DUET_ERR_FORMAT;
        goto done;
    }
    const char *arch = duet_st_meta(st, "duet.arch");
    if (!arch || strcmp(arch, duet_tf_arch_name(m->p.arch)) != 0) {
        s = duet_set_error(DUET_ERR_FORMAT, "%s: optimizer state for a '%s' model, this one is "
                           "'%s'", path, arch ? arch : "(none)", duet_tf_arch_name(m->p.arch));
        goto done;
    }
    int64_t step;
    if (meta_i64(st, path, "duet.adam_step", &step) || step < 0) {
        s = DUET_ERR_FORMAT;
        goto done;
    }
    if (duet_st_count(st) != 2 * m->nt) {
        s = duet_set_error(DUET_ERR_FORMAT, "%s: %d tensors, expected %d (m and v per "
                           "parameter)", path, duet_st_count(st), 2 * m->nt);
        goto done;
    }
    char name[72];
    for (int i = 0; i < m->nt && s == DUET_OK; i++) {
        const duet_tensor *t = m->list[i];
        if (!opt->m[i] || !opt->v[i]) {
            s = duet_set_error(DUET_ERR_ARG, "loading %s: no optimizer buffers for '%s'", path,
                               t->name);
            break;
        }
        snprintf(name, sizeof name, "m.%s", t->name);
        s = read_exact(st, path, name, t, opt->m[i]);
        if (s != DUET_OK) break;
        snprintf(name, sizeof name, "v.%s", t->name);
        s = read_exact(st, path, name, t, opt->v[i]);
    }
    if (s == DUET_OK) opt->step = step;
done:
    duet_st_close(st);
    return s;
}
