/*
 * quant_x16.h — Q4_0, Q8_0, Q4_K, Q5_K and Q6_K weights repacked for the AVX-512 VNNI
 * kernels: 16 rows interleaved so that one 32-bit lane of a 512-bit
 * register belongs to one row. A vpdpbusd with 4 activation bytes
 * broadcast to all lanes then adds 4 products to each of the 16 rows' own
 * sums: no horizontal sum per block or row, no per-row scale gather, and
 * the block's f16 scales of the 16 rows are one 32-byte load. In the file
 * layouts a block is 18, 34, 144 or 210 bytes and a row's values meet only
 * at the end, so the row kernels (quant_mv_avx512.c) spent most of their
 * instructions on reductions and scale unpacking: on two cores they could
 * not stream Q4_0 / Q4_K / Q6_K faster than 46-59 GB/s, Q8_0 72-83
 * (bench_qmv).
 *
 * Which matrices: those of the five types whose row count is a multiple
 * of 16 (every matrix of the Llama / Qwen2 shapes), on CPUs with the VNNI
 * kernel set; the transformer repacks them once at load into memory of its
 * own (tf_repack), and a matrix is then only read in this layout.
 *
 * Layout. Rows go in groups of 16; a group's records follow each other
 * along K (a group is one contiguous stream), groups follow each other.
 * In record field names below, r is the row in the group (0..15) and
 * "row r's byte i" is byte i of that row's block in the file layout, so a
 * 4-byte word of a row's codes stays as it was (the transposition is of
 * whole words: duet_x16_unpack restores the file bytes exactly).
 *
 *   Q4_0, a record per 32 columns, 288 bytes (16 x 18: the same size):
 *     0    f16 d[16]
 *     32   4 chunks c of 64 bytes: word r = row r's code bytes 4c..4c+3
 *          (low nibbles: values 4c..4c+3; high: values 16+4c..16+4c+3)
 *   Q8_0, a record per 32 columns, 544 bytes (16 x 34: the same size):
 *     0    f16 d[16]
 *     32   8 chunks c of 64 bytes: word r = row r's codes 4c..4c+3
 *          (used as code + 128 through an XOR: vpdpbusd's unsigned side)
 *   Q4_K, a record per 256 columns, 2368 bytes (16 x 144 + 64):
 *     0    f16 d[16]       32  f16 dmin[16]
 *     64   u8 sc[8][16]    (sub-block j's 6-bit scale of row r at 64+16j+r)
 *     192  u8 m[4][16][2]  (the mins of sub-blocks 2jj, 2jj+1 of row r at
 *                           192 + 32jj + 2r: a 16-bit pair per 32-bit lane)
 *     320  4 pairs p x 8 chunks c of 64 bytes: word r = row r's qs bytes
 *          32p+4c..+3 (low nibbles: sub-block 2p, values 4c..4c+3; high:
 *          sub-block 2p+1)
 *     The scales and mins are unpacked from their 6-bit packing (64 bytes
 *     more a record, 2.8%): four instructions fewer per sub-block.
 *   Q5_K, a record per 256 columns, 2880 bytes (16 x 176 + 64):
 *     0-319 as Q4_K (d, dmin, sc, m)
 *     320  8 chunks c of 64 bytes: word r = row r's qh bytes 4c..4c+3 (bit j
 *          of a byte: the fifth bit of that value of sub-block j)
 *     832  qs as Q4_K's at 320
 *   Q6_K, a record per 256 columns, 3360 bytes (16 x 210: the same size):
 *     0    f16 d[16]
 *     32   i8 sc[16][16]   (sub-block j's scale of row r at 32+16j+r)
 *     288  4 pieces (h, cc) = (0,0) (0,1) (1,0) (1,1) of 768 bytes, in the
 *          order the kernel reads them (one sequential stream: with ql and
 *          qh as two regions, read back and forth, the kernel streamed
 *          from DRAM at 0.3-0.4 of the read rate), each:
 *            4 qh chunks c: word r = row r's qh bytes 4m..4m+3, m = 8h+4cc+c
 *            4 ql chunks c: word r = row r's ql bytes 4k..4k+3, k = 16h+4cc+c
 *            4 ql chunks c: the same for k = 16h+8+4cc+c
 *
 * Private to src/kernels, src/models and the tests.
 */
