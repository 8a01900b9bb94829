/*
 * tensor.c — dtype names and sizes, tensor shape helpers, heap parameters,
 * and f16/bf16 conversions (round to nearest even, NaN preserved).
 */
#include "core/internal.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[DUET_DTYPE_COUNT] = {
    [DUET_DTYPE_F32] = {"f32", 4}, [DUET_DTYPE_F16] = {"f16", 2}, [DUET_DTYPE_BF16] = {"bf16", 2},
    [DUET_DTYPE_I32] = {"i32", 4}, [DUET_DTYPE_I64] = {"i64", 8}, [DUET_DTYPE_U8] = {"u8", 1},
    [DUET_DTYPE_I8] = {"i8", 1},   [DUET_DTYPE_F64] = {"f64", 8},
};

const char *duet_dtype_name(duet_dtype t) {
    if ((int)t < 0 || t >= DUET_DTYPE_COUNT) return "?";
    return dtypes[t].name;
}

int duet_dtype_from_name(const char *name) {
    for (int i = 0; i < DUET_DTYPE_COUNT; i++)
        if (strcmp(dtypes[i].name, name) == 0) return i;
    return -1;
}

size_t duet_dtype_size(duet_dtype t) {
    if ((int)t < 0 || t >= DUET_DTYPE_COUNT) return 0;
    return dtypes[t].size;
}

void duet_tensor_init(duet_tensor *t, duet_dtype dtype, int ndim, const int64_t *shape,
                      void *data) {
    DUET_ASSERT(ndim >= 0 && ndim <= DUET_MAX_DIMS);
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        DUET_ASSERT(shape[i] >= 0);
        t->shape[i] = shape[i];
        t->stride[i] = s;
        s *= shape[i];
    }
    t->data = data;
}

int64_t duet_tensor_numel(const duet_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t duet_tensor_nbytes(const duet_tensor *t) {
    return (size_t)duet_tensor_numel(t) * duet_dtype_size(t->dtype);
}

int duet_tensor_is_contiguous(const duet_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

char *duet_tensor_describe(const duet_tensor *t, char *buf, size_t size) {
    int n = snprintf(buf, size, "%s[", duet_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && n > 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (n > 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, "]");
    return buf;
}

duet_tensor *duet_param_new(duet_dtype dtype, int ndim, const int64_t *shape, int with_grad) {
    duet_tensor *t = duet_alloc(sizeof *t);
    if (!t) return NULL;
    duet_tensor_init(t, dtype, ndim, shape, NULL);
    size_t nb = duet_tensor_nbytes(t);
    t->data = duet_calloc(1, nb ? nb : 1);
    if (!t->data) {
        duet_free(t);
        return NULL;
    }
    if (with_grad) {
        DUET_ASSERT(dtype == DUET_DTYPE_F32);
        t->grad = duet_calloc((size_t)duet_tensor_numel(t) + 1, sizeof(float));
        if (!t->grad) {
            duet_free(t->data);
            duet_free(t);
            return NULL;
        }
        t->requires_grad = 1;
    }
    return t;
}

void duet_param_free(duet_tensor *t) {
    if (!t) return;
    duet_free(t->data);
    duet_free(t->grad);
    duet_free(t);
}

void duet_params_zero_grad(duet_tensor **params, int n) {
    for (int i = 0; i < n; i++)
        if (params[i]->grad)
            memset(params[i]->grad, 0, (size_t)duet_tensor_numel(params[i]) * sizeof(float));
}

/* ---- half precision ---------------------------------------------------- */

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float duet_bf16_to_f32_1(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t duet_f32_to_bf16_1(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float duet_f16_to_f32_1(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return u2f(sign);
        /* subnormal: man * 2^-24 */
        float f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (man << 13));
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t duet_f32_to_f16_1(float f) {
    uint32_t u = f2u(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff)); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* result is subnormal (or zero): value / 2^-24, rounded to nearest even */
        float v = u2f(a) * 16777216.0f; /* exact: scaling by a power of two */
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1))) m++;
        return (uint16_t)(sign | m);
    }
    /* normal: rebias exponent, round mantissa from 23 to 10 bits */
    uint32_t r = a - 0x38000000u; /* exponent 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1);
    return (uint16_t)(sign | (r >> 13));
}

void duet_f32_to_f16(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = duet_f32_to_f16_1(src[i]);
}
void duet_f16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = duet_f16_to_f32_1(src[i]);
}
void duet_f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = duet_f32_to_bf16_1(src[i]);
}
void duet_bf16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = duet_bf16_to_f32_1(src[i]);
}
