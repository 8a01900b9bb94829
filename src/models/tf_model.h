/*
 * tf_model.h — the transformer's private state (struct duet_tf), shared by
 * transformer.c (parameters, graph forward, checkpoints, external weights)
 * and tf_decode.c (the single-token decode). Nothing outside src/models
 * sees it.
 */
#ifndef DUET_MODELS_TF_MODEL_H
#define DUET_MODELS_TF_MODEL_H

#include "duet.h"
#include "core/internal.h"

#include <stdint.h>

/* The parameters of one block (views into the model's block; NULL when the
 * arch has none). Shapes: C = dim, H = hidden, Q = NH*HS, K = NKV*HS. */
typedef struct tf_layer {
    duet_tensor *attn_norm_w, *attn_norm_b; /* [C] */
    duet_tensor *wq, *bq;                   /* [Q, C], [Q] */
    duet_tensor *wk, *bk;                   /* [K, C], [K] */
    duet_tensor *wv, *bv;                   /* [K, C], [K] */
    duet_tensor *wo, *bo;                   /* [C, Q], [C] */
    duet_tensor *ffn_norm_w, *ffn_norm_b;   /* [C] */
    duet_tensor *w1, *b1;                   /* [H, C], [H] (llama: gate) */
    duet_tensor *w2, *b2;                   /* [C, H], [C] (down / proj) */
    duet_tensor *w3;                        /* [H, C] (llama: up) */
} tf_layer;

struct duet_tf {
    duet_tf_params p;
    int64_t HS;

    /* parameters */
    int nt;                 /* number of parameter tensors */
    duet_tensor *tensors;   /* [nt] */
    duet_tensor **list;     /* [nt] pointers into tensors */
    unsigned char *init;    /* [nt] INIT_* per tensor */
    float *params;          /* one block [nfloats] */
    float *grads;           /* one block [nfloats] */
    int64_t nfloats;        /* padded total */
    int64_t numel;          /* real total */
    duet_tensor *tok_emb;   /* [V, C] */
    duet_tensor *pos_emb;   /* [T, C] (gpt2) */
    duet_tensor *norm_w, *norm_b; /* [C] */
    duet_tensor *output;    /* [V, C]; == tok_emb when tied */
    tf_layer *layers;       /* [L] */

    /* sampling: KV cache and an inference graph, allocated on first use */
    duet_graph *ig;
    float *kcache, *vcache; /* [L, ctx, NKV, HS] each (f32 cache) */
    uint16_t *kc16, *vc16;  /* the same as f16 (duet_tf_set_cache_type) */
    int cache_type;         /* DUET_QTYPE_F32 (0) or DUET_QTYPE_F16 */
    int32_t *cache_ids;     /* [ctx] tokens in the cache */
    int32_t *window;        /* [ctx] scratch for sliding */
    int64_t pos;            /* tokens in the cache */

    /* RoPE */
    int neox;               /* rotate (i, i + HS/2): qwen2, Hugging Face llama */
    float rope_freq_scale;  /* positions times this (1 / linear scaling factor) */
    float *rope_freqs;      /* [HS/2] per-pair frequency divisors, or NULL */

    /* Matrices the sampling linears read through duet_quant_matmul:
     * wptr[i] (NULL: the f32 tensor data, through duet_nn_linear) of type
     * wtype[i]. nat_ptr/nat_type are what the model holds natively (an
     * external model's non-f32 views); wptr may instead point into qw, a
     * converted copy (duet_tf_set_sample_type). */
    int qtype;              /* DUET_QTYPE_F32, or the type of the copy in qw */
    uint8_t *qw;            /* converted matrices, back to back */
    const void **wptr;      /* [nt] */
    int *wtype;             /* [nt] duet_qtype */
    const void **nat_ptr;   /* [nt] */
    int *nat_type;          /* [nt] */
    /* Native Q4_0 / Q8_0 / Q4_K / Q5_K / Q6_K matrices repacked for the VNNI kernels
     * (kernels/quant_x16.h, tf_repack): rep[i] non-NULL means matrix i is
     * read only there (its file pages are given back), by the linears and
     * the decode alike, while wptr[i] is still nat_ptr[i]. */
    const void **rep;       /* [nt], or NULL when nothing is repacked */
    duet_huge rep_mem;      /* holds them */

    /* external weights (tf_new_external) */
    int external;
    void *owner;                 /* the file(s) the views point into */
    void (*owner_free)(void *);  /* releases owner */
    void **copies;               /* [nt] f32 copies of misaligned f32 views, or NULL */

    /* single-token decode (tf_decode.c), allocated on its first token */
    struct tf_decoder *dec;
    int dec_state;               /* 0 not tried, 1 ready, -1 graph path (env or no memory) */
};

/* RoPE with a linear position scale or per-pair frequency divisors
 * (transformer.c): y = rotate(in) for BT rows of NH heads at positions
 * pos0 + (row % T); cs: 2 * T * HS/2 floats of scratch. y may be in. */
void tf_rope_scaled_rows(const duet_tf *m, float *y, const float *in, int64_t BT, int64_t T,
                         int64_t NH, int64_t pos0, float *cs);

/* Row `row` of table tensor i (token or position embeddings) that the
 * model holds natively, as C floats: from the repacked copy where the table
 * is also the (tied) output matrix and was repacked (transformer.c). */
void tf_table_row(const duet_tf *m, int64_t i, int64_t row, float *out);

/* Single-token decode (tf_decode.c): the whole token in one parallel
 * region. Allocates its workspace on first use; returns 1 when it ran,
 * 0 when this model or position must take the graph path. */
int tf_decode_one(duet_tf *m, int32_t id, float *logits, duet_status *st);
void tf_decode_free(duet_tf *m);

#endif
