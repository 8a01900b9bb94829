/*
 * quant_mv_avx512.c — several weight rows at a time for the caller-split
 * matrix-vector product (quant_mv.h): f32 and f16 weights with an f32
 * vector, and with VNNI the Q4_0, Q8_0 and Q4_K rows (further below). Per row the one-row dot costs a call, its own loads of x and a
 * 16-lane horizontal sum; for rows of a few hundred elements (a 15M-shape
 * model's 32000 x 288 output matrix, GPT-2 small's 384-wide rows) that
 * adds up. Here a group of four rows is one call and one reduction tree
 * sums all four; each row is still swept front to back on its own (four
 * rows interleaved load by load measured 15-30% slower: four streams
 * instead of one for the prefetchers). The summation order differs from
 * the one-row dot's: results agree to rounding, not bit for bit.
 */
#include "kernels/quant_avx512.h"
#include "kernels/quant_mv.h"

#include <immintrin.h>
#include <string.h>

/* The four row sums of acc[0..3] as one vector of four floats. */
static inline __m128 sum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    const __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(b), 1)));
    const __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c), 1)));
    const __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1)));
    /* per 128-bit half: [a0+a1, a2+a3, b0+b1, b2+b3] then [a, b, c, d] quarter sums */
    const __m256 ab = _mm256_hadd_ps(a8, b8), cd = _mm256_hadd_ps(c8, d8);
    const __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

static inline float sum1(__m512 a, __m512 b) { return _mm512_reduce_add_ps(_mm512_add_ps(a, b)); }

/* One row, front to back (one sequential stream, which the hardware
 * prefetchers follow best), into accumulators a and b. */
#define ROW_SWEEP(LOAD, LOADM, p, a, b)                                                                       \
    {                                                                                              \
        int64_t i = 0;                                                                             \
        for (; i < k32; i += 32) {                                                                 \
            a = _mm512_fmadd_ps(LOAD(p, i), _mm512_loadu_ps(x + i), a);                            \
            b = _mm512_fmadd_ps(LOAD(p, i + 16), _mm512_loadu_ps(x + i + 16), b);                  \
        }                                                                                          \
        if (i < k16) {                                                                             \
            a = _mm512_fmadd_ps(LOAD(p, i), _mm512_loadu_ps(x + i), a);                            \
            i += 16;                                                                               \
        }                                                                                          \
        if (km) b = _mm512_fmadd_ps(LOADM(km, p, i), _mm512_maskz_loadu_ps(km, x + i), b);         \
    }

/* LOAD(p, i): 16 weights from row pointer p at element i, as floats;
 * LOADM(k, p, i): the first lanes of k only. */
#define ROWS_KERNEL(NAME, T, LOAD, LOADM)                                                          \
    void NAME(const duet_qmv *mv, const void *W, int64_t r0, int64_t r1, float *y) {             \
        const T *w = (const T *)W;                                                                \
        const int64_t K = mv->K;                                                                  \
        const float *x = (const float *)mv->x;                                                    \
        const int64_t k32 = K & ~(int64_t)31, k16 = K & ~(int64_t)15;                             \
        const __mmask16 km = (__mmask16)((1u << (K - k16)) - 1);                                  \
        int64_t r = r0;                                                                           \
        for (; r + 4 <= r1; r += 4) {                                                             \
            const T *p0 = w + r * K, *p1 = p0 + K, *p2 = p1 + K, *p3 = p2 + K;                    \
            __m512 a0 = _mm512_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0,         \
                   a3 = a0, b3 = a0;                                                              \
            ROW_SWEEP(LOAD, LOADM, p0, a0, b0)                                                                 \
            ROW_SWEEP(LOAD, LOADM, p1, a1, b1)                                                                 \
            ROW_SWEEP(LOAD, LOADM, p2, a2, b2)                                                                 \
            ROW_SWEEP(LOAD, LOADM, p3, a3, b3)                                                                 \
            _mm_storeu_ps(y + r, sum4(_mm512_add_ps(a0, b0), _mm512_add_ps(a1, b1),               \
                                      _mm512_add_ps(a2, b2), _mm512_add_ps(a3, b3)));             \
        }                                                                                         \
        for (; r < r1; r++) {                                                                     \
            const T *p0 = w + r * K;                                                              \
            __m512 a0 = _mm512_setzero_ps(), b0 = a0;                                             \
            int64_t i = 0;                                                                        \
            for (; i < k16; i += 16) {                                                            \
                if (i & 16) b0 = _mm512_fmadd_ps(LOAD(p0, i), _mm512_loadu_ps(x + i), b0);        \
                else a0 = _mm512_fmadd_ps(LOAD(p0, i), _mm512_loadu_ps(x + i), a0);               \
            }                                                                                     \
            if (km) a0 = _mm512_fmadd_ps(LOADM(km, p0, i), _mm512_maskz_loadu_ps(km, x + i), a0); \
            y[r] = sum1(a0, b0);                                                                  \
        }                                                                                         \
    }

