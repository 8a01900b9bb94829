/*
 * attention.c — scaled dot-product attention (grouped-query, causal with an
 * offset for KV caches) and rotary position embeddings (both pair orders):
 * raw forward/backward and their tape ops, side by side.
 *
 * Layout (size letters): q [B, T, NH, HS], k and v [B, S, NKV, HS],
 * out [B, T, NH, HS], att [B, NH, T, S] (saved softmax probabilities).
 * Query head h reads kv head h / (NH / NKV). Query t sits at absolute
 * position S - T + t; causal attention lets it see keys 0 .. S - T + t.
 *
 * How: one task per (b, head); the products Q K^T, P V and their backward
 * counterparts are duet_sgemm calls over row blocks of TB queries, each block
 * only as wide as the keys its last row can see (so causal attention skips
 * the masked upper triangle block by block). Decode (T <= 2, the KV-cache
 * case) uses dot/axpy rows instead: no GEMM set-up for a 1-row product.
 * Backward runs one task per (b, kv head) and walks the query heads of the
 * group in order, so dk/dv of a shared kv head are written by one thread in
 * a fixed order: race-free and the same bits for any thread count.
 *
 * What it is not: a flash-attention kernel. The full probability matrix is
 * materialised (the tape saves it for backward anyway).
 */
#include "nn/nn.h"

#include "kernels/kernels.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* ==== attention ==== */

/* Query rows per GEMM block (and rows of the backward scratch per thread). */
#define ATT_TB 64
/* Up to this many query rows the forward uses dot/axpy rows, not GEMMs. */
#define ATT_ROWS_MAX_T 2

/* Number of keys query t may see. */
static inline int64_t att_keys(int64_t t, int64_t T, int64_t S, int causal) {
    return causal ? S - T + t + 1 : S;
}

/* Softmax of row[0..L) in place (row[L..S) = 0). softmax_rows reads each input
 * before it writes that output, so out == inp is fine. */
static void att_softmax_row(float *row, int64_t L, int64_t S) {
    if (L > 0) duet_k.softmax_rows(row, row, 1, L);
    if (S > L) memset(row + L, 0, sizeof(float) * (size_t)(S - L));
}

/* Forward of head (b, h) query rows [0, T), one row at a time (decode path). */
static void att_fwd_rows(float *oh, float *ah, const float *qh, const float *kg,
                         const float *vg, int64_t T, int64_t S, int64_t ldq, int64_t ldkv,
                         int64_t HS, int causal, float scale) {
    for (int64_t t = 0; t < T; t++) {
        float *at = ah + t * S;
        int64_t L = att_keys(t, T, S, causal);
        duet_k.attend_row(oh + t * ldq, at, qh + t * ldq, kg, vg, ldkv, L, HS, scale);
        if (S > L) memset(at + L, 0, sizeof(float) * (size_t)(S - L));
    }
}

/* Forward of head (b, h) with GEMMs over blocks of ATT_TB query rows. */
static void att_fwd_gemm(float *oh, float *ah, const float *qh, const float *kg,
                         const float *vg, int64_t T, int64_t S, int64_t ldq, int64_t ldkv,
                         int64_t HS, int causal, float scale) {
    for (int64_t t0 = 0; t0 < T; t0 += ATT_TB) {
        int64_t tb = DUET_MIN(ATT_TB, T - t0);
        int64_t L = att_keys(t0 + tb - 1, T, S, causal); /* widest row of the block */
        float *ab = ah + t0 * S;
        /* scores[tb, L] = scale * Q[t0:t0+tb] K[0:L]^T */
        duet_sgemm(0, 1, tb, L, HS, scale, qh + t0 * ldq, ldq, kg, ldkv, 0.0f, ab, S);
        for (int64_t i = 0; i < tb; i++)
            att_softmax_row(ab + i * S, att_keys(t0 + i, T, S, causal), S);
        /* out[t0:t0+tb] = P[tb, L] V[0:L] (P is 0 past each row's keys) */
        duet_sgemm(0, 0, tb, HS, L, 1.0f, ab, S, vg, ldkv, 0.0f, oh + t0 * ldq, ldq);
    }
}

