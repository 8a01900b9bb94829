/*
 * test_ops_fused.c — the painter's fused ops (src/nn/unet_fused.c) against
 * PyTorch fixtures (tests/ref/gen_ops_fused.py): silu(group_norm(x)) raw and
 * as a tape op, forward and every gradient, under every kernel set, the +=
 * rule, finite differences, and bitwise the same result on one and two
 * threads; with dropout, against dropout(silu(groupnorm)) with the same
 * rng; conv2d + per-image channel bias as a tape op (stride 1 and 2,
 * with and without bias). Also: both fused ops give what the unfused
 * composition of public ops gives.
 */
#include "testutil.h"
#include "nn/unet_fused.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *fnew(int64_t n, float v) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = v;
    return p;
}

static duet_tensor *param_of(const float *data, int ndim, const int64_t *shape) {
    duet_tensor *t = duet_param_new(DUET_DTYPE_F32, ndim, shape, 1);
    memcpy(t->data, data, sizeof(float) * (size_t)duet_tensor_numel(t));
    return t;
}

static float *fdup_or_null(const float *src, int64_t n) {
    if (!src) return NULL;
    float *p = fnew(n, 0);
    memcpy(p, src, sizeof(float) * (size_t)n);
    return p;
}

/* loss = sum(x * r) as a tape record whose backward adds r to x's grad. */
static void dotloss_backward(duet_graph *g, const duet_record *rec) {
    (void)g;
    float *gx = rec->in[0]->grad;
    const float *r = rec->saved[0];
    const float s = rec->out->grad[0];
    if (!gx) return;
    for (int64_t i = 0; i < duet_tensor_numel(rec->in[0]); i++) gx[i] += s * r[i];
}

static duet_tensor *dotloss(duet_graph *g, duet_tensor *x, const float *r) {
    if (!x) return NULL;
    duet_tensor *out = duet_graph_tensor(g, DUET_DTYPE_F32, 1, (int64_t[]){1});
    if (!out) return NULL;
    ((float *)out->data)[0] = (float)t_dot_d(x->data, r, duet_tensor_numel(x));
    duet_record *rec = duet_graph_record(g, DUET_OP_NONE, dotloss_backward, out, x, NULL, NULL, NULL);
    if (rec) rec->saved[0] = (void *)r;
    return out;
}

static const char *const ISAS[] = {"scalar", "avx2", "avx512"};

/* ==== groupnorm + silu ==== */

typedef struct {
    int64_t N, C, HW, G;
    float *x, *w, *b, *r, *out, *mean, *rstd;
} gs_ctx;

static double gs_loss(void *p) {
    gs_ctx *c = p;
    duet_groupnorm_silu_forward(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C, c->HW,
                                c->G, 1e-5f, 0.0f, 0, 0);
    return t_dot_d(c->out, c->r, c->N * c->C * c->HW);
}

