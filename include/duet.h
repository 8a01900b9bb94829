/*
 * duet.h — the one public header of duet: storytellers (autoregressive language
 * models) and painters (denoising diffusion models) on one small C engine.
 *
 * A worked example — two-layer MLP trained on one batch with the tape:
 *
 *     duet_init();                                   // CPU features, threads
 *     duet_graph *g = duet_graph_new(1 << 20);       // per-step scratch arena
 *     duet_tensor *w1 = duet_param_new(DUET_DTYPE_F32, 2, (int64_t[]){64, 16});
 *     ... fill w1->data (duet_rng_normal) and the others ...
 *     for (int step = 0; step < 100; step++) {
 *         duet_graph_reset(g);
 *         duet_tensor *x = duet_graph_input(g, xdata, 2, (int64_t[]){B, 16});
 *         duet_tensor *h = duet_nn_gelu(g, duet_nn_linear(g, x, w1, b1), 0);
 *         duet_tensor *loss = duet_nn_mse(g, duet_nn_linear(g, h, w2, b2), y);
 *         duet_params_zero_grad(params, nparams);
 *         if (duet_graph_backward(g, loss) != DUET_OK) fail(duet_last_error());
 *         duet_adamw_step(&opt, params, nparams, lr);
 *     }
 *
 * Conventions
 *  - Functions that can fail return duet_status; the message is in
 *    duet_last_error() (thread-local). Constructors return NULL on failure.
 *  - Programmer errors (shape or dtype mismatch) trip DUET_ASSERT-style checks
 *    that stay on in release builds and print file, line and expression.
 *  - Raw ops (duet_<op>_forward / duet_<op>_backward) work on contiguous f32
 *    arrays, llm.c style. Backward functions ACCUMULATE (+=) into every
 *    gradient they are given; pass NULL for a gradient you do not need.
 *  - Size letters: B, T, C, V, NH, HS for sequences; N, C, H, W for images.
 *  - Sizes are int64_t. Ownership is stated above each function.
 */
#ifndef DUET_H
#define DUET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DUET_VERSION "0.1.0"

/* ======================================================================== */
/* Status and errors                                                         */
/* ======================================================================== */

typedef enum duet_status {
    DUET_OK = 0,
    DUET_ERR_NOMEM,        /* an allocation failed */
    DUET_ERR_IO,           /* open/read/write/rename failed */
    DUET_ERR_FORMAT,       /* a file is malformed (message names file and field) */
    DUET_ERR_ARG,          /* a bad argument or flag value from the user */
    DUET_ERR_SHAPE,        /* shapes do not fit together */
    DUET_ERR_UNSUPPORTED,  /* valid but not implemented (dtype, arch, ...) */
    DUET_ERR_INTERNAL,
    DUET_STATUS_COUNT
} duet_status;

/* A static string describing a status ("out of memory", ...). */
const char *duet_strerror(duet_status s);
/* The message of the last error on this thread ("" when none). */
const char *duet_last_error(void);
/* Sets the thread's last error (printf-style) and returns s. */
duet_status duet_set_error(duet_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void duet_clear_error(void);

/* ======================================================================== */
/* Library set-up, CPU features, threads                                     */
/* ======================================================================== */

enum {
    DUET_CPU_SSE42       = 1u << 0,
    DUET_CPU_AVX         = 1u << 1,
    DUET_CPU_AVX2        = 1u << 2,
    DUET_CPU_FMA         = 1u << 3,
    DUET_CPU_F16C        = 1u << 4,
    DUET_CPU_AVX512F     = 1u << 5,
    DUET_CPU_AVX512BW    = 1u << 6,
    DUET_CPU_AVX512VL    = 1u << 7,
    DUET_CPU_AVX512DQ    = 1u << 8,
    DUET_CPU_AVX512_VNNI = 1u << 9,
    DUET_CPU_AVX512_BF16 = 1u << 10,
    DUET_CPU_AMX_TILE    = 1u << 11,
    DUET_CPU_AMX_BF16    = 1u << 12,
    DUET_CPU_AMX_INT8    = 1u << 13,
    DUET_CPU_AVX_VNNI    = 1u << 14,
};

/* Idempotent, thread-safe. Reads DUET_THREADS and picks kernels by CPU features. */
void duet_init(void);
/* Call first thing in main(argv). OpenMP (libgomp) reads its waiting policy
 * from the environment when it is loaded, before main; its default (threads
 * spin ~300k iterations at every barrier) costs 3x and more when another
 * process holds a core, and OMP_WAIT_POLICY=PASSIVE (sleep at once) pays a
 * futex wake-up, 30-40 us here, on every parallel region: a sampled token
 * has ~30 of them. So unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set, this
 * re-executes the program once (/proc/self/exe) with GOMP_SPINCOUNT=3000
 * (spin ~50 us, then sleep). Returns only when it did not re-execute. */
void duet_prefer_short_spin(char **argv);
/* Bitmask of DUET_CPU_* the CPU and OS support (OS-enabled AVX/AVX-512 state). */
unsigned duet_cpu_features(void);
/* Writes e.g. "avx2 fma f16c avx512f ..." into buf; returns buf. */
char *duet_cpu_features_string(char *buf, size_t size);
/* The name of the kernel set in use: "scalar", "avx2" or "avx512". */
const char *duet_kernel_isa(void);
/* Forces a kernel set ("scalar", "avx2", "avx512") — for tests and benchmarks.
 * Returns DUET_ERR_UNSUPPORTED when the CPU cannot run it. */
duet_status duet_kernel_force(const char *isa);
/* Threads used by kernels. Default: DUET_THREADS, else the number of cores. */
void duet_set_threads(int n);
int duet_get_threads(void);
/* Compiler that built the library, e.g. "gcc 12.2.0". */
const char *duet_compiler(void);

/* Memory read bandwidth, the bound `duet bench` sets decode against. A test
 * buffer of `bytes` (rounded down to 2 MiB chunks, at least one) in
 * huge-page memory, written once on `threads` threads; NULL with
 * DUET_ERR_NOMEM when there is no memory for it. */
typedef struct duet_membw duet_membw;
duet_membw *duet_membw_new(size_t bytes, int threads);
/* GB/s: two reads of the whole buffer on `threads` threads, 2 MiB chunks
 * handed out dynamically, with the widest loads the CPU has; the rate over
 * both reads together. */
double duet_membw_read(duet_membw *b, int threads);
void duet_membw_free(duet_membw *b); /* NULL ok */

/* ======================================================================== */
/* Memory: one allocation hook, arenas                                       */
/* ======================================================================== */

/* Every allocation duet makes goes through this hook. alloc returns memory
 * aligned to `align` (a power of two >= sizeof(void*)) or NULL; free accepts NULL. */
typedef struct duet_allocator {
    void *(*alloc)(void *ud, size_t size, size_t align);
    void (*free)(void *ud, void *ptr);
    void *ud;
} duet_allocator;

/* Installs a (not thread-safe to swap while duet is running) allocator;
 * NULL restores the default (posix_memalign/free). */
void duet_set_allocator(const duet_allocator *a);
/* 64-byte aligned allocation through the hook; sets DUET_ERR_NOMEM on failure. */
void *duet_alloc(size_t size);
void *duet_calloc(size_t n, size_t size);
void duet_free(void *ptr);

/* A bump allocator. Allocations live until duet_arena_reset/free. When a block
 * fills, a new one is chained; reset merges them into one block big enough for
 * the peak, so a training loop allocates nothing after its first step. */
typedef struct duet_arena duet_arena;
duet_arena *duet_arena_new(size_t initial_bytes);
void duet_arena_free(duet_arena *a);
/* Returns 64-byte aligned memory, or NULL (DUET_ERR_NOMEM). Not zeroed. */
void *duet_arena_alloc(duet_arena *a, size_t size);
void duet_arena_reset(duet_arena *a);
size_t duet_arena_used(const duet_arena *a);
size_t duet_arena_peak(const duet_arena *a);

/* ======================================================================== */
/* Tensors                                                                   */
/* ======================================================================== */

/* Only ever appended to. */
typedef enum duet_dtype {
    DUET_DTYPE_F32 = 0,
    DUET_DTYPE_F16,
    DUET_DTYPE_BF16,
    DUET_DTYPE_I32,
    DUET_DTYPE_I64,
    DUET_DTYPE_U8,
    DUET_DTYPE_I8,
    DUET_DTYPE_F64,
    DUET_DTYPE_COUNT
} duet_dtype;

const char *duet_dtype_name(duet_dtype t);            /* "f32", "f16", ... */
int duet_dtype_from_name(const char *name);          /* -1 when unknown */
size_t duet_dtype_size(duet_dtype t);                /* bytes per element */

#define DUET_MAX_DIMS 4

/* A plain, documented struct. shape[0] is the outermost dimension (PyTorch
 * order); stride[] is in elements. `data` is owned by whoever allocated it
 * (an arena, an mmap, the caller) — the tensor never frees it. `grad` is f32,
 * same shape, contiguous, or NULL; requires_grad marks tensors the tape must
 * differentiate through (parameters, and anything computed from them). */
typedef struct duet_tensor {
    duet_dtype dtype;
    int ndim;
    int64_t shape[DUET_MAX_DIMS];
    int64_t stride[DUET_MAX_DIMS];
    void *data;
    float *grad;
    int requires_grad;
    char name[64];
} duet_tensor;

/* Fills shape and contiguous strides (no allocation). */
void duet_tensor_init(duet_tensor *t, duet_dtype dtype, int ndim, const int64_t *shape, void *data);
int64_t duet_tensor_numel(const duet_tensor *t);
size_t duet_tensor_nbytes(const duet_tensor *t);
int duet_tensor_is_contiguous(const duet_tensor *t);
/* Writes "f32[2,3,4]" into buf; returns buf. */
char *duet_tensor_describe(const duet_tensor *t, char *buf, size_t size);

/* A heap tensor with its own zeroed data (and grad when with_grad); for
 * parameters and tests. Free with duet_param_free. NULL on failure. */
duet_tensor *duet_param_new(duet_dtype dtype, int ndim, const int64_t *shape, int with_grad);
void duet_param_free(duet_tensor *t);
void duet_params_zero_grad(duet_tensor **params, int n);

/* Conversions (round to nearest even). n elements. */
void duet_f32_to_f16(uint16_t *dst, const float *src, int64_t n);
void duet_f16_to_f32(float *dst, const uint16_t *src, int64_t n);
void duet_f32_to_bf16(uint16_t *dst, const float *src, int64_t n);
void duet_bf16_to_f32(float *dst, const uint16_t *src, int64_t n);
float duet_f16_to_f32_1(uint16_t h);
uint16_t duet_f32_to_f16_1(float f);
float duet_bf16_to_f32_1(uint16_t h);
uint16_t duet_f32_to_bf16_1(float f);

/* ======================================================================== */
/* Random numbers: counter-based (Philox4x32-10)                              */
/* ======================================================================== */

/* Value i of a stream depends only on (seed, offset + i): the same numbers
 * whatever the thread count or the order the work is split in. */
typedef struct duet_rng {
    uint64_t seed;
    uint64_t offset;  /* advanced by every draw */
} duet_rng;

void duet_rng_init(duet_rng *r, uint64_t seed);
/* Four 32-bit words for counter `ctr` under key `seed` (Philox4x32-10). */
void duet_philox(uint64_t seed, uint64_t ctr, uint32_t out[4]);
/* Uniform in [0, 1) with 24 random bits. */
void duet_rng_uniform(duet_rng *r, float *out, int64_t n);
/* Normal(mean, std) via Box–Muller. */
void duet_rng_normal(duet_rng *r, float *out, int64_t n, float mean, float std);
/* One uniform draw in [0,1) (consumes one counter). */
float duet_rng_next(duet_rng *r);

/* ======================================================================== */
/* Kernels                                                                   */
/* ======================================================================== */

/* Row-major SGEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
 * op(A) = A (lda >= K) or A^T (A is K x M, lda >= M); likewise B.
 * beta == 0 ignores what C held (NaNs included). Threaded. */
void duet_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                float *C, int64_t ldc);
/* The scalar reference every optimized GEMM is held to. Single-threaded. */
void duet_sgemm_ref(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                    float *C, int64_t ldc);

/* ======================================================================== */
/* Raw ops: forward and backward (contiguous f32)                            */
/* ======================================================================== */

/* linear: out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias[OC] (bias may be NULL). */
void duet_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                         int64_t N, int64_t C, int64_t OC);
void duet_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int64_t N, int64_t C, int64_t OC);

/* batched matmul: out[b] = op(a[b]) @ op(b[b]); op(a) is [M,K], op(b) is [K,N]. */
void duet_bmm_forward(float *out, const float *a, const float *b, int64_t batch, int64_t M,
                      int64_t N, int64_t K, int transA, int transB);
void duet_bmm_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       int64_t batch, int64_t M, int64_t N, int64_t K, int transA, int transB);

/* elementwise, n elements */
void duet_add_forward(float *out, const float *a, const float *b, int64_t n);
void duet_add_backward(float *da, float *db, const float *dout, int64_t n);
void duet_mul_forward(float *out, const float *a, const float *b, int64_t n);
void duet_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       int64_t n);
void duet_scale_forward(float *out, const float *a, float s, int64_t n);
void duet_scale_backward(float *da, const float *dout, float s, int64_t n);
/* out[n,c,i] = x[n,c,i] + b[n,c]  (per-channel add, e.g. a timestep embedding) */
void duet_add_channel_forward(float *out, const float *x, const float *b, int64_t N, int64_t C,
                              int64_t HW);
void duet_add_channel_backward(float *dx, float *db, const float *dout, int64_t N, int64_t C,
                               int64_t HW);

/* embedding: out[i,:] = table[ids[i],:]; ids are checked by the caller. */
void duet_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N,
                            int64_t C);
void duet_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int64_t N,
                             int64_t C);

/* LayerNorm over the last dim C; saves mean[N], rstd[N]. weight/bias may be NULL. */
void duet_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int64_t N, int64_t C,
                            float eps);
void duet_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int64_t N, int64_t C);
/* RMSNorm: out = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps). */
void duet_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                          int64_t N, int64_t C, float eps);
void duet_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                           const float *weight, const float *rstd, int64_t N, int64_t C);