void duet_attention_forward(float *out, float *att, const float *q, const float *k,
                            const float *v, int64_t B, int64_t T, int64_t S, int64_t NH,
                            int64_t NKV, int64_t HS, int causal, float scale) {
    DUET_ASSERT(NKV > 0 && NH % NKV == 0);
    DUET_ASSERT(!causal || S >= T);
    const int64_t G = NH / NKV, ldq = NH * HS, ldkv = NKV * HS;
    const int rows = T <= ATT_ROWS_MAX_T;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (B * NH > 1 && B * NH * T * S * HS > 32768)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++) {
            const float *qh = q + b * T * ldq + h * HS;
            const float *kg = k + b * S * ldkv + (h / G) * HS;
            const float *vg = v + b * S * ldkv + (h / G) * HS;
            float *oh = out + b * T * ldq + h * HS;
            float *ah = att + (b * NH + h) * T * S;
            if (rows) att_fwd_rows(oh, ah, qh, kg, vg, T, S, ldq, ldkv, HS, causal, scale);
            else att_fwd_gemm(oh, ah, qh, kg, vg, T, S, ldq, ldkv, HS, causal, scale);
        }
    }
}

/* Backward of head (b, h) one (query, key) pair at a time with dot/axpy; no
 * scratch. D_t = sum_s P_ts dP_ts is found in a first pass over the keys. */
static void att_bwd_rows(float *dqh, float *dkg, float *dvg, const float *doh, const float *ah,
                         const float *qh, const float *kg, const float *vg, int64_t T,
                         int64_t S, int64_t ldq, int64_t ldkv, int64_t HS, int causal,
                         float scale) {
    for (int64_t t = 0; t < T; t++) {
        const float *pt = ah + t * S, *dot_ = doh + t * ldq, *qt = qh + t * ldq;
        int64_t L = att_keys(t, T, S, causal);
        float D = 0.0f;
        if (dqh || dkg)
            for (int64_t s = 0; s < L; s++) D += pt[s] * duet_k.dot(dot_, vg + s * ldkv, HS);
        for (int64_t s = 0; s < L; s++) {
            if (dvg) duet_k.axpy(dvg + s * ldkv, pt[s], dot_, HS);
            if (!dqh && !dkg) continue;
            float ds = pt[s] * (duet_k.dot(dot_, vg + s * ldkv, HS) - D) * scale;
            if (dqh) duet_k.axpy(dqh + t * ldq, ds, kg + s * ldkv, HS);
            if (dkg) duet_k.axpy(dkg + s * ldkv, ds, qt, HS);
        }
    }
}

/* Backward of head (b, h) with GEMMs over query blocks; buf holds ATT_TB * S. */
static void att_bwd_gemm(float *dqh, float *dkg, float *dvg, const float *doh, const float *ah,
                         const float *qh, const float *kg, const float *vg, float *buf,
                         int64_t T, int64_t S, int64_t ldq, int64_t ldkv, int64_t HS,
                         int causal, float scale) {
    for (int64_t t0 = 0; t0 < T; t0 += ATT_TB) {
        int64_t tb = DUET_MIN(ATT_TB, T - t0);
        int64_t L = att_keys(t0 + tb - 1, T, S, causal);
        const float *pb = ah + t0 * S, *dob = doh + t0 * ldq;
        /* dV[0:L] += P[tb, L]^T dO[tb, HS] */
        if (dvg) duet_sgemm(1, 0, L, HS, tb, 1.0f, pb, S, dob, ldq, 1.0f, dvg, ldkv);
        if (!dqh && !dkg) continue;
        /* dP[tb, L] = dO V[0:L]^T, then dS = scale * P * (dP - rowsum(P * dP)) */
        duet_sgemm(0, 1, tb, L, HS, 1.0f, dob, ldq, vg, ldkv, 0.0f, buf, L);
        for (int64_t i = 0; i < tb; i++) {
            const float *p = pb + i * S;
            float *ds = buf + i * L;
            int64_t Li = att_keys(t0 + i, T, S, causal);
            float D = duet_k.dot(p, ds, Li);
            for (int64_t s = 0; s < Li; s++) ds[s] = p[s] * (ds[s] - D) * scale;
            for (int64_t s = Li; s < L; s++) ds[s] = 0.0f;
        }
        /* dQ[tb] += dS K[0:L];  dK[0:L] += dS^T Q[tb] */
        if (dqh) duet_sgemm(0, 0, tb, HS, L, 1.0f, buf, L, kg, ldkv, 1.0f, dqh + t0 * ldq, ldq);
        if (dkg) duet_sgemm(1, 0, L, HS, tb, 1.0f, buf, L, qh + t0 * ldq, ldq, 1.0f, dkg, ldkv);
    }
}

