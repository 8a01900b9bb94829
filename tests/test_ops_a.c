/*
 * test_ops_a.c — linear, bmm, layernorm, rmsnorm, groupnorm, gelu, silu,
 * swiglu, softmax, cross-entropy, mse, embedding, add_channel.
 *
 * For every fixture case (tests/ref/gen_ops_a.py, PyTorch): the raw forward
 * and every gradient against PyTorch; a second backward must give exactly
 * twice the first (the += rule); central finite differences of every
 * backward; then each tape op (duet_nn_*) + duet_graph_backward against the
 * same reference, the wrappers' error paths, and bitwise determinism across
 * thread counts 1 and 2. Ops on dispatched kernels run under every kernel set
 * the CPU supports.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* Fixture helpers: arrays are named "<case>.<what>"                         */
/* ======================================================================== */

static char key_buf[64];
static const char *key(int c, const char *what) {
    snprintf(key_buf, sizeof key_buf, "%d.%s", c, what);
    return key_buf;
}
static float *ff(t_fix *f, int c, const char *what, int64_t *n) { return t_fix_f32(f, key(c, what), n); }
static int32_t *fi(t_fix *f, int c, const char *what, int64_t *n) { return t_fix_i32(f, key(c, what), n); }
static int fhas(t_fix *f, int c, const char *what) { return t_fix_has(f, key(c, what)); }
static int fshape(t_fix *f, int c, const char *what, int64_t *shape) {
    return t_fix_shape(f, key(c, what), shape);
}
static double fscalar(t_fix *f, int c, const char *what) { return t_fix_scalar(f, key(c, what)); }

static float *zeros(int64_t n) { return calloc((size_t)n + 1, sizeof(float)); }

/* ======================================================================== */
/* One op case: inputs, forward, backward, reference — a generic driver     */
/* ======================================================================== */

typedef struct opcase opcase;
struct opcase {
    char name[64];
    void (*fwd)(opcase *c);  /* writes c->out (and saved buffers) from c->in */
    void (*bwd)(opcase *c);  /* accumulates into c->grad[] with dout = c->r */
    int nin;
    float *in[4];            /* f32 inputs (fixture memory; perturbed by gradcheck) */
    int64_t nin_el[4];
    float *grad[4];          /* gradient buffers (NULL: input has no grad) */
    const float *want_grad[4];
    int32_t *ids;            /* embedding ids / cross-entropy targets */
    float *out;
    int64_t nout;
    const float *want_out;
    const float *r;          /* upstream gradient; for losses r[0] = dloss */
    int scalar_loss;         /* out[0] is a loss: the fd loss is r[0] * out[0] */
    float *save[3];          /* mean, rstd, probs */
    int64_t d[6];
    float eps;
    int flag[3];
    double rtol, atol;       /* against PyTorch */
    float fd_eps;
    double fd_rtol, fd_atol;
};

static double case_loss(void *p) {
    opcase *c = p;
    c->fwd(c);
    if (c->scalar_loss) return (double)c->r[0] * (double)c->out[0];
    return t_dot_d(c->out, c->r, c->nout);
}

/* Forward vs reference; backward vs reference; second backward doubles;
 * finite differences of every gradient. Frees what it allocated. */
static void run_case(opcase *c) {
    char what[128];
    c->fwd(c);
    snprintf(what, sizeof what, "%s forward", c->name);
    t_close(what, c->out, c->want_out, c->nout, c->rtol, c->atol);
    float *first[4] = {0};
    for (int i = 0; i < c->nin; i++)
        if (c->want_grad[i]) c->grad[i] = zeros(c->nin_el[i]);
    c->bwd(c);
    for (int i = 0; i < c->nin; i++) {
        if (!c->grad[i]) continue;
        snprintf(what, sizeof what, "%s grad %d", c->name, i);
        t_close(what, c->grad[i], c->want_grad[i], c->nin_el[i], c->rtol, c->atol);
        first[i] = malloc(sizeof(float) * (size_t)c->nin_el[i] + 4);
        memcpy(first[i], c->grad[i], sizeof(float) * (size_t)c->nin_el[i]);
    }
    /* backward accumulates (+=): a second call must double every gradient
     * (up to rounding: an embedding row hit by several ids adds in a
     * different order the second time) */
    c->fwd(c);
    c->bwd(c);
    for (int i = 0; i < c->nin; i++) {
        if (!c->grad[i]) continue;
        float *twice = malloc(sizeof(float) * (size_t)c->nin_el[i] + 4);
        for (int64_t k = 0; k < c->nin_el[i]; k++) twice[k] = 2.0f * first[i][k];
        snprintf(what, sizeof what, "%s grad %d accumulates (+=)", c->name, i);
        t_close(what, c->grad[i], twice, c->nin_el[i], 1e-6, 1e-7);
        free(twice);
    }
    for (int i = 0; i < c->nin; i++) {
        if (!c->grad[i]) continue;
        snprintf(what, sizeof what, "%s grad %d (finite differences)", c->name, i);
        t_gradcheck(what, case_loss, c, c->in[i], c->nin_el[i], first[i], c->fd_eps, c->fd_rtol,
                    c->fd_atol, 200);
        free(first[i]);
        free(c->grad[i]);
        c->grad[i] = NULL;
    }
    free(c->out);
    for (int i = 0; i < 3; i++) free(c->save[i]);
}

static void case_init(opcase *c, const char *op, int idx) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s case %d", op, idx);
    c->rtol = 1e-5;
    c->atol = 1e-6;
    c->fd_eps = 1e-2f;
    c->fd_rtol = 1e-3;
    c->fd_atol = 1e-4;
}

/* Sets input i from fixture arrays "<what>" and (optionally) "d<what>". */
static int case_in(opcase *c, t_fix *f, int idx, int i, const char *what, const char *dwhat) {
    c->in[i] = ff(f, idx, what, &c->nin_el[i]);
    if (dwhat && fhas(f, idx, dwhat)) c->want_grad[i] = ff(f, idx, dwhat, NULL);
    if (i + 1 > c->nin) c->nin = i + 1;
    return c->in[i] != NULL;
}

static int case_out(opcase *c, t_fix *f, int idx, const char *what) {
    c->want_out = ff(f, idx, what, &c->nout);
    c->out = zeros(c->nout);
    return c->want_out != NULL;
}

