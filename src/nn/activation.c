/*
 * activation.c — GELU (exact erf form and tanh approximation), SiLU, SwiGLU
 * and softmax over the last dim: raw forward/backward and their tape ops.
 *
 * Elementwise ops are one float expression per element (same results at any
 * thread count). Softmax rows go through the dispatched row kernel
 * duet_k.softmax_rows. What it is not: fused matmul+activation epilogues.
 */
#include "nn/nn.h"
#include "kernels/act.h"

/* elements per kernel call: chunks a thread count does not change */
#define ACT_CHUNK 4096
#include "kernels/kernels.h"

#include <math.h>

#define GELU_SQRT_2_OVER_PI 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_INV_SQRT_2 0.7071067811865476f     /* 1/sqrt(2) */
#define GELU_INV_SQRT_2PI 0.3989422804014327f   /* 1/sqrt(2*pi) */
#define GELU_CUBIC 0.044715f
#define SOFTMAX_ROW_BLOCK 16

/* ==== gelu ==== */
/* exact:  gelu(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
 * tanh:   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */

void duet_gelu_forward(float *out, const float *inp, int64_t n, int tanh_approx) {
    if (tanh_approx) {
        const duet_act_kernels *k = duet_act();
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
        for (int64_t i = 0; i < n; i += ACT_CHUNK)
            k->gelu_tanh_fwd(out + i, inp + i, DUET_MIN(ACT_CHUNK, n - i));
    } else {
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
        for (int64_t i = 0; i < n; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + erff(x * GELU_INV_SQRT_2));
        }
    }
}

void duet_gelu_backward(float *dinp, const float *dout, const float *inp, int64_t n,
                        int tanh_approx) {
    if (!dinp) return;
    if (tanh_approx) {
        const duet_act_kernels *k = duet_act();
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
        for (int64_t i = 0; i < n; i += ACT_CHUNK)
            k->gelu_tanh_bwd(dinp + i, dout + i, inp + i, DUET_MIN(ACT_CHUNK, n - i));
    } else {
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
        for (int64_t i = 0; i < n; i++) {
            float x = inp[i];
            /* Phi(x) + x * phi(x) */
            float d = 0.5f * (1.0f + erff(x * GELU_INV_SQRT_2)) +
                      x * GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
            dinp[i] += dout[i] * d;
        }
    }
}

static void gelu_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_gelu_backward(nn_grad(r->in[0]), r->out->grad, nn_f32(r->in[0]),
                       duet_tensor_numel(r->out), (int)r->iarg[0]);
}

duet_tensor *duet_nn_gelu(duet_graph *g, duet_tensor *x, int tanh_approx) {
    if (!x) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "gelu", "x")) return NULL;
    duet_tensor *out = nn_out_like(g, x);
    if (!out) return NULL;
    duet_gelu_forward(nn_f32(out), nn_f32(x), duet_tensor_numel(x), tanh_approx != 0);
    duet_record *r = duet_graph_record(g, DUET_OP_GELU, gelu_tape_backward, out, x, NULL, NULL, NULL);
    if (r) r->iarg[0] = tanh_approx != 0;
    return out;
}

/* ==== silu ==== */
/* silu(x) = x * sigmoid(x); silu'(x) = s (1 + x (1 - s)), s = sigmoid(x) */


void duet_silu_forward(float *out, const float *inp, int64_t n) {
    const duet_act_kernels *k = duet_act();
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i += ACT_CHUNK) k->silu_fwd(out + i, inp + i, DUET_MIN(ACT_CHUNK, n - i));
}

void duet_silu_backward(float *dinp, const float *dout, const float *inp, int64_t n) {
    if (!dinp) return;
    const duet_act_kernels *k = duet_act();
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i += ACT_CHUNK)
        k->silu_bwd(dinp + i, dout + i, inp + i, DUET_MIN(ACT_CHUNK, n - i));
}

static void silu_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_silu_backward(nn_grad(r->in[0]), r->out->grad, nn_f32(r->in[0]), duet_tensor_numel(r->out));
}

duet_tensor *duet_nn_silu(duet_graph *g, duet_tensor *x) {
    if (!x) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "silu", "x")) return NULL;
    duet_tensor *out = nn_out_like(g, x);
    if (!out) return NULL;
    duet_silu_forward(nn_f32(out), nn_f32(x), duet_tensor_numel(x));
    duet_graph_record(g, DUET_OP_SILU, silu_tape_backward, out, x, NULL, NULL, NULL);
    return out;
}

