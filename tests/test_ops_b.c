/*
 * test_ops_b.c — attention, RoPE, conv2d, upsample2x, avgpool2x, dropout,
 * timestep embedding, concat and transpose (src/nn/attention.c, conv.c,
 * misc.c).
 *
 * For every op: forward and every gradient against the PyTorch fixtures of
 * tests/ref/gen_ops_b.py (float64 references from float32 inputs), under each
 * kernel set the CPU can run; backward accumulation (+=) and NULL gradients;
 * central finite differences of every backward; the tape wrappers through
 * duet_graph_backward and their error paths; and bit-identical results with
 * 1 and 2 threads. Dropout is checked against Philox directly.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ==== helpers ==== */

static float *fnew(int64_t n, float fill) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = fill;
    return p;
}

static float *fdup(const float *x, int64_t n) {
    float *p = fnew(n, 0.0f);
    if (x) memcpy(p, x, sizeof(float) * (size_t)n);
    return p;
}

static void fscale(float *dst, const float *src, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i] * s;
}

static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

/* A test-only tape op: loss = sum(x * r) for a caller-owned r, so a tape
 * backward sees exactly the upstream gradient r the fixtures used. */
static void dotloss_backward(duet_graph *g, const duet_record *rec) {
    (void)g;
    duet_tensor *x = rec->in[0];
    if (!x->requires_grad || !x->grad) return;
    const float *r = rec->saved[0];
    float s = rec->out->grad[0];
    for (int64_t i = 0; i < duet_tensor_numel(x); i++) x->grad[i] += s * r[i];
}

static duet_tensor *dotloss(duet_graph *g, duet_tensor *x, const float *r) {
    if (!x) return NULL;
    duet_tensor *out = duet_graph_tensor(g, DUET_DTYPE_F32, 1, (int64_t[]){1});
    if (!out) return NULL;
    ((float *)out->data)[0] = (float)t_dot_d(x->data, r, duet_tensor_numel(x));
    duet_record *rec =
        duet_graph_record(g, DUET_OP_NONE, dotloss_backward, out, x, NULL, NULL, NULL);
    if (rec) rec->saved[0] = (void *)r;
    return out;
}

/* A parameter holding a copy of data, with a zeroed grad. */
static duet_tensor *param_of(const float *data, int ndim, const int64_t *shape) {
    duet_tensor *t = duet_param_new(DUET_DTYPE_F32, ndim, shape, 1);
    memcpy(t->data, data, sizeof(float) * (size_t)duet_tensor_numel(t));
    return t;
}

/* Runs `body` once under every kernel set the CPU supports. */
static const char *const ISAS[] = {"scalar", "avx2", "avx512"};
static char default_isa[16];

static int use_isa(int i) {
    if (duet_kernel_force(ISAS[i]) != DUET_OK) return 0;
    return 1;
}
static void restore_isa(void) { duet_kernel_force(default_isa); }

/* A wrapper error: NULL result, a graph status, and the message mentions `what`. */
static void check_wrapper_error(duet_graph *g, duet_tensor *res, duet_status want,
                                const char *what) {
    duet_status st = duet_graph_status(g);
    T_CHECK(res == NULL && st == want, "%s: NULL and status %d (got %p, status %d: %s)", what,
            (int)want, (void *)res, (int)st, duet_last_error());
    duet_graph_reset(g);
}

/* ==== attention ==== */

typedef struct {
    int64_t B, T, S, NH, NKV, HS;
    int causal;
    float scale;
    float *q, *k, *v, *r, *out, *att;
} att_ctx;

static double att_loss(void *p) {
    att_ctx *c = p;
    duet_attention_forward(c->out, c->att, c->q, c->k, c->v, c->B, c->T, c->S, c->NH, c->NKV,
                           c->HS, c->causal, c->scale);
    return t_dot_d(c->out, c->r, c->B * c->T * c->NH * c->HS);
}

/* an allocator that always fails: forces the scratch-free backward */
static void *failing_alloc(void *ud, size_t size, size_t align) {
    (void)ud, (void)size, (void)align;
    return NULL;
}
static void plain_free(void *ud, void *p) {
    (void)ud;
    free(p);
}

