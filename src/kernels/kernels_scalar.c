/*
 * kernels_scalar.c — the plain-C reference of every kernel in kernels.h.
 * Optimized versions are held to these by tests/test_kernels.c.
 */
#include "core/internal.h"
#include "kernels/gemm_blocked.h"
#include "kernels/kernels.h"

#include <math.h>

static void softmax_rows_scalar(float *out, const float *inp, int64_t N, int64_t C) {
    for (int64_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float *y = out + r * C;
        float mx = -INFINITY;
        for (int64_t i = 0; i < C; i++) mx = x[i] > mx ? x[i] : mx;
        double sum = 0.0;
        for (int64_t i = 0; i < C; i++) {
            y[i] = expf(x[i] - mx);
            sum += (double)y[i];
        }
        float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < C; i++) y[i] *= inv;
    }
}

static void layernorm_rows_scalar(float *out, float *mean, float *rstd, const float *inp,
                                  const float *weight, const float *bias, int64_t N, int64_t C,
                                  float eps) {
    for (int64_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float *y = out + r * C;
        double m = 0.0;
        for (int64_t i = 0; i < C; i++) m += (double)x[i];
        m /= (double)C;
        double v = 0.0;
        for (int64_t i = 0; i < C; i++) v += ((double)x[i] - m) * ((double)x[i] - m);
        v /= (double)C;
        float s = (float)(1.0 / sqrt(v + (double)eps));
        float mf = (float)m;
        for (int64_t i = 0; i < C; i++) {
            float n = (x[i] - mf) * s;
            y[i] = n * (weight ? weight[i] : 1.0f) + (bias ? bias[i] : 0.0f);
        }
        if (mean) mean[r] = mf;
        if (rstd) rstd[r] = s;
    }
}

static void rmsnorm_rows_scalar(float *out, float *rstd, const float *inp, const float *weight,
                                int64_t N, int64_t C, float eps) {
    for (int64_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float *y = out + r * C;
        double ss = 0.0;
        for (int64_t i = 0; i < C; i++) ss += (double)x[i] * (double)x[i];
        float s = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        for (int64_t i = 0; i < C; i++) y[i] = x[i] * s * (weight ? weight[i] : 1.0f);
        if (rstd) rstd[r] = s;
    }
}

static float dot_scalar(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy_scalar(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void duet_attend_row_generic(float *out, float *att, const float *q, const float *k,
                             const float *v, int64_t ld, int64_t S, int64_t HS, float scale) {
    for (int64_t s = 0; s < S; s++) att[s] = scale * duet_k.dot(q, k + s * ld, HS);
    if (S > 0) duet_k.softmax_rows(att, att, 1, S);
    for (int64_t i = 0; i < HS; i++) out[i] = 0.0f;
    for (int64_t s = 0; s < S; s++) duet_k.axpy(out, att[s], v + s * ld, HS);
}

void duet_attend_row_f16_generic(float *out, float *att, const float *q, const uint16_t *k,
                                 const uint16_t *v, int64_t ld, int64_t S, int64_t HS,
                                 float scale) {
    float row[512];
    DUET_ASSERT(HS <= 512);
    for (int64_t s = 0; s < S; s++) {
        duet_f16_to_f32(row, k + s * ld, HS);
        att[s] = scale * duet_k.dot(q, row, HS);
    }
    if (S > 0) duet_k.softmax_rows(att, att, 1, S);
    for (int64_t i = 0; i < HS; i++) out[i] = 0.0f;
    for (int64_t s = 0; s < S; s++) {
        duet_f16_to_f32(row, v + s * ld, HS);
        duet_k.axpy(out, att[s], row, HS);
    }
}

const duet_kernels duet_kernels_scalar = {
    .isa = "scalar",
    /* blocked plain C; duet_sgemm_ref stays the triple-loop reference */
    .sgemm = duet_sgemm_portable,
    .softmax_rows = softmax_rows_scalar,
    .layernorm_rows = layernorm_rows_scalar,
    .rmsnorm_rows = rmsnorm_rows_scalar,
    .dot = dot_scalar,
    .axpy = axpy_scalar,
    .attend_row = duet_attend_row_generic,
    .attend_row_f16 = duet_attend_row_f16_generic,
};
