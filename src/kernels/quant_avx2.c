/*
 * quant_avx2.c — AVX2 (+FMA, F16C) dot products of quantized weights with
 * quantized activations (compiled with -mavx2 -mfma -mf16c).
 *
 * The integer core is vpmaddubsw (u8 x s8 -> pairs summed to i16) then
 * vpmaddwd (i16 pairs -> i32). maddubs needs one unsigned operand: weights
 * that are unsigned codes (Q4_1, Q5_1, the K-quants) go in as they are and
 * their offset is applied through the activation sums; signed weights
 * (Q8_0, Q4_0 - 8, Q5_0 - 16) use the sign trick |w| x sign(x, w), which is
 * exact because activations never hold -128 (duet's Q8 quantizers keep
 * [-127, 127]). No i16 sum can saturate: the largest pair is 128*127*2.
 *
 * Each kernel gives the scalar reference's integer sums per block; only the
 * float accumulation order differs (tests/test_quant.c bounds it).
 * Types without an entry here fall back to the scalar reference.
 */
#include "kernels/quant.h"

#include <immintrin.h>

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float f16s(const uint8_t *p) { return _cvtsh_ss(q_u16(p)); }

/* u8 x s8 products of 32 lanes, summed in groups of 4 into 8 i32 lanes. */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* s8 x s8 (s never -128), as above. */
static inline __m256i dot_s8s8(__m256i w, __m256i s) {
    return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(s, w));
}

/* 32 nibbles of a 32-block: bytes 0-15 the low nibbles of p[0..16) (values
 * 0-15 of the block), bytes 16-31 the high nibbles (values 16-31). */
static inline __m256i nibbles32(const uint8_t *p) {
    const __m128i b = _mm_loadu_si128((const __m128i *)p);
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

/* Byte i = 0xFF when bit i of x is set, else 0 (i = 0..31). */
static inline __m256i bits32(uint32_t x) {
    /* byte i takes byte i / 8 of x, then is OR'ed with all bits but bit i % 8 */
    const __m256i spread = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                              0x0202020202020202, 0x0303030303030303);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), spread);
    v = _mm256_or_si256(v, _mm256_set1_epi64x((long long)0x7FBFDFEFF7FBFDFEull));
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi8(-1));
}

/* ======================================================================== */
/* float weights                                                             */
/* ======================================================================== */

static float dot_f32_avx2(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float dot_f16_avx2(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw;
    const float *x = vx;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
#define H8(k) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * (i + (k)))))
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(H8(0), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(H8(8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(H8(16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(H8(24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(H8(0), _mm256_loadu_ps(x + i), a0);
#undef H8
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += f16s(w + 2 * i) * x[i];
    return s;
}

static float dot_bf16_avx2(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw;
    const float *x = vx;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
#define B8(k) _mm256_castsi256_ps(_mm256_slli_epi32(                                      \
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + 2 * (i + (k))))), 16))
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(B8(0), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(B8(8), _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(B8(0), _mm256_loadu_ps(x + i), a0);
#undef B8
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += duet_bf16_to_f32_1(q_u16(w + 2 * i)) * x[i];
    return s;
}

/* ======================================================================== */
/* 32-blocks x Q8_0                                                          */
/* ======================================================================== */

static float dot_q8_0_avx2(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const int64_t nb = n / QK;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2, w += 2 * Q8_0_BYTES, x += 2 * Q8_0_BYTES) {
        __m256i p0 = dot_s8s8(_mm256_loadu_si256((const __m256i *)(w + 2)),
                              _mm256_loadu_si256((const __m256i *)(x + 2)));
        __m256i p1 = dot_s8s8(_mm256_loadu_si256((const __m256i *)(w + Q8_0_BYTES + 2)),
                              _mm256_loadu_si256((const __m256i *)(x + Q8_0_BYTES + 2)));
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * f16s(x)), _mm256_cvtepi32_ps(p0), a0);
        a1 = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w + Q8_0_BYTES) * f16s(x + Q8_0_BYTES)),
                             _mm256_cvtepi32_ps(p1), a1);
    }
    for (; i < nb; i++, w += Q8_0_BYTES, x += Q8_0_BYTES) {
        __m256i p = dot_s8s8(_mm256_loadu_si256((const __m256i *)(w + 2)),
                             _mm256_loadu_si256((const __m256i *)(x + 2)));
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * f16s(x)), _mm256_cvtepi32_ps(p), a0);
    }
    return hsum256(_mm256_add_ps(a0, a1));
}