/* Floats of backward scratch for `nthreads` threads (0 when none is needed). */
static int64_t att_bwd_scratch_floats(int64_t T, int64_t S, int nthreads) {
    return (int64_t)nthreads * DUET_MIN(ATT_TB, T) * S;
}

/* The backward proper. scratch: att_bwd_scratch_floats(T, S, nthreads) floats
 * for up to `nthreads` OpenMP threads, or NULL for the scratch-free row path. */
static void att_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                         const float *q, const float *k, const float *v, float *scratch,
                         int nthreads, int64_t B, int64_t T, int64_t S, int64_t NH,
                         int64_t NKV, int64_t HS, int causal, float scale) {
    DUET_ASSERT(NKV > 0 && NH % NKV == 0);
    DUET_ASSERT(!causal || S >= T);
    const int64_t G = NH / NKV, ldq = NH * HS, ldkv = NKV * HS;
    const int64_t per_thread = DUET_MIN(ATT_TB, T) * S;
    /* One task per (b, kv head): it alone writes that head's dk/dv. */
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nthreads) if (B * NKV > 1 && B * NH * T * S * HS > 32768)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t g = 0; g < NKV; g++) {
            float *buf = scratch ? scratch + omp_get_thread_num() * per_thread : NULL;
            const float *kg = k + b * S * ldkv + g * HS, *vg = v + b * S * ldkv + g * HS;
            float *dkg = dk ? dk + b * S * ldkv + g * HS : NULL;
            float *dvg = dv ? dv + b * S * ldkv + g * HS : NULL;
            for (int64_t h = g * G; h < (g + 1) * G; h++) {
                const float *qh = q + b * T * ldq + h * HS, *doh = dout + b * T * ldq + h * HS;
                const float *ah = att + (b * NH + h) * T * S;
                float *dqh = dq ? dq + b * T * ldq + h * HS : NULL;
                if (buf)
                    att_bwd_gemm(dqh, dkg, dvg, doh, ah, qh, kg, vg, buf, T, S, ldq, ldkv, HS,
                                 causal, scale);
                else
                    att_bwd_rows(dqh, dkg, dvg, doh, ah, qh, kg, vg, T, S, ldq, ldkv, HS,
                                 causal, scale);
            }
        }
    }
}

void duet_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                             const float *att, const float *q, const float *k, const float *v,
                             int64_t B, int64_t T, int64_t S, int64_t NH, int64_t NKV,
                             int64_t HS, int causal, float scale) {
    int nt = omp_get_max_threads();
    /* One scratch block per call (not per row); when it cannot be had, the
     * row path computes the same thing without scratch. */
    float *scratch = duet_alloc(sizeof(float) * (size_t)att_bwd_scratch_floats(T, S, nt));
    att_backward(dq, dk, dv, dout, att, q, k, v, scratch, nt, B, T, S, NH, NKV, HS, causal,
                 scale);
    duet_free(scratch);
}

/* iarg: B, T, S, NH, NKV, HS, causal; farg: scale; saved[0]: att */
static void attention_tape_backward(duet_graph *g, const duet_record *r) {
    const int64_t *a = r->iarg;
    int nt = omp_get_max_threads();
    /* scratch from the graph arena: no malloc once the arena has grown */
    float *scratch = duet_graph_alloc(g, sizeof(float) * (size_t)att_bwd_scratch_floats(a[1], a[2], nt));
    att_backward(nn_grad(r->in[0]), nn_grad(r->in[1]), nn_grad(r->in[2]), r->out->grad,
                 r->saved[0], nn_f32(r->in[0]), nn_f32(r->in[1]), nn_f32(r->in[2]), scratch, nt,
                 a[0], a[1], a[2], a[3], a[4], a[5], (int)a[6], r->farg[0]);
}

