/*
 * gguf_export.c — GGUF writers for language models: duet_tf_save_gguf
 * (one of duet's own storytellers -> a GGUF file llama.cpp and duet both
 * read) and duet_gguf_requantize (GGUF -> GGUF in another weight type, or
 * llama.cpp's Q4_K_M mix, as llama.cpp's quantize does it).
 *
 * Export layout (llama.cpp's names and keys, the same table the reader uses:
 * loaders_gguf_name):
 *  - llama / qwen2: wq/wk copied as they are — duet's RoPE already turns
 *    adjacent pairs, ggml's "normal" mode, for llama; qwen2 is NeoX in both.
 *  - gpt2: q, k, v fused into blk.N.attn_qkv (rows q | k | v), biases too;
 *    position_embd F32; no output.weight (tied).
 *  - tokenizer: duet's byte-level BPE as tokenizer.ggml.model "gpt2": every
 *    token's bytes spelled in GPT-2's bytes_to_unicode alphabet, specials as
 *    their text with type CONTROL, merges "left right" in rank order, pre
 *    "gpt-2" (GPT-2's pattern; duet's own pre-tokenizer is that pattern over
 *    byte classes, so the two agree on ASCII text and may split non-ASCII
 *    letters differently), ids padded to the model's vocabulary with UNUSED
 *    tokens.
 *
 * What it is not: a converter for models opened from other programs' files
 * (requantize their GGUF instead), or for SentencePiece vocabularies.
 */
#include "core/internal.h"
#include "models/loaders.h"
#include "models/tf_internal.h"
#include "tokenizer/bpe.h"

#include <stdlib.h>
#include <string.h>

/* llama.cpp's llama_ftype for a file whose matrices are mostly `t`. */
static uint32_t file_type(int t) {
    switch (t) {
    case DUET_QTYPE_F32: return 0;
    case DUET_QTYPE_F16: return 1;
    case DUET_QTYPE_Q4_0: return 2;
    case DUET_QTYPE_Q4_1: return 3;
    case DUET_QTYPE_Q8_0: return 7;
    case DUET_QTYPE_Q5_0: return 8;
    case DUET_QTYPE_Q5_1: return 9;
    case DUET_QTYPE_Q4_K: return 14; /* Q4_K_S */
    case DUET_QTYPE_Q5_K: return 16; /* Q5_K_S */
    case DUET_QTYPE_Q6_K: return 18;
    case DUET_QTYPE_BF16: return 32;
    default: return 0;
    }
}

static int writable_type(int t) {
    return duet_qtype_supported(t) && t != DUET_QTYPE_Q8_K;
}

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others
 * for 256, 257, ... in byte order. Writes byte b's UTF-8 into out; returns
 * its length. */
static int byte_level_char(unsigned b, char *out) {
    unsigned cp = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
        unsigned n = 0;
        for (unsigned c = 0; c < b; c++)
            if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)))
                n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* ==== tokenizer metadata ================================================== */

/* Adds tokenizer.ggml.* for duet's byte-level BPE (or a GPT-2 kind) padded to
 * V ids. All strings go into one pool (freed by the caller after writing). */
