/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors reader
 * (duet_st_open_memory). When an input opens, every tensor view is built,
 * its last byte touched, small float tensors converted to f32, and the
 * metadata read. ASan and UBSan (make fuzz) turn any over-read or undefined
 * behaviour into a crash. Build and run: see fuzz/README.md.
 */
#include "duet.h"
#include "formats/formats.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static float scratch[1 << 16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    duet_st *st = NULL;
    const duet_status s = duet_st_open_memory("fuzz", data, size, &st);
    if (s != DUET_OK) {
        if (st || !*duet_last_error()) __builtin_trap(); /* failures leave a message, no handle */
        return 0;
    }
    for (int i = 0; i < duet_st_count(st); i++) {
        const char *name = duet_st_name(st, i);
        if (duet_st_find(st, name) != i) __builtin_trap();
        duet_tensor t;
        if (duet_st_tensor(st, i, &t) != DUET_OK) continue;
        const size_t nb = duet_tensor_nbytes(&t);
        if (nb > 0) (void)(volatile uint8_t)((const uint8_t *)t.data)[nb - 1];
        const int64_t n = duet_tensor_numel(&t);
        if (n <= (1 << 16) && (t.dtype == DUET_DTYPE_F32 || t.dtype == DUET_DTYPE_F16 ||
                               t.dtype == DUET_DTYPE_BF16))
            (void)duet_st_read_f32(st, name, scratch, n);
    }
    for (int i = 0; i < duet_st_meta_count(st); i++) {
        const char *k = duet_st_meta_key(st, i);
        const char *v = k ? duet_st_meta(st, k) : NULL;
        if (v) (void)(volatile size_t)strlen(v);
    }
    duet_st_close(st);
    return 0;
}
