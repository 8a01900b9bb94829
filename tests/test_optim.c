/*
 * test_optim.c — the training primitives: AdamW, clip_grad_norm and the lr
 * schedule against PyTorch (tests/ref/gen_optim.py -> optim.bin), the
 * per-parameter decay mask and skipped parameters, the threaded path against
 * the serial one, gradient scaling and EMA against their definitions, and
 * AdamW's argument and out-of-memory handling.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NP 3
static const char *const pnames[NP] = {"w", "b", "w2"};

static duet_tensor *param_from(t_fix *f, const char *fname) {
    int64_t shape[8], n = 0;
    int nd = t_fix_shape(f, fname, shape);
    const float *src = t_fix_f32(f, fname, &n);
    if (nd < 0 || !src) return NULL;
    duet_tensor *p = duet_param_new(DUET_DTYPE_F32, nd, shape, 1);
    memcpy(p->data, src, (size_t)n * sizeof(float));
    return p;
}

/* ==== AdamW + clipping + schedule, 10 steps against torch ==== */

static void test_adamw_torch(void) {
    t_fix *f = t_fix_load("optim.bin");
    if (!f) return;
    const float *hyper = t_fix_f32(f, "hyper", NULL);
    const float *lr_ref = t_fix_f32(f, "lr", NULL);
    const float *norm_ref = t_fix_f32(f, "norm", NULL);
    int64_t nlr = 0;
    t_fix_f32(f, "lr", &nlr);
    if (!hyper || !lr_ref || !norm_ref) {
        t_fix_free(f);
        return;
    }
    float beta1 = hyper[0], beta2 = hyper[1], eps = hyper[2], wd = hyper[3], max_norm = hyper[4];

    /* params[0..2]: trained; [3] requires_grad = 0 but has a grad full of
     * junk; [4] requires grad but has none; [5] is an f16 buffer (not
     * trained, so allowed). All three extras must come out untouched. */
    duet_tensor *params[NP + 3];
    char name[64];
    for (int k = 0; k < NP; k++) {
        snprintf(name, sizeof name, "init_%s", pnames[k]);
        params[k] = param_from(f, name);
        if (!params[k]) {
            t_fix_free(f);
            return;
        }
    }
    params[3] = param_from(f, "frozen");
    params[3]->requires_grad = 0;
    for (int i = 0; i < 6; i++) params[3]->grad[i] = 100.0f + (float)i;
    params[4] = duet_param_new(DUET_DTYPE_F32, 1, (int64_t[]){5}, 0);
    params[4]->requires_grad = 1;
    for (int i = 0; i < 5; i++) ((float *)params[4]->data)[i] = 0.5f * (float)i;
    params[5] = duet_param_new(DUET_DTYPE_F16, 1, (int64_t[]){4}, 0);
    float frozen0[6], none0[5];
    memcpy(frozen0, params[3]->data, sizeof frozen0);
    memcpy(none0, params[4]->data, sizeof none0);

    duet_adamw opt;
    duet_status st = duet_adamw_init(&opt, params, NP + 3, beta1, beta2, eps, wd);
    T_CHECK(st == DUET_OK, "adamw_init: %s", duet_last_error());
    if (st != DUET_OK) goto done;
    duet_adamw_set_decay(&opt, 1, 0); /* "b" is in torch's weight_decay=0 group */
    T_CHECK(opt.m[5] == NULL && opt.v[5] == NULL, "no moment buffers for an f16 parameter");

    int lr_ok = 1, norm_ok = 1;
    for (int64_t s = 0; s < nlr; s++) {
        for (int k = 0; k < NP; k++) {
            snprintf(name, sizeof name, "grad%lld_%s", (long long)s, pnames[k]);
            int64_t n = 0;
            const float *g = t_fix_f32(f, name, &n);
            if (!g) goto done;
            memcpy(params[k]->grad, g, (size_t)n * sizeof(float));
        }
        /* clip_grad_norm_: torch sums squares in f32, we in double: the
         * norms agree to a few f32 ulps. */
        float norm = duet_clip_grad_norm(params, NP + 3, max_norm);
        norm_ok &= fabsf(norm - norm_ref[s]) <= 2e-6f * norm_ref[s];
        for (int k = 0; k < NP; k++) {
            snprintf(name, sizeof name, "clipped%lld_%s", (long long)s, pnames[k]);
            char what[96];
            snprintf(what, sizeof what, "step %lld clipped grad %s", (long long)s, pnames[k]);
            const float *want = t_fix_f32(f, name, NULL);
            if (want) t_close(what, params[k]->grad, want, duet_tensor_numel(params[k]), 2e-6, 0);
        }
        float lr = duet_lr_at(DUET_LR_WARMUP_COSINE, s, 3, nlr, 2e-2f, 1e-3f);
        lr_ok &= fabsf(lr - lr_ref[s]) <= 1e-6f * lr_ref[s];
        duet_adamw_step(&opt, params, NP + 3, lr);
        for (int k = 0; k < NP; k++) {
            snprintf(name, sizeof name, "param%lld_%s", (long long)s, pnames[k]);
            char what[96];
            snprintf(what, sizeof what, "AdamW step %lld param %s", (long long)s, pnames[k]);
            const float *want = t_fix_f32(f, name, NULL);
            /* same operations in the same order: a few ulps of drift at most */
            if (want)
                t_close(what, (const float *)params[k]->data, want, duet_tensor_numel(params[k]),
                        1e-6, 1e-7);
        }
    }
    T_CHECK(norm_ok, "clip_grad_norm returns torch's total norm every step");
    T_CHECK(lr_ok, "warmup-cosine lr matches the torch script's lr every step");
    T_CHECK(opt.step == nlr, "opt.step counts steps (%lld)", (long long)opt.step);
    for (int k = 0; k < NP; k++) {
        int64_t n = duet_tensor_numel(params[k]);
        char what[96];
        snprintf(name, sizeof name, "exp_avg_%s", pnames[k]);
        snprintf(what, sizeof what, "exp_avg %s", pnames[k]);
        const float *m = t_fix_f32(f, name, NULL);
        /* m sums grads of either sign: where it cancels to ~1e-3, the one-ulp
         * differences of the clipped grads (f32 vs double norm) show up as
         * ~1e-9 absolute, hence the atol */
        if (m) t_close(what, opt.m[k], m, n, 1e-6, 1e-8);
        snprintf(name, sizeof name, "exp_avg_sq_%s", pnames[k]);
        snprintf(what, sizeof what, "exp_avg_sq %s", pnames[k]);
        const float *v = t_fix_f32(f, name, NULL);
        if (v) t_close(what, opt.v[k], v, n, 1e-6, 1e-12);
    }
    T_CHECK(memcmp(frozen0, params[3]->data, sizeof frozen0) == 0,
            "a parameter with requires_grad = 0 is not updated");
    T_CHECK(params[3]->grad[0] == 100.0f, "clip_grad_norm leaves a frozen parameter's grad alone");
    T_CHECK(memcmp(none0, params[4]->data, sizeof none0) == 0,
            "a parameter with no grad is not updated");
    duet_adamw_free(&opt);
    T_CHECK(opt.m == NULL && opt.v == NULL && opt.decay == NULL, "adamw_free clears the struct");
    duet_adamw_free(&opt); /* twice is harmless */
done:
    for (int k = 0; k < NP + 3; k++) duet_param_free(params[k]);
    t_fix_free(f);
}