static duet_status add_tokenizer(duet_gguf_writer *w, const duet_tokenizer *tok, int64_t V,
                                 const char *path, char **pool_out, char ***strs_out) {
    const duet_tokenizer_kind kind = duet_tokenizer_get_kind(tok);
    if (kind == DUET_TOKENIZER_SPM)
        return duet_set_error(DUET_ERR_UNSUPPORTED, "%s: writing a SentencePiece vocabulary to "
                              "GGUF is not supported", path);
    const int64_t NT = duet_tokenizer_vocab_size(tok), NM = duet_tokenizer_n_merges(tok);
    if (NT > V)
        return duet_set_error(DUET_ERR_ARG, "%s: the tokenizer has %lld ids, the model %lld",
                              path, (long long)NT, (long long)V);
    /* sizes: each byte at most 2 UTF-8 bytes */
    int64_t bytes = 0;
    for (int32_t id = 0; id < NT; id++) {
        int64_t len = 0;
        duet_tokenizer_id_to_token(tok, id, &len);
        bytes += 2 * len + 1;
    }
    bytes += (V - NT) * 32;
    for (int64_t r = 0; r < NM; r++) {
        int32_t l, rr, o;
        duet_bpe_merge(tok, r, &l, &rr, &o);
        int64_t a = 0, b = 0;
        duet_tokenizer_id_to_token(tok, l, &a);
        duet_tokenizer_id_to_token(tok, rr, &b);
        bytes += 2 * (a + b) + 2;
    }
    char *pool = duet_alloc((size_t)bytes + 1);
    char **strs = duet_alloc((size_t)(V + NM + 1) * sizeof *strs);
    int64_t *lens = duet_alloc((size_t)(V + NM + 1) * sizeof *lens);
    int32_t *types = duet_alloc((size_t)V * sizeof *types);
    *pool_out = pool;
    *strs_out = strs;
    if (!pool || !strs || !lens || !types) {
        duet_free(lens);
        duet_free(types);
        return duet_set_error(DUET_ERR_NOMEM, "%s: out of memory", path);
    }
    int64_t o = 0;
    for (int32_t id = 0; id < V; id++) {
        strs[id] = pool + o;
        if (id >= NT) {
            o += snprintf(pool + o, 32, "<|duet_unused_%d|>", (int)id);
            types[id] = DUET_TOKEN_UNUSED;
        } else {
            int64_t len = 0;
            const char *s = duet_tokenizer_id_to_token(tok, id, &len);
            duet_token_type ty = duet_tokenizer_token_type(tok, id);
            if (ty == DUET_TOKEN_CONTROL || ty == DUET_TOKEN_USER_DEFINED) {
                memcpy(pool + o, s, (size_t)len);
                o += len;
            } else {
                for (int64_t i = 0; i < len; i++) o += byte_level_char((unsigned char)s[i], pool + o);
                if (ty != DUET_TOKEN_UNUSED && ty != DUET_TOKEN_UNKNOWN) ty = DUET_TOKEN_NORMAL;
            }
            types[id] = ty;
        }
        lens[id] = pool + o - strs[id];
    }
    for (int64_t r = 0; r < NM; r++) {
        int32_t l, rr, out;
        duet_bpe_merge(tok, r, &l, &rr, &out);
        char *m = strs[V + r] = pool + o;
        for (int side = 0; side < 2; side++) {
            int64_t len = 0;
            const char *s = duet_tokenizer_id_to_token(tok, side ? rr : l, &len);
            if (side) pool[o++] = ' ';
            for (int64_t i = 0; i < len; i++) o += byte_level_char((unsigned char)s[i], pool + o);
        }
        lens[V + r] = pool + o - m;
    }
    duet_status st = duet_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", -1);
    if (st == DUET_OK) st = duet_gguf_writer_add_str(w, "tokenizer.ggml.pre", "gpt-2", -1);
    if (st == DUET_OK)
        st = duet_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs,
                                          lens, V);
    if (st == DUET_OK)
        st = duet_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", DUET_GGUF_TYPE_INT32, types,
                                      V);
    if (st == DUET_OK)
        st = duet_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges",
                                          (const char *const *)strs + V, lens + V, NM);
    const int32_t bos = duet_tokenizer_bos(tok), eos = duet_tokenizer_eos(tok);
    const int32_t pad = duet_tokenizer_pad(tok);
    if (st == DUET_OK && bos >= 0)
        st = duet_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (st == DUET_OK && eos >= 0)
        st = duet_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (st == DUET_OK && pad >= 0)
        st = duet_gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad);
    if (st == DUET_OK) st = duet_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 0);
    duet_free(lens);
    duet_free(types);
    return st;
}

/* ==== duet model -> GGUF ================================================== */

