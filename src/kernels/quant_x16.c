/*
 * quant_x16.c — the 16-row layout of Q4_0 / Q8_0 / Q4_K / Q5_K / Q6_K weights (quant_x16.h):
 * repacking and its inverse, a row's dequantization, the activations'
 * preparation, and the products (decode matvec and prompt GEMM) over the
 * VNNI kernels of quant_x16_avx512.c. Plain C; the repacking moves whole
 * 4-byte words, so duet_x16_unpack gives back the file's bytes.
 */
#include "kernels/quant_x16.h"

#include "core/internal.h"
#include "kernels/kernels.h"
#include "kernels/quant_mv.h"

#include <omp.h>
#include <string.h>

static int64_t rec_bytes(duet_qtype t) {
    switch (t) {
    case DUET_QTYPE_Q4_0: return X16_Q4_0_REC;
    case DUET_QTYPE_Q8_0: return X16_Q8_0_REC;
    case DUET_QTYPE_Q4_K: return X16_Q4_K_REC;
    case DUET_QTYPE_Q5_K: return X16_Q5_K_REC;
    case DUET_QTYPE_Q6_K: return X16_Q6_K_REC;
    default: return 0;
    }
}

int duet_x16_ok(duet_qtype t, int64_t M, int64_t K) {
#if defined(__x86_64__)
    if (!duet_k.quant) duet_init();
    if (duet_k.quant != &duet_quant_kernels_avx512_vnni) return 0;
    const int64_t bs = duet_qtype_block_size(t);
    return rec_bytes(t) > 0 && M > 0 && M % X16_ROWS == 0 && K > 0 && K % bs == 0;
#else
    (void)t, (void)M, (void)K;
    return 0;
#endif
}

int64_t duet_x16_bytes(duet_qtype t, int64_t M, int64_t K) {
    return M / X16_ROWS * (K / duet_qtype_block_size(t)) * rec_bytes(t);
}

/* ---- one record: 16 file blocks (row r's at blk + r * wrb) <-> a record ---- */

/* Q4_0 and Q8_0: d, then the codes in nc chunks of 4-byte words (4: Q4_0's
 * 16 bytes of nibbles, 8: Q8_0's 32 codes). */
static void pack_b32(const uint8_t *blk, int64_t wrb, uint8_t *o, int nc) {
    for (int r = 0; r < 16; r++) {
        const uint8_t *b = blk + r * wrb;
        memcpy(o + 2 * r, b, 2);
        for (int c = 0; c < nc; c++) memcpy(o + 32 + 64 * c + 4 * r, b + 2 + 4 * c, 4);
    }
}
static void unpack_b32(const uint8_t *o, uint8_t *blk, int64_t wrb, int nc) {
    for (int r = 0; r < 16; r++) {
        uint8_t *b = blk + r * wrb;
        memcpy(b, o + 2 * r, 2);
        for (int c = 0; c < nc; c++) memcpy(b + 2 + 4 * c, o + 32 + 64 * c + 4 * r, 4);
    }
}
static void pack_q4_0(const uint8_t *blk, int64_t wrb, uint8_t *o) { pack_b32(blk, wrb, o, 4); }
static void pack_q8_0(const uint8_t *blk, int64_t wrb, uint8_t *o) { pack_b32(blk, wrb, o, 8); }
static void unpack_q4_0(const uint8_t *o, uint8_t *blk, int64_t wrb) { unpack_b32(o, blk, wrb, 4); }
static void unpack_q8_0(const uint8_t *o, uint8_t *blk, int64_t wrb) { unpack_b32(o, blk, wrb, 8); }

