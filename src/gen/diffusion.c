/*
 * diffusion.c — noise schedules and the reverse-process samplers of the
 * painter: DDPM (ancestral), DDIM (eta), Euler, Euler ancestral and
 * DPM-Solver++(2M), plus the small training-side helpers (q_sample, v target)
 * and classifier-free guidance.
 *
 * What it is not: a model. The denoiser is a callback that predicts eps, so
 * the same loop serves any network (and tests use an analytic one).
 *
 * Refs: Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (eq. 6-7);
 * Nichol & Dhariwal 2021, "Improved DDPM" (cosine schedule, eq. 17);
 * Song et al. 2021, "Denoising Diffusion Implicit Models" (eq. 12, 16);
 * Karras et al. 2022, "Elucidating the Design Space..." (sigma space, Euler);
 * Lu et al. 2022, "DPM-Solver++" (Algorithm 2, multistep 2M).
 */
#include "core/internal.h"

#include <math.h>
#include <string.h>

/* ==== names ==== */

static const char *const schedule_names[DUET_SCHEDULE_COUNT] = {"linear", "cosine"};
static const char *const sampler_names[DUET_SAMPLER_COUNT] = {"ddpm", "ddim", "euler", "euler-a",
                                                              "dpmpp-2m"};

const char *duet_beta_schedule_name(duet_beta_schedule s) {
    return (int)s >= 0 && s < DUET_SCHEDULE_COUNT ? schedule_names[s] : "?";
}
int duet_beta_schedule_from_name(const char *name) {
    for (int i = 0; i < DUET_SCHEDULE_COUNT; i++)
        if (strcmp(name, schedule_names[i]) == 0) return i;
    return -1;
}
const char *duet_diffusion_sampler_name(duet_diffusion_sampler s) {
    return (int)s >= 0 && s < DUET_SAMPLER_COUNT ? sampler_names[s] : "?";
}
int duet_diffusion_sampler_from_name(const char *name) {
    for (int i = 0; i < DUET_SAMPLER_COUNT; i++)
        if (strcmp(name, sampler_names[i]) == 0) return i;
    if (strcmp(name, "euler_a") == 0 || strcmp(name, "euler-ancestral") == 0) return DUET_SAMPLER_EULER_A;
    if (strcmp(name, "dpmpp_2m") == 0 || strcmp(name, "dpm++2m") == 0) return DUET_SAMPLER_DPMPP_2M;
    return -1;
}

/* ==== schedules ==== */

static double cosine_abar(double t, int T) {
    const double s = 0.008;
    double f = cos(((t / T) + s) / (1.0 + s) * M_PI * 0.5);
    return f * f;
}

duet_status duet_schedule_init(duet_schedule *s, duet_beta_schedule kind, int T) {
    if (T < 2 || T > DUET_DIFFUSION_MAX_T)
        return duet_set_error(DUET_ERR_ARG, "diffusion: T must be in [2, %d], got %d",
                              DUET_DIFFUSION_MAX_T, T);
    s->kind = kind;
    s->T = T;
    for (int t = 0; t < T; t++) {
        double b;
        if (kind == DUET_SCHEDULE_LINEAR) {
            /* DDPM: linspace(1e-4, 0.02, T), rescaled for T != 1000 as in
             * Improved DDPM so the total noise stays comparable */
            double scale = 1000.0 / T;
            double b0 = scale * 1e-4, b1 = scale * 0.02;
            b = b0 + (b1 - b0) * t / (T - 1);
        } else if (kind == DUET_SCHEDULE_COSINE) {
            b = 1.0 - cosine_abar(t + 1, T) / cosine_abar(t, T);
            if (b > 0.999) b = 0.999;
        } else {
            return duet_set_error(DUET_ERR_ARG, "diffusion: unknown schedule %d", (int)kind);
        }
        s->betas[t] = b;
        s->abar[t] = (t ? s->abar[t - 1] : 1.0) * (1.0 - b);
    }
    return DUET_OK;
}