/* Quantizes rows x cols f32 into a new buffer of type t (NULL + error). */
static void *quantize_matrix(int t, const float *x, int64_t rows, int64_t cols) {
    const int64_t rb = duet_qtype_row_bytes(t, cols);
    uint8_t *q = duet_alloc((size_t)(rb * rows) + 1);
    if (!q) {
        duet_set_error(DUET_ERR_NOMEM, "out of memory quantizing a %lld x %lld matrix",
                       (long long)rows, (long long)cols);
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++)
        if (duet_quantize_row((duet_qtype)t, x + r * cols, q + r * rb, cols) != DUET_OK) {
            duet_free(q);
            return NULL;
        }
    return q;
}

duet_status duet_tf_save_gguf(const duet_tf *mc, const duet_tokenizer *tok, const char *path,
                              int qtype, const char *name) {
    duet_tf *m = (duet_tf *)(uintptr_t)mc; /* read only: the list getter is not const */
    if (duet_tf_is_external(m))
        return duet_set_error(DUET_ERR_UNSUPPORTED, "writing %s: the model was opened from "
                              "another program's file; to change a GGUF's types use duet "
                              "quantize", path);
    if (!writable_type(qtype))
        return duet_set_error(DUET_ERR_ARG, "writing %s: weight type %s cannot be written (use "
                              "f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_K q5_K q6_K)", path,
                              duet_qtype_name(qtype) ? duet_qtype_name(qtype) : "unknown");
    const duet_tf_params *p = duet_tf_config(m);
    const char *arch = duet_tf_arch_name(p->arch);
    const int gpt2 = p->arch == DUET_TF_ARCH_GPT2;
    if (gpt2 && p->kv_heads != p->heads)
        return duet_set_error(DUET_ERR_UNSUPPORTED, "writing %s: GGUF gpt2 fuses q, k, v and "
                              "needs kv_heads == heads (the model has %lld and %lld)", path,
                              (long long)p->kv_heads, (long long)p->heads);
    int nt = 0;
    duet_tensor **list = duet_tf_params_list(m, &nt);
    duet_gguf_writer *w = duet_gguf_writer_new();
    void **bufs = duet_calloc((size_t)nt + 1, sizeof *bufs);
    char *pool = NULL, **strs = NULL;
    if (!w || !bufs) {
        duet_gguf_writer_free(w);
        duet_free(bufs);
        return duet_set_error(DUET_ERR_NOMEM, "writing %s: out of memory", path);
    }
    char key[128];
    const int64_t HS = p->dim / p->heads;
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    duet_status st = duet_gguf_writer_add_str(w, "general.architecture", arch, -1);
    if (st == DUET_OK) st = duet_gguf_writer_add_str(w, "general.name", name ? name : "duet", -1);
    if (st == DUET_OK) st = duet_gguf_writer_add_u32(w, "general.file_type", file_type(qtype));
    if (st == DUET_OK) st = duet_gguf_writer_add_u32(w, KEY("context_length"), (uint32_t)p->ctx);
    if (st == DUET_OK) st = duet_gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)p->dim);
    if (st == DUET_OK) st = duet_gguf_writer_add_u32(w, KEY("block_count"), (uint32_t)p->layers);
    if (st == DUET_OK)
        st = duet_gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)p->hidden);
    if (st == DUET_OK)
        st = duet_gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)p->heads);
    if (st == DUET_OK) st = duet_gguf_writer_add_u32(w, KEY("vocab_size"), (uint32_t)p->vocab);
    if (gpt2) {
        if (st == DUET_OK)
            st = duet_gguf_writer_add_f32(w, KEY("attention.layer_norm_epsilon"), p->norm_eps);
    } else {
        if (st == DUET_OK)
            st = duet_gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)p->kv_heads);
        if (st == DUET_OK)
            st = duet_gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t)HS);
        if (st == DUET_OK) st = duet_gguf_writer_add_f32(w, KEY("rope.freq_base"), p->rope_theta);
        if (st == DUET_OK)
            st = duet_gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), p->norm_eps);
    }
