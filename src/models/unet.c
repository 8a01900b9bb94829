/*
 * unet.c — the painter's denoiser: a DDPM-style UNet composed from tape ops,
 * so one forward serves training (tape on) and sampling (tape off).
 *
 * Layout of the network (C = channels, m_i = mults[i], E = 4C):
 *   temb  = lin2(silu(lin1(sinusoid(t, C)))) + class_emb[label]      [N, E]
 *   h     = conv_in(x)                                               [N, C, H, W]
 *   down  : per level i: res_blocks x (ResBlock -> C*m_i, Attn if level i
 *           has attention), then a stride-2 conv3x3 except at the last level;
 *           every output is pushed on the skip stack
 *   mid   : ResBlock, Attn, ResBlock
 *   up    : per level i (reversed): res_blocks+1 x (concat skip, ResBlock,
 *           Attn), then nearest x2 + conv3x3 except at level 0
 *   out   = conv_out(silu(groupnorm(h)))
 * ResBlock(x): h = conv1(silu(gn1(x))) + temb_proj(silu(temb))[:, :, None, None]
 *              h = conv2(dropout(silu(gn2(h)))); return skip(x) + h
 * Attn(x): tokens = gn(x) as [N, HW, C]; softmax(q k^T / sqrt(hs)) v per head;
 *          x + o(...) back in [N, C, H, W].
 *
 * The ResBlock runs as fused ops (src/nn/unet_fused.c): silu(gn1(x)),
 * conv1 with the timestep projection added as a per-image channel bias, and
 * dropout(silu(gn2(h))) with the dropout mask regenerated in the backward
 * instead of stored — the same function, fewer passes and tensors.
 *
 * Parameters live in one block (data) and one block (grads), named views
 * point into them (llm.c's fill_in_parameter_sizes idea, built in two passes).
 *
 * What it is not: a sampler or a trainer (src/gen/diffusion.c, src/cli).
 */
#include "nn/nn.h"
#include "nn/unet_fused.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int cin, cout;
    duet_tensor *gn1_w, *gn1_b, *conv1_w, *conv1_b, *temb_w, *temb_b;
    duet_tensor *gn2_w, *gn2_b, *conv2_w, *conv2_b, *skip_w, *skip_b; /* skip NULL if cin==cout */
} resblock;

typedef struct {
    int c;
    duet_tensor *gn_w, *gn_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
} attnblock;

#define MAX_RES 8

typedef struct {
    resblock res[MAX_RES + 1];
    attnblock attn[MAX_RES + 1];
    int has_attn;
    duet_tensor *resample_w, *resample_b; /* down: stride-2 conv; up: conv after upsample */
} level;

struct duet_unet {
    duet_unet_config cfg;
    duet_tensor *time_lin1_w, *time_lin1_b, *time_lin2_w, *time_lin2_b, *class_emb;
    duet_tensor *conv_in_w, *conv_in_b;
    level down[DUET_UNET_MAX_LEVELS], up[DUET_UNET_MAX_LEVELS];
    resblock mid1, mid2;
    attnblock mid_attn;
    duet_tensor *out_gn_w, *out_gn_b, *out_conv_w, *out_conv_b;

    /* parameter storage: built in two passes (count, then point) */
    int pass, nparams;
    int64_t numel;
    duet_tensor *tensors;   /* [nparams] */
    duet_tensor **ptrs;     /* [nparams] */
    float *data, *grad;
};

/* ==== config ==== */

void duet_unet_config_default(duet_unet_config *c) {
    memset(c, 0, sizeof *c);
    c->in_channels = 1;
    c->image_size = 28;
    c->channels = 32;
    c->nlevels = 3;
    c->mults[0] = 1, c->mults[1] = 2, c->mults[2] = 2;
    c->res_blocks = 2;
    c->attn_levels = 1u << 2;
    c->heads = 4;
    c->groups = 8;
    c->num_classes = 10;
    c->dropout = 0.1f;
    c->predict_v = 0;
    c->schedule = DUET_SCHEDULE_COSINE;
    c->T = 1000;
}