/* ======================================================================== */
/* Tape helpers                                                              */
/* ======================================================================== */

/* loss = sum(x * r) as a tape record: its backward adds dloss * r to x's grad. */
static void dot_tape_backward(duet_graph *g, const duet_record *rec) {
    (void)g;
    duet_tensor *x = rec->in[0];
    const float *r = rec->saved[0];
    if (!x->requires_grad || !x->grad) return;
    int64_t n = duet_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) x->grad[i] += rec->out->grad[0] * r[i];
}

static duet_tensor *tape_dot(duet_graph *g, duet_tensor *x, const float *r) {
    if (!x) return NULL;
    duet_tensor *out = duet_graph_tensor(g, DUET_DTYPE_F32, 1, (int64_t[]){1});
    if (!out) return NULL;
    ((float *)out->data)[0] = (float)t_dot_d(x->data, r, duet_tensor_numel(x));
    duet_record *rec = duet_graph_record(g, DUET_OP_NONE, dot_tape_backward, out, x, NULL, NULL, NULL);
    if (rec) rec->saved[0] = (void *)r;
    return out;
}

/* A parameter (with a zeroed grad) holding a fixture array. */
static duet_tensor *param_of(t_fix *f, int idx, const char *what) {
    int64_t shape[8], n;
    int nd = fshape(f, idx, what, shape);
    const float *src = ff(f, idx, what, &n);
    if (nd < 0 || !src) return NULL;
    duet_tensor *t = duet_param_new(DUET_DTYPE_F32, nd, shape, 1);
    memcpy(t->data, src, sizeof(float) * (size_t)n);
    return t;
}

/* An i32 tensor in the graph wrapping a fixture array. */
static duet_tensor *ids_of(duet_graph *g, t_fix *f, int idx, const char *what) {
    int64_t shape[8];
    int nd = fshape(f, idx, what, shape);
    int32_t *p = fi(f, idx, what, NULL);
    if (nd < 0 || !p) return NULL;
    return duet_graph_input(g, p, DUET_DTYPE_I32, nd, shape);
}

static void check_param_grad(const char *op, duet_tensor *p, t_fix *f, int idx, const char *dwhat,
                             double rtol, double atol) {
    char what[96];
    snprintf(what, sizeof what, "tape %s %s", op, dwhat);
    if (!p) {
        T_CHECK(0, "%s: no parameter", what);
        return;
    }
    t_close(what, p->grad, ff(f, idx, dwhat, NULL), duet_tensor_numel(p), rtol, atol);
}

static void check_tape_out(const char *op, duet_graph *g, duet_tensor *out, duet_tensor *loss,
                           t_fix *f, int idx, const char *owhat, double rtol, double atol) {
    char what[96];
    snprintf(what, sizeof what, "tape %s forward", op);
    T_CHECK(out != NULL && loss != NULL, "%s: ok (%s)", what, duet_last_error());
    if (!out || !loss) return;
    t_close(what, out->data, ff(f, idx, owhat, NULL), duet_tensor_numel(out), rtol, atol);
    duet_status st = duet_graph_backward(g, loss);
    T_CHECK(st == DUET_OK, "tape %s backward: %s", op, duet_last_error());
}

/* ======================================================================== */
/* linear                                                                    */
/* ======================================================================== */

static void linear_fwd(opcase *c) {
    duet_linear_forward(c->out, c->in[0], c->in[1], c->nin > 2 ? c->in[2] : NULL, c->d[0], c->d[1],
                        c->d[2]);
}
static void linear_bwd(opcase *c) {
    duet_linear_backward(c->grad[0], c->grad[1], c->nin > 2 ? c->grad[2] : NULL, c->r, c->in[0],
                         c->in[1], c->d[0], c->d[1], c->d[2]);
}

static void test_linear(void) {
    t_fix *f = t_fix_load("ops_a_linear.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    for (int k = 0; k < count; k++) {
        opcase c;
        case_init(&c, "linear", k);
        /* sums of up to 17 products of O(1) values: absolute error ~ 17 ulp */
        c.atol = 1e-5;
        int64_t ws[8];
        fshape(f, k, "w", ws);
        if (!case_in(&c, f, k, 0, "x", "dx") || !case_in(&c, f, k, 1, "w", "dw")) continue;
        if (fhas(f, k, "b") && !case_in(&c, f, k, 2, "b", "db")) continue;
        c.d[2] = ws[0];
        c.d[1] = ws[1];
        c.d[0] = c.nin_el[0] / c.d[1];
        c.r = ff(f, k, "r", NULL);
        if (!case_out(&c, f, k, "out") || !c.r) continue;
        c.fwd = linear_fwd;
        c.bwd = linear_bwd;
        run_case(&c);
    }
    /* tape: case 1 has x [2,3,7] (leading dims flattened) and a bias */
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *x = param_of(f, 1, "x"), *w = param_of(f, 1, "w"), *b = param_of(f, 1, "b");
    duet_tensor *out = duet_nn_linear(g, x, w, b);
    T_CHECK(out && out->ndim == 3 && out->shape[0] == 2 && out->shape[1] == 3 && out->shape[2] == 6,
            "tape linear keeps leading dims");
    duet_tensor *loss = tape_dot(g, out, ff(f, 1, "r", NULL));
    check_tape_out("linear", g, out, loss, f, 1, "out", 1e-5, 1e-5);
    check_param_grad("linear", x, f, 1, "dx", 1e-5, 1e-5);
    check_param_grad("linear", w, f, 1, "dw", 1e-5, 1e-5);
    check_param_grad("linear", b, f, 1, "db", 1e-5, 1e-5);
    /* errors: C mismatch, bias mismatch, wrong dtype */
    duet_graph_reset(g);
    duet_tensor *w2 = duet_param_new(DUET_DTYPE_F32, 2, (int64_t[]){6, 5}, 1);
    out = duet_nn_linear(g, x, w2, b);
    T_CHECK(out == NULL && duet_graph_status(g) == DUET_ERR_SHAPE &&
                strstr(duet_last_error(), "linear") && strstr(duet_last_error(), "f32[2,3,7]") &&
                strstr(duet_last_error(), "f32[6,5]"),
            "linear C mismatch names both shapes: %s", duet_last_error());
    T_CHECK(duet_nn_gelu(g, out, 0) == NULL && duet_graph_status(g) == DUET_ERR_SHAPE,
            "a NULL input propagates and the first error sticks");
    duet_graph_reset(g);
    duet_tensor *b2 = duet_param_new(DUET_DTYPE_F32, 1, (int64_t[]){5}, 1);
    T_CHECK(duet_nn_linear(g, x, w, b2) == NULL && duet_graph_status(g) == DUET_ERR_SHAPE &&
                strstr(duet_last_error(), "f32[5]"),
            "linear bias mismatch: %s", duet_last_error());
    duet_graph_reset(g);
    duet_tensor *xi = duet_graph_tensor(g, DUET_DTYPE_I32, 2, (int64_t[]){2, 7});
    T_CHECK(duet_nn_linear(g, xi, w, b) == NULL && duet_graph_status(g) == DUET_ERR_SHAPE,
            "linear refuses i32 input: %s", duet_last_error());
    duet_param_free(x);
    duet_param_free(w);
    duet_param_free(b);
    duet_param_free(w2);
    duet_param_free(b2);
    duet_graph_free(g);
    t_fix_free(f);
}

