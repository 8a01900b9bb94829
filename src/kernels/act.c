/*
 * act.c — scalar reference of the activation kernels (libm tanhf/expf) and
 * the dispatch by kernel set. See act.h.
 */
#include "kernels/act.h"

#include "core/internal.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

static inline float sigmoid1(float x) { return 1.0f / (1.0f + expf(-x)); }

static void gelu_tanh_fwd(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + tanhf(DUET_GELU_SQRT_2_OVER_PI * (v + DUET_GELU_CUBIC * v * v * v)));
    }
}

static void gelu_tanh_bwd(float *dinp, const float *dout, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float t = tanhf(DUET_GELU_SQRT_2_OVER_PI * (v + DUET_GELU_CUBIC * v * v * v));
        float du = DUET_GELU_SQRT_2_OVER_PI * (1.0f + 3.0f * DUET_GELU_CUBIC * v * v);
        dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
    }
}

static void silu_fwd(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * sigmoid1(x[i]);
}

static void silu_bwd(float *dinp, const float *dout, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoid1(x[i]);
        dinp[i] += dout[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

static void swiglu_fwd(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = gate[i] * sigmoid1(gate[i]) * up[i];
}

static void swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], s = sigmoid1(g);
        if (dgate) dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        if (dup) dup[i] += dout[i] * g * s;
    }
}

const duet_act_kernels duet_act_scalar = {gelu_tanh_fwd, gelu_tanh_bwd, silu_fwd,
                                          silu_bwd,      swiglu_fwd,    swiglu_bwd};

const duet_act_kernels *duet_act(void) {
#if defined(__x86_64__)
    const char *isa = duet_k.isa ? duet_k.isa : "scalar";
    if (strcmp(isa, "avx512") == 0) return &duet_act_avx512;
    if (strcmp(isa, "avx2") == 0) return &duet_act_avx2;
#endif
    return &duet_act_scalar;
}
