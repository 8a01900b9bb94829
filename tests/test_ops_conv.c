/*
 * test_ops_conv.c — conv2d at the sizes where the fast paths take over (the
 * implicit-GEMM kernels of src/kernels/conv_avx512.c: several weight panels,
 * several K blocks, tiles that straddle output rows or end early, 1x1, 3x3
 * and 5x5 kernels, padding 0..2), checked against the definition of the
 * convolution evaluated in double (a direct loop in this file: the spec, not
 * our code), under every kernel set, with the += rule of the backward, and
 * bitwise the same on one and two threads. The small PyTorch-fixture cases
 * of conv2d live in test_ops_b.c.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t N, C, H, W, OC, K, stride, pad;
} shape_t;

static float *fnew(int64_t n, float v) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = v;
    return p;
}

/* out, dx, dw, db of loss = sum(out * r), straight from the definition. */
static void reference(const shape_t *s, const float *x, const float *w, const float *b,
                      const float *r, double *out, double *dx, double *dw, double *db) {
    const int64_t N = s->N, C = s->C, H = s->H, W = s->W, OC = s->OC, K = s->K;
    const int64_t OH = (H + 2 * s->pad - K) / s->stride + 1, OW = (W + 2 * s->pad - K) / s->stride + 1;
    memset(dx, 0, sizeof(double) * (size_t)(N * C * H * W));
    memset(dw, 0, sizeof(double) * (size_t)(OC * C * K * K));
    memset(db, 0, sizeof(double) * (size_t)OC);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++)
            for (int64_t y = 0; y < OH; y++)
                for (int64_t xx = 0; xx < OW; xx++) {
                    double acc = b ? (double)b[o] : 0.0;
                    const double g = (double)r[((n * OC + o) * OH + y) * OW + xx];
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t kh = 0; kh < K; kh++)
                            for (int64_t kw = 0; kw < K; kw++) {
                                int64_t ih = y * s->stride - s->pad + kh, iw = xx * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                int64_t xi = ((n * C + c) * H + ih) * W + iw;
                                int64_t wi = ((o * C + c) * K + kh) * K + kw;
                                acc += (double)x[xi] * (double)w[wi];
                                dx[xi] += g * (double)w[wi];
                                dw[wi] += g * (double)x[xi];
                            }
                    out[((n * OC + o) * OH + y) * OW + xx] = acc;
                    db[o] += g;
                }
}

static double rms_d(const double *a, int64_t n) {
    double q = 0.0;
    for (int64_t i = 0; i < n; i++) q += a[i] * a[i];
    return sqrt(q / (double)(n ? n : 1));
}

