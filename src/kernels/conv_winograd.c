/*
 * conv_winograd.c — Winograd F(4x4, 3x3) convolution for 3x3 kernels with
 * stride 1 and padding 1 (the UNet's convolutions and their input
 * gradients), on the AVX-512 SGEMM microkernel. See conv_gemm.h for the
 * contract; the caller falls back to the implicit GEMM when this returns -1.
 *
 * The output is cut into 4x4 tiles; a tile reads the 6x6 input patch around
 * it (rows 4ty-1 .. 4ty+4, the padding read as 0). With the transforms of
 * F(4x4, 3x3) (interpolation points 0, 1, -1, 2, -2, inf):
 *   U[xi][o][c] = (G g[o][c] G^T)[xi]          weights, once per call
 *   V[xi][c][t] = (B^T d[c][t] B)[xi]          per tile t and channel c
 *   M[xi][o][t] = sum_c U[xi][o][c] V[xi][c][t]  36 GEMMs [OC x C] x [C x tiles]
 *   out tile    = A^T M[.][o][t] A             (+ bias, channel bias, beta * out)
 * so 36 multiplies per channel pair and tile instead of 144 (4x fewer).
 *
 * Tiles of all images are numbered (image, tile row, tile column) and cut
 * into blocks of WG_TB; threads take whole blocks. Per block a thread
 * transforms the input tiles 16 at a time (one AVX-512 lane per tile: patch
 * rows loaded under masks that do the padding, then transposed in registers)
 * straight into the
 * microkernel's B-panel layout (panels of 32 tiles), runs the microkernel for
 * the 36 GEMMs into M, and transforms M back, 16 tiles at a time, adding the
 * biases (and the old output when beta is 1), transposing back in registers
 * and storing the 4x4 results into [N, OC, H, W] under masks that drop the
 * tile parts beyond the image.
 * A tile's result depends only on its own data, computed in the same order
 * whatever the thread count or block, so results do not depend on threads.
 *
 * Accuracy: F(4x4, 3x3) in fp32 errs by a few 1e-6 of the output's RMS
 * (rms) and up to ~5e-5 of it (max) with 64..256 channels, against ~1e-6 /
 * ~5e-6 for a direct fp32 sum; tests/test_conv_winograd.c has the bound.
 * The weight transform scales once, after exact-but-for-rounding adds.
 *
 * DUET_CONV_WINOGRAD=0 in the environment (or duet_conv_winograd_enable(0))
 * turns this path off.
 *
 * What it is not: other kernel sizes, strides or paddings, the weight
 * gradient (conv_avx512.c), or a path for CPUs without AVX-512.
 */
#include "core/internal.h"
#include "kernels/conv_gemm.h"
#include "kernels/gemm_blocked.h"
#include "kernels/kernels.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* -1: not read yet; 0 off; 1 on */
static _Atomic int wg_enabled = -1;

void duet_conv_winograd_enable(int on) {
    if (on < 0) {
        const char *e = getenv("DUET_CONV_WINOGRAD");
        on = !(e && e[0] == '0' && e[1] == '\0');
    }
    atomic_store(&wg_enabled, on ? 1 : 0);
}

int duet_conv_winograd_enabled(void) {
    if (atomic_load(&wg_enabled) < 0) duet_conv_winograd_enable(-1);
    return atomic_load(&wg_enabled);
}

#if defined(__x86_64__)

#include <immintrin.h>

/* The kernels below are compiled for AVX-512 (this file gets no ISA flags
 * from the Makefile) and only called when the AVX-512 kernel set is active. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
#endif

/* Tiles per block: two 32-column panels of the microkernel. 32 and 128 were
 * no faster at the UNet's shapes (V and M of a block stay near L2 size). */
#define WG_TB 64

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* The buffers of a call (transformed weights, per-thread V and M), grown on
 * demand and kept by the calling thread for its next call. */
static _Thread_local float *wg_buf;
static _Thread_local size_t wg_cap; /* floats */