duet_status duet_unet_config_check(const duet_unet_config *c) {
    if (c->in_channels < 1 || c->in_channels > 4)
        return duet_set_error(DUET_ERR_ARG, "unet: in_channels must be 1..4, got %d", c->in_channels);
    if (c->nlevels < 1 || c->nlevels > DUET_UNET_MAX_LEVELS)
        return duet_set_error(DUET_ERR_ARG, "unet: 1..%d levels (mults), got %d",
                              DUET_UNET_MAX_LEVELS, c->nlevels);
    if (c->res_blocks < 1 || c->res_blocks > MAX_RES)
        return duet_set_error(DUET_ERR_ARG, "unet: res_blocks must be 1..%d, got %d", MAX_RES,
                              c->res_blocks);
    if (c->channels < 1 || c->groups < 1 || c->channels % c->groups)
        return duet_set_error(DUET_ERR_ARG, "unet: channels %d must be a positive multiple of groups %d",
                              c->channels, c->groups);
    for (int i = 0; i < c->nlevels; i++)
        if (c->mults[i] < 1 || c->mults[i] > 64)
            return duet_set_error(DUET_ERR_ARG, "unet: mult %d out of range", c->mults[i]);
    if (c->heads < 1 || c->channels % c->heads)
        return duet_set_error(DUET_ERR_ARG, "unet: channels %d must be a multiple of heads %d",
                              c->channels, c->heads);
    int s = c->image_size;
    for (int i = 0; i + 1 < c->nlevels; i++) {
        if (s % 2)
            return duet_set_error(DUET_ERR_ARG,
                                  "unet: image size %d cannot be halved %d times (odd at level %d)",
                                  c->image_size, c->nlevels - 1, i);
        s /= 2;
    }
    if (s < 1 || c->image_size > 1024)
        return duet_set_error(DUET_ERR_ARG, "unet: image size %d out of range", c->image_size);
    if (c->num_classes < 0 || c->num_classes > 100000)
        return duet_set_error(DUET_ERR_ARG, "unet: num_classes %d out of range", c->num_classes);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return duet_set_error(DUET_ERR_ARG, "unet: dropout must be in [0, 1)");
    if (c->T < 2 || c->T > DUET_DIFFUSION_MAX_T)
        return duet_set_error(DUET_ERR_ARG, "unet: T must be in [2, %d]", DUET_DIFFUSION_MAX_T);
    if ((int)c->schedule < 0 || c->schedule >= DUET_SCHEDULE_COUNT)
        return duet_set_error(DUET_ERR_ARG, "unet: unknown schedule");
    return DUET_OK;
}

/* ==== parameters ==== */

static duet_tensor *mk(duet_unet *u, const char *name, int ndim, int64_t d0, int64_t d1,
                       int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    int idx = u->nparams++;
    int64_t off = u->numel;
    u->numel += (n + 15) & ~(int64_t)15; /* 64-byte aligned views */
    if (u->pass == 0) return NULL;
    duet_tensor *t = &u->tensors[idx];
    duet_tensor_init(t, DUET_DTYPE_F32, ndim, shape, u->data + off);
    t->grad = u->grad + off;
    t->requires_grad = 1;
    snprintf(t->name, sizeof t->name, "%s", name);
    u->ptrs[idx] = t;
    return t;
}

