/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader (and the writer's raw
 * value checker). Every input is opened from memory; when it opens, every
 * metadata value (nested arrays included) is read through the typed
 * getters, every tensor's last byte is touched, small tensors of supported
 * types are dequantized and, when 2-D, multiplied by a vector. ASan and
 * UBSan (make fuzz) turn any over-read or undefined behaviour into a crash.
 * Build and run: see fuzz/README.md.
 */
#include "duet.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static float scratch[1 << 16], vec[1 << 12], out[1 << 12];

static void walk_value(const duet_gguf *g, const duet_gguf_value *v) {
    int64_t i64, len;
    uint64_t u;
    double d;
    int b;
    const char *s;
    switch (v->type) {
    case DUET_GGUF_TYPE_STRING:
        if (duet_gguf_value_str(g, v, &s, &len) == DUET_OK && len > 0) (void)(volatile char)s[len - 1];
        break;
    case DUET_GGUF_TYPE_ARRAY:
        for (int64_t i = 0; i < v->count && i < 256; i++) {
            duet_gguf_value e;
            if (duet_gguf_value_elem(g, v, i, &e) == DUET_OK) walk_value(g, &e);
        }
        if (v->count > 256) {
            duet_gguf_value e;
            if (duet_gguf_value_elem(g, v, v->count - 1, &e) == DUET_OK) walk_value(g, &e);
        }
        break;
    case DUET_GGUF_TYPE_BOOL: (void)duet_gguf_value_bool(g, v, &b); break;
    default:
        (void)duet_gguf_value_int(g, v, &i64);
        (void)duet_gguf_value_u64(g, v, &u);
        (void)duet_gguf_value_float(g, v, &d);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int inited;
    if (!inited) {
        duet_init();
        duet_set_threads(1);
        for (int i = 0; i < (1 << 12); i++) vec[i] = (float)(i % 7) - 3.0f;
        inited = 1;
    }
    duet_gguf *g = duet_gguf_open_memory("fuzz", data, size);
    if (g) {
        for (int64_t i = 0; i < duet_gguf_kv_count(g); i++) {
            duet_gguf_value v = duet_gguf_kv_value(g, i);
            walk_value(g, &v);
            (void)duet_gguf_find_key(g, duet_gguf_kv_key(g, i));
        }
        const char *s;
        int64_t n;
        float f8[8];
        int32_t i8[8];
        (void)duet_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 0, &s, &n);
        (void)duet_gguf_get_arr_f32(g, "tokenizer.ggml.scores", f8, 8);
        (void)duet_gguf_get_arr_i32(g, "tokenizer.ggml.token_type", i8, 8);
        for (int64_t i = 0; i < duet_gguf_tensor_count(g); i++) {
            const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
            if (duet_gguf_find_tensor(g, t->name) == NULL) __builtin_trap();
            if (t->nbytes > 0) (void)(volatile uint8_t)((const uint8_t *)t->data)[t->nbytes - 1];
            if (!duet_qtype_supported(t->type) || t->numel > (1 << 16)) continue;
            (void)duet_dequantize_row(t->type, t->data, scratch, t->numel);
            if (t->n_dims == 2 && t->ne[0] <= (1 << 12) && t->ne[1] <= (1 << 12) &&
                t->type != DUET_QTYPE_Q8_K)
                (void)duet_quant_matvec(t->type, t->data, t->ne[1], t->ne[0], vec, out, NULL);
        }
        duet_gguf_close(g);
    }
    /* the writer's check of raw value encodings runs the same value parser */
    if (size >= 1) {
        duet_gguf_writer *w = duet_gguf_writer_new();
        (void)duet_gguf_writer_add_raw(w, "k", (duet_gguf_type)(data[0] % DUET_GGUF_TYPE_COUNT),
                                       data + 1, size - 1);
        duet_gguf_writer_free(w);
    }
    return 0;
}
