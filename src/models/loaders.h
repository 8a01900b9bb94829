/*
 * loaders.h — private helpers shared by the model-file readers
 * (src/models/loaders.c: duet_model_open, GGUF, llama2.c; hf.c: Hugging Face
 * folders). The public entry points are in include/duet.h, section
 * transformer, "Language models in other programs' files".
 */
#ifndef DUET_MODELS_LOADERS_H
#define DUET_MODELS_LOADERS_H

#include "duet.h"

/* Opens a Hugging Face model folder into out (tf, tok, chat_template,
 * arch, name); on failure out may hold partial results the caller frees. */
duet_status hf_open(const char *dir, const duet_model_params *p, duet_model *out);

/* The context a loader gives its model: p->ctx when set, else the file's
 * (file_ctx <= 0: 2048), at most 4096. */
int64_t loaders_ctx(const duet_model_params *p, int64_t file_ctx);

/* duet's parameter name -> the GGUF tensor name of arch (llama.cpp's
 * naming); *slice gets the part of a fused tensor (gpt2 attn_qkv: 0 q, 1 k,
 * 2 v) or -1. 0 on success, -1 for a name GGUF has no place for. */
int loaders_gguf_name(duet_tf_arch arch, const char *name, char *out, size_t cap, int *slice);

/* A NUL-terminated copy (duet_alloc) of s[0..n), or NULL (out of memory). */
char *loaders_strndup(const char *s, int64_t n);

#endif
