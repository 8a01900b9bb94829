/*
 * quant_avx512.h — unpacking shared by the AVX-512 dot kernels
 * (quant_avx512.c) and the decode's row kernels (quant_mv_avx512.c). Only
 * for files built with AVX-512 BW (the *_avx512.c flags in the Makefile).
 */
#ifndef DUET_KERNELS_QUANT_AVX512_H
#define DUET_KERNELS_QUANT_AVX512_H
#include "kernels/quant.h"

#include <immintrin.h>

/* Half h (0 or 1) of a Q6_K super-block w as 6-bit codes (u8): *qa the
 * values 0-63 of the half, *qb the values 64-127 — i32 lane k of a 64-value
 * product covers values 4k..4k+3, in 16-group k / 4. The low 4 bits come
 * from ql's nibbles, the top 2 from qh's 2-bit fields (shifted into 0x30).
 * m4 = 0x0F and m2 = 0x30 in every byte. */
static inline __attribute__((always_inline)) void q6_k_codes_avx512(const uint8_t *w, int h,
                                                                     __m512i m4, __m512i m2,
                                                                     __m512i *qa, __m512i *qb) {
    const __m512i l = _mm512_loadu_si512((const void *)(w + Q6_K_QL + 64 * h));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(w + Q6_K_QH + 32 * h));
    const __m512i hh = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
    *qa = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_slli_epi16(hh, 4), m2));
    *qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_and_si512(hh, m2));
}

#endif
