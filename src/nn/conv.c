/*
 * conv.c — 2-D convolution (im2col + duet_sgemm), nearest-neighbour 2x
 * upsampling and 2x2 average pooling: raw forward/backward and their tape
 * ops, side by side. Images are [N, C, H, W] (PyTorch layout); conv weights
 * are [OC, C, K, K].
 *
 * conv2d, one image at a time:
 *   col[C*K*K, OH*OW] = im2col(inp[n])            (scratch, one image)
 *   out[n][OC, OH*OW] = weight[OC, C*K*K] @ col + bias
 * backward:
 *   dweight += dout[n] @ col^T,  dcol = weight^T @ dout[n],  dinp[n] += col2im(dcol)
 * A 1x1 convolution with stride 1 and no padding needs no im2col: the image
 * itself is the column matrix.
 *
 * Stride 1 with the AVX-512 kernel set takes the implicit-GEMM path
 * (src/kernels/conv_avx512.c): no column matrix at all, the GEMM panels are
 * packed straight from the image and the output written in place; the input
 * gradient is then the convolution of dout with the flipped, transposed
 * weights (padding K-1-pad). The im2col code below serves strided
 * convolutions and the other kernel sets.
 *
 * Threads: the GEMMs are threaded; im2col and col2im split over input
 * channels, so every output element has one writer and a fixed summation
 * order — the results do not depend on the thread count.
 *
 * 3x3 convolutions with stride 1 and padding 1 (forward and input gradient)
 * first try Winograd F(4x4, 3x3) (src/kernels/conv_winograd.c; off with
 * DUET_CONV_WINOGRAD=0).
 *
 * What it is not: a direct convolution, or grouped/dilated ones.
 */
#include "nn/nn.h"
#include "kernels/conv_gemm.h"

#include <string.h>

/* ==== conv2d ==== */

static inline int64_t conv_out_size(int64_t H, int64_t K, int64_t stride, int64_t pad) {
    return (H + 2 * pad - K) / stride + 1;
}

/* 1x1, stride 1, no padding: col is the image itself. */
static inline int conv_is_pointwise(int64_t K, int64_t stride, int64_t pad) {
    return K == 1 && stride == 1 && pad == 0;
}

int64_t duet_conv2d_scratch_floats(int64_t C, int64_t H, int64_t W, int64_t K, int64_t stride,
                                   int64_t pad) {
    if (conv_is_pointwise(K, stride, pad)) return 0;
    return C * K * K * conv_out_size(H, K, stride, pad) * conv_out_size(W, K, stride, pad);
}

/* col[(c*K + kh)*K + kw][oh*OW + ow] = inp[c][oh*stride - pad + kh][ow*stride - pad + kw]
 * (0 outside the image). inp is one image [C, H, W]. */
static void im2col(float *col, const float *inp, int64_t C, int64_t H, int64_t W, int64_t K,
                   int64_t stride, int64_t pad, int64_t OH, int64_t OW) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(C * K * K * OH * OW))
    for (int64_t c = 0; c < C; c++) {
        const float *x = inp + c * H * W;
        for (int64_t kh = 0; kh < K; kh++) {
            for (int64_t kw = 0; kw < K; kw++) {
                float *row = col + ((c * K + kh) * K + kw) * OH * OW;
                for (int64_t oh = 0; oh < OH; oh++) {
                    int64_t ih = oh * stride - pad + kh;
                    float *dst = row + oh * OW;
                    if (ih < 0 || ih >= H) {
                        memset(dst, 0, sizeof(float) * (size_t)OW);
                        continue;
                    }
                    const float *src = x + ih * W;
                    for (int64_t ow = 0; ow < OW; ow++) {
                        int64_t iw = ow * stride - pad + kw;
                        dst[ow] = (iw >= 0 && iw < W) ? src[iw] : 0.0f;
                    }
                }
            }
        }
    }
}

/* dinp[c][ih][iw] += sum of the col entries im2col took from there. Each
 * thread owns whole channels of dinp; the (kh, kw, oh, ow) order is fixed. */