/* activations, n elements */
void duet_gelu_forward(float *out, const float *inp, int64_t n, int tanh_approx);
void duet_gelu_backward(float *dinp, const float *dout, const float *inp, int64_t n,
                        int tanh_approx);
void duet_silu_forward(float *out, const float *inp, int64_t n);
void duet_silu_backward(float *dinp, const float *dout, const float *inp, int64_t n);
/* swiglu: out = silu(gate) * up */
void duet_swiglu_forward(float *out, const float *gate, const float *up, int64_t n);
void duet_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, int64_t n);

/* softmax over the last dim C */
void duet_softmax_forward(float *out, const float *inp, int64_t N, int64_t C);
void duet_softmax_backward(float *dinp, const float *dout, const float *out, int64_t N,
                           int64_t C);

/* Cross-entropy of logits[N,V] against targets[N]. Positions whose target is
 * ignore_index are skipped; weights[N] (may be NULL = all 1) weigh positions.
 * loss = sum_i w_i * CE_i / sum_i w_i over kept positions (PyTorch's mean).
 * Saves probs[N,V] (softmax) for backward. Returns the loss (0 if none kept). */
float duet_cross_entropy_forward(float *probs, const float *logits, const int32_t *targets,
                                 const float *weights, int64_t N, int64_t V,
                                 int32_t ignore_index);
/* dlogits += dloss * d(loss)/d(logits) */
void duet_cross_entropy_backward(float *dlogits, float dloss, const float *probs,
                                 const int32_t *targets, const float *weights, int64_t N,
                                 int64_t V, int32_t ignore_index);

/* Scaled dot-product attention.
 *   q [B, T, NH, HS], k and v [B, S, NKV, HS] (NH % NKV == 0: grouped-query),
 *   out [B, T, NH, HS], att [B, NH, T, S] saved probabilities.
 * causal: query t (absolute position S - T + t) sees keys 0..S-T+t.
 * scale: usually 1/sqrt(HS). */
void duet_attention_forward(float *out, float *att, const float *q, const float *k,
                            const float *v, int64_t B, int64_t T, int64_t S, int64_t NH,
                            int64_t NKV, int64_t HS, int causal, float scale);
void duet_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                             const float *att, const float *q, const float *k, const float *v,
                             int64_t B, int64_t T, int64_t S, int64_t NH, int64_t NKV,
                             int64_t HS, int causal, float scale);

/* RoPE on x [B, T, NH, HS] at positions pos0..pos0+T-1, frequencies
 * theta^(-2i/HS). neox = 0 rotates adjacent pairs (2i, 2i+1) — Meta/GGUF
 * llama order; neox = 1 rotates (i, i + HS/2) — Hugging Face / NeoX order. */
void duet_rope_forward(float *out, const float *inp, int64_t B, int64_t T, int64_t NH,
                       int64_t HS, int64_t pos0, float theta, int neox);
void duet_rope_backward(float *dinp, const float *dout, int64_t B, int64_t T, int64_t NH,
                        int64_t HS, int64_t pos0, float theta, int neox);

/* Inverted dropout with probability p; mask[n] (0 or 1/(1-p)) is saved.
 * Element i's draw is philox(seed, offset + i): thread-count independent. */
void duet_dropout_forward(float *out, float *mask, const float *inp, int64_t n, float p,
                          uint64_t seed, uint64_t offset);
void duet_dropout_backward(float *dinp, const float *dout, const float *mask, int64_t n);

/* conv2d: inp [N, C, H, W], weight [OC, C, K, K], bias [OC] (may be NULL),
 * out [N, OC, OH, OW] with OH = (H + 2*pad - K)/stride + 1.
 * scratch: at least duet_conv2d_scratch_floats(...) floats (im2col buffer). */
int64_t duet_conv2d_scratch_floats(int64_t C, int64_t H, int64_t W, int64_t K, int64_t stride,
                                   int64_t pad);
void duet_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                         float *scratch, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC,
                         int64_t K, int64_t stride, int64_t pad);
void duet_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, float *scratch, int64_t N,
                          int64_t C, int64_t H, int64_t W, int64_t OC, int64_t K,
                          int64_t stride, int64_t pad);

/* GroupNorm over G groups of C/G channels × HW; saves mean[N*G], rstd[N*G]. */
void duet_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int64_t N, int64_t C,
                            int64_t HW, int64_t G, float eps);
void duet_groupnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int64_t N, int64_t C, int64_t HW, int64_t G);

/* nearest-neighbour upsample x2: [N,C,H,W] -> [N,C,2H,2W] */
void duet_upsample2x_forward(float *out, const float *inp, int64_t N, int64_t C, int64_t H,
                             int64_t W);
void duet_upsample2x_backward(float *dinp, const float *dout, int64_t N, int64_t C, int64_t H,
                              int64_t W);
/* 2x2 average pool, stride 2: [N,C,H,W] -> [N,C,H/2,W/2] (H, W even) */
void duet_avgpool2x_forward(float *out, const float *inp, int64_t N, int64_t C, int64_t H,
                            int64_t W);
void duet_avgpool2x_backward(float *dinp, const float *dout, int64_t N, int64_t C, int64_t H,
                             int64_t W);

/* Sinusoidal timestep embedding, out[N, dim]: first half cos(t*f_i), second
 * half sin(t*f_i), f_i = max_period^(-i/(dim/2)) (the DDPM/diffusers layout
 * with flip_sin_to_cos=True, downscale_freq_shift=0). Backward is w.r.t. t. */
void duet_timestep_embedding_forward(float *out, const float *t, int64_t N, int64_t dim,
                                     float max_period);
void duet_timestep_embedding_backward(float *dt, const float *dout, const float *t, int64_t N,
                                      int64_t dim, float max_period);

/* mean squared error over n elements: returns mean((a-b)^2) */
float duet_mse_forward(const float *a, const float *b, int64_t n);
void duet_mse_backward(float *da, float *db, float dloss, const float *a, const float *b,
                       int64_t n);

/* concat along dim 1: a [N, CA, I], b [N, CB, I] -> out [N, CA+CB, I] */
void duet_concat_forward(float *out, const float *a, const float *b, int64_t N, int64_t CA,
                         int64_t CB, int64_t I);
void duet_concat_backward(float *da, float *db, const float *dout, int64_t N, int64_t CA,
                          int64_t CB, int64_t I);
/* transpose the last two dims: inp [N, A, Bd] -> out [N, Bd, A] */
void duet_transpose_forward(float *out, const float *inp, int64_t N, int64_t A, int64_t Bd);
void duet_transpose_backward(float *dinp, const float *dout, int64_t N, int64_t A, int64_t Bd);

/* ======================================================================== */
/* The tape: record a forward, replay backwards in reverse                   */
/* ======================================================================== */

/* Op ids: named, only ever appended to. */
typedef enum duet_op {
    DUET_OP_NONE = 0,
    DUET_OP_LINEAR,
    DUET_OP_BMM,
    DUET_OP_ADD,
    DUET_OP_MUL,
    DUET_OP_SCALE,
    DUET_OP_ADD_CHANNEL,
    DUET_OP_EMBEDDING,
    DUET_OP_LAYERNORM,
    DUET_OP_RMSNORM,
    DUET_OP_GELU,
    DUET_OP_SILU,
    DUET_OP_SWIGLU,
    DUET_OP_SOFTMAX,
    DUET_OP_CROSS_ENTROPY,
    DUET_OP_ATTENTION,
    DUET_OP_ROPE,
    DUET_OP_DROPOUT,
    DUET_OP_CONV2D,
    DUET_OP_GROUPNORM,
    DUET_OP_UPSAMPLE2X,
    DUET_OP_AVGPOOL2X,
    DUET_OP_TIMESTEP_EMB,
    DUET_OP_MSE,
    DUET_OP_CONCAT,
    DUET_OP_TRANSPOSE,
    DUET_OP_RESHAPE,
    DUET_OP_GROUPNORM_SILU,   /* silu(groupnorm(x)), optionally then dropout (UNet) */
    DUET_OP_CONV2D_CHANBIAS,  /* conv2d plus a per-image channel bias (UNet) */
    DUET_OP_COUNT
} duet_op;

const char *duet_op_name(duet_op op);

typedef struct duet_graph duet_graph;
struct duet_record;
typedef void (*duet_backward_fn)(duet_graph *g, const struct duet_record *r);

/* One record: the op, its output, up to 4 inputs, buffers forward saved,
 * integer and float arguments, and the op's backward (which sits beside its
 * forward in the op's source file). A plain struct, readable in a debugger. */
typedef struct duet_record {
    duet_op op;
    duet_backward_fn backward;
    duet_tensor *out;
    duet_tensor *in[4];
    void *saved[3];
    int64_t iarg[8];
    float farg[4];
} duet_record;

/* A graph owns a scratch arena (activations, saved buffers, activation grads)
 * and the list of records. Everything it hands out lives until the next
 * duet_graph_reset. Errors are sticky: an op that cannot allocate sets the
 * graph's status and returns NULL, and ops given a NULL input return NULL, so
 * a whole forward can be checked once at the end (duet_graph_status). */

duet_graph *duet_graph_new(size_t scratch_bytes);
void duet_graph_free(duet_graph *g);
void duet_graph_reset(duet_graph *g);
duet_status duet_graph_status(const duet_graph *g);
/* 1 (default): record ops for backward. 0: inference, nothing recorded. */
void duet_graph_set_training(duet_graph *g, int on);
int duet_graph_training(const duet_graph *g);
/* Scratch memory from the graph's arena (64-byte aligned), NULL + status on failure. */
void *duet_graph_alloc(duet_graph *g, size_t bytes);
/* A new f32 (or i32) tensor in scratch, uninitialised. */
duet_tensor *duet_graph_tensor(duet_graph *g, duet_dtype dtype, int ndim, const int64_t *shape);
/* Wraps caller-owned data (not copied, not differentiated). */
duet_tensor *duet_graph_input(duet_graph *g, void *data, duet_dtype dtype, int ndim,
                              const int64_t *shape);
/* Appends a record for `out` when training and any input requires grad
 * (used by op wrappers); returns NULL when nothing needs recording. Sets
 * out->requires_grad accordingly. */
duet_record *duet_graph_record(duet_graph *g, duet_op op, duet_backward_fn backward,
                               duet_tensor *out, duet_tensor *in0, duet_tensor *in1,
                               duet_tensor *in2, duet_tensor *in3);
int duet_graph_nrecords(const duet_graph *g);
const duet_record *duet_graph_records(const duet_graph *g);
size_t duet_graph_peak_bytes(const duet_graph *g);
/* Reverse-mode pass from a scalar `loss` (its grad is seeded with 1).
 * Parameter grads (tensor->grad set by the caller) ACCUMULATE: zero them first. */
duet_status duet_graph_backward(duet_graph *g, duet_tensor *loss);

/* Tape ops. Inputs must be contiguous f32 unless stated; outputs live in the
 * graph. Each returns NULL on error (see duet_graph above). */
duet_tensor *duet_nn_linear(duet_graph *g, duet_tensor *x, duet_tensor *w, duet_tensor *b);
duet_tensor *duet_nn_bmm(duet_graph *g, duet_tensor *a, duet_tensor *b, int transA, int transB);
duet_tensor *duet_nn_add(duet_graph *g, duet_tensor *a, duet_tensor *b);
duet_tensor *duet_nn_mul(duet_graph *g, duet_tensor *a, duet_tensor *b);
duet_tensor *duet_nn_scale(duet_graph *g, duet_tensor *a, float s);
/* x [N, C, ...] + b [N, C] */
duet_tensor *duet_nn_add_channel(duet_graph *g, duet_tensor *x, duet_tensor *b);
/* ids: i32 tensor of any shape; out shape = ids shape + [C]. Ids are checked. */
duet_tensor *duet_nn_embedding(duet_graph *g, duet_tensor *ids, duet_tensor *table);
duet_tensor *duet_nn_layernorm(duet_graph *g, duet_tensor *x, duet_tensor *w, duet_tensor *b,
                               float eps);
duet_tensor *duet_nn_rmsnorm(duet_graph *g, duet_tensor *x, duet_tensor *w, float eps);
duet_tensor *duet_nn_gelu(duet_graph *g, duet_tensor *x, int tanh_approx);
duet_tensor *duet_nn_silu(duet_graph *g, duet_tensor *x);
duet_tensor *duet_nn_swiglu(duet_graph *g, duet_tensor *gate, duet_tensor *up);
duet_tensor *duet_nn_softmax(duet_graph *g, duet_tensor *x);
/* logits [..., V], targets i32 [...], weights f32 [...] or NULL; returns a scalar. */
duet_tensor *duet_nn_cross_entropy(duet_graph *g, duet_tensor *logits, duet_tensor *targets,
                                   duet_tensor *weights, int32_t ignore_index);
/* q [B,T,NH,HS], k, v [B,S,NKV,HS] */
duet_tensor *duet_nn_attention(duet_graph *g, duet_tensor *q, duet_tensor *k, duet_tensor *v,
                               int causal, float scale);
duet_tensor *duet_nn_rope(duet_graph *g, duet_tensor *x, int64_t pos0, float theta, int neox);
/* Training only: identity when p == 0 or the graph is not training. */
duet_tensor *duet_nn_dropout(duet_graph *g, duet_tensor *x, float p, duet_rng *rng);
duet_tensor *duet_nn_conv2d(duet_graph *g, duet_tensor *x, duet_tensor *w, duet_tensor *b,
                            int64_t stride, int64_t pad);
duet_tensor *duet_nn_groupnorm(duet_graph *g, duet_tensor *x, duet_tensor *w, duet_tensor *b,
                               int64_t groups, float eps);
duet_tensor *duet_nn_upsample2x(duet_graph *g, duet_tensor *x);
duet_tensor *duet_nn_avgpool2x(duet_graph *g, duet_tensor *x);
/* t: f32 [N] */
duet_tensor *duet_nn_timestep_embedding(duet_graph *g, duet_tensor *t, int64_t dim,
                                        float max_period);
duet_tensor *duet_nn_mse(duet_graph *g, duet_tensor *a, duet_tensor *b);
/* along dim 1 */
duet_tensor *duet_nn_concat(duet_graph *g, duet_tensor *a, duet_tensor *b);
/* swap the last two dims */
duet_tensor *duet_nn_transpose(duet_graph *g, duet_tensor *x);
/* same data, new shape (numel must match) */
duet_tensor *duet_nn_reshape(duet_graph *g, duet_tensor *x, int ndim, const int64_t *shape);

