/*
 * test_conv_winograd.c — the Winograd F(4x4, 3x3) convolution
 * (src/kernels/conv_winograd.c) against a direct convolution summed in
 * double: many shapes (channel counts not multiples of 16, images not
 * multiples of 4, one to three images, several tile blocks and a partial
 * last one), with and without bias, per-image channel bias and beta = 1;
 * 1 vs 2 threads bitwise; the off switch; and that duet_conv2d_forward /
 * duet_conv2d_backward (input gradient) route through it.
 *
 * Tolerance. Winograd F(4x4, 3x3) rounds more than a direct sum: the
 * transforms scale entries by up to 8 and 1/24 and the output transform adds
 * terms of mixed sign. Measured in fp32 against double (inputs and weights
 * uniform in [-1, 1], 16..256 channels, 32x32): max |error| 1.0e-5 .. 4.5e-5
 * of the output's RMS, RMS error 1e-6 .. 3.4e-6 of it (a direct fp32 sum:
 * max 2e-6 .. 6e-6, RMS 2e-7 .. 9e-7). So every element must be within
 * 1e-4 x RMS(reference) (about twice the worst measured) and the RMS error
 * within 1e-5 x RMS(reference). A wrong index, mask or transform entry gives
 * errors of the order of the output itself.
 *
 * Without AVX-512 the path does not apply (it returns -1) and only that is
 * checked.
 */
#include "testutil.h"
#include "kernels/conv_gemm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t N, C, H, W, OC;
} shape_t;

static float *fnew(int64_t n, float v) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = v;
    return p;
}

/* out[n][o][y][x] = beta*out0 + sum w[o][c][kh][kw] x[n][c][y-1+kh][x-1+kw]
 *                  + bias[o] + cb[n*OC+o], in double */
static void reference(double *ref, const float *x, const float *w, const float *bias,
                      const float *cb, const float *out0, const shape_t *s) {
    const int64_t N = s->N, C = s->C, H = s->H, W = s->W, OC = s->OC;
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t xx = 0; xx < W; xx++) {
                    const int64_t i = ((n * OC + o) * H + y) * W + xx;
                    double acc = out0 ? (double)out0[i] : 0.0;
                    if (bias) acc += (double)bias[o];
                    if (cb) acc += (double)cb[n * OC + o];
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t kh = 0; kh < 3; kh++) {
                            const int64_t iy = y - 1 + kh;
                            if (iy < 0 || iy >= H) continue;
                            for (int64_t kw = 0; kw < 3; kw++) {
                                const int64_t ix = xx - 1 + kw;
                                if (ix < 0 || ix >= W) continue;
                                acc += (double)w[((o * C + c) * 3 + kh) * 3 + kw] *
                                       (double)x[((n * C + c) * H + iy) * W + ix];
                            }
                        }
                    ref[i] = acc;
                }
}

static double rms_d(const double *a, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i] * a[i];
    return sqrt(s / (double)(n > 0 ? n : 1));
}

/* the two bounds of the header; returns the max error / RMS for the log */
static double check_wg(const char *what, const float *got, const double *ref, int64_t n) {
    const double r = rms_d(ref, n);
    double se = 0.0, me = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - ref[i]);
        se += e * e;
        me = e > me ? e : me;
    }
    t_close_d(what, got, ref, n, 0.0, 1e-4 * r);
    T_CHECK(sqrt(se / (double)n) <= 1e-5 * r, "%s: RMS error %.3g > 1e-5 x RMS %.3g", what,
            sqrt(se / (double)n), r);
    return me / r;
}

static double worst_rel = 0.0;

