/*
 * classifier.c — the judge of `duet eval image`: a small CNN composed from
 * the tape ops that labels images (Fashion-MNIST by default) and yields a
 * feature vector per image, its training loop and checkpoints; and the
 * Frechet distance between Gaussian fits of two feature sets (a cyclic
 * Jacobi eigen-solver in double for the matrix square roots).
 *
 * Network (S = image_size, F = features), see duet.h:
 *   conv3x3 C->W GN SiLU | conv3x3/2 W->2W GN SiLU | conv3x3/2 2W->2W GN SiLU
 *   | flatten | linear -> F (features) | SiLU | linear F -> classes
 *
 * What it is not: an Inception network. Its distance numbers compare duet
 * models with each other and with the train-vs-test floor, not with
 * published FID values.
 */
#include "nn/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CL_GROUPS 8
#define CL_NPARAMS 16
#define CL_BATCH 256 /* inference batch of duet_classifier_predict */

enum { /* parameter indices, checkpoint order (each weight before its bias) */
    P_CONV1_W, P_CONV1_B, P_GN1_W, P_GN1_B,
    P_CONV2_W, P_CONV2_B, P_GN2_W, P_GN2_B,
    P_CONV3_W, P_CONV3_B, P_GN3_W, P_GN3_B,
    P_FC1_W, P_FC1_B, P_FC2_W, P_FC2_B
};

static const char *const param_names[CL_NPARAMS] = {
    "conv1.weight", "conv1.bias", "gn1.weight", "gn1.bias",
    "conv2.weight", "conv2.bias", "gn2.weight", "gn2.bias",
    "conv3.weight", "conv3.bias", "gn3.weight", "gn3.bias",
    "fc1.weight",   "fc1.bias",   "fc2.weight", "fc2.bias"};

struct duet_classifier {
    duet_classifier_config cfg;
    duet_tensor t[CL_NPARAMS];
    duet_tensor *ptrs[CL_NPARAMS];
    float *data, *grad;  /* one block each; the views in t[] point into them */
    int64_t numel;
    duet_graph *g;       /* inference graph of duet_classifier_predict (made lazily) */
    float *xbuf;         /* [CL_BATCH, C, S, S] staging for predict */
};

/* ==== config and parameters ==== */

void duet_classifier_config_default(duet_classifier_config *c) {
    c->in_channels = 1;
    c->image_size = 28;
    c->num_classes = 10;
    c->features = 128;
    c->width = 32;
}

static duet_status config_check(const duet_classifier_config *c) {
    if (c->in_channels < 1 || c->in_channels > 4)
        return duet_set_error(DUET_ERR_ARG, "classifier: in_channels must be 1..4, got %d",
                              c->in_channels);
    if (c->image_size < 4 || c->image_size > 512 || c->image_size % 4)
        return duet_set_error(DUET_ERR_ARG,
                              "classifier: image_size must be a multiple of 4 in 4..512, got %d",
                              c->image_size);
    if (c->num_classes < 2 || c->num_classes > 100000)
        return duet_set_error(DUET_ERR_ARG, "classifier: num_classes must be 2..100000, got %d",
                              c->num_classes);
    if (c->features < 2 || c->features > 4096)
        return duet_set_error(DUET_ERR_ARG, "classifier: features must be 2..4096, got %d",
                              c->features);
    if (c->width < 8 || c->width > 1024 || c->width % CL_GROUPS)
        return duet_set_error(DUET_ERR_ARG, "classifier: width must be a multiple of %d in 8..1024, got %d",
                              CL_GROUPS, c->width);
    return DUET_OK;
}