#define LD_F32(p, i) _mm512_loadu_ps((p) + (i))
#define LDM_F32(k, p, i) _mm512_maskz_loadu_ps(k, (p) + (i))
#define LD_F16(p, i) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((p) + (i))))
#define LDM_F16(k, p, i) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (p) + (i)))

ROWS_KERNEL(duet_qmv_rows_f32_avx512, float, LD_F32, LDM_F32)
ROWS_KERNEL(duet_qmv_rows_f16_avx512, uint16_t, LD_F16, LDM_F16)

/* ---- Q4_0 x Q8_0 (VNNI), the activations prepared as duet_qmv_prepare does ----
 *
 * The AVX-512 BW kernel (quant_avx512.c, dot_q4_0_prep_bw) spreads a
 * block's 16 code bytes into 32 bytes of nibbles with a shift and a 128-bit
 * insert (a shuffle-port uop) per block. With VNNI (no 16-bit saturating
 * pairs to stay under) the 16 bytes are broadcast to both
 * halves by the load itself and one AND keeps the low nibbles in the lower
 * half and the high nibbles, times 16, in the upper; vpdpbusd's upper four
 * lanes then hold 16 x the high-nibble sums (exact multiples of 16), which
 * one arithmetic shift per 4 blocks brings back after the first reduction
 * step. The integer block sums are the ones the BW kernel forms, and the
 * float steps are its own, in its order: the same bits. This is the VNNI
 * kernel set's q4_0_prep: small batches (2-15 rows) of duet_quant_matmul,
 * and the matvec and decode with DUET_QMV_ROWS=0 (otherwise they take
 * duet_qmv_rows_q4_0_vnni below). */

/* The f16 scales at the start of 8 blocks of `stride` bytes, as floats
 * (packed in general registers: no vpinsrw). */
static inline __m256 scales8_at(const uint8_t *p, int stride) {
    uint64_t lo = 0, hi = 0;
    for (int j = 0; j < 4; j++) {
        uint16_t a, b;
        memcpy(&a, p + j * stride, 2);
        memcpy(&b, p + (j + 4) * stride, 2);
        lo |= (uint64_t)a << (16 * j);
        hi |= (uint64_t)b << (16 * j);
    }
    return _mm256_cvtph_ps(_mm_unpacklo_epi64(_mm_cvtsi64_si128((long long)lo),
                                              _mm_cvtsi64_si128((long long)hi)));
}

/* The f16 scales of 8 blocks gathered by one AVX-512 BW word permute
 * (vpermt2w) from the two or four 64-byte loads that hold them, in place
 * of eight 16-bit loads packed in general registers (scales8_at): the Q4_0
 * and Q8_0 row kernels ran 2-10% faster with it (one core, both versions
 * alternating in one process: Q8_0 in L2 40.2-40.6 -> 42.7-42.9 GB/s, in
 * L3 27.4 -> 27.9; Q4_0 in L3 19.7-19.8 -> 21.7-21.8). Same values.
 * Q4_0 (18-byte blocks): block j's scale is word 9j of the 144 bytes at w,
 * in the row kernel's lane order 0 2 4 6 1 3 5 7. */
static const int16_t q4_0_sc_idx[32] __attribute__((aligned(64))) = {0, 18, 36, 54, 9, 27, 45, 63};
static inline __attribute__((always_inline)) __m256 scales8_q4_0(const uint8_t *w) {
    const __m512i a = _mm512_loadu_si512((const void *)w), b = _mm512_loadu_si512((const void *)(w + 64));
    const __m512i idx = _mm512_load_si512((const void *)q4_0_sc_idx);
    return _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(a, idx, b)));
}
/* Q8_0 (34-byte blocks): words 0 17 34 51 of the first 128 bytes, 68 85 102
 * 119 (words 4 21 38 55 of the next 128). */
