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
 * The 32-blocks and Q4_K/Q5_K work in 256-bit lanes (AVX-512VL), one
 * block or sub-block per register, reducing 8 at a time: on CPUs that run
 * 512-bit operations as two halves (AMD Zen 4) this is as fast as 512-bit
 * code and needs no cross-lane shuffles; Q6_K and the float dots use full
 * 512-bit registers. Layout tricks are commented where they are used; the
 * integer sums per block equal the scalar reference's exactly (activations
 * never hold -128, so the sign trick |w| x sign(x, w) is exact and no i16
 * pair sum of maddubs can saturate). Types without an entry here (Q4_1,
 * Q5_0, Q5_1) use the AVX2 kernels through the table's fallback.
 */
#include "kernels/quant.h"
#include "kernels/quant_avx512.h"
#include "kernels/quant_mv.h"

#include <immintrin.h>

static inline float f16s(const uint8_t *p) { return _cvtsh_ss(q_u16(p)); }

/* The f16 scales at the start of 8 consecutive blocks of `stride` bytes, as
 * floats (eight 16-bit loads: a vpgatherdd is slower on Zen 4). */
static inline __m256 scales8(const uint8_t *p, int stride) {
    /* packed into two 64-bit integers with shifts and ors (scalar ALU work,
     * off the vector ports) and moved over in two vmovq: _mm_setr_epi16 of
     * the eight compiles to seven vpinsrw, two vector uops each, which made
     * the 32-block dots compute-bound (Q4_0 matvec 13 GB/s of 27 possible) */
    const uint64_t lo = (uint64_t)q_u16(p) | (uint64_t)q_u16(p + stride) << 16 |
                        (uint64_t)q_u16(p + 2 * stride) << 32 | (uint64_t)q_u16(p + 3 * stride) << 48;
    const uint64_t hi = (uint64_t)q_u16(p + 4 * stride) | (uint64_t)q_u16(p + 5 * stride) << 16 |
                        (uint64_t)q_u16(p + 6 * stride) << 32 | (uint64_t)q_u16(p + 7 * stride) << 48;
    return _mm256_cvtph_ps(_mm_unpacklo_epi64(_mm_cvtsi64_si128((long long)lo),
                                              _mm_cvtsi64_si128((long long)hi)));
}

/* Lane j = the sum of the 8 i32 lanes of p[j]. */
static inline __m256i hsum8x8(const __m256i p[8]) {
    const __m256i t0 = _mm256_hadd_epi32(p[0], p[1]), t1 = _mm256_hadd_epi32(p[2], p[3]);
    const __m256i t2 = _mm256_hadd_epi32(p[4], p[5]), t3 = _mm256_hadd_epi32(p[6], p[7]);
    const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
    /* u0 = [p0..p3 over lanes 0-3 | p0..p3 over lanes 4-7], u1 likewise for p4..p7 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                            _mm256_permute2x128_si256(u0, u1, 0x31));
}

/* The 32 codes of a Q4_0 block's 16 bytes at p, one per byte (low nibbles
 * first, as the block stores elements 0-15 then 16-31). */
static inline __m256i nib32(const uint8_t *p) {
    const __m128i b = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set1_epi8(0x0F),
                            _mm256_inserti128_si256(_mm256_castsi128_si256(b),
                                                    _mm_srli_epi16(b, 4), 1));
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
/* Activation quantizers (compiled once)                                     */
/* ======================================================================== */
/* The decode quantizes each activation vector for every product (each
 * thread its own copy); the scalar loops were ~4% of a 110M-shape Q4_0
 * decode. The same float operations as quant.c's: amax where a NaN never
 * wins (max(v, m) returns m when v is NaN), d the f16 at or above
 * amax / 127 (F16C rounds to nearest even as duet_f32_to_f16_1 does; one
 * ulp up if below), codes x * (1 / d) clamped to +-127 (NaN -> -127) and
 * rounded to nearest even (vcvtps2dq in the default MXCSR mode). */

static inline __m512 abs16(__m512 v) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
}

/* Codes of x * s clamped to [-127, 127] and rounded to nearest even. */
static inline __m512i codes16(__m512 x, __m512 s) {
    const __m512 v = _mm512_max_ps(_mm512_mul_ps(x, s), _mm512_set1_ps(-127.0f));
    return _mm512_cvtps_epi32(_mm512_min_ps(v, _mm512_set1_ps(127.0f)));
}

