/*
 * norm.c — LayerNorm and RMSNorm over the last dim, GroupNorm over channel
 * groups of images: raw forward/backward and their tape ops side by side.
 *
 * Forwards normalize rows with the dispatched row kernels (duet_k.layernorm_rows,
 * duet_k.rmsnorm_rows), split across threads by rows. Backwards are plain C:
 * input grads in parallel over rows (rows are independent), parameter grads in
 * parallel over columns (channels), each column summed by one thread in row
 * order. So every output is bitwise the same whatever the thread count.
 *
 * What it is not: batch norm (no running statistics) or a fused residual+norm.
 *
 * Sizes: N rows of C for LayerNorm/RMSNorm; N images of C channels × HW pixels
 * in G groups for GroupNorm.
 */
#include "nn/nn.h"
#include "kernels/kernels.h"

#include <string.h>

/* Rows per parallel task in the forwards (the kernel handles a block). */
#define NORM_ROW_BLOCK 16
/* The most columns one task holds when summing parameter grads (its double
 * sums live on its stack: 16 KB). */
#define NORM_COL_BLOCK 1024

/* ==== layernorm ==== */

void duet_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int64_t N, int64_t C,
                            float eps) {
    int64_t nblocks = (N + NORM_ROW_BLOCK - 1) / NORM_ROW_BLOCK;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C))
    for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t r0 = blk * NORM_ROW_BLOCK, nr = DUET_MIN(NORM_ROW_BLOCK, N - r0);
        duet_k.layernorm_rows(out + r0 * C, mean ? mean + r0 : NULL, rstd ? rstd + r0 : NULL,
                              inp + r0 * C, weight, bias, nr, C, eps);
    }
}

/* The parameter grads of LayerNorm and RMSNorm (xhat = (x - mean) * rstd;
 * RMSNorm: mean NULL, taken as 0, which gives the same bits as x * rstd):
 * dweight[j] += sum over rows of dout * xhat, dbias[j] += sum of dout, in
 * double, each column by one task in row order (so the same bits for any
 * thread count). The tasks are ranges of columns (nn_col_range), one per
 * thread. */
static void layernorm_param_grads(float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *mean, const float *rstd, int64_t N,
                                  int64_t C) {
    int par;
    const int64_t per = nn_col_range(N, C, NORM_COL_BLOCK, &par);
    const int64_t ntasks = (C + per - 1) / per;
#pragma omp parallel for schedule(static) if (par && ntasks > 1)
    for (int64_t task = 0; task < ntasks; task++) {
        const int64_t j0 = task * per, nj = DUET_MIN(per, C - j0);
        double aw[NORM_COL_BLOCK], ab[NORM_COL_BLOCK];
        for (int64_t j = 0; j < nj; j++) aw[j] = ab[j] = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *x = inp + n * C + j0, *dy = dout + n * C + j0;
            const float m = mean ? mean[n] : 0.0f, s = rstd[n];
            if (dbias)
                for (int64_t j = 0; j < nj; j++) {
                    aw[j] += (double)(dy[j] * ((x[j] - m) * s));
                    ab[j] += (double)dy[j];
                }
            else
                for (int64_t j = 0; j < nj; j++) aw[j] += (double)(dy[j] * ((x[j] - m) * s));
        }
        for (int64_t j = 0; j < nj; j++) {
            if (dweight) dweight[j0 + j] += (float)aw[j];
            if (dbias) dbias[j0 + j] += (float)ab[j];
        }
    }
}