/* Shape of parameter i: returns ndim, fills s[4]. */
static int param_shape(const duet_classifier_config *c, int i, int64_t s[4]) {
    const int64_t C1 = c->width, C2 = 2 * (int64_t)c->width, C3 = C2;
    const int64_t S4 = c->image_size / 4, flat = C3 * S4 * S4;
    const int64_t F = c->features, K = c->num_classes;
    s[0] = s[1] = s[2] = s[3] = 0;
    switch (i) {
    case P_CONV1_W: s[0] = C1, s[1] = c->in_channels, s[2] = s[3] = 3; return 4;
    case P_CONV2_W: s[0] = C2, s[1] = C1, s[2] = s[3] = 3; return 4;
    case P_CONV3_W: s[0] = C3, s[1] = C2, s[2] = s[3] = 3; return 4;
    case P_CONV1_B: case P_GN1_W: case P_GN1_B: s[0] = C1; return 1;
    case P_CONV2_B: case P_GN2_W: case P_GN2_B: s[0] = C2; return 1;
    case P_CONV3_B: case P_GN3_W: case P_GN3_B: s[0] = C3; return 1;
    case P_FC1_W: s[0] = F, s[1] = flat; return 2;
    case P_FC1_B: s[0] = F; return 1;
    case P_FC2_W: s[0] = K, s[1] = F; return 2;
    default: s[0] = K; return 1; /* P_FC2_B */
    }
}

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

/* PyTorch defaults: conv/linear weight and bias ~ U(-1/sqrt(fan_in), +),
 * GroupNorm weight 1 and bias 0. */
static void init_weights(duet_classifier *m, uint64_t seed) {
    duet_rng rng;
    duet_rng_init(&rng, seed);
    for (int i = 0; i < CL_NPARAMS; i++) {
        duet_tensor *t = &m->t[i];
        float *d = t->data;
        const int64_t n = duet_tensor_numel(t);
        if (i == P_GN1_W || i == P_GN2_W || i == P_GN3_W) {
            for (int64_t k = 0; k < n; k++) d[k] = 1.0f;
            continue;
        }
        if (i == P_GN1_B || i == P_GN2_B || i == P_GN3_B) {
            memset(d, 0, sizeof(float) * (size_t)n);
            continue;
        }
        const duet_tensor *w = t->ndim == 1 ? &m->t[i - 1] : t; /* a bias uses its weight's fan_in */
        int64_t fan_in = 1;
        for (int k = 1; k < w->ndim; k++) fan_in *= w->shape[k];
        const float b = 1.0f / sqrtf((float)fan_in);
        duet_rng_uniform(&rng, d, n);
        for (int64_t k = 0; k < n; k++) d[k] = (2.0f * d[k] - 1.0f) * b;
    }
}

duet_classifier *duet_classifier_new(const duet_classifier_config *c, uint64_t seed) {
    if (config_check(c) != DUET_OK) return NULL;
    duet_classifier *m = duet_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *c;
    int64_t shapes[CL_NPARAMS][4];
    int ndims[CL_NPARAMS];
    m->numel = 0;
    for (int i = 0; i < CL_NPARAMS; i++) {
        ndims[i] = param_shape(c, i, shapes[i]);
        int64_t n = 1;
        for (int k = 0; k < ndims[i]; k++) n *= shapes[i][k];
        m->numel += round16(n);
    }
    m->data = duet_calloc((size_t)m->numel, sizeof(float));
    m->grad = duet_calloc((size_t)m->numel, sizeof(float));
    if (!m->data || !m->grad) {
        duet_classifier_free(m);
        return NULL;
    }
    int64_t off = 0;
    for (int i = 0; i < CL_NPARAMS; i++) {
        duet_tensor *t = &m->t[i];
        duet_tensor_init(t, DUET_DTYPE_F32, ndims[i], shapes[i], m->data + off);
        t->grad = m->grad + off;
        t->requires_grad = 1;
        snprintf(t->name, sizeof t->name, "%s", param_names[i]);
        m->ptrs[i] = t;
        off += round16(duet_tensor_numel(t));
    }
    init_weights(m, seed);
    return m;
}

void duet_classifier_free(duet_classifier *m) {
    if (!m) return;
    duet_graph_free(m->g);
    duet_free(m->xbuf);
    duet_free(m->data);
    duet_free(m->grad);
    duet_free(m);
}

const duet_classifier_config *duet_classifier_get_config(const duet_classifier *m) {
    return &m->cfg;
}

duet_tensor **duet_classifier_params(duet_classifier *m, int *n) {
    if (n) *n = CL_NPARAMS;
    return m->ptrs;
}

/* ==== forward ==== */

