/*
 * quant_mv.h — one matrix-vector product split by the caller: the vector is
 * prepared once (quantized to the weight type's dot type, plus the Q4_0
 * offset terms), then any thread computes any rows with duet_qmv_row. Used
 * by the transformer's single-token decode (src/models/tf_decode.c), which
 * runs a whole token inside one parallel region and hands rows of several
 * matrices to its threads itself.
 *
 * duet_quant_matmul's matvec (N == 1, quantized weights) is duet_qmv_prepare
 * and duet_qmv_rows over chunks of rows, so it and the decode give the same
 * bits. duet_qmv_rows runs a chunk of rows in one call where the set has a
 * rows kernel (f32 / f16: four rows at a time; with VNNI Q8_0, Q4_0, Q4_K,
 * Q6_K: kernels of their own, row after row): for the quantized types a
 * row's bits do not depend on which rows share its call, and equal
 * duet_qmv_row's (the one-row dot) to rounding. Private to src/kernels and
 * src/models.
 */
#ifndef DUET_KERNELS_QUANT_MV_H
#define DUET_KERNELS_QUANT_MV_H

#include "kernels/quant.h"

struct duet_qmv;

/* y[r] = row r of W . the prepared vector, for r0 <= r < r1, several rows
 * per call (quant_mv_avx512.c). */
typedef void (*duet_qmv_rows_fn)(const struct duet_qmv *mv, const void *W, int64_t r0,
                                 int64_t r1, float *y);
#if defined(__x86_64__)
void duet_qmv_rows_f32_avx512(const struct duet_qmv *mv, const void *W, int64_t r0, int64_t r1,
                              float *y);
void duet_qmv_rows_f16_avx512(const struct duet_qmv *mv, const void *W, int64_t r0, int64_t r1,
                              float *y);
void duet_qmv_rows_q4_0_vnni(const struct duet_qmv *mv, const void *W, int64_t r0, int64_t r1,
                             float *y);
void duet_qmv_rows_q8_0_vnni(const struct duet_qmv *mv, const void *W, int64_t r0, int64_t r1,
                             float *y);
void duet_qmv_rows_q4_k_vnni(const struct duet_qmv *mv, const void *W, int64_t r0, int64_t r1,
                             float *y);
void duet_qmv_rows_q6_k_vnni(const struct duet_qmv *mv, const void *W, int64_t r0, int64_t r1,
                             float *y);
void duet_qmv_prep_q8_k_pairs(const uint8_t *x, int64_t K, uint8_t *xk);
void duet_qmv_prep_q4_0_groups(const uint8_t *x, int64_t K, const float *xd, const float *xs,
                               uint8_t *out);
/* Q4_0 x Q8_0 with prepared activations (duet_qdot_q4_0_prep_fn), VNNI. */
float duet_q4_0_prep_vnni(int64_t n, const void *w, const void *x, const float *xd,
                          const float *xs);
#endif

typedef struct duet_qmv {
    duet_qmv_rows_fn rows;          /* a multi-row kernel for this type, or NULL */
    duet_qdot_fn dot;               /* NULL when prep is used */
    duet_qdot_q4_0_prep_fn prep;    /* Q4_0 with the prepared offset terms */
    const uint8_t *x;               /* the vector in the dot type (or f32) */
    const float *xd, *xs;           /* prep only: per-block scale and offset term */
                                    /* (Q8_0 rows: xd and xc = -128 * sum of codes) */
    const int32_t *xc;
    const uint8_t *xk;              /* Q4_K rows: the Q8_K codes in pair order; */
                                    /* Q4_0 rows: 320-byte records per 8 blocks */
    int64_t K, wrb;                 /* columns; bytes per weight row */
} duet_qmv;

/* Bytes of scratch duet_qmv_prepare needs for weights of type t, K columns. */
int64_t duet_qmv_scratch_bytes(duet_qtype t, int64_t K);

/* Prepares x [K] for weights of type t (K a multiple of t's block size,
 * checked by the caller). scratch: duet_qmv_scratch_bytes(t, K) bytes, kept
 * alive while the rows are computed (an f32 type needs none and reads x). */
void duet_qmv_prepare(duet_qmv *mv, duet_qtype t, int64_t K, const float *x, void *scratch);

/* Row r of W (rows of mv->wrb bytes) times the prepared vector. */
static inline float duet_qmv_row(const duet_qmv *mv, const void *W, int64_t r) {
    const uint8_t *w = (const uint8_t *)W + r * mv->wrb;
    return mv->prep ? mv->prep(mv->K, w, mv->x, mv->xd, mv->xs) : mv->dot(mv->K, w, mv->x);
}

/* Rows r0..r1-1: the multi-row kernel where there is one (equal to
 * duet_qmv_row to rounding, not bit for bit; Q4_0: the same bits; f32 /
 * f16 rows in groups of four sum in another order than a lone row), else
 * one dot per row. */
static inline void duet_qmv_rows(const duet_qmv *mv, const void *W, int64_t r0, int64_t r1,
                                 float *y) {
    if (mv->rows) {
        mv->rows(mv, W, r0, r1, y);
        return;
    }
    for (int64_t r = r0; r < r1; r++) y[r] = duet_qmv_row(mv, W, r);
}

#endif