void duet_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int64_t N, int64_t C) {
    if (dinp) {
        /* dinp = rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)),
         * dnorm = dout * weight, xhat = (x - mean) * rstd. The two row sums
         * are in double, vectorised (omp simd: a fixed number of partial
         * sums, so a fixed order) */
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C))
        for (int64_t n = 0; n < N; n++) {
            const float *x = inp + n * C, *dy = dout + n * C;
            float *dx = dinp + n * C;
            const float m = mean[n], s = rstd[n];
            double sum_d = 0.0, sum_dx = 0.0;
            if (weight) {
#pragma omp simd reduction(+ : sum_d, sum_dx)
                for (int64_t i = 0; i < C; i++) {
                    const float dn = dy[i] * weight[i], xh = (x[i] - m) * s;
                    sum_d += (double)dn;
                    sum_dx += (double)dn * (double)xh;
                }
            } else {
#pragma omp simd reduction(+ : sum_d, sum_dx)
                for (int64_t i = 0; i < C; i++) {
                    const float dn = dy[i], xh = (x[i] - m) * s;
                    sum_d += (double)dn;
                    sum_dx += (double)dn * (double)xh;
                }
            }
            const float md = (float)(sum_d / (double)C), mdx = (float)(sum_dx / (double)C);
            if (weight)
                for (int64_t i = 0; i < C; i++)
                    dx[i] += s * (dy[i] * weight[i] - md - (x[i] - m) * s * mdx);
            else
                for (int64_t i = 0; i < C; i++) dx[i] += s * (dy[i] - md - (x[i] - m) * s * mdx);
        }
    }
    if (dweight || dbias) layernorm_param_grads(dweight, dbias, dout, inp, mean, rstd, N, C);
}

static void layernorm_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_tensor *x = r->in[0], *w = r->in[1], *b = r->in[2];
    duet_layernorm_backward(nn_grad(x), nn_grad(w), nn_grad(b), r->out->grad, nn_f32(x),
                            w ? nn_f32(w) : NULL, r->saved[0], r->saved[1], r->iarg[0],
                            r->iarg[1]);
}

/* Checks that an optional per-feature parameter p is f32 [C]. */
static int check_vec(duet_graph *g, const duet_tensor *p, int64_t C, const char *op,
                     const char *what, const duet_tensor *x) {
    if (!p) return 1;
    if (!nn_check(g, p, DUET_DTYPE_F32, op, what)) return 0;
    if (p->ndim != 1 || p->shape[0] != C) {
        char sx[64], sp[64];
        nn_fail(g, DUET_ERR_SHAPE, "%s: %s must be [%lld], got %s and %s", op, what, (long long)C,
                duet_tensor_describe(x, sx, sizeof sx), duet_tensor_describe(p, sp, sizeof sp));
        return 0;
    }
    return 1;
}

duet_tensor *duet_nn_layernorm(duet_graph *g, duet_tensor *x, duet_tensor *w, duet_tensor *b,
                               float eps) {
    if (!x) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "layernorm", "x")) return NULL;
    if (x->ndim < 1) return nn_fail(g, DUET_ERR_SHAPE, "layernorm: x must have at least 1 dim");
    int64_t C = x->shape[x->ndim - 1];
    if (!check_vec(g, w, C, "layernorm", "w", x) || !check_vec(g, b, C, "layernorm", "b", x))
        return NULL;
    int64_t N = C ? duet_tensor_numel(x) / C : 0;
    duet_tensor *out = nn_out_like(g, x);
    float *mean = duet_graph_alloc(g, sizeof(float) * (size_t)(N + 1));
    float *rstd = duet_graph_alloc(g, sizeof(float) * (size_t)(N + 1));
    if (!out || !mean || !rstd) return NULL;
    duet_layernorm_forward(nn_f32(out), mean, rstd, nn_f32(x), w ? nn_f32(w) : NULL,
                           b ? nn_f32(b) : NULL, N, C, eps);
    duet_record *r =
        duet_graph_record(g, DUET_OP_LAYERNORM, layernorm_tape_backward, out, x, w, b, NULL);
    if (r) {
        r->saved[0] = mean;
        r->saved[1] = rstd;
        r->iarg[0] = N;
        r->iarg[1] = C;
        r->farg[0] = eps;
    }
    return out;
}

/* ==== rmsnorm ==== */

void duet_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                          int64_t N, int64_t C, float eps) {
    int64_t nblocks = (N + NORM_ROW_BLOCK - 1) / NORM_ROW_BLOCK;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C))
    for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t r0 = blk * NORM_ROW_BLOCK, nr = DUET_MIN(NORM_ROW_BLOCK, N - r0);
        duet_k.rmsnorm_rows(out + r0 * C, rstd ? rstd + r0 : NULL, inp + r0 * C, weight, nr, C,
                            eps);
    }
}