/* ======================================================================== */
/* bmm                                                                       */
/* ======================================================================== */

static void bmm_fwd(opcase *c) {
    duet_bmm_forward(c->out, c->in[0], c->in[1], c->d[0], c->d[1], c->d[2], c->d[3], c->flag[0],
                     c->flag[1]);
}
static void bmm_bwd(opcase *c) {
    duet_bmm_backward(c->grad[0], c->grad[1], c->r, c->in[0], c->in[1], c->d[0], c->d[1], c->d[2],
                      c->d[3], c->flag[0], c->flag[1]);
}

static void test_bmm(void) {
    t_fix *f = t_fix_load("ops_a_bmm.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    for (int k = 0; k < count; k++) {
        opcase c;
        case_init(&c, "bmm", k);
        c.atol = 1e-5; /* sums of up to 9 products of O(1) values */
        int32_t *dims = fi(f, k, "dims", NULL), *tr = fi(f, k, "trans", NULL);
        if (!dims || !tr || !case_in(&c, f, k, 0, "a", "da") || !case_in(&c, f, k, 1, "b", "db"))
            continue;
        for (int i = 0; i < 4; i++) c.d[i] = dims[i];
        c.flag[0] = tr[0];
        c.flag[1] = tr[1];
        snprintf(c.name, sizeof c.name, "bmm case %d (transA %d transB %d)", k, tr[0], tr[1]);
        c.r = ff(f, k, "r", NULL);
        if (!case_out(&c, f, k, "out") || !c.r) continue;
        c.fwd = bmm_fwd;
        c.bwd = bmm_bwd;
        run_case(&c);
    }
    /* tape: every transpose combination (cases 0..3) */
    duet_graph *g = duet_graph_new(1 << 16);
    for (int k = 0; k < 4; k++) {
        duet_graph_reset(g);
        int32_t *tr = fi(f, k, "trans", NULL);
        duet_tensor *a = param_of(f, k, "a"), *b = param_of(f, k, "b");
        duet_tensor *out = duet_nn_bmm(g, a, b, tr[0], tr[1]);
        duet_tensor *loss = tape_dot(g, out, ff(f, k, "r", NULL));
        char op[32];
        snprintf(op, sizeof op, "bmm %d%d", tr[0], tr[1]);
        check_tape_out(op, g, out, loss, f, k, "out", 1e-5, 1e-5);
        check_param_grad(op, a, f, k, "da", 1e-5, 1e-5);
        check_param_grad(op, b, f, k, "db", 1e-5, 1e-5);
        if (k == 0) { /* K mismatch: a [2,3,4] @ a [2,3,4] */
            duet_graph_reset(g);
            T_CHECK(duet_nn_bmm(g, a, a, 0, 0) == NULL && duet_graph_status(g) == DUET_ERR_SHAPE &&
                        strstr(duet_last_error(), "bmm") && strstr(duet_last_error(), "f32[2,3,4]"),
                    "bmm inner mismatch: %s", duet_last_error());
            duet_graph_reset(g);
            duet_tensor *two = duet_graph_tensor(g, DUET_DTYPE_F32, 2, (int64_t[]){3, 4});
            T_CHECK(duet_nn_bmm(g, two, b, 0, 0) == NULL && duet_graph_status(g) == DUET_ERR_SHAPE,
                    "bmm refuses 2-D: %s", duet_last_error());
        }
        duet_param_free(a);
        duet_param_free(b);
    }
    duet_graph_free(g);
    t_fix_free(f);
}

/* ======================================================================== */
/* layernorm, rmsnorm, groupnorm                                             */
/* ======================================================================== */

static void ln_fwd(opcase *c) {
    duet_layernorm_forward(c->out, c->save[0], c->save[1], c->in[0], c->flag[0] ? c->in[1] : NULL,
                           c->flag[0] ? c->in[2] : NULL, c->d[0], c->d[1], c->eps);
}
static void ln_bwd(opcase *c) {
    duet_layernorm_backward(c->grad[0], c->flag[0] ? c->grad[1] : NULL, c->flag[0] ? c->grad[2] : NULL,
                            c->r, c->in[0], c->flag[0] ? c->in[1] : NULL, c->save[0], c->save[1],
                            c->d[0], c->d[1]);
}

