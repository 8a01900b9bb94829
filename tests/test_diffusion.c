/*
 * test_diffusion.c — schedules, each sampler's step, and whole sampling loops
 * against the independent numpy reference (tests/ref/gen_diffusion.py), plus
 * convergence to a known data distribution.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static t_fix *F;

static void to_f32(float *dst, const double *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

static void test_schedules(void) {
    duet_schedule *s = malloc(sizeof *s);
    int64_t n;
    T_CHECK(duet_schedule_init(s, DUET_SCHEDULE_LINEAR, 1000) == DUET_OK, "linear init");
    double *ab = t_fix_f64(F, "lin_abar", &n), *bb = t_fix_f64(F, "lin_betas", NULL);
    double e1 = 0, e2 = 0;
    for (int i = 0; i < 1000; i++) e1 = fmax(e1, fabs(s->abar[i] - ab[i]) / ab[i]), e2 = fmax(e2, fabs(s->betas[i] - bb[i]));
    T_CHECK(n == 1000 && e1 < 1e-12 && e2 < 1e-15, "linear schedule matches (rel %g, abs %g)", e1, e2);
    T_CHECK(duet_schedule_init(s, DUET_SCHEDULE_COSINE, 1000) == DUET_OK, "cosine init");
    ab = t_fix_f64(F, "cos_abar", &n);
    e1 = 0;
    for (int i = 0; i < 1000; i++) e1 = fmax(e1, fabs(s->abar[i] - ab[i]) / ab[i]);
    T_CHECK(e1 < 1e-10, "cosine schedule matches (rel %g)", e1);
    int ts[50];
    const char *names[] = {"ts_50", "ts_7", "ts_1"};
    int counts[] = {50, 7, 1};
    for (int k = 0; k < 3; k++) {
        duet_schedule_timesteps(s, counts[k], ts);
        int32_t *want = t_fix_i32(F, names[k], NULL);
        int ok = want != NULL;
        for (int i = 0; ok && i < counts[k]; i++) ok = ts[i] == want[i];
        T_CHECK(ok, "timesteps %s", names[k]);
    }
    T_CHECK(duet_schedule_timesteps(s, 0, ts) == DUET_ERR_ARG, "0 steps refused");
    T_CHECK(duet_schedule_timesteps(s, 1001, ts) == DUET_ERR_ARG, "too many steps refused");
    T_CHECK(duet_schedule_init(s, DUET_SCHEDULE_LINEAR, 1) == DUET_ERR_ARG, "T=1 refused");
    T_CHECK(duet_diffusion_sampler_from_name("dpmpp-2m") == DUET_SAMPLER_DPMPP_2M &&
                duet_diffusion_sampler_from_name("nope") == -1 &&
                strcmp(duet_diffusion_sampler_name(DUET_SAMPLER_EULER_A), "euler-a") == 0,
            "sampler names");
    free(s);
}

static void test_steps(void) {
    enum { N = 64 };
    float x[N], eps[N], nz[N], den[N], old[N], out[N], x0[N];
    to_f32(x, t_fix_f64(F, "x", NULL), N);
    to_f32(eps, t_fix_f64(F, "eps", NULL), N);
    to_f32(nz, t_fix_f64(F, "noise", NULL), N);
    to_f32(den, t_fix_f64(F, "den", NULL), N);
    to_f32(old, t_fix_f64(F, "old", NULL), N);
    double a = t_fix_scalar(F, "a"), ap = t_fix_scalar(F, "ap");
    double *sig = t_fix_f64(F, "sig", NULL);
    const double rt = 1e-5, at = 1e-6;
    char key[64];
    for (int clip = 0; clip < 2; clip++) {
        duet_ddpm_step(out, x0, x, eps, a, ap, nz, clip, N);
        snprintf(key, sizeof key, "ddpm_c%d", clip);
        t_close_d(key, out, t_fix_f64(F, key, NULL), N, rt, at);
        snprintf(key, sizeof key, "ddpm_x0_c%d", clip);
        t_close_d(key, x0, t_fix_f64(F, key, NULL), N, rt, at);
        duet_ddim_step(out, x0, x, eps, a, ap, 0.0f, NULL, clip, N);
        snprintf(key, sizeof key, "ddim0_c%d", clip);
        t_close_d(key, out, t_fix_f64(F, key, NULL), N, rt, at);
        duet_ddim_step(out, x0, x, eps, a, ap, 0.5f, nz, clip, N);
        snprintf(key, sizeof key, "ddim5_c%d", clip);
        t_close_d(key, out, t_fix_f64(F, key, NULL), N, rt, at);
    }
    duet_ddim_step(out, x0, x, eps, a, 1.0, 0.0f, NULL, 0, N);
    t_close_d("ddim final step", out, t_fix_f64(F, "ddim_last", NULL), N, rt, at);
    memcpy(out, x, sizeof x);
    duet_euler_step(out, den, sig[0], sig[1], N);
    t_close_d("euler", out, t_fix_f64(F, "euler", NULL), N, rt, at);
    memcpy(out, x, sizeof x);
    duet_euler_a_step(out, den, sig[0], sig[1], nz, N);
    t_close_d("euler-a", out, t_fix_f64(F, "euler_a", NULL), N, rt, at);
    memcpy(out, x, sizeof x);
    duet_dpmpp_2m_step(out, den, NULL, sig[0], sig[1], sig[2], N);
    t_close_d("dpm++2m first", out, t_fix_f64(F, "dpm_first", NULL), N, rt, at);
    memcpy(out, x, sizeof x);
    duet_dpmpp_2m_step(out, den, old, sig[0], sig[1], sig[2], N);
    t_close_d("dpm++2m multistep", out, t_fix_f64(F, "dpm_multi", NULL), N, rt, at);
    memcpy(out, x, sizeof x);
    duet_dpmpp_2m_step(out, den, old, sig[0], 0.0, sig[2], N);
    t_close_d("dpm++2m last", out, t_fix_f64(F, "dpm_last", NULL), N, rt, at);
    /* cfg and v helpers */
    duet_cfg_combine(out, x, eps, 3.0f, N);
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= fabsf(out[i] - (eps[i] + 3.0f * (x[i] - eps[i]))) <= 1e-6f * (1 + fabsf(out[i]));
    T_CHECK(ok, "cfg combine");
    /* v-prediction round trip: v from (x0, eps), then eps back from (v, x_t) */
    float xt[N], v[N], e2[N];
    duet_diffusion_q_sample(xt, den, eps, a, N);
    duet_diffusion_v_target(v, den, eps, a, N);
    duet_diffusion_v_to_eps(e2, v, xt, a, N);
    t_close("v -> eps recovers eps", e2, eps, N, 1e-5, 1e-5);
}