duet_tensor *duet_classifier_forward(duet_classifier *m, duet_graph *g, duet_tensor *x,
                                     duet_tensor **features) {
    if (features) *features = NULL;
    if (!x) return NULL;
    const duet_classifier_config *c = &m->cfg;
    if (x->ndim != 4 || x->shape[1] != c->in_channels || x->shape[2] != c->image_size ||
        x->shape[3] != c->image_size) {
        char b[64];
        return nn_fail(g, DUET_ERR_SHAPE, "classifier: input must be [N, %d, %d, %d]; got %s",
                       c->in_channels, c->image_size, c->image_size,
                       duet_tensor_describe(x, b, sizeof b));
    }
    const int64_t N = x->shape[0], S4 = c->image_size / 4;
    duet_tensor *const *p = m->ptrs;
    duet_tensor *h = duet_nn_conv2d(g, x, p[P_CONV1_W], p[P_CONV1_B], 1, 1);
    h = duet_nn_silu(g, duet_nn_groupnorm(g, h, p[P_GN1_W], p[P_GN1_B], CL_GROUPS, 1e-5f));
    h = duet_nn_conv2d(g, h, p[P_CONV2_W], p[P_CONV2_B], 2, 1);
    h = duet_nn_silu(g, duet_nn_groupnorm(g, h, p[P_GN2_W], p[P_GN2_B], CL_GROUPS, 1e-5f));
    h = duet_nn_conv2d(g, h, p[P_CONV3_W], p[P_CONV3_B], 2, 1);
    h = duet_nn_silu(g, duet_nn_groupnorm(g, h, p[P_GN3_W], p[P_GN3_B], CL_GROUPS, 1e-5f));
    h = duet_nn_reshape(g, h, 2, (int64_t[]){N, 2 * (int64_t)c->width * S4 * S4});
    duet_tensor *f = duet_nn_linear(g, h, p[P_FC1_W], p[P_FC1_B]); /* [N, F] */
    if (features) *features = f;
    return duet_nn_linear(g, duet_nn_silu(g, f), p[P_FC2_W], p[P_FC2_B]);
}

duet_status duet_classifier_predict(duet_classifier *m, const float *x, int64_t n,
                                    int32_t *labels, float *features) {
    const duet_classifier_config *c = &m->cfg;
    const int64_t per = (int64_t)c->in_channels * c->image_size * c->image_size;
    const int64_t K = c->num_classes, F = c->features;
    if (n < 0) return duet_set_error(DUET_ERR_ARG, "classifier_predict: n = %lld", (long long)n);
    if (!m->g) {
        /* activations of one batch: about 6 conv-sized buffers of 32 channels */
        m->g = duet_graph_new((size_t)CL_BATCH * (size_t)per * sizeof(float) * (size_t)c->width * 8);
        m->xbuf = duet_alloc(sizeof(float) * (size_t)(CL_BATCH * per));
        if (!m->g || !m->xbuf) return duet_set_error(DUET_ERR_NOMEM, "classifier_predict: out of memory");
        duet_graph_set_training(m->g, 0);
    }
    for (int64_t i0 = 0; i0 < n; i0 += CL_BATCH) {
        const int64_t B = n - i0 < CL_BATCH ? n - i0 : CL_BATCH;
        memcpy(m->xbuf, x + i0 * per, sizeof(float) * (size_t)(B * per));
        duet_graph_reset(m->g);
        duet_tensor *xt = duet_graph_input(m->g, m->xbuf, DUET_DTYPE_F32, 4,
                                           (int64_t[]){B, c->in_channels, c->image_size, c->image_size});
        duet_tensor *feat = NULL;
        duet_tensor *logits = duet_classifier_forward(m, m->g, xt, &feat);
        if (!logits) return duet_graph_status(m->g);
        const float *L = logits->data;
        for (int64_t i = 0; labels && i < B; i++) {
            int32_t best = 0;
            for (int64_t k = 1; k < K; k++)
                if (L[i * K + k] > L[i * K + best]) best = (int32_t)k;
            labels[i0 + i] = best;
        }
        if (features) memcpy(features + i0 * F, feat->data, sizeof(float) * (size_t)(B * F));
    }
    return DUET_OK;
}

/* ==== training ==== */