static void test_gn_silu(const char *name) {
    char file[96], what[192];
    snprintf(file, sizeof file, "ops_fused_gnsilu_%s.bin", name);
    t_fix *f = t_fix_load(file);
    if (!f) return;
    int32_t *d = t_fix_i32(f, "dims", NULL);
    const int64_t N = d[0], C = d[1], HW = (int64_t)d[2] * d[3], G = d[4];
    const int affine = d[5];
    const int64_t n = N * C * HW;
    float *x = t_fix_f32(f, "x", NULL), *r = t_fix_f32(f, "r", NULL);
    float *out_ref = t_fix_f32(f, "out", NULL), *dx_ref = t_fix_f32(f, "dx", NULL);
    float *w = affine ? t_fix_f32(f, "w", NULL) : NULL, *b = affine ? t_fix_f32(f, "b", NULL) : NULL;
    float *dw_ref = affine ? t_fix_f32(f, "dw", NULL) : NULL, *db_ref = affine ? t_fix_f32(f, "db", NULL) : NULL;
    char def[16];
    snprintf(def, sizeof def, "%s", duet_kernel_isa());
    for (int ii = 0; ii < 3; ii++) {
        if (duet_kernel_force(ISAS[ii]) != DUET_OK) continue;
        float *out = fnew(n, NAN), *mean = fnew(N * G, 0), *rstd = fnew(N * G, 0);
        float *dx = fnew(n, 0), *dw = fnew(C, 0), *db = fnew(C, 0);
        duet_groupnorm_silu_forward(out, mean, rstd, x, w, b, N, C, HW, G, 1e-5f, 0.0f, 0, 0);
        /* normalization over C/G*HW values in float32 vs float64 */
        snprintf(what, sizeof what, "%s [%s] out", file, ISAS[ii]);
        t_close(what, out, out_ref, n, 1e-5, 2e-5);
        duet_groupnorm_silu_backward(dx, affine ? dw : NULL, affine ? db : NULL, r, x, w, b, mean,
                                     rstd, N, C, HW, G, 0.0f, 0, 0);
        snprintf(what, sizeof what, "%s [%s] dx", file, ISAS[ii]);
        t_close(what, dx, dx_ref, n, 1e-4, 5e-5); /* rstd^-1 scaled difference of sums */
        if (affine) {
            snprintf(what, sizeof what, "%s [%s] dw", file, ISAS[ii]);
            t_close(what, dw, dw_ref, C, 1e-5, 5e-5);
            snprintf(what, sizeof what, "%s [%s] db", file, ISAS[ii]);
            t_close(what, db, db_ref, C, 1e-5, 5e-5);
        }
        /* += rule, gradients one at a time */
        duet_groupnorm_silu_backward(dx, NULL, NULL, r, x, w, b, mean, rstd, N, C, HW, G, 0.0f, 0, 0);
        if (affine) {
            duet_groupnorm_silu_backward(NULL, dw, NULL, r, x, w, b, mean, rstd, N, C, HW, G, 0.0f, 0, 0);
            duet_groupnorm_silu_backward(NULL, NULL, db, r, x, w, b, mean, rstd, N, C, HW, G, 0.0f, 0, 0);
        }
        float *two = fnew(n, 0);
        for (int64_t i = 0; i < n; i++) two[i] = 2.0f * dx_ref[i];
        snprintf(what, sizeof what, "%s [%s] dx accumulates", file, ISAS[ii]);
        t_close(what, dx, two, n, 1e-4, 1e-4);
        if (affine) {
            for (int64_t i = 0; i < C; i++) two[i] = 2.0f * dw_ref[i];
            snprintf(what, sizeof what, "%s [%s] dw accumulates", file, ISAS[ii]);
            t_close(what, dw, two, C, 1e-5, 1e-4);
            for (int64_t i = 0; i < C; i++) two[i] = 2.0f * db_ref[i];
            snprintf(what, sizeof what, "%s [%s] db accumulates", file, ISAS[ii]);
            t_close(what, db, two, C, 1e-5, 1e-4);
        }
        free(out), free(mean), free(rstd), free(dx), free(dw), free(db), free(two);
    }
    duet_kernel_force(def);

    /* finite differences of the raw pair */
    {
        gs_ctx c = {N, C, HW, G, fdup_or_null(x, n), NULL, NULL, r, fnew(n, 0), fnew(N * G, 0), fnew(N * G, 0)};
        if (affine) c.w = fdup_or_null(w, C), c.b = fdup_or_null(b, C);
        float *dx = fnew(n, 0), *dw = fnew(C, 0), *db = fnew(C, 0);
        gs_loss(&c);
        duet_groupnorm_silu_backward(dx, dw, db, r, x, w, b, c.mean, c.rstd, N, C, HW, G, 0.0f, 0, 0);
        snprintf(what, sizeof what, "%s dx (finite differences)", file);
        t_gradcheck(what, gs_loss, &c, c.x, n, dx, 1e-2f, 2e-3, 5e-4, 300);
        if (affine) {
            snprintf(what, sizeof what, "%s dw (finite differences)", file);
            t_gradcheck(what, gs_loss, &c, c.w, C, dw, 1e-2f, 2e-3, 5e-4, 0);
            snprintf(what, sizeof what, "%s db (finite differences)", file);
            t_gradcheck(what, gs_loss, &c, c.b, C, db, 1e-2f, 2e-3, 5e-4, 0);
        }
        free(c.x), free(c.w), free(c.b), free(c.out), free(c.mean), free(c.rstd);
        free(dx), free(dw), free(db);
    }

    /* tape op, and the unfused composition of public ops */
    for (int fused = 0; fused < 2; fused++) {
        duet_graph *g = duet_graph_new(1 << 20);
        int64_t xs[4] = {N, C, d[2], d[3]};
        duet_tensor *px = param_of(x, 4, xs);
        duet_tensor *pw = affine ? param_of(w, 1, (int64_t[]){C}) : NULL;
        duet_tensor *pb = affine ? param_of(b, 1, (int64_t[]){C}) : NULL;
        duet_tensor *o = fused ? duet_nn_groupnorm_silu(g, px, pw, pb, G, 1e-5f)
                               : duet_nn_silu(g, duet_nn_groupnorm(g, px, pw, pb, G, 1e-5f));
        duet_tensor *loss = dotloss(g, o, r);
        T_CHECK(loss != NULL, "%s tape forward: %s", file, duet_last_error());
        if (loss) {
            T_CHECK(duet_graph_backward(g, loss) == DUET_OK, "%s tape backward", file);
            snprintf(what, sizeof what, "%s tape (%s) out", file, fused ? "fused" : "unfused");
            t_close(what, o->data, out_ref, n, 1e-5, 2e-5);
            snprintf(what, sizeof what, "%s tape (%s) dx", file, fused ? "fused" : "unfused");
            t_close(what, px->grad, dx_ref, n, 1e-4, 5e-5);
            if (affine) {
                snprintf(what, sizeof what, "%s tape (%s) dw", file, fused ? "fused" : "unfused");
                t_close(what, pw->grad, dw_ref, C, 1e-5, 5e-5);
                snprintf(what, sizeof what, "%s tape (%s) db", file, fused ? "fused" : "unfused");
                t_close(what, pb->grad, db_ref, C, 1e-5, 5e-5);
            }
        }
        duet_param_free(px), duet_param_free(pw), duet_param_free(pb);
        duet_graph_free(g);
    }
    t_fix_free(f);
}