/* Q4_K and Q5_K: d, dmin, the unpacked scales and mins, (Q5_K: qh,) qs. */
static void pack_k45(const uint8_t *blk, int64_t wrb, uint8_t *o, int q5) {
    const int qs = q5 ? Q5_K_QS : Q4_K_QS, oq = q5 ? 832 : 320;
    for (int r = 0; r < 16; r++) {
        const uint8_t *b = blk + r * wrb;
        uint8_t sc[8], m[8];
        memcpy(o + 2 * r, b, 2);
        memcpy(o + 32 + 2 * r, b + 2, 2);
        q_k_scales(b + Q4_K_SCALES, sc, m);
        for (int j = 0; j < 8; j++) {
            o[64 + 16 * j + r] = sc[j];
            o[192 + 32 * (j / 2) + 2 * r + (j & 1)] = m[j];
        }
        if (q5)
            for (int w = 0; w < 8; w++) memcpy(o + 320 + 64 * w + 4 * r, b + Q5_K_QH + 4 * w, 4);
        for (int w = 0; w < 32; w++) memcpy(o + oq + 64 * w + 4 * r, b + qs + 4 * w, 4);
    }
}
static void unpack_k45(const uint8_t *o, uint8_t *blk, int64_t wrb, int q5) {
    const int qs = q5 ? Q5_K_QS : Q4_K_QS, oq = q5 ? 832 : 320;
    for (int r = 0; r < 16; r++) {
        uint8_t *b = blk + r * wrb, sc[8], m[8], *s = b + Q4_K_SCALES;
        memcpy(b, o + 2 * r, 2);
        memcpy(b + 2, o + 32 + 2 * r, 2);
        for (int j = 0; j < 8; j++) {
            sc[j] = o[64 + 16 * j + r];
            m[j] = o[192 + 32 * (j / 2) + 2 * r + (j & 1)];
        }
        /* q_k_scales backwards: every one of the 96 bits has one place */
        for (int j = 0; j < 4; j++) {
            s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
            s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
            s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
        }
        if (q5)
            for (int w = 0; w < 8; w++) memcpy(b + Q5_K_QH + 4 * w, o + 320 + 64 * w + 4 * r, 4);
        for (int w = 0; w < 32; w++) memcpy(b + qs + 4 * w, o + oq + 64 * w + 4 * r, 4);
    }
}
static void pack_q4_k(const uint8_t *blk, int64_t wrb, uint8_t *o) { pack_k45(blk, wrb, o, 0); }
static void pack_q5_k(const uint8_t *blk, int64_t wrb, uint8_t *o) { pack_k45(blk, wrb, o, 1); }
static void unpack_q4_k(const uint8_t *o, uint8_t *blk, int64_t wrb) { unpack_k45(o, blk, wrb, 0); }
static void unpack_q5_k(const uint8_t *o, uint8_t *blk, int64_t wrb) { unpack_k45(o, blk, wrb, 1); }

/* Where Q6_K's ql chunk k (h = k / 16, sa = k / 8 % 2, cc = k / 4 % 2) and
 * qh chunk k (h = k / 8, cc = k / 4 % 2) go: piece 2h + cc (quant_x16.h). */
static int q6_k_ql_at(int k) {
    return 288 + 768 * (2 * (k / 16) + k / 4 % 2) + 256 * (1 + k / 8 % 2) + 64 * (k % 4);
}
static int q6_k_qh_at(int k) { return 288 + 768 * (2 * (k / 8) + k / 4 % 2) + 64 * (k % 4); }

static void pack_q6_k(const uint8_t *blk, int64_t wrb, uint8_t *o) {
    for (int r = 0; r < 16; r++) {
        const uint8_t *b = blk + r * wrb;
        memcpy(o + 2 * r, b + Q6_K_D, 2);
        for (int j = 0; j < 16; j++) o[32 + 16 * j + r] = b[Q6_K_SCALES + j];
        for (int k = 0; k < 32; k++) memcpy(o + q6_k_ql_at(k) + 4 * r, b + Q6_K_QL + 4 * k, 4);
        for (int k = 0; k < 16; k++) memcpy(o + q6_k_qh_at(k) + 4 * r, b + Q6_K_QH + 4 * k, 4);
    }
}
static void unpack_q6_k(const uint8_t *o, uint8_t *blk, int64_t wrb) {
    for (int r = 0; r < 16; r++) {
        uint8_t *b = blk + r * wrb;
        memcpy(b + Q6_K_D, o + 2 * r, 2);
        for (int j = 0; j < 16; j++) b[Q6_K_SCALES + j] = o[32 + 16 * j + r];
        for (int k = 0; k < 32; k++) memcpy(b + Q6_K_QL + 4 * k, o + q6_k_ql_at(k) + 4 * r, 4);
        for (int k = 0; k < 16; k++) memcpy(b + Q6_K_QH + 4 * k, o + q6_k_qh_at(k) + 4 * r, 4);
    }
}