/* One Q8_0 block of 32 values at x: its f16 scale (returned) and codes
 * c0 (values 0-15), c1 (16-31); *d is the scale as a float. */
static inline uint16_t q8_0_block(const float *x, __m512i *c0, __m512i *c1, float *d) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const __m512 m = _mm512_max_ps(abs16(x1), _mm512_max_ps(abs16(x0), _mm512_setzero_ps()));
    const float q = _mm512_reduce_max_ps(m) / 127.0f;
    uint16_t h;
    if (!(q <= 65504.0f)) {
        h = 0x7bff;
    } else {
        h = (uint16_t)_cvtss_sh(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        if (_cvtsh_ss(h) < q) h++;
    }
    *d = _cvtsh_ss(h);
    const __m512 idv = _mm512_set1_ps(*d > 0.0f ? 1.0f / *d : 0.0f);
    *c0 = codes16(x0, idv);
    *c1 = codes16(x1, idv);
    return h;
}

static void quant_q8_0_avx512(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, b += Q8_0_BYTES) {
        __m512i c0, c1;
        float d;
        q_put_u16(b, q8_0_block(x, &c0, &c1, &d));
        _mm_storeu_si128((__m128i *)(b + 2), _mm512_cvtepi32_epi8(c0));
        _mm_storeu_si128((__m128i *)(b + 18), _mm512_cvtepi32_epi8(c1));
    }
}

static void quant_q8_k_avx512(const float *x, uint8_t *b, int64_t nb) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++, x += QK_K, b += Q8_K_BYTES) {
        __m512 m = zero;
        for (int j = 0; j < QK_K; j += 16) m = _mm512_max_ps(abs16(_mm512_loadu_ps(x + j)), m);
        const float amax = _mm512_reduce_max_ps(m);
        const float iscale = amax > 0.0f ? 127.0f / amax : 0.0f;
        q_put_f32(b, amax > 0.0f ? 1.0f / iscale : 0.0f);
        const __m512 sv = _mm512_set1_ps(iscale);
        int16_t sums[16];
        for (int g = 0; g < 16; g++) {
            /* codes16 takes x * s; the scalar quantizer forms iscale * x:
             * the same product (multiplication commutes exactly) */
            const __m512i c = codes16(_mm512_loadu_ps(x + 16 * g), sv);
            _mm_storeu_si128((__m128i *)(b + Q8_K_QS + 16 * g), _mm512_cvtepi32_epi8(c));
            sums[g] = (int16_t)_mm512_reduce_add_epi32(c);
        }
        memcpy(b + Q8_K_BSUMS, sums, sizeof sums);
    }
}

/* ======================================================================== */
/* The integer kernels, twice                                                */
/* ======================================================================== */

#define QUANT_AVX512_PASS 1
#define SFX(name) name##_bw
#define QFN static
#define DPB(acc, u, s)                                                                    \
    _mm512_add_epi32((acc), _mm512_madd_epi16(_mm512_maddubs_epi16((u), (s)), _mm512_set1_epi16(1)))
#define DPB256(acc, u, s)                                                                 \
    _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1)))
#include "quant_avx512.c"
#undef SFX
#undef QFN
#undef DPB
#undef DPB256
#undef QUANT_AVX512_PASS

#define QUANT_AVX512_PASS 2
#define SFX(name) name##_vnni
#define QFN static __attribute__((target("avx512vnni")))
#define DPB(acc, u, s) _mm512_dpbusd_epi32((acc), (u), (s))
#define DPB256(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#include "quant_avx512.c"
#undef SFX
#undef QFN
#undef DPB
#undef DPB256