static float *wg_workspace(size_t floats) {
    if (floats <= wg_cap) return wg_buf;
    float *p = duet_alloc(floats * sizeof(float));
    if (!p) return NULL;
    duet_free(wg_buf);
    wg_buf = p;
    wg_cap = floats;
    return p;
}

typedef struct {
    const duet_gemm_arch *ar;
    const float *inp, *U, *bias, *cbias;
    float *out;
    float beta;
    int64_t N, C, H, W, OC, ntx, tpi, ntiles;
} wg_job;

/* p + off floats, formed as an integer: the address may lie outside the
 * array when every lane that uses it is masked off. */
static inline __attribute__((always_inline)) const float *fptr(const float *p, int64_t off) {
    return (const float *)((uintptr_t)p + (uintptr_t)(off * 4));
}

/* Sixteen tiles, one per lane: where each one's patch starts in its image
 * plane (row 4ty-1, column 4tx-1, as an offset from the channel-0 plane of
 * image 0) and its output tile (row 4ty, column 4tx); per patch row i the
 * columns 0..5 that lie in the image (min), 0 for rows outside; per output
 * row r the columns 0..3 inside (mout). Lanes past the last tile have all
 * masks 0. */
typedef struct {
    int64_t ioff[16], ooff[16];
    __mmask16 min[6][16], mout[4][16];
    __m512i cbase; /* n * OC per lane, for the channel bias */
    __mmask16 any;
    /* Fast groups: four runs of four consecutive tiles of one tile row
     * (tile columns a multiple of 4, 16 tiles). Run g's patch row i is 18
     * floats: one load of 16 from its first column (mask fin) and one of 16
     * from 4 further (fin2; only its first two columns of each tile are
     * used); its output row r is 16 contiguous floats (mask fout). A 4x4
     * transpose inside each 128-bit lane then gives the columns with lane
     * 4k + g = tile k of run g, and back. */
    int fast;
    int64_t rin[4], rout[4];
    __mmask16 fin[6][4], fin2[6][4], fout[4][4];
} grp_t;

/* Lane of tile q (0..15) of a group: q itself, or 4k + g for q = 4g + k in a fast group. */
static int grp_lane(int fast, int q) { return fast ? 4 * (q % 4) + q / 4 : q; }

static void grp_setup(const wg_job *J, grp_t *G, int64_t t0, int64_t cnt) {
    int32_t cb[16];
    unsigned any = 0;
    const int64_t H = J->H, W = J->W;
    G->fast = J->ntx % 4 == 0 && t0 % 4 == 0 && cnt >= 16;
    for (int l = 0; l < 16; l++) {
        G->ioff[l] = G->ooff[l] = 0;
        cb[l] = 0;
        for (int i = 0; i < 6; i++) G->min[i][l] = 0;
        for (int i = 0; i < 4; i++) G->mout[i][l] = 0;
    }
    for (int q = 0; q < 16 && q < cnt; q++) {
        const int l = grp_lane(G->fast, q);
        const int64_t t = t0 + q, n = t / J->tpi, r = t % J->tpi;
        const int64_t y0 = 4 * (r / J->ntx), x0 = 4 * (r % J->ntx);
        G->ioff[l] = n * J->C * H * W + (y0 - 1) * W + (x0 - 1);
        G->ooff[l] = n * J->OC * H * W + y0 * W + x0;
        cb[l] = (int32_t)(n * J->OC);
        any |= 1u << l;
        unsigned ci = 0, co = 0;
        for (int j = 0; j < 6; j++)
            if (x0 - 1 + j >= 0 && x0 - 1 + j < W) ci |= 1u << j;
        for (int j = 0; j < 4; j++)
            if (x0 + j < W) co |= 1u << j;
        for (int i = 0; i < 6; i++)
            if (y0 - 1 + i >= 0 && y0 - 1 + i < H) G->min[i][l] = (__mmask16)ci;
        for (int i = 0; i < 4; i++)
            if (y0 + i < H) G->mout[i][l] = (__mmask16)co;
    }
    G->cbase = _mm512_loadu_si512(cb);
    G->any = (__mmask16)any;
    if (!G->fast) return;
    for (int g = 0; g < 4; g++) {
        const int64_t r = (t0 + 4 * g) % J->tpi, n = (t0 + 4 * g) / J->tpi;
        const int64_t y0 = 4 * (r / J->ntx), x0 = 4 * (r % J->ntx);
        G->rin[g] = n * J->C * H * W + (y0 - 1) * W + (x0 - 1);
        G->rout[g] = n * J->OC * H * W + y0 * W + x0;
        unsigned m1 = 0, m2 = 0, mo = 0;
        for (int b = 0; b < 16; b++) {
            if (x0 - 1 + b >= 0 && x0 - 1 + b < W) m1 |= 1u << b;
            if (x0 + 3 + b < W) m2 |= 1u << b;
            if (x0 + b < W) mo |= 1u << b;
        }
        for (int i = 0; i < 6; i++) {
            const int in = y0 - 1 + i >= 0 && y0 - 1 + i < H;
            G->fin[i][g] = (__mmask16)(in ? m1 : 0);
            G->fin2[i][g] = (__mmask16)(in ? m2 : 0);
        }
        for (int i = 0; i < 4; i++) G->fout[i][g] = (__mmask16)(y0 + i < H ? mo : 0);
    }
}

