/*
 * gemm_ref.c — the scalar reference SGEMM (row-major, optional transposes),
 * and the public duet_sgemm entry that calls the kernel picked at start-up.
 */
#include "core/internal.h"
#include "kernels/kernels.h"

void duet_sgemm_ref(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                    float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < K; p++) {
                float a = transA ? A[p * lda + i] : A[i * lda + p];
                float b = transB ? B[j * ldb + p] : B[p * ldb + j];
                acc += (double)a * (double)b;
            }
            float c = alpha * (float)acc;
            C[i * ldc + j] = beta == 0.0f ? c : c + beta * C[i * ldc + j];
        }
    }
}

void duet_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    duet_k.sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
