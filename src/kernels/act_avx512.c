/*
 * act_avx512.c — activation kernels on 16-float AVX-512 vectors (act_simd.h).
 */
#include "kernels/act.h"

#include <immintrin.h>

typedef __m512 V;
#define VW 16
#define VSET _mm512_set1_ps
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
#define VMIN _mm512_min_ps
#define VMAX _mm512_max_ps
#define VFMADD _mm512_fmadd_ps
#define VFNMADD _mm512_fnmadd_ps
#define VROUND(x) _mm512_roundscale_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE _mm512_scalef_ps

#include "kernels/act_simd.h"

const duet_act_kernels duet_act_avx512 = {gelu_tanh_fwd_v, gelu_tanh_bwd_v, silu_fwd_v,
                                          silu_bwd_v,      swiglu_fwd_v,    swiglu_bwd_v};
