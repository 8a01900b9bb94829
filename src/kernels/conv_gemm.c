/*
 * conv_gemm.c — picks the implicit-GEMM convolution of the active kernel set
 * (see conv_gemm.h). Only the AVX-512 set has one; with any other set (or a
 * forced one, as the tests do) the callers keep their im2col path.
 *
 * What it is not: the kernels themselves (conv_avx512.c).
 */
#include "core/internal.h"
#include "kernels/conv_gemm.h"
#include "kernels/kernels.h"

#include <string.h>

static int avx512_active(void) {
#if defined(__x86_64__)
    return duet_k.isa && strcmp(duet_k.isa, "avx512") == 0;
#else
    return 0;
#endif
}

int duet_conv_igemm_forward(float *out, const float *inp, const float *weight, const float *bias,
                            const float *cbias, float beta, int64_t N, int64_t C, int64_t H,
                            int64_t W, int64_t OC, int64_t K, int64_t pad) {
#if defined(__x86_64__)
    if (avx512_active())
        return duet_conv_igemm_forward_avx512(out, inp, weight, bias, cbias, beta, N, C, H, W, OC,
                                              K, pad);
#endif
    (void)out, (void)inp, (void)weight, (void)bias, (void)cbias, (void)beta, (void)N, (void)C;
    (void)H, (void)W, (void)OC, (void)K, (void)pad;
    return -1;
}

int duet_conv_igemm_dweight(float *dweight, const float *dout, const float *inp, int64_t N,
                            int64_t C, int64_t H, int64_t W, int64_t OC, int64_t K, int64_t pad) {
#if defined(__x86_64__)
    if (avx512_active())
        return duet_conv_igemm_dweight_avx512(dweight, dout, inp, N, C, H, W, OC, K, pad);
#endif
    (void)dweight, (void)dout, (void)inp, (void)N, (void)C, (void)H, (void)W, (void)OC;
    (void)K, (void)pad;
    return -1;
}