static float dot_q4_0_avx2(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const int64_t nb = n / QK;
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2, w += 2 * Q4_0_BYTES, x += 2 * Q8_0_BYTES) {
        __m256i q0 = _mm256_sub_epi8(nibbles32(w + 2), eight);
        __m256i q1 = _mm256_sub_epi8(nibbles32(w + Q4_0_BYTES + 2), eight);
        __m256i p0 = dot_s8s8(q0, _mm256_loadu_si256((const __m256i *)(x + 2)));
        __m256i p1 = dot_s8s8(q1, _mm256_loadu_si256((const __m256i *)(x + Q8_0_BYTES + 2)));
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * f16s(x)), _mm256_cvtepi32_ps(p0), a0);
        a1 = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w + Q4_0_BYTES) * f16s(x + Q8_0_BYTES)),
                             _mm256_cvtepi32_ps(p1), a1);
    }
    for (; i < nb; i++, w += Q4_0_BYTES, x += Q8_0_BYTES) {
        __m256i q = _mm256_sub_epi8(nibbles32(w + 2), eight);
        __m256i p = dot_s8s8(q, _mm256_loadu_si256((const __m256i *)(x + 2)));
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * f16s(x)), _mm256_cvtepi32_ps(p), a0);
    }
    return hsum256(_mm256_add_ps(a0, a1));
}

/* Q4_1 / Q5_1: sum (d q + m) dx xq = d dx sum(q xq) + m dx sum(xq). */
static float dot_q4_1_avx2(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const __m256i ones = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps(), accm = acc;
    for (int64_t i = 0; i < n / QK; i++, w += Q4_1_BYTES, x += Q8_0_BYTES) {
        const __m256i xq = _mm256_loadu_si256((const __m256i *)(x + 2));
        const float dx = f16s(x);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * dx),
                              _mm256_cvtepi32_ps(dot_u8s8(nibbles32(w + 4), xq)), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w + 2) * dx),
                               _mm256_cvtepi32_ps(dot_u8s8(ones, xq)), accm);
    }
    return hsum256(_mm256_add_ps(acc, accm));
}

static float dot_q5_0_avx2(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const __m256i b4 = _mm256_set1_epi8(0x10), sixteen = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK; i++, w += Q5_0_BYTES, x += Q8_0_BYTES) {
        __m256i q = _mm256_or_si256(nibbles32(w + 6), _mm256_and_si256(bits32(q_u32(w + 2)), b4));
        q = _mm256_sub_epi8(q, sixteen);
        __m256i p = dot_s8s8(q, _mm256_loadu_si256((const __m256i *)(x + 2)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * f16s(x)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum256(acc);
}

static float dot_q5_1_avx2(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const __m256i ones = _mm256_set1_epi8(1), b4 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps(), accm = acc;
    for (int64_t i = 0; i < n / QK; i++, w += Q5_1_BYTES, x += Q8_0_BYTES) {
        const __m256i xq = _mm256_loadu_si256((const __m256i *)(x + 2));
        const __m256i q = _mm256_or_si256(nibbles32(w + 8), _mm256_and_si256(bits32(q_u32(w + 4)), b4));
        const float dx = f16s(x);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * dx), _mm256_cvtepi32_ps(dot_u8s8(q, xq)), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w + 2) * dx),
                               _mm256_cvtepi32_ps(dot_u8s8(ones, xq)), accm);
    }
    return hsum256(_mm256_add_ps(acc, accm));
}

/* ======================================================================== */
/* K-quants x Q8_K                                                           */
/* ======================================================================== */

/* sum_j m[j] * (activations of sub-block j), from the Q8_K bsums */
static inline int k_min_sum(const uint8_t m[8], const uint8_t *x) {
    int s = 0;
    for (int j = 0; j < 8; j++)
        s += m[j] * (q_i16(x + Q8_K_BSUMS + 4 * j) + q_i16(x + Q8_K_BSUMS + 4 * j + 2));
    return s;
}