/* ==== swiglu ==== */
/* out = silu(gate) * up */

void duet_swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    const duet_act_kernels *k = duet_act();
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i += ACT_CHUNK)
        k->swiglu_fwd(out + i, gate + i, up + i, DUET_MIN(ACT_CHUNK, n - i));
}

void duet_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, int64_t n) {
    if (!dgate && !dup) return;
    const duet_act_kernels *k = duet_act();
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i += ACT_CHUNK)
        k->swiglu_bwd(dgate ? dgate + i : NULL, dup ? dup + i : NULL, dout + i, gate + i, up + i,
                      DUET_MIN(ACT_CHUNK, n - i));
}

static void swiglu_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_swiglu_backward(nn_grad(r->in[0]), nn_grad(r->in[1]), r->out->grad, nn_f32(r->in[0]),
                         nn_f32(r->in[1]), duet_tensor_numel(r->out));
}

duet_tensor *duet_nn_swiglu(duet_graph *g, duet_tensor *gate, duet_tensor *up) {
    if (!gate || !up) return NULL;
    if (!nn_check(g, gate, DUET_DTYPE_F32, "swiglu", "gate") ||
        !nn_check(g, up, DUET_DTYPE_F32, "swiglu", "up"))
        return NULL;
    if (!nn_same_shape(gate, up)) {
        char sa[64], sb[64];
        return nn_fail(g, DUET_ERR_SHAPE, "swiglu: gate and up must have one shape, got %s and %s",
                       duet_tensor_describe(gate, sa, sizeof sa), duet_tensor_describe(up, sb, sizeof sb));
    }
    duet_tensor *out = nn_out_like(g, gate);
    if (!out) return NULL;
    duet_swiglu_forward(nn_f32(out), nn_f32(gate), nn_f32(up), duet_tensor_numel(gate));
    duet_graph_record(g, DUET_OP_SWIGLU, swiglu_tape_backward, out, gate, up, NULL, NULL);
    return out;
}

/* ==== softmax ==== */
/* y = softmax(x) per row; dx = y * (dy - sum(dy * y)) */

void duet_softmax_forward(float *out, const float *inp, int64_t N, int64_t C) {
    int64_t nblocks = (N + SOFTMAX_ROW_BLOCK - 1) / SOFTMAX_ROW_BLOCK;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C))
    for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t r0 = blk * SOFTMAX_ROW_BLOCK, nr = DUET_MIN(SOFTMAX_ROW_BLOCK, N - r0);
        duet_k.softmax_rows(out + r0 * C, inp + r0 * C, nr, C);
    }
}

void duet_softmax_backward(float *dinp, const float *dout, const float *out, int64_t N,
                           int64_t C) {
    if (!dinp) return;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C))
    for (int64_t n = 0; n < N; n++) {
        const float *y = out + n * C, *dy = dout + n * C;
        float *dx = dinp + n * C;
        double dot = 0.0;
        for (int64_t i = 0; i < C; i++) dot += (double)dy[i] * (double)y[i];
        float d = (float)dot;
        for (int64_t i = 0; i < C; i++) dx[i] += y[i] * (dy[i] - d);
    }
}

static void softmax_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_softmax_backward(nn_grad(r->in[0]), r->out->grad, nn_f32(r->out), r->iarg[0], r->iarg[1]);
}

duet_tensor *duet_nn_softmax(duet_graph *g, duet_tensor *x) {
    if (!x) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "softmax", "x")) return NULL;
    if (x->ndim < 1) return nn_fail(g, DUET_ERR_SHAPE, "softmax: x must have at least 1 dim");
    int64_t C = x->shape[x->ndim - 1];
    int64_t N = C ? duet_tensor_numel(x) / C : 0;
    duet_tensor *out = nn_out_like(g, x);
    if (!out) return NULL;
    duet_softmax_forward(nn_f32(out), nn_f32(x), N, C);
    duet_record *r = duet_graph_record(g, DUET_OP_SOFTMAX, softmax_tape_backward, out, x, NULL, NULL, NULL);
    if (r) {
        r->iarg[0] = N;
        r->iarg[1] = C;
    }
    return out;
}