/* ==== eps and betas that matter: eps 1e-3 against grads ~1e-3 ==== */

static void test_adamw_eps(void) {
    t_fix *f = t_fix_load("optim.bin");
    if (!f) return;
    const float *h = t_fix_f32(f, "e_hyper", NULL);
    const float *want = t_fix_f32(f, "e_final", NULL);
    duet_tensor *e = param_from(f, "e_init");
    if (h && want && e) {
        duet_adamw opt;
        duet_adamw_init(&opt, &e, 1, h[0], h[1], h[2], h[3]);
        for (int s = 0; s < 5; s++) {
            char name[32];
            snprintf(name, sizeof name, "e_grad%d", s);
            const float *g = t_fix_f32(f, name, NULL);
            if (!g) break;
            memcpy(e->grad, g, 20 * sizeof(float));
            duet_adamw_step(&opt, &e, 1, h[4]);
        }
        t_close("AdamW with eps 1e-3, betas (0.8, 0.95), 5 steps", (const float *)e->data, want,
                20, 1e-6, 1e-7);
        duet_adamw_free(&opt);
    }
    duet_param_free(e);
    t_fix_free(f);
}

/* ==== the decay mask: decay on vs off differs by exactly the decay term ==== */

static void test_decay_mask(void) {
    duet_tensor *p[2];
    for (int k = 0; k < 2; k++) {
        p[k] = duet_param_new(DUET_DTYPE_F32, 1, (int64_t[]){64}, 1);
        t_fill_uniform(p[k]->data, 64, 11, -2.0f, 2.0f);
        t_fill_uniform(p[k]->grad, 64, 12, -1.0f, 1.0f);
    }
    duet_adamw opt;
    duet_adamw_init(&opt, p, 2, 0.9f, 0.999f, 1e-8f, 0.5f);
    duet_adamw_set_decay(&opt, 1, 0);
    float before[64];
    memcpy(before, p[0]->data, sizeof before);
    duet_adamw_step(&opt, p, 2, 0.1f);
    /* same data and grads; the only difference is p *= (1 - lr*wd) = 0.95 first */
    double worst = 0;
    for (int i = 0; i < 64; i++) {
        double with = ((float *)p[0]->data)[i], without = ((float *)p[1]->data)[i];
        double want = (double)before[i] * (1.0 - 0.95);
        worst = fmax(worst, fabs((without - with) - want));
    }
    T_CHECK(worst < 1e-6, "decay mask: decayed minus undecayed is lr*wd*p (worst %.3g)", worst);
    duet_adamw_free(&opt);
    for (int k = 0; k < 2; k++) duet_param_free(p[k]);
}

