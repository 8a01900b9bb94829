/*
 * quant_x16_avx512.c — AVX-512 VNNI kernels over the 16-row layout
 * (quant_x16.h): a group of 16 rows times 1-4 tokens. i32 lane r of every
 * integer register is row r; a 64-byte chunk holds 4 codes of each row, and
 * one vpdpbusd with the token's 4 matching codes broadcast ({1to16}) adds
 * them to the 16 rows' sums. Codes are taken as they sit in the byte: the
 * low nibble with AND 0x0F, the high one with AND 0xF0 — 16 x the code, so
 * such a sum is exact times 16 and one arithmetic shift per sub-block
 * restores it. Integer sums are exact; each block or super-block's sum is
 * scaled once in float: y = sum over blocks of d[r] * dx * isum[r] (Q4_K
 * minus dmin[r] * dx * sum of mins x 32-value sums). The tokens of a call
 * share the weight loads and their unpacking (the prompt's GEMM); T = 1 is
 * the decode. A row's bits depend on neither its group's other rows nor T.
 */
#include "kernels/quant_x16.h"

#include <immintrin.h>
#include <string.h>

#define VNNI __attribute__((target("avx512vnni")))
#define INL static inline __attribute__((always_inline, target("avx512vnni")))

/* Prefetch distance ahead in the group's stream (the row kernels' 2 KiB). */
#ifndef X16_PF
#define X16_PF 2048
#endif

static inline int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
#define BC(p) _mm512_set1_epi32(ld32(p))
#define LD(p) _mm512_loadu_si512((const void *)(p))
#define DOT(acc, w, x) _mm512_dpbusd_epi32(acc, w, x)

static inline __m512 f16x16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
}

static inline void prefetch_rec(const uint8_t *w, int bytes) {
    for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)w + X16_PF + o, _MM_HINT_T0);
}

/* ---- Q4_0: per 32 columns, 4 chunks; low nibbles dot x[4c..], high x[16+4c..] ---- */
INL void q4_0_T(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, const int T, float *y,
                int64_t ldy) {
    const int64_t nb = K / QK;
    const __m512i m0f = _mm512_set1_epi8(0x0F), mf0 = _mm512_set1_epi8((char)0xF0);
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *w = P + g * nb * X16_Q4_0_REC;
        __m512 acc[4];
        for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++, w += X16_Q4_0_REC) {
            prefetch_rec(w, X16_Q4_0_REC);
            __m512i lo[4], hi[4];
            for (int c = 0; c < 4; c++) {
                const __m512i v = LD(w + 32 + 64 * c);
                lo[c] = _mm512_and_si512(v, m0f);
                hi[c] = _mm512_and_si512(v, mf0);
            }
            const __m512 d = f16x16(w);
            for (int t = 0; t < T; t++) {
                const uint8_t *x = a[t].q + b * Q8_0_BYTES + 2;
                __m512i s = _mm512_set1_epi32(a[t].xi[b]), s16 = _mm512_setzero_si512();
                for (int c = 0; c < 4; c++) {
                    s = DOT(s, lo[c], BC(x + 4 * c));
                    s16 = DOT(s16, hi[c], BC(x + 16 + 4 * c));
                }
                s = _mm512_add_epi32(s, _mm512_srai_epi32(s16, 4));
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(a[t].xd[b])),
                                         _mm512_cvtepi32_ps(s), acc[t]);
            }
        }
        for (int t = 0; t < T; t++) _mm512_storeu_ps(y + t * ldy + 16 * g, acc[t]);
    }
}