static const int16_t q8_0_sc_idx[32] __attribute__((aligned(64))) = {0, 17, 34, 51, 4, 21, 38, 55};
static inline __attribute__((always_inline)) __m256 scales8_q8_0(const uint8_t *w) {
    const __m512i idx = _mm512_load_si512((const void *)q8_0_sc_idx);
    const __m512i lo = _mm512_permutex2var_epi16(_mm512_loadu_si512((const void *)w), idx,
                                                 _mm512_loadu_si512((const void *)(w + 64)));
    const __m512i hi = _mm512_permutex2var_epi16(_mm512_loadu_si512((const void *)(w + 128)), idx,
                                                 _mm512_loadu_si512((const void *)(w + 192)));
    return _mm256_cvtph_ps(_mm_mask_mov_epi16(_mm512_castsi512_si128(lo), 0xF0, _mm512_castsi512_si128(hi)));
}

static inline float f16v(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline float hsum_ps8(__m256 a) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
}

__attribute__((target("avx512vnni"))) float duet_q4_0_prep_vnni(int64_t n, const void *vw,
                                                                 const void *vx, const float *xd,
                                                                 const float *xs) {
    const int64_t nb = n / QK;
    const __m256i zero = _mm256_setzero_si256();
    const __m256i mask = _mm256_setr_epi64x(0x0F0F0F0F0F0F0F0FLL, 0x0F0F0F0F0F0F0F0FLL,
                                            (long long)0xF0F0F0F0F0F0F0F0ULL,
                                            (long long)0xF0F0F0F0F0F0F0F0ULL);
    const __m256i sh = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    const uint8_t *w = vw, *x = vx;
    __m256 acc = _mm256_setzero_ps(), acc2 = acc;
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8, w += 8 * Q4_0_BYTES, x += 8 * Q8_0_BYTES) {
        __m256i p[8];
        _mm_prefetch((const char *)w + 2048, _MM_HINT_T0);
        _mm_prefetch((const char *)w + 2048 + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)w + 2048 + 128, _MM_HINT_T0);
        for (int j = 0; j < 8; j++) {
            const __m256i b = _mm256_broadcastsi128_si256(
                _mm_loadu_si128((const __m128i *)(w + j * Q4_0_BYTES + 2)));
            p[j] = _mm256_dpbusd_epi32(zero, _mm256_and_si256(b, mask),
                                       _mm256_loadu_si256((const __m256i *)(x + j * Q8_0_BYTES + 2)));
        }
        const __m256i t0 = _mm256_hadd_epi32(p[0], p[1]), t1 = _mm256_hadd_epi32(p[2], p[3]);
        const __m256i t2 = _mm256_hadd_epi32(p[4], p[5]), t3 = _mm256_hadd_epi32(p[6], p[7]);
        /* lower halves: low-nibble sums; upper: 16 x high-nibble sums */
        const __m256i u0 = _mm256_srav_epi32(_mm256_hadd_epi32(t0, t1), sh);
        const __m256i u1 = _mm256_srav_epi32(_mm256_hadd_epi32(t2, t3), sh);
        const __m256i h = _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                                           _mm256_permute2x128_si256(u0, u1, 0x31));
        const __m256 dw = scales8_at(w, Q4_0_BYTES);
        acc = _mm256_fmadd_ps(dw, _mm256_mul_ps(_mm256_loadu_ps(xd + i), _mm256_cvtepi32_ps(h)),
                              acc);
        acc2 = _mm256_fmadd_ps(dw, _mm256_loadu_ps(xs + i), acc2);
    }
    __m256 acc1 = _mm256_setzero_ps();
    for (; i < nb; i++, w += Q4_0_BYTES, x += Q8_0_BYTES) {
        const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w + 2)));
        const __m256i p = _mm256_srav_epi32(
            _mm256_dpbusd_epi32(zero, _mm256_and_si256(b, mask),
                                _mm256_loadu_si256((const __m256i *)(x + 2))),
            sh);
        const float dw = f16v(w);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd[i]), _mm256_cvtepi32_ps(p), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_set1_ps(dw), _mm256_set1_ps(xs[i] * 0.125f), acc2);
    }
    return hsum_ps8(_mm256_sub_ps(_mm256_add_ps(acc, acc1), acc2));
}