static void col2im_add(float *dinp, const float *col, int64_t C, int64_t H, int64_t W, int64_t K,
                       int64_t stride, int64_t pad, int64_t OH, int64_t OW) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(C * K * K * OH * OW))
    for (int64_t c = 0; c < C; c++) {
        float *dx = dinp + c * H * W;
        for (int64_t kh = 0; kh < K; kh++) {
            for (int64_t kw = 0; kw < K; kw++) {
                const float *row = col + ((c * K + kh) * K + kw) * OH * OW;
                for (int64_t oh = 0; oh < OH; oh++) {
                    int64_t ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H) continue;
                    const float *src = row + oh * OW;
                    float *dst = dx + ih * W;
                    for (int64_t ow = 0; ow < OW; ow++) {
                        int64_t iw = ow * stride - pad + kw;
                        if (iw >= 0 && iw < W) dst[iw] += src[ow];
                    }
                }
            }
        }
    }
}

/* Per-image path: one im2col + GEMM per image in the caller's one-image
 * scratch. The fallback when the batched workspace cannot be allocated. */
static void conv2d_forward_per_image(float *out, const float *inp, const float *weight,
                                     const float *bias, float *scratch, int64_t N, int64_t C,
                                     int64_t H, int64_t W, int64_t OC, int64_t K, int64_t stride,
                                     int64_t pad) {
    const int64_t OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
    DUET_ASSERT(OH >= 1 && OW >= 1);
    const int64_t CKK = C * K * K, OHW = OH * OW;
    const int pointwise = conv_is_pointwise(K, stride, pad);
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * C * H * W;
        float *y = out + n * OC * OHW;
        const float *col = x;
        if (!pointwise) {
            im2col(scratch, x, C, H, W, K, stride, pad, OH, OW);
            col = scratch;
        }
        if (bias) {
            for (int64_t o = 0; o < OC; o++)
                for (int64_t i = 0; i < OHW; i++) y[o * OHW + i] = bias[o];
        }
        duet_sgemm(0, 0, OC, OHW, CKK, 1.0f, weight, CKK, col, OHW, bias ? 1.0f : 0.0f, y, OHW);
    }
}

/* dbias[o] += sum over images and pixels, images in order: deterministic */
static void conv2d_dbias(float *dbias, const float *dout, int64_t N, int64_t OC, int64_t OHW) {
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * OC * OHW))
    for (int64_t o = 0; o < OC; o++) {
        double s = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *dy = dout + (n * OC + o) * OHW;
            for (int64_t i = 0; i < OHW; i++) s += (double)dy[i];
        }
        dbias[o] += (float)s;
    }
}

static void conv2d_backward_per_image(float *dinp, float *dweight, const float *dout,
                                      const float *inp, const float *weight, float *scratch,
                                      int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC,
                                      int64_t K, int64_t stride, int64_t pad) {
    const int64_t OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
    const int64_t CKK = C * K * K, OHW = OH * OW;
    const int pointwise = conv_is_pointwise(K, stride, pad);
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * C * H * W;
        const float *dy = dout + n * OC * OHW;
        if (dweight) {
            const float *col = x;
            if (!pointwise) {
                im2col(scratch, x, C, H, W, K, stride, pad, OH, OW);
                col = scratch;
            }
            /* dweight[OC, CKK] += dy[OC, OHW] @ col[CKK, OHW]^T */
            duet_sgemm(0, 1, OC, CKK, OHW, 1.0f, dy, OHW, col, OHW, 1.0f, dweight, CKK);
        }
        if (dinp) {
            float *dx = dinp + n * C * H * W;
            if (pointwise) {
                /* dx[C, HW] += weight[OC, C]^T @ dy[OC, HW] */
                duet_sgemm(1, 0, CKK, OHW, OC, 1.0f, weight, CKK, dy, OHW, 1.0f, dx, OHW);
            } else {
                duet_sgemm(1, 0, CKK, OHW, OC, 1.0f, weight, CKK, dy, OHW, 0.0f, scratch, OHW);
                col2im_add(dx, scratch, C, H, W, K, stride, pad, OH, OW);
            }
        }
    }
}