const duet_quant_kernels duet_quant_kernels_avx512 = {
    .isa = "avx512",
    .quant_q8_0 = quant_q8_0_avx512,
    .quant_q8_k = quant_q8_k_avx512,
    .q4_0_prep = dot_q4_0_prep_bw,
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
    .quant_q8_0 = quant_q8_0_avx512,
    .quant_q8_k = quant_q8_k_avx512,
    .q4_0_prep = duet_q4_0_prep_vnni, /* quant_mv_avx512.c */
    .gemm8 = gemm8_tile_vnni,
    .gemm8_pack = gemm8_pack_vnni,
    .gemm8_quant = gemm8_quant_vnni,
    .dot = {
        [DUET_QTYPE_F32] = dot_f32_avx512,   [DUET_QTYPE_F16] = dot_f16_avx512,
        [DUET_QTYPE_BF16] = dot_bf16_avx512, [DUET_QTYPE_Q8_0] = dot_q8_0_vnni,
        [DUET_QTYPE_Q4_0] = dot_q4_0_vnni,   [DUET_QTYPE_Q4_K] = dot_q4_k_vnni,
        [DUET_QTYPE_Q5_K] = dot_q5_k_vnni,   [DUET_QTYPE_Q6_K] = dot_q6_k_vnni,
    },
    .fallback = &duet_quant_kernels_avx2,
};

#else /* ==== pass body: compiled once per QUANT_AVX512_PASS ==== */

/* The 32-blocks, 8 blocks per step with 256-bit lanes (one block per
 * register: on CPUs that split 512-bit work in two this is as fast, and
 * needs no shuffles): one i32 vector of 4-way partial sums per block, the 8
 * reduced together by hsum8x8, the 16 scales converted 8 at a time, one
 * fmadd per 8 blocks. Leftover blocks go one at a time. */

/* Q8_0 x Q8_0: |w| x sign(x, w). */
QFN float SFX(dot_q8_0)(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const int64_t nb = n / QK;
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8, w += 8 * Q8_0_BYTES, x += 8 * Q8_0_BYTES) {
        __m256i p[8];
        for (int o = 0; o < 8 * Q8_0_BYTES; o += 64) _mm_prefetch((const char *)w + 2048 + o, _MM_HINT_T0);
        for (int j = 0; j < 8; j++) {
            const __m256i qw = _mm256_loadu_si256((const __m256i *)(w + j * Q8_0_BYTES + 2));
            const __m256i qx = _mm256_loadu_si256((const __m256i *)(x + j * Q8_0_BYTES + 2));
            p[j] = DPB256(zero, _mm256_abs_epi8(qw), _mm256_sign_epi8(qx, qw));
        }
        const __m256 d = _mm256_mul_ps(scales8(w, Q8_0_BYTES), scales8(x, Q8_0_BYTES));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(hsum8x8(p)), acc);
    }
    __m256 acc1 = _mm256_setzero_ps();
    for (; i < nb; i++, w += Q8_0_BYTES, x += Q8_0_BYTES) {
        const __m256i qw = _mm256_loadu_si256((const __m256i *)(w + 2));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)(x + 2));
        const __m256i p = DPB256(zero, _mm256_abs_epi8(qw), _mm256_sign_epi8(qx, qw));
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * f16s(x)), _mm256_cvtepi32_ps(p), acc1);
    }
    acc = _mm256_add_ps(acc, acc1);
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
}

/* Q4_0 x Q8_0: codes q in 0..15 straight into the u8 side; the -8 offset is
 * 8 * sum(x), a second dot with a vector of 8s. */
QFN float SFX(dot_q4_0)(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw, *x = vx;
    const int64_t nb = n / QK;
    const __m256i zero = _mm256_setzero_si256(), eight = _mm256_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8, w += 8 * Q4_0_BYTES, x += 8 * Q8_0_BYTES) {
        __m256i p[8];
        for (int j = 0; j < 8; j++) {
            const __m256i qx = _mm256_loadu_si256((const __m256i *)(x + j * Q8_0_BYTES + 2));
            p[j] = _mm256_sub_epi32(DPB256(zero, nib32(w + j * Q4_0_BYTES + 2), qx), DPB256(zero, eight, qx));
        }
        const __m256 d = _mm256_mul_ps(scales8(w, Q4_0_BYTES), scales8(x, Q8_0_BYTES));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(hsum8x8(p)), acc);
    }
    __m256 acc1 = _mm256_setzero_ps();
    for (; i < nb; i++, w += Q4_0_BYTES, x += Q8_0_BYTES) {
        const __m256i qx = _mm256_loadu_si256((const __m256i *)(x + 2));
        const __m256i p = _mm256_sub_epi32(DPB256(zero, nib32(w + 2), qx), DPB256(zero, eight, qx));
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * f16s(x)), _mm256_cvtepi32_ps(p), acc1);
    }
    acc = _mm256_add_ps(acc, acc1);
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
}