static void mk_res(duet_unet *u, resblock *r, const char *pre, int cin, int cout, int E) {
    char n[64];
    r->cin = cin, r->cout = cout;
#define P(field, suffix, ...) (snprintf(n, sizeof n, "%s.%s", pre, suffix), r->field = mk(u, n, __VA_ARGS__))
    P(gn1_w, "gn1.weight", 1, cin, 0, 0, 0);
    P(gn1_b, "gn1.bias", 1, cin, 0, 0, 0);
    P(conv1_w, "conv1.weight", 4, cout, cin, 3, 3);
    P(conv1_b, "conv1.bias", 1, cout, 0, 0, 0);
    P(temb_w, "temb.weight", 2, cout, E, 0, 0);
    P(temb_b, "temb.bias", 1, cout, 0, 0, 0);
    P(gn2_w, "gn2.weight", 1, cout, 0, 0, 0);
    P(gn2_b, "gn2.bias", 1, cout, 0, 0, 0);
    P(conv2_w, "conv2.weight", 4, cout, cout, 3, 3);
    P(conv2_b, "conv2.bias", 1, cout, 0, 0, 0);
    if (cin != cout) {
        P(skip_w, "skip.weight", 4, cout, cin, 1, 1);
        P(skip_b, "skip.bias", 1, cout, 0, 0, 0);
    } else {
        r->skip_w = r->skip_b = NULL;
    }
#undef P
}

static void mk_attn(duet_unet *u, attnblock *a, const char *pre, int c) {
    char n[64];
    a->c = c;
#define P(field, suffix, ...) (snprintf(n, sizeof n, "%s.%s", pre, suffix), a->field = mk(u, n, __VA_ARGS__))
    P(gn_w, "gn.weight", 1, c, 0, 0, 0);
    P(gn_b, "gn.bias", 1, c, 0, 0, 0);
    P(q_w, "q.weight", 2, c, c, 0, 0);
    P(q_b, "q.bias", 1, c, 0, 0, 0);
    P(k_w, "k.weight", 2, c, c, 0, 0);
    P(k_b, "k.bias", 1, c, 0, 0, 0);
    P(v_w, "v.weight", 2, c, c, 0, 0);
    P(v_b, "v.bias", 1, c, 0, 0, 0);
    P(o_w, "o.weight", 2, c, c, 0, 0);
    P(o_b, "o.bias", 1, c, 0, 0, 0);
#undef P
}

static void build(duet_unet *u) {
    const duet_unet_config *c = &u->cfg;
    const int C = c->channels, E = 4 * C;
    char n[64];
    u->nparams = 0;
    u->numel = 0;
    u->time_lin1_w = mk(u, "time.lin1.weight", 2, E, C, 0, 0);
    u->time_lin1_b = mk(u, "time.lin1.bias", 1, E, 0, 0, 0);
    u->time_lin2_w = mk(u, "time.lin2.weight", 2, E, E, 0, 0);
    u->time_lin2_b = mk(u, "time.lin2.bias", 1, E, 0, 0, 0);
    u->class_emb = c->num_classes ? mk(u, "class_emb.weight", 2, c->num_classes + 1, E, 0, 0) : NULL;
    u->conv_in_w = mk(u, "conv_in.weight", 4, C, c->in_channels, 3, 3);
    u->conv_in_b = mk(u, "conv_in.bias", 1, C, 0, 0, 0);
    int skip_ch[DUET_UNET_MAX_LEVELS * (MAX_RES + 1) + 1], nskip = 0;
    int cur = C;
    skip_ch[nskip++] = cur;
    for (int i = 0; i < c->nlevels; i++) {
        level *L = &u->down[i];
        int co = C * c->mults[i];
        L->has_attn = (c->attn_levels >> i) & 1;
        for (int j = 0; j < c->res_blocks; j++) {
            snprintf(n, sizeof n, "down.%d.res.%d", i, j);
            mk_res(u, &L->res[j], n, cur, co, E);
            cur = co;
            if (L->has_attn) {
                snprintf(n, sizeof n, "down.%d.attn.%d", i, j);
                mk_attn(u, &L->attn[j], n, cur);
            }
            skip_ch[nskip++] = cur;
        }
        if (i + 1 < c->nlevels) {
            snprintf(n, sizeof n, "down.%d.downsample.weight", i);
            L->resample_w = mk(u, n, 4, cur, cur, 3, 3);
            snprintf(n, sizeof n, "down.%d.downsample.bias", i);
            L->resample_b = mk(u, n, 1, cur, 0, 0, 0);
            skip_ch[nskip++] = cur;
        }
    }
    mk_res(u, &u->mid1, "mid.res1", cur, cur, E);
    mk_attn(u, &u->mid_attn, "mid.attn", cur);
    mk_res(u, &u->mid2, "mid.res2", cur, cur, E);
    for (int i = c->nlevels - 1; i >= 0; i--) {
        level *L = &u->up[i];
        int co = C * c->mults[i];
        L->has_attn = (c->attn_levels >> i) & 1;
        for (int j = 0; j < c->res_blocks + 1; j++) {
            snprintf(n, sizeof n, "up.%d.res.%d", i, j);
            mk_res(u, &L->res[j], n, cur + skip_ch[--nskip], co, E);
            cur = co;
            if (L->has_attn) {
                snprintf(n, sizeof n, "up.%d.attn.%d", i, j);
                mk_attn(u, &L->attn[j], n, cur);
            }
        }
        if (i > 0) {
            snprintf(n, sizeof n, "up.%d.upsample.weight", i);
            L->resample_w = mk(u, n, 4, cur, cur, 3, 3);
            snprintf(n, sizeof n, "up.%d.upsample.bias", i);
            L->resample_b = mk(u, n, 1, cur, 0, 0, 0);
        }
    }
    u->out_gn_w = mk(u, "out.gn.weight", 1, cur, 0, 0, 0);
    u->out_gn_b = mk(u, "out.gn.bias", 1, cur, 0, 0, 0);
    u->out_conv_w = mk(u, "out.conv.weight", 4, c->in_channels, cur, 3, 3);
    u->out_conv_b = mk(u, "out.conv.bias", 1, c->in_channels, 0, 0, 0);
}