static void test_attention_case(const char *file) {
    t_fix *f = t_fix_load(file);
    if (!f) return;
    int64_t nd;
    int32_t *d = t_fix_i32(f, "dims", &nd);
    const int64_t B = d[0], T = d[1], S = d[2], NH = d[3], NKV = d[4], HS = d[5];
    const int causal = d[6];
    const float scale = (float)t_fix_scalar(f, "scale");
    float *q = t_fix_f32(f, "q", NULL), *k = t_fix_f32(f, "k", NULL), *v = t_fix_f32(f, "v", NULL);
    float *r = t_fix_f32(f, "r", NULL), *out_ref = t_fix_f32(f, "out", NULL);
    float *att_ref = t_fix_f32(f, "att", NULL);
    float *dq_ref = t_fix_f32(f, "dq", NULL), *dk_ref = t_fix_f32(f, "dk", NULL);
    float *dv_ref = t_fix_f32(f, "dv", NULL);
    const int64_t nq = B * T * NH * HS, nkv = B * S * NKV * HS, na = B * NH * T * S;
    char what[160];

    for (int ii = 0; ii < 3; ii++) {
        if (!use_isa(ii)) continue;
        float *out = fnew(nq, NAN), *att = fnew(na, NAN);
        duet_attention_forward(out, att, q, k, v, B, T, S, NH, NKV, HS, causal, scale);
        /* float32 softmax and dot products against a float64 reference */
        snprintf(what, sizeof what, "%s [%s] attention out", file, ISAS[ii]);
        t_close(what, out, out_ref, nq, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s [%s] attention att (masked entries 0)", file, ISAS[ii]);
        t_close(what, att, att_ref, na, 1e-5, 1e-7);

        float *dq = fnew(nq, 0), *dk = fnew(nkv, 0), *dv = fnew(nkv, 0);
        duet_attention_backward(dq, dk, dv, r, att, q, k, v, B, T, S, NH, NKV, HS, causal, scale);
        snprintf(what, sizeof what, "%s [%s] attention dq", file, ISAS[ii]);
        t_close(what, dq, dq_ref, nq, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s [%s] attention dk", file, ISAS[ii]);
        t_close(what, dk, dk_ref, nkv, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s [%s] attention dv", file, ISAS[ii]);
        t_close(what, dv, dv_ref, nkv, 1e-5, 1e-6);

        /* += rule: a second backward doubles every gradient */
        duet_attention_backward(dq, dk, dv, r, att, q, k, v, B, T, S, NH, NKV, HS, causal, scale);
        float *two = fnew(nq > nkv ? nq : nkv, 0);
        fscale(two, dq_ref, 2.0f, nq);
        snprintf(what, sizeof what, "%s [%s] attention dq accumulates", file, ISAS[ii]);
        t_close(what, dq, two, nq, 1e-5, 2e-6);
        fscale(two, dk_ref, 2.0f, nkv);
        snprintf(what, sizeof what, "%s [%s] attention dk accumulates", file, ISAS[ii]);
        t_close(what, dk, two, nkv, 1e-5, 2e-6);
        fscale(two, dv_ref, 2.0f, nkv);
        snprintf(what, sizeof what, "%s [%s] attention dv accumulates", file, ISAS[ii]);
        t_close(what, dv, two, nkv, 1e-5, 2e-6);

        /* one gradient at a time (the others NULL) */
        memset(dq, 0, sizeof(float) * (size_t)nq);
        duet_attention_backward(dq, NULL, NULL, r, att, q, k, v, B, T, S, NH, NKV, HS, causal, scale);
        memset(dk, 0, sizeof(float) * (size_t)nkv);
        duet_attention_backward(NULL, dk, NULL, r, att, q, k, v, B, T, S, NH, NKV, HS, causal, scale);
        memset(dv, 0, sizeof(float) * (size_t)nkv);
        duet_attention_backward(NULL, NULL, dv, r, att, q, k, v, B, T, S, NH, NKV, HS, causal, scale);
        snprintf(what, sizeof what, "%s [%s] attention dq alone", file, ISAS[ii]);
        t_close(what, dq, dq_ref, nq, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s [%s] attention dk alone", file, ISAS[ii]);
        t_close(what, dk, dk_ref, nkv, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s [%s] attention dv alone", file, ISAS[ii]);
        t_close(what, dv, dv_ref, nkv, 1e-5, 1e-6);

        /* no scratch memory: the row-by-row backward gives the same */
        memset(dq, 0, sizeof(float) * (size_t)nq);
        memset(dk, 0, sizeof(float) * (size_t)nkv);
        memset(dv, 0, sizeof(float) * (size_t)nkv);
        duet_allocator fail = {failing_alloc, plain_free, NULL};
        duet_set_allocator(&fail);
        duet_attention_backward(dq, dk, dv, r, att, q, k, v, B, T, S, NH, NKV, HS, causal, scale);
        duet_set_allocator(NULL);
        snprintf(what, sizeof what, "%s [%s] attention dq (no scratch)", file, ISAS[ii]);
        t_close(what, dq, dq_ref, nq, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s [%s] attention dk (no scratch)", file, ISAS[ii]);
        t_close(what, dk, dk_ref, nkv, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s [%s] attention dv (no scratch)", file, ISAS[ii]);
        t_close(what, dv, dv_ref, nkv, 1e-5, 1e-6);
        free(two), free(out), free(att), free(dq), free(dk), free(dv);
    }
    restore_isa();

    /* finite differences of sum(out * r) */
    {
        att_ctx c = {B, T, S, NH, NKV, HS, causal, scale, fdup(q, nq), fdup(k, nkv), fdup(v, nkv),
                     r, fnew(nq, 0), fnew(na, 0)};
        float *dq = fnew(nq, 0), *dk = fnew(nkv, 0), *dv = fnew(nkv, 0);
        att_loss(&c);
        duet_attention_backward(dq, dk, dv, r, c.att, c.q, c.k, c.v, B, T, S, NH, NKV, HS, causal,
                                scale);
        /* float32 forward: noise ~1e-7 * |loss| / eps */
        snprintf(what, sizeof what, "%s attention dq", file);
        t_gradcheck(what, att_loss, &c, c.q, nq, dq, 1e-2f, 1e-2, 2e-3, 200);
        snprintf(what, sizeof what, "%s attention dk", file);
        t_gradcheck(what, att_loss, &c, c.k, nkv, dk, 1e-2f, 1e-2, 2e-3, 200);
        snprintf(what, sizeof what, "%s attention dv", file);
        t_gradcheck(what, att_loss, &c, c.v, nkv, dv, 1e-2f, 1e-2, 2e-3, 200);
        free(c.q), free(c.k), free(c.v), free(c.out), free(c.att), free(dq), free(dk), free(dv);
    }

    /* the tape wrapper: same forward, grads through duet_graph_backward */
    {
        duet_graph *g = duet_graph_new(1 << 16);
        duet_tensor *pq = param_of(q, 4, (int64_t[]){B, T, NH, HS});
        duet_tensor *pk = param_of(k, 4, (int64_t[]){B, S, NKV, HS});
        duet_tensor *pv = param_of(v, 4, (int64_t[]){B, S, NKV, HS});
        duet_tensor *o = duet_nn_attention(g, pq, pk, pv, causal, scale);
        duet_tensor *loss = dotloss(g, o, r);
        T_CHECK(o && o->ndim == 4 && o->shape[1] == T && o->shape[2] == NH, "%s tape out shape", file);
        T_CHECK(duet_graph_nrecords(g) == 2 && duet_graph_records(g)[0].op == DUET_OP_ATTENTION,
                "%s tape records attention", file);
        T_CHECK(duet_graph_backward(g, loss) == DUET_OK, "%s tape backward: %s", file, duet_last_error());
        if (o) {
            snprintf(what, sizeof what, "%s tape attention out", file);
            t_close(what, o->data, out_ref, nq, 1e-5, 1e-6);
        }
        snprintf(what, sizeof what, "%s tape attention dq", file);
        t_close(what, pq->grad, dq_ref, nq, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s tape attention dk", file);
        t_close(what, pk->grad, dk_ref, nkv, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s tape attention dv", file);
        t_close(what, pv->grad, dv_ref, nkv, 1e-5, 1e-6);
        duet_param_free(pq), duet_param_free(pk), duet_param_free(pv);
        duet_graph_free(g);
    }
    t_fix_free(f);
}

static void test_attention_errors(void) {
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *q = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){1, 4, 4, 8}, 1);
    duet_tensor *k = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){1, 4, 2, 8}, 1);
    duet_tensor *k3 = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){1, 4, 3, 8}, 1);
    duet_tensor *kshort = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){1, 3, 2, 8}, 1);
    duet_tensor *khs = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){1, 4, 2, 4}, 1);
    duet_tensor *q3 = duet_param_new(DUET_DTYPE_F32, 3, (int64_t[]){4, 4, 8}, 1);
    duet_tensor *qi = duet_param_new(DUET_DTYPE_I32, 4, (int64_t[]){1, 4, 4, 8}, 0);
    check_wrapper_error(g, duet_nn_attention(g, q3, k, k, 1, 0.3f), DUET_ERR_SHAPE, "attention 3-D q");
    check_wrapper_error(g, duet_nn_attention(g, q, k3, k3, 1, 0.3f), DUET_ERR_SHAPE, "attention NH % NKV");
    check_wrapper_error(g, duet_nn_attention(g, q, k, khs, 1, 0.3f), DUET_ERR_SHAPE, "attention k != v");
    check_wrapper_error(g, duet_nn_attention(g, q, khs, khs, 1, 0.3f), DUET_ERR_SHAPE, "attention HS");
    check_wrapper_error(g, duet_nn_attention(g, q, kshort, kshort, 1, 0.3f), DUET_ERR_SHAPE,
                        "attention causal S < T");
    check_wrapper_error(g, duet_nn_attention(g, qi, k, k, 1, 0.3f), DUET_ERR_SHAPE, "attention i32 q");
    /* non-causal with S < T is fine */
    duet_tensor *o = duet_nn_attention(g, q, kshort, kshort, 0, 0.3f);
    T_CHECK(o && duet_graph_status(g) == DUET_OK, "attention non-causal S < T works");
    T_CHECK(duet_nn_attention(g, NULL, k, k, 1, 0.3f) == NULL && duet_graph_status(g) == DUET_OK,
            "attention NULL input: NULL, no new error");
    /* inference: nothing recorded */
    duet_graph_reset(g);
    duet_graph_set_training(g, 0);
    o = duet_nn_attention(g, q, k, k, 1, 0.3f);
    T_CHECK(o && duet_graph_nrecords(g) == 0 && !o->requires_grad, "attention in inference records nothing");
    duet_param_free(q), duet_param_free(k), duet_param_free(k3), duet_param_free(kshort);
    duet_param_free(khs), duet_param_free(q3), duet_param_free(qi);
    duet_graph_free(g);
}

/* Decode with a KV cache: the T = 1 query at the end of S keys must equal the
 * last row of a full causal pass over S queries. */
static void test_attention_decode_consistency(void) {
    const int64_t B = 2, S = 37, NH = 4, NKV = 2, HS = 16;
    float *q = fnew(B * S * NH * HS, 0), *k = fnew(B * S * NKV * HS, 0), *v = fnew(B * S * NKV * HS, 0);
    t_fill_uniform(q, B * S * NH * HS, 11, -1, 1);
    t_fill_uniform(k, B * S * NKV * HS, 12, -1, 1);
    t_fill_uniform(v, B * S * NKV * HS, 13, -1, 1);
    float *out = fnew(B * S * NH * HS, 0), *att = fnew(B * NH * S * S, 0);
    duet_attention_forward(out, att, q, k, v, B, S, S, NH, NKV, HS, 1, 0.25f);
    float *q1 = fnew(B * NH * HS, 0), *o1 = fnew(B * NH * HS, 0), *a1 = fnew(B * NH * S, 0);
    float *want = fnew(B * NH * HS, 0);
    for (int64_t b = 0; b < B; b++) {
        memcpy(q1 + b * NH * HS, q + (b * S + S - 1) * NH * HS, sizeof(float) * (size_t)(NH * HS));
        memcpy(want + b * NH * HS, out + (b * S + S - 1) * NH * HS, sizeof(float) * (size_t)(NH * HS));
    }
    duet_attention_forward(o1, a1, q1, k, v, B, 1, S, NH, NKV, HS, 1, 0.25f);
    /* different summation orders (dot/axpy rows vs GEMM blocks) */
    t_close("decode T=1 equals the last row of the full pass", o1, want, B * NH * HS, 1e-5, 1e-6);
    free(q), free(k), free(v), free(out), free(att), free(q1), free(o1), free(a1), free(want);
}