/* ---- batched path: im2col over a chunk of images, one big GEMM ----------
 * Columns are the output pixels of several images, rows the C*K*K taps:
 *   A[(c, kh, kw), (n, oh, ow)] = inp[n][c][oh*s - p + kh][ow*s - p + kw]
 *   Y[OC, cols] = weight[OC, CKK] @ A          -> out[n][o][pix] (+ bias)
 *   D[OC, cols] = dout with n and o swapped (contiguous pixel runs)
 *   dweight += D @ A^T,  G[CKK, cols] = weight^T @ D  -> dinp (col2im)
 * With 28x28 images a chunk has ~10^4 columns, so the GEMMs run near peak
 * and there is one parallel region per step instead of one per image. For
 * stride 1 every (tap, image row) is one shifted contiguous copy. Chunks have
 * a fixed size for a given shape, so results do not depend on the thread
 * count. The workspace is per thread and only grows. */

static _Thread_local float *ws_buf;
static _Thread_local size_t ws_cap; /* floats */

static float *conv_workspace(size_t floats) {
    if (floats <= ws_cap) return ws_buf;
    float *p = duet_alloc(floats * sizeof(float));
    if (!p) return NULL;
    duet_free(ws_buf);
    ws_buf = p;
    ws_cap = floats;
    return p;
}

/* A second grow-only buffer of the calling thread: the flipped weights of
 * the implicit input gradient. */
static _Thread_local float *wsb_buf;
static _Thread_local size_t wsb_cap; /* floats */

static float *conv_workspace_b(size_t floats) {
    if (floats <= wsb_cap) return wsb_buf;
    float *p = duet_alloc(floats * sizeof(float));
    if (!p) return NULL;
    duet_free(wsb_buf);
    wsb_buf = p;
    wsb_cap = floats;
    return p;
}

/* images per chunk: about 4M floats of taps */
static int64_t conv_chunk(int64_t N, int64_t OHW, int64_t CKK) {
    int64_t nb = (int64_t)(4 << 20) / DUET_MAX(OHW * CKK, 1);
    return DUET_MAX(1, DUET_MIN(N, nb));
}

/* the valid ow range [lo, hi) of tap kw: 0 <= ow*stride - pad + kw < W */
static void ow_range(int64_t kw, int64_t stride, int64_t pad, int64_t W, int64_t OW, int64_t *lo,
                     int64_t *hi) {
    int64_t a = pad - kw; /* need ow*stride >= a */
    int64_t l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int64_t b = W + pad - kw; /* need ow*stride < b */
    int64_t h = b <= 0 ? 0 : (b + stride - 1) / stride;
    *lo = DUET_MIN(l, OW);
    *hi = DUET_MAX(*lo, DUET_MIN(h, OW));
}

static void im2col_batch(float *A, const float *inp, int64_t nb, int64_t C, int64_t H, int64_t W,
                         int64_t K, int64_t stride, int64_t pad, int64_t OH, int64_t OW) {
    const int64_t OHW = OH * OW, cols = nb * OHW;
#pragma omp parallel for schedule(static) if (duet_omp_enough(cols * C * K * K))
    for (int64_t ckk = 0; ckk < C * K * K; ckk++) {
        const int64_t c = ckk / (K * K), kh = (ckk / K) % K, kw = ckk % K;
        int64_t lo, hi;
        ow_range(kw, stride, pad, W, OW, &lo, &hi);
        float *row = A + ckk * cols;
        for (int64_t n = 0; n < nb; n++) {
            const float *x = inp + (n * C + c) * H * W;
            for (int64_t oh = 0; oh < OH; oh++) {
                float *dst = row + n * OHW + oh * OW;
                const int64_t ih = oh * stride - pad + kh;
                if (ih < 0 || ih >= H) {
                    memset(dst, 0, sizeof(float) * (size_t)OW);
                    continue;
                }
                const float *src = x + ih * W - pad + kw; /* src[ow*stride] is the tap */
                for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                if (stride == 1) memcpy(dst + lo, src + lo, sizeof(float) * (size_t)(hi - lo));
                else
                    for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * stride];
                for (int64_t ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
            }
        }
    }
}

