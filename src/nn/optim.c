/*
 * optim.c — training primitives: the AdamW optimizer, global gradient-norm
 * clipping, gradient scaling (for accumulation), the warmup + cosine learning
 * rate schedule, and an exponential moving average of weights.
 *
 * AdamW follows torch.optim.AdamW(foreach=False) operation by operation, in
 * f32 with the same rounding points, so trajectories can be compared with
 * PyTorch's to ~1e-6. PyTorch's vectorized CPU kernels fuse `m*b1 + (1-b1)*g`
 * and `v*b2 + ((1-b2)*g)*g` into FMAs; we reproduce that with the product
 * taken exactly in double (see fma_f).
 *
 * What it is not: an optimizer framework. There is no SGD/Lion, no parameter
 * groups beyond a per-parameter weight-decay mask, no AMSGrad, and optimizer
 * state is not saved here (the checkpoint code reads opt->m / opt->v).
 */
#include "core/internal.h"

#include <math.h>
#include <string.h>

/* ==== AdamW ============================================================== */

/* Moment buffers start on 64-byte boundaries (16 floats). */
static int64_t round_up16(int64_t n) { return (n + 15) & ~(int64_t)15; }

/* round_f32(a*b + c) with a single rounding of the product, like an FMA
 * instruction: a*b of two floats is exact in double. (The sum is rounded to
 * double first; the double-then-float rounding differs from a true fmaf only
 * in rare ties, far below any tolerance that matters.) Cheaper than libm's
 * fmaf on builds without -mfma. */
static inline float fma_f(float a, float b, float c) {
    return (float)((double)a * (double)b + (double)c);
}

static int adamw_trains(const duet_tensor *p) {
    return p && p->requires_grad && p->grad && p->dtype == DUET_DTYPE_F32;
}

duet_status duet_adamw_init(duet_adamw *opt, duet_tensor **params, int nparams, float beta1,
                            float beta2, float eps, float weight_decay) {
    DUET_ASSERT(opt != NULL);
    memset(opt, 0, sizeof *opt);
    if (nparams < 0 || (nparams > 0 && !params))
        return duet_set_error(DUET_ERR_ARG, "adamw_init: %d parameters (params %s)", nparams,
                              params ? "given" : "NULL");
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
        return duet_set_error(DUET_ERR_ARG,
                              "adamw_init: betas (%g, %g) must each be in [0, 1); "
                              "the usual values are 0.9 and 0.999",
                              (double)beta1, (double)beta2);
    if (!(eps >= 0.0f) || !isfinite(eps))
        return duet_set_error(DUET_ERR_ARG, "adamw_init: eps %g must be finite and >= 0 "
                              "(usually 1e-8)", (double)eps);
    if (!(weight_decay >= 0.0f) || !isfinite(weight_decay))
        return duet_set_error(DUET_ERR_ARG, "adamw_init: weight_decay %g must be finite and "
                              ">= 0 (usually 0.01 to 0.1)", (double)weight_decay);

    /* Sizes first: one block holds every m, then every v. */
    int64_t total = 0;
    int nf32 = 0;
    for (int i = 0; i < nparams; i++) {
        const duet_tensor *p = params[i];
        if (!p)
            return duet_set_error(DUET_ERR_ARG, "adamw_init: parameter %d is NULL", i);
        if (p->dtype != DUET_DTYPE_F32) {
            if (p->requires_grad)
                return duet_set_error(DUET_ERR_UNSUPPORTED,
                                      "adamw_init: parameter %d ('%s') is %s; AdamW trains f32 "
                                      "parameters only (load trainable weights as f32)",
                                      i, p->name, duet_dtype_name(p->dtype));
            continue;
        }
        total += round_up16(duet_tensor_numel(p));
        nf32++;
    }
    size_t np = nparams > 0 ? (size_t)nparams : 1;
    opt->m = duet_calloc(np, sizeof *opt->m);
    opt->v = duet_calloc(np, sizeof *opt->v);
    opt->decay = duet_alloc(np);
    float *block = nf32 ? duet_calloc((size_t)(2 * total + 16), sizeof(float)) : NULL;
    if (!opt->m || !opt->v || !opt->decay || (nf32 && !block)) {
        duet_free(block);
        duet_adamw_free(opt);
        return duet_set_error(DUET_ERR_NOMEM,
                              "adamw_init: out of memory for the moment buffers of %d parameters "
                              "(%lld floats)", nparams, (long long)(2 * total));
    }
    /* m of the first f32 parameter sits at block[0]: duet_adamw_free relies on it. */
    int64_t off = 0;
    for (int i = 0; i < nparams; i++) {
        opt->decay[i] = 1;
        if (params[i]->dtype != DUET_DTYPE_F32) continue;
        opt->m[i] = block + off;
        opt->v[i] = block + total + off;
        off += round_up16(duet_tensor_numel(params[i]));
    }
    opt->beta1 = beta1;
    opt->beta2 = beta2;
    opt->eps = eps;
    opt->weight_decay = weight_decay;
    opt->step = 0;
    opt->nparams = nparams;
    return DUET_OK;
}