/* ======================================================================== */
/* Training primitives                                                       */
/* ======================================================================== */

typedef struct duet_adamw {
    float beta1, beta2, eps, weight_decay;
    int64_t step;        /* number of steps taken (bias correction uses step+1) */
    int nparams;
    float **m, **v;      /* one moment buffer per parameter (owned) */
    unsigned char *decay; /* per-parameter weight-decay mask, 1 = decay (owned) */
} duet_adamw;

/* Defaults: beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0.01. */
duet_status duet_adamw_init(duet_adamw *opt, duet_tensor **params, int nparams, float beta1,
                            float beta2, float eps, float weight_decay);
void duet_adamw_free(duet_adamw *opt);
/* One AdamW step (decoupled decay, bias correction) with learning rate lr,
 * the arithmetic of torch.optim.AdamW(foreach=False). Parameters with
 * requires_grad == 0 or no grad are skipped; parameters whose decay mask is 0
 * (duet_adamw_set_decay) get no weight decay. */
void duet_adamw_step(duet_adamw *opt, duet_tensor **params, int nparams, float lr);
/* Per-parameter weight-decay mask (1 = decay, default all 1). */
void duet_adamw_set_decay(duet_adamw *opt, int index, int decay);
/* Scales all grads so their global L2 norm is at most max_norm (if > 0);
 * returns the norm before clipping. */
float duet_clip_grad_norm(duet_tensor **params, int nparams, float max_norm);
/* Multiplies every grad by s (gradient accumulation: 1/accum_steps). */
void duet_scale_grads(duet_tensor **params, int nparams, float s);

typedef enum duet_lr_schedule {
    DUET_LR_CONSTANT = 0,
    DUET_LR_WARMUP_COSINE,
    DUET_LR_SCHEDULE_COUNT
} duet_lr_schedule;
/* lr at `step` (0-based). Warmup (step < warmup): max_lr * (step+1) / warmup.
 * Then DUET_LR_CONSTANT stays at max_lr; DUET_LR_WARMUP_COSINE is
 * min_lr + 0.5 * (max_lr - min_lr) * (1 + cos(pi * progress)) with
 * progress = (step - warmup) / (total_steps - warmup) clamped to [0, 1]. */
float duet_lr_at(duet_lr_schedule s, int64_t step, int64_t warmup, int64_t total_steps,
                 float max_lr, float min_lr);
const char *duet_lr_schedule_name(duet_lr_schedule s);
int duet_lr_schedule_from_name(const char *name);

/* EMA of weights: ema = decay * ema + (1 - decay) * param. */
void duet_ema_update(float *ema, const float *param, int64_t n, float decay);

/* ======================================================================== */
/* safetensors                                                               */
/* ======================================================================== */

/* A safetensors file, memory-mapped. Tensor data is zero-copy into the map;
 * it stays valid until duet_st_close. */
typedef struct duet_st duet_st;

/* Validates the header fully (length, JSON, dtypes, shapes, offsets in range,
 * no overlaps, no gaps). Errors name the file and the field. */
duet_st *duet_st_open(const char *path);
void duet_st_close(duet_st *st);
int duet_st_count(const duet_st *st);
/* i-th tensor in file order: name, dtype, shape, data pointer (into the map). */
const char *duet_st_name(const duet_st *st, int i);
/* Fills a tensor view (data points into the map); -1 when the name is absent. */
int duet_st_find(const duet_st *st, const char *name);
duet_status duet_st_tensor(const duet_st *st, int i, duet_tensor *out);
/* Value of a __metadata__ key, or NULL. */
const char *duet_st_meta(const duet_st *st, const char *key);
int duet_st_meta_count(const duet_st *st);
const char *duet_st_meta_key(const duet_st *st, int i);
/* Copies tensor `name` into dst (n elements of f32), converting from
 * f32/f16/bf16; checks shape numel == n. */
duet_status duet_st_read_f32(const duet_st *st, const char *name, float *dst, int64_t n);

/* Writer: collect tensors and metadata, then write atomically (temporary
 * file in the same folder, fsync, rename, fsync of the folder). Data is not
 * copied: the pointers must stay valid until duet_st_writer_write returns. */
typedef struct duet_st_writer duet_st_writer;
duet_st_writer *duet_st_writer_new(void);
void duet_st_writer_free(duet_st_writer *w);
duet_status duet_st_writer_add(duet_st_writer *w, const char *name, duet_dtype dtype, int ndim,
                               const int64_t *shape, const void *data);
duet_status duet_st_writer_meta(duet_st_writer *w, const char *key, const char *value);
duet_status duet_st_writer_write(duet_st_writer *w, const char *path);

/* Atomic whole-file write (tmp + fsync + rename + dir fsync). */
duet_status duet_write_file_atomic(const char *path, const void *data, size_t size);

/* ======================================================================== */
/* JSON (small DOM parser used by formats; see src/formats/json.h)           */
/* ======================================================================== */
/* @section json — the safetensors helper owns this section */

/* ======================================================================== */
/* Tokenizer                                                                 */
/* ======================================================================== */
/* @section tokenizer — the tokenizer helper owns this section */

/* Byte-level BPE (GPT-2 style), trained here or loaded from a Hugging Face
 * tokenizer.json (ByteLevel pre-tokenizer + BPE model).
 *
 *  - Pre-tokenization follows GPT-2's pattern
 *      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *    with byte classes, so it is defined for any bytes: letters = ASCII
 *    letters and every byte >= 0x80, numbers = ASCII digits, whitespace =
 *    space \t \n \v \f \r, everything else (NUL included) is "other". On ASCII
 *    text this equals Hugging Face's ByteLevel pre-tokenizer; non-ASCII
 *    punctuation, digits and spaces count as letters here.
 *  - Merges never cross pre-token boundaries.
 *  - Ids of a trained or byte tokenizer: 0..255 are the bytes in byte order
 *    (id b = byte b), then one id per merge in merge order, then
 *    <|endoftext|> (BOS and EOS) and <|pad|>. Loaded files keep their ids.
 *  - tokenizer.json vocab strings use Hugging Face's bytes_to_unicode
 *    alphabet, so the files load in `tokenizers` and vice versa.
 *  - Encoding then decoding gives back exactly the input bytes, for any
 *    bytes (invalid UTF-8 and NUL included).
 * The same handle also holds the tokenizers of real models, built from
 * arrays (duet_tokenizer_new_spm / _new_gpt2 below); the notes above are
 * about duet's own kind (DUET_TOKENIZER_BYTE_BPE).
 * A tokenizer is immutable after construction: encode/decode from several
 * threads at once is safe. */
typedef struct duet_tokenizer duet_tokenizer;

/* Flags for duet_tokenizer_encode. */
enum {
    DUET_TOK_ADD_BOS = 1u << 0,  /* prepend the BOS id (<|endoftext|>) */
    DUET_TOK_ADD_EOS = 1u << 1,  /* append the EOS id (<|endoftext|>) */
    DUET_TOK_SPECIALS = 1u << 2, /* text "<|endoftext|>" etc. becomes the special id;
                                  * without it, special text is encoded as plain bytes */
};

/* The pure byte tokenizer: 256 byte ids + <|endoftext|> (256) + <|pad|> (257). */
duet_tokenizer *duet_tokenizer_new_bytes(void);

typedef struct duet_tokenizer_train_params {
    int64_t min_frequency; /* stop when the best pair occurs fewer times (default 2) */
    /* Called every few merges and at the end (may be NULL). */
    void (*progress)(void *ud, int64_t merges_done, int64_t merges_total);
    void *progress_ud;
} duet_tokenizer_train_params;
void duet_tokenizer_train_params_default(duet_tokenizer_train_params *p);

/* Trains on text[0..len) until the vocabulary has vocab_size ids in all
 * (256 bytes + merges + 2 specials), or no pair is left that occurs
 * min_frequency times. Each step merges the pair of adjacent ids with the
 * highest count over all pre-tokens (weighted by how often each pre-token
 * occurs); ties go to the smallest (left id, right id). In a pre-token the
 * occurrences are merged left to right without overlap. params may be NULL
 * (defaults). vocab_size < 258 or an empty text is DUET_ERR_ARG. */
duet_tokenizer *duet_tokenizer_train(const char *text, int64_t len, int64_t vocab_size,
                                     const duet_tokenizer_train_params *params);

/* Loads a Hugging Face tokenizer.json with a byte-level BPE model: vocab
 * (strings in the bytes_to_unicode alphabet), merges ("a b" strings or
 * ["a", "b"] pairs), added_tokens (specials). Errors name the file and field. */
duet_tokenizer *duet_tokenizer_load(const char *path);
/* The same from tokenizer.json text in memory (len < 0: NUL-terminated);
 * name stands for the file in messages. */
duet_tokenizer *duet_tokenizer_from_json(const char *json, int64_t len, const char *name);
/* Writes the tokenizer.json layout Hugging Face writes (atomic write). */
duet_status duet_tokenizer_save(const duet_tokenizer *t, const char *path);
void duet_tokenizer_free(duet_tokenizer *t);

int64_t duet_tokenizer_vocab_size(const duet_tokenizer *t);
int64_t duet_tokenizer_n_merges(const duet_tokenizer *t);
/* Special ids, -1 when the tokenizer has none (loaded files). bos == eos. */
int32_t duet_tokenizer_bos(const duet_tokenizer *t);
int32_t duet_tokenizer_eos(const duet_tokenizer *t);
int32_t duet_tokenizer_pad(const duet_tokenizer *t);

/* Encodes text[0..len) with DUET_TOK_* flags. Writes at most cap ids and
 * returns how many the whole text needs (never more than len + 2 for the
 * byte-level kinds; for SentencePiece vocabularies never more than
 * 6 * len + 5, and near len + 2 when the vocabulary has "▁" and its byte
 * tokens), so a return value > cap means "call again with a bigger buffer".
 * Returns -1 (DUET_ERR_NOMEM) only when scratch memory cannot be had. */
int64_t duet_tokenizer_encode(const duet_tokenizer *t, const char *text, int64_t len, unsigned flags,
                              int32_t *ids, int64_t cap);
/* The bytes of one token (for streaming), special tokens as their text
 * ("<|endoftext|>"). Copies at most cap bytes (no NUL added) and returns the
 * token's length, or -1 for an id out of range. */
int64_t duet_tokenizer_decode_one(const duet_tokenizer *t, int32_t id, char *buf, int64_t cap);
/* Concatenated bytes of ids[0..n): copies at most cap bytes and returns the
 * total length, or -1 (with an error naming the position) for a bad id. */
int64_t duet_tokenizer_decode(const duet_tokenizer *t, const int32_t *ids, int64_t n, char *buf,
                              int64_t cap);
/* Id of the token whose bytes are exactly bytes[0..len), or -1. */
int32_t duet_tokenizer_token_to_id(const duet_tokenizer *t, const char *bytes, int64_t len);
/* The token's bytes (owned by the tokenizer, NUL-terminated for
 * convenience; *len gets the length, NULs included) or NULL when out of range. */
const char *duet_tokenizer_id_to_token(const duet_tokenizer *t, int32_t id, int64_t *len);

/* ---- Tokenizers of real models ----
 * Built from the arrays a model ships, so the same constructors serve GGUF
 * metadata (tokenizer.ggml.tokens/.scores/.token_type/.merges/.pre), a
 * llama2.c tokenizer.bin and a Hugging Face tokenizer.json:
 *  - SentencePiece BPE (GGUF tokenizer.ggml.model "llama"; Llama 1/2,
 *    Mistral, TinyLlama, llama2.c), done as llama.cpp does it: spaces become
 *    U+2581 "▁", a "▁" goes before the text and after every special token
 *    (add_space_prefix), the text is split into UTF-8 characters (a sequence
 *    is as long as its lead byte says, cut at the end of the text), and the
 *    adjacent pair whose concatenation is a piece with the highest score is
 *    merged until none is left (ties: the leftmost pair). A character that is
 *    no piece becomes its byte tokens "<0xXX>" (or the one-byte piece, or
 *    unk).
 *  - GPT-2 byte-level BPE (GGUF tokenizer.ggml.model "gpt2"; GPT-2, Llama 3,
 *    Qwen2, SmolLM): the text is split by the pre-tokenizer the model names
 *    (with real Unicode letter/number/space classes; invalid UTF-8 bytes
 *    count as "other" characters), then merges apply by rank (lowest first,
 *    ties leftmost) inside each piece. With ignore_merges (Llama 3) a piece
 *    that is a token as a whole is taken as is.
 *  - Special tokens are matched in the text before either: USER_DEFINED
 *    tokens always, CONTROL and UNKNOWN ones only with DUET_TOK_SPECIALS
 *    (leftmost match, the longest when several start there).
 *  - Decoding: a token's bytes are, by type, NORMAL/UNKNOWN/UNUSED pieces
 *    with "▁" turned back into spaces (SentencePiece) or the bytes a
 *    byte-level string stands for (GPT-2), BYTE tokens their one byte,
 *    CONTROL and USER_DEFINED tokens their text as it is ("<s>",
 *    "<|im_start|>"). duet_tokenizer_decode and _decode_piece also drop the
 *    space that add_space_prefix put at the start and after special tokens,
 *    so decode(encode(text)) == text except, for SentencePiece, where the
 *    text itself holds U+2581 (read back as a space, as in SentencePiece)
 *    or an invalid UTF-8 lead byte whose length runs over a space (that
 *    space stays a raw "▁" in the lead byte's bytes, as in llama.cpp). */

/* Token types, numbered as GGUF tokenizer.ggml.token_type (and llama.cpp). */
typedef enum duet_token_type {
    DUET_TOKEN_UNDEFINED = 0,
    DUET_TOKEN_NORMAL = 1,
    DUET_TOKEN_UNKNOWN = 2,
    DUET_TOKEN_CONTROL = 3,
    DUET_TOKEN_USER_DEFINED = 4,
    DUET_TOKEN_UNUSED = 5,
    DUET_TOKEN_BYTE = 6,
} duet_token_type;

