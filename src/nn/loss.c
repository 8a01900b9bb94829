/*
 * loss.c — the two training losses: cross-entropy over a vocabulary (with
 * ignored positions and per-position weights) and mean squared error. Raw
 * forward/backward and their tape ops, each returning a scalar [1] tensor.
 *
 * Sums over positions run serially in double, in index order: the loss is
 * bitwise the same whatever the thread count. What it is not: label
 * smoothing, or a fused linear+cross-entropy that never stores the probs.
 *
 * Sizes: N positions, V classes (vocabulary).
 */
#include "nn/nn.h"
#include "kernels/kernels.h"

#include <math.h>

#define CE_ROW_BLOCK 8

/* ==== cross-entropy ==== */

/* -log softmax(logits)[t] from the saved probs; when the prob underflowed
 * (the target logit is far below the max), recompute the log-sum-exp in
 * double so the loss stays finite and exact. */
static double ce_row(const float *probs, const float *logits, int64_t V, int32_t t) {
    float p = probs[t];
    if (p > 1e-30f) return -log((double)p);
    double mx = -INFINITY;
    for (int64_t i = 0; i < V; i++) mx = (double)logits[i] > mx ? (double)logits[i] : mx;
    double s = 0.0;
    for (int64_t i = 0; i < V; i++) s += exp((double)logits[i] - mx);
    return mx + log(s) - (double)logits[t];
}

/* Sum of weights of the kept positions (weights NULL = 1 each). */
static double ce_weight_sum(const int32_t *targets, const float *weights, int64_t N,
                            int32_t ignore_index) {
    double w = 0.0;
    for (int64_t i = 0; i < N; i++)
        if (targets[i] != ignore_index) w += weights ? (double)weights[i] : 1.0;
    return w;
}

float duet_cross_entropy_forward(float *probs, const float *logits, const int32_t *targets,
                                 const float *weights, int64_t N, int64_t V,
                                 int32_t ignore_index) {
    int64_t nblocks = (N + CE_ROW_BLOCK - 1) / CE_ROW_BLOCK;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * V))
    for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t r0 = blk * CE_ROW_BLOCK, nr = DUET_MIN(CE_ROW_BLOCK, N - r0);
        duet_k.softmax_rows(probs + r0 * V, logits + r0 * V, nr, V);
    }
    double num = 0.0;
    for (int64_t i = 0; i < N; i++) {
        if (targets[i] == ignore_index) continue;
        double w = weights ? (double)weights[i] : 1.0;
        num += w * ce_row(probs + i * V, logits + i * V, V, targets[i]);
    }
    double den = ce_weight_sum(targets, weights, N, ignore_index);
    return den != 0.0 ? (float)(num / den) : 0.0f;
}

void duet_cross_entropy_backward(float *dlogits, float dloss, const float *probs,
                                 const int32_t *targets, const float *weights, int64_t N,
                                 int64_t V, int32_t ignore_index) {
    if (!dlogits) return;
    double den = ce_weight_sum(targets, weights, N, ignore_index);
    if (den == 0.0) return;
    double scale = (double)dloss / den;
    /* dlogits[i] += dloss * w_i / sum(w) * (probs[i] - onehot(t_i)) */
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * V))
    for (int64_t i = 0; i < N; i++) {
        int32_t t = targets[i];
        if (t == ignore_index) continue;
        float s = (float)(scale * (weights ? (double)weights[i] : 1.0));
        const float *p = probs + i * V;
        float *d = dlogits + i * V;
        for (int64_t j = 0; j < V; j++) d[j] += s * p[j];
        d[t] -= s;
    }
}

static void ce_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_tensor *w = r->in[2];
    duet_cross_entropy_backward(nn_grad(r->in[0]), r->out->grad[0], r->saved[0], r->in[1]->data,
                                w ? nn_f32(w) : NULL, r->iarg[0], r->iarg[1], (int32_t)r->iarg[2]);
}