void duet_adamw_free(duet_adamw *opt) {
    if (!opt) return;
    if (opt->m) {
        /* the first non-NULL m is the start of the one moment block */
        int n = opt->nparams > 0 ? opt->nparams : 1;
        for (int i = 0; i < n; i++)
            if (opt->m[i]) {
                duet_free(opt->m[i]);
                break;
            }
    }
    duet_free(opt->m);
    duet_free(opt->v);
    duet_free(opt->decay);
    memset(opt, 0, sizeof *opt);
}

void duet_adamw_set_decay(duet_adamw *opt, int index, int decay) {
    DUET_ASSERT(opt && opt->decay && index >= 0 && index < opt->nparams);
    opt->decay[index] = decay != 0;
}

/* One fused pass over a parameter. Each line is one PyTorch operation of
 * _single_tensor_adamw, rounded to f32 where PyTorch rounds:
 *   param.mul_(1 - lr*wd)
 *   exp_avg.mul_(b1).add_(grad, alpha=1-b1)              (FMA in torch's vector kernel)
 *   exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1-b2)  (FMA of (value*g)*g)
 *   denom = (exp_avg_sq.sqrt() / sqrt(bc2)).add_(eps)
 *   param.addcdiv_(exp_avg, denom, value=-lr/bc1)        ((value*m)/denom) */
static void adamw_update(float *p, const float *g, float *m, float *v, int64_t n, float decay_mul,
                         float b1, float omb1, float b2, float omb2, float bc2_sqrt, float eps,
                         float neg_step) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float pi = p[i] * decay_mul;
        float mi = fma_f(gi, omb1, m[i] * b1);
        float vi = fma_f(omb2 * gi, gi, v[i] * b2);
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi + (neg_step * mi) / denom;
    }
}

void duet_adamw_step(duet_adamw *opt, duet_tensor **params, int nparams, float lr) {
    DUET_ASSERT(opt && opt->m && nparams == opt->nparams);
    int64_t t = opt->step + 1;
    /* Scalars in double, as PyTorch's Python code computes them, then
     * rounded to f32 when they meet the f32 tensors. */
    double b1 = opt->beta1, b2 = opt->beta2;
    double bc1 = 1.0 - pow(b1, (double)t);
    double bc2 = 1.0 - pow(b2, (double)t);
    float neg_step = (float)(-((double)lr / bc1));
    float bc2_sqrt = (float)sqrt(bc2);
    float decay_mul = (float)(1.0 - (double)lr * (double)opt->weight_decay);
    float omb1 = (float)(1.0 - b1), omb2 = (float)(1.0 - b2);
    for (int i = 0; i < nparams; i++) {
        duet_tensor *p = params[i];
        if (!adamw_trains(p) || !opt->m[i] || !opt->v[i]) continue;
        adamw_update((float *)p->data, p->grad, opt->m[i], opt->v[i], duet_tensor_numel(p),
                     opt->decay[i] ? decay_mul : 1.0f, opt->beta1, omb1, opt->beta2, omb2,
                     bc2_sqrt, opt->eps, neg_step);
    }
    opt->step = t;
}