/* dinp[n][c] += the G taps taken from there; each thread owns whole (n, c)
 * planes and walks (kh, kw, oh, ow) in a fixed order. */
static void col2im_batch_add(float *dinp, const float *G, int64_t nb, int64_t C, int64_t H,
                             int64_t W, int64_t K, int64_t stride, int64_t pad, int64_t OH,
                             int64_t OW) {
    const int64_t OHW = OH * OW, cols = nb * OHW;
#pragma omp parallel for schedule(static) if (duet_omp_enough(cols * C * K * K))
    for (int64_t nc = 0; nc < nb * C; nc++) {
        const int64_t n = nc / C, c = nc % C;
        float *dx = dinp + nc * H * W;
        for (int64_t kh = 0; kh < K; kh++)
            for (int64_t kw = 0; kw < K; kw++) {
                int64_t lo, hi;
                ow_range(kw, stride, pad, W, OW, &lo, &hi);
                const float *g = G + ((c * K + kh) * K + kw) * cols + n * OHW;
                for (int64_t oh = 0; oh < OH; oh++) {
                    const int64_t ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H) continue;
                    float *d = dx + ih * W - pad + kw;
                    const float *src = g + oh * OW;
                    for (int64_t ow = lo; ow < hi; ow++) d[ow * stride] += src[ow];
                }
            }
    }
}

void duet_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                         float *scratch, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC,
                         int64_t K, int64_t stride, int64_t pad) {
    DUET_ASSERT(K >= 1 && stride >= 1 && pad >= 0);
    const int64_t OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
    DUET_ASSERT(OH >= 1 && OW >= 1);
    const int64_t CKK = C * K * K, OHW = OH * OW;
    if (stride == 1 &&
        (duet_conv_winograd_forward(out, inp, weight, bias, NULL, 0.0f, N, C, H, W, OC, K,
                                    pad) == 0 ||
         duet_conv_igemm_forward(out, inp, weight, bias, NULL, 0.0f, N, C, H, W, OC, K, pad) == 0))
        return;
    const int64_t nb = conv_chunk(N, OHW, CKK);
    float *A = conv_workspace((size_t)(nb * OHW * (CKK + OC)));
    if (!A) {
        conv2d_forward_per_image(out, inp, weight, bias, scratch, N, C, H, W, OC, K, stride, pad);
        return;
    }
    float *Y = A + nb * OHW * CKK;
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
        const int64_t cnt = DUET_MIN(nb, N - n0), cols = cnt * OHW;
        im2col_batch(A, inp + n0 * C * H * W, cnt, C, H, W, K, stride, pad, OH, OW);
        duet_sgemm(0, 0, OC, cols, CKK, 1.0f, weight, CKK, A, cols, 0.0f, Y, cols);
        float *o = out + n0 * OC * OHW;
#pragma omp parallel for schedule(static) if (duet_omp_enough(cols * OC))
        for (int64_t no = 0; no < cnt * OC; no++) {
            const int64_t n = no / OC, oc = no % OC;
            const float b = bias ? bias[oc] : 0.0f;
            const float *y = Y + oc * cols + n * OHW;
            float *dst = o + no * OHW;
            for (int64_t i = 0; i < OHW; i++) dst[i] = y[i] + b;
        }
    }
}

/* Stride 1: the input gradient is a convolution of dout with the flipped,
 * transposed weights, Wt[c][o][kh][kw] = W[o][c][K-1-kh][K-1-kw], and padding
 * K-1-pad; accumulated into dinp. 0 when done, -1 when not available. */