typedef enum duet_tokenizer_kind {
    DUET_TOKENIZER_BYTE_BPE = 0, /* duet's own: trained, bytes, tokenizer.json */
    DUET_TOKENIZER_SPM = 1,      /* SentencePiece BPE from pieces + scores */
    DUET_TOKENIZER_GPT2 = 2,     /* byte-level BPE from tokens + merges */
} duet_tokenizer_kind;

/* What the constructors read. Arrays are borrowed for the call only (the
 * tokenizer copies what it keeps). Fill with duet_tokenizer_vocab_default. */
typedef struct duet_tokenizer_vocab {
    int64_t n;                  /* number of tokens (ids 0..n-1) */
    const char *const *tokens;  /* [n] token texts as the source stores them:
                                 * SentencePiece pieces ("▁the", "<0x0A>", "<s>")
                                 * or byte-level strings ("Ġthe", "<|im_start|>") */
    const int64_t *token_lens;  /* [n] byte lengths; NULL: the texts end at a NUL */
    const float *scores;        /* [n] SentencePiece scores; NULL: all 0 */
    const int32_t *types;       /* [n] duet_token_type; NULL: inferred: bos/eos/pad
                                 * CONTROL, unk UNKNOWN, "<0xXX>" BYTE (SentencePiece),
                                 * the rest NORMAL */
    /* GPT-2 kind only */
    const char *const *merges;  /* [n_merges] "left right" (split at the first
                                 * space after the first byte); rank = index */
    const int64_t *merge_lens;  /* [n_merges] byte lengths; NULL: NUL-terminated */
    int64_t n_merges;
    const char *pre;            /* pre-tokenizer (GGUF tokenizer.ggml.pre): "default",
                                 * "gpt2"/"gpt-2" (GPT-2's pattern), "llama3"/"llama-bpe"
                                 * (Llama 3's), "qwen2" (Llama 3's with single digits),
                                 * "smollm"/"starcoder"/"refact" (single digits, then
                                 * GPT-2's); NULL = "default" */
    int ignore_merges;          /* -1 (default): as the pre-tokenizer's models do
                                 * (on for Llama 3); 0 off; 1 on */
    /* special ids (-1 = none) */
    int32_t bos, eos, unk, pad;
    int add_bos, add_eos;       /* the model's wish (GGUF tokenizer.ggml.add_bos_token):
                                 * reported by duet_tokenizer_default_flags; default 0 */
    /* SentencePiece kind only */
    int add_space_prefix;       /* default 1 (GGUF tokenizer.ggml.add_space_prefix) */
    int ascii_space;            /* 1: the pieces spell the word boundary as ' ' instead
                                 * of "▁" (llama2.c tokenizer.bin); default 0 */
} duet_tokenizer_vocab;
void duet_tokenizer_vocab_default(duet_tokenizer_vocab *v);

/* SentencePiece BPE. Errors (NULL + duet_last_error, DUET_ERR_ARG or
 * DUET_ERR_FORMAT) name the token: an id out of range, a BYTE token that is
 * not "<0xXX>", a byte the vocabulary cannot encode at all (no byte token,
 * no one-byte piece, no unk). */
duet_tokenizer *duet_tokenizer_new_spm(const duet_tokenizer_vocab *v);
/* GPT-2 byte-level BPE. Errors: an unknown pre-tokenizer name
 * (DUET_ERR_UNSUPPORTED, listing the known ones), a byte without a token, a
 * merge that is not "a b" or names or makes a token not in the vocabulary. */
duet_tokenizer *duet_tokenizer_new_gpt2(const duet_tokenizer_vocab *v);

duet_tokenizer_kind duet_tokenizer_get_kind(const duet_tokenizer *t);
/* The token's type (duet's own kind: CONTROL for its specials, else NORMAL);
 * DUET_TOKEN_UNDEFINED for an id out of range. */
duet_token_type duet_tokenizer_token_type(const duet_tokenizer *t, int32_t id);
int32_t duet_tokenizer_unk(const duet_tokenizer *t);
/* DUET_TOK_ADD_BOS / _ADD_EOS as the vocabulary asked (add_bos, add_eos). */
unsigned duet_tokenizer_default_flags(const duet_tokenizer *t);
/* Streaming decode: the bytes token id adds after token prev (prev = -1 at the
 * start of the text). Concatenating decode_piece(ids[i-1], ids[i]) over i
 * (ids[-1] = -1) gives exactly duet_tokenizer_decode(ids). It differs from
 * decode_one only for SentencePiece vocabularies with add_space_prefix: the
 * leading space is dropped at the start and after CONTROL/USER_DEFINED tokens.
 * Copies at most cap bytes; returns the length, or -1 for an id out of range. */
int64_t duet_tokenizer_decode_piece(const duet_tokenizer *t, int32_t prev, int32_t id, char *buf,
                                    int64_t cap);

/* ---- Chat templates ----
 * Recognises the common Jinja chat templates (GGUF tokenizer.chat_template,
 * tokenizer_config.json "chat_template") by signature substrings and renders
 * a conversation the way the template does (as Hugging Face renders it:
 * trim_blocks, lstrip_blocks). Not a Jinja interpreter: a template duet does
 * not recognise is an error, and the caller picks a family by name.
 *   "chatml"  <|im_start|>role\ncontent<|im_end|>\n (OpenHermes, Qwen2, SmolLM);
 *             a default system prompt in the template ("You are a helpful
 *             assistant.") is used when the first message is not "system"
 *   "llama3"  <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>,
 *             bos first (Llama 3 Instruct; 3.1+ templates' date header is not
 *             reproduced, as in llama.cpp)
 *   "llama2"  bos[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] assistant eos
 *   "mistral" bos[INST] user [/INST]assistant eos (Mistral 7B Instruct v0.1/v0.2)
 *   "zephyr"  <|role|>\ncontent eos\n (Zephyr, TinyLlama chat)
 *   "gemma"   bos<start_of_turn>user\ncontent<end_of_turn>\n, assistant -> model;
 *             a system message goes in front of the first user message
 * The rendered text carries bos/eos as text where the template puts them:
 * encode it with DUET_TOK_SPECIALS and without DUET_TOK_ADD_BOS. */
typedef struct duet_chat_message {
    const char *role;    /* "system", "user", "assistant" (others where the template allows) */
    const char *content; /* NUL-terminated UTF-8 */
} duet_chat_message;

typedef struct duet_chat_template duet_chat_template;
/* Recognises template text. bos_text/eos_text are the model's bos_token and
 * eos_token texts (NULL: the family's usual "<s>"/"</s>", "<|begin_of_text|>",
 * "<bos>"/"<eos>"). An unrecognised template gives NULL + DUET_ERR_UNSUPPORTED
 * with a message naming the known families and the fallback to choose. */
duet_chat_template *duet_chat_template_detect(const char *jinja, const char *bos_text,
                                              const char *eos_text);
/* A family by name ("chatml", "llama3", "llama2", "mistral", "zephyr",
 * "gemma"); NULL + DUET_ERR_ARG for another name. */
duet_chat_template *duet_chat_template_named(const char *name, const char *bos_text,
                                             const char *eos_text);
void duet_chat_template_free(duet_chat_template *c);
const char *duet_chat_template_name(const duet_chat_template *c);
/* The default system prompt found in the template, or NULL. */
const char *duet_chat_template_default_system(const duet_chat_template *c);
/* Renders msgs[0..n) (+ the assistant header when add_generation_prompt) into
 * buf like snprintf: copies at most cap - 1 bytes and a NUL, returns the full
 * length. -1 + DUET_ERR_ARG when the template rejects the conversation (roles
 * that do not alternate user/assistant for llama2/mistral/gemma, a NULL role
 * or content). */
int64_t duet_chat_template_render(const duet_chat_template *c, const duet_chat_message *msgs,
                                  int64_t n, int add_generation_prompt, char *buf, int64_t cap);

/* ---- Next-token sampler ----
 * Order of the filters on one row of logits:
 *   1. repetition penalty on every distinct id among the last repeat_last_n
 *      recent ids (llama.cpp: logit > 0 is divided by it, otherwise multiplied);
 *   2. temperature: logits / temperature (0 = greedy: argmax, lowest id on ties);
 *   3. softmax; top_k: keep the k most likely (ties: lower id first);
 *   4. top_p: keep the most likely ids, in order, up to and including the
 *      first at which their (renormalised) cumulative probability >= top_p;
 *   5. min_p: keep ids with p >= min_p * (largest p);
 *   6. renormalise and draw with one counter-based uniform (duet_rng).
 * The same seed and the same inputs give the same sequence of choices. */
typedef struct duet_sampler_params {
    float temperature;     /* 1.0; 0 = greedy */
    int64_t top_k;         /* 0 = off */
    float top_p;           /* 1.0 = off */
    float min_p;           /* 0 = off */
    float repeat_penalty;  /* 1.0 = off */
    int64_t repeat_last_n; /* 64: how many recent ids the penalty looks at (-1 all, 0 off) */
    uint64_t seed;         /* 0 */
} duet_sampler_params;
void duet_sampler_params_default(duet_sampler_params *p);

/* What a draw saw, for --show-probs: the chosen id's probability in the
 * distribution it was drawn from (for greedy: softmax of the penalised
 * logits), and the most likely candidates of that distribution. */
#define DUET_SAMPLE_TOP_MAX 16
typedef struct duet_sample_info {
    float prob;
    int n_top; /* filled entries of top_id/top_prob, most likely first */
    int32_t top_id[DUET_SAMPLE_TOP_MAX];
    float top_prob[DUET_SAMPLE_TOP_MAX];
} duet_sample_info;

typedef struct duet_sampler duet_sampler;
/* Buffers are sized by V here; sampling allocates nothing. Bad parameters
 * (temperature < 0, top_p outside (0, 1], ...) give NULL + DUET_ERR_ARG. */
duet_sampler *duet_sampler_new(int64_t V, const duet_sampler_params *p);
void duet_sampler_free(duet_sampler *s);
/* Restarts the random stream (seed, offset 0). */
void duet_sampler_reset(duet_sampler *s, uint64_t seed);
/* Draws the next id from logits[V]. recent[0..n_recent) are the ids so far
 * (oldest first; NULL when n_recent is 0). info may be NULL. */
int32_t duet_sampler_sample(duet_sampler *s, const float *logits, const int32_t *recent,
                            int64_t n_recent, duet_sample_info *info);
/* The distribution sample() would draw from, into probs[V] (0 for filtered
 * ids); for greedy a one-hot at the argmax. Draws no random number. */
void duet_sampler_probs(duet_sampler *s, const float *logits, const int32_t *recent,
                        int64_t n_recent, float *probs);

/* ======================================================================== */
/* Data: IDX (MNIST-style), images, text corpora                            */
/* ======================================================================== */
/* @section data — the data helper owns this section */

/* ---- image datasets: u8 pixels [N, C, H, W], labels, class names ---- */

/* Images in memory. Every array is owned; duet_dataset_free frees them. */
typedef struct duet_dataset {
    int64_t n, c, h, w;   /* images [n, c, h, w] */
    uint8_t *pixels;      /* (n, c, h, w) u8, 0 = black */
    int32_t *labels;      /* (n) in [0, nclasses), or NULL when unlabelled */
    int nclasses;         /* 0 when unlabelled */
    char **class_names;   /* (nclasses) NUL-terminated names, or NULL */
} duet_dataset;

/* Frees the arrays and zeroes the struct (NULL ok). */
void duet_dataset_free(duet_dataset *d);
/* Images idx[0..count) as f32 dst [count, C, H, W] scaled to [-1, 1]
 * (x / 127.5 - 1), their labels into labels (may be NULL; -1 when the set is
 * unlabelled). Indices are checked: DUET_ERR_ARG when one is out of range. */
duet_status duet_dataset_batch_f32(const duet_dataset *d, const int64_t *idx, int64_t count,
                                   float *dst, int32_t *labels);
/* dst[i] = src[i] / 127.5 - 1 for n values. */
void duet_u8_to_unit(float *dst, const uint8_t *src, int64_t n);
/* The class index of `name`, compared case-insensitively on letters and
 * digits only ("T-Shirt", "tshirt", "ankle boot", "Ankle-Boot" all match),
 * or a decimal index "0".."nclasses-1". -1 when unknown. */
int duet_dataset_class_index(const duet_dataset *d, const char *name);

/* ---- IDX files (the MNIST layout), gzip'd or plain ---- */

/* An unsigned-byte IDX array. */
typedef struct duet_idx {
    int ndim;                      /* 1..DUET_MAX_DIMS */
    int64_t dims[DUET_MAX_DIMS];
    uint8_t *data;                 /* size = prod(dims) bytes (owned) */
    int64_t size;
} duet_idx;

/* Reads an IDX file with u8 data (magic 0x00 0x00 0x08 ndim; ndim big-endian
 * u32 dims; then exactly prod(dims) bytes), through zlib so .gz and plain
 * files both work. Errors are DUET_ERR_IO (cannot open) or DUET_ERR_FORMAT
 * naming the file and field: magic, data type, ndim, a zero dim, dims product
 * overflow, truncated data, extra bytes after the data, a corrupt gzip stream.
 * Never allocates more than the data actually present. */
duet_status duet_idx_read(const char *path, duet_idx *out);
void duet_idx_free(duet_idx *x);
/* images: IDX [N, H, W] (magic 0x00000803); labels: IDX [N] (0x00000801) or
 * NULL. Labels must match N. nclasses = max label + 1; class_names are "0",
 * "1", ... (Fashion-MNIST's loader replaces them). */
duet_status duet_dataset_load_idx(const char *images_path, const char *labels_path,
                                  duet_dataset *out);

/* Fashion-MNIST as Debian's dataset-fashion-mnist installs it. */
#define DUET_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define DUET_FASHION_MNIST_CLASSES 10

typedef enum duet_split {
    DUET_SPLIT_TRAIN = 0, /* 60000 images */
    DUET_SPLIT_TEST,      /* 10000 images */
    DUET_SPLIT_COUNT
} duet_split;
const char *duet_split_name(duet_split s);   /* "train", "test" */
int duet_split_from_name(const char *name);  /* -1 when unknown */

/* Loads {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz from dir (NULL =
 * DUET_FASHION_MNIST_DIR) as [N, 1, 28, 28] with labels and the ten class
 * names. A missing file says to install dataset-fashion-mnist (tools/deps.sh). */