/* 4x4 transpose inside each 128-bit lane: lane k of out[g] = element g of
 * lane k of in[0..3]. */
static inline __attribute__((always_inline)) void tr4x4(const __m512 in[4], __m512 out[4]) {
    const __m512 a = _mm512_unpacklo_ps(in[0], in[1]), b = _mm512_unpackhi_ps(in[0], in[1]);
    const __m512 c = _mm512_unpacklo_ps(in[2], in[3]), d = _mm512_unpackhi_ps(in[2], in[3]);
    out[0] = _mm512_shuffle_ps(a, c, 0x44);
    out[1] = _mm512_shuffle_ps(a, c, 0xee);
    out[2] = _mm512_shuffle_ps(b, d, 0x44);
    out[3] = _mm512_shuffle_ps(b, d, 0xee);
}

/* Patch row i of a fast group: columns d[0..5], lane 4k + g = tile k of run g. */
static inline __attribute__((always_inline)) void fast_row(const grp_t *G, const float *xc,
                                                           int i, int64_t W, __m512 d[6]) {
    __m512 a[4], a2[4];
    for (int g = 0; g < 4; g++) {
        a[g] = _mm512_maskz_loadu_ps(G->fin[i][g], fptr(xc, G->rin[g] + i * W));
        a2[g] = _mm512_maskz_loadu_ps(G->fin2[i][g], fptr(xc, G->rin[g] + i * W + 4));
    }
    tr4x4(a, d);
    const __m512 p = _mm512_unpacklo_ps(a2[0], a2[1]), q = _mm512_unpacklo_ps(a2[2], a2[3]);
    d[4] = _mm512_shuffle_ps(p, q, 0x44);
    d[5] = _mm512_shuffle_ps(p, q, 0xee);
}

/* y = B^T x for F(4x4, 3x3):
 *   [4  0 -5  0 1 0]  [0 -4 -4  1 1 0]  [0 4 -4 -1 1 0]
 *   [0 -2 -1  2 1 0]  [0  2 -1 -2 1 0]  [0 4  0 -5 0 1] */