/* variant: 0 plain, 1 bias, 2 bias + channel bias, 3 channel bias + beta 1 */
static void run_case(const shape_t *s, int variant) {
    const int64_t N = s->N, C = s->C, H = s->H, W = s->W, OC = s->OC;
    const int64_t nx = N * C * H * W, nw = OC * C * 9, no = N * OC * H * W;
    float *x = fnew(nx, 0), *w = fnew(nw, 0), *b = fnew(OC, 0), *cb = fnew(N * OC, 0);
    float *out0 = fnew(no, 0);
    const uint64_t seed = (uint64_t)(nx + 7 * nw + 13 * variant);
    t_fill_uniform(x, nx, seed + 1, -1, 1);
    t_fill_uniform(w, nw, seed + 2, -1, 1);
    t_fill_uniform(b, OC, seed + 3, -1, 1);
    t_fill_uniform(cb, N * OC, seed + 4, -1, 1);
    t_fill_uniform(out0, no, seed + 5, -4, 4);
    const float *bias = variant >= 1 && variant <= 2 ? b : NULL;
    const float *cbias = variant >= 2 ? cb : NULL;
    const float beta = variant == 3 ? 1.0f : 0.0f;
    double *ref = malloc(sizeof(double) * (size_t)no);
    reference(ref, x, w, bias, cbias, beta != 0.0f ? out0 : NULL, s);
    char what[160];
    float *o1 = NULL;
    for (int nt = 1; nt <= 2; nt++) {
        duet_set_threads(nt);
        float *out = fnew(no, 0);
        if (beta != 0.0f) memcpy(out, out0, sizeof(float) * (size_t)no);
        else
            for (int64_t i = 0; i < no; i++) out[i] = NAN; /* beta 0 must not read out */
        snprintf(what, sizeof what, "winograd N%lld C%lld %lldx%lld OC%lld variant %d [%d thr]",
                 (long long)N, (long long)C, (long long)H, (long long)W, (long long)OC, variant,
                 nt);
        const int rc =
            duet_conv_winograd_forward(out, x, w, bias, cbias, beta, N, C, H, W, OC, 3, 1);
        T_CHECK(rc == 0, "%s: returned %d", what, rc);
        const double rel = check_wg(what, out, ref, no);
        worst_rel = rel > worst_rel ? rel : worst_rel;
        if (nt == 1) {
            o1 = out;
        } else {
            T_CHECK(memcmp(o1, out, sizeof(float) * (size_t)no) == 0,
                    "%s: bitwise equal on 1 and 2 threads", what);
            free(out);
        }
    }
    free(o1), free(x), free(w), free(b), free(cb), free(out0), free(ref);
}

/* duet_conv2d_forward and the input gradient of duet_conv2d_backward take
 * the Winograd path: bitwise equal to a direct call with the same
 * (flipped, transposed) weights, and still close to the double reference. */
