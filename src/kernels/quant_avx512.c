#ifndef QUANT_AVX512_PASS
/*
 * quant_avx512.c — AVX-512 dot products of quantized weights with quantized
 * activations (compiled with -mavx512f/bw/vl/dq, -mfma, -mf16c).
 *
 * Two kernel tables come out of this one file: the integer kernels below
 * the "pass body" line are compiled twice by including the file into itself
 * (QUANT_AVX512_PASS 1 and 2) with a different DPB(acc, u8, s8) — the
 * 4-way u8 x s8 dot accumulated into i32 lanes:
 *   pass 1 (duet_quant_kernels_avx512):      vpmaddubsw + vpmaddwd + vpaddd
 *   pass 2 (duet_quant_kernels_avx512_vnni): vpdpbusd, in functions marked
 *                                            target("avx512vnni")
 * so one binary runs on AVX-512 CPUs without VNNI (Skylake-X) and uses
 * vpdpbusd where it exists (duet_quant_kernels_select picks by CPUID).
 *
 * Layout tricks per kernel are commented where they are used; the integer
 * sums per block equal the scalar reference's exactly (activations never
 * hold -128, so the sign trick |w| x sign(x, w) is exact and no i16 pair
 * sum of maddubs can saturate). Types without an entry here (Q4_1, Q5_0,
 * Q5_1) use the AVX2 kernels through the table's fallback.
 */
#include "kernels/quant.h"

#include <immintrin.h>

static inline float f16s(const uint8_t *p) { return _cvtsh_ss(q_u16(p)); }

/* Two 32-byte runs into one register: a in bytes 0-31, b in 32-63. */
static inline __m512i pair256(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

/* x negated in the bytes where w is negative (the sign trick's sign(x, w)). */
static inline __m512i neg_where(__m512i x, __m512i w) {
    return _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
}

/* lanes 0-7 = a, lanes 8-15 = b */
static inline __m512 pair_ps(float a, float b) {
    return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

/* The 8 six-bit scales (or mins) of a Q4_K/Q5_K block as 16 i32 lanes
 * (lanes 0-7; 8-15 zero), unpacked with 32-bit word operations — the same
 * mapping as q_k_scales. */
static inline void k_scales512(const uint8_t *s, __m512i *sc, __m512i *m) {
    const uint32_t u0 = q_u32(s), u1 = q_u32(s + 4), u2 = q_u32(s + 8);
    const uint32_t sc_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
    const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    const uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    *sc = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)(((uint64_t)sc_hi << 32) | sc_lo)));
    *m = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)(((uint64_t)m_hi << 32) | m_lo)));
}

/* ======================================================================== */
/* float weights (no integer core: compiled once)                            */
/* ======================================================================== */

