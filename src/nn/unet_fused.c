/*
 * unet_fused.c — two fused ops for the painter's UNet (see unet_fused.h):
 *
 *  - groupnorm_silu: silu(groupnorm(x)). Forward, per (image, group): the
 *    LayerNorm row kernel normalizes the group's C/G channels x HW pixels
 *    (it stays in cache), the channel scale/shift and the SiLU kernel then
 *    run over it in place: one read of x, one write of out, and no
 *    GroupNorm output on the tape. Backward, per (image, group): the
 *    GroupNorm output y is recomputed from x, mean and rstd into a per-thread
 *    buffer, dy = dout * silu'(y) by the SiLU backward kernel, then the
 *    GroupNorm backward on dy (sums in double); the per-channel weight/bias
 *    sums are kept per image and added in image order afterwards, so the
 *    results do not depend on the thread count.
 *  - conv2d_chanbias: conv2d(x) + cb[n, o] (the ResBlock's timestep
 *    projection) with the channel bias added by the convolution's output
 *    pass, so the sum is never a separate tensor; backward is the
 *    convolution's plus dcb[n, o] = sum of dout over the pixels.
 *
 * What it is not: general fusion; other compositions stay separate ops.
 */
#include "nn/nn.h"
#include "nn/unet_fused.h"
#include "kernels/act.h"
#include "kernels/conv_gemm.h"
#include "kernels/kernels.h"

#include <omp.h>
#include <string.h>

/* ==== groupnorm + silu ==== */

void duet_groupnorm_silu_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int64_t N, int64_t C,
                                 int64_t HW, int64_t G, float eps) {
    DUET_ASSERT(G > 0 && C % G == 0);
    const int64_t CG = C / G, L = CG * HW;
    const duet_act_kernels *k = duet_act();
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C * HW))
    for (int64_t ng = 0; ng < N * G; ng++) {
        float *y = out + ng * L;
        duet_k.layernorm_rows(y, mean ? mean + ng : NULL, rstd ? rstd + ng : NULL, inp + ng * L,
                              NULL, NULL, 1, L, eps);
        if (weight || bias) {
            const int64_t c0 = (ng % G) * CG;
            for (int64_t c = 0; c < CG; c++) {
                const float w = weight ? weight[c0 + c] : 1.0f, b = bias ? bias[c0 + c] : 0.0f;
                float *yc = y + c * HW;
                for (int64_t i = 0; i < HW; i++) yc[i] = yc[i] * w + b;
            }
        }
        k->silu_fwd(y, y, L);
    }
}