/* PyTorch defaults: conv/linear weight and bias ~ U(-1/sqrt(fan_in), +);
 * GroupNorm weight 1, bias 0; embeddings N(0, 1); DDPM zero-inits the last
 * conv of each ResBlock and conv_out so the model starts as the identity of
 * its skip paths. */
static void init_weights(duet_unet *u, uint64_t seed) {
    duet_rng rng;
    duet_rng_init(&rng, seed);
    for (int i = 0; i < u->nparams; i++) {
        duet_tensor *t = u->ptrs[i];
        float *d = t->data;
        int64_t n = duet_tensor_numel(t);
        const char *nm = t->name;
        size_t len = strlen(nm);
        int is_bias = len > 5 && strcmp(nm + len - 5, ".bias") == 0;
        if (strstr(nm, ".gn")) {
            for (int64_t k = 0; k < n; k++) d[k] = is_bias ? 0.0f : 1.0f;
        } else if (strcmp(nm, "class_emb.weight") == 0) {
            duet_rng_normal(&rng, d, n, 0.0f, 1.0f);
        } else if ((strstr(nm, ".conv2.") || strncmp(nm, "out.conv", 8) == 0)) {
            memset(d, 0, (size_t)n * sizeof(float));
        } else {
            /* fan_in of the matching weight: bias shares its layer's fan_in */
            int64_t fan_in = 1;
            if (is_bias) {
                const duet_tensor *w = u->ptrs[i - 1];
                for (int k = 1; k < w->ndim; k++) fan_in *= w->shape[k];
            } else {
                for (int k = 1; k < t->ndim; k++) fan_in *= t->shape[k];
            }
            float b = 1.0f / sqrtf((float)fan_in);
            duet_rng_uniform(&rng, d, n);
            for (int64_t k = 0; k < n; k++) d[k] = (2.0f * d[k] - 1.0f) * b;
        }
    }
}