/* ==== RoPE ==== */

typedef struct {
    int64_t B, T, NH, HS, pos0;
    float theta;
    int neox;
    float *x, *r, *out;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    duet_rope_forward(c->out, c->x, c->B, c->T, c->NH, c->HS, c->pos0, c->theta, c->neox);
    return t_dot_d(c->out, c->r, c->B * c->T * c->NH * c->HS);
}

static void test_rope_case(const char *file) {
    t_fix *f = t_fix_load(file);
    if (!f) return;
    int32_t *d = t_fix_i32(f, "dims", NULL);
    const int64_t B = d[0], T = d[1], NH = d[2], HS = d[3], pos0 = d[4];
    const int neox = d[5];
    const float theta = (float)t_fix_scalar(f, "theta");
    float *x = t_fix_f32(f, "x", NULL), *r = t_fix_f32(f, "r", NULL);
    float *out_ref = t_fix_f32(f, "out", NULL), *dx_ref = t_fix_f32(f, "dx", NULL);
    const int64_t n = B * T * NH * HS;
    char what[160];
    float *out = fnew(n, NAN), *dx = fnew(n, 0);
    duet_rope_forward(out, x, B, T, NH, HS, pos0, theta, neox);
    snprintf(what, sizeof what, "%s rope out", file);
    t_close(what, out, out_ref, n, 1e-5, 1e-6);
    duet_rope_backward(dx, r, B, T, NH, HS, pos0, theta, neox);
    snprintf(what, sizeof what, "%s rope dx", file);
    t_close(what, dx, dx_ref, n, 1e-5, 1e-6);
    duet_rope_backward(dx, r, B, T, NH, HS, pos0, theta, neox);
    float *two = fnew(n, 0);
    fscale(two, dx_ref, 2.0f, n);
    snprintf(what, sizeof what, "%s rope dx accumulates", file);
    t_close(what, dx, two, n, 1e-5, 2e-6);
    /* in place */
    float *y = fdup(x, n);
    duet_rope_forward(y, y, B, T, NH, HS, pos0, theta, neox);
    snprintf(what, sizeof what, "%s rope in place", file);
    T_CHECK(same_bits(y, out, n), "%s", what);

    rope_ctx c = {B, T, NH, HS, pos0, theta, neox, fdup(x, n), r, fnew(n, 0)};
    memset(dx, 0, sizeof(float) * (size_t)n);
    duet_rope_backward(dx, r, B, T, NH, HS, pos0, theta, neox);
    snprintf(what, sizeof what, "%s rope dx", file);
    t_gradcheck(what, rope_loss, &c, c.x, n, dx, 1e-2f, 1e-3, 1e-4, 0);

    /* tape */
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *px = param_of(x, 4, (int64_t[]){B, T, NH, HS});
    duet_tensor *o = duet_nn_rope(g, px, pos0, theta, neox);
    duet_tensor *loss = dotloss(g, o, r);
    T_CHECK(duet_graph_backward(g, loss) == DUET_OK, "%s tape rope backward: %s", file, duet_last_error());
    if (o) {
        snprintf(what, sizeof what, "%s tape rope out", file);
        t_close(what, o->data, out_ref, n, 1e-5, 1e-6);
    }
    snprintf(what, sizeof what, "%s tape rope dx", file);
    t_close(what, px->grad, dx_ref, n, 1e-5, 1e-6);
    duet_param_free(px);
    duet_graph_free(g);
    free(out), free(dx), free(two), free(y), free(c.x), free(c.out);
    t_fix_free(f);
}

static void test_rope_errors(void) {
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *odd = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){1, 2, 2, 7}, 1);
    duet_tensor *x3 = duet_param_new(DUET_DTYPE_F32, 3, (int64_t[]){2, 2, 8}, 1);
    duet_tensor *x = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){1, 2, 2, 8}, 1);
    check_wrapper_error(g, duet_nn_rope(g, odd, 0, 10000.0f, 0), DUET_ERR_SHAPE, "rope odd HS");
    check_wrapper_error(g, duet_nn_rope(g, x3, 0, 10000.0f, 1), DUET_ERR_SHAPE, "rope 3-D");
    check_wrapper_error(g, duet_nn_rope(g, x, -1, 10000.0f, 1), DUET_ERR_ARG, "rope negative pos0");
    check_wrapper_error(g, duet_nn_rope(g, x, 0, 0.0f, 1), DUET_ERR_ARG, "rope theta 0");
    duet_param_free(odd), duet_param_free(x3), duet_param_free(x);
    duet_graph_free(g);
}

/* ==== conv2d ==== */

typedef struct {
    int64_t N, C, H, W, OC, K, stride, pad, OH, OW;
    float *x, *w, *b, *r, *out, *scratch;
} conv_ctx;

static double conv_loss(void *p) {
    conv_ctx *c = p;
    duet_conv2d_forward(c->out, c->x, c->w, c->b, c->scratch, c->N, c->C, c->H, c->W, c->OC, c->K,
                        c->stride, c->pad);
    return t_dot_d(c->out, c->r, c->N * c->OC * c->OH * c->OW);
}