void duet_classifier_train_params_default(duet_classifier_train_params *p) {
    memset(p, 0, sizeof *p);
    p->steps = 1000;
    p->batch = 128;
    p->lr = 2e-3f;
    p->weight_decay = 0.01f;
    p->seed = 0;
}

/* Fisher-Yates permutation of 0..n-1 for `epoch`, from philox(seed, epoch). */
static void epoch_perm(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t w[4];
        duet_philox(seed ^ 0x636c617373696679ull, ((uint64_t)epoch << 32) + (uint64_t)i, w);
        const int64_t j = (int64_t)(((uint64_t)w[0] * (uint64_t)(i + 1)) >> 32);
        const int64_t tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
    }
}

duet_status duet_classifier_train(duet_classifier *m, const duet_dataset *d,
                                  const duet_classifier_train_params *p) {
    const duet_classifier_config *c = &m->cfg;
    if (!d || d->n < 1 || !d->labels)
        return duet_set_error(DUET_ERR_ARG, "classifier_train: the data set must hold labelled images");
    if (d->c != c->in_channels || d->h != c->image_size || d->w != c->image_size)
        return duet_set_error(DUET_ERR_ARG,
                              "classifier_train: images are %lldx%lldx%lld but the classifier "
                              "takes %dx%dx%d (resize the data set first)",
                              (long long)d->c, (long long)d->h, (long long)d->w, c->in_channels,
                              c->image_size, c->image_size);
    for (int64_t i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= c->num_classes)
            return duet_set_error(DUET_ERR_ARG, "classifier_train: label %d of image %lld is not in [0, %d)",
                                  d->labels[i], (long long)i, c->num_classes);
    if (p->steps < 1 || p->batch < 1 || !(p->lr > 0.0f))
        return duet_set_error(DUET_ERR_ARG, "classifier_train: steps, batch and lr must be positive");
    const int64_t B = p->batch, per = d->c * d->h * d->w;
    const int64_t warmup = p->steps / 20 < 1 ? 1 : p->steps / 20;
    duet_adamw opt;
    duet_status st = duet_adamw_init(&opt, m->ptrs, CL_NPARAMS, 0.9f, 0.999f, 1e-8f, p->weight_decay);
    if (st) return st;
    for (int i = 0; i < CL_NPARAMS; i++) duet_adamw_set_decay(&opt, i, m->ptrs[i]->ndim > 1);
    int64_t *perm = duet_alloc(sizeof(int64_t) * (size_t)d->n);
    int64_t *idx = duet_alloc(sizeof(int64_t) * (size_t)B);
    float *x = duet_alloc(sizeof(float) * (size_t)(B * per));
    int32_t *y = duet_alloc(sizeof(int32_t) * (size_t)B);
    duet_graph *g = duet_graph_new((size_t)B * (size_t)per * sizeof(float) * (size_t)c->width * 16);
    if (!perm || !idx || !x || !y || !g) st = duet_set_error(DUET_ERR_NOMEM, "classifier_train: out of memory");
    int64_t epoch = -1, pos = d->n; /* position in the current epoch's permutation */
    for (int64_t step = 0; st == DUET_OK && step < p->steps; step++) {
        for (int64_t i = 0; i < B; i++) {
            if (pos >= d->n) epoch_perm(perm, d->n, p->seed, ++epoch), pos = 0;
            idx[i] = perm[pos++];
        }
        st = duet_dataset_batch_f32(d, idx, B, x, y);
        if (st) break;
        duet_graph_reset(g);
        duet_graph_set_training(g, 1);
        duet_tensor *xt = duet_graph_input(g, x, DUET_DTYPE_F32, 4, (int64_t[]){B, d->c, d->h, d->w});
        duet_tensor *yt = duet_graph_input(g, y, DUET_DTYPE_I32, 1, (int64_t[]){B});
        duet_tensor *loss = duet_nn_cross_entropy(g, duet_classifier_forward(m, g, xt, NULL), yt,
                                                  NULL, -100);
        if (!loss) {
            st = duet_graph_status(g);
            break;
        }
        memset(m->grad, 0, sizeof(float) * (size_t)m->numel);
        st = duet_graph_backward(g, loss);
        if (st) break;
        duet_clip_grad_norm(m->ptrs, CL_NPARAMS, 1.0f);
        duet_adamw_step(&opt, m->ptrs, CL_NPARAMS,
                        duet_lr_at(DUET_LR_WARMUP_COSINE, step, warmup, p->steps, p->lr, p->lr * 0.1f));
        if (p->progress) p->progress(p->progress_ud, step + 1, p->steps, *(const float *)loss->data);
    }
    duet_graph_free(g);
    duet_free(y);
    duet_free(x);
    duet_free(idx);
    duet_free(perm);
    duet_adamw_free(&opt);
    return st;
}