#undef KEY
    if (st == DUET_OK && tok) st = add_tokenizer(w, tok, p->vocab, path, &pool, &strs);

    /* tensors: 1-D f32 as they are, matrices in qtype (f32 where rows do not split) */
    for (int i = 0; i < nt && st == DUET_OK; i++) {
        const duet_tensor *t = list[i];
        char gname[96];
        int slice;
        if (loaders_gguf_name(p->arch, t->name, gname, sizeof gname, &slice)) {
            st = duet_set_error(DUET_ERR_INTERNAL, "writing %s: no GGUF name for '%s'", path,
                                t->name);
            break;
        }
        if (slice > 0) continue; /* k and v went out with q */
        const float *data = t->data;
        const int64_t cols = t->shape[t->ndim - 1];
        int64_t rows = t->ndim == 2 ? t->shape[0] : 1;
        if (slice == 0) { /* gpt2: q | k | v into one tensor */
            const int64_t n = rows * cols;
            float *f = duet_alloc((size_t)(3 * n) * sizeof(float));
            if (!f) {
                st = duet_set_error(DUET_ERR_NOMEM, "writing %s: out of memory", path);
                break;
            }
            for (int k = 0; k < 3; k++) {
                char part[64];
                snprintf(part, sizeof part, "%s", t->name);
                char *x = strstr(part, ".wq.");
                x[2] = "qkv"[k];
                const duet_tensor *src = duet_tf_find(m, part);
                memcpy(f + k * n, src->data, (size_t)n * sizeof(float));
            }
            bufs[i] = f;
            data = f;
            if (t->ndim == 2) rows *= 3;
        }
        int ty = DUET_QTYPE_F32;
        const void *bytes = data;
        if (t->ndim == 2 && strcmp(t->name, "pos_embeddings.weight") != 0 &&
            cols % duet_qtype_block_size(qtype) == 0 && qtype != DUET_QTYPE_F32) {
            void *q = quantize_matrix(qtype, data, rows, cols);
            if (!q) {
                st = DUET_ERR_NOMEM;
                break;
            }
            duet_free(bufs[i]);
            bufs[i] = q;
            bytes = q;
            ty = qtype;
        }
        int64_t ne[2] = {slice == 0 && t->ndim == 1 ? 3 * cols : cols, rows};
        st = duet_gguf_writer_add_tensor(w, gname, (duet_qtype)ty, t->ndim, ne, bytes);
    }
    if (st == DUET_OK) st = duet_gguf_writer_write(w, path);
    for (int i = 0; i < nt; i++) duet_free(bufs[i]);
    duet_free(bufs);
    duet_free(pool);
    duet_free(strs);
    duet_gguf_writer_free(w);
    return st;
}

/* ==== GGUF -> GGUF ======================================================== */