/* ==== threaded path (large tensor) == serial path (small tensors) ==== */

static void test_adamw_threads(void) {
    enum { N = 40000, PARTS = 4 };
    duet_tensor *big = duet_param_new(DUET_DTYPE_F32, 1, (int64_t[]){N}, 1);
    duet_tensor *small[PARTS];
    for (int k = 0; k < PARTS; k++) small[k] = duet_param_new(DUET_DTYPE_F32, 1, (int64_t[]){N / PARTS}, 1);
    t_fill_uniform(big->data, N, 21, -1.0f, 1.0f);
    for (int k = 0; k < PARTS; k++)
        memcpy(small[k]->data, (float *)big->data + k * (N / PARTS), sizeof(float) * (N / PARTS));
    duet_adamw ob, os;
    duet_adamw_init(&ob, &big, 1, 0.9f, 0.95f, 1e-8f, 0.1f);
    duet_adamw_init(&os, small, PARTS, 0.9f, 0.95f, 1e-8f, 0.1f);
    for (int s = 0; s < 3; s++) {
        t_fill_uniform(big->grad, N, 100 + (uint64_t)s, -1.0f, 1.0f);
        for (int k = 0; k < PARTS; k++)
            memcpy(small[k]->grad, big->grad + k * (N / PARTS), sizeof(float) * (N / PARTS));
        duet_adamw_step(&ob, &big, 1, 1e-2f);
        duet_adamw_step(&os, small, PARTS, 1e-2f);
    }
    int same = 1;
    for (int k = 0; k < PARTS; k++)
        same &= memcmp(small[k]->data, (float *)big->data + k * (N / PARTS),
                       sizeof(float) * (N / PARTS)) == 0;
    T_CHECK(same, "AdamW: threaded large tensor == serial small tensors, bit for bit");
    duet_adamw_free(&ob);
    duet_adamw_free(&os);
    duet_param_free(big);
    for (int k = 0; k < PARTS; k++) duet_param_free(small[k]);
}

/* ==== schedule ==== */