static void test_conv_case(const char *name) {
    char file[96], what[192];
    snprintf(file, sizeof file, "ops_b_conv_%s.bin", name);
    t_fix *f = t_fix_load(file);
    if (!f) return;
    int32_t *d = t_fix_i32(f, "dims", NULL);
    const int64_t N = d[0], C = d[1], H = d[2], W = d[3], OC = d[4], K = d[5], st = d[6], pad = d[7];
    const int has_bias = d[8];
    const int64_t OH = (H + 2 * pad - K) / st + 1, OW = (W + 2 * pad - K) / st + 1;
    float *x = t_fix_f32(f, "x", NULL), *w = t_fix_f32(f, "w", NULL), *r = t_fix_f32(f, "r", NULL);
    float *out_ref = t_fix_f32(f, "out", NULL), *dx_ref = t_fix_f32(f, "dx", NULL);
    float *dw_ref = t_fix_f32(f, "dw", NULL);
    float *b = has_bias ? t_fix_f32(f, "b", NULL) : NULL;
    float *db_ref = has_bias ? t_fix_f32(f, "db", NULL) : NULL;
    int64_t oshape[4];
    T_CHECK(t_fix_shape(f, "out", oshape) == 4 && oshape[2] == OH && oshape[3] == OW,
            "%s: output size formula matches PyTorch", file);
    const int64_t nx = N * C * H * W, nw = OC * C * K * K, no = N * OC * OH * OW;
    const int64_t ns = duet_conv2d_scratch_floats(C, H, W, K, st, pad);
    float *scratch = fnew(ns, NAN);

    for (int ii = 0; ii < 3; ii++) {
        if (!use_isa(ii)) continue;
        float *out = fnew(no, NAN), *dx = fnew(nx, 0), *dw = fnew(nw, 0), *db = fnew(OC, 0);
        duet_conv2d_forward(out, x, w, b, scratch, N, C, H, W, OC, K, st, pad);
        /* sums of up to C*K*K products; float32 GEMM vs float64 */
        snprintf(what, sizeof what, "%s [%s] conv out", file, ISAS[ii]);
        t_close(what, out, out_ref, no, 1e-5, 1e-5);
        duet_conv2d_backward(dx, dw, has_bias ? db : NULL, r, x, w, scratch, N, C, H, W, OC, K, st, pad);
        snprintf(what, sizeof what, "%s [%s] conv dx", file, ISAS[ii]);
        t_close(what, dx, dx_ref, nx, 1e-5, 1e-5);
        snprintf(what, sizeof what, "%s [%s] conv dw", file, ISAS[ii]);
        t_close(what, dw, dw_ref, nw, 1e-5, 1e-5);
        if (has_bias) {
            snprintf(what, sizeof what, "%s [%s] conv db", file, ISAS[ii]);
            t_close(what, db, db_ref, OC, 1e-5, 1e-5);
        }
        /* += rule, and gradients one at a time */
        duet_conv2d_backward(dx, NULL, NULL, r, x, w, scratch, N, C, H, W, OC, K, st, pad);
        duet_conv2d_backward(NULL, dw, NULL, r, x, w, scratch, N, C, H, W, OC, K, st, pad);
        if (has_bias) duet_conv2d_backward(NULL, NULL, db, r, x, w, scratch, N, C, H, W, OC, K, st, pad);
        float *two = fnew(nx > nw ? nx : nw, 0);
        fscale(two, dx_ref, 2.0f, nx);
        snprintf(what, sizeof what, "%s [%s] conv dx accumulates", file, ISAS[ii]);
        t_close(what, dx, two, nx, 1e-5, 2e-5);
        fscale(two, dw_ref, 2.0f, nw);
        snprintf(what, sizeof what, "%s [%s] conv dw accumulates", file, ISAS[ii]);
        t_close(what, dw, two, nw, 1e-5, 2e-5);
        if (has_bias) {
            fscale(two, db_ref, 2.0f, OC);
            snprintf(what, sizeof what, "%s [%s] conv db accumulates", file, ISAS[ii]);
            t_close(what, db, two, OC, 1e-5, 2e-5);
        }
        free(out), free(dx), free(dw), free(db), free(two);
    }
    restore_isa();

    /* finite differences */
    {
        conv_ctx c = {N, C, H, W, OC, K, st, pad, OH, OW, fdup(x, nx), fdup(w, nw),
                      b ? fdup(b, OC) : NULL, r, fnew(no, 0), scratch};
        float *dx = fnew(nx, 0), *dw = fnew(nw, 0), *db = fnew(OC, 0);
        duet_conv2d_backward(dx, dw, db, r, x, w, scratch, N, C, H, W, OC, K, st, pad);
        /* the loss is linear in each of x, w, b, so central differences are
         * exact for any step: a step of 0.25 keeps the forward's fp32
         * rounding (larger with Winograd F(4x4, 3x3)) out of the quotient */
        snprintf(what, sizeof what, "%s conv dx", file);
        t_gradcheck(what, conv_loss, &c, c.x, nx, dx, 0.25f, 1e-3, 2e-4, 0);
        snprintf(what, sizeof what, "%s conv dw", file);
        t_gradcheck(what, conv_loss, &c, c.w, nw, dw, 0.25f, 1e-3, 2e-4, 0);
        if (c.b) {
            snprintf(what, sizeof what, "%s conv db", file);
            t_gradcheck(what, conv_loss, &c, c.b, OC, db, 0.25f, 1e-3, 2e-4, 0);
        }
        free(c.x), free(c.w), free(c.b), free(c.out), free(dx), free(dw), free(db);
    }

    /* tape */
    {
        duet_graph *g = duet_graph_new(1 << 16);
        duet_tensor *px = param_of(x, 4, (int64_t[]){N, C, H, W});
        duet_tensor *pw = param_of(w, 4, (int64_t[]){OC, C, K, K});
        duet_tensor *pb = b ? param_of(b, 1, (int64_t[]){OC}) : NULL;
        duet_tensor *o = duet_nn_conv2d(g, px, pw, pb, st, pad);
        T_CHECK(o && o->shape[0] == N && o->shape[1] == OC && o->shape[2] == OH && o->shape[3] == OW,
                "%s tape conv out shape", file);
        duet_tensor *loss = dotloss(g, o, r);
        T_CHECK(duet_graph_backward(g, loss) == DUET_OK, "%s tape conv backward: %s", file, duet_last_error());
        if (o) {
            snprintf(what, sizeof what, "%s tape conv out", file);
            t_close(what, o->data, out_ref, no, 1e-5, 1e-5);
        }
        snprintf(what, sizeof what, "%s tape conv dx", file);
        t_close(what, px->grad, dx_ref, nx, 1e-5, 1e-5);
        snprintf(what, sizeof what, "%s tape conv dw", file);
        t_close(what, pw->grad, dw_ref, nw, 1e-5, 1e-5);
        if (pb) {
            snprintf(what, sizeof what, "%s tape conv db", file);
            t_close(what, pb->grad, db_ref, OC, 1e-5, 1e-5);
        }
        duet_param_free(px), duet_param_free(pw), duet_param_free(pb);
        duet_graph_free(g);
    }
    free(scratch);
    t_fix_free(f);
}

static void test_conv_errors(void) {
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *x = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){1, 3, 5, 5}, 1);
    duet_tensor *w = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){4, 3, 3, 3}, 1);
    duet_tensor *wc = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){4, 2, 3, 3}, 1);
    duet_tensor *wr = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){4, 3, 3, 1}, 1);
    duet_tensor *w7 = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){4, 3, 7, 7}, 1);
    duet_tensor *b5 = duet_param_new(DUET_DTYPE_F32, 1, (int64_t[]){5}, 1);
    duet_tensor *x3 = duet_param_new(DUET_DTYPE_F32, 3, (int64_t[]){3, 5, 5}, 1);
    check_wrapper_error(g, duet_nn_conv2d(g, x3, w, NULL, 1, 1), DUET_ERR_SHAPE, "conv 3-D x");
    check_wrapper_error(g, duet_nn_conv2d(g, x, wc, NULL, 1, 1), DUET_ERR_SHAPE, "conv channels");
    check_wrapper_error(g, duet_nn_conv2d(g, x, wr, NULL, 1, 1), DUET_ERR_SHAPE, "conv non-square kernel");
    check_wrapper_error(g, duet_nn_conv2d(g, x, w, b5, 1, 1), DUET_ERR_SHAPE, "conv bias size");
    check_wrapper_error(g, duet_nn_conv2d(g, x, w, NULL, 0, 1), DUET_ERR_ARG, "conv stride 0");
    check_wrapper_error(g, duet_nn_conv2d(g, x, w, NULL, 1, -1), DUET_ERR_ARG, "conv negative pad");
    check_wrapper_error(g, duet_nn_conv2d(g, x, w7, NULL, 1, 0), DUET_ERR_SHAPE, "conv kernel > image");
    T_CHECK(duet_nn_conv2d(g, NULL, w, NULL, 1, 1) == NULL && duet_graph_status(g) == DUET_OK,
            "conv NULL input: NULL, no new error");
    duet_param_free(x), duet_param_free(w), duet_param_free(wc), duet_param_free(wr);
    duet_param_free(w7), duet_param_free(b5), duet_param_free(x3);
    duet_graph_free(g);
}

/* ==== upsample2x, avgpool2x ==== */

typedef struct {
    int64_t N, C, H, W, nout;
    int up;
    float *x, *r, *out;
} pool_ctx;

static double pool_loss(void *p) {
    pool_ctx *c = p;
    if (c->up) duet_upsample2x_forward(c->out, c->x, c->N, c->C, c->H, c->W);
    else duet_avgpool2x_forward(c->out, c->x, c->N, c->C, c->H, c->W);
    return t_dot_d(c->out, c->r, c->nout);
}