/* Rows of the caller-split matvec: duet_qmv_rows_q4_0_vnni below. */

/* ======================================================================== */
/* Q8_0, Q4_K, Q6_K rows (VNNI)                                              */
/* ======================================================================== */
/*
 * The *_rows_n kernels can sweep R rows side by side, sharing the
 * activation loads (each row with its own accumulators, in the same
 * operations and order as alone, so a row's bits never depend on its
 * neighbours). Measured on Zen 4 (2 threads, a 5632 x 2048 matrix from
 * DRAM): R = 4 streamed Q8_0 / Q4_K / Q6_K at 10-14 GB/s, R = 2 at 12-16,
 * R = 1 at 21-25 — interleaved rows are several streams for the
 * prefetchers, as with f32 — while in cache R = 4 gained only 0-5%. So
 * the rows go one at a time (R = 1); the gains come from the cheaper
 * kernels themselves.
 */
#define VNNI __attribute__((target("avx512vnni")))
#define INL static inline __attribute__((always_inline, target("avx512vnni")))

/* Lane j = the sum of the 8 i32 lanes of p[j]. */
INL __m256i hsum8x8_v(const __m256i p[8]) {
    const __m256i t0 = _mm256_hadd_epi32(p[0], p[1]), t1 = _mm256_hadd_epi32(p[2], p[3]);
    const __m256i t2 = _mm256_hadd_epi32(p[4], p[5]), t3 = _mm256_hadd_epi32(p[6], p[7]);
    const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                            _mm256_permute2x128_si256(u0, u1, 0x31));
}

/* ---- Q8_0 x Q8_0 ----
 * The weight codes w are signed; w ^ 0x80 = w + 128 is their unsigned
 * form for vpdpbusd (one XOR instead of the |w|, sign(x, w) pair), and the
 * 128 * sum(x) it adds is taken back by the prepared per-block term
 * xc = -128 * sum(x) after the reduction: exact integer block sums. Per 8
 * blocks the float step is dw * (dx * isum), as in the Q4_0 kernel. */
INL void q8_0_rows_n(const duet_qmv *mv, const uint8_t *w, int R, float *y) {
    const int64_t nb = mv->K / QK, wrb = mv->wrb;
    const uint8_t *x = mv->x;
    const float *xd = mv->xd;
    const int32_t *xc = mv->xc;
    const __m256i zero = _mm256_setzero_si256(), flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[4], acc1[4];
    for (int r = 0; r < R; r++) acc[r] = acc1[r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
        const uint8_t *xb = x + i * Q8_0_BYTES;
        __m256i xv[8];
        for (int j = 0; j < 8; j++) xv[j] = _mm256_loadu_si256((const __m256i *)(xb + j * Q8_0_BYTES + 2));
        const __m256 dx = _mm256_loadu_ps(xd + i);
        const __m256i c = _mm256_loadu_si256((const __m256i *)(xc + i));
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + r * wrb + i * Q8_0_BYTES;
            for (int o = 0; o < 8 * Q8_0_BYTES; o += 64) _mm_prefetch((const char *)wb + 2048 + o, _MM_HINT_T0);
            __m256i p[8];
            for (int j = 0; j < 8; j++)
                p[j] = _mm256_dpbusd_epi32(zero, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(wb + j * Q8_0_BYTES + 2)), flip), xv[j]);
            const __m256i h = _mm256_add_epi32(hsum8x8_v(p), c);
            acc[r] = _mm256_fmadd_ps(scales8_q8_0(wb), _mm256_mul_ps(dx, _mm256_cvtepi32_ps(h)), acc[r]);
        }
    }
    for (; i < nb; i++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + i * Q8_0_BYTES + 2));
        const __m256i c = _mm256_setr_epi32(xc[i], 0, 0, 0, 0, 0, 0, 0);
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + r * wrb + i * Q8_0_BYTES;
            const __m256i p = _mm256_dpbusd_epi32(c, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(wb + 2)), flip), xv);
            uint16_t h16;
            memcpy(&h16, wb, 2);
            acc1[r] = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(h16) * xd[i]), _mm256_cvtepi32_ps(p), acc1[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r] = hsum_ps8(_mm256_add_ps(acc[r], acc1[r]));
}