static void run_case(const shape_t *s) {
    const int64_t N = s->N, C = s->C, H = s->H, W = s->W, OC = s->OC, K = s->K;
    const int64_t OH = (H + 2 * s->pad - K) / s->stride + 1, OW = (W + 2 * s->pad - K) / s->stride + 1;
    const int64_t nx = N * C * H * W, nw = OC * C * K * K, no = N * OC * OH * OW;
    float *x = fnew(nx, 0), *w = fnew(nw, 0), *b = fnew(OC, 0), *r = fnew(no, 0);
    t_fill_uniform(x, nx, 1 + (uint64_t)nx, -1, 1);
    t_fill_uniform(w, nw, 2 + (uint64_t)nw, -1, 1);
    t_fill_uniform(b, OC, 3, -1, 1);
    t_fill_uniform(r, no, 4 + (uint64_t)no, -1, 1);
    double *out_ref = malloc(sizeof(double) * (size_t)no), *dx_ref = malloc(sizeof(double) * (size_t)nx);
    double *dw_ref = malloc(sizeof(double) * (size_t)nw), *db_ref = malloc(sizeof(double) * (size_t)OC);
    reference(s, x, w, b, r, out_ref, dx_ref, dw_ref, db_ref);
    double *two = malloc(sizeof(double) * (size_t)(nx > nw ? nx : nw));
    float *scratch = fnew(duet_conv2d_scratch_floats(C, H, W, K, s->stride, s->pad), NAN);
    char what[192];
    static const char *const isas[] = {"scalar", "avx2", "avx512"};
    char def[16];
    snprintf(def, sizeof def, "%s", duet_kernel_isa());
    for (int ii = 0; ii < 3; ii++) {
        if (duet_kernel_force(isas[ii]) != DUET_OK) continue;
        float *o1 = NULL, *dx1 = NULL, *dw1 = NULL;
        for (int nt = 1; nt <= 2; nt++) {
            duet_set_threads(nt);
            float *out = fnew(no, NAN), *dx = fnew(nx, 0), *dw = fnew(nw, 0), *db = fnew(OC, 0);
            duet_conv2d_forward(out, x, w, b, scratch, N, C, H, W, OC, K, s->stride, s->pad);
            duet_conv2d_backward(dx, dw, db, r, x, w, scratch, N, C, H, W, OC, K, s->stride, s->pad);
            const char *tag = isas[ii];
#define NAME(q) (snprintf(what, sizeof what, "conv N%lld C%lld %lldx%lld OC%lld K%lld s%lld p%lld [%s, %d thr] %s", \
                          (long long)N, (long long)C, (long long)H, (long long)W, (long long)OC,             \
                          (long long)K, (long long)s->stride, (long long)s->pad, tag, nt, q), what)
            /* sums of up to C*K*K (forward, dx) or N*OH*OW (dw, db) fp32
             * products against double: relative error grows like sqrt(terms) */
            /* 3x3, stride 1, pad 1 under AVX-512 is Winograd F(4x4, 3x3), which
             * rounds more: within 1e-4 x RMS of the output (measured up to
             * ~4e-5; see tests/test_conv_winograd.c) */
            const int wg = K == 3 && s->stride == 1 && s->pad == 1 && ii == 2;
            const double ao = wg ? 1e-4 * rms_d(out_ref, no) : 2e-5, ax = wg ? 1e-4 * rms_d(dx_ref, nx) : 2e-5;
            t_close_d(NAME("out"), out, out_ref, no, 1e-5, ao);
            t_close_d(NAME("dx"), dx, dx_ref, nx, 1e-5, ax);
            t_close_d(NAME("dw"), dw, dw_ref, nw, 1e-5, 1e-4);
            t_close_d(NAME("db"), db, db_ref, OC, 1e-5, 1e-4);
            if (nt == 1) {
                /* += rule: a second backward adds the same again */
                duet_conv2d_backward(dx, dw, NULL, r, x, w, scratch, N, C, H, W, OC, K, s->stride, s->pad);
                for (int64_t i = 0; i < nx; i++) two[i] = 2.0 * dx_ref[i];
                t_close_d(NAME("dx accumulates"), dx, two, nx, 1e-5, 2 * ax);
                for (int64_t i = 0; i < nw; i++) two[i] = 2.0 * dw_ref[i];
                t_close_d(NAME("dw accumulates"), dw, two, nw, 1e-5, 2e-4);
                /* and again for the next thread count's comparison */
                memset(dx, 0, sizeof(float) * (size_t)nx), memset(dw, 0, sizeof(float) * (size_t)nw);
                duet_conv2d_backward(dx, dw, NULL, r, x, w, scratch, N, C, H, W, OC, K, s->stride, s->pad);
                o1 = out, dx1 = dx, dw1 = dw;
                free(db);
            } else {
                T_CHECK(memcmp(o1, out, sizeof(float) * (size_t)no) == 0 &&
                            memcmp(dx1, dx, sizeof(float) * (size_t)nx) == 0 &&
                            memcmp(dw1, dw, sizeof(float) * (size_t)nw) == 0,
                        "%s", NAME("bitwise equal on 1 and 2 threads"));
#undef NAME
                free(out), free(dx), free(dw), free(db);
            }
        }
        free(o1), free(dx1), free(dw1);
    }
    duet_kernel_force(def);
    free(x), free(w), free(b), free(r), free(out_ref), free(dx_ref), free(dw_ref), free(db_ref);
    free(two), free(scratch);
}

int main(void) {
    duet_init();
    const int nt0 = duet_get_threads();
    static const shape_t cases[] = {
        /* N  C   H   W  OC K  s  p */
        {3, 45, 11, 9, 31, 3, 1, 1},  /* 2 K blocks, 3 weight panels, tiles over rows */
        {2, 20, 7, 7, 16, 3, 1, 0},   /* no padding, 5x5 output */
        {2, 8, 6, 10, 5, 5, 1, 2},    /* 5x5 kernel, pad 2 */
        {4, 33, 8, 8, 20, 1, 1, 0},   /* pointwise */
        {2, 6, 5, 5, 7, 1, 1, 1},     /* 1x1 with padding: the im2col path */
        {3, 16, 32, 32, 24, 3, 1, 1}, /* one output row per tile, several work units */
        {2, 130, 4, 4, 40, 3, 1, 1},  /* 1170 taps: several column chunks of dw */
        {2, 12, 9, 9, 10, 3, 2, 1},   /* stride 2: the im2col path */
        {1, 3, 28, 28, 32, 3, 1, 1},  /* the painter's first conv at 28x28 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    duet_set_threads(nt0);
    return t_done();
}