/* ==== gradient clipping and scaling ===================================== */

static int has_grad(const duet_tensor *p) { return p && p->requires_grad && p->grad; }

float duet_clip_grad_norm(duet_tensor **params, int nparams, float max_norm) {
    /* torch.nn.utils.clip_grad_norm_ (L2): total norm over all grads as one
     * vector (here accumulated in double), coef = max_norm / (norm + 1e-6),
     * applied when < 1. A NaN/inf norm leaves the grads alone: the caller
     * sees it in the return value and can skip the step. */
    double ss = 0.0;
    for (int i = 0; i < nparams; i++) {
        if (!has_grad(params[i])) continue;
        const float *g = params[i]->grad;
        int64_t n = duet_tensor_numel(params[i]);
        double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : s) if (duet_omp_enough(n))
        for (int64_t j = 0; j < n; j++) s += (double)g[j] * (double)g[j];
        ss += s;
    }
    double norm = sqrt(ss);
    if (max_norm > 0.0f) {
        double coef = (double)max_norm / (norm + 1e-6);
        if (coef < 1.0) duet_scale_grads(params, nparams, (float)coef);
    }
    return (float)norm;
}

void duet_scale_grads(duet_tensor **params, int nparams, float s) {
    for (int i = 0; i < nparams; i++) {
        if (!has_grad(params[i])) continue;
        float *g = params[i]->grad;
        int64_t n = duet_tensor_numel(params[i]);
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
        for (int64_t j = 0; j < n; j++) g[j] *= s;
    }
}

/* ==== learning-rate schedule ============================================= */

float duet_lr_at(duet_lr_schedule s, int64_t step, int64_t warmup, int64_t total_steps,
                 float max_lr, float min_lr) {
    DUET_ASSERT((int)s >= 0 && s < DUET_LR_SCHEDULE_COUNT);
    if (step < 0) step = 0;
    if (warmup > 0 && step < warmup)
        return (float)((double)max_lr * (double)(step + 1) / (double)warmup);
    if (s == DUET_LR_CONSTANT) return max_lr;
    double progress = 1.0;
    if (total_steps > warmup) progress = (double)(step - warmup) / (double)(total_steps - warmup);
    if (progress < 0.0) progress = 0.0;
    if (progress > 1.0) progress = 1.0;
    return (float)((double)min_lr +
                   0.5 * ((double)max_lr - (double)min_lr) * (1.0 + cos(M_PI * progress)));
}

static const char *const lr_names[DUET_LR_SCHEDULE_COUNT] = {
    [DUET_LR_CONSTANT] = "constant",
    [DUET_LR_WARMUP_COSINE] = "cosine",
};

const char *duet_lr_schedule_name(duet_lr_schedule s) {
    if ((int)s < 0 || s >= DUET_LR_SCHEDULE_COUNT) return "?";
    return lr_names[s];
}

int duet_lr_schedule_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < DUET_LR_SCHEDULE_COUNT; i++)
        if (strcmp(name, lr_names[i]) == 0) return i;
    if (strcmp(name, "warmup_cosine") == 0) return DUET_LR_WARMUP_COSINE;
    return -1;
}

/* ==== EMA of weights ===================================================== */

void duet_ema_update(float *ema, const float *param, int64_t n, float decay) {
    float keep = decay, take = 1.0f - decay;
#pragma omp parallel for schedule(static) if (duet_omp_enough(n))
    for (int64_t i = 0; i < n; i++) ema[i] = keep * ema[i] + take * param[i];
}