duet_unet *duet_unet_new(const duet_unet_config *c, uint64_t seed) {
    if (duet_unet_config_check(c) != DUET_OK) return NULL;
    duet_unet *u = duet_calloc(1, sizeof *u);
    if (!u) return NULL;
    u->cfg = *c;
    u->pass = 0;
    build(u);
    u->tensors = duet_calloc((size_t)u->nparams, sizeof *u->tensors);
    u->ptrs = duet_calloc((size_t)u->nparams, sizeof *u->ptrs);
    u->data = duet_calloc((size_t)u->numel, sizeof(float));
    u->grad = duet_calloc((size_t)u->numel, sizeof(float));
    if (!u->tensors || !u->ptrs || !u->data || !u->grad) {
        duet_unet_free(u);
        return NULL;
    }
    u->pass = 1;
    build(u);
    init_weights(u, seed);
    return u;
}

void duet_unet_free(duet_unet *u) {
    if (!u) return;
    duet_free(u->tensors);
    duet_free(u->ptrs);
    duet_free(u->data);
    duet_free(u->grad);
    duet_free(u);
}

const duet_unet_config *duet_unet_get_config(const duet_unet *u) { return &u->cfg; }
int duet_unet_nparams(const duet_unet *u) { return u->nparams; }
duet_tensor **duet_unet_params(duet_unet *u) { return u->ptrs; }

int64_t duet_unet_numel(const duet_unet *u) {
    int64_t n = 0;
    for (int i = 0; i < u->nparams; i++) n += duet_tensor_numel(u->ptrs[i]);
    return n;
}

duet_tensor *duet_unet_param(duet_unet *u, const char *name) {
    for (int i = 0; i < u->nparams; i++)
        if (strcmp(u->ptrs[i]->name, name) == 0) return u->ptrs[i];
    return NULL;
}

/* ==== forward ==== */

static duet_tensor *res_forward(duet_graph *g, const duet_unet *u, const resblock *r,
                                duet_tensor *x, duet_tensor *temb_act, duet_rng *rng) {
    const int G = u->cfg.groups;
    duet_tensor *h = duet_nn_groupnorm_silu(g, x, r->gn1_w, r->gn1_b, G, 1e-5f);
    duet_tensor *tp = duet_nn_linear(g, temb_act, r->temb_w, r->temb_b); /* [N, cout] */
    h = duet_nn_conv2d_chanbias(g, h, r->conv1_w, r->conv1_b, tp, 1, 1); /* conv1(h) + tp */
    h = duet_nn_groupnorm_silu_dropout(g, h, r->gn2_w, r->gn2_b, G, 1e-5f, u->cfg.dropout, rng);
    h = duet_nn_conv2d(g, h, r->conv2_w, r->conv2_b, 1, 1);
    duet_tensor *skip = r->skip_w ? duet_nn_conv2d(g, x, r->skip_w, r->skip_b, 1, 0) : x;
    return duet_nn_add(g, skip, h);
}

static duet_tensor *attn_forward(duet_graph *g, const duet_unet *u, const attnblock *a,
                                 duet_tensor *x) {
    if (!x) return NULL;
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t HW = H * W, NH = u->cfg.heads, HS = C / NH;
    duet_tensor *h = duet_nn_groupnorm(g, x, a->gn_w, a->gn_b, u->cfg.groups, 1e-5f);
    h = duet_nn_transpose(g, duet_nn_reshape(g, h, 3, (int64_t[]){N, C, HW})); /* [N, HW, C] */
    int64_t qshape[4] = {N, HW, NH, HS};
    duet_tensor *q = duet_nn_reshape(g, duet_nn_linear(g, h, a->q_w, a->q_b), 4, qshape);
    duet_tensor *k = duet_nn_reshape(g, duet_nn_linear(g, h, a->k_w, a->k_b), 4, qshape);
    duet_tensor *v = duet_nn_reshape(g, duet_nn_linear(g, h, a->v_w, a->v_b), 4, qshape);
    duet_tensor *o = duet_nn_attention(g, q, k, v, 0, 1.0f / sqrtf((float)HS));
    o = duet_nn_linear(g, duet_nn_reshape(g, o, 3, (int64_t[]){N, HW, C}), a->o_w, a->o_b);
    o = duet_nn_reshape(g, duet_nn_transpose(g, o), 4, (int64_t[]){N, C, H, W});
    return duet_nn_add(g, x, o);
}