duet_tensor *duet_nn_cross_entropy(duet_graph *g, duet_tensor *logits, duet_tensor *targets,
                                   duet_tensor *weights, int32_t ignore_index) {
    if (!logits || !targets) return NULL;
    if (!nn_check(g, logits, DUET_DTYPE_F32, "cross_entropy", "logits") ||
        !nn_check(g, targets, DUET_DTYPE_I32, "cross_entropy", "targets") ||
        (weights && !nn_check(g, weights, DUET_DTYPE_F32, "cross_entropy", "weights")))
        return NULL;
    char sl[64], st[64], sw[64];
    if (logits->ndim < 1 || logits->shape[logits->ndim - 1] < 1)
        return nn_fail(g, DUET_ERR_SHAPE, "cross_entropy: logits must be [..., V] with V >= 1, got %s",
                       duet_tensor_describe(logits, sl, sizeof sl));
    int64_t V = logits->shape[logits->ndim - 1];
    int64_t N = duet_tensor_numel(logits) / V;
    if (duet_tensor_numel(targets) != N)
        return nn_fail(g, DUET_ERR_SHAPE,
                       "cross_entropy: targets need one id per row of logits [..., V], got %s and %s",
                       duet_tensor_describe(logits, sl, sizeof sl),
                       duet_tensor_describe(targets, st, sizeof st));
    if (weights && duet_tensor_numel(weights) != N)
        return nn_fail(g, DUET_ERR_SHAPE,
                       "cross_entropy: weights need one value per target, got %s and %s",
                       duet_tensor_describe(targets, st, sizeof st),
                       duet_tensor_describe(weights, sw, sizeof sw));
    const int32_t *t = targets->data;
    for (int64_t i = 0; i < N; i++)
        if (t[i] != ignore_index && (t[i] < 0 || t[i] >= V))
            return nn_fail(g, DUET_ERR_ARG,
                           "cross_entropy: target %d at position %lld is outside [0, %lld) "
                           "(and is not ignore_index %d)",
                           t[i], (long long)i, (long long)V, ignore_index);
    duet_tensor *out = nn_out(g, 1, (int64_t[]){1});
    float *probs = duet_graph_alloc(g, sizeof(float) * (size_t)(N * V + 1));
    if (!out || !probs) return NULL;
    nn_f32(out)[0] = duet_cross_entropy_forward(probs, nn_f32(logits), t,
                                                weights ? nn_f32(weights) : NULL, N, V,
                                                ignore_index);
    duet_record *r = duet_graph_record(g, DUET_OP_CROSS_ENTROPY, ce_tape_backward, out, logits,
                                       targets, weights, NULL);
    if (r) {
        r->saved[0] = probs;
        r->iarg[0] = N;
        r->iarg[1] = V;
        r->iarg[2] = ignore_index;
    }
    return out;
}

/* ==== mse ==== */
/* loss = mean((a - b)^2); da += dloss * 2 (a - b) / n, db -= the same */

float duet_mse_forward(const float *a, const float *b, int64_t n) {
    if (n <= 0) return 0.0f;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return (float)(s / (double)n);
}

void duet_mse_backward(float *da, float *db, float dloss, const float *a, const float *b,
                       int64_t n) {
    if (n <= 0) return;
    float k = (float)(2.0 * (double)dloss / (double)n);
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i++) {
        float d = k * (a[i] - b[i]);
        if (da) da[i] += d;
        if (db) db[i] -= d;
    }
}

static void mse_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_mse_backward(nn_grad(r->in[0]), nn_grad(r->in[1]), r->out->grad[0], nn_f32(r->in[0]),
                      nn_f32(r->in[1]), duet_tensor_numel(r->in[0]));
}

duet_tensor *duet_nn_mse(duet_graph *g, duet_tensor *a, duet_tensor *b) {
    if (!a || !b) return NULL;
    if (!nn_check(g, a, DUET_DTYPE_F32, "mse", "a") || !nn_check(g, b, DUET_DTYPE_F32, "mse", "b"))
        return NULL;
    if (!nn_same_shape(a, b)) {
        char sa[64], sb[64];
        return nn_fail(g, DUET_ERR_SHAPE, "mse: a and b must have one shape, got %s and %s",
                       duet_tensor_describe(a, sa, sizeof sa), duet_tensor_describe(b, sb, sizeof sb));
    }
    duet_tensor *out = nn_out(g, 1, (int64_t[]){1});
    if (!out) return NULL;
    nn_f32(out)[0] = duet_mse_forward(nn_f32(a), nn_f32(b), duet_tensor_numel(a));
    duet_graph_record(g, DUET_OP_MSE, mse_tape_backward, out, a, b, NULL, NULL);
    return out;
}
