/*
 * act.h — elementwise activation kernels (GELU-tanh, SiLU, SwiGLU, forward
 * and backward) with a scalar reference and AVX2 / AVX-512 versions that use
 * a polynomial exp instead of calling libm per element. Picked by the kernel
 * set in use (duet_k.isa), so duet_kernel_force() switches them too.
 * Backward kernels accumulate (+=); swiglu's dgate or dup may be NULL.
 */
#ifndef DUET_ACT_H
#define DUET_ACT_H

#include <stdint.h>

typedef struct duet_act_kernels {
    void (*gelu_tanh_fwd)(float *out, const float *x, int64_t n);
    void (*gelu_tanh_bwd)(float *dinp, const float *dout, const float *x, int64_t n);
    void (*silu_fwd)(float *out, const float *x, int64_t n);
    void (*silu_bwd)(float *dinp, const float *dout, const float *x, int64_t n);
    void (*swiglu_fwd)(float *out, const float *gate, const float *up, int64_t n);
    void (*swiglu_bwd)(float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, int64_t n);
} duet_act_kernels;

/* The set matching the kernel set in use. */
const duet_act_kernels *duet_act(void);

extern const duet_act_kernels duet_act_scalar;
#if defined(__x86_64__)
extern const duet_act_kernels duet_act_avx2;
extern const duet_act_kernels duet_act_avx512;
#endif

#define DUET_GELU_SQRT_2_OVER_PI 0.7978845608028654f
#define DUET_GELU_CUBIC 0.044715f

#endif