static void test_resample(int up) {
    const char *file = up ? "ops_b_upsample.bin" : "ops_b_avgpool.bin";
    const char *op = up ? "upsample2x" : "avgpool2x";
    char what[128];
    t_fix *f = t_fix_load(file);
    if (!f) return;
    int64_t shape[8];
    t_fix_shape(f, "x", shape);
    const int64_t N = shape[0], C = shape[1], H = shape[2], W = shape[3];
    const int64_t nx = N * C * H * W, no = up ? 4 * nx : nx / 4;
    float *x = t_fix_f32(f, "x", NULL), *r = t_fix_f32(f, "r", NULL);
    float *out_ref = t_fix_f32(f, "out", NULL), *dx_ref = t_fix_f32(f, "dx", NULL);
    float *out = fnew(no, NAN), *dx = fnew(nx, 0);
    if (up) duet_upsample2x_forward(out, x, N, C, H, W), duet_upsample2x_backward(dx, r, N, C, H, W);
    else duet_avgpool2x_forward(out, x, N, C, H, W), duet_avgpool2x_backward(dx, r, N, C, H, W);
    snprintf(what, sizeof what, "%s out", op);
    t_close(what, out, out_ref, no, 1e-6, 1e-7);
    snprintf(what, sizeof what, "%s dx", op);
    t_close(what, dx, dx_ref, nx, 1e-6, 1e-6);
    float *two = fnew(nx, 0), *dx2 = fdup(dx, nx);
    fscale(two, dx_ref, 2.0f, nx);
    if (up) duet_upsample2x_backward(dx2, r, N, C, H, W);
    else duet_avgpool2x_backward(dx2, r, N, C, H, W);
    snprintf(what, sizeof what, "%s dx accumulates", op);
    t_close(what, dx2, two, nx, 1e-6, 2e-6);
    free(two), free(dx2);
    pool_ctx c = {N, C, H, W, no, up, fdup(x, nx), r, fnew(no, 0)};
    snprintf(what, sizeof what, "%s dx", op);
    t_gradcheck(what, pool_loss, &c, c.x, nx, dx, 1e-2f, 1e-3, 1e-4, 0);
    /* tape */
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *px = param_of(x, 4, shape);
    duet_tensor *o = up ? duet_nn_upsample2x(g, px) : duet_nn_avgpool2x(g, px);
    duet_tensor *loss = dotloss(g, o, r);
    T_CHECK(duet_graph_backward(g, loss) == DUET_OK, "tape %s backward: %s", op, duet_last_error());
    if (o) {
        snprintf(what, sizeof what, "tape %s out", op);
        t_close(what, o->data, out_ref, no, 1e-6, 1e-7);
    }
    snprintf(what, sizeof what, "tape %s dx", op);
    t_close(what, px->grad, dx_ref, nx, 1e-6, 1e-6);
    duet_param_free(px);
    /* errors */
    duet_tensor *x3 = duet_param_new(DUET_DTYPE_F32, 3, (int64_t[]){2, 4, 4}, 1);
    check_wrapper_error(g, up ? duet_nn_upsample2x(g, x3) : duet_nn_avgpool2x(g, x3), DUET_ERR_SHAPE,
                        up ? "upsample2x 3-D" : "avgpool2x 3-D");
    if (!up) {
        duet_tensor *xo = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){1, 2, 5, 4}, 1);
        check_wrapper_error(g, duet_nn_avgpool2x(g, xo), DUET_ERR_SHAPE, "avgpool2x odd H");
        duet_param_free(xo);
    }
    duet_param_free(x3);
    duet_graph_free(g);
    free(out), free(dx), free(c.x), free(c.out);
    t_fix_free(f);
}

/* ==== dropout ==== */

typedef struct {
    int64_t n;
    float p;
    uint64_t seed, offset;
    float *x, *r, *out;
} drop_ctx;

static double drop_loss(void *pc) {
    drop_ctx *c = pc;
    duet_dropout_forward(c->out, NULL, c->x, c->n, c->p, c->seed, c->offset);
    return t_dot_d(c->out, c->r, c->n);
}

static void test_dropout(void) {
    const int64_t n = 20000;
    const float p = 0.3f;
    const uint64_t seed = 1234, offset = 77;
    float *x = fnew(n, 0), *out = fnew(n, NAN), *mask = fnew(n, NAN);
    t_fill_uniform(x, n, 5, -2, 2);
    duet_dropout_forward(out, mask, x, n, p, seed, offset);
    /* the spec: keep element i iff the 24-bit uniform of philox(seed, offset + i) is >= p */
    int64_t bad_mask = 0, bad_out = 0, kept = 0;
    const float keep = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < n; i++) {
        uint32_t wd[4];
        duet_philox(seed, offset + (uint64_t)i, wd);
        double u = (double)(wd[0] >> 8) / 16777216.0;
        float m = u >= (double)p ? keep : 0.0f;
        bad_mask += mask[i] != m;
        bad_out += out[i] != x[i] * m;
        kept += m != 0.0f;
    }
    T_CHECK(bad_mask == 0, "dropout mask follows philox(seed, offset + i) (%lld off)", (long long)bad_mask);
    T_CHECK(bad_out == 0, "dropout out = x * mask (%lld off)", (long long)bad_out);
    /* keep rate 0.7 within 5 sigma (sigma = sqrt(p(1-p)/n) = 0.0032) */
    double rate = (double)kept / (double)n;
    T_CHECK(fabs(rate - 0.7) < 0.016, "dropout keep rate %.4f ~ 0.7", rate);
    /* E[out] = x: on x = 1 the mean is 1 within 5 sigma (sigma = sqrt(p/(1-p)/n) = 0.0046) */
    float *ones = fnew(n, 1.0f), *o1 = fnew(n, 0);
    duet_dropout_forward(o1, NULL, ones, n, p, seed + 1, 0);
    double mean = 0;
    for (int64_t i = 0; i < n; i++) mean += (double)o1[i];
    mean /= (double)n;
    T_CHECK(fabs(mean - 1.0) < 0.023, "dropout is unbiased: mean %.4f ~ 1", mean);
    /* counters, not state: offset + 5 shifts the mask by 5 */
    float *mask2 = fnew(n, 0);
    duet_dropout_forward(o1, mask2, x, n, p, seed, offset + 5);
    T_CHECK(same_bits(mask2, mask + 5, n - 5), "dropout mask at offset + 5 is the mask shifted by 5");
    /* another seed: another mask */
    duet_dropout_forward(o1, mask2, x, n, p, seed + 1, offset);
    T_CHECK(!same_bits(mask2, mask, n), "dropout: another seed gives another mask");
    /* p = 0 keeps everything unscaled */
    duet_dropout_forward(o1, mask2, x, n, 0.0f, seed, offset);
    T_CHECK(same_bits(o1, x, n), "dropout p = 0 is the identity");

    /* backward: dinp += dout * mask */
    float *r = fnew(n, 0), *dx = fnew(n, 0.5f), *want = fnew(n, 0);
    t_fill_uniform(r, n, 6, -1, 1);
    for (int64_t i = 0; i < n; i++) want[i] = 0.5f + r[i] * mask[i];
    duet_dropout_backward(dx, r, mask, n);
    t_close("dropout dx = 0.5 + r * mask", dx, want, n, 1e-6, 1e-7);
    {
        const int64_t m = 64;
        drop_ctx c = {m, p, seed, offset, fdup(x, m), r, fnew(m, 0)};
        float *d = fnew(m, 0);
        duet_dropout_backward(d, r, mask, m);
        t_gradcheck("dropout dx", drop_loss, &c, c.x, m, d, 1e-2f, 1e-3, 1e-5, 0);
        free(c.x), free(c.out), free(d);
    }

    /* tape */
    duet_graph *g = duet_graph_new(1 << 20);
    duet_tensor *px = param_of(x, 2, (int64_t[]){100, n / 100});
    duet_rng rng;
    duet_rng_init(&rng, seed);
    rng.offset = offset;
    duet_tensor *o = duet_nn_dropout(g, px, 0.0f, &rng);
    T_CHECK(o == px && duet_graph_nrecords(g) == 0 && rng.offset == offset,
            "tape dropout p = 0: identity, no record, rng untouched");
    duet_graph_set_training(g, 0);
    o = duet_nn_dropout(g, px, p, &rng);
    T_CHECK(o == px && duet_graph_nrecords(g) == 0 && rng.offset == offset,
            "tape dropout in inference: identity, no record, rng untouched");
    duet_graph_set_training(g, 1);
    o = duet_nn_dropout(g, px, p, &rng);
    T_CHECK(o && o != px && rng.offset == offset + (uint64_t)n, "tape dropout advances rng.offset by n");
    T_CHECK(o && same_bits(o->data, out, n), "tape dropout uses rng seed and offset");
    duet_tensor *loss = dotloss(g, o, r);
    T_CHECK(duet_graph_backward(g, loss) == DUET_OK, "tape dropout backward: %s", duet_last_error());
    for (int64_t i = 0; i < n; i++) want[i] = r[i] * mask[i];
    t_close("tape dropout dx = r * mask", px->grad, want, n, 1e-6, 1e-7);
    duet_graph_reset(g);
    check_wrapper_error(g, duet_nn_dropout(g, px, 1.0f, &rng), DUET_ERR_ARG, "dropout p = 1");
    check_wrapper_error(g, duet_nn_dropout(g, px, -0.1f, &rng), DUET_ERR_ARG, "dropout p < 0");
    check_wrapper_error(g, duet_nn_dropout(g, px, NAN, &rng), DUET_ERR_ARG, "dropout p NaN");
    check_wrapper_error(g, duet_nn_dropout(g, px, 0.5f, NULL), DUET_ERR_ARG, "dropout NULL rng");
    duet_param_free(px);
    duet_graph_free(g);
    free(x), free(out), free(mask), free(ones), free(o1), free(mask2), free(r), free(dx), free(want);
}