static int conv2d_dinp_implicit(float *dinp, const float *dout, const float *weight, int64_t N,
                                int64_t C, int64_t H, int64_t W, int64_t OC, int64_t K,
                                int64_t pad) {
    const int64_t KK = K * K, OH = conv_out_size(H, K, 1, pad), OW = conv_out_size(W, K, 1, pad);
    float *wt = conv_workspace_b((size_t)(OC * C * KK));
    if (!wt) return -1;
    for (int64_t c = 0; c < C; c++)
        for (int64_t o = 0; o < OC; o++) {
            const float *src = weight + (o * C + c) * KK;
            float *dst = wt + (c * OC + o) * KK;
            for (int64_t k = 0; k < KK; k++) dst[k] = src[KK - 1 - k];
        }
    if (duet_conv_winograd_forward(dinp, dout, wt, NULL, NULL, 1.0f, N, OC, OH, OW, C, K,
                                   K - 1 - pad) == 0)
        return 0;
    return duet_conv_igemm_forward(dinp, dout, wt, NULL, NULL, 1.0f, N, OC, OH, OW, C, K,
                                   K - 1 - pad);
}

void duet_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, float *scratch, int64_t N,
                          int64_t C, int64_t H, int64_t W, int64_t OC, int64_t K,
                          int64_t stride, int64_t pad) {
    DUET_ASSERT(K >= 1 && stride >= 1 && pad >= 0);
    const int64_t OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
    const int64_t CKK = C * K * K, OHW = OH * OW;
    if (dbias) conv2d_dbias(dbias, dout, N, OC, OHW);
    if (stride == 1 && dweight &&
        duet_conv_igemm_dweight(dweight, dout, inp, N, C, H, W, OC, K, pad) == 0)
        dweight = NULL;
    if (stride == 1 && dinp && pad <= K - 1 && conv2d_dinp_implicit(dinp, dout, weight, N, C, H, W, OC, K, pad) == 0)
        dinp = NULL;
    if (!dweight && !dinp) return;
    const int64_t nb = conv_chunk(N, OHW, CKK);
    float *D = conv_workspace((size_t)(nb * OHW * (CKK + OC)));
    if (!D) {
        conv2d_backward_per_image(dinp, dweight, dout, inp, weight, scratch, N, C, H, W, OC, K,
                                  stride, pad);
        return;
    }
    float *A = D + nb * OHW * OC;
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
        const int64_t cnt = DUET_MIN(nb, N - n0), cols = cnt * OHW;
        const float *dy = dout + n0 * OC * OHW;
#pragma omp parallel for schedule(static) if (duet_omp_enough(cols * OC))
        for (int64_t on = 0; on < OC * cnt; on++) {
            const int64_t oc = on / cnt, n = on % cnt;
            memcpy(D + oc * cols + n * OHW, dy + (n * OC + oc) * OHW, sizeof(float) * (size_t)OHW);
        }
        if (dweight) {
            im2col_batch(A, inp + n0 * C * H * W, cnt, C, H, W, K, stride, pad, OH, OW);
            duet_sgemm(0, 1, OC, CKK, cols, 1.0f, D, cols, A, cols, 1.0f, dweight, CKK);
        }
        if (dinp) {
            duet_sgemm(1, 0, CKK, cols, OC, 1.0f, weight, CKK, D, cols, 0.0f, A, cols);
            col2im_batch_add(dinp + n0 * C * H * W, A, cnt, C, H, W, K, stride, pad, OH, OW);
        }
    }
}

/* iarg: N, C, H, W, OC, K, stride, pad; saved[0]: scratch (reused by backward) */
static void conv2d_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    const int64_t *a = r->iarg;
    duet_conv2d_backward(nn_grad(r->in[0]), nn_grad(r->in[1]), r->in[2] ? nn_grad(r->in[2]) : NULL,
                         r->out->grad, nn_f32(r->in[0]), nn_f32(r->in[1]), r->saved[0], a[0],
                         a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
}