/* ==== checkpoints ==== */

duet_status duet_classifier_save(const duet_classifier *m, const char *path,
                                 const char *const *class_names) {
    const duet_classifier_config *c = &m->cfg;
    duet_st_writer *w = duet_st_writer_new();
    if (!w) return duet_set_error(DUET_ERR_NOMEM, "classifier_save: out of memory");
    char b[32];
    duet_status st = duet_st_writer_meta(w, "duet.kind", "classifier");
    snprintf(b, sizeof b, "%d", c->in_channels);
    if (!st) st = duet_st_writer_meta(w, "duet.in_channels", b);
    snprintf(b, sizeof b, "%d", c->image_size);
    if (!st) st = duet_st_writer_meta(w, "duet.image_size", b);
    snprintf(b, sizeof b, "%d", c->num_classes);
    if (!st) st = duet_st_writer_meta(w, "duet.num_classes", b);
    snprintf(b, sizeof b, "%d", c->features);
    if (!st) st = duet_st_writer_meta(w, "duet.features", b);
    snprintf(b, sizeof b, "%d", c->width);
    if (!st) st = duet_st_writer_meta(w, "duet.width", b);
    char *names = NULL;
    if (!st && class_names) {
        size_t len = 1;
        for (int i = 0; i < c->num_classes; i++) len += strlen(class_names[i]) + 1;
        names = duet_alloc(len);
        if (!names) st = duet_set_error(DUET_ERR_NOMEM, "classifier_save: out of memory");
        for (int i = 0, n = 0; !st && i < c->num_classes; i++)
            n += snprintf(names + n, len - (size_t)n, i ? ",%s" : "%s", class_names[i]);
        if (!st) st = duet_st_writer_meta(w, "duet.class_names", names);
    }
    for (int i = 0; !st && i < CL_NPARAMS; i++) {
        const duet_tensor *t = &m->t[i];
        st = duet_st_writer_add(w, t->name, DUET_DTYPE_F32, t->ndim, t->shape, t->data);
    }
    if (!st) st = duet_st_writer_write(w, path);
    duet_free(names);
    duet_st_writer_free(w);
    return st;
}

static int meta_int(const duet_st *st, const char *path, const char *key, int *out) {
    const char *v = duet_st_meta(st, key);
    char *end;
    if (!v) {
        duet_set_error(DUET_ERR_FORMAT, "%s: classifier checkpoint lacks metadata '%s'", path, key);
        return 0;
    }
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < 0 || x > 1000000) {
        duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s' = '%s' is not a whole number", path,
                       key, v);
        return 0;
    }
    *out = (int)x;
    return 1;
}