void duet_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                           const float *weight, const float *rstd, int64_t N, int64_t C) {
    if (dinp) {
        /* y = x * s * w, s = (mean(x^2) + eps)^-1/2, ds/dx_i = -s^3 x_i / C:
         * dx_i = s * dn_i - s^3 / C * x_i * sum_k(dn_k x_k), dn = dout * w */
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C))
        for (int64_t n = 0; n < N; n++) {
            const float *x = inp + n * C, *dy = dout + n * C;
            float *dx = dinp + n * C;
            const float s = rstd[n];
            double dot = 0.0; /* vectorised: a fixed number of partial sums */
            if (weight) {
#pragma omp simd reduction(+ : dot)
                for (int64_t i = 0; i < C; i++) dot += (double)(dy[i] * weight[i]) * (double)x[i];
            } else {
#pragma omp simd reduction(+ : dot)
                for (int64_t i = 0; i < C; i++) dot += (double)dy[i] * (double)x[i];
            }
            const float k = (float)((double)s * (double)s * (double)s * dot / (double)C);
            if (weight)
                for (int64_t i = 0; i < C; i++) dx[i] += s * (dy[i] * weight[i]) - k * x[i];
            else
                for (int64_t i = 0; i < C; i++) dx[i] += s * dy[i] - k * x[i];
        }
    }
    if (dweight) layernorm_param_grads(dweight, NULL, dout, inp, NULL, rstd, N, C);
}

static void rmsnorm_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_tensor *x = r->in[0], *w = r->in[1];
    duet_rmsnorm_backward(nn_grad(x), nn_grad(w), r->out->grad, nn_f32(x), w ? nn_f32(w) : NULL,
                          r->saved[0], r->iarg[0], r->iarg[1]);
}

duet_tensor *duet_nn_rmsnorm(duet_graph *g, duet_tensor *x, duet_tensor *w, float eps) {
    if (!x) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "rmsnorm", "x")) return NULL;
    if (x->ndim < 1) return nn_fail(g, DUET_ERR_SHAPE, "rmsnorm: x must have at least 1 dim");
    int64_t C = x->shape[x->ndim - 1];
    if (!check_vec(g, w, C, "rmsnorm", "w", x)) return NULL;
    int64_t N = C ? duet_tensor_numel(x) / C : 0;
    duet_tensor *out = nn_out_like(g, x);
    float *rstd = duet_graph_alloc(g, sizeof(float) * (size_t)(N + 1));
    if (!out || !rstd) return NULL;
    duet_rmsnorm_forward(nn_f32(out), rstd, nn_f32(x), w ? nn_f32(w) : NULL, N, C, eps);
    duet_record *r = duet_graph_record(g, DUET_OP_RMSNORM, rmsnorm_tape_backward, out, x, w, NULL,
                                       NULL);
    if (r) {
        r->saved[0] = rstd;
        r->iarg[0] = N;
        r->iarg[1] = C;
        r->farg[0] = eps;
    }
    return out;
}

/* ==== groupnorm ==== */
/* inp [N, C, HW]; group g of image n is the contiguous run of CG = C/G
 * channels × HW pixels, normalized as one LayerNorm row; then each channel
 * gets its own scale and shift. */

void duet_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int64_t N, int64_t C,
                            int64_t HW, int64_t G, float eps) {
    DUET_ASSERT(G > 0 && C % G == 0);
    int64_t CG = C / G, L = CG * HW;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C * HW))
    for (int64_t ng = 0; ng < N * G; ng++) {
        duet_k.layernorm_rows(out + ng * L, mean ? mean + ng : NULL, rstd ? rstd + ng : NULL,
                              inp + ng * L, NULL, NULL, 1, L, eps);
        if (!weight && !bias) continue;
        int64_t c0 = (ng % G) * CG;
        for (int64_t c = 0; c < CG; c++) {
            float w = weight ? weight[c0 + c] : 1.0f, b = bias ? bias[c0 + c] : 0.0f;
            float *y = out + ng * L + c * HW;
            for (int64_t i = 0; i < HW; i++) y[i] = y[i] * w + b;
        }
    }
}

