/*
 * tf_internal.h — private interface between the transformer
 * (src/models/transformer.c) and the readers of other programs' model files
 * (src/models/loaders.c, hf.c): a duet_tf whose matrices are views into
 * memory the reader maps (GGUF, llama2.c, safetensors shards), inference only.
 *
 * The transformer walks its own parameter table (duet checkpoint names such
 * as "layers.3.attention.wq.weight", shapes [rows, cols] or [n]) and asks
 * the reader for each tensor; the reader maps the name to its file's naming,
 * checks the shape and hands back a pointer and a duet_qtype. Row r of a
 * matrix starts at data + r * duet_qtype_row_bytes(type, cols) — the GGUF /
 * ggml layout of a tensor with ne = {cols, rows}.
 */
#ifndef DUET_MODELS_TF_INTERNAL_H
#define DUET_MODELS_TF_INTERNAL_H

#include "duet.h"

typedef struct tf_ext_weight {
    const void *data; /* into the reader's memory (must outlive the model) */
    duet_qtype type;
} tf_ext_weight;

/* Fills *w for parameter `name` of the given shape, or returns an error
 * whose message names the file and the file's tensor name. */
typedef duet_status (*tf_ext_get_fn)(void *ud, const char *name, int ndim, const int64_t *shape,
                                     tf_ext_weight *w);

typedef struct tf_ext_params {
    const char *path;          /* for messages */
    tf_ext_get_fn get;
    void *ud;
    int rope_neox;             /* -1: the arch's order (qwen2 NeoX, llama adjacent) */
    float rope_freq_scale;     /* positions times this: 1 / linear factor (0 or 1: none) */
    const float *rope_freqs;   /* [HS/2] frequency divisors (copied), or NULL */
    void *owner;               /* released with owner_free when the model is freed, */
    void (*owner_free)(void *);/* or at once when tf_new_external fails (may be NULL) */
} tf_ext_params;

/* A model of config p with every parameter from e->get: matrices stay views
 * (any type duet_quant_matmul supports; f32 views must be 4-byte aligned or
 * are copied), 1-D tensors (F32/F16/BF16) are copied to f32. NULL on error
 * (duet_last_error). */
duet_tf *tf_new_external(const duet_tf_params *p, const tf_ext_params *e);

/* Repacks the native Q4_0 / Q8_0 / Q4_K / Q5_K / Q6_K matrices of an external model for
 * the VNNI kernels (kernels/quant_x16.h); a no-op where the CPU lacks them,
 * nothing qualifies, DUET_REPACK=0 is set, or the memory cannot be had (the
 * file layout stays). tf_repacked_bytes: the bytes so held. */
void tf_repack(duet_tf *m);
int64_t tf_repacked_bytes(const duet_tf *m);

/* The duet_qtype that most bytes of the linear weights are in now. */
int tf_main_weight_type(const duet_tf *m);

#endif