void duet_groupnorm_silu_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, const float *bias,
                                  const float *mean, const float *rstd, int64_t N, int64_t C,
                                  int64_t HW, int64_t G) {
    DUET_ASSERT(G > 0 && C % G == 0);
    if (!dinp && !dweight && !dbias) return;
    const int64_t CG = C / G, L = CG * HW;
    const duet_act_kernels *k = duet_act();
    const int par = duet_omp_enough(N * C * HW) && !omp_in_parallel();
    const int nt = par ? duet_get_threads() : 1;
    /* per thread: y and dy of one group; per (image, channel): the sums of
     * dy * xhat and dy */
    float *buf = duet_alloc(sizeof(float) * (size_t)(2 * L * nt));
    double *part = (dweight || dbias) ? duet_alloc(sizeof(double) * (size_t)(2 * N * C)) : NULL;
    if (!buf || ((dweight || dbias) && !part)) {
        /* no memory: the plain composition, through a full-size dy */
        duet_free(buf);
        duet_free(part);
        float *y = duet_alloc(sizeof(float) * (size_t)(N * C * HW));
        float *dy = duet_alloc(sizeof(float) * (size_t)(N * C * HW));
        if (y && dy) {
            for (int64_t nc = 0; nc < N * C; nc++) {
                const int64_t ng = nc / CG, c = nc % C;
                const float w = weight ? weight[c] : 1.0f, b = bias ? bias[c] : 0.0f;
                for (int64_t i = 0; i < HW; i++)
                    y[nc * HW + i] = (inp[nc * HW + i] - mean[ng]) * rstd[ng] * w + b;
            }
            memset(dy, 0, sizeof(float) * (size_t)(N * C * HW));
            duet_silu_backward(dy, dout, y, N * C * HW);
            duet_groupnorm_backward(dinp, dweight, dbias, dy, inp, weight, mean, rstd, N, C, HW, G);
        }
        duet_free(y);
        duet_free(dy);
        return;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *y = buf + (size_t)omp_get_thread_num() * (size_t)(2 * L), *dy = y + L;
#pragma omp for schedule(static)
        for (int64_t ng = 0; ng < N * G; ng++) {
            const float *x = inp + ng * L, *go = dout + ng * L;
            const float m = mean[ng], s = rstd[ng];
            const int64_t n = ng / G, c0 = (ng % G) * CG;
            for (int64_t c = 0; c < CG; c++) {
                const float w = weight ? weight[c0 + c] : 1.0f, b = bias ? bias[c0 + c] : 0.0f;
                const float *xc = x + c * HW;
                float *yc = y + c * HW;
                for (int64_t i = 0; i < HW; i++) yc[i] = (xc[i] - m) * s * w + b;
            }
            memset(dy, 0, sizeof(float) * (size_t)L);
            k->silu_bwd(dy, go, y, L);
            /* GroupNorm backward on dy, as duet_groupnorm_backward */
            double sum_d = 0.0, sum_dx = 0.0;
            for (int64_t c = 0; c < CG; c++) {
                const float w = weight ? weight[c0 + c] : 1.0f;
                const float *xc = x + c * HW, *dc = dy + c * HW;
                double aw = 0.0, ab = 0.0;
                for (int64_t i = 0; i < HW; i++) {
                    const float xh = (xc[i] - m) * s, dn = dc[i] * w;
                    sum_d += (double)dn;
                    sum_dx += (double)dn * (double)xh;
                    aw += (double)(dc[i] * xh);
                    ab += (double)dc[i];
                }
                if (part) {
                    part[2 * (n * C + c0 + c)] = aw;
                    part[2 * (n * C + c0 + c) + 1] = ab;
                }
            }
            if (dinp) {
                const float md = (float)(sum_d / (double)L), mdx = (float)(sum_dx / (double)L);
                float *dx = dinp + ng * L;
                for (int64_t c = 0; c < CG; c++) {
                    const float w = weight ? weight[c0 + c] : 1.0f;
                    const float *xc = x + c * HW, *dc = dy + c * HW;
                    float *dxc = dx + c * HW;
                    for (int64_t i = 0; i < HW; i++) {
                        const float xh = (xc[i] - m) * s;
                        dxc[i] += s * (dc[i] * w - md - xh * mdx);
                    }
                }
            }
        }
    }
    if (part)
        for (int64_t c = 0; c < C; c++) {
            double aw = 0.0, ab = 0.0;
            for (int64_t n = 0; n < N; n++) {
                aw += part[2 * (n * C + c)];
                ab += part[2 * (n * C + c) + 1];
            }
            if (dweight) dweight[c] += (float)aw;
            if (dbias) dbias[c] += (float)ab;
        }
    duet_free(part);
    duet_free(buf);
}

static void groupnorm_silu_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_tensor *x = r->in[0], *w = r->in[1], *b = r->in[2];
    duet_groupnorm_silu_backward(nn_grad(x), nn_grad(w), nn_grad(b), r->out->grad, nn_f32(x),
                                 w ? nn_f32(w) : NULL, b ? nn_f32(b) : NULL, r->saved[0],
                                 r->saved[1], r->iarg[0], r->iarg[1], r->iarg[2], r->iarg[3]);
}

/* Checks that an optional per-channel parameter p is f32 [C]. */
static int check_vec(duet_graph *g, const duet_tensor *p, int64_t C, const char *op,
                     const char *what) {
    if (!p) return 1;
    if (!nn_check(g, p, DUET_DTYPE_F32, op, what)) return 0;
    if (p->ndim != 1 || p->shape[0] != C) {
        char sp[64];
        nn_fail(g, DUET_ERR_SHAPE, "%s: %s must be [%lld], got %s", op, what, (long long)C,
                duet_tensor_describe(p, sp, sizeof sp));
        return 0;
    }
    return 1;
}

duet_tensor *duet_nn_groupnorm_silu(duet_graph *g, duet_tensor *x, duet_tensor *w,
                                    duet_tensor *b, int64_t groups, float eps) {
    if (!x) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "groupnorm_silu", "x")) return NULL;
    char sx[64];
    if (x->ndim != 3 && x->ndim != 4)
        return nn_fail(g, DUET_ERR_SHAPE, "groupnorm_silu: x must be [N, C, H, W] or [N, C, L], got %s",
                       duet_tensor_describe(x, sx, sizeof sx));
    const int64_t N = x->shape[0], C = x->shape[1], HW = nn_inner(x, 2);
    if (groups <= 0 || C % groups != 0)
        return nn_fail(g, DUET_ERR_SHAPE, "groupnorm_silu: %lld channels do not split into %lld groups",
                       (long long)C, (long long)groups);
    if (!check_vec(g, w, C, "groupnorm_silu", "w") || !check_vec(g, b, C, "groupnorm_silu", "b"))
        return NULL;
    duet_tensor *out = nn_out_like(g, x);
    float *mean = duet_graph_alloc(g, sizeof(float) * (size_t)(N * groups + 1));
    float *rstd = duet_graph_alloc(g, sizeof(float) * (size_t)(N * groups + 1));
    if (!out || !mean || !rstd) return NULL;
    duet_groupnorm_silu_forward(nn_f32(out), mean, rstd, nn_f32(x), w ? nn_f32(w) : NULL,
                                b ? nn_f32(b) : NULL, N, C, HW, groups, eps);
    duet_record *r = duet_graph_record(g, DUET_OP_GROUPNORM, groupnorm_silu_tape_backward, out, x,
                                       w, b, NULL);
    if (r) {
        r->saved[0] = mean;
        r->saved[1] = rstd;
        r->iarg[0] = N;
        r->iarg[1] = C;
        r->iarg[2] = HW;
        r->iarg[3] = groups;
        r->farg[0] = eps;
    }
    return out;
}

