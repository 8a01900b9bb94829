/*
 * misc.c — dropout, the sinusoidal timestep embedding, concat along dim 1 and
 * transpose of the last two dims: raw forward/backward and their tape ops,
 * side by side.
 *
 * What it is not: general strided views. concat and transpose copy.
 */
#include "nn/nn.h"

#include <math.h>
#include <string.h>

/* ==== dropout ==== */

/* Element i is kept when the 24-bit uniform u = (w0 >> 8) / 2^24 of
 * philox(seed, offset + i) satisfies u >= p; a kept element is scaled by
 * 1/(1-p) (inverted dropout), a dropped one becomes 0. */
void duet_dropout_forward(float *out, float *mask, const float *inp, int64_t n, float p,
                          uint64_t seed, uint64_t offset) {
    const float keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
#pragma omp parallel for schedule(static) if (n > 4096)
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        duet_philox(seed, offset + (uint64_t)i, w);
        float u = (float)(w[0] >> 8) * (1.0f / 16777216.0f);
        float m = u >= p ? keep : 0.0f;
        if (mask) mask[i] = m;
        out[i] = inp[i] * m;
    }
}

void duet_dropout_backward(float *dinp, const float *dout, const float *mask, int64_t n) {
    if (!dinp) return;
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] * mask[i];
}

/* saved[0]: mask */
static void dropout_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_dropout_backward(nn_grad(r->in[0]), r->out->grad, r->saved[0], duet_tensor_numel(r->out));
}

duet_tensor *duet_nn_dropout(duet_graph *g, duet_tensor *x, float p, duet_rng *rng) {
    if (!x) return NULL;
    if (!(p >= 0.0f && p < 1.0f))
        return nn_fail(g, DUET_ERR_ARG, "dropout: p = %g must be in [0, 1)", (double)p);
    if (p == 0.0f || !duet_graph_training(g)) return x;
    if (!nn_check(g, x, DUET_DTYPE_F32, "dropout", "x")) return NULL;
    if (!rng) return nn_fail(g, DUET_ERR_ARG, "dropout: rng is NULL (pass the training rng)");
    const int64_t n = duet_tensor_numel(x);
    duet_tensor *out = nn_out_like(g, x);
    float *mask = duet_graph_alloc(g, sizeof(float) * (size_t)n + 4);
    if (!out || !mask) return NULL;
    duet_dropout_forward(nn_f32(out), mask, nn_f32(x), n, p, rng->seed, rng->offset);
    rng->offset += (uint64_t)n;
    duet_record *r = duet_graph_record(g, DUET_OP_DROPOUT, dropout_tape_backward, out, x, NULL,
                                       NULL, NULL);
    if (r) r->saved[0] = mask;
    return out;
}

/* ==== timestep embedding ==== */

/* f_i = exp(-ln(max_period) * i / half), formed in double; the angle t * f_i
 * too (t runs to ~1000, where a float product is off by ~1e-4 rad). */
static inline double temb_freq(double lmp, int64_t i, int64_t half) {
    return exp(-lmp * (double)i / (double)half);
}

void duet_timestep_embedding_forward(float *out, const float *t, int64_t N, int64_t dim,
                                     float max_period) {
    const int64_t half = dim / 2;
    const double lmp = log((double)max_period);
    for (int64_t n = 0; n < N; n++) {
        float *y = out + n * dim;
        for (int64_t i = 0; i < half; i++) {
            double a = (double)t[n] * temb_freq(lmp, i, half);
            y[i] = (float)cos(a);
            y[half + i] = (float)sin(a);
        }
        if (dim % 2) y[dim - 1] = 0.0f;
    }
}

void duet_timestep_embedding_backward(float *dt, const float *dout, const float *t, int64_t N,
                                      int64_t dim, float max_period) {
    if (!dt) return;
    const int64_t half = dim / 2;
    const double lmp = log((double)max_period);
    for (int64_t n = 0; n < N; n++) {
        const float *dy = dout + n * dim;
        double s = 0.0;
        for (int64_t i = 0; i < half; i++) {
            double f = temb_freq(lmp, i, half), a = (double)t[n] * f;
            /* d cos(t f)/dt = -f sin(t f);  d sin(t f)/dt = f cos(t f) */
            s += f * ((double)dy[half + i] * cos(a) - (double)dy[i] * sin(a));
        }
        dt[n] += (float)s;
    }
}