duet_status duet_schedule_timesteps(const duet_schedule *s, int steps, int *out) {
    if (steps < 1 || steps > s->T)
        return duet_set_error(DUET_ERR_ARG, "diffusion: steps must be in [1, %d], got %d", s->T,
                              steps);
    for (int i = 0; i < steps; i++) {
        double v = steps == 1 ? s->T - 1 : (double)(s->T - 1) * (1.0 - (double)i / (steps - 1));
        out[i] = (int)floor(v + 0.5); /* round half up */
    }
    return DUET_OK;
}

/* ==== training helpers ==== */

void duet_diffusion_q_sample(float *xt, const float *x0, const float *eps, double abar, int64_t n) {
    float a = (float)sqrt(abar), b = (float)sqrt(1.0 - abar);
    for (int64_t i = 0; i < n; i++) xt[i] = a * x0[i] + b * eps[i];
}

void duet_diffusion_v_target(float *v, const float *x0, const float *eps, double abar, int64_t n) {
    float a = (float)sqrt(abar), b = (float)sqrt(1.0 - abar);
    for (int64_t i = 0; i < n; i++) v[i] = a * eps[i] - b * x0[i];
}

void duet_diffusion_v_to_eps(float *eps, const float *v, const float *xt, double abar, int64_t n) {
    float a = (float)sqrt(abar), b = (float)sqrt(1.0 - abar);
    for (int64_t i = 0; i < n; i++) eps[i] = a * v[i] + b * xt[i];
}

void duet_cfg_combine(float *out, const float *cond, const float *unc, float w, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = unc[i] + w * (cond[i] - unc[i]);
}

/* ==== single steps ==== */

static inline float clampf(float x) { return x < -1.0f ? -1.0f : x > 1.0f ? 1.0f : x; }

/* x0 = (x - sqrt(1-abar) eps) / sqrt(abar), optionally clamped to [-1, 1] */
static void predict_x0(float *x0, const float *x, const float *eps, double abar, int clip,
                       int64_t n) {
    double ra = 1.0 / sqrt(abar), rb = sqrt(1.0 - abar);
    for (int64_t i = 0; i < n; i++) {
        float v = (float)(((double)x[i] - rb * (double)eps[i]) * ra);
        x0[i] = clip ? clampf(v) : v;
    }
}

void duet_ddpm_step(float *x_prev, float *x0, const float *x, const float *eps, double abar_t,
                    double abar_prev, const float *noise, int clip_x0, int64_t n) {
    predict_x0(x0, x, eps, abar_t, clip_x0, n);
    /* posterior q(x_prev | x_t, x0) of the chain restricted to the chosen
     * timesteps: beta' = 1 - abar_t/abar_prev (DDPM eq. 7) */
    double beta = 1.0 - abar_t / abar_prev;
    double c0 = sqrt(abar_prev) * beta / (1.0 - abar_t);
    double ct = sqrt(1.0 - beta) * (1.0 - abar_prev) / (1.0 - abar_t);
    double var = beta * (1.0 - abar_prev) / (1.0 - abar_t);
    double sd = var > 0 ? sqrt(var) : 0.0;
    for (int64_t i = 0; i < n; i++) {
        double m = c0 * (double)x0[i] + ct * (double)x[i];
        x_prev[i] = (float)(m + (noise ? sd * (double)noise[i] : 0.0));
    }
}