/* ---- Q8_0: per 32 columns, 8 chunks; codes + 128 (XOR 0x80) dot x[4c..] ---- */
INL void q8_0_T(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, const int T, float *y,
                int64_t ldy) {
    const int64_t nb = K / QK;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *w = P + g * nb * X16_Q8_0_REC;
        __m512 acc[4];
        for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++, w += X16_Q8_0_REC) {
            prefetch_rec(w, X16_Q8_0_REC);
            __m512i u[8];
            for (int c = 0; c < 8; c++) u[c] = _mm512_xor_si512(LD(w + 32 + 64 * c), flip);
            const __m512 d = f16x16(w);
            for (int t = 0; t < T; t++) {
                const uint8_t *x = a[t].q + b * Q8_0_BYTES + 2;
                __m512i s = _mm512_set1_epi32(a[t].xi[b]), s1 = _mm512_setzero_si512();
                for (int c = 0; c < 8; c += 2) {
                    s = DOT(s, u[c], BC(x + 4 * c));
                    s1 = DOT(s1, u[c + 1], BC(x + 4 * c + 4));
                }
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(a[t].xd[b])),
                                         _mm512_cvtepi32_ps(_mm512_add_epi32(s, s1)), acc[t]);
            }
        }
        for (int t = 0; t < T; t++) _mm512_storeu_ps(y + t * ldy + 16 * g, acc[t]);
    }
}

/* Bits at 2^from of each sum brought to 2^to: a shift either way (the sums
 * are exact multiples of 2^from). */
static inline __m512i to_units(__m512i v, int from, int to) {
    return to >= from ? _mm512_slli_epi32(v, (unsigned)(to - from))
                      : _mm512_srai_epi32(v, (unsigned)(from - to));
}

/* ---- Q4_K / Q5_K: per super-block 4 pairs of sub-blocks, 8 chunks each ----
 * Q5_K's fifth bits: bit j of qh chunk c's bytes belongs to sub-block j;
 * AND with 1 << j leaves 2^j per set bit, which to_units brings to the 16
 * it weighs in the code, after the sum, as for Q6_K. */
INL void q45_k_T(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, const int T, float *y,
                 int64_t ldy, const int Q5) {
    const int64_t ns = K / QK_K, rec = Q5 ? X16_Q5_K_REC : X16_Q4_K_REC;
    const int oq = Q5 ? 832 : 320;
    const __m512i m0f = _mm512_set1_epi8(0x0F), mf0 = _mm512_set1_epi8((char)0xF0);
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *w = P + g * ns * rec;
        __m512 acc[4];
        for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
        for (int64_t s = 0; s < ns; s++, w += rec) {
            __m512i isum[4];
            for (int t = 0; t < T; t++) isum[t] = _mm512_setzero_si512();
            if (Q5) prefetch_rec(w + 320, 512);
            for (int p = 0; p < 4; p++) {
                const uint8_t *wp = w + oq + 512 * p;
                prefetch_rec(wp, 512 + (p == 3 ? 320 : 0));
                const __m512i ma = _mm512_set1_epi8((char)(1 << (2 * p)));
                const __m512i mb = _mm512_set1_epi8((char)(2 << (2 * p)));
                __m512i sa[4], sb[4], ha[4], hb[4];
                for (int t = 0; t < T; t++) sa[t] = sb[t] = ha[t] = hb[t] = _mm512_setzero_si512();
                for (int c = 0; c < 8; c++) {
                    const __m512i v = LD(wp + 64 * c);
                    const __m512i lo = _mm512_and_si512(v, m0f), hi = _mm512_and_si512(v, mf0);
                    __m512i qa = lo, qb = hi;
                    if (Q5) {
                        const __m512i h = LD(w + 320 + 64 * c);
                        qa = _mm512_and_si512(h, ma);
                        qb = _mm512_and_si512(h, mb);
                    }
                    for (int t = 0; t < T; t++) {
                        const uint8_t *x = a[t].q + s * Q8_K_BYTES + Q8_K_QS + 64 * p + 4 * c;
                        const __m512i xa = BC(x), xb = BC(x + 32);
                        sa[t] = DOT(sa[t], lo, xa);
                        sb[t] = DOT(sb[t], hi, xb);
                        if (Q5) {
                            ha[t] = DOT(ha[t], qa, xa);
                            hb[t] = DOT(hb[t], qb, xb);
                        }
                    }
                }
                const __m512i sca = _mm512_cvtepu8_epi32(
                    _mm_loadu_si128((const __m128i *)(const void *)(w + 64 + 32 * p)));
                const __m512i scb = _mm512_cvtepu8_epi32(
                    _mm_loadu_si128((const __m128i *)(const void *)(w + 80 + 32 * p)));
                for (int t = 0; t < T; t++) {
                    __m512i ua = sa[t], ub = _mm512_srai_epi32(sb[t], 4);
                    if (Q5) {
                        ua = _mm512_add_epi32(ua, to_units(ha[t], 2 * p, 4));
                        ub = _mm512_add_epi32(ub, to_units(hb[t], 2 * p + 1, 4));
                    }
                    isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(ua, sca),
                                                                         _mm512_mullo_epi32(ub, scb)));
                }
            }
            /* mins: lane r holds (m[2jj], m[2jj+1]) as 16-bit pairs */
            __m512i mp[4];
            for (int jj = 0; jj < 4; jj++)
                mp[jj] = _mm512_cvtepu8_epi16(
                    _mm256_loadu_si256((const __m256i *)(const void *)(w + 192 + 32 * jj)));
            const __m512 d = f16x16(w), dm = f16x16(w + 32);
            for (int t = 0; t < T; t++) {
                const int32_t *xi = a[t].xi + 4 * s;
                __m512i ms =
                    _mm512_dpwssd_epi32(_mm512_setzero_si512(), mp[0], _mm512_set1_epi32(xi[0]));
                ms = _mm512_dpwssd_epi32(ms, mp[1], _mm512_set1_epi32(xi[1]));
                ms = _mm512_dpwssd_epi32(ms, mp[2], _mm512_set1_epi32(xi[2]));
                ms = _mm512_dpwssd_epi32(ms, mp[3], _mm512_set1_epi32(xi[3]));
                const __m512 dx = _mm512_set1_ps(a[t].xd[s]);
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(isum[t]), acc[t]);
                acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dm, dx), _mm512_cvtepi32_ps(ms), acc[t]);
            }
        }
        for (int t = 0; t < T; t++) _mm512_storeu_ps(y + t * ldy + 16 * g, acc[t]);
    }
}
INL void q4_k_T(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, const int T, float *y,
                int64_t ldy) {
    q45_k_T(P, ng, K, a, T, y, ldy, 0);
}
INL void q5_k_T(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, const int T, float *y,
                int64_t ldy) {
    q45_k_T(P, ng, K, a, T, y, ldy, 1);
}