/* Gaussian data N(mu, sd^2): the exact eps predictor */
typedef struct {
    const duet_schedule *s;
    const double *mu;
    double sd;
    int calls;
} gauss_ctx;

static duet_status gauss_denoise(void *ctx, const float *xt, int t, float *eps) {
    gauss_ctx *c = ctx;
    double a = c->s->abar[t];
    int n = 16;
    for (int i = 0; i < n; i++)
        eps[i] = (float)(sqrt(1 - a) * ((double)xt[i] - sqrt(a) * c->mu[i]) / (a * c->sd * c->sd + 1 - a));
    c->calls++;
    return DUET_OK;
}

static duet_status batch_denoise(void *ctx, const float *xt, int t, float *eps) {
    /* many independent samples of the same 16-dim Gaussian */
    gauss_ctx *c = ctx;
    double a = c->s->abar[t];
    for (int j = 0; j < 4096; j++) {
        int i = j % 16;
        eps[j] = (float)(sqrt(1 - a) * ((double)xt[j] - sqrt(a) * c->mu[i]) / (a * c->sd * c->sd + 1 - a));
    }
    return DUET_OK;
}

static int traj_calls;
static void traj_count(void *ctx, int step, int steps, int t, const float *x, const float *x0) {
    (void)ctx, (void)t, (void)x, (void)x0;
    if (step == traj_calls && step < steps) traj_calls++;
}