duet_tensor *duet_nn_attention(duet_graph *g, duet_tensor *q, duet_tensor *k, duet_tensor *v,
                               int causal, float scale) {
    if (!q || !k || !v) return NULL;
    if (!nn_check(g, q, DUET_DTYPE_F32, "attention", "q") ||
        !nn_check(g, k, DUET_DTYPE_F32, "attention", "k") ||
        !nn_check(g, v, DUET_DTYPE_F32, "attention", "v"))
        return NULL;
    if (q->ndim != 4 || k->ndim != 4 || !nn_same_shape(k, v))
        return nn_fail(g, DUET_ERR_SHAPE,
                       "attention: want q [B,T,NH,HS] and k, v [B,S,NKV,HS] (4-D, k and v "
                       "the same shape); got %d-D q, %d-D k, %d-D v",
                       q->ndim, k->ndim, v->ndim);
    const int64_t B = q->shape[0], T = q->shape[1], NH = q->shape[2], HS = q->shape[3];
    const int64_t S = k->shape[1], NKV = k->shape[2];
    if (k->shape[0] != B || k->shape[3] != HS || NKV < 1 || NH % NKV != 0)
        return nn_fail(g, DUET_ERR_SHAPE,
                       "attention: q [%lld,%lld,%lld,%lld] does not fit k [%lld,%lld,%lld,%lld] "
                       "(same B and HS, NH a multiple of NKV)",
                       (long long)B, (long long)T, (long long)NH, (long long)HS,
                       (long long)k->shape[0], (long long)S, (long long)NKV,
                       (long long)k->shape[3]);
    if (causal && S < T)
        return nn_fail(g, DUET_ERR_SHAPE,
                       "attention: causal with %lld queries but only %lld keys (need S >= T)",
                       (long long)T, (long long)S);
    duet_tensor *out = nn_out_like(g, q);
    float *att = duet_graph_alloc(g, sizeof(float) * (size_t)(B * NH * T * S) + 4);
    if (!out || !att) return NULL;
    duet_attention_forward(nn_f32(out), att, nn_f32(q), nn_f32(k), nn_f32(v), B, T, S, NH, NKV,
                           HS, causal, scale);
    duet_record *r =
        duet_graph_record(g, DUET_OP_ATTENTION, attention_tape_backward, out, q, k, v, NULL);
    if (r) {
        int64_t ia[7] = {B, T, S, NH, NKV, HS, causal != 0};
        memcpy(r->iarg, ia, sizeof ia);
        r->farg[0] = scale;
        r->saved[0] = att;
    }
    return out;
}

/* ==== rope ==== */

/* Pairs rotated per stack chunk of cos/sin. */
#define ROPE_CHUNK 64

/* Rotates x [B, T, NH, HS] by +angle (dir = 1) or -angle (dir = -1). The
 * angles are formed in double: pos * theta^(-2i/HS) loses nothing at pos in
 * the thousands, where a float product would be off by ~1e-4 rad. */
