/*
 * elementwise.c — add, mul, scale and reshape: raw forward/backward and
 * their tape ops, side by side. The pattern every op file follows.
 */
#include "nn/nn.h"

#include <string.h>

/* ==== add ==== */

void duet_add_forward(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void duet_add_backward(float *da, float *db, const float *dout, int64_t n) {
    /* one loop per case, with no test inside, so each vectorises */
    if (da && db) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
        for (int64_t i = 0; i < n; i++) {
            da[i] += dout[i];
            db[i] += dout[i];
        }
    } else if (da || db) {
        float *d = da ? da : db;
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
        for (int64_t i = 0; i < n; i++) d[i] += dout[i];
    }
}

static void add_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_add_backward(nn_grad(r->in[0]), nn_grad(r->in[1]), r->out->grad,
                      duet_tensor_numel(r->out));
}

duet_tensor *duet_nn_add(duet_graph *g, duet_tensor *a, duet_tensor *b) {
    if (!a || !b) return NULL;
    if (!nn_check(g, a, DUET_DTYPE_F32, "add", "a") || !nn_check(g, b, DUET_DTYPE_F32, "add", "b"))
        return NULL;
    if (!nn_same_shape(a, b)) return nn_fail(g, DUET_ERR_SHAPE, "add: shapes differ");
    duet_tensor *out = nn_out_like(g, a);
    if (!out) return NULL;
    duet_add_forward(nn_f32(out), nn_f32(a), nn_f32(b), duet_tensor_numel(a));
    duet_graph_record(g, DUET_OP_ADD, add_tape_backward, out, a, b, NULL, NULL);
    return out;
}

/* ==== mul ==== */

void duet_mul_forward(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

void duet_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       int64_t n) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i++) {
        if (da) da[i] += dout[i] * b[i];
        if (db) db[i] += dout[i] * a[i];
    }
}

static void mul_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_mul_backward(nn_grad(r->in[0]), nn_grad(r->in[1]), r->out->grad, nn_f32(r->in[0]),
                      nn_f32(r->in[1]), duet_tensor_numel(r->out));
}

duet_tensor *duet_nn_mul(duet_graph *g, duet_tensor *a, duet_tensor *b) {
    if (!a || !b) return NULL;
    if (!nn_check(g, a, DUET_DTYPE_F32, "mul", "a") || !nn_check(g, b, DUET_DTYPE_F32, "mul", "b"))
        return NULL;
    if (!nn_same_shape(a, b)) return nn_fail(g, DUET_ERR_SHAPE, "mul: shapes differ");
    duet_tensor *out = nn_out_like(g, a);
    if (!out) return NULL;
    duet_mul_forward(nn_f32(out), nn_f32(a), nn_f32(b), duet_tensor_numel(a));
    duet_graph_record(g, DUET_OP_MUL, mul_tape_backward, out, a, b, NULL, NULL);
    return out;
}

/* ==== scale ==== */

void duet_scale_forward(float *out, const float *a, float s, int64_t n) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * s;
}

void duet_scale_backward(float *da, const float *dout, float s, int64_t n) {
    if (!da) return;
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i++) da[i] += dout[i] * s;
}

static void scale_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_scale_backward(nn_grad(r->in[0]), r->out->grad, r->farg[0], duet_tensor_numel(r->out));
}

duet_tensor *duet_nn_scale(duet_graph *g, duet_tensor *a, float s) {
    if (!a) return NULL;
    if (!nn_check(g, a, DUET_DTYPE_F32, "scale", "a")) return NULL;
    duet_tensor *out = nn_out_like(g, a);
    if (!out) return NULL;
    duet_scale_forward(nn_f32(out), nn_f32(a), s, duet_tensor_numel(a));
    duet_record *r = duet_graph_record(g, DUET_OP_SCALE, scale_tape_backward, out, a, NULL, NULL, NULL);
    if (r) r->farg[0] = s;
    return out;
}

/* ==== reshape ==== */

static void reshape_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    float *din = nn_grad(r->in[0]);
    if (din) duet_add_backward(din, NULL, r->out->grad, duet_tensor_numel(r->out));
}

duet_tensor *duet_nn_reshape(duet_graph *g, duet_tensor *x, int ndim, const int64_t *shape) {
    if (!x) return NULL;
    if (!duet_tensor_is_contiguous(x)) return nn_fail(g, DUET_ERR_SHAPE, "reshape: input not contiguous");
    duet_tensor *out = duet_graph_input(g, x->data, x->dtype, ndim, shape);
    if (!out) return NULL;
    if (duet_tensor_numel(out) != duet_tensor_numel(x))
        return nn_fail(g, DUET_ERR_SHAPE, "reshape: %lld elements cannot become %lld",
                       (long long)duet_tensor_numel(x), (long long)duet_tensor_numel(out));
    duet_graph_record(g, DUET_OP_RESHAPE, reshape_tape_backward, out, x, NULL, NULL, NULL);
    return out;
}