static void test_schedule(void) {
    t_fix *f = t_fix_load("optim.bin");
    if (!f) return;
    int64_t ncfg = 0, nsched = 0;
    const int32_t *cfg = t_fix_i32(f, "sched_cfg", &ncfg);
    const float *lrs = t_fix_f32(f, "sched_lr", NULL);
    const double *want = t_fix_f64(f, "sched", &nsched);
    if (cfg && lrs && want) {
        ncfg /= 3;
        int64_t ns = nsched / ncfg;
        for (int64_t c = 0; c < ncfg; c++) {
            float got[64];
            for (int64_t s = 0; s < ns && s < 64; s++)
                got[s] = duet_lr_at((duet_lr_schedule)cfg[3 * c], s, cfg[3 * c + 1],
                                    cfg[3 * c + 2], lrs[2 * c], lrs[2 * c + 1]);
            char what[64];
            snprintf(what, sizeof what, "lr schedule config %lld", (long long)c);
            t_close_d(what, got, want + c * ns, ns < 64 ? ns : 64, 1e-6, 1e-12);
        }
    }
    t_fix_free(f);
    /* spec points */
    T_CHECK(duet_lr_at(DUET_LR_WARMUP_COSINE, 0, 4, 100, 1.0f, 0.1f) == 0.25f, "warmup step 0 = max/warmup");
    T_CHECK(duet_lr_at(DUET_LR_WARMUP_COSINE, 4, 4, 100, 1.0f, 0.1f) == 1.0f, "cosine starts at max_lr");
    T_CHECK(duet_lr_at(DUET_LR_WARMUP_COSINE, 100, 4, 100, 1.0f, 0.1f) == 0.1f, "cosine ends at min_lr");
    T_CHECK(duet_lr_at(DUET_LR_WARMUP_COSINE, 5000, 4, 100, 1.0f, 0.1f) == 0.1f, "stays at min_lr after the end");
    T_CHECK(fabsf(duet_lr_at(DUET_LR_WARMUP_COSINE, 52, 4, 100, 1.0f, 0.1f) - 0.55f) < 1e-6f, "halfway is the mean");
    T_CHECK(duet_lr_at(DUET_LR_CONSTANT, 500, 4, 100, 0.3f, 0.0f) == 0.3f, "constant after warmup");
    T_CHECK(duet_lr_at(DUET_LR_CONSTANT, 0, 0, 100, 0.3f, 0.0f) == 0.3f, "no warmup");
    /* names */
    for (int s = 0; s < DUET_LR_SCHEDULE_COUNT; s++)
        T_CHECK(duet_lr_schedule_from_name(duet_lr_schedule_name((duet_lr_schedule)s)) == s,
                "schedule name round trip %d (%s)", s, duet_lr_schedule_name((duet_lr_schedule)s));
    T_CHECK(duet_lr_schedule_from_name("cosine") == DUET_LR_WARMUP_COSINE, "\"cosine\"");
    T_CHECK(duet_lr_schedule_from_name("constant") == DUET_LR_CONSTANT, "\"constant\"");
    T_CHECK(duet_lr_schedule_from_name("linear") == -1, "unknown name -> -1");
    T_CHECK(duet_lr_schedule_from_name(NULL) == -1, "NULL name -> -1");
}

/* ==== clipping edge cases, scale_grads, EMA ==== */

static void test_clip_scale_ema(void) {
    duet_tensor *p[2];
    p[0] = duet_param_new(DUET_DTYPE_F32, 2, (int64_t[]){300, 200}, 1); /* threaded sum */
    p[1] = duet_param_new(DUET_DTYPE_F32, 1, (int64_t[]){7}, 1);
    t_fill_uniform(p[0]->grad, 60000, 31, -1.0f, 1.0f);
    t_fill_uniform(p[1]->grad, 7, 32, -3.0f, 3.0f);
    double ss = 0;
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < duet_tensor_numel(p[k]); i++) ss += (double)p[k]->grad[i] * (double)p[k]->grad[i];
    double norm = sqrt(ss);
    float g0 = p[0]->grad[123];
    float got = duet_clip_grad_norm(p, 2, 0.0f);
    T_CHECK(fabs((double)got - norm) <= 1e-6 * norm, "norm %.9g vs %.9g", (double)got, norm);
    T_CHECK(p[0]->grad[123] == g0, "max_norm 0: no clipping");
    got = duet_clip_grad_norm(p, 2, 1e4f);
    T_CHECK(p[0]->grad[123] == g0, "norm below max_norm: no clipping");
    got = duet_clip_grad_norm(p, 2, 2.0f);
    double after = 0;
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < duet_tensor_numel(p[k]); i++) after += (double)p[k]->grad[i] * (double)p[k]->grad[i];
    T_CHECK(fabs(sqrt(after) - 2.0) < 1e-5, "clipped to norm 2 (%.9g)", sqrt(after));
    float coef = (float)(2.0 / (norm + 1e-6));
    T_CHECK(p[0]->grad[123] == g0 * coef, "grads scaled by max_norm/(norm+1e-6)");

    float before = p[1]->grad[3];
    duet_scale_grads(p, 2, 0.25f);
    T_CHECK(p[1]->grad[3] == before * 0.25f, "scale_grads multiplies");
    duet_tensor *nog = duet_param_new(DUET_DTYPE_F32, 1, (int64_t[]){3}, 0);
    duet_scale_grads(&nog, 1, 2.0f); /* no grad: nothing to do, no crash */
    T_CHECK(duet_clip_grad_norm(&nog, 1, 1.0f) == 0.0f, "norm of no grads is 0");
    duet_param_free(nog);

    /* EMA against its definition, in double */
    enum { NE = 50000 };
    float *ema = malloc(NE * sizeof(float)), *par = malloc(NE * sizeof(float));
    double *want = malloc(NE * sizeof(double));
    t_fill_uniform(ema, NE, 41, -1.0f, 1.0f);
    t_fill_uniform(par, NE, 42, -1.0f, 1.0f);
    for (int i = 0; i < NE; i++) want[i] = 0.999 * (double)ema[i] + (1.0 - 0.999) * (double)par[i];
    duet_ema_update(ema, par, NE, 0.999f);
    t_close_d("ema = decay*ema + (1-decay)*param", ema, want, NE, 1e-6, 1e-7);
    free(ema);
    free(par);
    free(want);
    for (int k = 0; k < 2; k++) duet_param_free(p[k]);
}