duet_status duet_fashion_mnist_load(const char *dir, duet_split split, duet_dataset *out);
/* "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
 * "sneaker", "bag", "ankle boot"; NULL when i is out of range. */
const char *duet_fashion_mnist_class_name(int i);
/* Same matching rules as duet_dataset_class_index; -1 when unknown. */
int duet_fashion_mnist_class_from_name(const char *name);

/* ---- folders of images (PNG, JPEG; also BMP, GIF first frame, PNM) ---- */

typedef struct duet_image_folder_params {
    int64_t size;   /* output side S: center-crop to a square, resize to S x S (default 32) */
    int channels;   /* 1 (gray) or 3 (RGB): every image is converted to this (default 3) */
    int classes;    /* -1 (default): one class per sub-folder when sub-folders hold
                     * images, else unlabelled; 0: only the folder's own files,
                     * unlabelled; 1: sub-folders required */
} duet_image_folder_params;
void duet_image_folder_params_default(duet_image_folder_params *p);

/* Loads every image of dir (in name order; with classes, class names are the
 * sub-folder names, sorted, and images go class by class). Files that are not
 * images (by content), and with classes the files beside the class folders,
 * are skipped and counted in *nskipped (may be NULL); hidden files and
 * folders below the class folders are ignored. Errors: no images at all (DUET_ERR_FORMAT), a
 * file that looks like an image (by content or by a .png/.jpg/.jpeg/.bmp/.gif/
 * .pgm/.ppm extension) but does not decode (DUET_ERR_FORMAT naming the file).
 * Gray conversion is ITU-R 601-2 luma (PIL's convert("L")); alpha is dropped. */
duet_status duet_image_folder_load(const char *dir, const duet_image_folder_params *p,
                                   duet_dataset *out, int64_t *nskipped);

/* One image file as u8 [H, W, channels]. channels 1 or 3 converts as above;
 * 0 keeps the file's own (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA). *pixels is
 * freed with duet_free. *channels_out may be NULL. */
duet_status duet_image_load(const char *path, int channels, uint8_t **pixels, int64_t *w,
                            int64_t *h, int *channels_out);

/* Resizes planes src [C, H, W] to dst [C, OH, OW], each axis on its own:
 *  - shrinking: area average — output pixel i averages the input interval
 *    [i*H/OH, (i+1)*H/OH), partly covered pixels weighted by their overlap;
 *  - growing: bilinear with half-pixel centers and clamped edges (PyTorch's
 *    interpolate(mode="bilinear", align_corners=False));
 *  - equal: copied.
 * Allocates its weight tables and one [C, OH, W] scratch (DUET_ERR_NOMEM). */
duet_status duet_image_resize(float *dst, int64_t OH, int64_t OW, const float *src, int64_t C,
                              int64_t H, int64_t W);

/* ---- pictures out: PNG and animated GIF writers ---- */

/* One image f32 src [C, H, W] in [-1, 1] to u8 dst [H, W, C] (interleaved, as
 * PNG and GIF want it): round((x + 1) * 127.5) clamped to 0..255; NaN -> 0. */
void duet_image_to_u8(uint8_t *dst, const float *src, int64_t C, int64_t H, int64_t W);
/* Size of a rows x cols grid of H x W images with `border` pixels around and
 * between them: gh = rows*H + (rows+1)*border, gw = cols*W + (cols+1)*border. */
void duet_image_grid_size(int64_t rows, int64_t cols, int64_t H, int64_t W, int64_t border,
                          int64_t *gh, int64_t *gw);
/* Lays images f32 [N, C, H, W] in [-1, 1] out row by row on a rows x cols grid
 * (N <= rows*cols; cells without an image and the borders are border_value)
 * into dst u8 [gh, gw, C]. Sample grids use border 2; a trajectory strip is
 * rows = 1. */
void duet_image_grid(uint8_t *dst, const float *images, int64_t N, int64_t C, int64_t H,
                     int64_t W, int64_t rows, int64_t cols, int64_t border,
                     uint8_t border_value);

/* Encodes u8 pixels [H, W, channels] (1 gray, 3 RGB; 8 bits) as a PNG in
 * memory (zlib deflate, no interlace, filter chosen per row) with one tEXt
 * chunk per key/value pair: text = {key0, value0, key1, value1, ...}, ntext
 * pairs (keys 1..79 printable Latin-1 characters, no leading, trailing or
 * double spaces; values any text without NUL — DUET_ERR_ARG otherwise).
 * *out is freed with duet_free. */
duet_status duet_png_encode(const uint8_t *pixels, int64_t w, int64_t h, int channels,
                            const char *const *text, int ntext, uint8_t **out, size_t *out_size);
/* duet_png_encode, then duet_write_file_atomic. */
duet_status duet_png_write(const char *path, const uint8_t *pixels, int64_t w, int64_t h,
                           int channels, const char *const *text, int ntext);

/* An animated GIF89a built in memory: w x h, channels 1 (a 256-entry gray
 * palette, exact) or 3 (a fixed 6x6x6 colour cube: each of r, g, b rounded to
 * the nearest of 0, 51, ..., 255). Loops forever (NETSCAPE2.0). */
typedef struct duet_gif duet_gif;
duet_gif *duet_gif_new(int64_t w, int64_t h, int channels);
void duet_gif_free(duet_gif *g);
/* Appends frame u8 [H, W, channels], shown for delay_cs hundredths of a second
 * (0..65535; browsers treat values below 2 as 10). */
duet_status duet_gif_add_frame(duet_gif *g, const uint8_t *pixels, int delay_cs);
int64_t duet_gif_frames(const duet_gif *g);
/* The finished file (valid until the next add_frame or free); DUET_ERR_ARG
 * when there are no frames. */
duet_status duet_gif_bytes(duet_gif *g, const uint8_t **data, size_t *size);
/* duet_gif_bytes, then duet_write_file_atomic. */
duet_status duet_gif_write(duet_gif *g, const char *path);

/* ---- text corpora ---- */

/* A corpus in memory: one file (memory-mapped, read-only) or every regular,
 * non-hidden file of a folder read in byte-wise name order and concatenated
 * as they are (no separators added). */
typedef struct duet_corpus {
    const uint8_t *data;  /* size bytes */
    int64_t size;
    int64_t nfiles;       /* files read (empty ones included) */
    int mapped_;          /* internal: 1 when data is an mmap */
} duet_corpus;
/* DUET_ERR_IO when path cannot be read; DUET_ERR_FORMAT when the corpus is
 * empty (an empty file, or a folder without non-empty files). */
duet_status duet_corpus_load(const char *path, duet_corpus *out);
void duet_corpus_free(duet_corpus *c);

/* Builds duet's King James training text from the output of Debian's
 * `bible -f Genesis1:1-Revelation22:21` (one verse a line, "Ge1:1 In the
 * beginning ..."). Layout, one book after another:
 *
 *     Genesis
 *
 *     1:1 In the beginning God created the heaven and the earth.
 *     1:2 And the earth was without form, ...
 *     ...
 *                                  (blank line between books)
 *     Exodus
 *
 * Verses stay one per line so the model learns the verse as its unit; the
 * chapter:verse numbers are kept (they are how the text is read and cost ~4%
 * of the bytes) while the book name is a heading instead of a prefix repeated
 * on 31102 lines. Every line must parse, books must come in canon order and
 * verses in order within a book (a partial range is fine), else
 * DUET_ERR_FORMAT naming the line. *out (NUL-terminated) is freed with
 * duet_free; *nverses may be NULL. */
duet_status duet_text_kjv(const char *src, size_t n, char **out, size_t *out_size,
                          int64_t *nverses);
/* Builds a fortunes text from a fortune folder (Debian: /usr/share/games/
 * fortunes): every regular file in name order, skipping .dat indexes,
 * symbolic links (the .u8 aliases), hidden files and any sub-folder (the
 * offensive set lives in off/). Entries are split at "%" lines and written
 * separated by one blank line; inside an entry blank lines are dropped,
 * backspace overstrikes keep the visible character, tabs become spaces (8-column
 * stops), trailing spaces and other control characters are removed, and
 * invalid UTF-8 bytes are dropped. DUET_ERR_FORMAT when no entries are found. */
duet_status duet_text_fortunes(const char *dir, char **out, size_t *out_size, int64_t *nentries,
                               int64_t *nfiles);

/* ======================================================================== */
/* Diffusion: noise schedules and samplers                                   */
/* ======================================================================== */

/* Variance-preserving diffusion with T discrete training steps:
 *   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.
 * Refs: Ho et al. 2020 (DDPM, linear betas 1e-4..0.02), Nichol & Dhariwal 2021
 * (cosine, s = 0.008, betas clipped at 0.999), Song et al. 2021 (DDIM),
 * Karras et al. 2022 (Euler in sigma = sqrt((1-abar)/abar) space),
 * Lu et al. 2022 (DPM-Solver++ 2M). */
typedef enum duet_beta_schedule {
    DUET_SCHEDULE_LINEAR = 0,
    DUET_SCHEDULE_COSINE,
    DUET_SCHEDULE_COUNT
} duet_beta_schedule;
const char *duet_beta_schedule_name(duet_beta_schedule s);
int duet_beta_schedule_from_name(const char *name);

typedef enum duet_diffusion_sampler {
    DUET_SAMPLER_DDPM = 0,   /* ancestral, posterior of the skipped-step chain */
    DUET_SAMPLER_DDIM,       /* eta in [0, 1]; eta = 0 deterministic */
    DUET_SAMPLER_EULER,
    DUET_SAMPLER_EULER_A,    /* Euler ancestral */
    DUET_SAMPLER_DPMPP_2M,   /* DPM-Solver++(2M) */
    DUET_SAMPLER_COUNT
} duet_diffusion_sampler;
/* "ddpm", "ddim", "euler", "euler-a", "dpmpp-2m" */
const char *duet_diffusion_sampler_name(duet_diffusion_sampler s);
int duet_diffusion_sampler_from_name(const char *name);

#define DUET_DIFFUSION_MAX_T 4096
typedef struct duet_schedule {
    duet_beta_schedule kind;
    int T;
    double betas[DUET_DIFFUSION_MAX_T];
    double abar[DUET_DIFFUSION_MAX_T];   /* alphas_cumprod */
} duet_schedule;

duet_status duet_schedule_init(duet_schedule *s, duet_beta_schedule kind, int T);
/* Sampling timesteps: `steps` integers from T-1 down to 0, evenly spaced
 * (floor(linspace(T-1, 0, steps) + 0.5)); steps in [1, T]. */
duet_status duet_schedule_timesteps(const duet_schedule *s, int steps, int *out);

/* Training helpers, n elements:
 *   x_t = sqrt(abar_t) x0 + sqrt(1-abar_t) eps
 *   v   = sqrt(abar_t) eps - sqrt(1-abar_t) x0 */
void duet_diffusion_q_sample(float *xt, const float *x0, const float *eps, double abar, int64_t n);
void duet_diffusion_v_target(float *v, const float *x0, const float *eps, double abar, int64_t n);
/* eps from a v prediction: eps = sqrt(abar) v + sqrt(1-abar) x_t */
void duet_diffusion_v_to_eps(float *eps, const float *v, const float *xt, double abar, int64_t n);
/* classifier-free guidance: out = unc + w (cond - unc) */
void duet_cfg_combine(float *out, const float *cond, const float *unc, float w, int64_t n);

/* The denoiser: given x_t (VP space, n floats, all samples of the batch) and
 * the timestep t, write the predicted noise eps (n floats). */
typedef duet_status (*duet_denoise_fn)(void *ctx, const float *xt, int t, float *eps);
/* Called after each step with the current x (VP space) and the predicted x_0. */
typedef void (*duet_trajectory_fn)(void *ctx, int step, int steps, int t, const float *x,
                                   const float *x0);

typedef struct duet_diffusion_params {
    duet_diffusion_sampler sampler;
    int steps;          /* default 50 */
    float eta;          /* DDIM eta, default 0 */
    int clip_x0;        /* clamp predicted x_0 to [-1, 1] (default 1) */
    uint64_t seed;      /* noise seed (initial noise and ancestral noise) */
} duet_diffusion_params;
void duet_diffusion_params_init(duet_diffusion_params *p);

/* Runs the whole reverse process. x: n floats; on entry ignored (the initial
 * noise is drawn from seed), on return the sample x_0. scratch: at least
 * duet_diffusion_scratch_floats(n) floats. */
int64_t duet_diffusion_scratch_floats(int64_t n);
duet_status duet_diffusion_sample(const duet_schedule *s, const duet_diffusion_params *p,
                                  float *x, int64_t n, float *scratch, duet_denoise_fn denoise,
                                  void *ctx, duet_trajectory_fn traj, void *traj_ctx);

/* One step of each sampler on fixed inputs (the pieces duet_diffusion_sample
 * uses; exposed for tests and custom loops). t_prev < 0 means the final step
 * (abar_prev = 1). noise may be NULL for deterministic samplers.
 * ddpm/ddim work on VP-space x; x0 receives the predicted x_0. */
void duet_ddpm_step(float *x_prev, float *x0, const float *x, const float *eps, double abar_t,
                    double abar_prev, const float *noise, int clip_x0, int64_t n);
void duet_ddim_step(float *x_prev, float *x0, const float *x, const float *eps, double abar_t,
                    double abar_prev, float eta, const float *noise, int clip_x0, int64_t n);
/* k-diffusion space: x_k = x_vp * sqrt(1 + sigma^2), denoised = x_k - sigma*eps.
 * sigma_next == 0 is the final step. */
void duet_euler_step(float *x_k, const float *denoised, double sigma, double sigma_next,
                     int64_t n);
void duet_euler_a_step(float *x_k, const float *denoised, double sigma, double sigma_next,
                       const float *noise, int64_t n);
/* old_denoised may be NULL (first step); h_last = t_cur - t_prev of the step before. */
void duet_dpmpp_2m_step(float *x_k, const float *denoised, const float *old_denoised,
                        double sigma, double sigma_next, double sigma_prev, int64_t n);

/* ======================================================================== */
/* Painter: UNet denoiser                                                    */
/* ======================================================================== */

