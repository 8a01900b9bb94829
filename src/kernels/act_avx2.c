/*
 * act_avx2.c — activation kernels on 8-float AVX2 vectors (act_simd.h).
 */
#include "kernels/act.h"

#include <immintrin.h>

typedef __m256 V;
#define VW 8
#define VSET _mm256_set1_ps
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VMIN _mm256_min_ps
#define VMAX _mm256_max_ps
#define VFMADD _mm256_fmadd_ps
#define VFNMADD _mm256_fnmadd_ps
#define VROUND(x) _mm256_round_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* p * 2^k for integral k in [-126, 127]: build 2^k in the exponent bits */
static inline __m256 vscale2(__m256 p, __m256 k) {
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#define VSCALE vscale2

#include "kernels/act_simd.h"

const duet_act_kernels duet_act_avx2 = {gelu_tanh_fwd_v, gelu_tanh_bwd_v, silu_fwd_v,
                                        silu_bwd_v,      swiglu_fwd_v,    swiglu_bwd_v};