void duet_groupnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int64_t N, int64_t C, int64_t HW, int64_t G) {
    DUET_ASSERT(G > 0 && C % G == 0);
    int64_t CG = C / G, L = CG * HW;
    if (dinp) {
        /* as LayerNorm over the group's L values, with dnorm = dout * w[c] */
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C * HW))
        for (int64_t ng = 0; ng < N * G; ng++) {
            const float *x = inp + ng * L, *dy = dout + ng * L;
            float *dx = dinp + ng * L;
            float m = mean[ng], s = rstd[ng];
            int64_t c0 = (ng % G) * CG;
            double sum_d = 0.0, sum_dx = 0.0;
            for (int64_t c = 0; c < CG; c++) {
                float w = weight ? weight[c0 + c] : 1.0f;
                for (int64_t i = c * HW; i < (c + 1) * HW; i++) {
                    float dn = dy[i] * w, xh = (x[i] - m) * s;
                    sum_d += (double)dn;
                    sum_dx += (double)dn * (double)xh;
                }
            }
            float md = (float)(sum_d / (double)L), mdx = (float)(sum_dx / (double)L);
            for (int64_t c = 0; c < CG; c++) {
                float w = weight ? weight[c0 + c] : 1.0f;
                for (int64_t i = c * HW; i < (c + 1) * HW; i++) {
                    float dn = dy[i] * w, xh = (x[i] - m) * s;
                    dx[i] += s * (dn - md - xh * mdx);
                }
            }
        }
    }
    if (!dweight && !dbias) return;
    /* one channel per task: sums over images and pixels in a fixed order */
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C * HW))
    for (int64_t c = 0; c < C; c++) {
        double aw = 0.0, ab = 0.0;
        for (int64_t n = 0; n < N; n++) {
            int64_t ng = n * G + c / CG;
            float m = mean[ng], s = rstd[ng];
            const float *x = inp + (n * C + c) * HW, *dy = dout + (n * C + c) * HW;
            for (int64_t i = 0; i < HW; i++) {
                aw += (double)(dy[i] * ((x[i] - m) * s));
                ab += (double)dy[i];
            }
        }
        if (dweight) dweight[c] += (float)aw;
        if (dbias) dbias[c] += (float)ab;
    }
}

static void groupnorm_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_tensor *x = r->in[0], *w = r->in[1], *b = r->in[2];
    duet_groupnorm_backward(nn_grad(x), nn_grad(w), nn_grad(b), r->out->grad, nn_f32(x),
                            w ? nn_f32(w) : NULL, r->saved[0], r->saved[1], r->iarg[0],
                            r->iarg[1], r->iarg[2], r->iarg[3]);
}

duet_tensor *duet_nn_groupnorm(duet_graph *g, duet_tensor *x, duet_tensor *w, duet_tensor *b,
                               int64_t groups, float eps) {
    if (!x) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "groupnorm", "x")) return NULL;
    char sx[64];
    if (x->ndim != 3 && x->ndim != 4)
        return nn_fail(g, DUET_ERR_SHAPE, "groupnorm: x must be [N, C, H, W] or [N, C, L], got %s",
                       duet_tensor_describe(x, sx, sizeof sx));
    int64_t N = x->shape[0], C = x->shape[1], HW = nn_inner(x, 2);
    if (groups <= 0 || C % groups != 0)
        return nn_fail(g, DUET_ERR_SHAPE, "groupnorm: %lld channels do not split into %lld groups, got %s",
                       (long long)C, (long long)groups, duet_tensor_describe(x, sx, sizeof sx));
    if (!check_vec(g, w, C, "groupnorm", "w", x) || !check_vec(g, b, C, "groupnorm", "b", x))
        return NULL;
    duet_tensor *out = nn_out_like(g, x);
    float *mean = duet_graph_alloc(g, sizeof(float) * (size_t)(N * groups + 1));
    float *rstd = duet_graph_alloc(g, sizeof(float) * (size_t)(N * groups + 1));
    if (!out || !mean || !rstd) return NULL;
    duet_groupnorm_forward(nn_f32(out), mean, rstd, nn_f32(x), w ? nn_f32(w) : NULL,
                           b ? nn_f32(b) : NULL, N, C, HW, groups, eps);
    duet_record *r =
        duet_graph_record(g, DUET_OP_GROUPNORM, groupnorm_tape_backward, out, x, w, b, NULL);
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