#if QUANT_AVX512_PASS == 1 /* the VNNI set has its own (quant_mv_avx512.c) */
/* Q4_0 with the activations prepared (duet_qdot_q4_0_prep_fn): one dot per
 * block, the offset term a float product of the weight scales and xs. */
QFN float SFX(dot_q4_0_prep)(int64_t n, const void *vw, const void *vx, const float *xd,
                             const float *xs) {
    const uint8_t *w = vw, *x = vx;
    const int64_t nb = n / QK;
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc = _mm256_setzero_ps(), acc2 = acc;
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8, w += 8 * Q4_0_BYTES, x += 8 * Q8_0_BYTES) {
        __m256i p[8];
        /* the weights stream from DRAM: ask ~2 KB ahead (the hardware
         * prefetcher alone left Q4_0 rows at ~60% of the read bandwidth) */
        _mm_prefetch((const char *)w + 2048, _MM_HINT_T0);
        _mm_prefetch((const char *)w + 2048 + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)w + 2048 + 128, _MM_HINT_T0);
        for (int j = 0; j < 8; j++)
            p[j] = DPB256(zero, nib32(w + j * Q4_0_BYTES + 2),
                          _mm256_loadu_si256((const __m256i *)(x + j * Q8_0_BYTES + 2)));
        const __m256 dw = scales8(w, Q4_0_BYTES);
        acc = _mm256_fmadd_ps(dw, _mm256_mul_ps(_mm256_loadu_ps(xd + i), _mm256_cvtepi32_ps(hsum8x8(p))), acc);
        acc2 = _mm256_fmadd_ps(dw, _mm256_loadu_ps(xs + i), acc2);
    }
    __m256 acc1 = _mm256_setzero_ps();
    for (; i < nb; i++, w += Q4_0_BYTES, x += Q8_0_BYTES) {
        const __m256i p = DPB256(zero, nib32(w + 2), _mm256_loadu_si256((const __m256i *)(x + 2)));
        const float dw = f16s(w);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd[i]), _mm256_cvtepi32_ps(p), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_set1_ps(dw), _mm256_set1_ps(xs[i] * 0.125f), acc2);
    }
    acc = _mm256_sub_ps(_mm256_add_ps(acc, acc1), acc2);
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
}
#endif

/* Q4_K / Q5_K x Q8_K, 256-bit lanes: chunk c's 32 code bytes give sub-block
 * 2c (low nibbles) and 2c+1 (high nibbles), each dotted with its 32
 * activations into one i32 vector; hsum8x8 turns the 8 into one vector of
 * sub-block sums, multiplied by the 8 six-bit scales at once. The mins
 * pair with the bsums in one vpmaddwd. Q5_K adds 16 where bit j of qh[l]
 * is set (sub-block j). */
QFN float SFX(dot_q45_k)(int64_t n, const void *vw, const void *vx, int five) {
    const uint8_t *w = vw, *x = vx;
    const int64_t bytes = five ? Q5_K_BYTES : Q4_K_BYTES;
    const __m256i zero = _mm256_setzero_si256(), m4 = _mm256_set1_epi8(0x0F);
    const __m256i sixteen = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps(), accm = acc;
    for (int64_t i = 0; i < n / QK_K; i++, w += bytes, x += Q8_K_BYTES) {
        for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)w + 2048 + o, _MM_HINT_T0);
        const uint8_t *s = w + 4;
        const uint32_t u0 = q_u32(s), u1 = q_u32(s + 4), u2 = q_u32(s + 8);
        const uint64_t sc = (uint64_t)(u0 & 0x3f3f3f3fu) |
                            (uint64_t)((u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u)) << 32;
        const uint64_t mn = (uint64_t)(u1 & 0x3f3f3f3fu) |
                            (uint64_t)(((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u)) << 32;
        const __m128i mv = _mm_cvtsi64_si128((long long)mn);
        const uint8_t *qs = w + (five ? Q5_K_QS : Q4_K_QS);
        const uint8_t *xq = x + Q8_K_QS;
        const __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(w + Q5_K_QH)) : zero;
        __m256i p[8];
        for (int c = 0; c < 4; c++) {
            const __m256i b = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
            if (five) {
                lo = _mm256_mask_add_epi8(lo, _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * c)))), lo, sixteen);
                hi = _mm256_mask_add_epi8(hi, _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(2 << (2 * c)))), hi, sixteen);
            }
            p[2 * c] = DPB256(zero, lo, _mm256_loadu_si256((const __m256i *)(xq + 64 * c)));
            p[2 * c + 1] = DPB256(zero, hi, _mm256_loadu_si256((const __m256i *)(xq + 64 * c + 32)));
        }
        const __m256i isum = _mm256_mullo_epi32(hsum8x8(p), _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc)));
        const __m256i imin = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(x + Q8_K_BSUMS)),
                                               _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mv, mv)));
        const float dx = q_f32(x);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w) * dx), _mm256_cvtepi32_ps(isum), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(f16s(w + 2) * dx), _mm256_cvtepi32_ps(imin), accm);
    }
    __m256 t = _mm256_sub_ps(acc, accm);
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
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
            __m512i qa, qb;
            q6_k_codes_avx512(w, h, m4, m2, &qa, &qb);
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

