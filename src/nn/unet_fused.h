/*
 * unet_fused.h — fused ops of the painter's UNet (src/nn/unet_fused.c):
 * GroupNorm followed by SiLU, and a convolution plus a per-image channel
 * bias (the ResBlock's timestep projection). Each is the composition of the
 * public ops it replaces (same results up to rounding), with fewer passes
 * over the activations and one tensor fewer on the tape.
 */
#ifndef DUET_UNET_FUSED_H
#define DUET_UNET_FUSED_H

#include "duet.h"

/* out = dropout(silu(groupnorm(inp))) over [N, C, HW] in G groups;
 * mean/rstd [N*G] (as duet_groupnorm_forward). weight/bias may be NULL.
 * p = 0: no dropout; otherwise the mask of duet_dropout_forward(.., p, seed,
 * offset) over the N*C*HW elements, regenerated, never stored. */
void duet_groupnorm_silu_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int64_t N, int64_t C,
                                 int64_t HW, int64_t G, float eps, float p, uint64_t seed,
                                 uint64_t offset);
/* Accumulates (+=) dinp, dweight, dbias (each may be NULL) from dout, the
 * forward's input, its mean/rstd and the same p, seed, offset. */
void duet_groupnorm_silu_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, const float *bias,
                                  const float *mean, const float *rstd, int64_t N, int64_t C,
                                  int64_t HW, int64_t G, float p, uint64_t seed,
                                  uint64_t offset);
/* Tape op: silu(groupnorm(x, w, b)). */
duet_tensor *duet_nn_groupnorm_silu(duet_graph *g, duet_tensor *x, duet_tensor *w,
                                    duet_tensor *b, int64_t groups, float eps);
/* Tape op: dropout(silu(groupnorm(x, w, b)), p) with the rng as
 * duet_nn_dropout uses it (advanced by the element count); the identity
 * dropout when p = 0 or the graph is not training. */
duet_tensor *duet_nn_groupnorm_silu_dropout(duet_graph *g, duet_tensor *x, duet_tensor *w,
                                            duet_tensor *b, int64_t groups, float eps, float p,
                                            duet_rng *rng);

/* Tape op: conv2d(x, w, b, stride, pad) + cb[:, :, None, None] with cb
 * [N, OC] (add_channel fused into the convolution's output). */
duet_tensor *duet_nn_conv2d_chanbias(duet_graph *g, duet_tensor *x, duet_tensor *w,
                                     duet_tensor *b, duet_tensor *cb, int64_t stride,
                                     int64_t pad);

#endif
