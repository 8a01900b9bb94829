/*
 * embedding.c — lookups and per-channel adds: token embedding (rows of a
 * table picked by ids) and add_channel (x[n,c,...] + b[n,c], e.g. a timestep
 * embedding added to every pixel). Raw forward/backward and their tape ops.
 *
 * The embedding backward scatters into table rows that ids may repeat; it is
 * split across threads by columns, each column walked in id order, so it is
 * race-free and bitwise the same whatever the thread count. Ids are checked
 * at the boundary (the tape op), not in the raw functions.
 *
 * Sizes: N ids, C channels, V table rows; N images × C channels × HW pixels.
 */
#include "nn/nn.h"

#include <string.h>

#define EMB_COL_BLOCK 64

/* ==== embedding ==== */

void duet_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N,
                            int64_t C) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C))
    for (int64_t i = 0; i < N; i++)
        memcpy(out + i * C, table + (int64_t)ids[i] * C, sizeof(float) * (size_t)C);
}

void duet_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int64_t N,
                             int64_t C) {
    if (!dtable) return;
    int64_t nblocks = (C + EMB_COL_BLOCK - 1) / EMB_COL_BLOCK;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C))
    for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t j0 = blk * EMB_COL_BLOCK, nj = DUET_MIN(EMB_COL_BLOCK, C - j0);
        for (int64_t i = 0; i < N; i++) {
            float *d = dtable + (int64_t)ids[i] * C + j0;
            const float *g = dout + i * C + j0;
            for (int64_t j = 0; j < nj; j++) d[j] += g[j];
        }
    }
}

static void embedding_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_embedding_backward(nn_grad(r->in[0]), r->out->grad, r->in[1]->data, r->iarg[0],
                            r->iarg[1]);
}

duet_tensor *duet_nn_embedding(duet_graph *g, duet_tensor *ids, duet_tensor *table) {
    if (!ids || !table) return NULL;
    if (!nn_check(g, ids, DUET_DTYPE_I32, "embedding", "ids") ||
        !nn_check(g, table, DUET_DTYPE_F32, "embedding", "table"))
        return NULL;
    char si[64], st[64];
    if (table->ndim != 2 || ids->ndim + 1 > DUET_MAX_DIMS)
        return nn_fail(g, DUET_ERR_SHAPE,
                       "embedding: needs ids with at most %d dims and table [V, C], got %s and %s",
                       DUET_MAX_DIMS - 1, duet_tensor_describe(ids, si, sizeof si),
                       duet_tensor_describe(table, st, sizeof st));
    int64_t V = table->shape[0], C = table->shape[1], N = duet_tensor_numel(ids);
    const int32_t *id = ids->data;
    for (int64_t i = 0; i < N; i++)
        if (id[i] < 0 || id[i] >= V)
            return nn_fail(g, DUET_ERR_ARG,
                           "embedding: id %d at position %lld is outside the table's %lld rows "
                           "[0, %lld) (does the tokenizer match the model's vocabulary?)",
                           id[i], (long long)i, (long long)V, (long long)V);
    int64_t shape[DUET_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof(int64_t) * (size_t)ids->ndim);
    shape[ids->ndim] = C;
    duet_tensor *out = nn_out(g, ids->ndim + 1, shape);
    if (!out) return NULL;
    duet_embedding_forward(nn_f32(out), id, nn_f32(table), N, C);
    duet_record *r =
        duet_graph_record(g, DUET_OP_EMBEDDING, embedding_tape_backward, out, table, ids, NULL, NULL);
    if (r) {
        r->iarg[0] = N;
        r->iarg[1] = C;
    }
    return out;
}

/* ==== add_channel ==== */
/* out[n,c,i] = x[n,c,i] + b[n,c]; db[n,c] += sum_i dout[n,c,i] */

void duet_add_channel_forward(float *out, const float *x, const float *b, int64_t N, int64_t C,
                              int64_t HW) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C * HW))
    for (int64_t nc = 0; nc < N * C; nc++) {
        float bv = b[nc];
        const float *xi = x + nc * HW;
        float *o = out + nc * HW;
        for (int64_t i = 0; i < HW; i++) o[i] = xi[i] + bv;
    }
}

void duet_add_channel_backward(float *dx, float *db, const float *dout, int64_t N, int64_t C,
                               int64_t HW) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C * HW))
    for (int64_t nc = 0; nc < N * C; nc++) {
        const float *d = dout + nc * HW;
        if (dx) {
            float *o = dx + nc * HW;
            for (int64_t i = 0; i < HW; i++) o[i] += d[i];
        }
        if (db) {
            double s = 0.0;
            for (int64_t i = 0; i < HW; i++) s += (double)d[i];
            db[nc] += (float)s;
        }
    }
}

static void add_channel_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_add_channel_backward(nn_grad(r->in[0]), nn_grad(r->in[1]), r->out->grad, r->iarg[0],
                              r->iarg[1], r->iarg[2]);
}

duet_tensor *duet_nn_add_channel(duet_graph *g, duet_tensor *x, duet_tensor *b) {
    if (!x || !b) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "add_channel", "x") ||
        !nn_check(g, b, DUET_DTYPE_F32, "add_channel", "b"))
        return NULL;
    if (x->ndim < 2 || b->ndim != 2 || b->shape[0] != x->shape[0] || b->shape[1] != x->shape[1]) {
        char sx[64], sb[64];
        return nn_fail(g, DUET_ERR_SHAPE, "add_channel: x [N, C, ...] needs b [N, C], got %s and %s",
                       duet_tensor_describe(x, sx, sizeof sx), duet_tensor_describe(b, sb, sizeof sb));
    }
    int64_t N = x->shape[0], C = x->shape[1], HW = nn_inner(x, 2);
    duet_tensor *out = nn_out_like(g, x);
    if (!out) return NULL;
    duet_add_channel_forward(nn_f32(out), nn_f32(x), nn_f32(b), N, C, HW);
    duet_record *r =
        duet_graph_record(g, DUET_OP_ADD_CHANNEL, add_channel_tape_backward, out, x, b, NULL, NULL);
    if (r) {
        r->iarg[0] = N;
        r->iarg[1] = C;
        r->iarg[2] = HW;
    }
    return out;
}