static inline __attribute__((always_inline)) void bt6(const __m512 x[6], __m512 y[6]) {
    const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f),
                 two = _mm512_set1_ps(2.0f);
    const __m512 a = _mm512_fnmadd_ps(four, x[2], x[4]); /* x4 - 4 x2 */
    const __m512 b = _mm512_fnmadd_ps(four, x[1], x[3]); /* x3 - 4 x1 */
    const __m512 c = _mm512_sub_ps(x[4], x[2]);
    const __m512 d = _mm512_mul_ps(two, _mm512_sub_ps(x[3], x[1]));
    y[0] = _mm512_fmadd_ps(four, x[0], _mm512_fnmadd_ps(five, x[2], x[4]));
    y[1] = _mm512_add_ps(a, b);
    y[2] = _mm512_sub_ps(a, b);
    y[3] = _mm512_add_ps(c, d);
    y[4] = _mm512_sub_ps(c, d);
    y[5] = _mm512_fmadd_ps(four, x[1], _mm512_fnmadd_ps(five, x[3], x[5]));
}

/* y = A^T x: [1 1 1 1 1 0] [0 1 -1 2 -2 0] [0 1 1 4 4 0] [0 1 -1 8 -8 1] */
static inline __attribute__((always_inline)) void at4(const __m512 x[6], __m512 y[4]) {
    const __m512 s1 = _mm512_add_ps(x[1], x[2]), d1 = _mm512_sub_ps(x[1], x[2]);
    const __m512 s2 = _mm512_add_ps(x[3], x[4]), d2 = _mm512_sub_ps(x[3], x[4]);
    y[0] = _mm512_add_ps(_mm512_add_ps(x[0], s1), s2);
    y[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d2, d1);
    y[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), s2, s1);
    y[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d2, d1), x[5]);
}

/* V entries of 16 tiles, all channels: entry xi of channel c at
 * V + xi * ldxi + c * 32 (the microkernel's B panel of 32 columns).
 * Patch row i of tiles p and p+8 is loaded into the two halves of one
 * vector (masked loads: the mask does the padding), and an 8x8 transpose in
 * each half turns the eight vectors into columns j, one tile per lane. */
__attribute__((noinline)) static void input_transform(const wg_job *J, const grp_t *G, float *V,
                                                      int64_t ldxi) {
    const int64_t HW = J->H * J->W, W = J->W;
    const __m512i lo = _mm512_set_epi32(27, 26, 25, 24, 11, 10, 9, 8, 19, 18, 17, 16, 3, 2, 1, 0);
    const __m512i hi = _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 23, 22, 21, 20, 7, 6, 5, 4);
    for (int64_t c = 0; c < J->C; c++) {
        const float *xc = J->inp + c * HW;
        __m512 w[6][6];
        for (int i = 0; i < 6; i++) {
            __m512 r[8], t[8], u[8], d[6], y[6];
            if (G->fast) {
                fast_row(G, xc, i, W, d);
                bt6(d, y);
                for (int k = 0; k < 6; k++) w[k][i] = y[k];
                continue;
            }
            for (int p = 0; p < 8; p++) {
                r[p] = _mm512_maskz_loadu_ps(G->min[i][p], fptr(xc, G->ioff[p] + i * W));
                r[p] = _mm512_mask_loadu_ps(r[p], (__mmask16)(G->min[i][p + 8] << 8),
                                            fptr(xc, G->ioff[p + 8] + i * W - 8));
            }
            for (int p = 0; p < 8; p += 2) {
                t[p] = _mm512_unpacklo_ps(r[p], r[p + 1]);
                t[p + 1] = _mm512_unpackhi_ps(r[p], r[p + 1]);
            }
            for (int p = 0; p < 8; p += 4) {
                u[p] = _mm512_shuffle_ps(t[p], t[p + 2], 0x44);
                u[p + 1] = _mm512_shuffle_ps(t[p], t[p + 2], 0xee);
                u[p + 2] = _mm512_shuffle_ps(t[p + 1], t[p + 3], 0x44);
                u[p + 3] = _mm512_shuffle_ps(t[p + 1], t[p + 3], 0xee);
            }
            for (int j = 0; j < 4; j++) d[j] = _mm512_permutex2var_ps(u[j], lo, u[j + 4]);
            for (int j = 4; j < 6; j++) d[j] = _mm512_permutex2var_ps(u[j - 4], hi, u[j]);
            bt6(d, y);
            for (int k = 0; k < 6; k++) w[k][i] = y[k]; /* w[k][i] = (d B)[i][k] */
        }
        float *vc = V + c * 32;
        for (int k = 0; k < 6; k++) {
            __m512 v[6];
            bt6(w[k], v); /* v[l] = (B^T d B)[l][k] */
            for (int l = 0; l < 6; l++) _mm512_store_ps(vc + (l * 6 + k) * ldxi, v[l]);
        }
    }
}

