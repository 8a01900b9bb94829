/*
 * conv_avx512.c — implicit-GEMM stride-1 convolution with the AVX-512 SGEMM
 * microkernel (see conv_gemm.h for the contract).
 *
 * Forward (also the input gradient, as a convolution of dout with the
 * flipped, transposed weights): C[OC, pixels] = W[OC, C*K*K] @ col, where
 * col is never stored. The pixels of all images form tiles of 32 columns
 * (the microkernel's width), each tile inside one image, so a tile's output
 * is a 32-float run of one channel row: the microkernel writes it straight
 * into out[n][o] (ldc = OH*OW). Work units of CV_UNIT tiles are split over
 * threads; per K block a unit packs its tiles' panels from the image — row
 * (c, kh, kw) of a tile is one masked load per run of pixels that share an
 * output row (the mask zeroes the padding) — and runs every panel of the
 * packed weights over them. Bias (and a per-image channel bias) is added
 * while the unit's output is still in cache.
 *
 * Weight gradient: dW[OC, C*K*K] += dout[OC, pixels] @ col^T. Threads split
 * the C*K*K columns; per block of an image's pixels, each thread packs dout
 * (the GEMM's A, rows read in place) and its columns of col^T, built 16 taps
 * x 16 pixels at a time with the same masked row loads and a 16x16
 * in-register transpose.
 *
 * Every output element is computed by one thread with the same operations in
 * the same order whatever the thread count.
 *
 * What it is not: strided, dilated or grouped convolution (the caller's
 * im2col path), or a Winograd/FFT convolution.
 */
#include "core/internal.h"
#include "kernels/conv_gemm.h"
#include "kernels/gemm_blocked.h"

#include <immintrin.h>
#include <omp.h>
#include <string.h>

#define CV_TW 32    /* tile width: columns of the microkernel */
#define CV_UNIT 8   /* tiles per forward work unit */
#define CV_KC 384   /* K block (taps) */
#define CV_PB 384   /* pixel block of the weight gradient */
#define CV_NB 256   /* tap columns packed at once by the weight gradient */
#define CV_MAXK 7   /* widest kernel handled */

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Splits n into ceil(n / cap) nearly equal blocks. */
static int64_t even_block(int64_t n, int64_t cap) { return cdiv(n, cdiv(n, cap)); }

/* A run of lanes of one 16-lane vector whose pixels share an output row:
 * lanes [lane0, lane0 + len) are pixels (oh, ow0 ..). */
typedef struct {
    int32_t oh, lane0, len, ow0;
} seg_t;

/* The runs of the 16 (or fewer: nl) pixels starting at flat pixel p. */
static int make_segs(seg_t *s, int64_t p, int64_t nl, int64_t OW) {
    int n = 0;
    for (int64_t l = 0; l < nl;) {
        int64_t q = p + l, oh = q / OW, ow = q % OW;
        int64_t len = DUET_MIN(nl - l, OW - ow);
        s[n].oh = (int32_t)oh, s[n].lane0 = (int32_t)l, s[n].len = (int32_t)len;
        s[n].ow0 = (int32_t)ow;
        n++;
        l += len;
    }
    return n;
}

/* Geometry shared by the packers. */
typedef struct {
    int64_t C, H, W, K, pad, OW, KK;
} geom;

/* For one vector of pixels (its runs s[0..ns)) and each tap kk = kh*K + kw:
 * the lanes that read inside the image and where lane 0 reads (relative to
 * the channel plane; may be negative, that lane is then masked). Entry
 * [kk * ns + i] is run i. A row outside the image gets mask 0. */
typedef struct {
    int32_t off;
    uint32_t mask;
} tap_t;