duet_tensor *duet_nn_conv2d(duet_graph *g, duet_tensor *x, duet_tensor *w, duet_tensor *b,
                            int64_t stride, int64_t pad) {
    if (!x || !w) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "conv2d", "x") ||
        !nn_check(g, w, DUET_DTYPE_F32, "conv2d", "weight") ||
        (b && !nn_check(g, b, DUET_DTYPE_F32, "conv2d", "bias")))
        return NULL;
    if (x->ndim != 4 || w->ndim != 4)
        return nn_fail(g, DUET_ERR_SHAPE, "conv2d: want x [N,C,H,W] and weight [OC,C,K,K]; got %d-D x, %d-D weight",
                       x->ndim, w->ndim);
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t OC = w->shape[0], K = w->shape[2];
    if (w->shape[1] != C || w->shape[3] != K || K < 1)
        return nn_fail(g, DUET_ERR_SHAPE,
                       "conv2d: weight [%lld,%lld,%lld,%lld] does not fit x with %lld channels "
                       "(want [OC,%lld,K,K])",
                       (long long)OC, (long long)w->shape[1], (long long)K,
                       (long long)w->shape[3], (long long)C, (long long)C);
    if (b && (b->ndim != 1 || b->shape[0] != OC))
        return nn_fail(g, DUET_ERR_SHAPE, "conv2d: bias must be [%lld]", (long long)OC);
    if (stride < 1 || pad < 0)
        return nn_fail(g, DUET_ERR_ARG, "conv2d: stride %lld must be >= 1 and pad %lld >= 0",
                       (long long)stride, (long long)pad);
    if (H + 2 * pad < K || W + 2 * pad < K)
        return nn_fail(g, DUET_ERR_SHAPE, "conv2d: %lldx%lld image with pad %lld is smaller than the %lldx%lld kernel",
                       (long long)H, (long long)W, (long long)pad, (long long)K, (long long)K);
    const int64_t OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
    duet_tensor *out = nn_out(g, 4, (int64_t[]){N, OC, OH, OW});
    int64_t ns = duet_conv2d_scratch_floats(C, H, W, K, stride, pad);
    float *scratch = duet_graph_alloc(g, sizeof(float) * (size_t)ns + 4);
    if (!out || !scratch) return NULL;
    duet_conv2d_forward(nn_f32(out), nn_f32(x), nn_f32(w), b ? nn_f32(b) : NULL, scratch, N, C,
                        H, W, OC, K, stride, pad);
    duet_record *r = duet_graph_record(g, DUET_OP_CONV2D, conv2d_tape_backward, out, x, w, b, NULL);
    if (r) {
        int64_t ia[8] = {N, C, H, W, OC, K, stride, pad};
        memcpy(r->iarg, ia, sizeof ia);
        r->saved[0] = scratch;
    }
    return out;
}

/* ==== upsample2x (nearest) ==== */

void duet_upsample2x_forward(float *out, const float *inp, int64_t N, int64_t C, int64_t H,
                             int64_t W) {
    const int64_t W2 = 2 * W;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C * H * W * 4))
    for (int64_t p = 0; p < N * C; p++) {
        const float *x = inp + p * H * W;
        float *y = out + p * 4 * H * W;
        for (int64_t h = 0; h < H; h++) {
            float *y0 = y + 2 * h * W2, *y1 = y0 + W2;
            for (int64_t w = 0; w < W; w++) {
                float v = x[h * W + w];
                y0[2 * w] = v, y0[2 * w + 1] = v;
            }
            memcpy(y1, y0, sizeof(float) * (size_t)W2);
        }
    }
}

void duet_upsample2x_backward(float *dinp, const float *dout, int64_t N, int64_t C, int64_t H,
                              int64_t W) {
    if (!dinp) return;
    const int64_t W2 = 2 * W;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C * H * W * 4))
    for (int64_t p = 0; p < N * C; p++) {
        float *dx = dinp + p * H * W;
        const float *dy = dout + p * 4 * H * W;
        for (int64_t h = 0; h < H; h++) {
            const float *d0 = dy + 2 * h * W2, *d1 = d0 + W2;
            for (int64_t w = 0; w < W; w++)
                dx[h * W + w] += (d0[2 * w] + d0[2 * w + 1]) + (d1[2 * w] + d1[2 * w + 1]);
        }
    }
}