typedef void (*pack_fn)(const uint8_t *, int64_t, uint8_t *);
typedef void (*unpack_fn)(const uint8_t *, uint8_t *, int64_t);

static pack_fn pack_of(duet_qtype t) {
    switch (t) {
    case DUET_QTYPE_Q4_0: return pack_q4_0;
    case DUET_QTYPE_Q8_0: return pack_q8_0;
    case DUET_QTYPE_Q4_K: return pack_q4_k;
    case DUET_QTYPE_Q5_K: return pack_q5_k;
    default: return pack_q6_k;
    }
}
static unpack_fn unpack_of(duet_qtype t) {
    switch (t) {
    case DUET_QTYPE_Q4_0: return unpack_q4_0;
    case DUET_QTYPE_Q8_0: return unpack_q8_0;
    case DUET_QTYPE_Q4_K: return unpack_q4_k;
    case DUET_QTYPE_Q5_K: return unpack_q5_k;
    default: return unpack_q6_k;
    }
}

void duet_x16_pack(duet_qtype t, const void *W, int64_t M, int64_t K, void *out) {
    const pack_fn f = pack_of(t);
    const int64_t nb = K / duet_qtype_block_size(t), bb = duet_qtype_block_bytes(t);
    const int64_t wrb = nb * bb, rec = rec_bytes(t), ng = M / X16_ROWS;
#pragma omp parallel for schedule(dynamic, 4) if (ng * nb > 256)
    for (int64_t g = 0; g < ng; g++)
        for (int64_t b = 0; b < nb; b++)
            f((const uint8_t *)W + g * X16_ROWS * wrb + b * bb, wrb,
              (uint8_t *)out + (g * nb + b) * rec);
}

void duet_x16_unpack(duet_qtype t, const void *P, int64_t M, int64_t K, void *W) {
    const unpack_fn f = unpack_of(t);
    const int64_t nb = K / duet_qtype_block_size(t), bb = duet_qtype_block_bytes(t);
    const int64_t wrb = nb * bb, rec = rec_bytes(t), ng = M / X16_ROWS;
    for (int64_t g = 0; g < ng; g++)
        for (int64_t b = 0; b < nb; b++)
            f((const uint8_t *)P + (g * nb + b) * rec, (uint8_t *)W + g * X16_ROWS * wrb + b * bb,
              wrb);
}

void duet_x16_dequantize_row(duet_qtype t, const void *P, int64_t K, int64_t r, float *y) {
    const int64_t bs = duet_qtype_block_size(t), nb = K / bs, bb = duet_qtype_block_bytes(t);
    const int64_t rec = rec_bytes(t), g = r / X16_ROWS, rr = r % X16_ROWS;
    uint8_t tmp[X16_ROWS * Q6_K_BYTES];
    const unpack_fn f = unpack_of(t);
    for (int64_t b = 0; b < nb; b++) {
        f((const uint8_t *)P + (g * nb + b) * rec, tmp, bb);
        duet_dequantize_row(t, tmp + rr * bb, y + b * bs, bs);
    }
}

/* ---- activations ---- */

static int64_t up64(int64_t n) { return (n + 63) & ~(int64_t)63; }