static void test_loops(void) {
    duet_schedule *s = malloc(sizeof *s);
    duet_schedule_init(s, DUET_SCHEDULE_COSINE, 1000);
    double *mu = t_fix_f64(F, "mu", NULL);
    struct { const char *name; int steps; float eta; } cases[] = {
        {"ddim", 20, 0.0f}, {"ddim", 10, 1.0f}, {"ddpm", 15, 0.0f},
        {"euler", 20, 0.0f}, {"euler-a", 12, 0.0f}, {"dpmpp-2m", 10, 0.0f},
    };
    float x[16], scratch[5 * 16];
    for (int k = 0; k < 6; k++) {
        duet_diffusion_params p;
        duet_diffusion_params_init(&p);
        p.sampler = duet_diffusion_sampler_from_name(cases[k].name);
        p.steps = cases[k].steps;
        p.eta = cases[k].eta;
        p.clip_x0 = 0;
        p.seed = 1234;
        gauss_ctx c = {s, mu, 0.3, 0};
        traj_calls = 0;
        duet_status st = duet_diffusion_sample(s, &p, x, 16, scratch, gauss_denoise, &c, traj_count, NULL);
        char key[64];
        snprintf(key, sizeof key, "loop_%s_%d_%d", cases[k].name, cases[k].steps, (int)(cases[k].eta * 10));
        T_CHECK(st == DUET_OK && c.calls == cases[k].steps && traj_calls == cases[k].steps,
                "%s: %d denoiser calls, %d trajectory calls", key, c.calls, traj_calls);
        /* whole trajectories in float vs float64 reference: errors compound a
         * little over the steps */
        t_close_d(key, x, t_fix_f64(F, key, NULL), 16, 1e-4, 1e-4);
    }
    /* convergence: 4096 samples (256 per dim) of N(mu, 0.3^2) with DDIM-50
     * DPM-Solver++ 50 and DDPM-100 (evenly spaced t on the cosine schedule: 20 steps of DPM++ overshoot the spread to 0.355, in the reference too): per-dim sample mean within 4 standard errors */
    int64_t n = 4096;
    float *xb = malloc(sizeof(float) * n), *sb = malloc(sizeof(float) * 5 * n);
    duet_diffusion_sampler which[] = {DUET_SAMPLER_DDIM, DUET_SAMPLER_DPMPP_2M, DUET_SAMPLER_DDPM};
    int steps[] = {50, 50, 100};
    for (int k = 0; k < 3; k++) {
        duet_diffusion_params p;
        duet_diffusion_params_init(&p);
        p.sampler = which[k];
        p.steps = steps[k];
        p.clip_x0 = 0;
        p.seed = 99;
        gauss_ctx c = {s, mu, 0.3, 0};
        duet_diffusion_sample(s, &p, xb, n, sb, batch_denoise, &c, NULL, NULL);
        double worst = 0, sdev = 0;
        for (int i = 0; i < 16; i++) {
            double m = 0, v = 0;
            for (int j = i; j < n; j += 16) m += (double)xb[j];
            m /= 256;
            for (int j = i; j < n; j += 16) v += ((double)xb[j] - m) * ((double)xb[j] - m);
            v /= 255;
            worst = fmax(worst, fabs(m - mu[i]) / (0.3 / 16.0));
            sdev += sqrt(v) / 16;
        }
        T_CHECK(worst < 4.5 && fabs(sdev - 0.3) < 0.03, "%s-%d converges to the data: worst mean z %.2f, sd %.3f",
                duet_diffusion_sampler_name(which[k]), steps[k], worst, sdev);
    }
    free(xb);
    free(sb);
    /* bad parameters */
    duet_diffusion_params p;
    duet_diffusion_params_init(&p);
    p.steps = 0;
    gauss_ctx c = {s, mu, 0.3, 0};
    T_CHECK(duet_diffusion_sample(s, &p, x, 16, scratch, gauss_denoise, &c, NULL, NULL) == DUET_ERR_ARG, "0 steps refused: %s", duet_last_error());
    p.steps = -3;
    T_CHECK(duet_diffusion_sample(s, &p, x, 16, scratch, gauss_denoise, &c, NULL, NULL) == DUET_ERR_ARG, "negative steps refused");
    p.steps = 10;
    p.eta = 2;
    T_CHECK(duet_diffusion_sample(s, &p, x, 16, scratch, gauss_denoise, &c, NULL, NULL) == DUET_ERR_ARG, "eta 2 refused");
    free(s);
}

int main(void) {
    duet_init();
    F = t_fix_load("diffusion.bin");
    if (!F) return t_done();
    test_schedules();
    test_steps();
    test_loops();
    t_fix_free(F);
    return t_done();
}