static void test_layernorm(void) {
    t_fix *f = t_fix_load("ops_a_layernorm.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    for (int k = 0; k < count; k++) {
        opcase c;
        case_init(&c, "layernorm", k);
        /* row reductions (mean, var, dnorm sums) over up to 65 values in a
         * different order than PyTorch: errors of a few ulp of O(1) values */
        c.rtol = 1e-5;
        c.atol = 1e-5;
        int64_t xs[8];
        int nd = fshape(f, k, "x", xs);
        if (!case_in(&c, f, k, 0, "x", "dx")) continue;
        c.flag[0] = fhas(f, k, "w");
        if (c.flag[0] && (!case_in(&c, f, k, 1, "w", "dw") || !case_in(&c, f, k, 2, "b", "db"))) continue;
        c.d[1] = xs[nd - 1];
        c.d[0] = c.nin_el[0] / c.d[1];
        c.eps = (float)fscalar(f, k, "eps");
        c.r = ff(f, k, "r", NULL);
        if (!case_out(&c, f, k, "out") || !c.r) continue;
        c.save[0] = zeros(c.d[0]);
        c.save[1] = zeros(c.d[0]);
        c.fwd = ln_fwd;
        c.bwd = ln_bwd;
        run_case(&c);
    }
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *x = param_of(f, 0, "x"), *w = param_of(f, 0, "w"), *b = param_of(f, 0, "b");
    duet_tensor *out = duet_nn_layernorm(g, x, w, b, (float)fscalar(f, 0, "eps"));
    duet_tensor *loss = tape_dot(g, out, ff(f, 0, "r", NULL));
    check_tape_out("layernorm", g, out, loss, f, 0, "out", 1e-5, 1e-5);
    check_param_grad("layernorm", x, f, 0, "dx", 1e-5, 1e-5);
    check_param_grad("layernorm", w, f, 0, "dw", 1e-5, 1e-5);
    check_param_grad("layernorm", b, f, 0, "db", 1e-5, 1e-5);
    duet_graph_reset(g);
    duet_tensor *x2 = param_of(f, 1, "x"); /* [3,32] against w [7] */
    T_CHECK(duet_nn_layernorm(g, x2, w, b, 1e-5f) == NULL && duet_graph_status(g) == DUET_ERR_SHAPE &&
                strstr(duet_last_error(), "f32[3,32]") && strstr(duet_last_error(), "f32[7]"),
            "layernorm weight mismatch: %s", duet_last_error());
    duet_param_free(x);
    duet_param_free(x2);
    duet_param_free(w);
    duet_param_free(b);
    duet_graph_free(g);
    t_fix_free(f);
}

static void rms_fwd(opcase *c) {
    duet_rmsnorm_forward(c->out, c->save[1], c->in[0], c->in[1], c->d[0], c->d[1], c->eps);
}
static void rms_bwd(opcase *c) {
    duet_rmsnorm_backward(c->grad[0], c->grad[1], c->r, c->in[0], c->in[1], c->save[1], c->d[0],
                          c->d[1]);
}

static void test_rmsnorm(void) {
    t_fix *f = t_fix_load("ops_a_rmsnorm.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    for (int k = 0; k < count; k++) {
        opcase c;
        case_init(&c, "rmsnorm", k);
        c.atol = 1e-5; /* row sums over up to 64 values, as for layernorm */
        int64_t xs[8];
        int nd = fshape(f, k, "x", xs);
        if (!case_in(&c, f, k, 0, "x", "dx") || !case_in(&c, f, k, 1, "w", "dw")) continue;
        c.d[1] = xs[nd - 1];
        c.d[0] = c.nin_el[0] / c.d[1];
        c.eps = (float)fscalar(f, k, "eps");
        c.r = ff(f, k, "r", NULL);
        if (!case_out(&c, f, k, "out") || !c.r) continue;
        c.save[1] = zeros(c.d[0]);
        c.fwd = rms_fwd;
        c.bwd = rms_bwd;
        run_case(&c);
    }
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *x = param_of(f, 1, "x"), *w = param_of(f, 1, "w");
    duet_tensor *out = duet_nn_rmsnorm(g, x, w, (float)fscalar(f, 1, "eps"));
    duet_tensor *loss = tape_dot(g, out, ff(f, 1, "r", NULL));
    check_tape_out("rmsnorm", g, out, loss, f, 1, "out", 1e-5, 1e-5);
    check_param_grad("rmsnorm", x, f, 1, "dx", 1e-5, 1e-5);
    check_param_grad("rmsnorm", w, f, 1, "dw", 1e-5, 1e-5);
    duet_param_free(x);
    duet_param_free(w);
    duet_graph_free(g);
    t_fix_free(f);
}

static void gn_fwd(opcase *c) {
    duet_groupnorm_forward(c->out, c->save[0], c->save[1], c->in[0], c->flag[0] ? c->in[1] : NULL,
                           c->flag[0] ? c->in[2] : NULL, c->d[0], c->d[1], c->d[2], c->d[3], c->eps);
}
static void gn_bwd(opcase *c) {
    duet_groupnorm_backward(c->grad[0], c->flag[0] ? c->grad[1] : NULL, c->flag[0] ? c->grad[2] : NULL,
                            c->r, c->in[0], c->flag[0] ? c->in[1] : NULL, c->save[0], c->save[1],
                            c->d[0], c->d[1], c->d[2], c->d[3]);
}

static void test_groupnorm(void) {
    t_fix *f = t_fix_load("ops_a_groupnorm.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    for (int k = 0; k < count; k++) {
        opcase c;
        case_init(&c, "groupnorm", k);
        c.atol = 1e-5; /* group and channel sums of up to 36 values */
        int64_t xs[8];
        int nd = fshape(f, k, "x", xs);
        if (!case_in(&c, f, k, 0, "x", "dx")) continue;
        c.flag[0] = fhas(f, k, "w");
        if (c.flag[0] && (!case_in(&c, f, k, 1, "w", "dw") || !case_in(&c, f, k, 2, "b", "db"))) continue;
        c.d[0] = xs[0];
        c.d[1] = xs[1];
        c.d[2] = 1;
        for (int i = 2; i < nd; i++) c.d[2] *= xs[i];
        c.d[3] = (int64_t)fscalar(f, k, "groups");
        c.eps = (float)fscalar(f, k, "eps");
        c.r = ff(f, k, "r", NULL);
        if (!case_out(&c, f, k, "out") || !c.r) continue;
        c.save[0] = zeros(c.d[0] * c.d[3]);
        c.save[1] = zeros(c.d[0] * c.d[3]);
        c.fwd = gn_fwd;
        c.bwd = gn_bwd;
        run_case(&c);
    }
    /* tape: case 1 is [2,4,3,3] in 2 groups */
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *x = param_of(f, 1, "x"), *w = param_of(f, 1, "w"), *b = param_of(f, 1, "b");
    duet_tensor *out = duet_nn_groupnorm(g, x, w, b, 2, (float)fscalar(f, 1, "eps"));
    duet_tensor *loss = tape_dot(g, out, ff(f, 1, "r", NULL));
    check_tape_out("groupnorm", g, out, loss, f, 1, "out", 1e-5, 1e-5);
    check_param_grad("groupnorm", x, f, 1, "dx", 1e-5, 1e-5);
    check_param_grad("groupnorm", w, f, 1, "dw", 1e-5, 1e-5);
    check_param_grad("groupnorm", b, f, 1, "db", 1e-5, 1e-5);
    duet_graph_reset(g);
    T_CHECK(duet_nn_groupnorm(g, x, w, b, 3, 1e-5f) == NULL && duet_graph_status(g) == DUET_ERR_SHAPE &&
                strstr(duet_last_error(), "groups") && strstr(duet_last_error(), "f32[2,4,3,3]"),
            "groupnorm C %% groups: %s", duet_last_error());
    duet_param_free(x);
    duet_param_free(w);
    duet_param_free(b);
    duet_graph_free(g);
    t_fix_free(f);
}