void duet_ddim_step(float *x_prev, float *x0, const float *x, const float *eps, double abar_t,
                    double abar_prev, float eta, const float *noise, int clip_x0, int64_t n) {
    predict_x0(x0, x, eps, abar_t, clip_x0, n);
    double sigma = (double)eta * sqrt((1.0 - abar_prev) / (1.0 - abar_t)) *
                   sqrt(1.0 - abar_t / abar_prev);
    double dir = sqrt(fmax(1.0 - abar_prev - sigma * sigma, 0.0));
    double sa = sqrt(abar_prev);
    /* DDIM eq. 12 uses the eps the model gave; after clipping x0 the
     * consistent direction is recomputed from the clipped x0 */
    double ra = 1.0 / sqrt(1.0 - abar_t), sq = sqrt(abar_t);
    for (int64_t i = 0; i < n; i++) {
        double e = clip_x0 ? ((double)x[i] - sq * (double)x0[i]) * ra : (double)eps[i];
        double v = sa * (double)x0[i] + dir * e;
        if (noise && sigma > 0) v += sigma * (double)noise[i];
        x_prev[i] = (float)v;
    }
}

void duet_euler_step(float *x_k, const float *denoised, double sigma, double sigma_next,
                     int64_t n) {
    double dt = sigma_next - sigma;
    for (int64_t i = 0; i < n; i++) {
        double d = ((double)x_k[i] - (double)denoised[i]) / sigma;
        x_k[i] = (float)((double)x_k[i] + d * dt);
    }
}

void duet_euler_a_step(float *x_k, const float *denoised, double sigma, double sigma_next,
                       const float *noise, int64_t n) {
    double up = 0.0;
    if (sigma_next > 0) {
        up = sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) /
                  (sigma * sigma));
        if (up > sigma_next) up = sigma_next;
    }
    double down = sqrt(sigma_next * sigma_next - up * up);
    double dt = down - sigma;
    for (int64_t i = 0; i < n; i++) {
        double d = ((double)x_k[i] - (double)denoised[i]) / sigma;
        double v = (double)x_k[i] + d * dt;
        if (noise && up > 0) v += up * (double)noise[i];
        x_k[i] = (float)v;
    }
}

void duet_dpmpp_2m_step(float *x_k, const float *denoised, const float *old_denoised,
                        double sigma, double sigma_next, double sigma_prev, int64_t n) {
    if (sigma_next == 0.0) { /* last step: the data prediction itself */
        memcpy(x_k, denoised, (size_t)n * sizeof(float));
        return;
    }
    double t = -log(sigma), t_next = -log(sigma_next);
    double h = t_next - t;
    double a = sigma_next / sigma, b = -expm1(-h);
    if (!old_denoised) {
        for (int64_t i = 0; i < n; i++) x_k[i] = (float)(a * (double)x_k[i] + b * (double)denoised[i]);
        return;
    }
    double h_last = t - (-log(sigma_prev));
    double r = h_last / h;
    double c1 = 1.0 + 1.0 / (2.0 * r), c2 = 1.0 / (2.0 * r);
    for (int64_t i = 0; i < n; i++) {
        double d = c1 * (double)denoised[i] - c2 * (double)old_denoised[i];
        x_k[i] = (float)(a * (double)x_k[i] + b * d);
    }
}

/* ==== the loop ==== */

void duet_diffusion_params_init(duet_diffusion_params *p) {
    p->sampler = DUET_SAMPLER_DDIM;
    p->steps = 50;
    p->eta = 0.0f;
    p->clip_x0 = 1;
    p->seed = 0;
}

int64_t duet_diffusion_scratch_floats(int64_t n) { return 5 * n; }

static double sigma_of(double abar) { return sqrt((1.0 - abar) / abar); }

