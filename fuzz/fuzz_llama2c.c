/*
 * fuzz_llama2c.c — libFuzzer target for the llama2.c readers: checkpoints
 * (legacy and version-1 headers, through duet_model_open) and tokenizer.bin
 * (duet_tokenizer_load_llama2c).
 *
 * Both readers take a path, so each input is written to an in-memory file
 * (memfd_create) and opened as /proc/self/fd/N — no disk I/O per run. The
 * first byte picks what the rest is:
 *   even: a checkpoint. When it opens, the model is checked against the
 *         header it came from (vocab) and one token is fed through it, which
 *         reads every weight view the loader made (a view past the end of
 *         the mapping is an ASan report);
 *   odd:  a tokenizer.bin of 3 + (byte >> 1) tokens. When it loads, a short
 *         text is encoded and the ids decoded back.
 * Failures must leave a message (duet_last_error) and no object. Seeds:
 * fuzz/seeds/llama2c (see fuzz/README.md). Not a test of the numbers (that
 * is tests/test_loaders.c).
 */
#include "duet.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The bytes as a file; its /proc path in `path`. -1 on failure. */
static int as_file(const uint8_t *data, size_t size, char *path, size_t cap) {
    const int fd = memfd_create("fuzz_llama2c", 0);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        const ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

static void fuzz_checkpoint(const char *path) {
    duet_model_params mp;
    duet_model_params_default(&mp);
    mp.ctx = 8; /* the header's seq_len may be huge: keep the KV cache small */
    duet_clear_error();
    duet_model *m = duet_model_open(path, &mp);
    if (!m) {
        if (!*duet_last_error()) __builtin_trap(); /* a failure names its reason */
        return;
    }
    const duet_tf_params *p = duet_tf_config(m->tf);
    if (p->vocab < 1 || p->dim < 1 || p->layers < 1) __builtin_trap();
    /* one token through every layer touches every weight view; the sizes a
     * file this small can declare keep this cheap */
    if (p->vocab * p->dim <= (1 << 16) && p->hidden * p->dim <= (1 << 16)) {
        static float logits[1 << 16];
        const int32_t id = (int32_t)(p->vocab - 1);
        if (p->vocab <= (1 << 16) && duet_tf_feed(m->tf, &id, 1, logits, 0) == DUET_OK)
            (void)(volatile float)logits[0];
    }
    duet_model_free(m);
}

static void fuzz_tokenizer(const char *path, int64_t n_vocab) {
    duet_clear_error();
    duet_tokenizer *t = duet_tokenizer_load_llama2c(path, n_vocab);
    if (!t) {
        if (!*duet_last_error()) __builtin_trap();
        return;
    }
    static const char text[] = "Once upon a time, \xc3\xa9t\xc3\xa9 <0x0A> \xf0\x9f\x98\x80 x";
    int32_t ids[256];
    const int64_t n = duet_tokenizer_encode(t, text, (int64_t)sizeof text - 1, 0, ids, 256);
    if (n > 0) {
        char buf[1024];
        for (int64_t i = 0; i < n && i < 256; i++)
            if (ids[i] < 0 || ids[i] >= n_vocab) __builtin_trap();
        (void)duet_tokenizer_decode(t, ids, n < 256 ? n : 256, buf, (int64_t)sizeof buf);
    }
    for (int32_t id = 0; id < n_vocab; id++) {
        char piece[64];
        (void)duet_tokenizer_decode_one(t, id, piece, (int64_t)sizeof piece);
    }
    duet_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int inited;
    if (!inited) {
        duet_init(); /* kernels and threads, as every program using duet does */
        duet_set_threads(1);
        inited = 1;
    }
    if (size < 1) return 0;
    char path[64];
    const int fd = as_file(data + 1, size - 1, path, sizeof path);
    if (fd < 0) return 0;
    if (data[0] & 1) fuzz_tokenizer(path, 3 + (data[0] >> 1));
    else fuzz_checkpoint(path);
    close(fd);
    return 0;
}
