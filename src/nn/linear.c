/*
 * linear.c — the two matmul ops: linear (x @ W^T + b over the last dim) and
 * batched matmul with optional transposes. Raw forward/backward and their
 * tape ops side by side.
 *
 * Every product goes through duet_sgemm (threaded, picked at start-up); this
 * file only arranges operands and transposes. What it is not: a GEMM — the
 * kernels live in src/kernels.
 *
 * Sizes: N rows (all leading dims flattened), C input features, OC output
 * features; for bmm, batch matrices with op(a) [M,K], op(b) [K,N].
 */
#include "nn/nn.h"

#include <string.h>

/* The most columns one task of the dbias sum holds (its float and double
 * sums live on its stack: 12 KB). */
#define LINEAR_COL_BLOCK 1024
/* Rows summed in float before the double accumulation of dbias. */
#define LINEAR_ROW_BLOCK 32

/* ==== linear ==== */

void duet_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                         int64_t N, int64_t C, int64_t OC) {
    /* out[N,OC] = inp[N,C] @ weight[OC,C]^T */
    duet_sgemm(0, 1, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
    if (!bias) return;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * OC))
    for (int64_t n = 0; n < N; n++) {
        float *o = out + n * OC;
        for (int64_t j = 0; j < OC; j++) o[j] += bias[j];
    }
}

/* dbias[OC] += sum over rows of dout. Each column is summed by exactly one
 * task, in row order: float sums of LINEAR_ROW_BLOCK rows (vector adds),
 * those added in double — the same operations whatever the split, so the
 * result does not depend on the thread count. The tasks are ranges of
 * columns (nn_col_range), one per thread. */
static void linear_dbias(float *dbias, const float *dout, int64_t N, int64_t OC) {
    int par;
    const int64_t per = nn_col_range(N, OC, LINEAR_COL_BLOCK, &par);
    const int64_t ntasks = (OC + per - 1) / per;
#pragma omp parallel for schedule(static) if (par && ntasks > 1)
    for (int64_t task = 0; task < ntasks; task++) {
        const int64_t j0 = task * per, nj = DUET_MIN(per, OC - j0);
        double acc[LINEAR_COL_BLOCK];
        float part[LINEAR_COL_BLOCK];
        for (int64_t j = 0; j < nj; j++) acc[j] = 0.0;
        for (int64_t n0 = 0; n0 < N; n0 += LINEAR_ROW_BLOCK) {
            const int64_t n1 = DUET_MIN(N, n0 + LINEAR_ROW_BLOCK);
            for (int64_t j = 0; j < nj; j++) part[j] = 0.0f;
            for (int64_t n = n0; n < n1; n++) {
                const float *d = dout + n * OC + j0;
                for (int64_t j = 0; j < nj; j++) part[j] += d[j];
            }
            for (int64_t j = 0; j < nj; j++) acc[j] += (double)part[j];
        }
        for (int64_t j = 0; j < nj; j++) dbias[j0 + j] += (float)acc[j];
    }
}

void duet_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int64_t N, int64_t C,
                          int64_t OC) {
    /* the bias first, while dout (just written by the op after this one)
     * may still be in cache */
    if (dbias) linear_dbias(dbias, dout, N, OC);
    /* dinp[N,C] += dout[N,OC] @ weight[OC,C] */
    if (dinp) duet_sgemm(0, 0, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    /* dweight[OC,C] += dout[N,OC]^T @ inp[N,C] */
    if (dweight) duet_sgemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
}

static void linear_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_tensor *x = r->in[0], *w = r->in[1], *b = r->in[2];
    duet_linear_backward(nn_grad(x), nn_grad(w), nn_grad(b), r->out->grad, nn_f32(x), nn_f32(w),
                         r->iarg[0], r->iarg[1], r->iarg[2]);
}

duet_tensor *duet_nn_linear(duet_graph *g, duet_tensor *x, duet_tensor *w, duet_tensor *b) {
    if (!x || !w) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "linear", "x") ||
        !nn_check(g, w, DUET_DTYPE_F32, "linear", "w") ||
        (b && !nn_check(g, b, DUET_DTYPE_F32, "linear", "b")))
        return NULL;
    char sx[64], sw[64], sb[64];
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1])
        return nn_fail(g, DUET_ERR_SHAPE,
                       "linear: x [..., C] needs w [OC, C], got %s and %s",
                       duet_tensor_describe(x, sx, sizeof sx), duet_tensor_describe(w, sw, sizeof sw));
    int64_t C = w->shape[1], OC = w->shape[0];
    if (b && (b->ndim != 1 || b->shape[0] != OC))
        return nn_fail(g, DUET_ERR_SHAPE, "linear: bias must be [OC] for w %s, got %s",
                       duet_tensor_describe(w, sw, sizeof sw), duet_tensor_describe(b, sb, sizeof sb));
    int64_t N = C ? duet_tensor_numel(x) / C : 0;
    int64_t shape[DUET_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = OC;
    duet_tensor *out = nn_out(g, x->ndim, shape);
    if (!out) return NULL;
    duet_linear_forward(nn_f32(out), nn_f32(x), nn_f32(w), b ? nn_f32(b) : NULL, N, C, OC);
    duet_record *r = duet_graph_record(g, DUET_OP_LINEAR, linear_tape_backward, out, x, w, b, NULL);
    if (r) {
        r->iarg[0] = N;
        r->iarg[1] = C;
        r->iarg[2] = OC;
    }
    return out;
}

