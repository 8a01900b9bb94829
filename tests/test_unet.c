/*
 * test_unet.c — the painter's UNet against an independent PyTorch model
 * (tests/ref/gen_unet.py): prediction, MSE loss and every parameter gradient
 * from the same weights and inputs; finite differences on sampled weights;
 * checkpoint round trip; bad configs and wrong checkpoints refused.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static duet_unet_config tiny(void) {
    duet_unet_config c;
    duet_unet_config_default(&c);
    c.in_channels = 1, c.image_size = 8, c.channels = 8, c.nlevels = 2;
    c.mults[0] = 1, c.mults[1] = 2;
    c.res_blocks = 1, c.attn_levels = 1u << 1, c.heads = 2, c.groups = 4, c.num_classes = 3;
    c.dropout = 0.0f;
    return c;
}

typedef struct {
    duet_unet *u;
    duet_graph *g;
    float *xt, *t, *noise;
    int32_t *labels;
} ctx_t;

static duet_tensor *run(ctx_t *c, int training) {
    duet_graph_reset(c->g);
    duet_graph_set_training(c->g, training);
    duet_tensor *x = duet_graph_input(c->g, c->xt, DUET_DTYPE_F32, 4, (int64_t[]){3, 1, 8, 8});
    duet_tensor *t = duet_graph_input(c->g, c->t, DUET_DTYPE_F32, 1, (int64_t[]){3});
    duet_tensor *l = duet_graph_input(c->g, c->labels, DUET_DTYPE_I32, 1, (int64_t[]){3});
    duet_tensor *y = duet_graph_input(c->g, c->noise, DUET_DTYPE_F32, 4, (int64_t[]){3, 1, 8, 8});
    duet_tensor *pred = duet_unet_forward(c->u, c->g, x, t, l, NULL);
    return training ? duet_nn_mse(c->g, pred, y) : pred;
}

static double loss_of(void *p) {
    ctx_t *c = p;
    duet_tensor *l = run(c, 0);
    /* inference graph: compute the same MSE in double */
    double s = 0;
    const float *pr = l->data;
    for (int i = 0; i < 3 * 64; i++) s += ((double)pr[i] - (double)c->noise[i]) * ((double)pr[i] - (double)c->noise[i]);
    return s / (3 * 64);
}