/* iarg: N, dim; farg: max_period */
static void temb_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_timestep_embedding_backward(nn_grad(r->in[0]), r->out->grad, nn_f32(r->in[0]),
                                     r->iarg[0], r->iarg[1], r->farg[0]);
}

duet_tensor *duet_nn_timestep_embedding(duet_graph *g, duet_tensor *t, int64_t dim,
                                        float max_period) {
    if (!t) return NULL;
    if (!nn_check(g, t, DUET_DTYPE_F32, "timestep_embedding", "t")) return NULL;
    if (t->ndim != 1)
        return nn_fail(g, DUET_ERR_SHAPE, "timestep_embedding: want t [N]; got %d-D", t->ndim);
    if (dim < 2 || !(max_period > 1.0f))
        return nn_fail(g, DUET_ERR_ARG, "timestep_embedding: dim %lld must be >= 2 and max_period %g > 1",
                       (long long)dim, (double)max_period);
    const int64_t N = t->shape[0];
    duet_tensor *out = nn_out(g, 2, (int64_t[]){N, dim});
    if (!out) return NULL;
    duet_timestep_embedding_forward(nn_f32(out), nn_f32(t), N, dim, max_period);
    duet_record *r = duet_graph_record(g, DUET_OP_TIMESTEP_EMB, temb_tape_backward, out, t, NULL,
                                       NULL, NULL);
    if (r) {
        r->iarg[0] = N, r->iarg[1] = dim;
        r->farg[0] = max_period;
    }
    return out;
}

/* ==== concat along dim 1 ==== */

void duet_concat_forward(float *out, const float *a, const float *b, int64_t N, int64_t CA,
                         int64_t CB, int64_t I) {
    const int64_t na = CA * I, nb = CB * I;
    for (int64_t n = 0; n < N; n++) {
        float *y = out + n * (na + nb);
        memcpy(y, a + n * na, sizeof(float) * (size_t)na);
        memcpy(y + na, b + n * nb, sizeof(float) * (size_t)nb);
    }
}

void duet_concat_backward(float *da, float *db, const float *dout, int64_t N, int64_t CA,
                          int64_t CB, int64_t I) {
    const int64_t na = CA * I, nb = CB * I;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * (na + nb)))
    for (int64_t n = 0; n < N; n++) {
        const float *dy = dout + n * (na + nb);
        if (da)
            for (int64_t i = 0; i < na; i++) da[n * na + i] += dy[i];
        if (db)
            for (int64_t i = 0; i < nb; i++) db[n * nb + i] += dy[na + i];
    }
}

/* iarg: N, CA, CB, I */
static void concat_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    const int64_t *a = r->iarg;
    duet_concat_backward(nn_grad(r->in[0]), nn_grad(r->in[1]), r->out->grad, a[0], a[1], a[2],
                         a[3]);
}

