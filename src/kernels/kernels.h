/*
 * kernels.h — the dispatch table of hot loops. Each entry has a scalar
 * reference (kernels_scalar.c / gemm_ref.c) and may have AVX2 / AVX-512
 * versions (files *_avx2.c, *_avx512.c, compiled with ISA flags). duet_init()
 * fills duet_k from CPUID; duet_kernel_force() switches it for tests.
 *
 * Row kernels are single-threaded over the rows they are given; callers split
 * rows across threads.
 */
#ifndef DUET_KERNELS_H
#define DUET_KERNELS_H

#include "duet.h"

typedef void (*duet_sgemm_fn)(int transA, int transB, int64_t M, int64_t N, int64_t K,
                              float alpha, const float *A, int64_t lda, const float *B,
                              int64_t ldb, float beta, float *C, int64_t ldc);

typedef struct duet_kernels {
    const char *isa;
    /* threaded GEMM (row-major, see duet_sgemm) */
    duet_sgemm_fn sgemm;
    /* out[r,:] = softmax(inp[r,:]) for N rows of C */
    void (*softmax_rows)(float *out, const float *inp, int64_t N, int64_t C);
    /* LayerNorm of N rows; mean/rstd may be NULL; weight/bias may be NULL */
    void (*layernorm_rows)(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int64_t N, int64_t C,
                           float eps);
    /* RMSNorm of N rows; rstd may be NULL */
    void (*rmsnorm_rows)(float *out, float *rstd, const float *inp, const float *weight,
                         int64_t N, int64_t C, float eps);
    float (*dot)(const float *a, const float *b, int64_t n);
    /* y += a * x */
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    /* One query row of attention over S rows of keys k and values v (row
     * stride ld, HS wide): att[s] = softmax_s(scale * q . k_s), out[0..HS) =
     * sum_s att[s] v_s. The scalar set's entry composes the installed set's
     * dot, softmax_rows and axpy (duet_attend_row_generic). */
    void (*attend_row)(float *out, float *att, const float *q, const float *k, const float *v,
                       int64_t ld, int64_t S, int64_t HS, float scale);
    /* the same over an f16 KV cache (HS <= 512): equal, bit for bit, to
     * attend_row on the rows converted to f32 */
    void (*attend_row_f16)(float *out, float *att, const float *q, const uint16_t *k,
                           const uint16_t *v, int64_t ld, int64_t S, int64_t HS, float scale);
    /* quantized dot products (kernels/quant.h), picked with the set by install() */
    const struct duet_quant_kernels *quant;
} duet_kernels;

/* quant.c: the quantized-kernel table of a set ("scalar", "avx2", "avx512")
 * on a CPU with DUET_CPU_* features. */
const struct duet_quant_kernels *duet_quant_kernels_select(const char *isa, unsigned features);

extern duet_kernels duet_k;

/* attend_row from duet_k's dot, softmax_rows and axpy (kernels_scalar.c),
 * and its f16-cache twin (each row converted, then the same calls). */
void duet_attend_row_generic(float *out, float *att, const float *q, const float *k,
                             const float *v, int64_t ld, int64_t S, int64_t HS, float scale);
void duet_attend_row_f16_generic(float *out, float *att, const float *q, const uint16_t *k,
                                 const uint16_t *v, int64_t ld, int64_t S, int64_t HS,
                                 float scale);

/* Kernel sets; a NULL entry in an ISA set falls back to the scalar one. */
extern const duet_kernels duet_kernels_scalar;
#if defined(__x86_64__)
extern const duet_kernels duet_kernels_avx2;
extern const duet_kernels duet_kernels_avx512;
#endif

#endif
