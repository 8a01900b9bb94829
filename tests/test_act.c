/*
 * test_act.c — the vectorized activation kernels (src/kernels/act*.c) of
 * every kernel set this CPU runs, against the same functions computed in
 * double precision with libm, over a dense grid of inputs and odd lengths
 * (vector bodies and scalar tails). Tolerances: 2e-6 relative, and an
 * absolute floor set by the O(1) terms that cancel near zero crossings
 * (1 + x(1 - s) in the SiLU derivative, 1 + tanh u for very negative x):
 * float evaluation of those terms, scalar libm reference included, is only
 * good to a few 1e-7 absolute.
 */
#include "testutil.h"
#include "kernels/act.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NPTS 40001

static double sig(double x) { return 1.0 / (1.0 + exp(-x)); }

int main(void) {
    duet_init();
    float *x = malloc(sizeof(float) * NPTS), *g = malloc(sizeof(float) * NPTS);
    float *out = malloc(sizeof(float) * NPTS), *d1 = malloc(sizeof(float) * NPTS), *d2 = malloc(sizeof(float) * NPTS);
    double *want = malloc(sizeof(double) * NPTS), *w1 = malloc(sizeof(double) * NPTS), *w2 = malloc(sizeof(double) * NPTS);
    for (int i = 0; i < NPTS; i++) x[i] = -20.0f + 40.0f * (float)i / (NPTS - 1); /* step 0.001 */
    x[17] = 0.0f, x[18] = -0.0f, x[19] = 1e-30f, x[20] = -1e-30f, x[21] = 90.0f, x[22] = -90.0f;
    t_fill_uniform(g, NPTS, 5, -1.0f, 1.0f); /* upstream grads and "up" */
    const char *sets[] = {"scalar", "avx2", "avx512"};
    for (int k = 0; k < 3; k++) {
        if (duet_kernel_force(sets[k]) != DUET_OK) {
            T_CHECK(strcmp(sets[k], "scalar") != 0, "kernel set %s unavailable on this CPU", sets[k]);
            continue;
        }
        const duet_act_kernels *a = duet_act();
        char what[96];
        /* lengths that leave scalar tails */
        int64_t n = NPTS - 3;
        /* GELU (tanh form) */
        a->gelu_tanh_fwd(out, x, n);
        for (int64_t i = 0; i < n; i++) {
            double v = x[i], u = 0.7978845608028654 * (v + 0.044715 * v * v * v), t = tanh(u);
            want[i] = 0.5 * v * (1 + t);
            double du = 0.7978845608028654 * (1 + 3 * 0.044715 * v * v);
            w1[i] = (double)g[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du);
        }
        snprintf(what, sizeof what, "%s gelu_tanh forward", sets[k]);
        t_close_d(what, out, want, n, 2e-6, 1e-7);
        memset(d1, 0, sizeof(float) * NPTS);
        a->gelu_tanh_bwd(d1, g, x, n);
        snprintf(what, sizeof what, "%s gelu_tanh backward", sets[k]);
        t_close_d(what, d1, w1, n, 2e-6, 2e-6);
        /* SiLU */
        a->silu_fwd(out, x, n);
        for (int64_t i = 0; i < n; i++) {
            double v = x[i], s = sig(v);
            want[i] = v * s;
            w1[i] = (double)g[i] * s * (1 + v * (1 - s));
        }
        snprintf(what, sizeof what, "%s silu forward", sets[k]);
        t_close_d(what, out, want, n, 2e-6, 1e-7);
        memset(d1, 0, sizeof(float) * NPTS);
        a->silu_bwd(d1, g, x, n);
        snprintf(what, sizeof what, "%s silu backward", sets[k]);
        t_close_d(what, d1, w1, n, 2e-6, 2e-6);
        /* SwiGLU: gate = x, up = g, dout = reversed g */
        a->swiglu_fwd(out, x, g, n);
        for (int64_t i = 0; i < n; i++) {
            double v = x[i], s = sig(v), dy = (double)g[n - 1 - i];
            want[i] = v * s * (double)g[i];
            w1[i] = 1.0 + dy * (double)g[i] * s * (1 + v * (1 - s));
            w2[i] = -1.0 + dy * v * s;
        }
        snprintf(what, sizeof what, "%s swiglu forward", sets[k]);
        t_close_d(what, out, want, n, 2e-6, 1e-7);
        float *dy = malloc(sizeof(float) * NPTS);
        for (int64_t i = 0; i < n; i++) dy[i] = g[n - 1 - i], d1[i] = 1.0f, d2[i] = -1.0f;
        a->swiglu_bwd(d1, d2, dy, x, g, n);
        snprintf(what, sizeof what, "%s swiglu dgate (accumulated)", sets[k]);
        t_close_d(what, d1, w1, n, 2e-6, 2e-6);
        snprintf(what, sizeof what, "%s swiglu dup (accumulated)", sets[k]);
        t_close_d(what, d2, w2, n, 2e-6, 2e-6);
        /* NULL dgate leaves nothing behind and still fills dup */
        for (int64_t i = 0; i < n; i++) d2[i] = -1.0f;
        a->swiglu_bwd(NULL, d2, dy, x, g, n);
        snprintf(what, sizeof what, "%s swiglu dup with dgate NULL", sets[k]);
        t_close_d(what, d2, w2, n, 2e-6, 2e-6);
        free(dy);
    }
    duet_kernel_force("scalar");
    free(x), free(g), free(out), free(d1), free(d2), free(want), free(w1), free(w2);
    return t_done();
}