static void run_dispatch(void) {
    const shape_t s = {2, 21, 13, 10, 18};
    const int64_t N = s.N, C = s.C, H = s.H, W = s.W, OC = s.OC;
    const int64_t nx = N * C * H * W, nw = OC * C * 9, no = N * OC * H * W;
    float *x = fnew(nx, 0), *w = fnew(nw, 0), *b = fnew(OC, 0), *dy = fnew(no, 0);
    t_fill_uniform(x, nx, 41, -1, 1);
    t_fill_uniform(w, nw, 42, -1, 1);
    t_fill_uniform(b, OC, 43, -1, 1);
    t_fill_uniform(dy, no, 44, -1, 1);
    float *scratch = fnew(duet_conv2d_scratch_floats(C, H, W, 3, 1, 1), 0);
    float *o_api = fnew(no, NAN), *o_wg = fnew(no, NAN);
    duet_conv2d_forward(o_api, x, w, b, scratch, N, C, H, W, OC, 3, 1, 1);
    T_CHECK(duet_conv_winograd_forward(o_wg, x, w, b, NULL, 0.0f, N, C, H, W, OC, 3, 1) == 0,
            "direct Winograd call");
    T_CHECK(memcmp(o_api, o_wg, sizeof(float) * (size_t)no) == 0,
            "duet_conv2d_forward takes the Winograd path");
    /* input gradient: dx[n][c] = sum_o conv(dy[n][o], W[o][c] flipped), accumulated */
    float *wt = fnew(nw, 0), *dx_api = fnew(nx, 0), *dx_wg = fnew(nx, 0);
    for (int64_t c = 0; c < C; c++)
        for (int64_t o = 0; o < OC; o++)
            for (int64_t k = 0; k < 9; k++) wt[(c * OC + o) * 9 + k] = w[(o * C + c) * 9 + 8 - k];
    t_fill_uniform(dx_api, nx, 45, -1, 1);
    memcpy(dx_wg, dx_api, sizeof(float) * (size_t)nx);
    double *ref = malloc(sizeof(double) * (size_t)nx);
    const shape_t st = {N, OC, H, W, C};
    reference(ref, dy, wt, NULL, NULL, dx_api, &st);
    duet_conv2d_backward(dx_api, NULL, NULL, dy, x, w, scratch, N, C, H, W, OC, 3, 1, 1);
    T_CHECK(duet_conv_winograd_forward(dx_wg, dy, wt, NULL, NULL, 1.0f, N, OC, H, W, C, 3, 1) == 0,
            "direct Winograd call (input gradient)");
    T_CHECK(memcmp(dx_api, dx_wg, sizeof(float) * (size_t)nx) == 0,
            "duet_conv2d_backward's input gradient takes the Winograd path");
    check_wg("conv2d_backward dx (Winograd) vs double", dx_api, ref, nx);

    /* off switch: not applicable, nothing written; the API falls back */
    duet_conv_winograd_enable(0);
    float *o_off = fnew(no, 7.0f);
    T_CHECK(duet_conv_winograd_forward(o_off, x, w, b, NULL, 0.0f, N, C, H, W, OC, 3, 1) == -1,
            "turned off: returns -1");
    int untouched = 1;
    for (int64_t i = 0; i < no; i++) untouched &= o_off[i] == 7.0f;
    T_CHECK(untouched, "turned off: output not written");
    duet_conv2d_forward(o_off, x, w, b, scratch, N, C, H, W, OC, 3, 1, 1);
    T_CHECK(memcmp(o_off, o_wg, sizeof(float) * (size_t)no) != 0,
            "turned off: duet_conv2d_forward takes another path");
    double *ref_o = malloc(sizeof(double) * (size_t)no);
    reference(ref_o, x, w, b, NULL, NULL, &s);
    t_close_d("turned off: the other path is still right", o_off, ref_o, no, 1e-5, 2e-5);
    duet_conv_winograd_enable(1);
    /* shapes it does not take */
    int others = 0;
    others += duet_conv_winograd_forward(o_off, x, w, b, NULL, 0.0f, N, C, H, W, OC, 3, 0) == -1;
    others += duet_conv_winograd_forward(o_off, x, w, b, NULL, 0.0f, N, C, H, W, OC, 5, 1) == -1;
    others += duet_conv_winograd_forward(o_off, x, w, b, NULL, 0.0f, N, C, H, W, OC, 1, 1) == -1;
    T_CHECK(others == 3, "only 3x3 with padding 1");
    free(x), free(w), free(b), free(dy), free(scratch), free(o_api), free(o_wg), free(wt);
    free(dx_api), free(dx_wg), free(ref), free(o_off), free(ref_o);
}

int main(void) {
    duet_init();
    const int nt0 = duet_get_threads();
    char def[16];
    snprintf(def, sizeof def, "%s", duet_kernel_isa());
    duet_conv_winograd_enable(1);
    if (duet_kernel_force("avx512") != DUET_OK) {
        float o = 0.0f, x = 1.0f, w[9] = {0};
        T_CHECK(duet_conv_winograd_forward(&o, &x, w, NULL, NULL, 0.0f, 1, 1, 1, 1, 1, 3, 1) == -1,
                "no AVX-512: not applicable");
        printf("no AVX-512 on this CPU: Winograd path not tested\n");
        return t_done();
    }
    static const shape_t cases[] = {
        /* N  C   H   W  OC */
        {1, 1, 1, 1, 1},     /* one pixel: a tile mostly outside the image */
        {1, 3, 2, 3, 5},     /* image smaller than a tile */
        {2, 7, 5, 6, 9},     /* one full tile and partial ones */
        {3, 17, 9, 11, 15},  /* 9 tiles per image, 27 in all: one partial panel */
        {2, 33, 13, 7, 31},  /* C, OC past the microkernel's 14-row panels */
        {1, 16, 32, 32, 24}, /* 64 tiles: exactly one block */
        {3, 20, 16, 16, 47}, /* 48 tiles: a block with 16 tiles in its last panel */
        {2, 64, 30, 30, 64}, /* 128 tiles over two blocks, partial tiles at the edge */
        {3, 130, 8, 8, 40},  /* many channels, 12 tiles */
        {1, 256, 8, 12, 20}, /* the widest input of the painter's UNet */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int v = 0; v < 4; v++) run_case(&cases[i], v);
    duet_set_threads(nt0);
    run_dispatch();
    printf("worst max |error| / RMS(output): %.3g\n", worst_rel);
    duet_set_threads(nt0);
    duet_kernel_force(def);
    return t_done();
}
