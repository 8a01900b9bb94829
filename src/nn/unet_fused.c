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
 *    With dropout after the SiLU (the ResBlock's second norm), the keep
 *    mask is not stored: forward and backward both regenerate it, 16
 *    counters at a time, from the same Philox stream as duet_dropout_forward
 *    (element i kept when the top 24 bits of word 0 of philox(seed,
 *    offset + i) / 2^24 >= p), so the result equals dropout(silu(gn(x))).
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
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ==== the dropout mask, regenerated ==== */

/* m[j] = keep scale or 0 for elements ctr0 + j, j < n (see the header). */
static void dropout_mask_scalar(float *m, uint64_t seed, uint64_t ctr0, int64_t n, float p,
                                float keep) {
    for (int64_t j = 0; j < n; j++) {
        uint32_t w[4];
        duet_philox(seed, ctr0 + (uint64_t)j, w);
        const float u = (float)(w[0] >> 8) * (1.0f / 16777216.0f);
        m[j] = u >= p ? keep : 0.0f;
    }
}

#if defined(__x86_64__)
/* Philox4x32-10 on 16 counters: high and low 32 bits of a 32x32 product. */
__attribute__((target("avx512f"))) static inline void mulhilo16(__m512i a, uint32_t mult,
                                                                 __m512i *hi, __m512i *lo) {
    const __m512i M = _mm512_set1_epi32((int)mult);
    __m512i even = _mm512_mul_epu32(a, M);                          /* lanes 0, 2, .. */
    __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), M);    /* lanes 1, 3, .. */
    *hi = _mm512_mask_blend_epi32((__mmask16)0xAAAA, _mm512_srli_epi64(even, 32), odd);
    *lo = _mm512_mullo_epi32(a, M);
}

__attribute__((target("avx512f"))) static void dropout_mask_avx512(float *m, uint64_t seed,
                                                                   uint64_t ctr0, int64_t n,
                                                                   float p, float keep) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 vp = _mm512_set1_ps(p), vk = _mm512_set1_ps(keep);
    const __m512 scale = _mm512_set1_ps(1.0f / 16777216.0f);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const uint64_t c = ctr0 + (uint64_t)j;
        if ((uint32_t)c > 0xFFFFFFFFu - 15u) { /* the low word wraps inside the block */
            dropout_mask_scalar(m + j, seed, c, 16, p, keep);
            continue;
        }
        __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)c), iota);
        __m512i c1 = _mm512_set1_epi32((int)(uint32_t)(c >> 32));
        __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
        uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
        for (int r = 0; r < 10; r++) {
            __m512i h0, l0, h1, l1;
            mulhilo16(c0, 0xD2511F53u, &h0, &l0);
            mulhilo16(c2, 0xCD9E8D57u, &h1, &l1);
            c0 = _mm512_xor_si512(_mm512_xor_si512(h1, c1), _mm512_set1_epi32((int)k0));
            c2 = _mm512_xor_si512(_mm512_xor_si512(h0, c3), _mm512_set1_epi32((int)k1));
            c1 = l1;
            c3 = l0;
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(c0, 8)), scale);
        const __mmask16 kept = _mm512_cmp_ps_mask(u, vp, _CMP_GE_OQ);
        _mm512_storeu_ps(m + j, _mm512_maskz_mov_ps(kept, vk));
    }
    dropout_mask_scalar(m + j, seed, ctr0 + (uint64_t)j, n - j, p, keep);
}
#endif

static void dropout_mask(float *m, uint64_t seed, uint64_t ctr0, int64_t n, float p) {
    const float keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
#if defined(__x86_64__)
    if (duet_k.isa && strcmp(duet_k.isa, "avx512") == 0) {
        dropout_mask_avx512(m, seed, ctr0, n, p, keep);
        return;
    }
#endif
    dropout_mask_scalar(m, seed, ctr0, n, p, keep);
}

/* ==== groupnorm + silu ==== */

/* The backward's buffers: grown on demand, kept by the calling thread. */
static _Thread_local char *gs_buf;
static _Thread_local size_t gs_cap;

static char *gs_workspace(size_t bytes) {
    if (bytes <= gs_cap) return gs_buf;
    char *p = duet_alloc(bytes);
    if (!p) return NULL;
    duet_free(gs_buf);
    gs_buf = p;
    gs_cap = bytes;
    return p;
}

void duet_groupnorm_silu_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int64_t N, int64_t C,
                                 int64_t HW, int64_t G, float eps, float p, uint64_t seed,
                                 uint64_t offset) {
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
        if (p > 0.0f) {
            float mk[256];
            for (int64_t j = 0; j < L; j += 256) {
                const int64_t len = DUET_MIN(256, L - j);
                dropout_mask(mk, seed, offset + (uint64_t)(ng * L + j), len, p);
                for (int64_t i = 0; i < len; i++) y[j + i] *= mk[i];
            }
        }
    }
}

