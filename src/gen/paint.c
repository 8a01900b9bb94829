/*
 * paint.c — sampling a UNet painter: the denoiser callback that runs the
 * conditional and unconditional passes of classifier-free guidance as one
 * batch, converts a v prediction to eps, and hands it to the sampler loop in
 * diffusion.c.
 */
#include "core/internal.h"

#include <string.h>

typedef struct {
    duet_unet *u;
    duet_graph *g;
    const duet_schedule *s;
    const int32_t *labels; /* [n] */
    int64_t n, per;        /* samples, floats per sample */
    float cfg;
    int guided;            /* run the unconditional half too */
    float *xin;            /* [2n * per] batch input */
    float *tbuf;           /* [2n] */
    int32_t *lab;          /* [2n] */
} paint_ctx;

static duet_status denoise(void *vctx, const float *xt, int t, float *eps) {
    paint_ctx *c = vctx;
    const duet_unet_config *cfg = duet_unet_get_config(c->u);
    int64_t B = c->guided ? 2 * c->n : c->n;
    memcpy(c->xin, xt, sizeof(float) * (size_t)(c->n * c->per));
    if (c->guided) memcpy(c->xin + c->n * c->per, xt, sizeof(float) * (size_t)(c->n * c->per));
    for (int64_t i = 0; i < B; i++) c->tbuf[i] = (float)t;
    duet_graph_reset(c->g);
    duet_tensor *x = duet_graph_input(c->g, c->xin, DUET_DTYPE_F32, 4,
                                      (int64_t[]){B, cfg->in_channels, cfg->image_size, cfg->image_size});
    duet_tensor *tt = duet_graph_input(c->g, c->tbuf, DUET_DTYPE_F32, 1, (int64_t[]){B});
    duet_tensor *ll = cfg->num_classes ? duet_graph_input(c->g, c->lab, DUET_DTYPE_I32, 1, (int64_t[]){B}) : NULL;
    duet_tensor *pred = duet_unet_forward(c->u, c->g, x, tt, ll, NULL);
    if (!pred) return duet_graph_status(c->g);
    const float *pc = pred->data;
    int64_t m = c->n * c->per;
    if (c->guided) duet_cfg_combine(eps, pc, pc + m, c->cfg, m);
    else memcpy(eps, pc, sizeof(float) * (size_t)m);
    if (cfg->predict_v) duet_diffusion_v_to_eps(eps, eps, xt, c->s->abar[t], m);
    return DUET_OK;
}

/* Scratch for a B-image forward: measured on a one-image forward (the
 * arena use is linear in the batch), with a margin. A graph whose first
 * block is big enough never grows, so no step re-faults a merged block. */
static size_t graph_bytes(duet_unet *u, int64_t B, int64_t per) {
    const size_t guess = (size_t)B * (size_t)per * 4 * 64;
    const duet_unet_config *uc = duet_unet_get_config(u);
    duet_graph *g = duet_graph_new((size_t)per * 4 * 256);
    float *x = duet_alloc(sizeof(float) * (size_t)per);
    size_t bytes = guess;
    if (g && x) {
        memset(x, 0, sizeof(float) * (size_t)per);
        float t = 0.0f;
        int32_t lab = uc->num_classes;
        duet_graph_set_training(g, 0);
        duet_tensor *xi = duet_graph_input(g, x, DUET_DTYPE_F32, 4,
                                           (int64_t[]){1, uc->in_channels, uc->image_size, uc->image_size});
        duet_tensor *ti = duet_graph_input(g, &t, DUET_DTYPE_F32, 1, (int64_t[]){1});
        duet_tensor *li = uc->num_classes ? duet_graph_input(g, &lab, DUET_DTYPE_I32, 1, (int64_t[]){1}) : NULL;
        if (duet_unet_forward(u, g, xi, ti, li, NULL))
            bytes = duet_graph_peak_bytes(g) * (size_t)B + ((size_t)B << 14) + ((size_t)16 << 20);
    }
    duet_free(x);
    duet_graph_free(g);
    return bytes;
}

duet_status duet_unet_sample(duet_unet *u, const int32_t *labels, int64_t n,
                             const duet_diffusion_params *p, float cfg, float *out,
                             duet_trajectory_fn traj, void *traj_ctx) {
    const duet_unet_config *uc = duet_unet_get_config(u);
    if (n < 1) return duet_set_error(DUET_ERR_ARG, "sample: n must be >= 1");
    if (!(cfg >= 0.0f && cfg <= 100.0f))
        return duet_set_error(DUET_ERR_ARG, "sample: guidance scale must be in [0, 100]");
    if (labels)
        for (int64_t i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] > uc->num_classes)
                return duet_set_error(DUET_ERR_ARG, "sample: class %d out of range [0, %d]",
                                      labels[i], uc->num_classes);
    duet_schedule *s = duet_alloc(sizeof *s);
    if (!s) return DUET_ERR_NOMEM;
    duet_status st = duet_schedule_init(s, uc->schedule, uc->T);
    paint_ctx c = {0};
    c.u = u, c.s = s, c.labels = labels, c.n = n, c.cfg = cfg;
    c.per = (int64_t)uc->in_channels * uc->image_size * uc->image_size;
    c.guided = uc->num_classes > 0 && labels && cfg != 1.0f;
    int64_t B = c.guided ? 2 * n : n;
    c.xin = duet_alloc(sizeof(float) * (size_t)(B * c.per));
    c.tbuf = duet_alloc(sizeof(float) * (size_t)B);
    c.lab = duet_alloc(sizeof(int32_t) * (size_t)B);
    float *scratch = duet_alloc(sizeof(float) * (size_t)duet_diffusion_scratch_floats(n * c.per));
    c.g = duet_graph_new(graph_bytes(u, B, c.per));
    if (!c.xin || !c.tbuf || !c.lab || !scratch || !c.g) st = DUET_ERR_NOMEM;
    if (st == DUET_OK) {
        duet_graph_set_training(c.g, 0);
        for (int64_t i = 0; i < n; i++) {
            c.lab[i] = labels ? labels[i] : uc->num_classes;
            if (c.guided) c.lab[n + i] = uc->num_classes;
        }
        st = duet_diffusion_sample(s, p, out, n * c.per, scratch, denoise, &c, traj, traj_ctx);
    }
    duet_graph_free(c.g);
    duet_free(scratch);
    duet_free(c.lab);
    duet_free(c.tbuf);
    duet_free(c.xin);
    duet_free(s);
    return st;
}