/* Bitwise the same on one and two threads, at a size that runs threaded. */
static void test_gn_silu_threads(void) {
    const int64_t N = 4, C = 64, HW = 32 * 32, G = 8, n = N * C * HW;
    float *x = fnew(n, 0), *r = fnew(n, 0), *w = fnew(C, 0), *b = fnew(C, 0);
    t_fill_uniform(x, n, 41, -2, 3), t_fill_uniform(r, n, 42, -1, 1);
    t_fill_uniform(w, C, 43, 0.5f, 1.5f), t_fill_uniform(b, C, 44, -0.5f, 0.5f);
    float *res[2][4];
    const int nt0 = duet_get_threads();
    for (int k = 0; k < 2; k++) {
        duet_set_threads(k + 1);
        float *out = fnew(n, 0), *mean = fnew(N * G, 0), *rstd = fnew(N * G, 0);
        float *dx = fnew(n, 0), *dw = fnew(C, 0), *db = fnew(C, 0);
        duet_groupnorm_silu_forward(out, mean, rstd, x, w, b, N, C, HW, G, 1e-5f, 0.0f, 0, 0);
        duet_groupnorm_silu_backward(dx, dw, db, r, x, w, b, mean, rstd, N, C, HW, G, 0.0f, 0, 0);
        res[k][0] = out, res[k][1] = dx, res[k][2] = dw, res[k][3] = db;
        free(mean), free(rstd);
    }
    duet_set_threads(nt0);
    T_CHECK(memcmp(res[0][0], res[1][0], sizeof(float) * (size_t)n) == 0 &&
                memcmp(res[0][1], res[1][1], sizeof(float) * (size_t)n) == 0 &&
                memcmp(res[0][2], res[1][2], sizeof(float) * (size_t)C) == 0 &&
                memcmp(res[0][3], res[1][3], sizeof(float) * (size_t)C) == 0,
            "groupnorm_silu: bitwise the same on 1 and 2 threads");
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) free(res[k][j]);
    free(x), free(r), free(w), free(b);
}