/* ==== bmm ==== */
/* a is [batch, M, K] ([batch, K, M] when transA), b is [batch, K, N]
 * ([batch, N, K] when transB), out is [batch, M, N]. */

void duet_bmm_forward(float *out, const float *a, const float *b, int64_t batch, int64_t M,
                      int64_t N, int64_t K, int transA, int transB) {
    int64_t lda = transA ? M : K, ldb = transB ? K : N;
    for (int64_t i = 0; i < batch; i++)
        duet_sgemm(transA, transB, M, N, K, 1.0f, a + i * M * K, lda, b + i * K * N, ldb, 0.0f,
                   out + i * M * N, N);
}

void duet_bmm_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       int64_t batch, int64_t M, int64_t N, int64_t K, int transA, int transB) {
    int64_t lda = transA ? M : K, ldb = transB ? K : N;
    for (int64_t i = 0; i < batch; i++) {
        const float *ai = a + i * M * K, *bi = b + i * K * N, *d = dout + i * M * N;
        if (da) {
            float *dai = da + i * M * K;
            if (!transA) /* da[M,K] += dout[M,N] @ op(b)^T */
                duet_sgemm(0, !transB, M, K, N, 1.0f, d, N, bi, ldb, 1.0f, dai, K);
            else /* da[K,M] += op(b)[K,N] @ dout^T */
                duet_sgemm(transB, 1, K, M, N, 1.0f, bi, ldb, d, N, 1.0f, dai, M);
        }
        if (db) {
            float *dbi = db + i * K * N;
            if (!transB) /* db[K,N] += op(a)^T[K,M] @ dout[M,N] */
                duet_sgemm(!transA, 0, K, N, M, 1.0f, ai, lda, d, N, 1.0f, dbi, N);
            else /* db[N,K] += dout^T[N,M] @ op(a)[M,K] */
                duet_sgemm(1, transA, N, K, M, 1.0f, d, N, ai, lda, 1.0f, dbi, K);
        }
    }
}

static void bmm_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_bmm_backward(nn_grad(r->in[0]), nn_grad(r->in[1]), r->out->grad, nn_f32(r->in[0]),
                      nn_f32(r->in[1]), r->iarg[0], r->iarg[1], r->iarg[2], r->iarg[3],
                      (int)r->iarg[4], (int)r->iarg[5]);
}

duet_tensor *duet_nn_bmm(duet_graph *g, duet_tensor *a, duet_tensor *b, int transA, int transB) {
    if (!a || !b) return NULL;
    if (!nn_check(g, a, DUET_DTYPE_F32, "bmm", "a") || !nn_check(g, b, DUET_DTYPE_F32, "bmm", "b"))
        return NULL;
    char sa[64], sb[64];
    if (a->ndim != 3 || b->ndim != 3 || a->shape[0] != b->shape[0])
        return nn_fail(g, DUET_ERR_SHAPE, "bmm: a and b must be 3-D with the same batch, got %s and %s",
                       duet_tensor_describe(a, sa, sizeof sa), duet_tensor_describe(b, sb, sizeof sb));
    int64_t batch = a->shape[0];
    int64_t M = transA ? a->shape[2] : a->shape[1];
    int64_t K = transA ? a->shape[1] : a->shape[2];
    int64_t Kb = transB ? b->shape[2] : b->shape[1];
    int64_t N = transB ? b->shape[1] : b->shape[2];
    if (K != Kb)
        return nn_fail(g, DUET_ERR_SHAPE,
                       "bmm: inner dims differ (%lld vs %lld, transA %d transB %d), got %s and %s",
                       (long long)K, (long long)Kb, transA != 0, transB != 0,
                       duet_tensor_describe(a, sa, sizeof sa), duet_tensor_describe(b, sb, sizeof sb));
    duet_tensor *out = nn_out(g, 3, (int64_t[]){batch, M, N});
    if (!out) return NULL;
    duet_bmm_forward(nn_f32(out), nn_f32(a), nn_f32(b), batch, M, N, K, transA != 0, transB != 0);
    duet_record *r = duet_graph_record(g, DUET_OP_BMM, bmm_tape_backward, out, a, b, NULL, NULL);
    if (r) {
        r->iarg[0] = batch;
        r->iarg[1] = M;
        r->iarg[2] = N;
        r->iarg[3] = K;
        r->iarg[4] = transA != 0;
        r->iarg[5] = transB != 0;
    }
    return out;
}