static float dot_f32_avx512(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, w + i), _mm512_maskz_loadu_ps(k, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static float dot_f16_avx512(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw;
    const float *x = vx;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
#define H16(k) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 2 * (i + (k)))))
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(H16(0), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(H16(16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(H16(32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(H16(48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(H16(0), _mm512_loadu_ps(x + i), a0);
#undef H16
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        const __m512 h = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, w + 2 * i));
        a1 = _mm512_fmadd_ps(h, _mm512_maskz_loadu_ps(k, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static float dot_bf16_avx512(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw;
    const float *x = vx;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t i = 0;
#define B16(k) _mm512_castsi512_ps(_mm512_slli_epi32(                                     \
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + 2 * (i + (k))))), 16))
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(B16(0), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(B16(16), _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(B16(0), _mm512_loadu_ps(x + i), a0);
#undef B16
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        const __m512 b = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, w + 2 * i)), 16));
        a1 = _mm512_fmadd_ps(b, _mm512_maskz_loadu_ps(k, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* ======================================================================== */
/* The integer kernels, twice                                                */
/* ======================================================================== */

#define QUANT_AVX512_PASS 1
#define SFX(name) name##_bw
#define QFN static
#define DPB(acc, u, s)                                                                    \
    _mm512_add_epi32((acc), _mm512_madd_epi16(_mm512_maddubs_epi16((u), (s)), _mm512_set1_epi16(1)))
#include "quant_avx512.c"
#undef SFX
#undef QFN
#undef DPB
#undef QUANT_AVX512_PASS

#define QUANT_AVX512_PASS 2
#define SFX(name) name##_vnni
#define QFN static __attribute__((target("avx512vnni")))
#define DPB(acc, u, s) _mm512_dpbusd_epi32((acc), (u), (s))
#include "quant_avx512.c"
#undef SFX
#undef QFN
#undef DPB

const duet_quant_kernels duet_quant_kernels_avx512 = {
    .isa = "avx512",
    .dot = {
        [DUET_QTYPE_F32] = dot_f32_avx512,   [DUET_QTYPE_F16] = dot_f16_avx512,
        [DUET_QTYPE_BF16] = dot_bf16_avx512, [DUET_QTYPE_Q8_0] = dot_q8_0_bw,
        [DUET_QTYPE_Q4_0] = dot_q4_0_bw,     [DUET_QTYPE_Q4_K] = dot_q4_k_bw,
        [DUET_QTYPE_Q5_K] = dot_q5_k_bw,     [DUET_QTYPE_Q6_K] = dot_q6_k_bw,
    },
    .fallback = &duet_quant_kernels_avx2,
};

const duet_quant_kernels duet_quant_kernels_avx512_vnni = {
    .isa = "avx512-vnni",
    .dot = {
        [DUET_QTYPE_F32] = dot_f32_avx512,   [DUET_QTYPE_F16] = dot_f16_avx512,
        [DUET_QTYPE_BF16] = dot_bf16_avx512, [DUET_QTYPE_Q8_0] = dot_q8_0_vnni,
        [DUET_QTYPE_Q4_0] = dot_q4_0_vnni,   [DUET_QTYPE_Q4_K] = dot_q4_k_vnni,
        [DUET_QTYPE_Q5_K] = dot_q5_k_vnni,   [DUET_QTYPE_Q6_K] = dot_q6_k_vnni,
    },
    .fallback = &duet_quant_kernels_avx2,
};

#else /* ==== pass body: compiled once per QUANT_AVX512_PASS ==== */

/* Q8_0 x Q8_0, two blocks per register: i32 lanes 0-7 belong to the first
 * block, 8-15 to the second; the scale vector matches. */
QFN float SFX(dot_q8_0)(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const int64_t nb = n / QK;
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2, w += 2 * Q8_0_BYTES, x += 2 * Q8_0_BYTES) {
        const __m512i qw = pair256(w + 2, w + Q8_0_BYTES + 2);
        const __m512i qx = pair256(x + 2, x + Q8_0_BYTES + 2);
        const __m512i p = DPB(zero, _mm512_abs_epi8(qw), neg_where(qx, qw));
        const __m512 d = pair_ps(f16s(w) * f16s(x), f16s(w + Q8_0_BYTES) * f16s(x + Q8_0_BYTES));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
    }
    if (i < nb) {
        const __m512i qw = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(w + 2)));
        const __m512i qx = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x + 2)));
        const __m512i p = _mm512_maskz_mov_epi32(0x00FF, DPB(zero, _mm512_abs_epi8(qw), neg_where(qx, qw)));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(f16s(w) * f16s(x)), _mm512_cvtepi32_ps(p), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* Q4_0 x Q8_0, two blocks A, B per register: the 16 code bytes of A and B
 * give [A low nibbles | B low | A high | B high] (values 0-15 of A, 0-15 of
 * B, 16-31 of A, 16-31 of B), the activations are permuted to match by
 * 128-bit lanes, and the scale vector alternates dA, dB every 4 i32 lanes. */
QFN float SFX(dot_q4_0)(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const int64_t nb = n / QK;
    const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(0x0F);
    const __m512i eight = _mm512_set1_epi8(8);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i += 2, w += 2 * Q4_0_BYTES, x += 2 * Q8_0_BYTES) {
        const int two = i + 1 < nb;
        const __m128i a = _mm_loadu_si128((const __m128i *)(w + 2));
        const __m128i b = two ? _mm_loadu_si128((const __m128i *)(w + Q4_0_BYTES + 2)) : _mm_set1_epi8(0x88);
        const __m256i ab = _mm256_set_m128i(b, a);
        __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(ab), _mm256_srli_epi16(ab, 4), 1);
        q = _mm512_sub_epi8(_mm512_and_si512(q, m4), eight); /* B codes 8 -> 0 when absent */
        __m512i xq = two ? pair256(x + 2, x + Q8_0_BYTES + 2)
                         : _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x + 2)));
        if (!two) xq = _mm512_maskz_mov_epi64(0x0F, xq);
        xq = _mm512_shuffle_i64x2(xq, xq, _MM_SHUFFLE(3, 1, 2, 0));
        const __m512i p = DPB(zero, _mm512_abs_epi8(q), neg_where(xq, q));
        const float da = f16s(w) * f16s(x);
        const float db = two ? f16s(w + Q4_0_BYTES) * f16s(x + Q8_0_BYTES) : 0.0f;
        const __m512 d = _mm512_mask_blend_ps(0xF0F0, _mm512_set1_ps(da), _mm512_set1_ps(db));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* Q4_K / Q5_K x Q8_K. The 128 code bytes are two registers, each covering
 * two 64-value chunks: its low nibbles are sub-blocks 2c (bytes 0-31) and
 * 2c+2 (bytes 32-63), its high nibbles 2c+1 and 2c+3. The activations of
 * those sub-blocks are gathered by 128-bit lanes, and each i32 product lane
 * is multiplied by its sub-block's scale; the mins use the bsums. */