/* out tiles of 16 tiles from M (entry xi of channel o at M + xi * ldxi + o * WG_TB).
 * Output row r of the 16 tiles (four vectors, one tile per lane) is
 * transposed 4x4 within each 128-bit lane, so that tile 4g+q's four values
 * are lane g of vector q: one masked store each. */
__attribute__((noinline)) static void output_transform(const wg_job *J, const grp_t *G,
                                                       const float *M, int64_t ldxi) {
    const int64_t HW = J->H * J->W, W = J->W;
    for (int64_t o = 0; o < J->OC; o++) {
        const float *mo = M + o * WG_TB;
        __m512 t[4][6];
        for (int i = 0; i < 6; i++) {
            __m512 x[6], y[4];
            for (int j = 0; j < 6; j++) x[j] = _mm512_load_ps(mo + (i * 6 + j) * ldxi);
            at4(x, y);
            for (int c = 0; c < 4; c++) t[c][i] = y[c]; /* t[c][i] = (M A)[i][c] */
        }
        __m512 b = _mm512_set1_ps(J->bias ? J->bias[o] : 0.0f);
        if (J->cbias)
            b = _mm512_add_ps(b, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), G->any,
                                                          G->cbase, J->cbias + o, 4));
        float *oo = J->out + o * HW;
        __m512 Y[4][4]; /* Y[c][r] */
        for (int c = 0; c < 4; c++) {
            at4(t[c], Y[c]); /* Y[c][r] = (A^T M A)[r][c] */
            for (int r = 0; r < 4; r++) Y[c][r] = _mm512_add_ps(Y[c][r], b);
        }
        if (G->fast) {
            for (int r = 0; r < 4; r++) {
                const __m512 in[4] = {Y[0][r], Y[1][r], Y[2][r], Y[3][r]};
                __m512 q[4];
                tr4x4(in, q); /* q[g]: output row r of run g, 16 contiguous floats */
                for (int g = 0; g < 4; g++) {
                    float *dst = (float *)fptr(oo, G->rout[g] + r * W);
                    __m512 v = q[g];
                    if (J->beta != 0.0f)
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(G->fout[r][g], dst));
                    _mm512_mask_storeu_ps(dst, G->fout[r][g], v);
                }
            }
            continue;
        }
        for (int r = 0; r < 4; r++) {
            const __m512 a = _mm512_unpacklo_ps(Y[0][r], Y[1][r]);
            const __m512 bb = _mm512_unpackhi_ps(Y[0][r], Y[1][r]);
            const __m512 cc = _mm512_unpacklo_ps(Y[2][r], Y[3][r]);
            const __m512 dd = _mm512_unpackhi_ps(Y[2][r], Y[3][r]);
            const __m512 q[4] = {_mm512_shuffle_ps(a, cc, 0x44), _mm512_shuffle_ps(a, cc, 0xee),
                                 _mm512_shuffle_ps(bb, dd, 0x44), _mm512_shuffle_ps(bb, dd, 0xee)};
            for (int l = 0; l < 16; l++) {
                const int g = l / 4;
                const __mmask16 mk = (__mmask16)(G->mout[r][l] << (4 * g));
                float *dst = (float *)fptr(oo, G->ooff[l] + r * W - 4 * g);
                __m512 v = q[l % 4];
                if (J->beta != 0.0f) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, dst));
                _mm512_mask_storeu_ps(dst, mk, v);
            }
        }
    }
}