/* The DDPM-style UNet: conv_in, per level `res_blocks` ResBlocks (GroupNorm,
 * SiLU, conv3x3, timestep+class embedding added per channel, dropout,
 * conv3x3, 1x1 skip when widths differ), self-attention at chosen levels,
 * stride-2 conv downsampling; a middle ResBlock-Attention-ResBlock; the
 * mirrored up path with skip concatenation and nearest x2 + conv3x3
 * upsampling; GroupNorm, SiLU, conv_out. Class label `num_classes` is the
 * "no class" embedding used for classifier-free guidance. */
#define DUET_UNET_MAX_LEVELS 4
typedef struct duet_unet_config {
    int in_channels;     /* 1 (gray) or 3 (RGB) */
    int image_size;      /* H = W */
    int channels;        /* base width */
    int nlevels;         /* number of entries in mults */
    int mults[DUET_UNET_MAX_LEVELS];
    int res_blocks;      /* ResBlocks per level on the way down */
    unsigned attn_levels;/* bit i: attention after ResBlocks of level i */
    int heads;           /* attention heads */
    int groups;          /* GroupNorm groups */
    int num_classes;     /* 0 = unconditional */
    float dropout;
    int predict_v;       /* 0: eps prediction, 1: v prediction */
    duet_beta_schedule schedule;
    int T;               /* training timesteps */
} duet_unet_config;

/* 28x28 gray, channels 32, mults 1,2,2, 2 res blocks, attention at level 2,
 * 4 heads, 8 groups, 10 classes, dropout 0.1, eps, cosine, T 1000. */
void duet_unet_config_default(duet_unet_config *c);
/* Checks sizes fit together (divisibility by groups, heads, 2^levels...). */
duet_status duet_unet_config_check(const duet_unet_config *c);

typedef struct duet_unet duet_unet;
/* New model with PyTorch-default initialisation from `seed` (final convs
 * zeroed, as in DDPM). NULL on failure. */
duet_unet *duet_unet_new(const duet_unet_config *c, uint64_t seed);
void duet_unet_free(duet_unet *u);
const duet_unet_config *duet_unet_get_config(const duet_unet *u);
int duet_unet_nparams(const duet_unet *u);
/* Parameter tensors (named, e.g. "down.0.res.1.conv1.weight"); owned by u. */
duet_tensor **duet_unet_params(duet_unet *u);
int64_t duet_unet_numel(const duet_unet *u);
duet_tensor *duet_unet_param(duet_unet *u, const char *name);

/* Forward: x f32 [N, C, H, W], t f32 [N] (timesteps), labels i32 [N] or
 * NULL (all "no class"). Returns the prediction [N, C, H, W] (eps or v). */
duet_tensor *duet_unet_forward(duet_unet *u, duet_graph *g, duet_tensor *x, duet_tensor *t,
                               duet_tensor *labels, duet_rng *dropout_rng);

/* Checkpoint: safetensors with the config (and class names, when given) in
 * __metadata__ ("duet.kind" = "painter"). */
duet_status duet_unet_save(duet_unet *u, const char *path, const char *const *class_names,
                           int extra_meta_count, const char *const *extra_meta);
/* Loads a painter checkpoint; refuses other kinds with a clear message. */
duet_unet *duet_unet_load(const char *path);
/* Copies weights from a checkpoint into an existing model of the same config
 * (e.g. the raw weights from an optimizer-state file). */
duet_status duet_unet_load_weights(duet_unet *u, const duet_st *st, const char *prefix);

/* Draws n images of classes labels[n] (num_classes = no class; labels NULL =
 * all unconditional) with classifier-free guidance: eps = eps_uncond +
 * cfg * (eps_cond - eps_uncond); the conditional and unconditional passes run
 * as one batch of 2n. cfg = 1 skips the unconditional pass. out: [n, C, H, W]
 * in [-1, 1]. traj (may be NULL) sees every step. The initial noise comes
 * from p->seed. */
duet_status duet_unet_sample(duet_unet *u, const int32_t *labels, int64_t n,
                             const duet_diffusion_params *p, float cfg, float *out,
                             duet_trajectory_fn traj, void *traj_ctx);

/* ---- The judge: a small image classifier and the Frechet distance ----
 * For `duet eval image` (src/models/classifier.c): a CNN from the tape ops
 * that labels images and gives a feature vector per image, and the Frechet
 * distance between Gaussian fits of two feature sets (FID-style, with these
 * features instead of Inception's). Network (S = image_size, F = features):
 *   conv3x3 C->W, GN(8), SiLU             [N, W, S, S]      (W = width)
 *   conv3x3 s2 W->2W, GN(8), SiLU         [N, 2W, S/2, S/2]
 *   conv3x3 s2 2W->2W, GN(8), SiLU        [N, 2W, S/4, S/4]
 *   flatten, linear -> F = the features   [N, F]
 *   SiLU, linear F -> classes = logits    [N, classes]
 * Checkpoint: safetensors, duet.kind = "classifier", config in metadata. */
typedef struct duet_classifier_config {
    int in_channels;  /* 1 or 3 */
    int image_size;   /* S, a multiple of 4 */
    int num_classes;
    int features;     /* F */
    int width;        /* W, a multiple of 8 */
} duet_classifier_config;
/* 1 channel, 28 x 28, 10 classes, 128 features, width 32 (Fashion-MNIST). */
void duet_classifier_config_default(duet_classifier_config *c);
typedef struct duet_classifier duet_classifier;
/* PyTorch-default initialisation from seed; NULL on a bad config or no memory. */
duet_classifier *duet_classifier_new(const duet_classifier_config *c, uint64_t seed);
void duet_classifier_free(duet_classifier *m);
const duet_classifier_config *duet_classifier_get_config(const duet_classifier *m);
/* Parameter tensors (owned by m); *n gets their count. */
duet_tensor **duet_classifier_params(duet_classifier *m, int *n);
/* x f32 [N, C, S, S] in [-1, 1] -> logits [N, classes]; *features (may be
 * NULL) gets the [N, F] feature tensor. NULL on error (graph status). */
duet_tensor *duet_classifier_forward(duet_classifier *m, duet_graph *g, duet_tensor *x,
                                     duet_tensor **features);
/* Inference over n images x [n, C, S, S] in batches: predicted labels [n]
 * and/or features [n, F] (either may be NULL). */
duet_status duet_classifier_predict(duet_classifier *m, const float *x, int64_t n,
                                    int32_t *labels, float *features);
typedef struct duet_classifier_train_params {
    int64_t steps;       /* optimizer steps (default 1000) */
    int64_t batch;       /* 128 */
    float lr;            /* peak AdamW lr, warmup then cosine to lr/10 (2e-3) */
    float weight_decay;  /* 0.01 */
    uint64_t seed;       /* shuffling (each epoch a fresh permutation) */
    /* called after every step (may be NULL) */
    void (*progress)(void *ud, int64_t step, int64_t total, float loss);
    void *progress_ud;
} duet_classifier_train_params;
void duet_classifier_train_params_default(duet_classifier_train_params *p);
/* Trains on a labelled data set whose images match the config (channels,
 * size; labels < num_classes); DUET_ERR_ARG otherwise. */
duet_status duet_classifier_train(duet_classifier *m, const duet_dataset *train,
                                  const duet_classifier_train_params *p);
/* Atomic write; class_names (num_classes strings) may be NULL. */
duet_status duet_classifier_save(const duet_classifier *m, const char *path,
                                 const char *const *class_names);
/* Refuses files of another kind, shapes that do not match the metadata. */
duet_classifier *duet_classifier_load(const char *path);

/* Mean [d] and unbiased covariance [d, d] of n >= 2 rows feat [n, d], in double. */
duet_status duet_feature_stats(const float *feat, int64_t n, int64_t d, double *mean,
                               double *cov);
/* Eigen-decomposition of the symmetric a [n, n] (cyclic Jacobi in double; a is
 * read only): evals [n] ascending; evecs [n, n] (may be NULL) holds the unit
 * eigenvectors as columns, in the same order. */
duet_status duet_sym_eigen(const double *a, int64_t n, double *evals, double *evecs);
/* Frechet distance between N(mu1, s1) and N(mu2, s2), d dimensions:
 *   |mu1 - mu2|^2 + tr s1 + tr s2 - 2 tr sqrt(sqrt(s1) s2 sqrt(s1)),
 * with the symmetric form of the matrix square root (two eigen-decompositions);
 * round-off negative eigenvalues count as 0. */
duet_status duet_frechet_distance(const double *mu1, const double *s1, const double *mu2,
                                  const double *s2, int64_t d, double *out);

/* ======================================================================== */
/* GGUF and quantized tensors                                                */
/* ======================================================================== */
/* @section gguf — the GGUF/quant helper owns this section */

/* ggml's tensor types, with ggml's numbers (as GGUF files store them) and
 * ggml's block layouts byte for byte (Ref: ggml/src/ggml-common.h). A row of
 * n values is n / block_size blocks back to back; all fields little-endian.
 *
 *   type  block bytes  layout -> value of element i (0-based in its block)
 *   F32      1    4    float
 *   F16      1    2    IEEE binary16
 *   BF16     1    2    bfloat16 (the upper 16 bits of a float)
 *   Q4_0    32   18    f16 d | u8 qs[16]: (q - 8) * d with q = low nibble of
 *                      qs[i] for i < 16, high nibble of qs[i - 16] for i >= 16
 *   Q4_1    32   20    f16 d | f16 m | qs[16]: q * d + m
 *   Q5_0    32   22    f16 d | u32 qh | qs[16]: ((q | (bit i of qh) << 4) - 16) * d
 *   Q5_1    32   24    f16 d | f16 m | u32 qh | qs[16]: (q | bit << 4) * d + m
 *   Q8_0    32   34    f16 d | i8 qs[32]: qs[i] * d
 *   Q4_K   256  144    f16 d | f16 dmin | u8 scales[12] | qs[128]: 8 sub-blocks
 *                      of 32 with 6-bit scale sc and min m each:
 *                      d*sc * q - dmin*m, q 4 bits
 *   Q5_K   256  176    as Q4_K with qh[32] (the fifth bits) before qs[128]
 *   Q6_K   256  210    ql[128] | qh[64] | i8 scales[16] | f16 d: 16 sub-blocks
 *                      of 16: d*sc * (q - 32), q 6 bits
 *   Q8_K   256  292    f32 d | i8 qs[256] | i16 bsums[16]: activations only
 * Other ggml types (Q2_K, Q3_K, IQ*, TQ*, MXFP4, ...) are known by their
 * block size, so GGUF files holding them open, but they cannot be
 * dequantized or multiplied here (duet_qtype_supported() is 0). */
typedef enum duet_qtype {
    DUET_QTYPE_F32 = 0,
    DUET_QTYPE_F16 = 1,
    DUET_QTYPE_Q4_0 = 2,
    DUET_QTYPE_Q4_1 = 3,
    DUET_QTYPE_Q5_0 = 6,
    DUET_QTYPE_Q5_1 = 7,
    DUET_QTYPE_Q8_0 = 8,
    DUET_QTYPE_Q8_1 = 9,
    DUET_QTYPE_Q2_K = 10,
    DUET_QTYPE_Q3_K = 11,
    DUET_QTYPE_Q4_K = 12,
    DUET_QTYPE_Q5_K = 13,
    DUET_QTYPE_Q6_K = 14,
    DUET_QTYPE_Q8_K = 15,
    DUET_QTYPE_BF16 = 30,
    DUET_QTYPE_COUNT = 40 /* one past the largest ggml number duet knows */
} duet_qtype;

/* ggml's names: "f32", "f16", "q4_0", ..., "q4_K", "bf16"; NULL when unknown. */
const char *duet_qtype_name(int t);
/* Case-insensitive; -1 when unknown. */
int duet_qtype_from_name(const char *name);
/* 1 when t is a ggml type whose block size duet knows (any int accepted). */
int duet_qtype_known(int t);
/* 1 when t can be quantized, dequantized and multiplied here. */
int duet_qtype_supported(int t);
/* Elements and bytes per block; 0 when unknown. */
int64_t duet_qtype_block_size(int t);
int64_t duet_qtype_block_bytes(int t);
/* Bytes of n values; -1 when t is unknown, n < 0 or n is not a multiple of
 * the block size. */
int64_t duet_qtype_row_bytes(int t, int64_t n);
/* The activation type duet_quant_dot pairs with weights of type t: Q8_0 for
 * the 32-blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), Q8_K for the K-quants, F32
 * for F32, F16 and BF16. */
duet_qtype duet_qtype_dot_type(duet_qtype t);

/* n floats -> n / block_size blocks. Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 round each
 * value to the nearest level of the block's scale (as stored in f16); the
 * K-quants search their sub-block scales (not bit-identical to ggml's
 * quantizer, same layout and same error class); Q8_K (activations) keeps
 * every value in [-127, 127]. DUET_ERR_ARG when n is not a multiple of the
 * block size; DUET_ERR_UNSUPPORTED for types duet cannot quantize. */
duet_status duet_quantize_row(duet_qtype t, const float *x, void *dst, int64_t n);
/* n / block_size blocks -> n floats, exactly as ggml computes them. */
duet_status duet_dequantize_row(duet_qtype t, const void *src, float *y, int64_t n);

/* sum_i w[i] * x[i] over n values: w is n values of type t, xq n values of
 * type duet_qtype_dot_type(t) (Q8_0 / Q8_K blocks from duet_quantize_row, or
 * floats). Uses the current kernel set (duet_kernel_force). n must be a
 * multiple of the block size and t supported (checked: programmer error).
 * Q8_0 activations must lie in [-127, 127] (duet_quantize_row's do). */
float duet_quant_dot(duet_qtype t, int64_t n, const void *w, const void *xq);
/* The scalar reference every SIMD dot is held to (an exact integer sum per
 * block times the block's scales in float; blocks summed in double, in order). */
float duet_quant_dot_ref(duet_qtype t, int64_t n, const void *w, const void *xq);
/* sum_i w[i] * x[i] with f32 activations, no activation quantization: the
 * weights are dequantized 256 at a time on the stack and the products summed
 * in double (slower; for checks and small rows). Any supported t. */
float duet_quant_dot_f32(duet_qtype t, int64_t n, const void *w, const float *x);