duet_tensor *duet_unet_forward(duet_unet *u, duet_graph *g, duet_tensor *x, duet_tensor *t,
                               duet_tensor *labels, duet_rng *dropout_rng) {
    if (!x || !t) return NULL;
    const duet_unet_config *c = &u->cfg;
    const int64_t N = x->shape[0];
    if (x->ndim != 4 || x->shape[1] != c->in_channels || x->shape[2] != c->image_size ||
        x->shape[3] != c->image_size) {
        char b[64];
        return nn_fail(g, DUET_ERR_SHAPE, "unet: input must be [N, %d, %d, %d]; got %s",
                       c->in_channels, c->image_size, c->image_size,
                       duet_tensor_describe(x, b, sizeof b));
    }
    if (t->ndim != 1 || t->shape[0] != N)
        return nn_fail(g, DUET_ERR_SHAPE, "unet: t must be [%lld]", (long long)N);
    if (labels && (labels->ndim != 1 || labels->shape[0] != N || labels->dtype != DUET_DTYPE_I32))
        return nn_fail(g, DUET_ERR_SHAPE, "unet: labels must be i32 [%lld]", (long long)N);

    duet_tensor *temb = duet_nn_timestep_embedding(g, t, c->channels, 10000.0f);
    temb = duet_nn_linear(g, temb, u->time_lin1_w, u->time_lin1_b);
    temb = duet_nn_linear(g, duet_nn_silu(g, temb), u->time_lin2_w, u->time_lin2_b);
    if (u->class_emb) {
        duet_tensor *lab = labels;
        if (!lab) { /* all "no class" */
            lab = duet_graph_tensor(g, DUET_DTYPE_I32, 1, (int64_t[]){N});
            if (!lab) return NULL;
            for (int64_t i = 0; i < N; i++) ((int32_t *)lab->data)[i] = c->num_classes;
        }
        temb = duet_nn_add(g, temb, duet_nn_embedding(g, lab, u->class_emb));
    }
    duet_tensor *temb_act = duet_nn_silu(g, temb); /* shared by every ResBlock */

    duet_tensor *skips[DUET_UNET_MAX_LEVELS * (MAX_RES + 1) + 1];
    int nskip = 0;
    duet_tensor *h = duet_nn_conv2d(g, x, u->conv_in_w, u->conv_in_b, 1, 1);
    skips[nskip++] = h;
    for (int i = 0; i < c->nlevels; i++) {
        const level *L = &u->down[i];
        for (int j = 0; j < c->res_blocks; j++) {
            h = res_forward(g, u, &L->res[j], h, temb_act, dropout_rng);
            if (L->has_attn) h = attn_forward(g, u, &L->attn[j], h);
            skips[nskip++] = h;
        }
        if (i + 1 < c->nlevels) {
            h = duet_nn_conv2d(g, h, L->resample_w, L->resample_b, 2, 1);
            skips[nskip++] = h;
        }
    }
    h = res_forward(g, u, &u->mid1, h, temb_act, dropout_rng);
    h = attn_forward(g, u, &u->mid_attn, h);
    h = res_forward(g, u, &u->mid2, h, temb_act, dropout_rng);
    for (int i = c->nlevels - 1; i >= 0; i--) {
        const level *L = &u->up[i];
        for (int j = 0; j < c->res_blocks + 1; j++) {
            h = duet_nn_concat(g, h, skips[--nskip]);
            h = res_forward(g, u, &L->res[j], h, temb_act, dropout_rng);
            if (L->has_attn) h = attn_forward(g, u, &L->attn[j], h);
        }
        if (i > 0)
            h = duet_nn_conv2d(g, duet_nn_upsample2x(g, h), L->resample_w, L->resample_b, 1, 1);
    }
    h = duet_nn_groupnorm_silu(g, h, u->out_gn_w, u->out_gn_b, c->groups, 1e-5f);
    return duet_nn_conv2d(g, h, u->out_conv_w, u->out_conv_b, 1, 1);
}