/* ======================================================================== */
/* activations and softmax                                                   */
/* ======================================================================== */

static void act_fwd(opcase *c) {
    if (c->flag[0] == 2) duet_silu_forward(c->out, c->in[0], c->nout);
    else duet_gelu_forward(c->out, c->in[0], c->nout, c->flag[0]);
}
static void act_bwd(opcase *c) {
    if (c->flag[0] == 2) duet_silu_backward(c->grad[0], c->r, c->in[0], c->nout);
    else duet_gelu_backward(c->grad[0], c->r, c->in[0], c->nout, c->flag[0]);
}

static void test_activations(void) {
    t_fix *f = t_fix_load("ops_a_act.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    static const char *const names[] = {"gelu", "gelu_tanh", "silu"};
    int tape_done[3] = {0};
    duet_graph *g = duet_graph_new(1 << 16);
    for (int k = 0; k < count; k++) {
        opcase c;
        int kind = (int)fscalar(f, k, "kind");
        case_init(&c, names[kind], k);
        if (!case_in(&c, f, k, 0, "x", "dx")) continue;
        c.flag[0] = kind;
        c.r = ff(f, k, "r", NULL);
        if (!case_out(&c, f, k, "out") || !c.r) continue;
        c.fwd = act_fwd;
        c.bwd = act_bwd;
        run_case(&c);
        if (tape_done[kind]++) continue;
        duet_graph_reset(g);
        duet_tensor *x = param_of(f, k, "x");
        duet_tensor *out = kind == 2 ? duet_nn_silu(g, x) : duet_nn_gelu(g, x, kind);
        duet_tensor *loss = tape_dot(g, out, ff(f, k, "r", NULL));
        check_tape_out(names[kind], g, out, loss, f, k, "out", 1e-5, 1e-6);
        check_param_grad(names[kind], x, f, k, "dx", 1e-5, 1e-6);
        duet_param_free(x);
    }
    duet_graph_free(g);
    t_fix_free(f);
}

static void swiglu_fwd(opcase *c) { duet_swiglu_forward(c->out, c->in[0], c->in[1], c->nout); }
static void swiglu_bwd(opcase *c) {
    duet_swiglu_backward(c->grad[0], c->grad[1], c->r, c->in[0], c->in[1], c->nout);
}

static void test_swiglu(void) {
    t_fix *f = t_fix_load("ops_a_swiglu.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    for (int k = 0; k < count; k++) {
        opcase c;
        case_init(&c, "swiglu", k);
        if (!case_in(&c, f, k, 0, "gate", "dgate") || !case_in(&c, f, k, 1, "up", "dup")) continue;
        c.r = ff(f, k, "r", NULL);
        if (!case_out(&c, f, k, "out") || !c.r) continue;
        c.fwd = swiglu_fwd;
        c.bwd = swiglu_bwd;
        run_case(&c);
    }
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *gate = param_of(f, 0, "gate"), *up = param_of(f, 0, "up");
    duet_tensor *out = duet_nn_swiglu(g, gate, up);
    duet_tensor *loss = tape_dot(g, out, ff(f, 0, "r", NULL));
    check_tape_out("swiglu", g, out, loss, f, 0, "out", 1e-5, 1e-6);
    check_param_grad("swiglu", gate, f, 0, "dgate", 1e-5, 1e-6);
    check_param_grad("swiglu", up, f, 0, "dup", 1e-5, 1e-6);
    duet_graph_reset(g);
    duet_tensor *up1 = param_of(f, 1, "up"); /* [64] against gate [29] */
    T_CHECK(duet_nn_swiglu(g, gate, up1) == NULL && duet_graph_status(g) == DUET_ERR_SHAPE &&
                strstr(duet_last_error(), "f32[29]") && strstr(duet_last_error(), "f32[64]"),
            "swiglu shape mismatch: %s", duet_last_error());
    duet_param_free(gate);
    duet_param_free(up);
    duet_param_free(up1);
    duet_graph_free(g);
    t_fix_free(f);
}

static void softmax_fwd(opcase *c) { duet_softmax_forward(c->out, c->in[0], c->d[0], c->d[1]); }
static void softmax_bwd(opcase *c) {
    duet_softmax_backward(c->grad[0], c->r, c->out, c->d[0], c->d[1]);
}

static void test_softmax(void) {
    t_fix *f = t_fix_load("ops_a_softmax.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    for (int k = 0; k < count; k++) {
        opcase c;
        case_init(&c, "softmax", k);
        int64_t xs[8];
        int nd = fshape(f, k, "x", xs);
        if (!case_in(&c, f, k, 0, "x", "dx")) continue;
        c.d[1] = xs[nd - 1];
        c.d[0] = c.nin_el[0] / c.d[1];
        c.r = ff(f, k, "r", NULL);
        if (!case_out(&c, f, k, "out") || !c.r) continue;
        c.fwd = softmax_fwd;
        c.bwd = softmax_bwd;
        run_case(&c);
    }
    /* tape: case 2 is [2,3,4] (softmax over the last dim) */
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *x = param_of(f, 2, "x");
    duet_tensor *out = duet_nn_softmax(g, x);
    duet_tensor *loss = tape_dot(g, out, ff(f, 2, "r", NULL));
    check_tape_out("softmax", g, out, loss, f, 2, "out", 1e-5, 1e-6);
    check_param_grad("softmax", x, f, 2, "dx", 1e-5, 1e-6);
    duet_param_free(x);
    duet_graph_free(g);
    t_fix_free(f);
}

/* ======================================================================== */
/* losses                                                                    */
/* ======================================================================== */

static void ce_fwd(opcase *c) {
    c->out[0] = duet_cross_entropy_forward(c->save[2], c->in[0], c->ids, c->flag[0] ? c->in[1] : NULL,
                                           c->d[0], c->d[1], c->flag[1]);
}
static void ce_bwd(opcase *c) {
    duet_cross_entropy_backward(c->grad[0], c->r[0], c->save[2], c->ids, c->flag[0] ? c->in[1] : NULL,
                                c->d[0], c->d[1], c->flag[1]);
}

static void test_cross_entropy(void) {
    t_fix *f = t_fix_load("ops_a_ce.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    for (int k = 0; k < count; k++) {
        opcase c;
        case_init(&c, "cross_entropy", k);
        int64_t ls[8];
        int nd = fshape(f, k, "logits", ls);
        if (!case_in(&c, f, k, 0, "logits", "dlogits")) continue;
        c.flag[0] = fhas(f, k, "weights");
        if (c.flag[0] && !case_in(&c, f, k, 1, "weights", NULL)) continue;
        c.ids = fi(f, k, "targets", NULL);
        c.flag[1] = (int)fscalar(f, k, "ignore");
        c.d[1] = ls[nd - 1];
        c.d[0] = c.nin_el[0] / c.d[1];
        c.r = ff(f, k, "dloss", NULL);
        c.scalar_loss = 1;
        if (!c.ids || !case_out(&c, f, k, "loss") || !c.r) continue;
        /* the fd loss is a float near |dloss * loss| (~60 in the case with a
         * logit 150 above the rest): its rounding, ~1.2e-7 of it, divided
         * by 2 eps is the fd noise floor */
        c.fd_atol = 1e-4 + 2e-5 * fabs((double)c.r[0] * (double)c.want_out[0]);
        c.save[2] = zeros(c.d[0] * c.d[1]);
        c.fwd = ce_fwd;
        c.bwd = ce_bwd;
        run_case(&c);
    }
    /* all positions ignored: loss 0, no gradient */
    {
        float logits[6] = {1, 2, 3, 4, 5, 6}, probs[6], d[6] = {0};
        int32_t t[2] = {-1, -1};
        float l = duet_cross_entropy_forward(probs, logits, t, NULL, 2, 3, -1);
        duet_cross_entropy_backward(d, 1.0f, probs, t, NULL, 2, 3, -1);
        int zero = 1;
        for (int i = 0; i < 6; i++) zero &= d[i] == 0.0f;
        T_CHECK(l == 0.0f && zero, "cross_entropy with every position ignored: loss %g", (double)l);
    }
    /* tape: case 0 has weights and ignored positions; case 1 has [2,3] targets */
    duet_graph *g = duet_graph_new(1 << 16);
    for (int k = 0; k < 2; k++) {
        duet_graph_reset(g);
        duet_tensor *lg = param_of(f, k, "logits");
        duet_tensor *tg = ids_of(g, f, k, "targets");
        duet_tensor *w = NULL;
        if (fhas(f, k, "weights")) {
            int64_t ws[8];
            int nd = fshape(f, k, "weights", ws);
            w = duet_graph_input(g, ff(f, k, "weights", NULL), DUET_DTYPE_F32, nd, ws);
        }
        duet_tensor *loss = duet_nn_cross_entropy(g, lg, tg, w, (int32_t)fscalar(f, k, "ignore"));
        /* scale by dloss so the grads match the fixture's */
        duet_tensor *sl = duet_nn_scale(g, loss, (float)fscalar(f, k, "dloss"));
        T_CHECK(loss && loss->ndim == 1 && loss->shape[0] == 1, "tape cross_entropy is a scalar [1]");
        check_tape_out("cross_entropy", g, loss, sl, f, k, "loss", 1e-5, 1e-6);
        check_param_grad("cross_entropy", lg, f, k, "dlogits", 1e-5, 1e-6);
        if (k == 0) {
            duet_graph_reset(g);
            int32_t bad[6];
            memcpy(bad, fi(f, 0, "targets", NULL), sizeof bad);
            bad[3] = 9; /* V is 9 */
            duet_tensor *tb = duet_graph_input(g, bad, DUET_DTYPE_I32, 1, (int64_t[]){6});
            T_CHECK(duet_nn_cross_entropy(g, lg, tb, NULL, -100) == NULL &&
                        duet_graph_status(g) == DUET_ERR_ARG && strstr(duet_last_error(), "target 9") &&
                        strstr(duet_last_error(), "position 3"),
                    "cross_entropy bad target: %s", duet_last_error());
            duet_graph_reset(g);
            duet_tensor *t5 = duet_graph_input(g, bad, DUET_DTYPE_I32, 1, (int64_t[]){5});
            T_CHECK(duet_nn_cross_entropy(g, lg, t5, NULL, -100) == NULL &&
                        duet_graph_status(g) == DUET_ERR_SHAPE && strstr(duet_last_error(), "f32[6,9]") &&
                        strstr(duet_last_error(), "i32[5]"),
                    "cross_entropy target count: %s", duet_last_error());
        }
        duet_param_free(lg);
    }
    duet_graph_free(g);
    t_fix_free(f);
}

static void mse_fwd(opcase *c) { c->out[0] = duet_mse_forward(c->in[0], c->in[1], c->d[0]); }
static void mse_bwd(opcase *c) {
    duet_mse_backward(c->grad[0], c->grad[1], c->r[0], c->in[0], c->in[1], c->d[0]);
}

static void test_mse(void) {
    t_fix *f = t_fix_load("ops_a_mse.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    for (int k = 0; k < count; k++) {
        opcase c;
        case_init(&c, "mse", k);
        if (!case_in(&c, f, k, 0, "a", "da") || !case_in(&c, f, k, 1, "b", "db")) continue;
        c.d[0] = c.nin_el[0];
        c.r = ff(f, k, "dloss", NULL);
        c.scalar_loss = 1;
        if (!case_out(&c, f, k, "loss") || !c.r) continue;
        c.fwd = mse_fwd;
        c.bwd = mse_bwd;
        run_case(&c);
    }
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *a = param_of(f, 0, "a"), *b = param_of(f, 0, "b");
    duet_tensor *loss = duet_nn_mse(g, a, b);
    duet_tensor *sl = duet_nn_scale(g, loss, (float)fscalar(f, 0, "dloss"));
    T_CHECK(loss && loss->ndim == 1 && loss->shape[0] == 1, "tape mse is a scalar [1]");
    check_tape_out("mse", g, loss, sl, f, 0, "loss", 1e-5, 1e-6);
    check_param_grad("mse", a, f, 0, "da", 1e-5, 1e-6);
    check_param_grad("mse", b, f, 0, "db", 1e-5, 1e-6);
    duet_graph_reset(g);
    duet_tensor *c37 = param_of(f, 1, "a");
    T_CHECK(duet_nn_mse(g, a, c37) == NULL && duet_graph_status(g) == DUET_ERR_SHAPE &&
                strstr(duet_last_error(), "f32[3,7]") && strstr(duet_last_error(), "f32[37]"),
            "mse shape mismatch: %s", duet_last_error());
    duet_param_free(a);
    duet_param_free(b);
    duet_param_free(c37);
    duet_graph_free(g);
    t_fix_free(f);
}

/* ======================================================================== */
/* embedding, add_channel                                                    */
/* ======================================================================== */

static void emb_fwd(opcase *c) { duet_embedding_forward(c->out, c->ids, c->in[0], c->d[0], c->d[1]); }
static void emb_bwd(opcase *c) { duet_embedding_backward(c->grad[0], c->r, c->ids, c->d[0], c->d[1]); }

static void test_embedding(void) {
    t_fix *f = t_fix_load("ops_a_embedding.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    for (int k = 0; k < count; k++) {
        opcase c;
        case_init(&c, "embedding", k);
        int64_t ts[8];
        fshape(f, k, "table", ts);
        if (!case_in(&c, f, k, 0, "table", "dtable")) continue;
        c.ids = fi(f, k, "ids", &c.d[0]);
        c.d[1] = ts[1];
        c.r = ff(f, k, "r", NULL);
        if (!c.ids || !case_out(&c, f, k, "out") || !c.r) continue;
        c.fwd = emb_fwd;
        c.bwd = emb_bwd;
        run_case(&c);
    }
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *table = param_of(f, 0, "table"); /* [10, 6], ids [3, 5] */
    duet_tensor *ids = ids_of(g, f, 0, "ids");
    duet_tensor *out = duet_nn_embedding(g, ids, table);
    T_CHECK(out && out->ndim == 3 && out->shape[0] == 3 && out->shape[1] == 5 && out->shape[2] == 6,
            "tape embedding shape = ids shape + [C]");
    duet_tensor *loss = tape_dot(g, out, ff(f, 0, "r", NULL));
    check_tape_out("embedding", g, out, loss, f, 0, "out", 0, 0);
    check_param_grad("embedding", table, f, 0, "dtable", 1e-5, 1e-6);
    /* out-of-range ids, both ends */
    int32_t bad[3] = {1, 10, 2}, neg[2] = {0, -1};
    duet_graph_reset(g);
    duet_tensor *tb = duet_graph_input(g, bad, DUET_DTYPE_I32, 1, (int64_t[]){3});
    T_CHECK(duet_nn_embedding(g, tb, table) == NULL && duet_graph_status(g) == DUET_ERR_ARG &&
                strstr(duet_last_error(), "id 10") && strstr(duet_last_error(), "10 rows"),
            "embedding id == V: %s", duet_last_error());
    duet_graph_reset(g);
    tb = duet_graph_input(g, neg, DUET_DTYPE_I32, 1, (int64_t[]){2});
    T_CHECK(duet_nn_embedding(g, tb, table) == NULL && duet_graph_status(g) == DUET_ERR_ARG &&
                strstr(duet_last_error(), "id -1"),
            "embedding negative id: %s", duet_last_error());
    duet_graph_reset(g);
    tb = duet_graph_input(g, neg, DUET_DTYPE_F32, 1, (int64_t[]){2});
    T_CHECK(duet_nn_embedding(g, tb, table) == NULL && duet_graph_status(g) == DUET_ERR_SHAPE,
            "embedding refuses f32 ids: %s", duet_last_error());
    duet_param_free(table);
    duet_graph_free(g);
    t_fix_free(f);
}

static void addc_fwd(opcase *c) {
    duet_add_channel_forward(c->out, c->in[0], c->in[1], c->d[0], c->d[1], c->d[2]);
}
static void addc_bwd(opcase *c) {
    duet_add_channel_backward(c->grad[0], c->grad[1], c->r, c->d[0], c->d[1], c->d[2]);
}

static void test_add_channel(void) {
    t_fix *f = t_fix_load("ops_a_add_channel.bin");
    if (!f) return;
    int count = (int)t_fix_scalar(f, "count");
    for (int k = 0; k < count; k++) {
        opcase c;
        case_init(&c, "add_channel", k);
        int64_t xs[8];
        int nd = fshape(f, k, "x", xs);
        if (!case_in(&c, f, k, 0, "x", "dx") || !case_in(&c, f, k, 1, "b", "db")) continue;
        c.d[0] = xs[0];
        c.d[1] = xs[1];
        c.d[2] = 1;
        for (int i = 2; i < nd; i++) c.d[2] *= xs[i];
        c.r = ff(f, k, "r", NULL);
        if (!case_out(&c, f, k, "out") || !c.r) continue;
        c.fwd = addc_fwd;
        c.bwd = addc_bwd;
        run_case(&c);
    }
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *x = param_of(f, 1, "x"), *b = param_of(f, 1, "b"); /* [2,4,3,3] + [2,4] */
    duet_tensor *out = duet_nn_add_channel(g, x, b);
    duet_tensor *loss = tape_dot(g, out, ff(f, 1, "r", NULL));
    check_tape_out("add_channel", g, out, loss, f, 1, "out", 1e-6, 1e-6);
    check_param_grad("add_channel", x, f, 1, "dx", 1e-6, 1e-6);
    check_param_grad("add_channel", b, f, 1, "db", 1e-5, 1e-6);
    duet_graph_reset(g);
    duet_tensor *b0 = param_of(f, 0, "b"); /* [2,3] */
    T_CHECK(duet_nn_add_channel(g, x, b0) == NULL && duet_graph_status(g) == DUET_ERR_SHAPE &&
                strstr(duet_last_error(), "f32[2,4,3,3]") && strstr(duet_last_error(), "f32[2,3]"),
            "add_channel shape mismatch: %s", duet_last_error());
    duet_param_free(x);
    duet_param_free(b);
    duet_param_free(b0);
    duet_graph_free(g);
    t_fix_free(f);
}

/* ======================================================================== */
/* Determinism: thread counts 1 and 2 give bitwise-identical results         */
/* ======================================================================== */

/* Every op below splits its reductions so that each output element is summed
 * by one thread in a fixed order; sizes are large enough that the parallel
 * paths run (more than 32768 elements of work). */
enum { DET_N = 48, DET_C = 1024, DET_V = 50, DET_GN = 2, DET_GC = 32, DET_HW = 1024, DET_G = 4 };

#define DET_MAX_BUFS 32
typedef struct det_out {
    float *buf[DET_MAX_BUFS];
    int64_t n[DET_MAX_BUFS];
    int count;
} det_out;

static float *det_add(det_out *o, int64_t n) {
    if (o->count == DET_MAX_BUFS) abort(); /* the test itself is wrong: raise DET_MAX_BUFS */
    o->n[o->count] = n;
    return o->buf[o->count++] = zeros(n);
}

static void det_run(det_out *o, const float *x, const float *x2, const float *w, const float *b,
                    const float *r, const int32_t *ids) {
    int64_t N = DET_N, C = DET_C, n = N * C;
    /* layernorm */
    float *y = det_add(o, n), *mean = det_add(o, N), *rstd = det_add(o, N);
    duet_layernorm_forward(y, mean, rstd, x, w, b, N, C, 1e-5f);
    duet_layernorm_backward(det_add(o, n), det_add(o, C), det_add(o, C), r, x, w, mean, rstd, N, C);
    /* rmsnorm */
    y = det_add(o, n);
    rstd = det_add(o, N);
    duet_rmsnorm_forward(y, rstd, x, w, N, C, 1e-6f);
    duet_rmsnorm_backward(det_add(o, n), det_add(o, C), r, x, w, rstd, N, C);
    /* groupnorm: x viewed as [2, 32, 1024] would need 65536 values: use x and x2 */
    int64_t GN = DET_GN, GC = DET_GC, HW = DET_HW, G = DET_G;
    y = det_add(o, GN * GC * HW);
    mean = det_add(o, GN * G);
    rstd = det_add(o, GN * G);
    duet_groupnorm_forward(y, mean, rstd, x2, w, b, GN, GC, HW, G, 1e-5f);
    duet_groupnorm_backward(det_add(o, GN * GC * HW), det_add(o, GC), det_add(o, GC), x2, x2, w,
                            mean, rstd, GN, GC, HW, G);
    /* softmax */
    y = det_add(o, n);
    duet_softmax_forward(y, x, N, C);
    duet_softmax_backward(det_add(o, n), r, y, N, C);
    /* cross-entropy with weights and an ignored position; loss stored in a 1-element buffer */
    float *probs = det_add(o, n), *loss = det_add(o, 1);
    int32_t tg[DET_N];
    float pw[DET_N];
    for (int i = 0; i < DET_N; i++) tg[i] = i == 5 ? -100 : ids[i] * 13 % DET_C, pw[i] = 0.5f + w[i];
    loss[0] = duet_cross_entropy_forward(probs, x, tg, pw, N, C, -100);
    duet_cross_entropy_backward(det_add(o, n), 0.7f, probs, tg, pw, N, C, -100);
    /* mse */
    loss = det_add(o, 1);
    loss[0] = duet_mse_forward(x, r, n);
    /* embedding backward with repeated ids, add_channel backward, linear dbias */
    duet_embedding_backward(det_add(o, DET_V * C), r, ids, N, C);
    duet_add_channel_backward(NULL, det_add(o, N * 4), r, N, 4, C / 4);
    duet_linear_backward(NULL, NULL, det_add(o, C), r, x, w, N, 1, C);
}

static void test_determinism(void) {
    int64_t n = (int64_t)DET_N * DET_C;
    float *x = zeros(n), *x2 = zeros(DET_GN * DET_GC * DET_HW), *w = zeros(DET_C),
          *b = zeros(DET_C), *r = zeros(n);
    int32_t ids[DET_N];
    t_fill_uniform(x, n, 11, -3, 3);
    t_fill_uniform(x2, DET_GN * DET_GC * DET_HW, 12, -2, 2);
    t_fill_uniform(w, DET_C, 13, 0.5f, 1.5f);
    t_fill_uniform(b, DET_C, 14, -1, 1);
    t_fill_uniform(r, n, 15, -1, 1);
    for (int i = 0; i < DET_N; i++) ids[i] = (i * 7) % DET_V % 9; /* many repeats */
    int nt = duet_get_threads();
    det_out o1 = {0}, o2 = {0};
    duet_set_threads(1);
    det_run(&o1, x, x2, w, b, r, ids);
    duet_set_threads(2);
    det_run(&o2, x, x2, w, b, r, ids);
    duet_set_threads(nt);
    int differ = 0;
    for (int i = 0; i < o1.count; i++) {
        if (memcmp(o1.buf[i], o2.buf[i], sizeof(float) * (size_t)o1.n[i]) != 0) {
            fprintf(stderr, "determinism: buffer %d differs between 1 and 2 threads\n", i);
            differ++;
        }
        free(o1.buf[i]);
        free(o2.buf[i]);
    }
    T_CHECK(o1.count == o2.count && differ == 0,
            "norms, softmax, cross-entropy, mse, embedding/add_channel/bias grads: bitwise equal at "
            "1 and 2 threads (%d of %d buffers differ)",
            differ, o1.count);
    free(x);
    free(x2);
    free(w);
    free(b);
    free(r);
}

int main(void) {
    duet_init();
    /* the ops that call dispatched kernels (sgemm, row kernels), under every
     * other kernel set this CPU runs, then everything under the default */
    char isa[16];
    snprintf(isa, sizeof isa, "%s", duet_kernel_isa());
    static const char *const sets[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(sets[i], isa) == 0 || duet_kernel_force(sets[i]) != DUET_OK) continue;
        test_linear();
        test_bmm();
        test_layernorm();
        test_rmsnorm();
        test_groupnorm();
        test_softmax();
        test_cross_entropy();
    }
    duet_kernel_force(isa);
    test_linear();
    test_bmm();
    test_layernorm();
    test_rmsnorm();
    test_groupnorm();
    test_activations();
    test_swiglu();
    test_softmax();
    test_cross_entropy();
    test_mse();
    test_embedding();
    test_add_channel();
    test_determinism();
    return t_done();
}
