/*
 * tape.c — the graph: a scratch arena plus a plain array of records. Ops run
 * their forward eagerly and append a record; duet_graph_backward walks the
 * records in reverse and calls each one's backward, which accumulates (+=)
 * into the grads of its inputs.
 *
 * What it is not: a lazy graph compiler or a scheduler. Every op is a direct
 * call; the tape only remembers what to differentiate.
 */
#include "nn/nn.h"

#include <stdarg.h>
#include <string.h>

struct duet_graph {
    duet_arena *arena;
    duet_record *recs;
    int nrecs, caprecs;
    int training;
    duet_status status;
    char error[512];
};

static const char *const op_names[DUET_OP_COUNT] = {
    [DUET_OP_NONE] = "none",          [DUET_OP_LINEAR] = "linear",
    [DUET_OP_BMM] = "bmm",            [DUET_OP_ADD] = "add",
    [DUET_OP_MUL] = "mul",            [DUET_OP_SCALE] = "scale",
    [DUET_OP_ADD_CHANNEL] = "add_channel", [DUET_OP_EMBEDDING] = "embedding",
    [DUET_OP_LAYERNORM] = "layernorm", [DUET_OP_RMSNORM] = "rmsnorm",
    [DUET_OP_GELU] = "gelu",          [DUET_OP_SILU] = "silu",
    [DUET_OP_SWIGLU] = "swiglu",      [DUET_OP_SOFTMAX] = "softmax",
    [DUET_OP_CROSS_ENTROPY] = "cross_entropy", [DUET_OP_ATTENTION] = "attention",
    [DUET_OP_ROPE] = "rope",          [DUET_OP_DROPOUT] = "dropout",
    [DUET_OP_CONV2D] = "conv2d",      [DUET_OP_GROUPNORM] = "groupnorm",
    [DUET_OP_UPSAMPLE2X] = "upsample2x", [DUET_OP_AVGPOOL2X] = "avgpool2x",
    [DUET_OP_TIMESTEP_EMB] = "timestep_embedding", [DUET_OP_MSE] = "mse",
    [DUET_OP_CONCAT] = "concat",      [DUET_OP_TRANSPOSE] = "transpose",
    [DUET_OP_RESHAPE] = "reshape",
    [DUET_OP_GROUPNORM_SILU] = "groupnorm_silu", [DUET_OP_CONV2D_CHANBIAS] = "conv2d_chanbias",
};

const char *duet_op_name(duet_op op) {
    if ((int)op < 0 || op >= DUET_OP_COUNT || !op_names[op]) return "?";
    return op_names[op];
}

duet_graph *duet_graph_new(size_t scratch_bytes) {
    duet_graph *g = duet_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->arena = duet_arena_new(scratch_bytes);
    g->caprecs = 256;
    g->recs = duet_alloc(sizeof *g->recs * (size_t)g->caprecs);
    if (!g->arena || !g->recs) {
        duet_graph_free(g);
        return NULL;
    }
    g->training = 1;
    return g;
}

void duet_graph_free(duet_graph *g) {
    if (!g) return;
    duet_arena_free(g->arena);
    duet_free(g->recs);
    duet_free(g);
}

void duet_graph_reset(duet_graph *g) {
    duet_arena_reset(g->arena);
    g->nrecs = 0;
    g->status = DUET_OK;
    g->error[0] = 0;
}

duet_status duet_graph_status(const duet_graph *g) {
    if (g->status != DUET_OK) duet_set_error(g->status, "%s", g->error);
    return g->status;
}

void duet_graph_set_training(duet_graph *g, int on) { g->training = on != 0; }
int duet_graph_training(const duet_graph *g) { return g->training; }
int duet_graph_nrecords(const duet_graph *g) { return g->nrecs; }
const duet_record *duet_graph_records(const duet_graph *g) { return g->recs; }
size_t duet_graph_peak_bytes(const duet_graph *g) { return duet_arena_peak(g->arena); }

duet_tensor *nn_fail(duet_graph *g, duet_status s, const char *fmt, ...) {
    if (g->status == DUET_OK) { /* keep the first error: it is the cause */
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->error, sizeof g->error, fmt, ap);
        va_end(ap);
        g->status = s;
    }
    duet_set_error(g->status, "%s", g->error);
    return NULL;
}

void *duet_graph_alloc(duet_graph *g, size_t bytes) {
    if (g->status != DUET_OK) return NULL;
    void *p = duet_arena_alloc(g->arena, bytes);
    if (!p) nn_fail(g, DUET_ERR_NOMEM, "graph scratch: out of memory allocating %zu bytes", bytes);
    return p;
}

duet_tensor *duet_graph_tensor(duet_graph *g, duet_dtype dtype, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > DUET_MAX_DIMS)
        return nn_fail(g, DUET_ERR_SHAPE, "tensor with %d dims (max %d)", ndim, DUET_MAX_DIMS);
    duet_tensor *t = duet_graph_alloc(g, sizeof *t);
    if (!t) return NULL;
    duet_tensor_init(t, dtype, ndim, shape, NULL);
    t->data = duet_graph_alloc(g, duet_tensor_nbytes(t) + 4);
    return t->data ? t : NULL;
}