/* ==== checkpoints ==== */

static void meta_int(duet_st_writer *w, const char *key, int v) {
    char b[32];
    snprintf(b, sizeof b, "%d", v);
    duet_st_writer_meta(w, key, b);
}

duet_status duet_unet_save(duet_unet *u, const char *path, const char *const *class_names,
                           int extra_meta_count, const char *const *extra_meta) {
    const duet_unet_config *c = &u->cfg;
    duet_st_writer *w = duet_st_writer_new();
    if (!w) return DUET_ERR_NOMEM;
    duet_st_writer_meta(w, "duet.kind", "painter");
    duet_st_writer_meta(w, "duet.arch", "unet");
    meta_int(w, "duet.in_channels", c->in_channels);
    meta_int(w, "duet.image_size", c->image_size);
    meta_int(w, "duet.channels", c->channels);
    char mults[64] = "";
    for (int i = 0, n = 0; i < c->nlevels; i++)
        n += snprintf(mults + n, sizeof mults - (size_t)n, i ? ",%d" : "%d", c->mults[i]);
    duet_st_writer_meta(w, "duet.mults", mults);
    meta_int(w, "duet.res_blocks", c->res_blocks);
    char attn[64] = "";
    for (int i = 0, n = 0; i < c->nlevels; i++)
        if ((c->attn_levels >> i) & 1)
            n += snprintf(attn + n, sizeof attn - (size_t)n, n ? ",%d" : "%d", i);
    duet_st_writer_meta(w, "duet.attn_levels", attn);
    meta_int(w, "duet.heads", c->heads);
    meta_int(w, "duet.groups", c->groups);
    meta_int(w, "duet.num_classes", c->num_classes);
    char b[32];
    snprintf(b, sizeof b, "%g", (double)c->dropout);
    duet_st_writer_meta(w, "duet.dropout", b);
    duet_st_writer_meta(w, "duet.prediction", c->predict_v ? "v" : "eps");
    duet_st_writer_meta(w, "duet.schedule", duet_beta_schedule_name(c->schedule));
    meta_int(w, "duet.T", c->T);
    if (class_names && c->num_classes) {
        char *names = duet_alloc((size_t)c->num_classes * 64 + 1);
        if (!names) {
            duet_st_writer_free(w);
            return DUET_ERR_NOMEM;
        }
        size_t n = 0;
        names[0] = 0;
        for (int i = 0; i < c->num_classes; i++)
            n += (size_t)snprintf(names + n, (size_t)c->num_classes * 64 + 1 - n, i ? ",%.60s" : "%.60s",
                                  class_names[i]);
        duet_st_writer_meta(w, "duet.class_names", names);
        duet_free(names);
    }
    for (int i = 0; i + 1 < 2 * extra_meta_count; i += 2)
        duet_st_writer_meta(w, extra_meta[i], extra_meta[i + 1]);
    for (int i = 0; i < u->nparams; i++) {
        duet_tensor *t = u->ptrs[i];
        duet_st_writer_add(w, t->name, DUET_DTYPE_F32, t->ndim, t->shape, t->data);
    }
    duet_status s = duet_st_writer_write(w, path);
    duet_st_writer_free(w);
    return s;
}

static int meta_get_int(const duet_st *st, const char *path, const char *key, int *out) {
    const char *v = duet_st_meta(st, key);
    char *end;
    if (!v) {
        duet_set_error(DUET_ERR_FORMAT, "%s: painter checkpoint lacks metadata '%s'", path, key);
        return 0;
    }
    long x = strtol(v, &end, 10);
    if (*end || x < -1000000 || x > 1000000) {
        duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s' = '%s' is not a whole number", path, key, v);
        return 0;
    }
    *out = (int)x;
    return 1;
}