int64_t duet_x16_act_bytes(duet_qtype t, int64_t K) {
    const duet_qtype dt = duet_qtype_dot_type(t);
    const int64_t nb = K / duet_qtype_block_size(t);
    const int64_t ni = dt == DUET_QTYPE_Q8_0 ? nb : t == DUET_QTYPE_Q6_K ? 16 * nb : 4 * nb;
    return up64(duet_qtype_row_bytes(dt, K)) + up64(nb * 4) + up64(ni * 4);
}

/* buf: 64-byte aligned, duet_x16_act_bytes(t, K) bytes. */
void duet_x16_act_prepare(duet_qtype t, int64_t K, const float *x, void *buf, x16_act *a) {
    const duet_qtype dt = duet_qtype_dot_type(t);
    const int64_t nb = K / duet_qtype_block_size(t);
    uint8_t *q = buf;
    float *xd = (float *)(void *)(q + up64(duet_qtype_row_bytes(dt, K)));
    int32_t *xi = (int32_t *)(void *)((uint8_t *)xd + up64(nb * 4));
    duet_quantize_row(dt, x, q, K);
    for (int64_t b = 0; b < nb; b++) {
        if (dt == DUET_QTYPE_Q8_0) { /* Q4_0 codes are q + 8, Q8_0's (after the XOR) q + 128 */
            const uint8_t *blk = q + b * Q8_0_BYTES;
            xd[b] = q_f16(blk);
            xi[b] = (t == DUET_QTYPE_Q4_0 ? -8 : -128) * q8_0_code_sum(blk);
            continue;
        }
        const uint8_t *blk = q + b * Q8_K_BYTES;
        int16_t bs[16];
        memcpy(bs, blk + Q8_K_BSUMS, sizeof bs);
        xd[b] = q_f32(blk);
        if (t != DUET_QTYPE_Q6_K) { /* Q4_K, Q5_K */
            for (int jj = 0; jj < 4; jj++) {
                const int lo = bs[4 * jj] + bs[4 * jj + 1], hi = bs[4 * jj + 2] + bs[4 * jj + 3];
                xi[4 * b + jj] = (int32_t)((uint32_t)(uint16_t)lo | ((uint32_t)(uint16_t)hi << 16));
            }
        } else {
            for (int j = 0; j < 16; j++) xi[16 * b + j] = -32 * bs[j];
        }
    }
    a->q = q;
    a->xd = xd;
    a->xi = xi;
}

/* ---- products ---- */

#if defined(__x86_64__)
typedef void (*gemv_fn)(const uint8_t *, int64_t, int64_t, const x16_act *, int, float *, int64_t);
static gemv_fn gemv_of(duet_qtype t) {
    switch (t) {
    case DUET_QTYPE_Q4_0: return duet_x16_gemv_q4_0;
    case DUET_QTYPE_Q8_0: return duet_x16_gemv_q8_0;
    case DUET_QTYPE_Q4_K: return duet_x16_gemv_q4_k;
    case DUET_QTYPE_Q5_K: return duet_x16_gemv_q5_k;
    default: return duet_x16_gemv_q6_k;
    }
}
#endif

int64_t duet_x16_scratch_bytes(duet_qtype t, int64_t K, int64_t N) {
    return N * duet_x16_act_bytes(t, K) + 64 + N * (int64_t)sizeof(x16_act);
}