/* Floats between the 36 slices of V (rows = C) or M (rows = OC): the slice
 * plus 64 bytes, so that the 36 streams of a transform do not all fall into
 * one L1 set (a slice is a multiple of 4 KiB). */
static int64_t wg_ld(int64_t rows) { return rows * WG_TB + 16; }

/* One block: tiles [t0, t0 + cnt), cnt <= WG_TB. V: 36 x [C x WG_TB], M: 36 x [OC x WG_TB]. */
static void wg_block(const wg_job *J, float *V, float *M, int64_t t0, int64_t cnt) {
    const duet_gemm_arch *ar = J->ar;
    const int64_t C = J->C, OC = J->OC, npan = cdiv(cnt, 32);
    const int64_t ldv = wg_ld(C), ldm = wg_ld(OC);
    grp_t G[WG_TB / 16];
    for (int64_t g = 0; g < 2 * npan; g++) {
        grp_setup(J, &G[g], t0 + 16 * g, cnt - 16 * g);
        input_transform(J, &G[g], V + (g / 2) * C * 32 + (g % 2) * 16, ldv);
    }
    for (int64_t xi = 0; xi < 36; xi++) {
        const float *Ux = J->U + xi * OC * C, *Vx = V + xi * ldv;
        float *Mx = M + xi * ldm;
        for (int64_t ir = 0; ir < OC; ir += ar->mr) {
            const int64_t mw = DUET_MIN(ar->mr, OC - ir);
            for (int64_t q = 0; q < npan; q++)
                ar->ukr(C, Ux + ir * C, Vx + q * C * 32, Mx + ir * WG_TB + q * 32, WG_TB, mw, 32,
                        1.0f, 0.0f);
        }
    }
    for (int64_t g = 0; g < cdiv(cnt, 16); g++) output_transform(J, &G[g], M + g * 16, ldm);
}

/* U = G g G^T, stored as the microkernel's A panels: entry xi of (o, c) at
 * U + xi*OC*C + ir*C + c*mw + (o - ir), ir = o's panel start, mw its rows.
 * G = D G' with G' integer ([1 0 0] [1 1 1] [1 -1 1] [1 2 4] [1 -2 4]
 * [0 0 1]) and D = diag(1/4, -1/6, -1/6, 1/24, 1/24, 1): G' g G'^T is
 * formed with adds (exact but for rounding), then scaled by d_i d_j once.
 * One lane per output channel of a panel, so the stores are contiguous. */
/* y = G' (a, b, e): [1 0 0] [1 1 1] [1 -1 1] [1 2 4] [1 -2 4] [0 0 1]. */
static inline __attribute__((always_inline)) void g6(__m512 a, __m512 b, __m512 e, __m512 y[6]) {
    const __m512 ae = _mm512_add_ps(a, e), a4 = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), e, a);
    const __m512 b2 = _mm512_add_ps(b, b);
    y[0] = a;
    y[1] = _mm512_add_ps(ae, b);
    y[2] = _mm512_sub_ps(ae, b);
    y[3] = _mm512_add_ps(a4, b2);
    y[4] = _mm512_sub_ps(a4, b2);
    y[5] = e;
}

/* Panel p (output channels ir .. ir+mw) of U, all input channels; dd[xi] = d_i d_j. */
static void weight_panel(float *U, const float *weight, int64_t OC, int64_t C, int64_t mr,
                         int64_t p, const float dd[36]) {
    const int64_t ir = p * mr, mw = DUET_MIN(mr, OC - ir);
    const __mmask16 mk = (__mmask16)((1u << mw) - 1u);
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i idx = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int32_t)(C * 9)));
    for (int64_t c = 0; c < C; c++) {
        const float *g0 = weight + (ir * C + c) * 9;
        __m512 g[9], t[3][6]; /* t[j] = column j of G' g */
        for (int k = 0; k < 9; k++)
            g[k] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, g0 + k, 4);
        for (int j = 0; j < 3; j++) g6(g[j], g[3 + j], g[6 + j], t[j]);
        float *u = U + ir * C + c * mw;
        for (int i = 0; i < 6; i++) {
            __m512 r[6]; /* row i of G' g G'^T */
            g6(t[0][i], t[1][i], t[2][i], r);
            for (int j = 0; j < 6; j++)
                _mm512_mask_storeu_ps(u + (i * 6 + j) * OC * C, mk,
                                      _mm512_mul_ps(_mm512_set1_ps(dd[i * 6 + j]), r[j]));
        }
    }
}