QFN float SFX(dot_q45_k)(int64_t n, const void *vw, const void *vx, int five) {
    const uint8_t *w = vw, *x = vx;
    const int64_t bytes = five ? Q5_K_BYTES : Q4_K_BYTES;
    const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(0x0F);
    const __m512i i02 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i i13 = _mm512_add_epi32(i02, _mm512_set1_epi32(1));
    const __m512i i46 = _mm512_add_epi32(i02, _mm512_set1_epi32(4));
    const __m512i i57 = _mm512_add_epi32(i02, _mm512_set1_epi32(5));
    const __m512i ipair = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    /* fifth-bit masks: sub-block j's bit is bit j of qh[l] */
    const __m512i blo0 = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi8(0x01), _mm512_set1_epi8(0x04));
    const __m512i bhi0 = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi8(0x02), _mm512_set1_epi8(0x08));
    const __m512i blo1 = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi8(0x10), _mm512_set1_epi8(0x40));
    const __m512i bhi1 = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi8(0x20), _mm512_set1_epi8((char)0x80));
    const __m512i sixteen = _mm512_set1_epi8(16);
    __m512 acc = _mm512_setzero_ps(), accm = acc;
    for (int64_t i = 0; i < n / QK_K; i++, w += bytes, x += Q8_K_BYTES) {
        __m512i sc, m;
        k_scales512(w + 4, &sc, &m);
        const uint8_t *qs = w + (five ? Q5_K_QS : Q4_K_QS);
        const uint8_t *xq = x + Q8_K_QS;
        const __m512i c0 = _mm512_loadu_si512((const void *)qs);
        const __m512i c1 = _mm512_loadu_si512((const void *)(qs + 64));
        __m512i lo0 = _mm512_and_si512(c0, m4), hi0 = _mm512_and_si512(_mm512_srli_epi16(c0, 4), m4);
        __m512i lo1 = _mm512_and_si512(c1, m4), hi1 = _mm512_and_si512(_mm512_srli_epi16(c1, 4), m4);
        if (five) {
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w + Q5_K_QH)));
            lo0 = _mm512_mask_add_epi8(lo0, _mm512_test_epi8_mask(qh, blo0), lo0, sixteen);
            hi0 = _mm512_mask_add_epi8(hi0, _mm512_test_epi8_mask(qh, bhi0), hi0, sixteen);
            lo1 = _mm512_mask_add_epi8(lo1, _mm512_test_epi8_mask(qh, blo1), lo1, sixteen);
            hi1 = _mm512_mask_add_epi8(hi1, _mm512_test_epi8_mask(qh, bhi1), hi1, sixteen);
        }
        const __m512i x0 = _mm512_loadu_si512((const void *)xq);         /* sub-blocks 0, 1 */
        const __m512i x1 = _mm512_loadu_si512((const void *)(xq + 64));  /* 2, 3 */
        const __m512i x2 = _mm512_loadu_si512((const void *)(xq + 128)); /* 4, 5 */
        const __m512i x3 = _mm512_loadu_si512((const void *)(xq + 192)); /* 6, 7 */
        const __m512i x02 = _mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i x13 = _mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(3, 2, 3, 2));
        const __m512i x46 = _mm512_shuffle_i64x2(x2, x3, _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i x57 = _mm512_shuffle_i64x2(x2, x3, _MM_SHUFFLE(3, 2, 3, 2));
        __m512i isum = _mm512_mullo_epi32(DPB(zero, lo0, x02), _mm512_permutexvar_epi32(i02, sc));
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(DPB(zero, hi0, x13), _mm512_permutexvar_epi32(i13, sc)));
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(DPB(zero, lo1, x46), _mm512_permutexvar_epi32(i46, sc)));
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(DPB(zero, hi1, x57), _mm512_permutexvar_epi32(i57, sc)));
        const __m512i bs = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(x + Q8_K_BSUMS)));
        const __m512i imin = _mm512_mullo_epi32(bs, _mm512_permutexvar_epi32(ipair, m));
        const float dx = q_f32(x);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(f16s(w) * dx), _mm512_cvtepi32_ps(isum), acc);
        accm = _mm512_fmadd_ps(_mm512_set1_ps(f16s(w + 2) * dx), _mm512_cvtepi32_ps(imin), accm);
    }
    return _mm512_reduce_add_ps(acc) - _mm512_reduce_add_ps(accm);
}