/* dropout(silu(gn(x))) fused (mask regenerated, never stored) against the
 * composition of the public ops with the same rng: the same forward bit for
 * bit, the same gradients up to the rounding of the recomputed norm; under
 * every kernel set, with a Philox counter range that crosses 2^32 (the low
 * word wraps inside a 16-lane block). Off the training tape it is the
 * identity dropout. */
static void test_gn_silu_dropout(void) {
    const int64_t N = 3, C = 16, H = 9, W = 7, G = 4, n = N * C * H * W;
    float *x = fnew(n, 0), *r = fnew(n, 0), *w = fnew(C, 0), *b = fnew(C, 0);
    t_fill_uniform(x, n, 51, -2, 3), t_fill_uniform(r, n, 52, -1, 1);
    t_fill_uniform(w, C, 53, 0.5f, 1.5f), t_fill_uniform(b, C, 54, -0.5f, 0.5f);
    const int64_t xs[4] = {N, C, H, W};
    char def[16], what[160];
    snprintf(def, sizeof def, "%s", duet_kernel_isa());
    for (int ii = 0; ii < 3; ii++) {
        if (duet_kernel_force(ISAS[ii]) != DUET_OK) continue;
        float *res[2][4] = {{0}};
        int dropped = 0;
        for (int fused = 0; fused < 2; fused++) {
            duet_graph *g = duet_graph_new(1 << 20);
            duet_rng rng = {77, 0xFFFFFFFFull - 1000}; /* the low word wraps at element 1001 */
            duet_tensor *px = param_of(x, 4, xs), *pw = param_of(w, 1, (int64_t[]){C});
            duet_tensor *pb = param_of(b, 1, (int64_t[]){C});
            duet_tensor *o = fused ? duet_nn_groupnorm_silu_dropout(g, px, pw, pb, G, 1e-5f, 0.3f, &rng)
                                   : duet_nn_dropout(g, duet_nn_silu(g, duet_nn_groupnorm(g, px, pw, pb, G, 1e-5f)), 0.3f, &rng);
            duet_tensor *loss = dotloss(g, o, r);
            T_CHECK(loss && duet_graph_backward(g, loss) == DUET_OK, "gn_silu_dropout tape: %s", duet_last_error());
            T_CHECK(rng.offset == 0xFFFFFFFFull - 1000 + (uint64_t)n, "gn_silu_dropout advances the rng by %lld", (long long)n);
            if (loss) {
                res[fused][0] = fnew(n, 0), res[fused][1] = fnew(n, 0);
                res[fused][2] = fnew(C, 0), res[fused][3] = fnew(C, 0);
                memcpy(res[fused][0], o->data, sizeof(float) * (size_t)n);
                memcpy(res[fused][1], px->grad, sizeof(float) * (size_t)n);
                memcpy(res[fused][2], pw->grad, sizeof(float) * (size_t)C);
                memcpy(res[fused][3], pb->grad, sizeof(float) * (size_t)C);
                if (fused)
                    for (int64_t i = 0; i < n; i++) dropped += ((float *)o->data)[i] == 0.0f;
            }
            duet_param_free(px), duet_param_free(pw), duet_param_free(pb);
            duet_graph_free(g);
        }
        if (res[0][0] && res[1][0]) {
            int same_mask = 1;
            for (int64_t i = 0; i < n; i++) same_mask &= (res[0][0][i] == 0.0f) == (res[1][0][i] == 0.0f);
            T_CHECK(same_mask, "gn_silu_dropout [%s]: the same elements dropped as by duet_nn_dropout", ISAS[ii]);
            /* the SiLU kernels' vector body and scalar tail round differently,
             * and a group's tail is not the whole tensor's tail */
            snprintf(what, sizeof what, "gn_silu_dropout [%s] out vs composition", ISAS[ii]);
            t_close(what, res[1][0], res[0][0], n, 1e-6, 1e-7);
            T_CHECK(dropped > n / 5 && dropped < 2 * n / 5, "gn_silu_dropout [%s]: ~30%% dropped (%d of %lld)",
                    ISAS[ii], dropped, (long long)n);
            snprintf(what, sizeof what, "gn_silu_dropout [%s] dx vs composition", ISAS[ii]);
            t_close(what, res[1][1], res[0][1], n, 1e-4, 1e-5);
            snprintf(what, sizeof what, "gn_silu_dropout [%s] dw vs composition", ISAS[ii]);
            t_close(what, res[1][2], res[0][2], C, 1e-5, 1e-5);
            snprintf(what, sizeof what, "gn_silu_dropout [%s] db vs composition", ISAS[ii]);
            t_close(what, res[1][3], res[0][3], C, 1e-5, 1e-5);
        }
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < 4; j++) free(res[k][j]);
    }
    duet_kernel_force(def);
    /* inference graph: no dropout, no rng needed */
    duet_graph *g = duet_graph_new(1 << 20);
    duet_graph_set_training(g, 0);
    duet_tensor *px = param_of(x, 4, xs);
    duet_tensor *a = duet_nn_groupnorm_silu_dropout(g, px, NULL, NULL, G, 1e-5f, 0.3f, NULL);
    duet_tensor *bref = duet_nn_groupnorm_silu(g, px, NULL, NULL, G, 1e-5f);
    T_CHECK(a && bref && memcmp(a->data, bref->data, sizeof(float) * (size_t)n) == 0,
            "gn_silu_dropout: the identity dropout off the training tape");
    duet_graph_set_training(g, 1);
    T_CHECK(duet_nn_groupnorm_silu_dropout(g, px, NULL, NULL, G, 1e-5f, 0.3f, NULL) == NULL &&
                duet_graph_status(g) == DUET_ERR_ARG,
            "gn_silu_dropout: training without an rng is refused");
    duet_param_free(px);
    duet_graph_free(g);
    free(x), free(r), free(w), free(b);
}