static float dot_q4_k_avx2(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++, w += Q4_K_BYTES, x += Q8_K_BYTES) {
        uint8_t sc[8], m[8];
        q_k_scales(w + Q4_K_SCALES, sc, m);
        const float dx = q_f32(x);
        const uint8_t *q = w + Q4_K_QS;
        const int8_t *xq = (const int8_t *)(x + Q8_K_QS);
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++, q += 32, xq += 64) {
            const __m256i b = _mm256_loadu_si256((const __m256i *)q);
            const __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
            __m256i p1 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)xq));
            __m256i p2 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(xq + 32)));
            p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * c]));
            p2 = _mm256_madd_epi16(p2, _mm256_set1_epi16(sc[2 * c + 1]));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p1, p2));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * dx), _mm256_cvtepi32_ps(isum), acc);
        mins += f16s(w + 2) * dx * (float)k_min_sum(m, x);
    }
    return hsum256(acc) - mins;
}

static float dot_q5_k_avx2(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++, w += Q5_K_BYTES, x += Q8_K_BYTES) {
        uint8_t sc[8], m[8];
        q_k_scales(w + Q5_K_SCALES, sc, m);
        const float dx = q_f32(x);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(w + Q5_K_QH));
        const uint8_t *q = w + Q5_K_QS;
        const int8_t *xq = (const int8_t *)(x + Q8_K_QS);
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++, q += 32, xq += 64) {
            const __m256i b = _mm256_loadu_si256((const __m256i *)q);
            const __m256i bit1 = _mm256_set1_epi8((char)(1 << (2 * c)));
            const __m256i bit2 = _mm256_set1_epi8((char)(2 << (2 * c)));
            /* fifth bit: 0x10 where qh has bit 2c (resp. 2c+1) */
            const __m256i h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit1), bit1), b4);
            const __m256i h2 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit2), bit2), b4);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(b, m4), h1);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), m4), h2);
            __m256i p1 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)xq));
            __m256i p2 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(xq + 32)));
            p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * c]));
            p2 = _mm256_madd_epi16(p2, _mm256_set1_epi16(sc[2 * c + 1]));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p1, p2));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * dx), _mm256_cvtepi32_ps(isum), acc);
        mins += f16s(w + 2) * dx * (float)k_min_sum(m, x);
    }
    return hsum256(acc) - mins;
}

/* Q6_K: per half of 128, q1..q4 (32 lanes each) are values l, l+32, l+64,
 * l+96 (see deq_q6_k); lanes 0-15 and 16-31 of each belong to consecutive
 * 16-groups, so one i16 scale vector per q has two halves. sum (q - 32) x sc
 * = sum q x sc - 32 sum sc bsum. */
static float dot_q6_k_avx2(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    float offs = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++, w += Q6_K_BYTES, x += Q8_K_BYTES) {
        const int8_t *sc = (const int8_t *)(w + Q6_K_SCALES);
        const int8_t *xq = (const int8_t *)(x + Q8_K_QS);
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w + Q6_K_QL + 64 * h;
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(w + Q6_K_QH + 32 * h));
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
            for (int k = 0; k < 4; k++) {
                const int g = 8 * h + 2 * k;
                __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(xq + 128 * h + 32 * k)));
                const __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[g + 1]), _mm_set1_epi16(sc[g]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, s));
            }
        }
        int corr = 0;
        for (int g = 0; g < 16; g++) corr += sc[g] * q_i16(x + Q8_K_BSUMS + 2 * g);
        const float d = f16s(w + Q6_K_D) * q_f32(x);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
        offs += d * (float)(32 * corr);
    }
    return hsum256(acc) - offs;
}

const duet_quant_kernels duet_quant_kernels_avx2 = {
    .isa = "avx2",
    .dot = {
        [DUET_QTYPE_F32] = dot_f32_avx2,   [DUET_QTYPE_F16] = dot_f16_avx2,
        [DUET_QTYPE_BF16] = dot_bf16_avx2, [DUET_QTYPE_Q8_0] = dot_q8_0_avx2,
        [DUET_QTYPE_Q4_0] = dot_q4_0_avx2, [DUET_QTYPE_Q4_1] = dot_q4_1_avx2,
        [DUET_QTYPE_Q5_0] = dot_q5_0_avx2, [DUET_QTYPE_Q5_1] = dot_q5_1_avx2,
        [DUET_QTYPE_Q4_K] = dot_q4_k_avx2, [DUET_QTYPE_Q5_K] = dot_q5_k_avx2,
        [DUET_QTYPE_Q6_K] = dot_q6_k_avx2,
    },
};