static void make_taps(const geom *g, tap_t *t, const seg_t *s, int ns) {
    for (int64_t kh = 0; kh < g->K; kh++)
        for (int64_t kw = 0; kw < g->K; kw++)
            for (int i = 0; i < ns; i++) {
                tap_t *e = &t[(kh * g->K + kw) * ns + i];
                const int64_t ih = s[i].oh - g->pad + kh;
                /* ow in [ow0, ow0 + len) with 0 <= ow - pad + kw < W */
                const int64_t lo = DUET_MAX((int64_t)s[i].ow0, g->pad - kw);
                const int64_t hi = DUET_MIN((int64_t)(s[i].ow0 + s[i].len), g->W + g->pad - kw);
                e->off = (int32_t)(ih * g->W + s[i].ow0 - g->pad + kw - s[i].lane0);
                e->mask = 0;
                if (ih < 0 || ih >= g->H || lo >= hi) continue;
                const int64_t l0 = lo - s[i].ow0 + s[i].lane0, l1 = hi - s[i].ow0 + s[i].lane0;
                e->mask = ((1u << l1) - 1u) & ~((1u << l0) - 1u);
            }
}

/* Lane l of the result = the tap of entry t at lane l's pixel of channel
 * plane xc (0 where masked). */
static inline __attribute__((always_inline)) __m512 tap_load(const float *xc, const tap_t *t,
                                                             int ns) {
    /* the address of lane 0 may lie before the plane: form it as an integer */
    __m512 acc = _mm512_maskz_loadu_ps(
        (__mmask16)t[0].mask, (const float *)((uintptr_t)xc + (uintptr_t)((intptr_t)t[0].off * 4)));
    for (int i = 1; i < ns; i++)
        acc = _mm512_mask_loadu_ps(
            acc, (__mmask16)t[i].mask,
            (const float *)((uintptr_t)xc + (uintptr_t)((intptr_t)t[i].off * 4)));
    return acc;
}

#define CV_MAXSEG 17 /* runs in 16 lanes: at most 16, plus one */

/* The packing buffers of a call: grown on demand, kept by the calling thread
 * for its next call (a training step makes ~100 calls of the same sizes;
 * fresh allocations of megabytes each cost page faults). Forward and
 * weight-gradient calls of one thread run one after the other. */
static _Thread_local float *cv_buf;
static _Thread_local size_t cv_cap; /* floats */

static float *cv_workspace(size_t floats) {
    if (floats <= cv_cap) return cv_buf;
    float *p = duet_alloc(floats * sizeof(float));
    if (!p) return NULL;
    duet_free(cv_buf);
    cv_buf = p;
    cv_cap = floats;
    return p;
}

/* ==== forward ==== */

typedef struct {
    const duet_gemm_arch *ar;
    geom g;
    const float *inp, *Ap, *bias, *cbias;
    float *out;
    float beta;
    int64_t N, OC, OHW, CKK, kc, tpi, ntiles;
} fwd_job;

/* Packs channels [c0, c0+nc) (all their taps) of one tile, pixels
 * [pix0, pix0+w) of image x, into dst: element (p, j) at p*pw + j. */
static void pack_tile(const fwd_job *J, float *dst, int64_t pw, const float *x, int64_t pix0,
                      int64_t w, int64_t c0, int64_t nc) {
    const geom *g = &J->g;
    seg_t segs[CV_MAXSEG];
    tap_t taps[2][CV_MAXK * CV_MAXK * CV_MAXSEG];
    int ns[2];
    const int nv = (int)(pw / 16);
    for (int v = 0; v < nv; v++) {
        int64_t nl = DUET_MAX(0, DUET_MIN(16, w - 16 * v));
        ns[v] = make_segs(segs, pix0 + 16 * v, nl, g->OW);
        make_taps(g, taps[v], segs, ns[v]);
    }
    const int64_t plane = g->H * g->W, KK = g->KK;
    if (nv == 2 && ns[0] == 1 && ns[1] == 1) { /* the common case: one run per vector */
        for (int64_t c = 0; c < nc; c++) {
            const float *xc = x + (c0 + c) * plane;
            float *d = dst + c * KK * 32;
            for (int64_t kk = 0; kk < KK; kk++) {
                _mm512_store_ps(d + kk * 32, tap_load(xc, &taps[0][kk], 1));
                _mm512_store_ps(d + kk * 32 + 16, tap_load(xc, &taps[1][kk], 1));
            }
        }
        return;
    }
    for (int64_t c = 0; c < nc; c++) {
        const float *xc = x + (c0 + c) * plane;
        float *d = dst + c * KK * pw;
        for (int64_t kk = 0; kk < KK; kk++)
            for (int v = 0; v < nv; v++)
                _mm512_store_ps(d + kk * pw + 16 * v, tap_load(xc, &taps[v][kk * ns[v]], ns[v]));
    }
}