/* Matrix times vector and matrix times matrix with a weight matrix W of M
 * rows of K values of type t (row r starts at r * duet_qtype_row_bytes(t, K)
 * bytes — a GGUF tensor with ne = {K, M}):
 *   matvec: y[M] = W[M, K] . x[K]
 *   matmul: Y[N, M] = X[N, K] . W^T   (N activation rows, e.g. a prompt)
 * The activations are quantized to duet_qtype_dot_type(t) once per call;
 * rows of W are split across duet_get_threads() OpenMP threads and each row
 * is streamed once. Batches of N >= 16 rows instead multiply the f32
 * activations by tiles of exactly dequantized weight rows with duet_sgemm
 * (f32 weights directly). scratch: at least duet_quant_scratch_bytes(t, K, N)
 * bytes, asked with the duet_get_threads() of the call (64-byte aligned is
 * best), or NULL to allocate it for this call. Nothing else is allocated.
 * DUET_ERR_ARG when K is not a multiple of the block size,
 * DUET_ERR_UNSUPPORTED for types without kernels. */
int64_t duet_quant_scratch_bytes(duet_qtype t, int64_t K, int64_t N);
duet_status duet_quant_matvec(duet_qtype t, const void *W, int64_t M, int64_t K, const float *x,
                              float *y, void *scratch);
duet_status duet_quant_matmul(duet_qtype t, const void *W, int64_t M, int64_t K, const float *X,
                              int64_t N, float *Y, void *scratch);

/* ---- GGUF files (Ref: ggml docs/gguf.md) ----
 *   "GGUF" | u32 version (2 or 3) | u64 tensor_count | u64 kv_count
 *   kv_count x (string key | u32 value type | value)
 *   tensor_count x (string name | u32 n_dims | u64 ne[n_dims] | u32 qtype |
 *                   u64 offset)
 *   zero padding to general.alignment (u32 key, default 32) | tensor data
 * Strings are u64 length + bytes (no NUL); arrays are u32 element type + u64
 * count + elements (arrays of arrays allowed). Tensor offsets are relative to
 * the data section and multiples of the alignment. ne[0] varies fastest: a
 * matrix with ne = {K, M} has M rows of K values (duet_tensor shape {M, K}). */

/* Metadata value types, with the spec's numbers. */
typedef enum duet_gguf_type {
    DUET_GGUF_TYPE_UINT8 = 0,
    DUET_GGUF_TYPE_INT8,
    DUET_GGUF_TYPE_UINT16,
    DUET_GGUF_TYPE_INT16,
    DUET_GGUF_TYPE_UINT32,
    DUET_GGUF_TYPE_INT32,
    DUET_GGUF_TYPE_FLOAT32,
    DUET_GGUF_TYPE_BOOL,
    DUET_GGUF_TYPE_STRING,
    DUET_GGUF_TYPE_ARRAY,
    DUET_GGUF_TYPE_UINT64,
    DUET_GGUF_TYPE_INT64,
    DUET_GGUF_TYPE_FLOAT64,
    DUET_GGUF_TYPE_COUNT
} duet_gguf_type;
/* "uint8", ..., "float64"; NULL when out of range. */
const char *duet_gguf_type_name(int t);

/* An open GGUF file, memory-mapped; tensor data and string values point into
 * the map (zero copy) and stay valid until duet_gguf_close. */
typedef struct duet_gguf duet_gguf;

/* Opens and validates the whole header: magic, version (1 is refused with a
 * hint to convert), counts against the bytes present, every string length,
 * array count and nesting depth (<= 8), value types, bools 0/1, duplicate
 * keys, general.alignment (u32, a power of two), tensor names (1..64 bytes,
 * unique), n_dims (<= 4), dims (no overflow, ne[0] a multiple of the block
 * size), types (known), offsets (aligned), data inside the file, no two
 * tensors overlapping. Any violation gives NULL with a message naming the
 * file, the byte offset and the field ("x.gguf: byte 1234: tensor 5
 * 'blk.0.attn_q.weight': ..."): DUET_ERR_FORMAT for malformed files,
 * DUET_ERR_UNSUPPORTED for version 1, versions above 3 and big-endian
 * files, DUET_ERR_IO when the file cannot be read. Tensors of known types
 * duet cannot compute with (Q2_K, IQ*, ...) open; check
 * duet_qtype_supported before using them. */
duet_gguf *duet_gguf_open(const char *path);
/* The same on bytes in memory (not copied: data must outlive the handle);
 * `name` stands for the file name in messages. */
duet_gguf *duet_gguf_open_memory(const char *name, const void *data, size_t size);
void duet_gguf_close(duet_gguf *g);  /* NULL ok */
uint32_t duet_gguf_version(const duet_gguf *g);
uint32_t duet_gguf_alignment(const duet_gguf *g);
/* Byte offset of the data section in the file. */
uint64_t duet_gguf_data_offset(const duet_gguf *g);

/* A metadata value: a KV's value or an element of an array. Filled by the
 * lookups below; read it with the duet_gguf_value_* getters. */
typedef struct duet_gguf_value {
    duet_gguf_type type;
    duet_gguf_type elem_type; /* ARRAY: the elements' type */
    int64_t count;            /* ARRAY: number of elements; STRING: bytes */
    const unsigned char *p_;  /* internal: where the value starts in the map */
    int64_t node_;            /* internal: array index table, -1 if none */
    int64_t kv_;              /* internal: owning KV (for messages) */
} duet_gguf_value;

int64_t duet_gguf_kv_count(const duet_gguf *g);
/* KV i in file order: its key (NUL-terminated, owned by g) and value. */
const char *duet_gguf_kv_key(const duet_gguf *g, int64_t i);
duet_gguf_value duet_gguf_kv_value(const duet_gguf *g, int64_t i);
/* Index of key, or -1. */
int64_t duet_gguf_find_key(const duet_gguf *g, const char *key);

/* Typed reads. _int: any integer type (UINT64 above INT64_MAX is refused),
 * _u64: unsigned types and non-negative signed ones, _float: FLOAT32,
 * FLOAT64 or any integer type, _bool: BOOL, _str: STRING (s points into the
 * map and is NOT NUL-terminated; len bytes). A value of another type gives
 * DUET_ERR_FORMAT naming the file, the key and both types. _elem: element i
 * of an ARRAY (DUET_ERR_ARG when i is out of range). */
duet_status duet_gguf_value_int(const duet_gguf *g, const duet_gguf_value *v, int64_t *out);
duet_status duet_gguf_value_u64(const duet_gguf *g, const duet_gguf_value *v, uint64_t *out);
duet_status duet_gguf_value_float(const duet_gguf *g, const duet_gguf_value *v, double *out);
duet_status duet_gguf_value_bool(const duet_gguf *g, const duet_gguf_value *v, int *out);
duet_status duet_gguf_value_str(const duet_gguf *g, const duet_gguf_value *v, const char **s,
                                int64_t *len);
duet_status duet_gguf_value_elem(const duet_gguf *g, const duet_gguf_value *arr, int64_t i,
                                 duet_gguf_value *out);

/* The same by key; a missing key is DUET_ERR_FORMAT ("no metadata key ...").
 * _arr gives an array's element type and length; _arr_str/_arr_int/
 * _arr_float read element i (tokenizer.ggml.tokens, .merges, .token_type,
 * .scores); _arr_f32/_arr_i32 copy a whole numeric array of exactly n
 * elements (float or integer elements; i32 range-checked). */
duet_status duet_gguf_get_int(const duet_gguf *g, const char *key, int64_t *out);
duet_status duet_gguf_get_float(const duet_gguf *g, const char *key, double *out);
duet_status duet_gguf_get_bool(const duet_gguf *g, const char *key, int *out);
duet_status duet_gguf_get_str(const duet_gguf *g, const char *key, const char **s, int64_t *len);
duet_status duet_gguf_get_arr(const duet_gguf *g, const char *key, duet_gguf_type *elem_type,
                              int64_t *n);
duet_status duet_gguf_get_arr_str(const duet_gguf *g, const char *key, int64_t i, const char **s,
                                  int64_t *len);
duet_status duet_gguf_get_arr_int(const duet_gguf *g, const char *key, int64_t i, int64_t *out);
duet_status duet_gguf_get_arr_float(const duet_gguf *g, const char *key, int64_t i, double *out);
duet_status duet_gguf_get_arr_f32(const duet_gguf *g, const char *key, float *dst, int64_t n);
duet_status duet_gguf_get_arr_i32(const duet_gguf *g, const char *key, int32_t *dst, int64_t n);

/* A tensor of the file (owned by g). */
typedef struct duet_gguf_tensor {
    const char *name;     /* NUL-terminated */
    duet_qtype type;
    int n_dims;           /* 0..4 */
    int64_t ne[4];        /* ggml order, ne[0] fastest; dims past n_dims are 1 */
    int64_t numel;
    int64_t nbytes;
    uint64_t offset;      /* from the data section's start */
    const void *data;     /* into the map */
} duet_gguf_tensor;

int64_t duet_gguf_tensor_count(const duet_gguf *g);
/* Tensor i in file order (NULL when out of range). */
const duet_gguf_tensor *duet_gguf_tensor_at(const duet_gguf *g, int64_t i);
/* Tensor by name, or NULL. */
const duet_gguf_tensor *duet_gguf_find_tensor(const duet_gguf *g, const char *name);

/* Writer: KVs and tensors in the order added; writes GGUF v3 atomically
 * (temporary, fsync, rename) with every tensor's data aligned to the
 * alignment (default 32) and zero padding. Tensor data is not copied: the
 * pointers must stay valid until duet_gguf_writer_write returns. Keys must be
 * unique (DUET_ERR_ARG), tensor names 1..64 bytes and unique. */
typedef struct duet_gguf_writer duet_gguf_writer;
duet_gguf_writer *duet_gguf_writer_new(void);
void duet_gguf_writer_free(duet_gguf_writer *w);  /* NULL ok */
/* A power of two; also sets (or adds) the general.alignment KV. */
duet_status duet_gguf_writer_set_alignment(duet_gguf_writer *w, uint32_t alignment);
/* A scalar of type `type` (not STRING or ARRAY): value points to a C value of
 * the matching width (uint8_t ... double; BOOL: a uint8_t 0 or 1). */
duet_status duet_gguf_writer_add(duet_gguf_writer *w, const char *key, duet_gguf_type type,
                                 const void *value);
/* Convenience scalars. */
duet_status duet_gguf_writer_add_u32(duet_gguf_writer *w, const char *key, uint32_t v);
duet_status duet_gguf_writer_add_i32(duet_gguf_writer *w, const char *key, int32_t v);
duet_status duet_gguf_writer_add_f32(duet_gguf_writer *w, const char *key, float v);
duet_status duet_gguf_writer_add_bool(duet_gguf_writer *w, const char *key, int v);
/* A string of len bytes (len < 0: strlen). */
duet_status duet_gguf_writer_add_str(duet_gguf_writer *w, const char *key, const char *s,
                                     int64_t len);
/* An array of n fixed-size elements (C values as for _add, packed). */
duet_status duet_gguf_writer_add_arr(duet_gguf_writer *w, const char *key, duet_gguf_type elem,
                                     const void *data, int64_t n);
/* An array of n strings; lens may be NULL (each strlen). */
duet_status duet_gguf_writer_add_arr_str(duet_gguf_writer *w, const char *key,
                                         const char *const *s, const int64_t *lens, int64_t n);
/* A value given by its encoding as it appears in a file after the type tag
 * (for nested arrays); checked like the reader checks it. */
duet_status duet_gguf_writer_add_raw(duet_gguf_writer *w, const char *key, duet_gguf_type type,
                                     const void *bytes, size_t nbytes);
/* Copies KV i of an open file (key, type and value bytes). */
duet_status duet_gguf_writer_copy_kv(duet_gguf_writer *w, const duet_gguf *g, int64_t i);
/* A tensor of n_dims (1..4) dims ne (ggml order) and type t (any known type;
 * ne[0] a multiple of its block size); data holds duet_qtype_row_bytes(t,
 * numel) bytes. */
duet_status duet_gguf_writer_add_tensor(duet_gguf_writer *w, const char *name, duet_qtype t,
                                        int n_dims, const int64_t *ne, const void *data);
duet_status duet_gguf_writer_write(duet_gguf_writer *w, const char *path);

/* ======================================================================== */
/* Storyteller: transformer language model                                   */
/* ======================================================================== */
/* @section transformer — the transformer helper owns this section */

/* Three families, chosen by config (src/models/transformer.c):
 *  - gpt2:  learned positions, LayerNorm (with bias), GELU-tanh MLP with
 *           biases, biased q/k/v/o projections, tied input/output embedding.
 *  - llama: RMSNorm, RoPE on adjacent pairs (neox = 0, the Meta / GGUF
 *           order, so a GGUF export is a plain copy of wq/wk), SwiGLU MLP,
 *           grouped-query attention, untied output, no biases.
 *  - qwen2: llama with biases on q, k and v and RoPE in the NeoX order
 *           (pairs (i, i + HS/2)); checkpoints say duet.rope = "neox".
 *
 * Tensor names in checkpoints (safetensors, f32), Meta-llama style for both:
 *   tok_embeddings.weight [V,C]        pos_embeddings.weight [T,C] (gpt2)
 *   layers.N.attention_norm.weight [C] (.bias gpt2)
 *   layers.N.attention.wq.weight [NH*HS,C]   .wk/.wv [NKV*HS,C]   .wo [C,NH*HS]
 *                                      (each with .bias [rows] for gpt2)
 *   layers.N.ffn_norm.weight [C]       (.bias gpt2)
 *   layers.N.feed_forward.w1.weight [H,C]  w2 [C,H]  w3 [H,C] (llama: gate,
 *      down, up; gpt2: w1 = fc and w2 = proj, with biases, no w3)
 *   norm.weight [C] (.bias gpt2)       output.weight [V,C] (untied only)
 * __metadata__: duet.kind = "storyteller", duet.format = "1", duet.arch,
 *   duet.vocab, duet.ctx, duet.dim, duet.layers, duet.heads, duet.kv_heads,
 *   duet.hidden, duet.norm_eps, duet.rope_theta, duet.tied, duet.rope =
 *   "adjacent", and duet.tokenizer (the tokenizer JSON, so a model file is
 *   self-contained). */

typedef enum duet_tf_arch {
    DUET_TF_ARCH_GPT2 = 0,
    DUET_TF_ARCH_LLAMA,
    DUET_TF_ARCH_QWEN2,
    DUET_TF_ARCH_COUNT
} duet_tf_arch;