/* ==== conv2d + channel bias ==== */

/* iarg: N, C, H, W, OC, K, stride, pad; saved[0]: im2col scratch */
static void conv2d_chanbias_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    const int64_t *a = r->iarg;
    const int64_t OH = (a[2] + 2 * a[7] - a[5]) / a[6] + 1, OW = (a[3] + 2 * a[7] - a[5]) / a[6] + 1;
    float *dcb = nn_grad(r->in[3]);
    if (dcb) duet_add_channel_backward(NULL, dcb, r->out->grad, a[0], a[4], OH * OW);
    duet_conv2d_backward(nn_grad(r->in[0]), nn_grad(r->in[1]), r->in[2] ? nn_grad(r->in[2]) : NULL,
                         r->out->grad, nn_f32(r->in[0]), nn_f32(r->in[1]), r->saved[0], a[0], a[1],
                         a[2], a[3], a[4], a[5], a[6], a[7]);
}

duet_tensor *duet_nn_conv2d_chanbias(duet_graph *g, duet_tensor *x, duet_tensor *w,
                                     duet_tensor *b, duet_tensor *cb, int64_t stride,
                                     int64_t pad) {
    if (!x || !w || !cb) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "conv2d_chanbias", "x") ||
        !nn_check(g, w, DUET_DTYPE_F32, "conv2d_chanbias", "weight") ||
        !nn_check(g, cb, DUET_DTYPE_F32, "conv2d_chanbias", "channel bias") ||
        (b && !nn_check(g, b, DUET_DTYPE_F32, "conv2d_chanbias", "bias")))
        return NULL;
    if (x->ndim != 4 || w->ndim != 4 || w->shape[1] != x->shape[1] || w->shape[2] != w->shape[3] ||
        w->shape[2] < 1)
        return nn_fail(g, DUET_ERR_SHAPE, "conv2d_chanbias: want x [N,C,H,W] and weight [OC,C,K,K]");
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t OC = w->shape[0], K = w->shape[2];
    if (b && (b->ndim != 1 || b->shape[0] != OC))
        return nn_fail(g, DUET_ERR_SHAPE, "conv2d_chanbias: bias must be [%lld]", (long long)OC);
    if (cb->ndim != 2 || cb->shape[0] != N || cb->shape[1] != OC)
        return nn_fail(g, DUET_ERR_SHAPE, "conv2d_chanbias: channel bias must be [%lld, %lld]",
                       (long long)N, (long long)OC);
    if (stride < 1 || pad < 0 || H + 2 * pad < K || W + 2 * pad < K)
        return nn_fail(g, DUET_ERR_ARG, "conv2d_chanbias: bad stride %lld / pad %lld for a %lldx%lld image",
                       (long long)stride, (long long)pad, (long long)H, (long long)W);
    const int64_t OH = (H + 2 * pad - K) / stride + 1, OW = (W + 2 * pad - K) / stride + 1;
    duet_tensor *out = nn_out(g, 4, (int64_t[]){N, OC, OH, OW});
    const int64_t ns = duet_conv2d_scratch_floats(C, H, W, K, stride, pad);
    float *scratch = duet_graph_alloc(g, sizeof(float) * (size_t)ns + 4);
    if (!out || !scratch) return NULL;
    float *o = nn_f32(out);
    if (stride != 1 || duet_conv_igemm_forward(o, nn_f32(x), nn_f32(w), b ? nn_f32(b) : NULL,
                                               nn_f32(cb), 0.0f, N, C, H, W, OC, K, pad) != 0) {
        duet_conv2d_forward(o, nn_f32(x), nn_f32(w), b ? nn_f32(b) : NULL, scratch, N, C, H, W,
                            OC, K, stride, pad);
        duet_add_channel_forward(o, o, nn_f32(cb), N, OC, OH * OW);
    }
    duet_record *r =
        duet_graph_record(g, DUET_OP_CONV2D, conv2d_chanbias_tape_backward, out, x, w, b, cb);
    if (r) {
        int64_t ia[8] = {N, C, H, W, OC, K, stride, pad};
        memcpy(r->iarg, ia, sizeof ia);
        r->saved[0] = scratch;
    }
    return out;
}