QFN float SFX(dot_q4_k)(int64_t n, const void *w, const void *x) { return SFX(dot_q45_k)(n, w, x, 0); }
QFN float SFX(dot_q5_k)(int64_t n, const void *w, const void *x) { return SFX(dot_q45_k)(n, w, x, 1); }

/* Q6_K x Q8_K. Per half of 128 values: the 64 ql bytes with [qh | qh >> 2]
 * give qa = values 0-63 (low nibbles + bits 0-1 / 2-3) and qb = values
 * 64-127 (high nibbles + bits 4-5 / 6-7), both in activation order, so i32
 * lane k covers values 4k..4k+3 of its 64: 16-group k / 4. The -32 offset is
 * 32 * sum(sc * bsum). */
QFN float SFX(dot_q6_k)(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(0x0F);
    const __m512i m2 = _mm512_set1_epi8(0x30);
    const __m512i g0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++, w += Q6_K_BYTES, x += Q8_K_BYTES) {
        const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(w + Q6_K_SCALES)));
        const __m512i bs = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(x + Q8_K_BSUMS)));
        __m512i isum = _mm512_sub_epi32(zero, _mm512_slli_epi32(_mm512_mullo_epi32(sc, bs), 5));
        for (int h = 0; h < 2; h++) {
            const __m512i l = _mm512_loadu_si512((const void *)(w + Q6_K_QL + 64 * h));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(w + Q6_K_QH + 32 * h));
            const __m512i hh = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            const __m512i qa = _mm512_or_si512(_mm512_and_si512(l, m4),
                                               _mm512_and_si512(_mm512_slli_epi16(hh, 4), m2));
            const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                               _mm512_and_si512(hh, m2));
            const uint8_t *xq = x + Q8_K_QS + 128 * h;
            const __m512i pa = DPB(zero, qa, _mm512_loadu_si512((const void *)xq));
            const __m512i pb = DPB(zero, qb, _mm512_loadu_si512((const void *)(xq + 64)));
            const __m512i ga = _mm512_add_epi32(g0, _mm512_set1_epi32(8 * h));
            const __m512i gb = _mm512_add_epi32(ga, _mm512_set1_epi32(4));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(pa, _mm512_permutexvar_epi32(ga, sc)));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(pb, _mm512_permutexvar_epi32(gb, sc)));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(f16s(w + Q6_K_D) * q_f32(x)), _mm512_cvtepi32_ps(isum), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

#endif /* QUANT_AVX512_PASS */