duet_tensor *duet_graph_input(duet_graph *g, void *data, duet_dtype dtype, int ndim,
                              const int64_t *shape) {
    if (ndim < 0 || ndim > DUET_MAX_DIMS)
        return nn_fail(g, DUET_ERR_SHAPE, "tensor with %d dims (max %d)", ndim, DUET_MAX_DIMS);
    duet_tensor *t = duet_graph_alloc(g, sizeof *t);
    if (!t) return NULL;
    duet_tensor_init(t, dtype, ndim, shape, data);
    return t;
}

duet_record *duet_graph_record(duet_graph *g, duet_op op, duet_backward_fn backward,
                               duet_tensor *out, duet_tensor *in0, duet_tensor *in1,
                               duet_tensor *in2, duet_tensor *in3) {
    duet_tensor *in[4] = {in0, in1, in2, in3};
    int need = 0;
    for (int i = 0; i < 4; i++) need |= in[i] && in[i]->requires_grad;
    out->requires_grad = g->training && need;
    if (!out->requires_grad) return NULL;
    if (g->nrecs == g->caprecs) {
        int ncap = g->caprecs * 2;
        duet_record *n = duet_alloc(sizeof *n * (size_t)ncap);
        if (!n) {
            nn_fail(g, DUET_ERR_NOMEM, "tape: out of memory growing to %d records", ncap);
            return NULL;
        }
        memcpy(n, g->recs, sizeof *n * (size_t)g->nrecs);
        duet_free(g->recs);
        g->recs = n;
        g->caprecs = ncap;
    }
    duet_record *r = &g->recs[g->nrecs++];
    memset(r, 0, sizeof *r);
    r->op = op;
    r->backward = backward;
    r->out = out;
    for (int i = 0; i < 4; i++) r->in[i] = in[i];
    return r;
}

static int ensure_grad(duet_graph *g, duet_tensor *t) {
    if (!t || !t->requires_grad || t->grad) return 1;
    size_t n = (size_t)duet_tensor_numel(t);
    t->grad = duet_graph_alloc(g, n * sizeof(float) + 4);
    if (!t->grad) return 0;
    memset(t->grad, 0, n * sizeof(float));
    return 1;
}

duet_status duet_graph_backward(duet_graph *g, duet_tensor *loss) {
    if (g->status != DUET_OK) return duet_graph_status(g);
    if (!loss) return duet_set_error(DUET_ERR_ARG, "backward: loss is NULL");
    if (duet_tensor_numel(loss) != 1 || loss->dtype != DUET_DTYPE_F32)
        return duet_set_error(DUET_ERR_SHAPE, "backward: loss must be one f32 value");
    if (!loss->requires_grad)
        return duet_set_error(DUET_ERR_ARG, "backward: loss does not depend on any parameter "
                                            "(or the graph is not training)");
    /* Activation grads: allocate and zero before the walk, in forward order. */
    for (int i = 0; i < g->nrecs; i++) {
        duet_record *r = &g->recs[i];
        if (!ensure_grad(g, r->out)) return duet_graph_status(g);
        for (int j = 0; j < 4; j++)
            if (!ensure_grad(g, r->in[j])) return duet_graph_status(g);
    }
    loss->grad[0] = 1.0f;
    for (int i = g->nrecs - 1; i >= 0; i--) {
        const duet_record *r = &g->recs[i];
        if (r->out->requires_grad && r->backward) r->backward(g, r);
    }
    return duet_graph_status(g);
}

/* ---- shared checks for op wrappers -------------------------------------- */

int nn_check(duet_graph *g, const duet_tensor *t, duet_dtype dt, const char *op,
             const char *what) {
    if (t->dtype != dt) {
        nn_fail(g, DUET_ERR_SHAPE, "%s: %s must be %s, got %s", op, what, duet_dtype_name(dt),
                duet_dtype_name(t->dtype));
        return 0;
    }
    if (!duet_tensor_is_contiguous(t)) {
        nn_fail(g, DUET_ERR_SHAPE, "%s: %s must be contiguous", op, what);
        return 0;
    }
    return 1;
}

duet_tensor *nn_out(duet_graph *g, int ndim, const int64_t *shape) {
    return duet_graph_tensor(g, DUET_DTYPE_F32, ndim, shape);
}

duet_tensor *nn_out_like(duet_graph *g, const duet_tensor *t) {
    return duet_graph_tensor(g, DUET_DTYPE_F32, t->ndim, t->shape);
}

int64_t nn_inner(const duet_tensor *t, int from) {
    int64_t n = 1;
    for (int i = from; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int nn_same_shape(const duet_tensor *a, const duet_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}