/* ==== timestep embedding ==== */

typedef struct {
    int64_t N, dim;
    float *t, *r, *out;
} temb_ctx;

static double temb_loss(void *p) {
    temb_ctx *c = p;
    duet_timestep_embedding_forward(c->out, c->t, c->N, c->dim, 10000.0f);
    return t_dot_d(c->out, c->r, c->N * c->dim);
}

static void test_temb(int64_t dim) {
    char file[64], what[128];
    snprintf(file, sizeof file, "ops_b_temb%lld.bin", (long long)dim);
    t_fix *f = t_fix_load(file);
    if (!f) return;
    int64_t N;
    float *t = t_fix_f32(f, "t", &N), *r = t_fix_f32(f, "r", NULL);
    float *out_ref = t_fix_f32(f, "out", NULL), *dt_ref = t_fix_f32(f, "dt", NULL);
    float *out32 = t_fix_f32(f, "out_f32", NULL);
    float *out = fnew(N * dim, NAN), *dt = fnew(N, 0);
    duet_timestep_embedding_forward(out, t, N, dim, 10000.0f);
    snprintf(what, sizeof what, "%s timestep embedding out", file);
    t_close(what, out, out_ref, N * dim, 1e-5, 1e-6);
    /* diffusers computes the angle t * f in float32: at t = 999 that is off by
     * up to ~1.2e-4 rad; we form it in double, so agree only to that. */
    snprintf(what, sizeof what, "%s timestep embedding vs diffusers float32", file);
    t_close(what, out, out32, N * dim, 0, 3e-4);
    if (dim % 2) {
        int zero = 1;
        for (int64_t n = 0; n < N; n++) zero &= out[n * dim + dim - 1] == 0.0f;
        T_CHECK(zero, "%s: odd dim pads the last column with 0", file);
    }
    duet_timestep_embedding_backward(dt, r, t, N, dim, 10000.0f);
    snprintf(what, sizeof what, "%s timestep embedding dt", file);
    t_close(what, dt, dt_ref, N, 1e-5, 1e-5);
    {
        float *dt2 = fdup(dt, N), *two = fnew(N, 0);
        fscale(two, dt_ref, 2.0f, N);
        duet_timestep_embedding_backward(dt2, r, t, N, dim, 10000.0f);
        snprintf(what, sizeof what, "%s timestep embedding dt accumulates", file);
        t_close(what, dt2, two, N, 1e-5, 2e-5);
        free(dt2), free(two);
    }
    temb_ctx c = {N, dim, fdup(t, N), r, fnew(N * dim, 0)};
    snprintf(what, sizeof what, "%s timestep embedding dt", file);
    t_gradcheck(what, temb_loss, &c, c.t, N, dt, 1e-2f, 1e-3, 1e-3, 0);
    /* tape */
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *pt = param_of(t, 1, (int64_t[]){N});
    duet_tensor *o = duet_nn_timestep_embedding(g, pt, dim, 10000.0f);
    T_CHECK(o && o->ndim == 2 && o->shape[0] == N && o->shape[1] == dim, "%s tape out shape", file);
    duet_tensor *loss = dotloss(g, o, r);
    T_CHECK(duet_graph_backward(g, loss) == DUET_OK, "%s tape backward: %s", file, duet_last_error());
    if (o) {
        snprintf(what, sizeof what, "%s tape timestep embedding out", file);
        t_close(what, o->data, out_ref, N * dim, 1e-5, 1e-6);
    }
    snprintf(what, sizeof what, "%s tape timestep embedding dt", file);
    t_close(what, pt->grad, dt_ref, N, 1e-5, 1e-5);
    duet_tensor *t2 = duet_param_new(DUET_DTYPE_F32, 2, (int64_t[]){N, 1}, 1);
    check_wrapper_error(g, duet_nn_timestep_embedding(g, t2, dim, 10000.0f), DUET_ERR_SHAPE,
                        "timestep embedding 2-D t");
    check_wrapper_error(g, duet_nn_timestep_embedding(g, pt, 1, 10000.0f), DUET_ERR_ARG,
                        "timestep embedding dim 1");
    duet_param_free(t2), duet_param_free(pt);
    duet_graph_free(g);
    free(out), free(dt), free(c.t), free(c.out);
    t_fix_free(f);
}

/* ==== concat, transpose ==== */

typedef struct {
    int64_t N, CA, CB, I;
    float *a, *b, *r, *out;
} cat_ctx;

static double cat_loss(void *p) {
    cat_ctx *c = p;
    duet_concat_forward(c->out, c->a, c->b, c->N, c->CA, c->CB, c->I);
    return t_dot_d(c->out, c->r, c->N * (c->CA + c->CB) * c->I);
}

static void test_concat(void) {
    t_fix *f = t_fix_load("ops_b_concat.bin");
    if (!f) return;
    int64_t sa[8], sb[8];
    t_fix_shape(f, "a", sa);
    t_fix_shape(f, "b", sb);
    const int64_t N = sa[0], CA = sa[1], CB = sb[1], I = sa[2] * sa[3];
    const int64_t na = N * CA * I, nb = N * CB * I, no = na + nb;
    float *a = t_fix_f32(f, "a", NULL), *b = t_fix_f32(f, "b", NULL), *r = t_fix_f32(f, "r", NULL);
    float *out_ref = t_fix_f32(f, "out", NULL);
    float *da_ref = t_fix_f32(f, "da", NULL), *db_ref = t_fix_f32(f, "db", NULL);
    float *out = fnew(no, NAN), *da = fnew(na, 0), *db = fnew(nb, 0);
    duet_concat_forward(out, a, b, N, CA, CB, I);
    t_close("concat out", out, out_ref, no, 0, 0);
    duet_concat_backward(da, db, r, N, CA, CB, I);
    t_close("concat da", da, da_ref, na, 0, 0);
    t_close("concat db", db, db_ref, nb, 0, 0);
    {
        float *two = fnew(na > nb ? na : nb, 0);
        duet_concat_backward(da, NULL, r, N, CA, CB, I);
        duet_concat_backward(NULL, db, r, N, CA, CB, I);
        fscale(two, da_ref, 2.0f, na);
        t_close("concat da accumulates", da, two, na, 0, 0);
        fscale(two, db_ref, 2.0f, nb);
        t_close("concat db accumulates", db, two, nb, 0, 0);
        free(two);
        /* the gradchecks below want the single gradient back */
        memcpy(da, da_ref, sizeof(float) * (size_t)na);
        memcpy(db, db_ref, sizeof(float) * (size_t)nb);
    }
    cat_ctx c = {N, CA, CB, I, fdup(a, na), fdup(b, nb), r, fnew(no, 0)};
    t_gradcheck("concat da", cat_loss, &c, c.a, na, da, 1e-2f, 1e-3, 1e-4, 0);
    t_gradcheck("concat db", cat_loss, &c, c.b, nb, db, 1e-2f, 1e-3, 1e-4, 0);
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *pa = param_of(a, 4, sa), *pb = param_of(b, 4, sb);
    duet_tensor *o = duet_nn_concat(g, pa, pb);
    T_CHECK(o && o->ndim == 4 && o->shape[1] == CA + CB && o->shape[3] == sa[3], "tape concat shape");
    duet_tensor *loss = dotloss(g, o, r);
    T_CHECK(duet_graph_backward(g, loss) == DUET_OK, "tape concat backward: %s", duet_last_error());
    if (o) t_close("tape concat out", o->data, out_ref, no, 0, 0);
    t_close("tape concat da", pa->grad, da_ref, na, 0, 0);
    t_close("tape concat db", pb->grad, db_ref, nb, 0, 0);
    duet_tensor *bad = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){N, CB, sa[2], sa[3] + 1}, 1);
    duet_tensor *badn = duet_param_new(DUET_DTYPE_F32, 4, (int64_t[]){N + 1, CB, sa[2], sa[3]}, 1);
    duet_tensor *b3 = duet_param_new(DUET_DTYPE_F32, 3, (int64_t[]){N, CB, I}, 1);
    check_wrapper_error(g, duet_nn_concat(g, pa, bad), DUET_ERR_SHAPE, "concat spatial mismatch");
    check_wrapper_error(g, duet_nn_concat(g, pa, badn), DUET_ERR_SHAPE, "concat N mismatch");
    check_wrapper_error(g, duet_nn_concat(g, pa, b3), DUET_ERR_SHAPE, "concat ndim mismatch");
    duet_param_free(pa), duet_param_free(pb), duet_param_free(bad), duet_param_free(badn);
    duet_param_free(b3);
    duet_graph_free(g);
    free(out), free(da), free(db), free(c.a), free(c.b), free(c.out);
    t_fix_free(f);
}