const char *duet_tf_arch_name(duet_tf_arch a);   /* "gpt2", "llama", "qwen2" */
int duet_tf_arch_from_name(const char *name);    /* -1 when unknown */

typedef struct duet_tf_params {
    duet_tf_arch arch;
    int64_t vocab;      /* V */
    int64_t ctx;        /* T: longest sequence (learned positions, KV cache) */
    int64_t dim;        /* C */
    int64_t layers;     /* L */
    int64_t heads;      /* NH (head size HS = C / NH) */
    int64_t kv_heads;   /* NKV, divides NH (gpt2: usually NH) */
    int64_t hidden;     /* MLP width; 0 = default (gpt2 4C; llama 8C/3 rounded up to 32) */
    float norm_eps;     /* 1e-5 */
    float rope_theta;   /* 10000 (llama) */
    int tied;           /* output projection shares tok_embeddings (gpt2 1, llama 0) */
} duet_tf_params;

/* Defaults for an arch: V 512, T 256, C 384, L 6, NH 6, NKV 6, eps 1e-5,
 * theta 10000, tied per arch. */
void duet_tf_params_default(duet_tf_params *p, duet_tf_arch arch);
/* Checks sizes fit together; the message names the field and what to do. */
duet_status duet_tf_params_check(const duet_tf_params *p);

/* The model: one block of parameters, one block of gradients, a KV cache
 * for sampling. Opaque. */
typedef struct duet_tf duet_tf;

/* A fresh model, GPT-2 style init from `seed`: weights N(0, 0.02), residual
 * projections (wo, w2) N(0, 0.02/sqrt(2L)), biases 0, norm weights 1.
 * NULL on failure (bad params or out of memory). */
duet_tf *duet_tf_new(const duet_tf_params *p, uint64_t seed);
void duet_tf_free(duet_tf *m);
/* The model's config (hidden filled in). */
const duet_tf_params *duet_tf_config(const duet_tf *m);
/* The parameter tensors in checkpoint order (data and grad point into the
 * model's two blocks; names are the checkpoint names). Usable directly with
 * duet_adamw_* and duet_clip_grad_norm. Owned by the model. */
duet_tensor **duet_tf_params_list(duet_tf *m, int *n);
/* Parameter tensor by name, or NULL. */
duet_tensor *duet_tf_find(duet_tf *m, const char *name);
/* Total number of parameters (floats). */
int64_t duet_tf_numel(const duet_tf *m);
/* Zeroes all gradients (one memset). */
void duet_tf_zero_grad(duet_tf *m);
/* 1 for parameters AdamW should decay (matrices and embeddings), 0 for
 * biases and norm weights. */
int duet_tf_param_decays(const duet_tensor *t);

/* Forward of B sequences of T tokens (T <= ctx) at positions 0..T-1 on the
 * graph g (recorded for backward when g is training). ids, targets: i32
 * [B*T], caller-owned, valid until g is reset; ids are checked against V.
 * Returns the mean cross-entropy (scalar) when targets != NULL, else the
 * logits; *logits (may be NULL) receives the logits [B,T,V].
 * NULL on failure (duet_graph_status(g) has the message). */
duet_tensor *duet_tf_forward(duet_tf *m, duet_graph *g, const int32_t *ids,
                             const int32_t *targets, int64_t B, int64_t T,
                             duet_tensor **logits);

/* Sampling with the KV cache (batch 1, f32 k and v per layer [ctx,NKV,HS]).
 * duet_tf_feed appends n tokens at the cache position and writes the
 * logits: of the last token ([V]) or, with all != 0, of all n ([n,V]).
 * A long prompt is processed in one batch. When the window would pass ctx
 * tokens the cache SLIDES: it keeps the most recent ctx/2 tokens (or the
 * last ctx when the new chunk alone is longer than ctx/2), re-encodes them
 * from position 0 and continues; logits are then those of a fresh forward
 * over that window (with all != 0, only its last min(n, window) rows are
 * meaningful). Nothing is allocated per token after the first call. */
duet_status duet_tf_feed(duet_tf *m, const int32_t *ids, int64_t n, float *logits, int all);
/* The weights duet_tf_feed multiplies by: DUET_QTYPE_F32 (default: the
 * arithmetic of duet_tf_forward, bit for bit up to GEMM blocking) or a
 * duet_qtype copy made by this call — F16, BF16 or Q8_0 (ggml layouts) —
 * so each token streams 2x or ~3.8x fewer bytes; logits then differ from
 * f32 by about 1e-3 (f16), 1e-2 (bf16, q8_0) relative. Matrices whose rows
 * are not a whole number of the type's blocks (32 values for q8_0) stay f32.
 * The copy does not follow later changes to the weights: call again after
 * training. DUET_ERR_ARG for other types (qtype is a duet_qtype). */
duet_status duet_tf_set_sample_type(duet_tf *m, int qtype);
/* Models opened from other programs' files (duet_model_open) keep their
 * matrices where the file has them (GGUF types included): there,
 * set_sample_type converts only matrices the file stores as F32, and F32
 * brings back the file's own types. */
/* Bytes of weights one decoded token streams (every matrix a linear reads,
 * in the types in use now). */
int64_t duet_tf_weight_bytes(const duet_tf *m);
/* 1 when the matrices are views into a file (duet_model_open): such a model
 * samples only — duet_tf_forward, duet_tf_save and training refuse it. */
int duet_tf_is_external(const duet_tf *m);
/* The KV cache's element type: DUET_QTYPE_F32 (the default) or
 * DUET_QTYPE_F16 (half the memory, and half the bytes attention reads per
 * decoded token; keys and values rounded to f16, logits then differ from
 * an f32 cache by ~1e-3 relative). Changing it empties the cache.
 * DUET_ERR_ARG for other types, or f16 with heads over 512 values. */
duet_status duet_tf_set_cache_type(duet_tf *m, int qtype);
int duet_tf_cache_type(const duet_tf *m);
/* Empties the KV cache. */
void duet_tf_reset(duet_tf *m);
/* Keeps the first pos tokens of the KV cache and drops the rest (to reuse
 * a shared prefix, e.g. a chat history); DUET_ERR_ARG unless
 * 0 <= pos <= duet_tf_pos(m). */
duet_status duet_tf_set_pos(duet_tf *m, int64_t pos);
/* Tokens in the KV cache. */
int64_t duet_tf_pos(const duet_tf *m);

/* Checkpoints (written atomically). extra_meta: nextra (key, value) pairs
 * as 2*nextra strings, may be NULL; tokenizer_json may be NULL. */
duet_status duet_tf_save(const duet_tf *m, const char *path, const char *tokenizer_json,
                         const char *const *extra_meta, int nextra);
/* Loads a storyteller checkpoint; refuses files of another kind, arch or
 * format, with shapes that do not match the config, or truncated. When
 * tokenizer_json != NULL it receives a copy of duet.tokenizer (duet_free it)
 * or NULL when the file has none. NULL on failure (duet_last_error). */
duet_tf *duet_tf_load(const char *path, char **tokenizer_json);
/* Optimizer state ("<out>.optim.safetensors"): m.<name>, v.<name> for every
 * parameter, duet.kind = "storyteller-optim", duet.adam_step, plus extra
 * metadata (the trainer's step, data position, rng state). */
duet_status duet_tf_save_optim(const duet_tf *m, const duet_adamw *opt, const char *path,
                               const char *const *extra_meta, int nextra);
/* Restores m/v and the step into opt (initialised with duet_adamw_init on
 * this model's parameters). Checks kind and every shape. */
duet_status duet_tf_load_optim(duet_tf *m, duet_adamw *opt, const char *path);

/* ---- Language models in other programs' files (src/models/loaders.c,
 * hf.c, gguf_export.c) ----
 * duet_model_open reads, by content:
 *  - GGUF (llama.cpp): general.architecture "llama" (GQA, rope.freq_base,
 *    rope.scaling.type "linear" + factor, a rope_freqs tensor as Llama 3
 *    files carry it, untied output or tied when output.weight is absent),
 *    "qwen2" (q/k/v biases, NeoX RoPE) and "gpt2" (fused attn_qkv). Matrices
 *    stay in the map in their type (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1
 *    Q4_K Q5_K Q6_K) and go through duet_quant_matvec/_matmul; 1-D tensors
 *    are copied to f32. The tokenizer comes from tokenizer.ggml.* and the
 *    chat template from tokenizer.chat_template.
 *  - llama2.c checkpoints (.bin): the legacy header (7 int32; a negative
 *    vocab_size means an own classifier) or the version 1 export ("ak42",
 *    version 1, 256-byte header, shared-classifier byte), f32 weights, RoPE
 *    on adjacent pairs as run.c rotates them; the tokenizer is the
 *    tokenizer.bin beside it (or duet_model_params.tokenizer).
 *  - Hugging Face folders: config.json (LlamaForCausalLM, MistralForCausalLM,
 *    Qwen2ForCausalLM), model.safetensors or shards with
 *    model.safetensors.index.json (F32/F16/BF16, zero copy), tokenizer.json
 *    (+ tokenizer_config.json). Hugging Face stores q/k for rotate_half, so
 *    these models run RoPE in the NeoX order on the weights as stored.
 *  - duet's own storyteller checkpoints (duet_tf_load).
 * Unknown architectures, missing tensors and wrong shapes are refused with
 * a message naming the file and the field. */
typedef struct duet_model_params {
    int64_t ctx;           /* context / KV cache length; 0 = the file's, at most 4096 */
    const char *tokenizer; /* llama2.c: its tokenizer.bin (NULL: beside the model) */
    int no_mmap;           /* 0: map the weight files (zero copy, shared page cache);
                            * 1: read them into anonymous memory, with transparent
                            * huge pages where the kernel gives them (Linux,
                            * MADV_HUGEPAGE): a copy and the read time up front,
                            * fewer TLB misses while streaming the weights (decode
                            * 4-17% faster on this project's VM, bench/README.md) */
    int no_repack;         /* 0: on CPUs with AVX-512 VNNI, Q4_0 / Q8_0 / Q4_K / Q5_K /
                            * Q6_K matrices (rows a multiple of 16; a tied token
                            * table too) are repacked once at open into a 16-row
                            * interleaved layout whose kernels run 1.6-3x faster
                            * from cache and give the prompt an integer GEMM
                            * (memory of their own, 2 MiB pages; the file's pages
                            * of them are given back; Q4_K / Q5_K 2.2-2.8%
                            * larger); 1: multiply them where they lie in the
                            * file (zero copy) */
} duet_model_params;
void duet_model_params_default(duet_model_params *p);

typedef struct duet_model {
    duet_tf *tf;           /* owned */
    duet_tokenizer *tok;   /* owned; NULL when the files hold none */
    char *chat_template;   /* owned Jinja text, or NULL */
    char format[16];       /* "duet", "gguf", "llama2.c", "hf" */
    char arch[32];         /* as the file says: "llama", "qwen2", "gpt2" */
    char name[128];        /* general.name, the folder's name, or the file's */
    int weight_type;       /* duet_qtype most of the matrix bytes are in */
    int64_t n_params;      /* parameters (elements) */
    int64_t repacked;      /* bytes of matrices repacked (duet_model_params.no_repack) */
} duet_model;

duet_model *duet_model_open(const char *path, const duet_model_params *p);
void duet_model_free(duet_model *m); /* NULL ok */

/* A tokenizer from GGUF metadata: tokenizer.ggml.model "llama"
 * (SentencePiece: tokens, scores, token_type, add_space_prefix) or "gpt2"
 * (tokens, merges, pre), special ids and add_bos/add_eos. *chat_template
 * (may be NULL) gets a copy of tokenizer.chat_template or NULL. */
duet_tokenizer *duet_tokenizer_from_gguf(const duet_gguf *g, char **chat_template);
/* A llama2.c tokenizer.bin of n_vocab tokens (i32 max_token_length, then per
 * token f32 score, i32 length, bytes): SentencePiece with ' ' for the word
 * boundary, unk 0, bos 1, eos 2. */
duet_tokenizer *duet_tokenizer_load_llama2c(const char *path, int64_t n_vocab);
/* A Hugging Face tokenizer.json of a real model: byte-level BPE (pre-
 * tokenizer picked from the Split pattern: gpt2, llama3, qwen2) or
 * SentencePiece-style BPE (byte_fallback, "▁"; scores from the merge ranks).
 * tokenizer_config.json beside it gives bos/eos and add_bos_token;
 * *chat_template (may be NULL) its chat_template. */
duet_tokenizer *duet_tokenizer_load_hf(const char *path, char **chat_template);

/* GGUF writers. duet_tf_save_gguf writes one of duet's own models (not one
 * opened from another file) as GGUF arch llama, qwen2 or gpt2 (fused
 * attn_qkv; needs kv_heads == heads) with every matrix in `qtype` (F32, F16,
 * BF16, Q8_0, Q4_0, ...; a matrix whose rows do not split into its blocks
 * stays F32), 1-D tensors F32, and duet's byte-level tokenizer as
 * tokenizer.ggml.model "gpt2" (bytes_to_unicode strings, merges, pre
 * "gpt-2"). name goes to general.name (NULL: "duet"). */
duet_status duet_tf_save_gguf(const duet_tf *m, const duet_tokenizer *tok, const char *path,
                              int qtype, const char *name);
/* GGUF -> GGUF with every matrix (2-D and up) in qtype, as llama.cpp's
 * quantize does it: 1-D tensors keep their type; a matrix whose rows do not
 * split into qtype's blocks falls back to Q8_0 (or keeps its type). All
 * metadata is copied; general.file_type is set. */
duet_status duet_gguf_requantize(const char *in, const char *out, int qtype);
/* qtype for duet_gguf_requantize: llama.cpp's Q4_K_M mix (general.file_type
 * 15): Q6_K for output.weight (token_embd.weight when there is no output),
 * and for attn_v / ffn_down in the layers use_more_bits picks (the first and
 * last eighth, every third one between), Q5_K for a fused attn_qkv, Q4_K
 * elsewhere; rows that do not split into 256 fall back to Q8_0. */
#define DUET_QUANT_MIX_Q4_K_M 1015

#ifdef __cplusplus
}
#endif
#endif /* DUET_H */