static void rope_apply(float *out, const float *inp, int64_t B, int64_t T, int64_t NH,
                       int64_t HS, int64_t pos0, float theta, int neox, int dir, int accumulate) {
    DUET_ASSERT(HS % 2 == 0);
    const int64_t P = HS / 2;                 /* pairs per head */
    const int64_t e0 = neox ? 1 : 2, off = neox ? P : 1; /* pair i: (i*e0, i*e0 + off) */
    const double lt = log((double)theta);
    const double ratio = exp(-2.0 * lt / (double)HS); /* freq_{i+1} / freq_i */
    const double two_pi = 6.283185307179586;
#pragma omp parallel for schedule(static) if (duet_omp_enough(B * T * NH * HS))
    for (int64_t t = 0; t < T; t++) {
        float c[ROPE_CHUNK], s[ROPE_CHUNK];
        double pos = (double)(pos0 + t);
        for (int64_t i0 = 0; i0 < P; i0 += ROPE_CHUNK) {
            int64_t n = DUET_MIN(ROPE_CHUNK, P - i0);
            /* freq_i by recurrence from the chunk's first: relative error
             * ~ROPE_CHUNK * 1e-16, i.e. ~1e-11 rad at pos 4096 */
            double freq = exp(-lt * (double)(2 * i0) / (double)HS);
            for (int64_t j = 0; j < n; j++, freq *= ratio) {
                /* reduce to [-pi, pi] in double; then float sin/cos lose
                 * only float rounding of the reduced angle */
                double ang = pos * freq;
                float red = (float)(ang - two_pi * nearbyint(ang / two_pi));
                c[j] = cosf(red);
                s[j] = (float)dir * sinf(red);
            }
            for (int64_t b = 0; b < B; b++) {
                for (int64_t h = 0; h < NH; h++) {
                    int64_t base = ((b * T + t) * NH + h) * HS;
                    const float *x = inp + base;
                    float *y = out + base;
                    for (int64_t j = 0; j < n; j++) {
                        int64_t i = (i0 + j) * e0;
                        float x0 = x[i], x1 = x[i + off];
                        float y0 = x0 * c[j] - x1 * s[j], y1 = x0 * s[j] + x1 * c[j];
                        if (accumulate) y[i] += y0, y[i + off] += y1;
                        else y[i] = y0, y[i + off] = y1;
                    }
                }
            }
        }
    }
}

void duet_rope_forward(float *out, const float *inp, int64_t B, int64_t T, int64_t NH,
                       int64_t HS, int64_t pos0, float theta, int neox) {
    rope_apply(out, inp, B, T, NH, HS, pos0, theta, neox, 1, 0);
}

/* The rotation is orthogonal: its transpose is the rotation by -angle. */
void duet_rope_backward(float *dinp, const float *dout, int64_t B, int64_t T, int64_t NH,
                        int64_t HS, int64_t pos0, float theta, int neox) {
    if (!dinp) return;
    rope_apply(dinp, dout, B, T, NH, HS, pos0, theta, neox, -1, 1);
}

/* iarg: B, T, NH, HS, pos0, neox; farg: theta */
static void rope_tape_backward(duet_graph *g, const duet_record *r) {
    (void)g;
    const int64_t *a = r->iarg;
    duet_rope_backward(nn_grad(r->in[0]), r->out->grad, a[0], a[1], a[2], a[3], a[4],
                       r->farg[0], (int)a[5]);
}

duet_tensor *duet_nn_rope(duet_graph *g, duet_tensor *x, int64_t pos0, float theta, int neox) {
    if (!x) return NULL;
    if (!nn_check(g, x, DUET_DTYPE_F32, "rope", "x")) return NULL;
    if (x->ndim != 4 || x->shape[3] % 2 != 0)
        return nn_fail(g, DUET_ERR_SHAPE, "rope: want x [B,T,NH,HS] with HS even; got %d-D, last dim %lld",
                       x->ndim, (long long)(x->ndim ? x->shape[x->ndim - 1] : 0));
    if (pos0 < 0 || !(theta > 0.0f))
        return nn_fail(g, DUET_ERR_ARG, "rope: pos0 %lld must be >= 0 and theta %g > 0",
                       (long long)pos0, (double)theta);
    duet_tensor *out = nn_out_like(g, x);
    if (!out) return NULL;
    const int64_t B = x->shape[0], T = x->shape[1], NH = x->shape[2], HS = x->shape[3];
    duet_rope_forward(nn_f32(out), nn_f32(x), B, T, NH, HS, pos0, theta, neox);
    duet_record *r = duet_graph_record(g, DUET_OP_ROPE, rope_tape_backward, out, x, NULL, NULL, NULL);
    if (r) {
        int64_t ia[6] = {B, T, NH, HS, pos0, neox != 0};
        memcpy(r->iarg, ia, sizeof ia);
        r->farg[0] = theta;
    }
    return out;
}