VNNI void duet_qmv_rows_q8_0_vnni(const duet_qmv *mv, const void *W, int64_t r0, int64_t r1, float *y) {
    const uint8_t *w = W;
    int64_t r = r0;
    for (; r < r1; r++) q8_0_rows_n(mv, w + r * mv->wrb, 1, y + r);
}

/* ---- Q4_K x Q8_K ----
 * 512-bit steps (on Zen 4 each is one instruction for two 256-bit halves:
 * this kernel was bound by the instruction count, not the execution
 * units). A 64-byte load of qs gives the low nibbles of sub-blocks 2c and
 * 2c + 2 and the high nibbles of 2c + 1 and 2c + 3 (c = 0, 2); the
 * activations are prepared once per vector in that order (mv->xk). Per
 * sub-block pair vpmaddubsw forms 16-bit pair sums (at most 2 * 15 * 128,
 * no saturation) and one vpdpwssd with the [sc, sc] 16-bit scales adds
 * sc * (pair sum) into the super-block's i32 lanes — no horizontal sum per
 * sub-block. The mins pair with the bsums in one vpmaddwd. Per super-block
 * the lanes (exact integers, < 2^24) are scaled by d * dx and dmin * dx in
 * float; the lanes are summed once per row. */
/* The super-block's 6-bit scales and mins, unpacked in vector registers:
 * one 16-byte load of the 12 bytes (and 4 of qs after them), two vpshufd,
 * shifts and masks give the 8 scales in bytes 0-7 and the 8 mins in bytes
 * 8-15 (same bit layout as dequantize's: j < 4 from the low 6 bits of
 * bytes j and j + 4; j >= 4 from the nibbles of byte j + 4 and the top two
 * bits of bytes j - 4 and j); copied to all four 128-bit lanes, one
 * vpshufb each spreads a sub-block pair's scales over its i32 lanes as
 * [sc, sc] 16-bit pairs (zeros from the 0x80 index bytes), and one more
 * gives the mins as the 16-bit pairs the bsums' vpmaddwd takes. It took the
 * place of the same unpacking in general registers, vpmovzx and four
 * vpermd: 52 instructions a super-block instead of ~70. One core, K 2048,
 * both kernels alternating in one process, medians: in L2 19.9 -> 21.2 and
 * 20.4-20.9 -> 23.4 GB/s (two runs), from an 8 MB buffer (L3) 18.9-19.3
 * -> 20.1. Same bits. */
#define B2(a) a, 0x80
#define B8(a) B2(a), B2(a), B2(a), B2(a)
#define B32(a) B8(a), B8(a), B8(a), B8(a)
static const uint8_t q4_k_sc_idx[4][64] __attribute__((aligned(64))) = {
    {B32(0), B32(2)}, {B32(1), B32(3)}, {B32(4), B32(6)}, {B32(5), B32(7)}};
static const uint8_t q4_k_mn_idx[32] __attribute__((aligned(32))) = {
    B2(8),  B2(8),  B2(9),  B2(9),  B2(10), B2(10), B2(11), B2(11),
    B2(12), B2(12), B2(13), B2(13), B2(14), B2(14), B2(15), B2(15)};
#undef B2
#undef B8
#undef B32