#if QUANT_AVX512_PASS == 2
/* The prompt path's integer tile (layout: duet_qgemm8_fn in quant.h), 4
 * rows x 3 tokens in registers: 12 i32 block sums, 12 float accumulators,
 * 4 weight vectors and one activation vector (29 of the 32 ymm). Per group
 * of 8 blocks and (row, token): 8 vpdpbusd, then one convert, one multiply
 * by dx and one fmadd with dw — 3 float operations per 256 multiply-adds
 * (the 4 x 4 tile of 512-bit pairs needed 3 per 64). 256-bit vectors: on
 * Zen 4 a 512-bit operation is two of these, and groups of 8 blocks pad
 * less than 16 (K = 768 is 24 blocks). VNNI only: vpmaddubsw would saturate
 * u8 x s8 pairs. */
QFN void SFX(gemm8_tile)(int64_t ng, const uint8_t *w, const uint8_t *x, float *y, int64_t ldy) {
    enum { R = Q8_GEMM_R, T = Q8_GEMM_T };
    __m256 acc[R][T];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++, w += Q8_GEMM_WG, x += Q8_GEMM_XG) {
        const float *dw = (const float *)(w + 8 * R * 32);
        const float *dx = (const float *)(x + 8 * T * 32);
        const int32_t *xc = (const int32_t *)(x + 8 * T * 32 + T * 32);
        __m256i isum[R][T];
        for (int t = 0; t < T; t++) {
            const __m256i c = _mm256_loadu_si256((const __m256i *)(xc + 8 * t));
            for (int r = 0; r < R; r++) isum[r][t] = c;
        }
        for (int s = 0; s < 8; s++) {
            __m256i wv[R];
            for (int r = 0; r < R; r++) wv[r] = _mm256_loadu_si256((const __m256i *)(w + (s * R + r) * 32));
            for (int t = 0; t < T; t++) {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + (s * T + t) * 32));
                for (int r = 0; r < R; r++) isum[r][t] = DPB256(isum[r][t], wv[r], xv);
            }
        }
        for (int t = 0; t < T; t++) {
            const __m256 dxv = _mm256_loadu_ps(dx + 8 * t);
            for (int r = 0; r < R; r++)
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum[r][t]), dxv),
                                            _mm256_loadu_ps(dw + 8 * r), acc[r][t]);
        }
    }
    /* per token: the 8 lanes of the 4 rows' accumulators summed into 4
     * contiguous floats, added to y */
    for (int t = 0; t < T; t++) {
        const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[0][t], acc[1][t]),
                                        _mm256_hadd_ps(acc[2][t], acc[3][t]));
        const __m128 sum = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        _mm_storeu_ps(y + t * ldy, _mm_add_ps(_mm_loadu_ps(y + t * ldy), sum));
    }
}

/* The 8 x 8 matrix of 4-byte words in v[0..7] (v[l] = block l's 32 codes)
 * transposed in place: v[s] = word s of blocks 0..7. */