duet_status duet_x16_matmul(duet_qtype t, const void *P, int64_t M, int64_t K, const float *X,
                            int64_t N, float *Y, void *scratch) {
    /* the shape only: weights repacked while the VNNI set was active stay
     * in this layout if another kernel set is forced later (tests do) */
    const int64_t bs = duet_qtype_block_size(t);
    if (rec_bytes(t) == 0 || M <= 0 || M % X16_ROWS || K <= 0 || K % bs || N < 0)
        return duet_set_error(DUET_ERR_ARG,
                              "x16 matmul: %s %lld x %lld is not a repacked shape",
                              duet_qtype_name(t), (long long)M, (long long)K);
#if defined(__x86_64__)
    if (N == 0) return DUET_OK;
    void *owned = NULL;
    if (!scratch) {
        scratch = owned = duet_alloc((size_t)duet_x16_scratch_bytes(t, K, N));
        if (!owned)
            return duet_set_error(DUET_ERR_NOMEM,
                                  "x16 matmul: out of memory for %lld "
                                  "bytes of quantized activations",
                                  (long long)duet_x16_scratch_bytes(t, K, N));
    }
    const int64_t ab = duet_x16_act_bytes(t, K), ng = M / X16_ROWS;
    const int64_t gb = K / duet_qtype_block_size(t) * rec_bytes(t); /* bytes a group */
    uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    x16_act *acts = (x16_act *)(void *)(base + N * ab);
#pragma omp parallel for schedule(static) if (N > 1 && N * K > 65536)
    for (int64_t n = 0; n < N; n++) duet_x16_act_prepare(t, K, X + n * K, base + n * ab, &acts[n]);
    const gemv_fn f = gemv_of(t);
    /* chunks of groups: ~128 KB of weights (one token) or one group per
     * task (a batch: the tokens' passes dominate), dynamic */
    const int64_t per = N == 1 ? DUET_MAX(1, DUET_MIN(ng, (int64_t)131072 / gb)) : 1;
    const int64_t nch = (ng + per - 1) / per;
    const int par = nch > 1 && duet_omp_enough(M * K * N);
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int64_t c = 0; c < nch; c++) {
        const int64_t g0 = c * per, g1 = DUET_MIN(ng, g0 + per);
        for (int64_t n = 0; n < N; n += 4)
            f((const uint8_t *)P + g0 * gb, g1 - g0, K, acts + n, (int)DUET_MIN(4, N - n),
              Y + n * M + g0 * X16_ROWS, M);
    }
    duet_free(owned);
    return DUET_OK;
#else
    (void)P, (void)X, (void)Y, (void)scratch;
    return DUET_ERR_UNSUPPORTED;
#endif
}

/* ---- the decode's caller-split matvec ---- */

#if defined(__x86_64__)
#define ROWS_X16(NAME, GEMV)                                                                \
    static void NAME(const duet_qmv *mv, const void *W, int64_t r0, int64_t r1, float *y) { \
        const x16_act a = {mv->x, mv->xd, mv->xc};                                          \
        const int64_t g0 = r0 / X16_ROWS, g1 = r1 / X16_ROWS;                               \
        GEMV((const uint8_t *)W + g0 * X16_ROWS * mv->wrb, g1 - g0, mv->K, &a, 1,           \
             y + g0 * X16_ROWS, 0);                                                         \
    }
ROWS_X16(rows_q4_0, duet_x16_gemv_q4_0)
ROWS_X16(rows_q8_0, duet_x16_gemv_q8_0)
ROWS_X16(rows_q4_k, duet_x16_gemv_q4_k)
ROWS_X16(rows_q5_k, duet_x16_gemv_q5_k)
ROWS_X16(rows_q6_k, duet_x16_gemv_q6_k)
#endif

int64_t duet_qmv_scratch_bytes_x16(duet_qtype t, int64_t K) {
    return duet_x16_act_bytes(t, K) + 64;
}

void duet_qmv_prepare_x16(duet_qmv *mv, duet_qtype t, int64_t K, const float *x, void *scratch) {
    memset(mv, 0, sizeof *mv);
    x16_act a;
    duet_x16_act_prepare(t, K, x, (void *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63), &a);
    mv->K = K;
    mv->wrb = K / duet_qtype_block_size(t) * rec_bytes(t) / X16_ROWS;
    mv->x = a.q;
    mv->xd = a.xd;
    mv->xc = a.xi;
#if defined(__x86_64__)
    mv->rows = t == DUET_QTYPE_Q4_0   ? rows_q4_0
               : t == DUET_QTYPE_Q8_0 ? rows_q8_0
               : t == DUET_QTYPE_Q4_K ? rows_q4_k
               : t == DUET_QTYPE_Q5_K ? rows_q5_k
                                      : rows_q6_k;
#endif
}