/* iarg: N, C, H, W (of the input) */
static void upsample2x_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    const int64_t *a = r->iarg;
    duet_upsample2x_backward(nn_grad(r->in[0]), r->out->grad, a[0], a[1], a[2], a[3]);
}

duet_tensor *duet_nn_upsample2x(duet_graph *g, duet_tensor *x) {
    if (!x) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "upsample2x", "x")) return NULL;
    if (x->ndim != 4)
        return nn_fail(g, DUET_ERR_SHAPE, "upsample2x: want x [N,C,H,W]; got %d-D", x->ndim);
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    duet_tensor *out = nn_out(g, 4, (int64_t[]){N, C, 2 * H, 2 * W});
    if (!out) return NULL;
    duet_upsample2x_forward(nn_f32(out), nn_f32(x), N, C, H, W);
    duet_record *r = duet_graph_record(g, DUET_OP_UPSAMPLE2X, upsample2x_tape_backward, out, x,
                                       NULL, NULL, NULL);
    if (r) {
        int64_t ia[4] = {N, C, H, W};
        memcpy(r->iarg, ia, sizeof ia);
    }
    return out;
}

/* ==== avgpool2x (2x2, stride 2) ==== */

void duet_avgpool2x_forward(float *out, const float *inp, int64_t N, int64_t C, int64_t H,
                            int64_t W) {
    const int64_t OH = H / 2, OW = W / 2;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C * H * W))
    for (int64_t p = 0; p < N * C; p++) {
        const float *x = inp + p * H * W;
        float *y = out + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *x0 = x + 2 * oh * W, *x1 = x0 + W;
            for (int64_t ow = 0; ow < OW; ow++)
                y[oh * OW + ow] =
                    ((x0[2 * ow] + x0[2 * ow + 1]) + (x1[2 * ow] + x1[2 * ow + 1])) * 0.25f;
        }
    }
}

void duet_avgpool2x_backward(float *dinp, const float *dout, int64_t N, int64_t C, int64_t H,
                             int64_t W) {
    if (!dinp) return;
    const int64_t OH = H / 2, OW = W / 2;
#pragma omp parallel for schedule(static) if (duet_omp_enough(N * C * H * W))
    for (int64_t p = 0; p < N * C; p++) {
        float *dx = dinp + p * H * W;
        const float *dy = dout + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            float *d0 = dx + 2 * oh * W, *d1 = d0 + W;
            for (int64_t ow = 0; ow < OW; ow++) {
                float v = dy[oh * OW + ow] * 0.25f;
                d0[2 * ow] += v, d0[2 * ow + 1] += v;
                d1[2 * ow] += v, d1[2 * ow + 1] += v;
            }
        }
    }
}

/* iarg: N, C, H, W (of the input) */
static void avgpool2x_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    const int64_t *a = r->iarg;
    duet_avgpool2x_backward(nn_grad(r->in[0]), r->out->grad, a[0], a[1], a[2], a[3]);
}

duet_tensor *duet_nn_avgpool2x(duet_graph *g, duet_tensor *x) {
    if (!x) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "avgpool2x", "x")) return NULL;
    if (x->ndim != 4 || x->shape[2] % 2 != 0 || x->shape[3] % 2 != 0)
        return nn_fail(g, DUET_ERR_SHAPE, "avgpool2x: want x [N,C,H,W] with H and W even; got %d-D [.., %lld, %lld]",
                       x->ndim, (long long)(x->ndim == 4 ? x->shape[2] : 0),
                       (long long)(x->ndim == 4 ? x->shape[3] : 0));
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    duet_tensor *out = nn_out(g, 4, (int64_t[]){N, C, H / 2, W / 2});
    if (!out) return NULL;
    duet_avgpool2x_forward(nn_f32(out), nn_f32(x), N, C, H, W);
    duet_record *r = duet_graph_record(g, DUET_OP_AVGPOOL2X, avgpool2x_tape_backward, out, x,
                                       NULL, NULL, NULL);
    if (r) {
        int64_t ia[4] = {N, C, H, W};
        memcpy(r->iarg, ia, sizeof ia);
    }
    return out;
}