/* ---- Q6_K ----
 * Values 128h + 32s + 4c..+3 (h 0-1, s 0-3, c 0-7) take their low 4 bits
 * from ql chunk 16h + 8(s & 1) + c (low nibble for s < 2, high for s >= 2)
 * and their high 2 from bits 2s of qh chunk 8h + c; sub-block
 * 8h + 2s + c / 4. Each part is dotted where it sits in the byte (AND
 * only) into one of two sums per sub-block, which the shifts below bring
 * to the code's units (q = nibble + 16 x high bits):
 *   s = 0: nibble x 1, high x 1 (needs << 4);  s = 1: x 1, x 4 (<< 2);
 *   s = 2: nibble x 16 (>> 4), high x 16 (= x 1 of q's 16 x high);
 *   s = 3: x 16 (>> 4), x 64 (>> 2). Exact: the sums are such multiples. */
INL void q6_k_T(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, const int T, float *y,
                int64_t ldy) {
    const int64_t ns = K / QK_K;
    const __m512i m0f = _mm512_set1_epi8(0x0F), mf0 = _mm512_set1_epi8((char)0xF0);
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *w = P + g * ns * X16_Q6_K_REC;
        __m512 acc[4];
        for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
        for (int64_t s = 0; s < ns; s++, w += X16_Q6_K_REC) {
            __m512i isum[4];
            for (int t = 0; t < T; t++) isum[t] = _mm512_setzero_si512();
            for (int h = 0; h < 2; h++)
                for (int cc = 0; cc < 2; cc++) {
                    const uint8_t *wh = w + 288 + 768 * (2 * h + cc);
                    prefetch_rec(wh, 768);
                    for (int sa = 0; sa < 2; sa++) {
                        const __m512i mlo = _mm512_set1_epi8((char)(3 << (2 * sa)));
                        const __m512i mhi = _mm512_set1_epi8((char)(3 << (2 * sa + 4)));
                        const uint8_t *wl = wh + 256 * (1 + sa);
                        __m512i nl[4], hl[4], nh[4], hh[4];
                        for (int t = 0; t < T; t++)
                            nl[t] = hl[t] = nh[t] = hh[t] = _mm512_setzero_si512();
                        for (int c = 0; c < 4; c++) {
                            const __m512i ql = LD(wl + 64 * c), qh = LD(wh + 64 * c);
                            const __m512i n0 = _mm512_and_si512(ql, m0f),
                                          n1 = _mm512_and_si512(ql, mf0);
                            const __m512i h0 = _mm512_and_si512(qh, mlo),
                                          h1 = _mm512_and_si512(qh, mhi);
                            for (int t = 0; t < T; t++) {
                                const uint8_t *x = a[t].q + s * Q8_K_BYTES + Q8_K_QS + 128 * h +
                                                   32 * sa + 4 * (4 * cc + c);
                                const __m512i xl = BC(x), xh = BC(x + 64);
                                nl[t] = DOT(nl[t], n0, xl);
                                hl[t] = DOT(hl[t], h0, xl);
                                nh[t] = DOT(nh[t], n1, xh);
                                hh[t] = DOT(hh[t], h1, xh);
                            }
                        }
                        const int jl = 8 * h + 2 * sa + cc, jh = jl + 4;
                        const __m512i scl = _mm512_cvtepi8_epi32(
                            _mm_loadu_si128((const __m128i *)(const void *)(w + 32 + 16 * jl)));
                        const __m512i sch = _mm512_cvtepi8_epi32(
                            _mm_loadu_si128((const __m128i *)(const void *)(w + 32 + 16 * jh)));
                        for (int t = 0; t < T; t++) {
                            const int32_t *xi = a[t].xi + 16 * s;
                            const __m512i lo = _mm512_add_epi32(
                                _mm512_add_epi32(nl[t], _mm512_slli_epi32(hl[t], sa ? 2 : 4)),
                                _mm512_set1_epi32(xi[jl]));
                            const __m512i hi = _mm512_add_epi32(
                                _mm512_add_epi32(_mm512_srai_epi32(nh[t], 4),
                                                 sa ? _mm512_srai_epi32(hh[t], 2) : hh[t]),
                                _mm512_set1_epi32(xi[jh]));
                            isum[t] = _mm512_add_epi32(
                                isum[t], _mm512_add_epi32(_mm512_mullo_epi32(lo, scl),
                                                          _mm512_mullo_epi32(hi, sch)));
                        }
                    }
                }
            const __m512 d = f16x16(w);
            for (int t = 0; t < T; t++)
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(a[t].xd[s])),
                                         _mm512_cvtepi32_ps(isum[t]), acc[t]);
        }
        for (int t = 0; t < T; t++) _mm512_storeu_ps(y + t * ldy + 16 * g, acc[t]);
    }
}

#define GEMV(NAME, KER)                                                                        \
    VNNI void NAME(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, int T, float *y, \
                   int64_t ldy) {                                                              \
        switch (T) {                                                                           \
        case 1: KER(P, ng, K, a, 1, y, ldy); break;                                            \
        case 2: KER(P, ng, K, a, 2, y, ldy); break;                                            \
        case 3: KER(P, ng, K, a, 3, y, ldy); break;                                            \
        default: KER(P, ng, K, a, 4, y, ldy); break;                                           \
        }                                                                                      \
    }
GEMV(duet_x16_gemv_q4_0, q4_0_T)
GEMV(duet_x16_gemv_q8_0, q8_0_T)
GEMV(duet_x16_gemv_q4_k, q4_k_T)
GEMV(duet_x16_gemv_q5_k, q5_k_T)
GEMV(duet_x16_gemv_q6_k, q6_k_T)