duet_status duet_diffusion_sample(const duet_schedule *s, const duet_diffusion_params *p,
                                  float *x, int64_t n, float *scratch, duet_denoise_fn denoise,
                                  void *ctx, duet_trajectory_fn traj, void *traj_ctx) {
    if ((int)p->sampler < 0 || p->sampler >= DUET_SAMPLER_COUNT)
        return duet_set_error(DUET_ERR_ARG, "diffusion: unknown sampler %d", (int)p->sampler);
    if (p->steps < 1 || p->steps > s->T)
        return duet_set_error(DUET_ERR_ARG, "diffusion: steps must be in [1, %d], got %d", s->T,
                              p->steps);
    if (p->eta < 0 || p->eta > 1)
        return duet_set_error(DUET_ERR_ARG, "diffusion: eta must be in [0, 1]");
    int ts[DUET_DIFFUSION_MAX_T];
    duet_status st = duet_schedule_timesteps(s, p->steps, ts);
    if (st) return st;
    float *eps = scratch, *x0 = scratch + n, *noise = scratch + 2 * n;
    float *xvp = scratch + 3 * n, *old = scratch + 4 * n;
    duet_rng rng;
    duet_rng_init(&rng, p->seed);
    duet_rng_normal(&rng, x, n, 0.0f, 1.0f); /* x_T in VP space */
    int ksampler = p->sampler == DUET_SAMPLER_EULER || p->sampler == DUET_SAMPLER_EULER_A ||
                   p->sampler == DUET_SAMPLER_DPMPP_2M;
    if (ksampler) { /* to sigma space: x_k = x_vp * sqrt(1 + sigma^2) */
        double sc = sqrt(1.0 + sigma_of(s->abar[ts[0]]) * sigma_of(s->abar[ts[0]]));
        for (int64_t i = 0; i < n; i++) x[i] = (float)((double)x[i] * sc);
    }
    int have_old = 0;
    double sigma_prev = 0;
    for (int k = 0; k < p->steps; k++) {
        int t = ts[k];
        int tp = k + 1 < p->steps ? ts[k + 1] : -1;
        double abar = s->abar[t], abar_prev = tp >= 0 ? s->abar[tp] : 1.0;
        if (!ksampler) {
            st = denoise(ctx, x, t, eps);
            if (st) return st;
            int stoch = p->sampler == DUET_SAMPLER_DDPM || p->eta > 0;
            if (stoch && tp >= 0) duet_rng_normal(&rng, noise, n, 0.0f, 1.0f);
            const float *nz = stoch && tp >= 0 ? noise : NULL;
            if (p->sampler == DUET_SAMPLER_DDPM)
                duet_ddpm_step(x, x0, x, eps, abar, abar_prev, nz, p->clip_x0, n);
            else
                duet_ddim_step(x, x0, x, eps, abar, abar_prev, p->eta, nz, p->clip_x0, n);
            if (traj) traj(traj_ctx, k, p->steps, t, x, x0);
            continue;
        }
        double sigma = sigma_of(abar), sigma_next = tp >= 0 ? sigma_of(abar_prev) : 0.0;
        double in_scale = 1.0 / sqrt(1.0 + sigma * sigma);
        for (int64_t i = 0; i < n; i++) xvp[i] = (float)((double)x[i] * in_scale);
        st = denoise(ctx, xvp, t, eps);
        if (st) return st;
        /* denoised = x_k - sigma * eps, i.e. the predicted x_0 */
        predict_x0(x0, xvp, eps, abar, p->clip_x0, n);
        if (p->sampler == DUET_SAMPLER_EULER) {
            duet_euler_step(x, x0, sigma, sigma_next, n);
        } else if (p->sampler == DUET_SAMPLER_EULER_A) {
            if (sigma_next > 0) duet_rng_normal(&rng, noise, n, 0.0f, 1.0f);
            duet_euler_a_step(x, x0, sigma, sigma_next, sigma_next > 0 ? noise : NULL, n);
        } else {
            duet_dpmpp_2m_step(x, x0, have_old ? old : NULL, sigma, sigma_next, sigma_prev, n);
            memcpy(old, x0, (size_t)n * sizeof(float));
            have_old = 1;
            sigma_prev = sigma;
        }
        if (traj) {
            double sc = 1.0 / sqrt(1.0 + sigma_next * sigma_next);
            for (int64_t i = 0; i < n; i++) xvp[i] = (float)((double)x[i] * sc);
            traj(traj_ctx, k, p->steps, t, xvp, x0);
        }
    }
    return DUET_OK;
}