/* llama.cpp's use_more_bits(i_layer, n_layers) (llama-quant.cpp). */
static int use_more_bits(int64_t i, int64_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* The type the Q4_K_M mix gives tensor `name` (llama_tensor_get_type for
 * LLAMA_FTYPE_MOSTLY_Q4_K_M, dense models): attn_v and ffn_down count their
 * tensors in file order (i_attention_wv / i_ffn_down) out of n_v / n_down. */
static int q4_k_m_type(const char *name, int has_output, int64_t *i_v, int64_t n_v,
                       int64_t *i_down, int64_t n_down) {
    if (strcmp(name, "output.weight") == 0 || (!has_output && strcmp(name, "token_embd.weight") == 0))
        return DUET_QTYPE_Q6_K;
    if (strstr(name, "attn_v.weight")) return use_more_bits((*i_v)++, n_v) ? DUET_QTYPE_Q6_K : DUET_QTYPE_Q4_K;
    if (strstr(name, "ffn_down")) return use_more_bits((*i_down)++, n_down) ? DUET_QTYPE_Q6_K : DUET_QTYPE_Q4_K;
    if (strstr(name, "attn_qkv.weight")) return DUET_QTYPE_Q5_K;
    return DUET_QTYPE_Q4_K;
}

duet_status duet_gguf_requantize(const char *in, const char *out, int qtype) {
    const int mix = qtype == DUET_QUANT_MIX_Q4_K_M;
    if (mix) qtype = DUET_QTYPE_Q4_K;
    if (!writable_type(qtype))
        return duet_set_error(DUET_ERR_ARG, "quantize: type %s cannot be written (use f32 f16 "
                              "bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_K q5_K q6_K)",
                              duet_qtype_name(qtype) ? duet_qtype_name(qtype) : "unknown");
    duet_gguf *g = duet_gguf_open(in);
    if (!g) return DUET_ERR_FORMAT;
    const int64_t nt = duet_gguf_tensor_count(g), nkv = duet_gguf_kv_count(g);
    duet_gguf_writer *w = duet_gguf_writer_new();
    void **bufs = duet_calloc((size_t)nt + 1, sizeof *bufs);
    float *row = NULL;
    duet_status st = w && bufs ? DUET_OK : duet_set_error(DUET_ERR_NOMEM, "quantize: out of memory");
    if (st == DUET_OK && duet_gguf_find_key(g, "general.alignment") >= 0)
        st = duet_gguf_writer_set_alignment(w, duet_gguf_alignment(g));
    for (int64_t i = 0; i < nkv && st == DUET_OK; i++) {
        const char *k = duet_gguf_kv_key(g, i);
        if (strcmp(k, "general.file_type") == 0 || strcmp(k, "general.alignment") == 0) continue;
        st = duet_gguf_writer_copy_kv(w, g, i);
    }
    if (st == DUET_OK) st = duet_gguf_writer_add_u32(w, "general.file_type", mix ? 15 : file_type(qtype));
    int64_t rowcap = 0, i_v = 0, n_v = 0, i_down = 0, n_down = 0;
    int has_output = 0;
    for (int64_t i = 0; i < nt; i++) { /* the matrices the counters run over */
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        if (t->n_dims < 2) continue;
        n_v += strstr(t->name, "attn_v.weight") != NULL;
        n_down += strstr(t->name, "ffn_down") != NULL;
        has_output |= strcmp(t->name, "output.weight") == 0;
    }
    for (int64_t i = 0; i < nt && st == DUET_OK; i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        int ty = t->type;
        const int64_t cols = t->ne[0], rows = cols ? t->numel / cols : 0;
        /* matrices only; position tables stay (llama.cpp keeps them too) */
        if (t->n_dims >= 2 && writable_type(t->type) && rows > 0 &&
            strcmp(t->name, "position_embd.weight") != 0) {
            const int want = mix ? q4_k_m_type(t->name, has_output, &i_v, n_v, &i_down, n_down) : qtype;
            if (cols % duet_qtype_block_size(want) == 0) ty = want;
            else if (cols % 32 == 0) ty = DUET_QTYPE_Q8_0; /* K-quant rows that do not split */
        }
        const void *data = t->data;
        if (ty != (int)t->type) {
            if (cols > rowcap) {
                duet_free(row);
                rowcap = cols;
                row = duet_alloc((size_t)cols * sizeof(float));
            }
            const int64_t srb = duet_qtype_row_bytes(t->type, cols), drb = duet_qtype_row_bytes(ty, cols);
            uint8_t *q = duet_alloc((size_t)(drb * rows) + 1);
            if (!row || !q) {
                duet_free(q);
                st = duet_set_error(DUET_ERR_NOMEM, "quantize: out of memory for tensor '%s'",
                                    t->name);
                break;
            }
            bufs[i] = q;
            for (int64_t r = 0; r < rows && st == DUET_OK; r++) {
                st = duet_dequantize_row(t->type, (const uint8_t *)t->data + r * srb, row, cols);
                if (st == DUET_OK) st = duet_quantize_row((duet_qtype)ty, row, q + r * drb, cols);
            }
            data = q;
        }
        if (st == DUET_OK)
            st = duet_gguf_writer_add_tensor(w, t->name, (duet_qtype)ty, t->n_dims, t->ne, data);
    }
    if (st == DUET_OK) st = duet_gguf_writer_write(w, out);
    for (int64_t i = 0; i < nt; i++) duet_free(bufs ? bufs[i] : NULL);
    duet_free(bufs);
    duet_free(row);
    duet_gguf_writer_free(w);
    duet_gguf_close(g);
    return st;
}