/* ==== init: bad arguments, allocation failures ==== */

static int fail_after = -1, nallocs = 0;
static void *failing_alloc(void *ud, size_t size, size_t align) {
    (void)ud;
    if (fail_after >= 0 && nallocs >= fail_after) return NULL;
    nallocs++;
    void *p = NULL;
    return posix_memalign(&p, align, size ? size : 1) ? NULL : p;
}
static void plain_free(void *ud, void *p) {
    (void)ud;
    free(p);
}

static void test_init_errors(void) {
    duet_tensor *p = duet_param_new(DUET_DTYPE_F32, 1, (int64_t[]){10}, 1);
    duet_adamw opt;
    T_CHECK(duet_adamw_init(&opt, &p, 1, 1.0f, 0.999f, 1e-8f, 0.0f) == DUET_ERR_ARG &&
                strstr(duet_last_error(), "betas") != NULL,
            "beta1 = 1 is refused: %s", duet_last_error());
    T_CHECK(duet_adamw_init(&opt, &p, 1, 0.9f, -0.1f, 1e-8f, 0.0f) == DUET_ERR_ARG, "negative beta2");
    T_CHECK(duet_adamw_init(&opt, &p, 1, 0.9f, 0.999f, NAN, 0.0f) == DUET_ERR_ARG, "NaN eps");
    T_CHECK(duet_adamw_init(&opt, &p, 1, 0.9f, 0.999f, 1e-8f, -1.0f) == DUET_ERR_ARG, "negative decay");
    duet_tensor *h = duet_param_new(DUET_DTYPE_F16, 1, (int64_t[]){4}, 0);
    h->requires_grad = 1;
    duet_tensor *two[2] = {p, h};
    T_CHECK(duet_adamw_init(&opt, two, 2, 0.9f, 0.999f, 1e-8f, 0.0f) == DUET_ERR_UNSUPPORTED,
            "a trainable f16 parameter is refused: %s", duet_last_error());
    duet_param_free(h);

    T_CHECK(duet_adamw_init(&opt, NULL, 0, 0.9f, 0.999f, 1e-8f, 0.0f) == DUET_OK, "no parameters");
    duet_adamw_step(&opt, NULL, 0, 1e-3f);
    duet_adamw_free(&opt);

    duet_allocator a = {failing_alloc, plain_free, NULL};
    duet_set_allocator(&a);
    int all_nomem = 1;
    for (int k = 0; k < 4; k++) {
        nallocs = 0;
        fail_after = k;
        duet_status st = duet_adamw_init(&opt, &p, 1, 0.9f, 0.999f, 1e-8f, 0.0f);
        all_nomem &= st == DUET_ERR_NOMEM && opt.m == NULL && opt.v == NULL && opt.decay == NULL;
        duet_adamw_free(&opt);
    }
    fail_after = -1;
    duet_set_allocator(NULL);
    T_CHECK(all_nomem, "every allocation failure in adamw_init returns NOMEM and frees the rest "
                       "(ASan checks for leaks)");
    duet_param_free(p);
}

int main(void) {
    duet_init();
    test_adamw_torch();
    test_adamw_eps();
    test_decay_mask();
    test_adamw_threads();
    test_schedule();
    test_clip_scale_ema();
    test_init_errors();
    return t_done();
}