typedef struct {
    int64_t N, A, Bd;
    float *x, *r, *out;
} tr_ctx;

static double tr_loss(void *p) {
    tr_ctx *c = p;
    duet_transpose_forward(c->out, c->x, c->N, c->A, c->Bd);
    return t_dot_d(c->out, c->r, c->N * c->A * c->Bd);
}

static void test_transpose(void) {
    t_fix *f = t_fix_load("ops_b_transpose.bin");
    if (!f) return;
    int64_t s3[8], s4[8];
    t_fix_shape(f, "x", s3);
    t_fix_shape(f, "x4", s4);
    const int64_t N = s3[0], A = s3[1], Bd = s3[2], n = N * A * Bd;
    float *x = t_fix_f32(f, "x", NULL), *r = t_fix_f32(f, "r", NULL);
    float *out_ref = t_fix_f32(f, "out", NULL), *dx_ref = t_fix_f32(f, "dx", NULL);
    float *out = fnew(n, NAN), *dx = fnew(n, 0);
    duet_transpose_forward(out, x, N, A, Bd);
    t_close("transpose out", out, out_ref, n, 0, 0);
    duet_transpose_backward(dx, r, N, A, Bd);
    t_close("transpose dx", dx, dx_ref, n, 0, 0);
    {
        float *dx2 = fdup(dx, n), *two = fnew(n, 0);
        fscale(two, dx_ref, 2.0f, n);
        duet_transpose_backward(dx2, r, N, A, Bd);
        t_close("transpose dx accumulates", dx2, two, n, 0, 0);
        free(dx2), free(two);
    }
    tr_ctx c = {N, A, Bd, fdup(x, n), r, fnew(n, 0)};
    t_gradcheck("transpose dx", tr_loss, &c, c.x, n, dx, 1e-2f, 1e-3, 1e-4, 0);

    duet_graph *g = duet_graph_new(1 << 16);
    /* 3-D */
    duet_tensor *px = param_of(x, 3, s3);
    duet_tensor *o = duet_nn_transpose(g, px);
    T_CHECK(o && o->ndim == 3 && o->shape[1] == Bd && o->shape[2] == A, "tape transpose 3-D shape");
    duet_tensor *loss = dotloss(g, o, r);
    T_CHECK(duet_graph_backward(g, loss) == DUET_OK, "tape transpose backward: %s", duet_last_error());
    if (o) t_close("tape transpose out", o->data, out_ref, n, 0, 0);
    t_close("tape transpose dx", px->grad, dx_ref, n, 0, 0);
    /* 4-D [N,C,H,W] -> [N, H*W, C] */
    duet_graph_reset(g);
    const int64_t n4 = s4[0] * s4[1] * s4[2] * s4[3];
    duet_tensor *p4 = param_of(t_fix_f32(f, "x4", NULL), 4, s4);
    float *r4 = t_fix_f32(f, "r4", NULL);
    o = duet_nn_transpose(g, p4);
    T_CHECK(o && o->ndim == 3 && o->shape[0] == s4[0] && o->shape[1] == s4[2] * s4[3] && o->shape[2] == s4[1],
            "tape transpose 4-D -> [N, H*W, C]");
    loss = dotloss(g, o, r4);
    T_CHECK(duet_graph_backward(g, loss) == DUET_OK, "tape transpose 4-D backward: %s", duet_last_error());
    if (o) t_close("tape transpose 4-D out", o->data, t_fix_f32(f, "out4", NULL), n4, 0, 0);
    t_close("tape transpose 4-D dx", p4->grad, t_fix_f32(f, "dx4", NULL), n4, 0, 0);
    /* 2-D: treated as N = 1 */
    duet_graph_reset(g);
    duet_tensor *p2 = param_of(x, 2, (int64_t[]){A, Bd}); /* first image of x */
    o = duet_nn_transpose(g, p2);
    T_CHECK(o && o->ndim == 2 && o->shape[0] == Bd && o->shape[1] == A, "tape transpose 2-D shape");
    if (o) t_close("tape transpose 2-D out", o->data, out_ref, A * Bd, 0, 0);
    duet_tensor *x1 = duet_param_new(DUET_DTYPE_F32, 1, (int64_t[]){5}, 1);
    check_wrapper_error(g, duet_nn_transpose(g, x1), DUET_ERR_SHAPE, "transpose 1-D");
    duet_param_free(px), duet_param_free(p4), duet_param_free(p2), duet_param_free(x1);
    duet_graph_free(g);
    free(out), free(dx), free(c.x), free(c.out);
    t_fix_free(f);
}

/* ==== thread-count independence ==== */

/* Runs every op's forward and backward at `threads` threads into bufs. Sizes
 * are large enough that every OpenMP region in the ops is active. */
enum { TH_ATT_OUT, TH_ATT_ATT, TH_DQ, TH_DK, TH_DV, TH_ROPE, TH_ROPE_D, TH_CONV, TH_CONV_DX,
       TH_CONV_DW, TH_CONV_DB, TH_UP, TH_UP_D, TH_POOL, TH_POOL_D, TH_DROP, TH_TR, TH_TR_D,
       TH_COUNT };

typedef struct {
    const char *name;
    int64_t n;
} th_buf;

static const th_buf TH_BUFS[TH_COUNT] = {
    [TH_ATT_OUT] = {"attention out", 2 * 40 * 4 * 16}, [TH_ATT_ATT] = {"attention att", 2 * 4 * 40 * 48},
    [TH_DQ] = {"attention dq", 2 * 40 * 4 * 16},      [TH_DK] = {"attention dk", 2 * 48 * 2 * 16},
    [TH_DV] = {"attention dv", 2 * 48 * 2 * 16},      [TH_ROPE] = {"rope out", 4 * 64 * 8 * 32},
    [TH_ROPE_D] = {"rope dx", 4 * 64 * 8 * 32},       [TH_CONV] = {"conv out", 2 * 32 * 32 * 32},
    [TH_CONV_DX] = {"conv dx", 2 * 16 * 32 * 32},     [TH_CONV_DW] = {"conv dw", 32 * 16 * 9},
    [TH_CONV_DB] = {"conv db", 32},                  [TH_UP] = {"upsample out", 4 * 8 * 48 * 48},
    [TH_UP_D] = {"upsample dx", 4 * 8 * 24 * 24},    [TH_POOL] = {"avgpool out", 4 * 8 * 24 * 24},
    [TH_POOL_D] = {"avgpool dx", 4 * 8 * 48 * 48},   [TH_DROP] = {"dropout out", 50000},
    [TH_TR] = {"transpose out", 4 * 96 * 130},       [TH_TR_D] = {"transpose dx", 4 * 96 * 130},
};