INL void q4_k_scales(const uint8_t *s, const __m512i idx[4], __m256i mnidx, __m512i sc[4],
                     __m256i *mins16) {
    const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)s); /* u0 u1 u2 (qs) */
    const __m128i p = _mm_shuffle_epi32(q, _MM_SHUFFLE(2, 1, 2, 0));      /* u0 u2 u1 u2 */
    const __m128i h = _mm_shuffle_epi32(q, _MM_SHUFFLE(1, 1, 0, 0));      /* u0 u0 u1 u1 */
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(p, _mm_setr_epi32(0, 0, 0, 4)),
                                     _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m128i hi = _mm_and_si128(_mm_srli_epi32(h, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    const __m512i b = _mm512_broadcast_i32x4(_mm_or_si128(lo, hi));
    for (int k = 0; k < 4; k++) sc[k] = _mm512_shuffle_epi8(b, idx[k]);
    *mins16 = _mm256_shuffle_epi8(_mm512_castsi512_si256(b), mnidx);
}

/* Q8_K codes of x reordered for the 512-bit steps: per super-block the
 * 32-value pieces 0 2 1 3 4 6 5 7. */
void duet_qmv_prep_q8_k_pairs(const uint8_t *x, int64_t K, uint8_t *xk) {
    static const int order[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int64_t i = 0; i < K / QK_K; i++)
        for (int k = 0; k < 8; k++)
            memcpy(xk + i * QK_K + 32 * k, x + i * Q8_K_BYTES + Q8_K_QS + 32 * order[k], 32);
}

INL void q4_k_rows_n(const duet_qmv *mv, const uint8_t *w, int R, float *y) {
    const int64_t nsb = mv->K / QK_K, wrb = mv->wrb;
    const uint8_t *x = mv->x, *xk = mv->xk;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i idx[4] = {_mm512_load_si512((const void *)q4_k_sc_idx[0]), _mm512_load_si512((const void *)q4_k_sc_idx[1]),
                            _mm512_load_si512((const void *)q4_k_sc_idx[2]), _mm512_load_si512((const void *)q4_k_sc_idx[3])};
    const __m256i mnidx = _mm256_load_si256((const __m256i *)(const void *)q4_k_mn_idx);
    __m512 acc[4];
    __m256 accm[4];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps(), accm[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, x += Q8_K_BYTES, xk += QK_K) {
        const float dx = q_f32(x);
        const __m256i bs = _mm256_loadu_si256((const __m256i *)(x + Q8_K_BSUMS));
        const __m512i x0 = _mm512_loadu_si512((const void *)xk), x1 = _mm512_loadu_si512((const void *)(xk + 64));
        const __m512i x2 = _mm512_loadu_si512((const void *)(xk + 128)), x3 = _mm512_loadu_si512((const void *)(xk + 192));
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + r * wrb + i * Q4_K_BYTES;
            for (int o = 0; o < Q4_K_BYTES; o += 64) _mm_prefetch((const char *)wb + 2048 + o, _MM_HINT_T0);
            __m512i sc[4];
            __m256i mn;
            q4_k_scales(wb + Q4_K_SCALES, idx, mnidx, sc, &mn);
            const __m512i b0 = _mm512_loadu_si512((const void *)(wb + Q4_K_QS));
            const __m512i b1 = _mm512_loadu_si512((const void *)(wb + Q4_K_QS + 64));
            __m512i a = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_maddubs_epi16(_mm512_and_si512(b0, m4), x0),
                                            sc[0]);
            __m512i a1 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(b0, 4), m4), x1),
                                             sc[1]);
            a = _mm512_dpwssd_epi32(a, _mm512_maddubs_epi16(_mm512_and_si512(b1, m4), x2),
                                    sc[2]);
            a1 = _mm512_dpwssd_epi32(a1, _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(b1, 4), m4), x3),
                                     sc[3]);
            const __m256i imin = _mm256_madd_epi16(bs, mn);
            /* d and dmin in one conversion (same products as two scalar ones;
             * 7% faster in L2 than f16v twice, one-process A/B) */
            const __m128 dd = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)q_u32(wb))), _mm_set1_ps(dx));
            acc[r] = _mm512_fmadd_ps(_mm512_broadcastss_ps(dd), _mm512_cvtepi32_ps(_mm512_add_epi32(a, a1)), acc[r]);
            accm[r] = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dd)), _mm256_cvtepi32_ps(imin), accm[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        const __m256 t = _mm256_add_ps(_mm512_castps512_ps256(acc[r]),
                                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r]), 1)));
        y[r] = hsum_ps8(_mm256_sub_ps(t, accm[r]));
    }
}

VNNI void duet_qmv_rows_q4_k_vnni(const duet_qmv *mv, const void *W, int64_t r0, int64_t r1, float *y) {
    const uint8_t *w = W;
    int64_t r = r0;
    for (; r < r1; r++) q4_k_rows_n(mv, w + r * mv->wrb, 1, y + r);
}