duet_classifier *duet_classifier_load(const char *path) {
    duet_st *st = duet_st_open(path);
    if (!st) return NULL;
    duet_classifier *m = NULL;
    const char *kind = duet_st_meta(st, "duet.kind");
    duet_classifier_config c;
    if (!kind || strcmp(kind, "classifier") != 0) {
        duet_set_error(DUET_ERR_FORMAT,
                       "%s: not a duet classifier checkpoint (duet.kind = %s); train one with "
                       "`duet eval image --train-classifier`",
                       path, kind ? kind : "missing");
    } else if (meta_int(st, path, "duet.in_channels", &c.in_channels) &&
               meta_int(st, path, "duet.image_size", &c.image_size) &&
               meta_int(st, path, "duet.num_classes", &c.num_classes) &&
               meta_int(st, path, "duet.features", &c.features) &&
               meta_int(st, path, "duet.width", &c.width)) {
        if (config_check(&c) != DUET_OK) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s", duet_last_error());
            duet_set_error(DUET_ERR_FORMAT, "%s: bad classifier config in metadata: %s", path, msg);
        } else {
            m = duet_classifier_new(&c, 0);
        }
    }
    for (int i = 0; m && i < CL_NPARAMS; i++) {
        duet_tensor *t = &m->t[i];
        int k = duet_st_find(st, t->name);
        duet_tensor view;
        duet_status s = k < 0 ? duet_set_error(DUET_ERR_FORMAT, "%s: tensor '%s' is missing", path, t->name)
                              : duet_st_tensor(st, k, &view);
        if (!s && (view.ndim != t->ndim || memcmp(view.shape, t->shape, sizeof(int64_t) * (size_t)t->ndim))) {
            char a[64], b[64];
            s = duet_set_error(DUET_ERR_FORMAT, "%s: tensor '%s' is %s, the config wants %s", path,
                               t->name, duet_tensor_describe(&view, a, sizeof a),
                               duet_tensor_describe(t, b, sizeof b));
        }
        if (!s) s = duet_st_read_f32(st, t->name, t->data, duet_tensor_numel(t));
        if (s) {
            duet_classifier_free(m);
            m = NULL;
        }
    }
    duet_st_close(st);
    return m;
}

/* ==== feature statistics and the Frechet distance ==== */

duet_status duet_feature_stats(const float *feat, int64_t n, int64_t d, double *mean,
                               double *cov) {
    if (n < 2 || d < 1)
        return duet_set_error(DUET_ERR_ARG, "feature_stats: need n >= 2 rows and d >= 1 (got %lld, %lld)",
                              (long long)n, (long long)d);
    for (int64_t j = 0; j < d; j++) mean[j] = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) mean[j] += (double)feat[i * d + j];
    for (int64_t j = 0; j < d; j++) mean[j] /= (double)n;
    for (int64_t k = 0; k < d * d; k++) cov[k] = 0.0;
    double *row = duet_alloc(sizeof(double) * (size_t)d);
    if (!row) return duet_set_error(DUET_ERR_NOMEM, "feature_stats: out of memory");
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d; j++) row[j] = (double)feat[i * d + j] - mean[j];
        for (int64_t a = 0; a < d; a++) {
            const double ra = row[a];
            double *ca = cov + a * d;
            for (int64_t b = a; b < d; b++) ca[b] += ra * row[b];
        }
    }
    for (int64_t a = 0; a < d; a++)
        for (int64_t b = a; b < d; b++) {
            cov[a * d + b] /= (double)(n - 1);
            cov[b * d + a] = cov[a * d + b];
        }
    duet_free(row);
    return DUET_OK;
}

/* Cyclic Jacobi (Golub & Van Loan, "Matrix Computations", 8.5.2): sweep over
 * every off-diagonal pair, zero it with a rotation, until the off-diagonal
 * mass is negligible next to the diagonal. Works on a copy. */