static void run_all_ops(float **o) {
    /* attention: B 2, T 40, S 48, NH 4, NKV 2, HS 16, causal */
    const int64_t nq = 2 * 40 * 4 * 16, nkv = 2 * 48 * 2 * 16;
    float *q = fnew(nq, 0), *k = fnew(nkv, 0), *v = fnew(nkv, 0), *dout = fnew(nq, 0);
    t_fill_uniform(q, nq, 21, -1, 1), t_fill_uniform(k, nkv, 22, -1, 1);
    t_fill_uniform(v, nkv, 23, -1, 1), t_fill_uniform(dout, nq, 24, -1, 1);
    duet_attention_forward(o[TH_ATT_OUT], o[TH_ATT_ATT], q, k, v, 2, 40, 48, 4, 2, 16, 1, 0.25f);
    duet_attention_backward(o[TH_DQ], o[TH_DK], o[TH_DV], dout, o[TH_ATT_ATT], q, k, v, 2, 40, 48,
                            4, 2, 16, 1, 0.25f);
    free(q), free(k), free(v), free(dout);
    /* rope */
    const int64_t nr = 4 * 64 * 8 * 32;
    float *x = fnew(nr, 0);
    t_fill_uniform(x, nr, 25, -1, 1);
    duet_rope_forward(o[TH_ROPE], x, 4, 64, 8, 32, 100, 10000.0f, 0);
    duet_rope_backward(o[TH_ROPE_D], x, 4, 64, 8, 32, 100, 10000.0f, 1);
    free(x);
    /* conv 3x3 pad 1: [2, 16, 32, 32] -> [2, 32, 32, 32]; big enough that
     * im2col, col2im, the bias sum and the GEMMs all run threaded */
    const int64_t nx = 2 * 16 * 32 * 32, nw = 32 * 16 * 9, no = 2 * 32 * 32 * 32;
    float *cx = fnew(nx, 0), *cw = fnew(nw, 0), *cb = fnew(32, 0), *cr = fnew(no, 0);
    t_fill_uniform(cx, nx, 26, -1, 1), t_fill_uniform(cw, nw, 27, -1, 1);
    t_fill_uniform(cb, 32, 28, -1, 1), t_fill_uniform(cr, no, 29, -1, 1);
    float *scr = fnew(duet_conv2d_scratch_floats(16, 32, 32, 3, 1, 1), 0);
    duet_conv2d_forward(o[TH_CONV], cx, cw, cb, scr, 2, 16, 32, 32, 32, 3, 1, 1);
    duet_conv2d_backward(o[TH_CONV_DX], o[TH_CONV_DW], o[TH_CONV_DB], cr, cx, cw, scr, 2, 16, 32,
                         32, 32, 3, 1, 1);
    free(cx), free(cw), free(cb), free(cr), free(scr);
    /* upsample / avgpool on [4, 8, 24, 24] and [4, 8, 48, 48] */
    const int64_t ns = 4 * 8 * 24 * 24, nl = 4 * ns;
    float *xs = fnew(ns, 0), *xl = fnew(nl, 0);
    t_fill_uniform(xs, ns, 30, -1, 1), t_fill_uniform(xl, nl, 31, -1, 1);
    duet_upsample2x_forward(o[TH_UP], xs, 4, 8, 24, 24);
    duet_upsample2x_backward(o[TH_UP_D], xl, 4, 8, 24, 24);
    duet_avgpool2x_forward(o[TH_POOL], xl, 4, 8, 48, 48);
    duet_avgpool2x_backward(o[TH_POOL_D], xs, 4, 8, 48, 48);
    free(xs), free(xl);
    /* dropout */
    float *xd = fnew(50000, 0);
    t_fill_uniform(xd, 50000, 32, -1, 1);
    duet_dropout_forward(o[TH_DROP], NULL, xd, 50000, 0.4f, 99, 3);
    free(xd);
    /* transpose [4, 96, 130] */
    const int64_t nt = 4 * 96 * 130;
    float *xt = fnew(nt, 0);
    t_fill_uniform(xt, nt, 33, -1, 1);
    duet_transpose_forward(o[TH_TR], xt, 4, 96, 130);
    duet_transpose_backward(o[TH_TR_D], xt, 4, 130, 96);
    free(xt);
}

static void test_threads(void) {
    float *a[TH_COUNT], *b[TH_COUNT];
    for (int i = 0; i < TH_COUNT; i++) a[i] = fnew(TH_BUFS[i].n, 0), b[i] = fnew(TH_BUFS[i].n, 0);
    int nt = duet_get_threads();
    duet_set_threads(1);
    run_all_ops(a);
    duet_set_threads(2);
    run_all_ops(b);
    duet_set_threads(nt);
    for (int i = 0; i < TH_COUNT; i++)
        T_CHECK(same_bits(a[i], b[i], TH_BUFS[i].n), "%s: same bits with 1 and 2 threads", TH_BUFS[i].name);
    for (int i = 0; i < TH_COUNT; i++) free(a[i]), free(b[i]);
}

/* Per-head GEMMs big enough that duet_sgemm would like several threads, run
 * from inside attention's own per-head parallel region: the nested GEMM must
 * still compute all of C (it gets one thread there). */
static void test_attention_nested_gemm(void) {
    const int64_t B = 1, T = 128, S = 1024, NH = 2, NKV = 2, HS = 128;
    const int64_t nq = B * T * NH * HS, nkv = B * S * NKV * HS, na = B * NH * T * S;
    float *q = fnew(nq, 0), *k = fnew(nkv, 0), *v = fnew(nkv, 0), *dout = fnew(nq, 0);
    t_fill_uniform(q, nq, 41, -1, 1), t_fill_uniform(k, nkv, 42, -1, 1);
    t_fill_uniform(v, nkv, 43, -1, 1), t_fill_uniform(dout, nq, 44, -1, 1);
    float *o[2], *att[2], *dq[2], *dk[2], *dv[2];
    int nt = duet_get_threads();
    for (int i = 0; i < 2; i++) {
        o[i] = fnew(nq, 0), att[i] = fnew(na, 0);
        dq[i] = fnew(nq, 0), dk[i] = fnew(nkv, 0), dv[i] = fnew(nkv, 0);
        duet_set_threads(i + 1);
        duet_attention_forward(o[i], att[i], q, k, v, B, T, S, NH, NKV, HS, 1, 0.09f);
        duet_attention_backward(dq[i], dk[i], dv[i], dout, att[i], q, k, v, B, T, S, NH, NKV, HS, 1, 0.09f);
    }
    duet_set_threads(nt);
    T_CHECK(same_bits(o[0], o[1], nq) && same_bits(att[0], att[1], na),
            "attention with large per-head GEMMs: same forward with 1 and 2 threads");
    T_CHECK(same_bits(dq[0], dq[1], nq) && same_bits(dk[0], dk[1], nkv) && same_bits(dv[0], dv[1], nkv),
            "attention with large per-head GEMMs: same backward with 1 and 2 threads");
    for (int i = 0; i < 2; i++) free(o[i]), free(att[i]), free(dq[i]), free(dk[i]), free(dv[i]);
    free(q), free(k), free(v), free(dout);
}

int main(void) {
    duet_init();
    snprintf(default_isa, sizeof default_isa, "%s", duet_kernel_isa());

    static const char *const att_cases[] = {"ops_b_att_gqa_causal.bin", "ops_b_att_full.bin",
                                            "ops_b_att_decode.bin", "ops_b_att_t2.bin",
                                            "ops_b_att_blocks.bin"};
    for (size_t i = 0; i < sizeof att_cases / sizeof *att_cases; i++) test_attention_case(att_cases[i]);
    test_attention_errors();
    test_attention_decode_consistency();

    static const char *const rope_cases[] = {"ops_b_rope_meta.bin", "ops_b_rope_neox.bin",
                                             "ops_b_rope_far_meta.bin", "ops_b_rope_far_neox.bin"};
    for (size_t i = 0; i < sizeof rope_cases / sizeof *rope_cases; i++) test_rope_case(rope_cases[i]);
    test_rope_errors();

    static const char *const conv_cases[] = {"k1s1p0", "k1s2p0", "k1s1p1", "k3s1p1", "k3s1p0",
                                             "k3s2p1", "k3s2p1e", "k3s2p0", "k3s1p2"};
    for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++) test_conv_case(conv_cases[i]);
    test_conv_errors();

    test_resample(1);
    test_resample(0);
    test_dropout();
    test_temb(8);
    test_temb(7);
    test_concat();
    test_transpose();
    test_threads();
    test_attention_nested_gemm();
    return t_done();
}