/* ---- Q6_K x Q8_K ----
 * The unpacking of quant_avx512.c's dot_q6_k (q6_k_codes_avx512): per half of 128 values, qa =
 * values 0-63 and qb = values 64-127 as 6-bit codes (u8), i32 lane k of a
 * 64-value product covering values 4k..4k+3, 16-group k / 4. vpmaddubsw
 * forms the 16-bit pair sums (at most 2 * 63 * 128, no saturation) and one
 * vpdpwssd with [sc, sc] 16-bit pairs (the group's i8 scale, spread to its
 * lanes by vpermd) adds sc * (pair sum): no vpmulld. The -32 offset is
 * -32 * sum(sc * bsum), one vpmaddwd. A super-block's lanes are exact
 * integers with one float scale d * dx; the lanes are summed once per row. */
INL void q6_k_rows_n(const duet_qmv *mv, const uint8_t *w, int R, float *y) {
    const int64_t nsb = mv->K / QK_K, wrb = mv->wrb;
    const uint8_t *x = mv->x;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
    const __m512i g0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i g1 = _mm512_add_epi32(g0, _mm512_set1_epi32(4));
    const __m512i g2 = _mm512_add_epi32(g0, _mm512_set1_epi32(8));
    const __m512i g3 = _mm512_add_epi32(g0, _mm512_set1_epi32(12));
    __m512 acc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, x += Q8_K_BYTES) {
        const float dx = q_f32(x);
        const __m256i bs = _mm256_loadu_si256((const __m256i *)(x + Q8_K_BSUMS));
        const __m512i x0 = _mm512_loadu_si512((const void *)(x + Q8_K_QS));
        const __m512i x1 = _mm512_loadu_si512((const void *)(x + Q8_K_QS + 64));
        const __m512i x2 = _mm512_loadu_si512((const void *)(x + Q8_K_QS + 128));
        const __m512i x3 = _mm512_loadu_si512((const void *)(x + Q8_K_QS + 192));
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + r * wrb + i * Q6_K_BYTES;
            for (int o = 0; o < Q6_K_BYTES; o += 64) _mm_prefetch((const char *)wb + 2048 + o, _MM_HINT_T0);
            const __m128i sc8 = _mm_loadu_si128((const __m128i *)(wb + Q6_K_SCALES));
            const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
            /* i32 lane j: [sc_j, sc_j] as 16-bit pairs */
            const __m512i scp = _mm512_cvtepu16_epi32(sc16);
            const __m512i sp = _mm512_or_si512(scp, _mm512_slli_epi32(scp, 16));
            const __m256i off = _mm256_madd_epi16(sc16, bs);
            __m512i isum = _mm512_castsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5)));
            isum = _mm512_inserti64x4(isum, _mm256_setzero_si256(), 1);
            for (int h = 0; h < 2; h++) {
                __m512i qa, qb;
                q6_k_codes_avx512(wb, h, m4, m2, &qa, &qb);
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qa, h ? x2 : x0),
                                           _mm512_permutexvar_epi32(h ? g2 : g0, sp));
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qb, h ? x3 : x1),
                                           _mm512_permutexvar_epi32(h ? g3 : g1, sp));
            }
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(f16v(wb + Q6_K_D) * dx), _mm512_cvtepi32_ps(isum), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r] = _mm512_reduce_add_ps(acc[r]);
}

VNNI void duet_qmv_rows_q6_k_vnni(const duet_qmv *mv, const void *W, int64_t r0, int64_t r1, float *y) {
    const uint8_t *w = W;
    int64_t r = r0;
    for (; r < r1; r++) q6_k_rows_n(mv, w + r * mv->wrb, 1, y + r);
}

/* ---- Q4_0 x Q8_0, rows ----
 * Two blocks per 256-bit register: [codes of block b | codes of block
 * b + 1] (16 bytes each); (v << 4) & 0xF0 is 16 x the low nibbles and
 * v & 0xF0 16 x the high ones, each dotted by vpdpbusd with the matching 16
 * activations of both blocks, prepared once per vector in that order
 * (duet_qmv_prep_q4_0_groups: per 8 blocks the 4 pairs' low and high
 * halves, then dx and xs = 8 * dx * sum(x) in lane order 0 2 4 6 1 3 5 7).
 * Every i32 lane is 16 x a partial sum of one block, so three vphaddd
 * leave the 8 block sums x 16 (one shift; the one-block-per-register
 * kernel needs 6 vphaddd, 2 shifts, 2 permutes and an add, the largest
 * part of its time). Same integer block sums; float steps dw * (dx * sum)
 * and dw * xs as duet_q4_0_prep_vnni, in another lane order. Blocks past
 * the last group of 8 go one at a time as there. */