int main(void) {
    duet_init();
    t_fix *f = t_fix_load("unet.bin");
    if (!f) return t_done();
    duet_unet_config cfg = tiny();
    duet_unet *u = duet_unet_new(&cfg, 1);
    T_CHECK(u != NULL, "unet_new: %s", duet_last_error());
    if (!u) return t_done();
    int np = duet_unet_nparams(u);
    T_CHECK(np == (int)t_fix_scalar(f, "nparams"), "parameter count %d equals PyTorch's %d", np, (int)t_fix_scalar(f, "nparams"));
    duet_tensor **P = duet_unet_params(u);
    int loaded = 0;
    for (int i = 0; i < np; i++) {
        char key[96];
        snprintf(key, sizeof key, "w:%s", P[i]->name);
        int64_t n;
        float *w = t_fix_has(f, key) ? t_fix_f32(f, key, &n) : NULL;
        if (w && n == duet_tensor_numel(P[i])) {
            memcpy(P[i]->data, w, sizeof(float) * (size_t)n);
            loaded++;
        } else {
            T_CHECK(0, "parameter %s missing or wrong size in the PyTorch model", P[i]->name);
        }
    }
    T_CHECK(loaded == np, "all %d parameters matched by name and size", loaded);

    ctx_t c = {u, duet_graph_new(1 << 20), t_fix_f32(f, "xt", NULL), t_fix_f32(f, "t", NULL),
               t_fix_f32(f, "noise", NULL), t_fix_i32(f, "labels", NULL)};
    duet_params_zero_grad(P, np);
    duet_tensor *loss = run(&c, 1);
    T_CHECK(loss != NULL, "forward: %s", duet_last_error());
    if (!loss) return t_done();
    /* the prediction is the first input of the mse record */
    const duet_record *recs = duet_graph_records(c.g);
    const duet_record *last = &recs[duet_graph_nrecords(c.g) - 1];
    t_close("unet prediction", last->in[0]->data, t_fix_f32(f, "pred", NULL), 3 * 64, 1e-4, 1e-5);
    double want_loss = t_fix_scalar(f, "loss");
    float got = ((float *)loss->data)[0];
    T_CHECK(fabs((double)got - want_loss) <= 1e-5 * fabs(want_loss), "mse loss %.8f vs torch %.8f", (double)got, want_loss);
    T_CHECK(duet_graph_backward(c.g, loss) == DUET_OK, "backward: %s", duet_last_error());
    int gbad = 0;
    for (int i = 0; i < np; i++) {
        char key[96];
        snprintf(key, sizeof key, "g:%s", P[i]->name);
        float *want = t_fix_f32(f, key, NULL);
        if (!want) continue;
        /* long reductions (conv weight grads over N*H*W, GroupNorm) in fp32:
         * relative 1e-3 on the worst element, absolute floor 1e-6 */
        if (!t_close(P[i]->name, P[i]->grad, want, duet_tensor_numel(P[i]), 1e-3, 2e-6)) gbad++;
    }
    T_CHECK(gbad == 0, "every parameter gradient matches PyTorch (%d off)", gbad);

    /* inference forward (tape off) gives the same prediction */
    duet_tensor *pred = run(&c, 0);
    t_close("inference forward equals training forward", pred->data, t_fix_f32(f, "pred", NULL), 3 * 64, 1e-4, 1e-5);

    /* finite differences on a few weights of different kinds */
    const char *fd_names[] = {"conv_in.weight", "class_emb.weight", "mid.attn.q.weight",
                              "up.1.res.0.skip.weight", "down.0.res.0.gn1.weight", "time.lin1.bias",
                              "out.conv.bias", "up.1.upsample.weight"};
    duet_params_zero_grad(P, np);
    loss = run(&c, 1);
    duet_graph_backward(c.g, loss);
    for (int k = 0; k < 8; k++) {
        duet_tensor *p = duet_unet_param(u, fd_names[k]);
        T_CHECK(p != NULL, "param %s exists", fd_names[k]);
        if (!p) continue;
        float *an = malloc(sizeof(float) * (size_t)duet_tensor_numel(p));
        memcpy(an, p->grad, sizeof(float) * (size_t)duet_tensor_numel(p));
        t_gradcheck(fd_names[k], loss_of, &c, p->data, duet_tensor_numel(p), an, 1e-2f, 2e-2, 2e-5, 24);
        free(an);
    }

    /* checkpoint round trip */
    char path[] = "/tmp/duet_unet_testXXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    const char *names[] = {"alpha", "beta", "gamma"};
    T_CHECK(duet_unet_save(u, path, names, 0, NULL) == DUET_OK, "save: %s", duet_last_error());
    duet_unet *u2 = duet_unet_load(path);
    T_CHECK(u2 != NULL, "load: %s", duet_last_error());
    if (u2) {
        ctx_t c2 = c;
        c2.u = u2;
        duet_tensor *p2 = run(&c2, 0);
        t_close("reloaded model predicts the same", p2->data, t_fix_f32(f, "pred", NULL), 3 * 64, 1e-4, 1e-5);
        duet_unet_free(u2);
    }
    /* a file of another kind is refused */
    duet_st_writer *w = duet_st_writer_new();
    float z[4] = {0};
    duet_st_writer_meta(w, "duet.kind", "storyteller");
    duet_st_writer_add(w, "x", DUET_DTYPE_F32, 1, (int64_t[]){4}, z);
    duet_st_writer_write(w, path);
    duet_st_writer_free(w);
    T_CHECK(duet_unet_load(path) == NULL && strstr(duet_last_error(), "not a duet painter"), "other kind refused: %s", duet_last_error());
    unlink(path);

    /* bad configs */
    duet_unet_config bad = tiny();
    bad.groups = 3;
    T_CHECK(duet_unet_new(&bad, 1) == NULL && strstr(duet_last_error(), "groups"), "channels %% groups: %s", duet_last_error());
    bad = tiny();
    bad.image_size = 7;
    T_CHECK(duet_unet_new(&bad, 1) == NULL, "odd size with 2 levels refused: %s", duet_last_error());
    /* wrong input shape */
    duet_graph_reset(c.g);
    duet_tensor *x5 = duet_graph_input(c.g, c.xt, DUET_DTYPE_F32, 4, (int64_t[]){3, 1, 4, 16});
    duet_tensor *t3 = duet_graph_input(c.g, c.t, DUET_DTYPE_F32, 1, (int64_t[]){3});
    T_CHECK(duet_unet_forward(u, c.g, x5, t3, NULL, NULL) == NULL && duet_graph_status(c.g) == DUET_ERR_SHAPE, "wrong image shape refused: %s", duet_last_error());

    /* default config builds; report its size */
    duet_unet_config d;
    duet_unet_config_default(&d);
    duet_unet *ud = duet_unet_new(&d, 7);
    T_CHECK(ud != NULL, "default painter config builds (%lld parameters)", ud ? (long long)duet_unet_numel(ud) : 0LL);
    duet_unet_free(ud);

    duet_graph_free(c.g);
    duet_unet_free(u);
    t_fix_free(f);
    return t_done();
}