void duet_groupnorm_silu_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, const float *bias,
                                  const float *mean, const float *rstd, int64_t N, int64_t C,
                                  int64_t HW, int64_t G, float p, uint64_t seed,
                                  uint64_t offset) {
    DUET_ASSERT(G > 0 && C % G == 0);
    if (!dinp && !dweight && !dbias) return;
    const int64_t CG = C / G, L = CG * HW;
    const duet_act_kernels *k = duet_act();
    const int par = duet_omp_enough(N * C * HW) && !omp_in_parallel();
    const int nt = par ? duet_get_threads() : 1;
    /* per thread: y and dy of one group; per (image, channel): the sums of
     * dy * xhat and dy */
    const int64_t per = (p > 0.0f ? 3 : 2) * L;
    /* one grow-only block of the calling thread: the partial sums (doubles)
     * first, then the per-thread buffers */
    const size_t nd = (size_t)(2 * N * C);
    char *ws = gs_workspace(nd * sizeof(double) + sizeof(float) * (size_t)(per * nt));
    double *part = ws && (dweight || dbias) ? (double *)ws : NULL;
    float *buf = ws ? (float *)(ws + nd * sizeof(double)) : NULL;
    if (!ws) {
        /* no memory: the plain composition, through a full-size dy */
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
            if (p > 0.0f) { /* y becomes dout * mask after its use as silu input */
                float *dm = duet_alloc(sizeof(float) * (size_t)(N * C * HW));
                if (dm) {
                    dropout_mask(dm, seed, offset, N * C * HW, p);
                    for (int64_t i = 0; i < N * C * HW; i++) dm[i] *= dout[i];
                    duet_silu_backward(dy, dm, y, N * C * HW);
                    duet_groupnorm_backward(dinp, dweight, dbias, dy, inp, weight, mean, rstd, N,
                                            C, HW, G);
                }
                duet_free(dm);
                duet_free(y);
                duet_free(dy);
                return;
            }
            duet_silu_backward(dy, dout, y, N * C * HW);
            duet_groupnorm_backward(dinp, dweight, dbias, dy, inp, weight, mean, rstd, N, C, HW, G);
        }
        duet_free(y);
        duet_free(dy);
        return;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *y = buf + (size_t)omp_get_thread_num() * (size_t)per, *dy = y + L, *dm = dy + L;
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
            if (p > 0.0f) { /* through the dropout: dout * mask */
                dropout_mask(dm, seed, offset + (uint64_t)(ng * L), L, p);
                for (int64_t i = 0; i < L; i++) dm[i] *= go[i];
                go = dm;
            }
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
}

static void groupnorm_silu_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    duet_tensor *x = r->in[0], *w = r->in[1], *b = r->in[2];
    duet_groupnorm_silu_backward(nn_grad(x), nn_grad(w), nn_grad(b), r->out->grad, nn_f32(x),
                                 w ? nn_f32(w) : NULL, b ? nn_f32(b) : NULL, r->saved[0],
                                 r->saved[1], r->iarg[0], r->iarg[1], r->iarg[2], r->iarg[3],
                                 r->farg[1], (uint64_t)r->iarg[4], (uint64_t)r->iarg[5]);
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
    return duet_nn_groupnorm_silu_dropout(g, x, w, b, groups, eps, 0.0f, NULL);
}

duet_tensor *duet_nn_groupnorm_silu_dropout(duet_graph *g, duet_tensor *x, duet_tensor *w,
                                            duet_tensor *b, int64_t groups, float eps, float p,
                                            duet_rng *rng) {
    if (!x) return NULL;
    if (!(p >= 0.0f && p < 1.0f))
        return nn_fail(g, DUET_ERR_ARG, "groupnorm_silu_dropout: p = %g must be in [0, 1)", (double)p);
    if (!duet_graph_training(g)) p = 0.0f; /* dropout is the identity at inference */
    if (p > 0.0f && !rng)
        return nn_fail(g, DUET_ERR_ARG, "groupnorm_silu_dropout: rng is NULL (pass the training rng)");
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
    const uint64_t seed = p > 0.0f ? rng->seed : 0, offset = p > 0.0f ? rng->offset : 0;
    duet_groupnorm_silu_forward(nn_f32(out), mean, rstd, nn_f32(x), w ? nn_f32(w) : NULL,
                                b ? nn_f32(b) : NULL, N, C, HW, groups, eps, p, seed, offset);
    if (p > 0.0f) rng->offset += (uint64_t)(N * C * HW);
    duet_record *r = duet_graph_record(g, DUET_OP_GROUPNORM_SILU, groupnorm_silu_tape_backward, out, x,
                                       w, b, NULL);
    if (r) {
        r->saved[0] = mean;
        r->saved[1] = rstd;
        r->iarg[0] = N;
        r->iarg[1] = C;
        r->iarg[2] = HW;
        r->iarg[3] = groups;
        r->iarg[4] = (int64_t)seed;
        r->iarg[5] = (int64_t)offset;
        r->farg[0] = eps;
        r->farg[1] = p;
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
    if (stride != 1 ||
        (duet_conv_winograd_forward(o, nn_f32(x), nn_f32(w), b ? nn_f32(b) : NULL, nn_f32(cb),
                                    0.0f, N, C, H, W, OC, K, pad) != 0 &&
         duet_conv_igemm_forward(o, nn_f32(x), nn_f32(w), b ? nn_f32(b) : NULL, nn_f32(cb), 0.0f,
                                 N, C, H, W, OC, K, pad) != 0)) {
        duet_conv2d_forward(o, nn_f32(x), nn_f32(w), b ? nn_f32(b) : NULL, scratch, N, C, H, W,
                            OC, K, stride, pad);
        duet_add_channel_forward(o, o, nn_f32(cb), N, OC, OH * OW);
    }
    duet_record *r =
        duet_graph_record(g, DUET_OP_CONV2D_CHANBIAS, conv2d_chanbias_tape_backward, out, x, w, b, cb);
    if (r) {
        int64_t ia[8] = {N, C, H, W, OC, K, stride, pad};
        memcpy(r->iarg, ia, sizeof ia);
        r->saved[0] = scratch;
    }
    return out;
}