#ifndef DUET_KERNELS_QUANT_X16_H
#define DUET_KERNELS_QUANT_X16_H

#include "kernels/quant.h"

#define X16_ROWS 16
#define X16_Q4_0_REC 288
#define X16_Q8_0_REC 544
#define X16_Q4_K_REC 2368
#define X16_Q5_K_REC 2880
#define X16_Q6_K_REC 3360

struct duet_qmv;

/* 1 when a matrix of type t with M rows and K columns can be repacked and
 * multiplied in this layout on this CPU (the VNNI kernel set is active). */
int duet_x16_ok(duet_qtype t, int64_t M, int64_t K);

/* Bytes of the repacked matrix (t, M, K as duet_x16_ok accepted). */
int64_t duet_x16_bytes(duet_qtype t, int64_t M, int64_t K);

/* Repacks W (file layout, rows of duet_qtype_row_bytes(t, K) bytes) into
 * out (duet_x16_bytes); threads over the groups. */
void duet_x16_pack(duet_qtype t, const void *W, int64_t M, int64_t K, void *out);

/* The inverse: the file layout's bytes exactly (tests, lookups). */
void duet_x16_unpack(duet_qtype t, const void *P, int64_t M, int64_t K, void *W);

/* Row r of the repacked matrix as floats (the file row's dequantization). */
void duet_x16_dequantize_row(duet_qtype t, const void *P, int64_t K, int64_t r, float *y);

/* Y[N, M] = X[N, K] W^T with W repacked: N = 1 as the decode's matvec
 * (the same kernels and bits as duet_qmv_prepare_x16 + duet_qmv_rows),
 * larger N in tiles of up to 4 tokens per pass over a group of rows held
 * in L1. scratch: NULL or duet_x16_scratch_bytes(t, K, N). */
duet_status duet_x16_matmul(duet_qtype t, const void *P, int64_t M, int64_t K, const float *X,
                            int64_t N, float *Y, void *scratch);
int64_t duet_x16_scratch_bytes(duet_qtype t, int64_t K, int64_t N);

/* The decode's caller-split matvec over repacked rows (quant_mv.h): like
 * duet_qmv_prepare, with mv->rows the repacked kernel, mv->wrb the bytes
 * per row (a group's bytes / 16) and r0, r1 multiples of 16 (or M). */
int64_t duet_qmv_scratch_bytes_x16(duet_qtype t, int64_t K);
void duet_qmv_prepare_x16(struct duet_qmv *mv, duet_qtype t, int64_t K, const float *x,
                          void *scratch);

/* ---- the kernels (quant_x16_avx512.c) ----
 * One token's prepared activations: the quantized row q (Q8_0 for Q4_0,
 * Q8_K for the K types), its per-block scales xd and per-block integer
 * terms xi: Q4_0 -8 and Q8_0 -128 x the block's code sum (the start of
 * each block's integer dot: the weight codes' offset); Q4_K and Q5_K per
 * super-block 4 words of the 16-bit pair sums of sub-blocks (2jj,
 * 2jj + 1); Q6_K per super-block 16 words -32 x the 16-value sums. */
typedef struct x16_act {
    const uint8_t *q;
    const float *xd;
    const int32_t *xi;
} x16_act;

/* Bytes of one token's prepared activations and the preparation itself. */
int64_t duet_x16_act_bytes(duet_qtype t, int64_t K);
void duet_x16_act_prepare(duet_qtype t, int64_t K, const float *x, void *buf, x16_act *a);

#if defined(__x86_64__)
/* ng groups of 16 rows from P (the first group's first record) times T
 * tokens (1..4): y[t * ldy + 16 g + r]. */
void duet_x16_gemv_q4_0(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, int T,
                        float *y, int64_t ldy);
void duet_x16_gemv_q8_0(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, int T,
                        float *y, int64_t ldy);
void duet_x16_gemv_q4_k(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, int T,
                        float *y, int64_t ldy);
void duet_x16_gemv_q5_k(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, int T,
                        float *y, int64_t ldy);
void duet_x16_gemv_q6_k(const uint8_t *P, int64_t ng, int64_t K, const x16_act *a, int T,
                        float *y, int64_t ldy);
#endif

#endif