static void fwd_unit(const fwd_job *J, float *Bp, int64_t t0, int64_t t1) {
    const duet_gemm_arch *ar = J->ar;
    const int64_t OHW = J->OHW, OC = J->OC, CHW = J->g.C * J->g.H * J->g.W;
    for (int64_t p0 = 0; p0 < J->CKK; p0 += J->kc) {
        const int64_t kb = DUET_MIN(J->kc, J->CKK - p0);
        const float *Ab = J->Ap + p0 * OC;
        const float beta = p0 == 0 ? J->beta : 1.0f;
        for (int64_t t = t0; t < t1; t++) {
            const int64_t n = t / J->tpi, pix0 = (t % J->tpi) * CV_TW;
            const int64_t w = DUET_MIN(CV_TW, OHW - pix0), pw = w > 16 ? 32 : 16;
            pack_tile(J, Bp + (t - t0) * kb * CV_TW, pw, J->inp + n * CHW, pix0, w, p0 / J->g.KK,
                      kb / J->g.KK);
        }
        for (int64_t ir = 0; ir < OC; ir += ar->mr) {
            const int64_t mw = DUET_MIN(ar->mr, OC - ir);
            for (int64_t t = t0; t < t1; t++) {
                const int64_t n = t / J->tpi, pix0 = (t % J->tpi) * CV_TW;
                const int64_t w = DUET_MIN(CV_TW, OHW - pix0);
                float *c = J->out + (n * OC + ir) * OHW + pix0;
                ar->ukr(kb, Ab + ir * kb, Bp + (t - t0) * kb * CV_TW, c, OHW, mw, w, 1.0f, beta);
            }
        }
    }
    if (!J->bias && !J->cbias) return;
    for (int64_t t = t0; t < t1; t++) {
        const int64_t n = t / J->tpi, pix0 = (t % J->tpi) * CV_TW;
        const int64_t w = DUET_MIN(CV_TW, OHW - pix0);
        for (int64_t o = 0; o < OC; o++) {
            const float b = (J->bias ? J->bias[o] : 0.0f) + (J->cbias ? J->cbias[n * OC + o] : 0.0f);
            float *row = J->out + (n * OC + o) * OHW + pix0;
            for (int64_t j = 0; j < w; j++) row[j] += b;
        }
    }
}

static int threads_for(double flops) {
    int nt = omp_in_parallel() ? 1 : duet_get_threads();
    if (flops < 4e6 * nt) nt = (int)(flops / 4e6);
    return nt < 1 ? 1 : nt;
}