void duet_qmv_prep_q4_0_groups(const uint8_t *x, int64_t K, const float *xd, const float *xs,
                               uint8_t *out) {
    static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    for (int64_t g = 0; g < K / QK / 8; g++) {
        uint8_t *o = out + 320 * g;
        for (int k = 0; k < 4; k++)
            for (int h = 0; h < 2; h++) { /* h: the block of the pair */
                const uint8_t *blk = x + (8 * g + 2 * k + h) * Q8_0_BYTES + 2;
                memcpy(o + 64 * k + 16 * h, blk, 16);
                memcpy(o + 64 * k + 32 + 16 * h, blk + 16, 16);
            }
        float d[16];
        for (int l = 0; l < 8; l++) d[l] = xd[8 * g + order[l]], d[8 + l] = xs[8 * g + order[l]];
        memcpy(o + 256, d, 64);
    }
}

VNNI void duet_qmv_rows_q4_0_vnni(const duet_qmv *mv, const void *W, int64_t r0, int64_t r1, float *y) {
    const int64_t nb = mv->K / QK, ng = nb / 8;
    const __m256i zero = _mm256_setzero_si256(), hm = _mm256_set1_epi8((char)0xF0);
    const __m256i mask = _mm256_setr_epi64x(0x0F0F0F0F0F0F0F0FLL, 0x0F0F0F0F0F0F0F0FLL,
                                            (long long)0xF0F0F0F0F0F0F0F0ULL,
                                            (long long)0xF0F0F0F0F0F0F0F0ULL);
    const __m256i sh = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = (const uint8_t *)W + r * mv->wrb, *xg = mv->xk;
        __m256 acc = _mm256_setzero_ps(), acc1 = acc, acc2 = acc;
        for (int64_t g = 0; g < ng; g++, w += 8 * Q4_0_BYTES, xg += 320) {
            _mm_prefetch((const char *)w + 2048, _MM_HINT_T0);
            _mm_prefetch((const char *)w + 2048 + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)w + 2048 + 128, _MM_HINT_T0);
            __m256i q[4];
            for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_loadu2_m128i((const __m128i *)(w + (2 * k + 1) * Q4_0_BYTES + 2),
                                                      (const __m128i *)(w + 2 * k * Q4_0_BYTES + 2));
                const __m256i lo = _mm256_and_si256(_mm256_slli_epi16(v, 4), hm);
                const __m256i hi = _mm256_and_si256(v, hm);
                q[k] = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(zero, lo, _mm256_load_si256((const __m256i *)(xg + 64 * k))),
                                           hi, _mm256_load_si256((const __m256i *)(xg + 64 * k + 32)));
            }
            const __m256i h = _mm256_srai_epi32(
                _mm256_hadd_epi32(_mm256_hadd_epi32(q[0], q[1]), _mm256_hadd_epi32(q[2], q[3])), 4);
            const __m256 dw = scales8_q4_0(w);
            acc = _mm256_fmadd_ps(dw, _mm256_mul_ps(_mm256_load_ps((const float *)(xg + 256)), _mm256_cvtepi32_ps(h)), acc);
            acc2 = _mm256_fmadd_ps(dw, _mm256_load_ps((const float *)(xg + 288)), acc2);
        }
        const uint8_t *x = mv->x + 8 * ng * Q8_0_BYTES;
        for (int64_t i = 8 * ng; i < nb; i++, w += Q4_0_BYTES, x += Q8_0_BYTES) {
            const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w + 2)));
            const __m256i p = _mm256_srav_epi32(
                _mm256_dpbusd_epi32(zero, _mm256_and_si256(b, mask), _mm256_loadu_si256((const __m256i *)(x + 2))), sh);
            const float dw = f16v(w);
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(dw * mv->xd[i]), _mm256_cvtepi32_ps(p), acc1);
            acc2 = _mm256_fmadd_ps(_mm256_set1_ps(dw), _mm256_set1_ps(mv->xs[i] * 0.125f), acc2);
        }
        y[r] = hsum_ps8(_mm256_sub_ps(_mm256_add_ps(acc, acc1), acc2));
    }
}