duet_status duet_sym_eigen(const double *a_in, int64_t n, double *evals, double *evecs) {
    if (n < 1) return duet_set_error(DUET_ERR_ARG, "sym_eigen: n = %lld", (long long)n);
    double *a = duet_alloc(sizeof(double) * (size_t)(n * n));
    double *v = duet_alloc(sizeof(double) * (size_t)(n * n));
    int64_t *order = duet_alloc(sizeof(int64_t) * (size_t)n);
    if (!a || !v || !order) {
        duet_free(a), duet_free(v), duet_free(order);
        return duet_set_error(DUET_ERR_NOMEM, "sym_eigen: out of memory for n = %lld", (long long)n);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            a[i * n + j] = 0.5 * (a_in[i * n + j] + a_in[j * n + i]); /* exact symmetry */
            v[i * n + j] = i == j;
        }
    double total = 0.0;
    for (int64_t k = 0; k < n * n; k++) total += a[k] * a[k];
    duet_status st = DUET_OK;
    for (int sweep = 0;; sweep++) {
        double off = 0.0;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
        if (off <= 1e-28 * total || off == 0.0) break;
        if (sweep == 100) {
            st = duet_set_error(DUET_ERR_INTERNAL, "sym_eigen: no convergence after 100 sweeps (NaN or Inf input?)");
            break;
        }
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++) {
                const double apq = a[p * n + q];
                if (apq == 0.0) continue;
                const double app = a[p * n + p], aqq = a[q * n + q];
                /* t = tan(theta) of the smaller rotation that zeroes a[p][q] */
                const double theta = (aqq - app) / (2.0 * apq);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                const double cs = 1.0 / sqrt(t * t + 1.0), sn = t * cs;
                for (int64_t k = 0; k < n; k++) { /* columns p, q */
                    const double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = cs * akp - sn * akq;
                    a[k * n + q] = sn * akp + cs * akq;
                }
                for (int64_t k = 0; k < n; k++) { /* rows p, q */
                    const double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = cs * apk - sn * aqk;
                    a[q * n + k] = sn * apk + cs * aqk;
                }
                a[p * n + q] = a[q * n + p] = 0.0;
                for (int64_t k = 0; k < n; k++) {
                    const double vkp = v[k * n + p], vkq = v[k * n + q];
                    v[k * n + p] = cs * vkp - sn * vkq;
                    v[k * n + q] = sn * vkp + cs * vkq;
                }
            }
    }
    if (!st) {
        /* ascending order (insertion sort on indices: n is small) */
        for (int64_t i = 0; i < n; i++) order[i] = i;
        for (int64_t i = 1; i < n; i++) {
            const int64_t k = order[i];
            int64_t j = i - 1;
            while (j >= 0 && a[order[j] * n + order[j]] > a[k * n + k]) order[j + 1] = order[j], j--;
            order[j + 1] = k;
        }
        for (int64_t i = 0; i < n; i++) evals[i] = a[order[i] * n + order[i]];
        for (int64_t r = 0; evecs && r < n; r++)
            for (int64_t i = 0; i < n; i++) evecs[r * n + i] = v[r * n + order[i]];
    }
    duet_free(a), duet_free(v), duet_free(order);
    return st;
}

duet_status duet_frechet_distance(const double *mu1, const double *s1, const double *mu2,
                                  const double *s2, int64_t d, double *out) {
    if (d < 1) return duet_set_error(DUET_ERR_ARG, "frechet_distance: d = %lld", (long long)d);
    const size_t dd = (size_t)(d * d);
    double *ev = duet_alloc(sizeof(double) * (size_t)d);
    double *V = duet_alloc(sizeof(double) * dd);
    double *R = duet_alloc(sizeof(double) * dd);   /* sqrt(s1) */
    double *T = duet_alloc(sizeof(double) * dd);   /* scratch */
    duet_status st = DUET_OK;
    if (!ev || !V || !R || !T) st = duet_set_error(DUET_ERR_NOMEM, "frechet_distance: out of memory");
    if (!st) st = duet_sym_eigen(s1, d, ev, V);
    if (!st) {
        /* R = V diag(sqrt(max(ev, 0))) V^T */
        for (int64_t i = 0; i < d; i++) ev[i] = ev[i] > 0 ? sqrt(ev[i]) : 0.0;
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = i; j < d; j++) {
                double s = 0.0;
                for (int64_t k = 0; k < d; k++) s += V[i * d + k] * ev[k] * V[j * d + k];
                R[i * d + j] = R[j * d + i] = s;
            }
        /* T = s2 R, then V = R T = R s2 R (symmetric up to round-off) */
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < d; j++) {
                double s = 0.0;
                for (int64_t k = 0; k < d; k++) s += s2[i * d + k] * R[k * d + j];
                T[i * d + j] = s;
            }
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < d; j++) {
                double s = 0.0;
                for (int64_t k = 0; k < d; k++) s += R[i * d + k] * T[k * d + j];
                V[i * d + j] = s;
            }
        st = duet_sym_eigen(V, d, ev, NULL);
    }
    if (!st) {
        double tr_sqrt = 0.0, tr1 = 0.0, tr2 = 0.0, dm = 0.0;
        for (int64_t i = 0; i < d; i++) {
            tr_sqrt += ev[i] > 0 ? sqrt(ev[i]) : 0.0;
            tr1 += s1[i * d + i];
            tr2 += s2[i * d + i];
            dm += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
        }
        *out = dm + tr1 + tr2 - 2.0 * tr_sqrt;
    }
    duet_free(ev), duet_free(V), duet_free(R), duet_free(T);
    return st;
}