static inline void tr8x8(__m256i v[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    /* t[0] = [b0w0 b1w0 b0w1 b1w1 | b0w4 b1w4 b0w5 b1w5], t[1] words 2, 3 | 6, 7 */
    for (int i = 0; i < 2; i++) {
        const __m256i *q = t + 4 * i;
        u[4 * i + 0] = _mm256_unpacklo_epi64(q[0], q[2]); /* blocks 4i..4i+3, words 0 | 4 */
        u[4 * i + 1] = _mm256_unpackhi_epi64(q[0], q[2]); /* words 1 | 5 */
        u[4 * i + 2] = _mm256_unpacklo_epi64(q[1], q[3]); /* words 2 | 6 */
        u[4 * i + 3] = _mm256_unpackhi_epi64(q[1], q[3]); /* words 3 | 7 */
    }
    for (int j = 0; j < 4; j++) {
        v[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
        v[j + 4] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
    }
}

/* duet_qpack8_fn: per row and group, the 8 blocks' codes as u8 (Q8_0 with
 * the sign bit flipped: q + 128), transposed by tr8x8, and their scales. */
QFN void SFX(gemm8_pack)(duet_qtype t, const uint8_t *W, int64_t wrb, int rows, int64_t nb,
                         uint8_t *out) {
    enum { R = Q8_GEMM_R };
    const int64_t ng = (nb + 7) / 8;
    const int q8 = t == DUET_QTYPE_Q8_0;
    const int64_t bb = q8 ? Q8_0_BYTES : Q4_0_BYTES;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t g = 0; g < ng; g++, out += Q8_GEMM_WG) {
        float *dw = (float *)(out + 8 * R * 32);
        const int64_t nbk = nb - 8 * g < 8 ? nb - 8 * g : 8;
        for (int r = 0; r < R; r++) {
            __m256i v[8];
            if (r >= rows) {
                for (int s = 0; s < 8; s++)
                    _mm256_storeu_si256((__m256i *)(out + (s * R + r) * 32), _mm256_setzero_si256());
                _mm256_storeu_ps(dw + 8 * r, _mm256_setzero_ps());
                continue;
            }
            const uint8_t *b = W + r * wrb + 8 * g * bb;
            if (nbk == 8) {
                _mm256_storeu_ps(dw + 8 * r, scales8(b, (int)bb));
            } else {
                for (int l = 0; l < 8; l++) dw[8 * r + l] = l < nbk ? f16s(b + l * bb) : 0.0f;
            }
            for (int l = 0; l < 8; l++) {
                if (l >= nbk)
                    v[l] = _mm256_setzero_si256();
                else if (q8)
                    v[l] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(b + l * bb + 2)), flip);
                else
                    v[l] = nib32(b + l * bb + 2);
            }
            tr8x8(v);
            for (int s = 0; s < 8; s++) _mm256_storeu_si256((__m256i *)(out + (s * R + r) * 32), v[s]);
        }
    }
}

/* duet_qquant8_fn. Each block through q8_0_block, the row quantizer's own
 * step (so the same bytes as duet_quantize_row), its codes then transposed
 * into the packed layout. */
QFN void SFX(gemm8_quant)(const float *X, int64_t ldx, int ntok, int64_t nb, int off,
                          uint8_t *out) {
    enum { T = Q8_GEMM_T };
    const int64_t ng = (nb + 7) / 8;
    for (int64_t g = 0; g < ng; g++, out += Q8_GEMM_XG) {
        float *dx = (float *)(out + 8 * T * 32);
        int32_t *xc = (int32_t *)(out + 8 * T * 32 + T * 32);
        for (int t = 0; t < T; t++) {
            __m256i v[8];
            for (int l = 0; l < 8; l++) {
                const int64_t b = 8 * g + l;
                if (t >= ntok || b >= nb) {
                    v[l] = _mm256_setzero_si256();
                    dx[8 * t + l] = 0.0f;
                    xc[8 * t + l] = 0;
                    continue;
                }
                __m512i c0, c1;
                float d;
                (void)q8_0_block(X + t * ldx + 32 * b, &c0, &c1, &d);
                dx[8 * t + l] = d;
                xc[8 * t + l] = -off * _mm512_reduce_add_epi32(_mm512_add_epi32(c0, c1));
                v[l] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm512_cvtepi32_epi8(c0)),
                                               _mm512_cvtepi32_epi8(c1), 1);
            }
            tr8x8(v);
            for (int s = 0; s < 8; s++) _mm256_storeu_si256((__m256i *)(out + (s * T + t) * 32), v[s]);
        }
    }
}
#endif

#endif /* QUANT_AVX512_PASS */
