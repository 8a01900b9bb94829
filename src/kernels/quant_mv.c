/*
 * quant_mv.c — the vector side of a caller-split matrix-vector product
 * (quant_mv.h): quantizing the activation row to the weights' dot type once,
 * and what the multi-row kernels take from it (Q4_0: the per-block float
 * scale and offset term; Q8_0: the scales and -128 x the code sums; Q4_K:
 * the Q8_K codes in the 512-bit kernel's order). duet_quant_matmul's matvec
 * prepares through here too, so both give the same bits.
 */
#include "kernels/quant_mv.h"

#include "core/internal.h"
#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

static const duet_quant_kernels *qk(void) {
    if (!duet_k.quant) duet_init();
    return duet_k.quant ? duet_k.quant : &duet_quant_kernels_scalar;
}

static inline uint8_t *align64(void *p) { return (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

int64_t duet_qmv_scratch_bytes(duet_qtype t, int64_t K) {
    const duet_qtype dt = duet_qtype_dot_type(t);
    if (dt == DUET_QTYPE_F32) return 0;
    const int64_t nb = K / QK;
    return duet_qtype_row_bytes(dt, K) + 64 + 2 * nb * (int64_t)sizeof(float) + 64 +
           (dt == DUET_QTYPE_Q8_K ? K + 64 : 0) + (t == DUET_QTYPE_Q4_0 ? 40 * nb + 64 : 0);
}

void duet_qmv_prepare(duet_qmv *mv, duet_qtype t, int64_t K, const float *x, void *scratch) {
    const duet_quant_kernels *k = qk();
    const duet_qtype dt = duet_qtype_dot_type(t);
    mv->K = K;
    mv->wrb = duet_qtype_row_bytes(t, K);
    mv->prep = t == DUET_QTYPE_Q4_0 ? k->q4_0_prep : NULL;
    mv->dot = mv->prep ? NULL : duet_quant_dot_fn(k, t);
    mv->xd = mv->xs = NULL;
    mv->xc = NULL;
    mv->xk = NULL;
    mv->rows = NULL;
#if defined(__x86_64__)
    /* DUET_QMV_ROWS=0: one dot per row (for comparisons). Every thread of
     * the decode prepares its own vector, so the first look is atomic. */
    static _Atomic int off_state = -1;
    int off = off_state;
    if (off < 0) {
        const char *e = getenv("DUET_QMV_ROWS");
        off_state = off = e && strcmp(e, "0") == 0;
    }
    if (!off && (k == &duet_quant_kernels_avx512 || k == &duet_quant_kernels_avx512_vnni)) {
        if (t == DUET_QTYPE_F32) mv->rows = duet_qmv_rows_f32_avx512;
        if (t == DUET_QTYPE_F16) mv->rows = duet_qmv_rows_f16_avx512;
        if (t == DUET_QTYPE_Q4_0 && k == &duet_quant_kernels_avx512_vnni)
            mv->rows = duet_qmv_rows_q4_0_vnni;
        if (t == DUET_QTYPE_Q8_0 && k == &duet_quant_kernels_avx512_vnni)
            mv->rows = duet_qmv_rows_q8_0_vnni;
        if (t == DUET_QTYPE_Q4_K && k == &duet_quant_kernels_avx512_vnni)
            mv->rows = duet_qmv_rows_q4_k_vnni;
        if (t == DUET_QTYPE_Q6_K && k == &duet_quant_kernels_avx512_vnni)
            mv->rows = duet_qmv_rows_q6_k_vnni;
    }
#endif
    if (dt == DUET_QTYPE_F32) {
        mv->x = (const uint8_t *)x;
        return;
    }
    uint8_t *q = align64(scratch);
    duet_quantize_row(dt, x, q, K);
    mv->x = q;
#if defined(__x86_64__)
    if (mv->rows == duet_qmv_rows_q4_k_vnni) { /* the codes in pair order (quant_mv_avx512.c) */
        uint8_t *xk = align64(q + duet_qtype_row_bytes(dt, K));
        duet_qmv_prep_q8_k_pairs(q, K, xk);
        mv->xk = xk;
        return;
    }
#endif
    const int64_t nb = K / QK;
    float *xd = (float *)align64(q + duet_qtype_row_bytes(dt, K)), *xs = xd + nb;
    if (t == DUET_QTYPE_Q8_0 && mv->rows) { /* scales and -128 * code sums (quant_mv_avx512.c) */
        int32_t *xc = (int32_t *)(void *)xs;
        for (int64_t j = 0; j < nb; j++) {
            const uint8_t *blk = q + j * Q8_0_BYTES;
            xd[j] = q_f16(blk);
            xc[j] = -128 * q8_0_code_sum(blk);
        }
        mv->xd = xd;
        mv->xc = xc;
        return;
    }
    if (!mv->prep) return;
    for (int64_t j = 0; j < nb; j++) {
        const uint8_t *blk = q + j * Q8_0_BYTES;
        xd[j] = q_f16(blk);
        xs[j] = xd[j] * (float)(8 * q8_0_code_sum(blk));
    }
    mv->xd = xd;
    mv->xs = xs;
#if defined(__x86_64__)
    if (mv->rows == duet_qmv_rows_q4_0_vnni) { /* pairs of blocks (quant_mv_avx512.c) */
        uint8_t *xg = align64(xs + nb);
        duet_qmv_prep_q4_0_groups(q, K, xd, xs, xg);
        mv->xk = xg;
    }
#endif
}