int duet_conv_igemm_forward_avx512(float *out, const float *inp, const float *weight,
                                   const float *bias, const float *cbias, float beta, int64_t N,
                                   int64_t C, int64_t H, int64_t W, int64_t OC, int64_t K,
                                   int64_t pad) {
    if (K < 1 || K > CV_MAXK || pad < 0 || N < 1 || C < 1 || OC < 1) return -1;
    const int64_t OH = H + 2 * pad - K + 1, OW = W + 2 * pad - K + 1;
    if (OH < 1 || OW < 1) return -1;
    fwd_job J;
    J.ar = duet_gemm_arch_avx512();
    J.g = (geom){C, H, W, K, pad, OW, K * K};
    J.inp = inp, J.out = out, J.bias = bias, J.cbias = cbias, J.beta = beta;
    J.N = N, J.OC = OC, J.OHW = OH * OW, J.CKK = C * K * K;
    J.kc = K * K * even_block(C, DUET_MAX(1, CV_KC / (K * K))); /* whole channels */
    J.tpi = cdiv(J.OHW, CV_TW);
    J.ntiles = N * J.tpi;
    const int64_t nunits = cdiv(J.ntiles, CV_UNIT);
    const int nt = (int)DUET_MIN(threads_for(2.0 * (double)OC * (double)J.CKK * (double)(N * J.OHW)), nunits);
    const size_t a_floats = (size_t)(OC * J.CKK), b_floats = (size_t)(CV_UNIT * CV_TW * J.kc);
    float *buf = cv_workspace(a_floats + (size_t)nt * b_floats + 16);
    if (!buf) return -1;
    /* the weights, packed once: K block at Ap + p0*OC, panels of mr rows */
    float *Ap = buf;
    for (int64_t p0 = 0; p0 < J.CKK; p0 += J.kc) {
        const int64_t kb = DUET_MIN(J.kc, J.CKK - p0);
        J.ar->pack(Ap + p0 * OC, weight + p0, J.CKK, 0, kb, OC, J.ar->mr, 1);
    }
    J.Ap = Ap;
    float *bbase = buf + ((a_floats + 15) & ~(size_t)15);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *Bp = bbase + (size_t)omp_get_thread_num() * b_floats;
#pragma omp for schedule(static)
        for (int64_t u = 0; u < nunits; u++)
            fwd_unit(&J, Bp, u * CV_UNIT, DUET_MIN(J.ntiles, (u + 1) * CV_UNIT));
    }
    return 0;
}

/* ==== weight gradient ==== */

/* In-register transpose of 16 rows of 16 floats. */
static inline __attribute__((always_inline)) void tr16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
        __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* r[4g+k] now holds, in 128-bit block L, row 4L+k's... columns of group g */
    for (int k = 0; k < 4; k++) {
        __m512 a = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x44);
        __m512 b = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xee);
        __m512 c = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x44);
        __m512 d = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xee);
        t[k] = _mm512_shuffle_f32x4(a, c, 0x88);
        t[4 + k] = _mm512_shuffle_f32x4(a, c, 0xdd);
        t[8 + k] = _mm512_shuffle_f32x4(b, d, 0x88);
        t[12 + k] = _mm512_shuffle_f32x4(b, d, 0xdd);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

typedef struct {
    const duet_gemm_arch *ar;
    geom g;
    const float *dout, *inp;
    float *dweight;
    int64_t N, OC, OHW, CKK, pb;
} dw_job;

/* Packs pixels [q0, q0+np) of image x, tap columns [j0, j0+jn) into panels
 * of 32 columns: panel q at dst + q*32*np, element (p, j) at p*pw + j with
 * pw = 32, or 16 for a last panel of <= 16 columns (zero padding). */
static void pack_colT(const dw_job *J, float *dst, const float *x, int64_t q0, int64_t np,
                      int64_t j0, int64_t jn) {
    const geom *g = &J->g;
    const int64_t plane = g->H * g->W, KK = g->KK;
    seg_t segs[CV_MAXSEG];
    tap_t taps[CV_MAXK * CV_MAXK * CV_MAXSEG];
    for (int64_t pp = 0; pp < np; pp += 16) {
        const int64_t nl = DUET_MIN(16, np - pp);
        const int ns = make_segs(segs, q0 + pp, nl, g->OW);
        make_taps(g, taps, segs, ns);
        for (int64_t jr = 0; jr < jn; jr += CV_TW) {
            const int64_t w = DUET_MIN(CV_TW, jn - jr), pw = w > 16 ? 32 : 16;
            float *d = dst + jr * np;
            for (int64_t jh = 0; jh < pw; jh += 16) {
                __m512 r[16];
                const int64_t j = j0 + jr + jh;
                int64_t c = j / KK, kk = j % KK;
                for (int i = 0; i < 16; i++) {
                    if (jh + i < w) {
                        r[i] = tap_load(x + c * plane, &taps[kk * ns], ns);
                        if (++kk == KK) kk = 0, c++;
                    } else {
                        r[i] = _mm512_setzero_ps();
                    }
                }
                tr16(r);
                for (int64_t i = 0; i < nl; i++) _mm512_store_ps(d + (pp + i) * pw + jh, r[i]);
            }
        }
    }
}

