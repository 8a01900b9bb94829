/*
 * gemm_blocked.h — the one cache-blocked SGEMM driver (GotoBLAS/BLIS loop
 * nest) that every kernel set shares, and the small "arch" description an ISA
 * file hands it: register tile, cache blocks, a microkernel and a packer.
 *
 * The driver (gemm_blocked.c) owns the loops, the threading, the packing
 * buffers, the alpha/beta rules and the matrix-vector shortcuts; an ISA file
 * (gemm_avx512.c, gemm_avx2.c, and the portable one in gemm_blocked.c) owns
 * only the inner loops. This header is private to src/kernels.
 *
 * Packed layouts (kc = depth of the current K block):
 *  - A: panels of up to mr rows of op(A); element (i, p) of a panel with w
 *    rows sits at p*w + i (so a panel of the last, shorter row group is
 *    stored with its own width w < mr, no padding).
 *  - B: panels of up to nr columns of op(B); element (p, j) sits at p*w + j
 *    with w the column count rounded up to a multiple of vl, zero-padded.
 */
#ifndef DUET_GEMM_BLOCKED_H
#define DUET_GEMM_BLOCKED_H

#include "kernels/kernels.h"

/* C[mr, nr] (row stride ldc) = alpha * a_panel · b_panel + beta * C, where the
 * panels are packed as above (a: kc x mr-wide, b: kc x round_up(nr, vl)).
 * beta == 0 must not read C (it may hold NaNs); beta == 1 adds. mr <= arch.mr,
 * nr <= arch.nr. */
typedef void (*duet_gemm_ukr_fn)(int64_t kc, const float *a, const float *b, float *C,
                                 int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta);

/* Packs a kc x width block into panels of `panel` columns: element (p, c) of
 * the source — src[p*ld + c] when contig, src[c*ld + p] otherwise — goes to
 * panel q = c / panel at dst + q*panel*kc + p*pw + c%panel, where the panel
 * holds w = min(panel, width - q*panel) columns padded with zeros to
 * pw = round_up(w, padq). */
typedef void (*duet_gemm_pack_fn)(float *dst, const float *src, int64_t ld, int contig,
                                  int64_t kc, int64_t width, int64_t panel, int64_t padq);

/* Unpacked dot-product tile for A B^T with few rows of A (inference):
 * C[i, j] = alpha * sum_p a[i*lda + p] * b[j*ldb + p] + beta * C[i, j] for
 * i < mr <= arch.dk_mr, j < nr <= arch.dk_nr (beta == 0: C not read). Both
 * operands are read in place, contiguous along p: no packing at all. */
typedef void (*duet_gemm_dotk_fn)(int64_t K, const float *a, int64_t lda, const float *b,
                                  int64_t ldb, float *C, int64_t ldc, int64_t mr, int64_t nr,
                                  float alpha, float beta);

typedef struct duet_gemm_arch {
    const char *name;
    int64_t mr, nr; /* register tile: mr rows of C by nr columns */
    int64_t vl;     /* B panels are padded to a multiple of vl columns */
    int64_t kc;     /* K block: an A panel (mr x kc) stays in L1 */
    int64_t mc;     /* M block: the packed A block (mc x kc) stays in L2/L3 */
    int64_t nc;     /* N block: the packed B block (kc x nc) stays in L2 */
    duet_gemm_ukr_fn ukr;
    duet_gemm_pack_fn pack;
    /* optional: the dot-product tile, used for op = A B^T when M <= dk_max_m
     * (packing B would cost as much as the product) */
    duet_gemm_dotk_fn dotk;
    int64_t dk_mr, dk_nr, dk_max_m;
    float (*dot)(const float *a, const float *b, int64_t n);
    void (*axpy)(float *y, float a, const float *x, int64_t n);
} duet_gemm_arch;

/* duet_sgemm's contract (include/duet.h), computed with `arch`'s inner loops
 * on duet_get_threads() threads (fewer for small products). Falls back to the
 * reference when a packing buffer cannot be allocated. */
void duet_gemm_blocked(const duet_gemm_arch *arch, int transA, int transB, int64_t M, int64_t N,
                       int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                       int64_t ldb, float beta, float *C, int64_t ldc);

/* For tests: 0 (default) lets the driver choose how threads share the work;
 * 1 forces the shared mode (all of op(A) packed up front when it fits),
 * 2 the shared mode block by block, 3 the private mode (threads split M).
 * Non-zero also turns off the back-off to one thread under load, so the
 * threaded paths run whatever else the machine is doing. */
extern int duet_gemm_mode_override;

/* The GEMM of each kernel set, all with duet_sgemm's contract: portable C
 * (compiler-vectorised, gemm_blocked.c), AVX2+FMA and AVX-512. */
void duet_sgemm_portable(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc);
#if defined(__x86_64__)
void duet_sgemm_avx2(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc);
void duet_sgemm_avx512(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc);
/* The AVX-512 set's register tile, blocks, microkernel and packer, for other
 * drivers that feed the same microkernel (the implicit-GEMM convolution in
 * conv_avx512.c). */
const duet_gemm_arch *duet_gemm_arch_avx512(void);
/* dot and axpy of the ISA sets (kernels_avx2.c, kernels_avx512.c), shared
 * with the GEMMs' matrix-vector paths. */
float duet_dot_avx2(const float *a, const float *b, int64_t n);
void duet_axpy_avx2(float *y, float a, const float *x, int64_t n);
float duet_dot_avx512(const float *a, const float *b, int64_t n);
void duet_axpy_avx512(float *y, float a, const float *x, int64_t n);
#endif

#endif