duet_status duet_unet_load_weights(duet_unet *u, const duet_st *st, const char *prefix) {
    char name[160];
    for (int i = 0; i < u->nparams; i++) {
        duet_tensor *t = u->ptrs[i];
        snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", t->name);
        duet_status s = duet_st_read_f32(st, name, t->data, duet_tensor_numel(t));
        if (s) return s;
    }
    return DUET_OK;
}

duet_unet *duet_unet_load(const char *path) {
    duet_st *st = duet_st_open(path);
    if (!st) return NULL;
    const char *kind = duet_st_meta(st, "duet.kind");
    if (!kind || strcmp(kind, "painter") != 0) {
        duet_set_error(DUET_ERR_FORMAT, "%s: not a duet painter checkpoint (duet.kind = %s)", path,
                       kind ? kind : "missing");
        duet_st_close(st);
        return NULL;
    }
    duet_unet_config c;
    duet_unet_config_default(&c);
    int ok = meta_get_int(st, path, "duet.in_channels", &c.in_channels) &&
             meta_get_int(st, path, "duet.image_size", &c.image_size) &&
             meta_get_int(st, path, "duet.channels", &c.channels) &&
             meta_get_int(st, path, "duet.res_blocks", &c.res_blocks) &&
             meta_get_int(st, path, "duet.heads", &c.heads) &&
             meta_get_int(st, path, "duet.groups", &c.groups) &&
             meta_get_int(st, path, "duet.num_classes", &c.num_classes) &&
             meta_get_int(st, path, "duet.T", &c.T);
    const char *mults = duet_st_meta(st, "duet.mults"), *attn = duet_st_meta(st, "duet.attn_levels");
    const char *pred = duet_st_meta(st, "duet.prediction"), *sched = duet_st_meta(st, "duet.schedule");
    if (ok && (!mults || !attn || !pred || !sched)) {
        duet_set_error(DUET_ERR_FORMAT, "%s: painter checkpoint lacks mults/attn_levels/prediction/schedule metadata", path);
        ok = 0;
    }
    if (ok) {
        c.nlevels = 0;
        for (const char *p = mults; *p && c.nlevels < DUET_UNET_MAX_LEVELS;) {
            c.mults[c.nlevels++] = (int)strtol(p, (char **)&p, 10);
            if (*p == ',') p++;
            else if (*p) break;
        }
        c.attn_levels = 0;
        for (const char *p = attn; *p;) {
            long lv = strtol(p, (char **)&p, 10);
            if (lv >= 0 && lv < DUET_UNET_MAX_LEVELS) c.attn_levels |= 1u << lv;
            if (*p == ',') p++;
            else break;
        }
        c.predict_v = strcmp(pred, "v") == 0;
        int sk = duet_beta_schedule_from_name(sched);
        c.schedule = sk < 0 ? DUET_SCHEDULE_COSINE : (duet_beta_schedule)sk;
        const char *dr = duet_st_meta(st, "duet.dropout");
        c.dropout = dr ? strtof(dr, NULL) : 0.0f;
        if (sk < 0) {
            duet_set_error(DUET_ERR_FORMAT, "%s: unknown schedule '%s'", path, sched);
            ok = 0;
        } else if (duet_unet_config_check(&c) != DUET_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", duet_last_error());
            duet_set_error(DUET_ERR_FORMAT, "%s: bad painter config in metadata: %s", path, msg);
            ok = 0;
        }
    }
    duet_unet *u = ok ? duet_unet_new(&c, 0) : NULL;
    if (u && duet_unet_load_weights(u, st, NULL) != DUET_OK) {
        duet_unet_free(u);
        u = NULL;
    }
    duet_st_close(st);
    return u;
}