/* ==== conv2d + channel bias ==== */

static void test_conv_cb(const char *name) {
    char file[96], what[192];
    snprintf(file, sizeof file, "ops_fused_convcb_%s.bin", name);
    t_fix *f = t_fix_load(file);
    if (!f) return;
    int32_t *d = t_fix_i32(f, "dims", NULL);
    const int64_t N = d[0], C = d[1], H = d[2], W = d[3], OC = d[4], K = d[5], st = d[6], pad = d[7];
    const int has_bias = d[8];
    const int64_t OH = (H + 2 * pad - K) / st + 1, OW = (W + 2 * pad - K) / st + 1;
    const int64_t nx = N * C * H * W, nw = OC * C * K * K, no = N * OC * OH * OW;
    float *x = t_fix_f32(f, "x", NULL), *w = t_fix_f32(f, "w", NULL), *cb = t_fix_f32(f, "cb", NULL);
    float *r = t_fix_f32(f, "r", NULL), *out_ref = t_fix_f32(f, "out", NULL);
    float *dx_ref = t_fix_f32(f, "dx", NULL), *dw_ref = t_fix_f32(f, "dw", NULL);
    float *dcb_ref = t_fix_f32(f, "dcb", NULL);
    float *b = has_bias ? t_fix_f32(f, "b", NULL) : NULL, *db_ref = has_bias ? t_fix_f32(f, "db", NULL) : NULL;
    char def[16];
    snprintf(def, sizeof def, "%s", duet_kernel_isa());
    for (int ii = 0; ii < 3; ii++) {
        if (duet_kernel_force(ISAS[ii]) != DUET_OK) continue;
        for (int fused = 0; fused < 2; fused++) {
            duet_graph *g = duet_graph_new(1 << 20);
            duet_tensor *px = param_of(x, 4, (int64_t[]){N, C, H, W});
            duet_tensor *pw = param_of(w, 4, (int64_t[]){OC, C, K, K});
            duet_tensor *pb = has_bias ? param_of(b, 1, (int64_t[]){OC}) : NULL;
            duet_tensor *pcb = param_of(cb, 2, (int64_t[]){N, OC});
            duet_tensor *o = fused ? duet_nn_conv2d_chanbias(g, px, pw, pb, pcb, st, pad)
                                   : duet_nn_add_channel(g, duet_nn_conv2d(g, px, pw, pb, st, pad), pcb);
            duet_tensor *loss = dotloss(g, o, r);
            T_CHECK(loss && duet_graph_backward(g, loss) == DUET_OK, "%s tape: %s", file, duet_last_error());
            if (loss) {
                const char *tag = fused ? "fused" : "unfused";
                snprintf(what, sizeof what, "%s [%s, %s] out", file, ISAS[ii], tag);
                t_close(what, o->data, out_ref, no, 1e-5, 1e-5);
                snprintf(what, sizeof what, "%s [%s, %s] dx", file, ISAS[ii], tag);
                t_close(what, px->grad, dx_ref, nx, 1e-5, 1e-5);
                snprintf(what, sizeof what, "%s [%s, %s] dw", file, ISAS[ii], tag);
                t_close(what, pw->grad, dw_ref, nw, 1e-5, 1e-5);
                snprintf(what, sizeof what, "%s [%s, %s] dcb", file, ISAS[ii], tag);
                t_close(what, pcb->grad, dcb_ref, N * OC, 1e-5, 1e-5);
                if (has_bias) {
                    snprintf(what, sizeof what, "%s [%s, %s] db", file, ISAS[ii], tag);
                    t_close(what, pb->grad, db_ref, OC, 1e-5, 1e-5);
                }
            }
            duet_param_free(px), duet_param_free(pw), duet_param_free(pb), duet_param_free(pcb);
            duet_graph_free(g);
        }
    }
    duet_kernel_force(def);
    /* shape errors */
    duet_graph *g = duet_graph_new(1 << 16);
    duet_tensor *px = param_of(x, 4, (int64_t[]){N, C, H, W});
    duet_tensor *pw = param_of(w, 4, (int64_t[]){OC, C, K, K});
    duet_tensor *bad = param_of(cb, 2, (int64_t[]){OC, N});
    T_CHECK(N == OC || (duet_nn_conv2d_chanbias(g, px, pw, NULL, bad, st, pad) == NULL &&
                        duet_graph_status(g) == DUET_ERR_SHAPE),
            "%s: a [OC, N] channel bias is refused", file);
    duet_param_free(px), duet_param_free(pw), duet_param_free(bad);
    duet_graph_free(g);
    t_fix_free(f);
}

int main(void) {
    duet_init();
    test_gn_silu("affine");
    test_gn_silu("plain");
    test_gn_silu("wide");
    test_gn_silu_threads();
    test_gn_silu_dropout();
    test_conv_cb("k3s1p1");
    test_conv_cb("k3s2p1");
    test_conv_cb("k1nobias");
    return t_done();
}