duet_tensor *duet_nn_concat(duet_graph *g, duet_tensor *a, duet_tensor *b) {
    if (!a || !b) return NULL;
    if (!nn_check(g, a, DUET_DTYPE_F32, "concat", "a") ||
        !nn_check(g, b, DUET_DTYPE_F32, "concat", "b"))
        return NULL;
    int ok = a->ndim >= 2 && a->ndim == b->ndim && a->shape[0] == b->shape[0];
    for (int d = 2; ok && d < a->ndim; d++) ok = a->shape[d] == b->shape[d];
    if (!ok) {
        char sa[96], sb[96];
        return nn_fail(g, DUET_ERR_SHAPE,
                       "concat: %s and %s differ outside dim 1 (want [N, CA, ...] and [N, CB, ...])",
                       duet_tensor_describe(a, sa, sizeof sa), duet_tensor_describe(b, sb, sizeof sb));
    }
    const int64_t N = a->shape[0], CA = a->shape[1], CB = b->shape[1], I = nn_inner(a, 2);
    int64_t shape[DUET_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[1] = CA + CB;
    duet_tensor *out = nn_out(g, a->ndim, shape);
    if (!out) return NULL;
    duet_concat_forward(nn_f32(out), nn_f32(a), nn_f32(b), N, CA, CB, I);
    duet_record *r = duet_graph_record(g, DUET_OP_CONCAT, concat_tape_backward, out, a, b, NULL, NULL);
    if (r) {
        int64_t ia[4] = {N, CA, CB, I};
        memcpy(r->iarg, ia, sizeof ia);
    }
    return out;
}

/* ==== transpose of the last two dims ==== */

/* Tile edge: a 32x32 float tile of source and destination stays in L1. */
#define TR_TILE 32

/* out[n][j][i] (+)= inp[n][i][j], inp [N, A, Bd]. */
static void transpose_impl(float *out, const float *inp, int64_t N, int64_t A, int64_t Bd,
                           int accumulate) {
    const int64_t ta = (A + TR_TILE - 1) / TR_TILE;
#pragma omp parallel for collapse(2) schedule(static) if (duet_omp_enough(N * A * Bd))
    for (int64_t n = 0; n < N; n++) {
        for (int64_t ib = 0; ib < ta; ib++) {
            const float *x = inp + n * A * Bd;
            float *y = out + n * A * Bd;
            int64_t i0 = ib * TR_TILE, i1 = DUET_MIN(A, i0 + TR_TILE);
            for (int64_t j0 = 0; j0 < Bd; j0 += TR_TILE) {
                int64_t j1 = DUET_MIN(Bd, j0 + TR_TILE);
                for (int64_t j = j0; j < j1; j++)
                    for (int64_t i = i0; i < i1; i++) {
                        if (accumulate) y[j * A + i] += x[i * Bd + j];
                        else y[j * A + i] = x[i * Bd + j];
                    }
            }
        }
    }
}

void duet_transpose_forward(float *out, const float *inp, int64_t N, int64_t A, int64_t Bd) {
    transpose_impl(out, inp, N, A, Bd, 0);
}

/* dout is [N, Bd, A]: its transpose adds into dinp [N, A, Bd]. */
void duet_transpose_backward(float *dinp, const float *dout, int64_t N, int64_t A, int64_t Bd) {
    if (!dinp) return;
    transpose_impl(dinp, dout, N, Bd, A, 1);
}

/* iarg: N, A, Bd */
static void transpose_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_transpose_backward(nn_grad(r->in[0]), r->out->grad, r->iarg[0], r->iarg[1], r->iarg[2]);
}

/* 2-D [A, B] -> [B, A]; 3-D [N, A, B] -> [N, B, A]; 4-D [N, C, H, W] is read
 * as [N, C, H*W] and becomes [N, H*W, C] (image to token sequence). */
duet_tensor *duet_nn_transpose(duet_graph *g, duet_tensor *x) {
    if (!x) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "transpose", "x")) return NULL;
    int64_t N, A, Bd;
    if (x->ndim == 2) N = 1, A = x->shape[0], Bd = x->shape[1];
    else if (x->ndim == 3) N = x->shape[0], A = x->shape[1], Bd = x->shape[2];
    else if (x->ndim == 4) N = x->shape[0], A = x->shape[1], Bd = x->shape[2] * x->shape[3];
    else return nn_fail(g, DUET_ERR_SHAPE, "transpose: want a 2-D, 3-D or 4-D tensor; got %d-D", x->ndim);
    duet_tensor *out = x->ndim == 2 ? nn_out(g, 2, (int64_t[]){Bd, A})
                                    : nn_out(g, 3, (int64_t[]){N, Bd, A});
    if (!out) return NULL;
    duet_transpose_forward(nn_f32(out), nn_f32(x), N, A, Bd);
    duet_record *r = duet_graph_record(g, DUET_OP_TRANSPOSE, transpose_tape_backward, out, x, NULL,
                                       NULL, NULL);
    if (r) r->iarg[0] = N, r->iarg[1] = A, r->iarg[2] = Bd;
    return out;
}
