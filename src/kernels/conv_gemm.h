/*
 * conv_gemm.h — implicit-GEMM convolution for stride-1 convolutions: the
 * GEMM's operand that im2col would build is packed straight from the image
 * into the microkernel's panel layout, block by block, so no [C*K*K, pixels]
 * column matrix is ever written, and the output tiles land directly in the
 * [N, OC, OH, OW] image (no scatter pass). Private to src/kernels and
 * src/nn/conv.c.
 *
 * Both entries return 0 when they did the work, or -1 when this path does
 * not apply (no AVX-512 kernel set active, a kernel over 16 taps wide, or no
 * memory for the packing buffers) — nothing is written then and the caller
 * takes its im2col path. Results do not depend on the thread count.
 */
#ifndef DUET_CONV_GEMM_H
#define DUET_CONV_GEMM_H

#include <stdint.h>

/* Stride 1, padding pad, OH = H + 2 pad - K + 1 (same for W):
 *   out[n][o][y][x] = beta * out[n][o][y][x]
 *                   + sum_{c,kh,kw} weight[o][c][kh][kw] * inp[n][c][y-pad+kh][x-pad+kw]
 *                   + bias[o] + cbias[n*OC + o]
 * (taps outside the image are 0; bias and cbias may be NULL; beta is 0 or 1,
 * and beta 0 never reads out). */
int duet_conv_igemm_forward(float *out, const float *inp, const float *weight, const float *bias,
                            const float *cbias, float beta, int64_t N, int64_t C, int64_t H,
                            int64_t W, int64_t OC, int64_t K, int64_t pad);

/* Stride 1: dweight[o][c][kh][kw] += sum_{n,y,x} dout[n][o][y][x] * inp[n][c][y-pad+kh][x-pad+kw]. */
int duet_conv_igemm_dweight(float *dweight, const float *dout, const float *inp, int64_t N,
                            int64_t C, int64_t H, int64_t W, int64_t OC, int64_t K, int64_t pad);

/* Winograd F(4x4, 3x3) (conv_winograd.c): the forward's contract for K == 3
 * and pad == 1 only, AVX-512 only, and unless turned off; 0 done, -1 not
 * applicable (nothing written then). */
int duet_conv_winograd_forward(float *out, const float *inp, const float *weight,
                               const float *bias, const float *cbias, float beta, int64_t N,
                               int64_t C, int64_t H, int64_t W, int64_t OC, int64_t K,
                               int64_t pad);
/* 1 on, 0 off, -1 back to the environment's choice (DUET_CONV_WINOGRAD=0
 * turns it off; on by default). For tests and benchmarks. */
void duet_conv_winograd_enable(int on);
int duet_conv_winograd_enabled(void);

#if defined(__x86_64__)
int duet_conv_igemm_forward_avx512(float *out, const float *inp, const float *weight,
                                   const float *bias, const float *cbias, float beta, int64_t N,
                                   int64_t C, int64_t H, int64_t W, int64_t OC, int64_t K,
                                   int64_t pad);
int duet_conv_igemm_dweight_avx512(float *dweight, const float *dout, const float *inp,
                                   int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC,
                                   int64_t K, int64_t pad);
#endif

#endif