/* (the OpenMP region only calls: its outlined body carries no vector types) */
static void weight_transform(float *U, const float *weight, int64_t OC, int64_t C, int64_t mr) {
    static const double d[6] = {0.25, -1.0 / 6, -1.0 / 6, 1.0 / 24, 1.0 / 24, 1.0};
    float dd[36];
    for (int i = 0; i < 36; i++) dd[i] = (float)(d[i / 6] * d[i % 6]);
    const int64_t npan = cdiv(OC, mr);
#pragma omp parallel for schedule(static) if (duet_omp_enough(OC * C * 36))
    for (int64_t p = 0; p < npan; p++) weight_panel(U, weight, OC, C, mr, p, dd);
}

static int wg_threads(double flops) {
    int nt = omp_in_parallel() ? 1 : duet_get_threads();
    if (flops < 4e6 * nt) nt = (int)(flops / 4e6);
    return nt < 1 ? 1 : nt;
}

static int wg_forward_avx512(float *out, const float *inp, const float *weight, const float *bias,
                             const float *cbias, float beta, int64_t N, int64_t C, int64_t H,
                             int64_t W, int64_t OC) {
    /* lane offsets are 32-bit */
    if ((double)N * (double)DUET_MAX(C, OC) * (double)(H * W) >= 2147483647.0 - 8.0 * (double)W)
        return -1;
    wg_job J;
    J.ar = duet_gemm_arch_avx512();
    J.inp = inp, J.bias = bias, J.cbias = cbias, J.out = out, J.beta = beta;
    J.N = N, J.C = C, J.H = H, J.W = W, J.OC = OC;
    J.ntx = cdiv(W, 4);
    J.tpi = cdiv(H, 4) * J.ntx;
    J.ntiles = N * J.tpi;
    const int64_t nblocks = cdiv(J.ntiles, WG_TB);
    const int nt = (int)DUET_MIN(wg_threads(72.0 * (double)OC * (double)C * (double)J.ntiles),
                                 nblocks);
    const size_t u_floats = (size_t)(36 * OC * C + 15) & ~(size_t)15;
    const size_t per = (size_t)(36 * (wg_ld(C) + wg_ld(OC)));
    float *buf = wg_workspace(u_floats + (size_t)nt * per);
    if (!buf) return -1;
    weight_transform(buf, weight, OC, C, J.ar->mr);
    J.U = buf;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *V = buf + u_floats + (size_t)omp_get_thread_num() * per;
        float *M = V + 36 * wg_ld(C);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; b++)
            wg_block(&J, V, M, b * WG_TB, DUET_MIN(WG_TB, J.ntiles - b * WG_TB));
    }
    return 0;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif

int duet_conv_winograd_forward(float *out, const float *inp, const float *weight,
                               const float *bias, const float *cbias, float beta, int64_t N,
                               int64_t C, int64_t H, int64_t W, int64_t OC, int64_t K,
                               int64_t pad) {
    if (K != 3 || pad != 1 || N < 1 || C < 1 || OC < 1 || H < 1 || W < 1) return -1;
    if (!duet_conv_winograd_enabled()) return -1;
#if defined(__x86_64__)
    if (duet_k.isa && strcmp(duet_k.isa, "avx512") == 0)
        return wg_forward_avx512(out, inp, weight, bias, cbias, beta, N, C, H, W, OC);
#endif
    (void)out, (void)inp, (void)weight, (void)bias, (void)cbias, (void)beta;
    return -1;
}