/* One thread: tap columns [c0, c1) of dweight, all images and pixels. */
static void dw_range(const dw_job *J, float *Ad, float *Bp, int64_t c0, int64_t c1) {
    const duet_gemm_arch *ar = J->ar;
    const int64_t OHW = J->OHW, OC = J->OC, CKK = J->CKK, CHW = J->g.C * J->g.H * J->g.W;
    for (int64_t n = 0; n < J->N; n++) {
        const float *x = J->inp + n * CHW, *dy = J->dout + n * OC * OHW;
        for (int64_t q0 = 0; q0 < OHW; q0 += J->pb) {
            const int64_t kb = DUET_MIN(J->pb, OHW - q0);
            /* A: rows o of dout, depth = pixels, read in place */
            ar->pack(Ad, dy + q0, OHW, 0, kb, OC, ar->mr, 1);
            for (int64_t j0 = c0; j0 < c1; j0 += CV_NB) {
                const int64_t jn = DUET_MIN(CV_NB, c1 - j0);
                pack_colT(J, Bp, x, q0, kb, j0, jn);
                for (int64_t ir = 0; ir < OC; ir += ar->mr) {
                    const int64_t mw = DUET_MIN(ar->mr, OC - ir);
                    for (int64_t jr = 0; jr < jn; jr += CV_TW) {
                        const int64_t w = DUET_MIN(CV_TW, jn - jr);
                        ar->ukr(kb, Ad + ir * kb, Bp + jr * kb, J->dweight + ir * CKK + j0 + jr, CKK,
                                mw, w, 1.0f, 1.0f);
                    }
                }
            }
        }
    }
}

int duet_conv_igemm_dweight_avx512(float *dweight, const float *dout, const float *inp,
                                   int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC,
                                   int64_t K, int64_t pad) {
    if (K < 1 || K > CV_MAXK || pad < 0 || N < 1 || C < 1 || OC < 1) return -1;
    const int64_t OH = H + 2 * pad - K + 1, OW = W + 2 * pad - K + 1;
    if (OH < 1 || OW < 1) return -1;
    dw_job J;
    J.ar = duet_gemm_arch_avx512();
    J.g = (geom){C, H, W, K, pad, OW, K * K};
    J.dout = dout, J.inp = inp, J.dweight = dweight;
    J.N = N, J.OC = OC, J.OHW = OH * OW, J.CKK = C * K * K;
    J.pb = DUET_MIN(J.OHW, cdiv(even_block(J.OHW, CV_PB), 16) * 16);
    const int64_t npan = cdiv(J.CKK, CV_TW);
    const int nt = (int)DUET_MIN(threads_for(2.0 * (double)OC * (double)J.CKK * (double)(N * J.OHW)), npan);
    const size_t a_floats = (size_t)(cdiv(OC, 16) * 16 * J.pb), b_floats = (size_t)(CV_NB * J.pb);
    const size_t per = a_floats + b_floats;
    float *buf = cv_workspace((size_t)nt * per + 16);
    if (!buf) return -1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        float *Ad = buf + (size_t)t * per, *Bp = Ad + a_floats;
        const int64_t c0 = DUET_MIN(J.CKK, npan * t / n * CV_TW);
        const int64_t c1 = DUET_MIN(J.CKK, npan * (t + 1) / n * CV_TW);
        if (c0 < c1) dw_range(&J, Ad, Bp, c0, c1);
    }
    return 0;
}
