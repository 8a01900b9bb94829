/*
 * test_gguf.c — the GGUF reader and writer against files written from the
 * spec by tests/ref/gen_gguf.py (struct + numpy, independent of duet):
 *  - gguf_all.gguf: every metadata type and value, arrays of every type,
 *    nested arrays, every tensor type's bytes and dequantized values
 *    (numpy's), data placed out of order with a gap;
 *  - gguf_align64.gguf: version 2, alignment 64;
 *  - gguf_golden.gguf: the exact bytes duet's writer must produce;
 *  - gguf_bad_*.gguf: each malformation gives the expected status and a
 *    message naming the file, the byte and the field;
 *  - every truncation of gguf_all and a few thousand random byte flips
 *    never crash (run it under ASan: make asan);
 *  - writer round trip (copy every KV and tensor, write, read back), writer
 *    argument checks, a GGUF tensor fed to duet_quant_matvec.
 */
#include "testutil.h"

#include "formats/gguf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *fixture_path(const char *name) {
    static char buf[4][512];
    static int k;
    const char *dir = getenv("DUET_FIXTURES");
    char *b = buf[k++ & 3];
    snprintf(b, 512, "%s/%s", dir && *dir ? dir : "tests/fixtures", name);
    return b;
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)len + 1);
    *n = fread(d, 1, (size_t)len, f);
    fclose(f);
    return d;
}

/* ======================================================================== */
/* gguf_all.gguf                                                             */
/* ======================================================================== */

static void check_int(duet_gguf *g, const char *key, int64_t want) {
    int64_t v = 0;
    duet_status s = duet_gguf_get_int(g, key, &v);
    T_CHECK(s == DUET_OK && v == want, "%s = %lld (got %lld, %s)", key, (long long)want,
            (long long)v, duet_last_error());
}

static void check_str(duet_gguf *g, const char *key, const char *want, int64_t wlen) {
    const char *s = NULL;
    int64_t len = -1;
    duet_status st = duet_gguf_get_str(g, key, &s, &len);
    T_CHECK(st == DUET_OK && len == wlen && memcmp(s, want, (size_t)wlen) == 0, "%s string", key);
}

static void test_metadata(duet_gguf *g) {
    T_CHECK(duet_gguf_version(g) == 3 && duet_gguf_alignment(g) == 32, "gguf_all: v3, alignment 32");
    T_CHECK(duet_gguf_kv_count(g) == 35, "gguf_all: 35 KVs (%lld)", (long long)duet_gguf_kv_count(g));
    T_CHECK(strcmp(duet_gguf_kv_key(g, 0), "general.architecture") == 0 &&
                strcmp(duet_gguf_kv_key(g, 34), "llama.rope.freq_base") == 0 && !duet_gguf_kv_key(g, 35),
            "KV keys in file order");
    check_str(g, "general.architecture", "llama", 5);
    check_str(g, "general.name", "duet test \xc3\xbc" "n\xc3\xaf" "code", 19);
    check_str(g, "t.str_empty", "", 0);
    check_str(g, "t.str_nul", "a\0b", 3);
    check_int(g, "t.u8", 200);
    check_int(g, "t.i8", -100);
    check_int(g, "t.u16", 60000);
    check_int(g, "t.i16", -30000);
    check_int(g, "t.u32", 4000000000ll);
    check_int(g, "t.i32", -2000000000ll);
    check_int(g, "t.i64", INT64_MIN);
    check_int(g, "llama.context_length", 4096);
    uint64_t u = 0;
    duet_gguf_value v = duet_gguf_kv_value(g, duet_gguf_find_key(g, "t.u64"));
    T_CHECK(v.type == DUET_GGUF_TYPE_UINT64 && duet_gguf_value_u64(g, &v, &u) == DUET_OK &&
                u == UINT64_MAX, "t.u64 = 2^64-1 via value_u64");
    int64_t i64;
    T_CHECK(duet_gguf_get_int(g, "t.u64", &i64) == DUET_ERR_FORMAT &&
                strstr(duet_last_error(), "t.u64") && strstr(duet_last_error(), "int64"),
            "get_int refuses 2^64-1: %s", duet_last_error());
    v = duet_gguf_kv_value(g, duet_gguf_find_key(g, "t.i8"));
    T_CHECK(duet_gguf_value_u64(g, &v, &u) == DUET_ERR_FORMAT, "value_u64 refuses a negative");
    double d = 0;
    T_CHECK(duet_gguf_get_float(g, "t.f32", &d) == DUET_OK && d == 3.25, "t.f32 = 3.25");
    T_CHECK(duet_gguf_get_float(g, "t.f64", &d) == DUET_OK && d == -1.5e300, "t.f64");
    T_CHECK(duet_gguf_get_float(g, "llama.rope.freq_base", &d) == DUET_OK && d == 10000.0, "freq_base");
    T_CHECK(duet_gguf_get_float(g, "t.i16", &d) == DUET_OK && d == -30000.0, "get_float converts ints");
    int b = -1;
    T_CHECK(duet_gguf_get_bool(g, "t.bool_t", &b) == DUET_OK && b == 1, "bool true");
    T_CHECK(duet_gguf_get_bool(g, "t.bool_f", &b) == DUET_OK && b == 0, "bool false");
    /* wrong types and missing keys name the file and the key */
    const char *s;
    int64_t len;
    T_CHECK(duet_gguf_get_str(g, "t.u8", &s, &len) == DUET_ERR_FORMAT &&
                strstr(duet_last_error(), "gguf_all.gguf") && strstr(duet_last_error(), "'t.u8'") &&
                strstr(duet_last_error(), "uint8"), "string getter on a uint8: %s", duet_last_error());
    T_CHECK(duet_gguf_get_int(g, "no.such.key", &i64) == DUET_ERR_FORMAT &&
                strstr(duet_last_error(), "no metadata key 'no.such.key'"), "missing key: %s",
            duet_last_error());
    T_CHECK(duet_gguf_get_bool(g, "t.u8", &b) == DUET_ERR_FORMAT, "bool getter on a uint8");
    T_CHECK(duet_gguf_get_int(g, "t.f32", &i64) == DUET_ERR_FORMAT, "int getter on a float");
    T_CHECK(duet_gguf_find_key(g, "t.deep") >= 0 && duet_gguf_find_key(g, "t.dee") < 0, "find_key");

    /* tokenizer arrays */
    duet_gguf_type et;
    int64_t n;
    T_CHECK(duet_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) == DUET_OK &&
                et == DUET_GGUF_TYPE_STRING && n == 8, "tokens: 8 strings");
    static const char *tokens[] = {"<unk>", "<s>", "</s>", "a", " the", "", "\xc3\xbc", "<0x0A>"};
    int ok = 1;
    for (int i = 0; i < 8; i++)
        ok &= duet_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len) == DUET_OK &&
              len == (int64_t)strlen(tokens[i]) && memcmp(s, tokens[i], (size_t)len) == 0;
    T_CHECK(ok, "every token string");
    T_CHECK(duet_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 8, &s, &len) == DUET_ERR_ARG,
            "element past the end is DUET_ERR_ARG");
    T_CHECK(duet_gguf_get_arr_str(g, "tokenizer.ggml.merges", 1, &s, &len) == DUET_OK && len == 5 &&
                memcmp(s, " t he", 5) == 0, "merges[1]");
    float scores[8];
    static const float want_scores[8] = {0.0f, -1.5f, -2.0f, -3.25f, -4.0f, -5.5f, -6.0f, -1e9f};
    T_CHECK(duet_gguf_get_arr_f32(g, "tokenizer.ggml.scores", scores, 8) == DUET_OK &&
                memcmp(scores, want_scores, sizeof scores) == 0, "scores as f32");
    T_CHECK(duet_gguf_get_arr_f32(g, "tokenizer.ggml.scores", scores, 7) == DUET_ERR_FORMAT,
            "bulk copy checks the length");
    int32_t tt[8];
    static const int32_t want_tt[8] = {2, 3, 3, 1, 1, 1, 1, 6};
    T_CHECK(duet_gguf_get_arr_i32(g, "tokenizer.ggml.token_type", tt, 8) == DUET_OK &&
                memcmp(tt, want_tt, sizeof tt) == 0, "token_type as i32");
    T_CHECK(duet_gguf_get_arr_f32(g, "tokenizer.ggml.token_type", scores, 8) == DUET_OK &&
                scores[7] == 6.0f, "int array as f32");
    int32_t two[2];
    T_CHECK(duet_gguf_get_arr_i32(g, "t.arr_u32", two, 2) == DUET_ERR_FORMAT &&
                strstr(duet_last_error(), "int32"), "i32 copy range-checks 4294967295");
    T_CHECK(duet_gguf_get_arr_i32(g, "tokenizer.ggml.scores", tt, 8) == DUET_ERR_FORMAT,
            "i32 copy refuses floats");
    T_CHECK(duet_gguf_get_arr_f32(g, "tokenizer.ggml.tokens", scores, 8) == DUET_ERR_FORMAT,
            "f32 copy refuses strings");

    /* arrays of every scalar type, element by element */
    static const struct { const char *key; int n; int64_t v[3]; } ia[] = {
        {"t.arr_u8", 3, {0, 1, 255}},        {"t.arr_i8", 3, {-128, 0, 127}},
        {"t.arr_u16", 2, {65535, 1}},        {"t.arr_i16", 2, {-32768, 32767}},
        {"t.arr_u32", 2, {4294967295ll, 7}}, {"t.arr_i64", 2, {INT64_MIN, INT64_MAX}},
        {"t.arr_bool", 3, {1, 0, 1}},
    };
    for (size_t k = 0; k < sizeof ia / sizeof ia[0]; k++) {
        ok = duet_gguf_get_arr(g, ia[k].key, &et, &n) == DUET_OK && n == ia[k].n;
        for (int i = 0; ok && i < ia[k].n; i++) {
            int64_t x = 0;
            if (et == DUET_GGUF_TYPE_BOOL) {
                duet_gguf_value arr = duet_gguf_kv_value(g, duet_gguf_find_key(g, ia[k].key)), e;
                int bb = -1;
                ok &= duet_gguf_value_elem(g, &arr, i, &e) == DUET_OK &&
                      duet_gguf_value_bool(g, &e, &bb) == DUET_OK && bb == ia[k].v[i];
            } else {
                ok &= duet_gguf_get_arr_int(g, ia[k].key, i, &x) == DUET_OK && x == ia[k].v[i];
            }
        }
        T_CHECK(ok, "%s elements", ia[k].key);
    }
    duet_gguf_value a64 = duet_gguf_kv_value(g, duet_gguf_find_key(g, "t.arr_u64")), e;
    T_CHECK(duet_gguf_value_elem(g, &a64, 0, &e) == DUET_OK && duet_gguf_value_u64(g, &e, &u) == DUET_OK &&
                u == UINT64_MAX && duet_gguf_value_elem(g, &a64, 1, &e) == DUET_OK &&
                duet_gguf_value_u64(g, &e, &u) == DUET_OK && u == (1ull << 63), "t.arr_u64 elements");
    T_CHECK(duet_gguf_get_arr_float(g, "t.arr_f64", 0, &d) == DUET_OK && d == 0.1 &&
                duet_gguf_get_arr_float(g, "t.arr_f64", 1, &d) == DUET_OK && d == -2.5, "t.arr_f64");
    T_CHECK(duet_gguf_get_arr(g, "t.arr_empty", &et, &n) == DUET_OK && n == 0 &&
                et == DUET_GGUF_TYPE_UINT32, "empty array");

    /* nested arrays: [[1,2,3],[],[4]] of int16, [["x","yy"],["zzz"]] */
    duet_gguf_value nest = duet_gguf_kv_value(g, duet_gguf_find_key(g, "t.nested")), sub, leaf;
    static const int want_len[3] = {3, 0, 1};
    static const int64_t want_v[3][3] = {{1, 2, 3}, {0}, {4}};
    ok = nest.type == DUET_GGUF_TYPE_ARRAY && nest.elem_type == DUET_GGUF_TYPE_ARRAY && nest.count == 3;
    for (int i = 0; ok && i < 3; i++) {
        ok &= duet_gguf_value_elem(g, &nest, i, &sub) == DUET_OK && sub.type == DUET_GGUF_TYPE_ARRAY &&
              sub.elem_type == DUET_GGUF_TYPE_INT16 && sub.count == want_len[i];
        for (int j = 0; ok && j < want_len[i]; j++) {
            int64_t x;
            ok &= duet_gguf_value_elem(g, &sub, j, &leaf) == DUET_OK &&
                  duet_gguf_value_int(g, &leaf, &x) == DUET_OK && x == want_v[i][j];
        }
    }
    T_CHECK(ok, "nested int16 arrays");
    nest = duet_gguf_kv_value(g, duet_gguf_find_key(g, "t.nested_str"));
    ok = duet_gguf_value_elem(g, &nest, 0, &sub) == DUET_OK && sub.count == 2 &&
         duet_gguf_value_elem(g, &sub, 1, &leaf) == DUET_OK &&
         duet_gguf_value_str(g, &leaf, &s, &len) == DUET_OK && len == 2 && memcmp(s, "yy", 2) == 0 &&
         duet_gguf_value_elem(g, &nest, 1, &sub) == DUET_OK &&
         duet_gguf_value_elem(g, &sub, 0, &leaf) == DUET_OK &&
         duet_gguf_value_str(g, &leaf, &s, &len) == DUET_OK && len == 3 && memcmp(s, "zzz", 3) == 0;
    T_CHECK(ok, "nested string arrays");
    duet_gguf_value deep = duet_gguf_kv_value(g, duet_gguf_find_key(g, "t.deep"));
    int depth = 1;
    while (ok && deep.type == DUET_GGUF_TYPE_ARRAY && deep.elem_type == DUET_GGUF_TYPE_ARRAY) {
        ok &= deep.count == 1 && duet_gguf_value_elem(g, &deep, 0, &deep) == DUET_OK;
        depth++;
    }
    int64_t seven = 0;
    ok &= depth == 8 && deep.elem_type == DUET_GGUF_TYPE_UINT8 &&
          duet_gguf_value_elem(g, &deep, 0, &leaf) == DUET_OK &&
          duet_gguf_value_int(g, &leaf, &seven) == DUET_OK && seven == 7;
    T_CHECK(ok, "arrays nested 8 deep hold 7 at the bottom (depth %d)", depth);
}

static void check_tensors(duet_gguf *g, t_fix *f, const char *prefix, int64_t count) {
    T_CHECK(duet_gguf_tensor_count(g) == count, "%s: %lld tensors", prefix, (long long)count);
    for (int64_t i = 0; i < duet_gguf_tensor_count(g); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        char key[160];
        int64_t nb = 0, nne = 0, nv = 0;
        snprintf(key, sizeof key, "%s:%s.bytes", prefix, t->name);
        int32_t *bytes = t_fix_i32(f, key, &nb);
        snprintf(key, sizeof key, "%s:%s.ne", prefix, t->name);
        int32_t *ne = t_fix_i32(f, key, &nne);
        snprintf(key, sizeof key, "%s:%s.type", prefix, t->name);
        int32_t *type = t_fix_i32(f, key, NULL);
        if (!bytes || !ne || !type) continue;
        int ok = t->type == (duet_qtype)type[0] && t->n_dims == nne && t->nbytes == nb &&
                 duet_gguf_find_tensor(g, t->name) == t;
        int64_t numel = 1;
        for (int d = 0; d < 4; d++) {
            ok &= t->ne[d] == (d < nne ? ne[d] : 1);
            numel *= t->ne[d];
        }
        ok &= t->numel == numel && t->offset % duet_gguf_alignment(g) == 0;
        const uint8_t *p = t->data;
        for (int64_t k = 0; ok && k < nb; k++) ok &= p[k] == (uint8_t)bytes[k];
        T_CHECK(ok, "%s: tensor %s: type, dims, size, offset alignment and every byte", prefix, t->name);
        snprintf(key, sizeof key, "%s:%s.values", prefix, t->name);
        if (t_fix_has(f, key)) {
            float *want = t_fix_f32(f, key, &nv);
            float *got = malloc((size_t)(numel > 0 ? numel : 1) * sizeof(float));
            duet_status st = duet_dequantize_row(t->type, t->data, got, numel);
            T_CHECK(st == DUET_OK && nv == numel &&
                        (numel == 0 || memcmp(got, want, (size_t)numel * sizeof(float)) == 0),
                    "%s: tensor %s dequantizes bit-exactly to numpy's values", prefix, t->name);
            free(got);
        } else {
            float tmp[256];
            T_CHECK(duet_dequantize_row(t->type, t->data, tmp, 256) == DUET_ERR_UNSUPPORTED,
                    "%s: tensor %s (%s) opens but is not dequantized", prefix, t->name,
                    duet_qtype_name(t->type));
        }
    }
    T_CHECK(duet_gguf_find_tensor(g, "nope") == NULL && duet_gguf_tensor_at(g, count) == NULL,
            "%s: absent tensors are NULL", prefix);
}

static void test_fixture_files(t_fix *f) {
    duet_gguf *g = duet_gguf_open(fixture_path("gguf_all.gguf"));
    T_CHECK(g != NULL, "gguf_all.gguf opens: %s", duet_last_error());
    if (g) {
        test_metadata(g);
        check_tensors(g, f, "all", 13);
        /* data were placed in reverse order after a one-unit gap */
        const duet_gguf_tensor *first = duet_gguf_tensor_at(g, 0), *last = duet_gguf_tensor_at(g, 11);
        T_CHECK(last->offset == 32 && first->offset > last->offset, "out-of-order data with a gap");
        duet_gguf_close(g);
    }
    g = duet_gguf_open(fixture_path("gguf_align64.gguf"));
    T_CHECK(g != NULL, "gguf_align64.gguf opens: %s", duet_last_error());
    if (g) {
        T_CHECK(duet_gguf_version(g) == 2 && duet_gguf_alignment(g) == 64 &&
                    duet_gguf_data_offset(g) % 64 == 0, "v2, alignment 64, data section aligned");
        check_tensors(g, f, "align64", 3);
        duet_gguf_close(g);
    }
    g = duet_gguf_open("/nonexistent/x.gguf");
    T_CHECK(!g && duet_gguf_last_open_status() == DUET_ERR_IO && strstr(duet_last_error(), "/nonexistent/x.gguf"),
            "a missing file is DUET_ERR_IO naming the path");
}

/* ======================================================================== */
/* Malformed files                                                           */
/* ======================================================================== */

/* newline-separated strings stored as i32 bytes */
static char **split_lines(const int32_t *b, int64_t n, int *count) {
    char *s = malloc((size_t)n + 1);
    for (int64_t i = 0; i < n; i++) s[i] = (char)b[i];
    s[n] = 0;
    int c = 1;
    for (int64_t i = 0; i < n; i++) c += s[i] == '\n';
    char **out = malloc((size_t)c * sizeof(char *));
    int k = 0;
    out[k++] = s;
    for (int64_t i = 0; i < n; i++)
        if (s[i] == '\n') s[i] = 0, out[k++] = s + i + 1;
    *count = c;
    return out;
}

static void test_bad_files(t_fix *f) {
    int64_t nn = 0, nw = 0, ns = 0;
    int32_t *nb = t_fix_i32(f, "bad.names", &nn), *wb = t_fix_i32(f, "bad.words", &nw);
    int32_t *status = t_fix_i32(f, "bad.status", &ns);
    if (!nb || !wb || !status) return;
    int cn, cw;
    char **names = split_lines(nb, nn, &cn), **words = split_lines(wb, nw, &cw);
    T_CHECK(cn == cw && cn == ns && cn >= 30, "%d malformed files", cn);
    for (int i = 0; i < cn && i < cw; i++) {
        char file[128];
        snprintf(file, sizeof file, "gguf_bad_%s.gguf", names[i]);
        duet_gguf *g = duet_gguf_open(fixture_path(file));
        const char *msg = duet_last_error();
        T_CHECK(!g && (int)duet_gguf_last_open_status() == status[i] && strstr(msg, file) &&
                    strstr(msg, "byte ") && strstr(msg, words[i]),
                "%s: status %d, message names file, byte and '%s': %s", file, status[i], words[i], msg);
        duet_gguf_close(g);
    }
    free(names[0]), free(names), free(words[0]), free(words);
}

/* ======================================================================== */
/* Never crash: truncations and random corruption                            */
/* ======================================================================== */

/* Reads everything an opened file offers (ASan/UBSan watch). */
static void walk_value(const duet_gguf *g, const duet_gguf_value *v, int depth) {
    int64_t i64;
    uint64_t u;
    double d;
    int b;
    const char *s;
    int64_t len;
    switch (v->type) {
    case DUET_GGUF_TYPE_STRING:
        if (duet_gguf_value_str(g, v, &s, &len) == DUET_OK && len > 0) (void)(volatile char)s[len - 1];
        break;
    case DUET_GGUF_TYPE_ARRAY:
        for (int64_t i = 0; i < v->count && i < 64; i++) {
            duet_gguf_value e;
            if (duet_gguf_value_elem(g, v, i, &e) == DUET_OK) walk_value(g, &e, depth + 1);
        }
        if (v->count > 64) {
            duet_gguf_value e;
            if (duet_gguf_value_elem(g, v, v->count - 1, &e) == DUET_OK) walk_value(g, &e, depth + 1);
        }
        break;
    case DUET_GGUF_TYPE_BOOL: duet_gguf_value_bool(g, v, &b); break;
    default:
        duet_gguf_value_int(g, v, &i64);
        duet_gguf_value_u64(g, v, &u);
        duet_gguf_value_float(g, v, &d);
        break;
    }
}

static void walk(duet_gguf *g, float *scratch, int64_t scratch_n) {
    for (int64_t i = 0; i < duet_gguf_kv_count(g); i++) {
        duet_gguf_value v = duet_gguf_kv_value(g, i);
        walk_value(g, &v, 0);
        (void)duet_gguf_find_key(g, duet_gguf_kv_key(g, i));
    }
    for (int64_t i = 0; i < duet_gguf_tensor_count(g); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        (void)duet_gguf_find_tensor(g, t->name);
        if (t->nbytes > 0) (void)(volatile uint8_t)((const uint8_t *)t->data)[t->nbytes - 1];
        if (duet_qtype_supported(t->type) && t->numel <= scratch_n)
            duet_dequantize_row(t->type, t->data, scratch, t->numel);
    }
}

static void test_robustness(void) {
    size_t n = 0;
    uint8_t *all = read_all(fixture_path("gguf_all.gguf"), &n);
    T_CHECK(all != NULL && n > 1000, "read gguf_all.gguf");
    if (!all) return;
    duet_gguf *g = duet_gguf_open_memory("all", all, n);
    uint64_t need = 0;
    for (int64_t i = 0; g && i < duet_gguf_tensor_count(g); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        if (t->nbytes && duet_gguf_data_offset(g) + t->offset + (uint64_t)t->nbytes > need)
            need = duet_gguf_data_offset(g) + t->offset + (uint64_t)t->nbytes;
    }
    duet_gguf_close(g);
    const int64_t SCR = 4096;
    float *scratch = malloc(SCR * sizeof(float));
    /* every truncation: a copy of exactly len bytes, so ASan sees any over-read */
    int ok = 1, opened_short = 0;
    for (size_t len = 0; len < n; len++) {
        uint8_t *c = malloc(len ? len : 1);
        memcpy(c, all, len);
        g = duet_gguf_open_memory("trunc", c, len);
        if (g) {
            if (len < need) opened_short++;
            walk(g, scratch, SCR);
        } else {
            ok &= duet_gguf_last_open_status() == DUET_ERR_FORMAT && strstr(duet_last_error(), "trunc: byte ");
        }
        duet_gguf_close(g);
        free(c);
    }
    T_CHECK(ok && opened_short == 0, "all %zu truncations fail with DUET_ERR_FORMAT until the last "
            "tensor's data is complete (%d opened too early)", n, opened_short);
    /* random byte changes: 1-4 bytes set to random values, or to 0x00/0xFF
     * (lengths and counts), in the first 1.5 KB (the header) mostly */
    duet_rng r;
    duet_rng_init(&r, 77);
    int opened = 0, failed_ok = 1;
    const int variants = 4000;
    uint8_t *c = malloc(n);
    for (int v = 0; v < variants; v++) {
        memcpy(c, all, n);
        const int k = 1 + (int)(duet_rng_next(&r) * 4);
        for (int j = 0; j < k; j++) {
            size_t at = (size_t)(duet_rng_next(&r) * (float)(v % 4 && n > 1536 ? 1536 : n));
            float kind = duet_rng_next(&r);
            c[at] = kind < 0.2f ? 0xFF : kind < 0.3f ? 0x00 : (uint8_t)(duet_rng_next(&r) * 256.0f);
        }
        g = duet_gguf_open_memory("flip", c, n);
        if (g) {
            opened++;
            walk(g, scratch, SCR);
        } else {
            duet_status s = duet_gguf_last_open_status();
            failed_ok &= (s == DUET_ERR_FORMAT || s == DUET_ERR_UNSUPPORTED) &&
                         strstr(duet_last_error(), "flip: byte ") != NULL;
        }
        duet_gguf_close(g);
    }
    T_CHECK(failed_ok, "%d random corruptions: every failure is FORMAT/UNSUPPORTED with a located "
            "message (%d still opened and were walked)", variants, opened);
    free(c);
    free(scratch);
    free(all);
    g = duet_gguf_open_memory(NULL, NULL, 0);
    T_CHECK(!g && duet_gguf_last_open_status() == DUET_ERR_FORMAT, "empty memory image");
}

/* ======================================================================== */
/* Writer                                                                    */
/* ======================================================================== */

static char tmp_path[256];

static void test_golden(void) {
    /* the inputs gen_gguf.py's golden() describes */
    duet_gguf_writer *w = duet_gguf_writer_new();
    int ok = duet_gguf_writer_set_alignment(w, 64) == DUET_OK;
    ok &= duet_gguf_writer_add_str(w, "general.architecture", "duet", -1) == DUET_OK;
    const uint8_t u8 = 7;
    const int8_t i8 = -7;
    const uint16_t u16 = 65535;
    const int16_t i16 = -32768;
    const uint64_t u64 = UINT64_MAX;
    const int64_t i64 = INT64_MIN;
    const double f64 = 1.0 / 3.0;
    ok &= duet_gguf_writer_add(w, "g.u8", DUET_GGUF_TYPE_UINT8, &u8) == DUET_OK;
    ok &= duet_gguf_writer_add(w, "g.i8", DUET_GGUF_TYPE_INT8, &i8) == DUET_OK;
    ok &= duet_gguf_writer_add(w, "g.u16", DUET_GGUF_TYPE_UINT16, &u16) == DUET_OK;
    ok &= duet_gguf_writer_add(w, "g.i16", DUET_GGUF_TYPE_INT16, &i16) == DUET_OK;
    ok &= duet_gguf_writer_add_u32(w, "g.u32", 123456789u) == DUET_OK;
    ok &= duet_gguf_writer_add_i32(w, "g.i32", -123456789) == DUET_OK;
    ok &= duet_gguf_writer_add_f32(w, "g.f32", 0.1f) == DUET_OK;
    ok &= duet_gguf_writer_add_bool(w, "g.bool", 1) == DUET_OK;
    ok &= duet_gguf_writer_add(w, "g.u64", DUET_GGUF_TYPE_UINT64, &u64) == DUET_OK;
    ok &= duet_gguf_writer_add(w, "g.i64", DUET_GGUF_TYPE_INT64, &i64) == DUET_OK;
    ok &= duet_gguf_writer_add(w, "g.f64", DUET_GGUF_TYPE_FLOAT64, &f64) == DUET_OK;
    ok &= duet_gguf_writer_add_str(w, "g.str", "hello GGUF", -1) == DUET_OK;
    const float af[3] = {1.5f, -2.25f, 1e-3f};
    const int32_t ai[4] = {1, -2, 3, 2147483647};
    ok &= duet_gguf_writer_add_arr(w, "g.arr_f32", DUET_GGUF_TYPE_FLOAT32, af, 3) == DUET_OK;
    ok &= duet_gguf_writer_add_arr(w, "g.arr_i32", DUET_GGUF_TYPE_INT32, ai, 4) == DUET_OK;
    const char *as[3] = {"a", "", "\xc3\xbc\xc3\xb1"};
    ok &= duet_gguf_writer_add_arr_str(w, "g.arr_str", as, NULL, 3) == DUET_OK;
    /* [[1, 2], [3]] of uint8, as its encoding */
    const uint8_t nested[] = {0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,   /* u32 UINT8... patched below */
                              0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 2,
                              0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3};
    uint8_t enc[sizeof nested];
    memcpy(enc, nested, sizeof enc);
    enc[0] = DUET_GGUF_TYPE_ARRAY; /* outer element type; the inner ones are UINT8 = 0 */
    ok &= duet_gguf_writer_add_raw(w, "g.nested", DUET_GGUF_TYPE_ARRAY, enc, sizeof enc) == DUET_OK;
    T_CHECK(ok, "golden: every KV added: %s", duet_last_error());
    static const struct { const char *name; duet_qtype t; int nd; int64_t ne[4]; } ts[] = {
        {"a", DUET_QTYPE_F32, 2, {3, 2}},  {"b", DUET_QTYPE_Q8_0, 2, {32, 3}},
        {"c", DUET_QTYPE_F16, 1, {5}},     {"d", DUET_QTYPE_Q4_K, 4, {256, 1, 1, 2}},
    };
    uint8_t *data[4];
    ok = 1;
    for (int j = 0; j < 4; j++) {
        int64_t numel = 1;
        for (int d = 0; d < ts[j].nd; d++) numel *= ts[j].ne[d];
        const int64_t nb = duet_qtype_row_bytes(ts[j].t, numel);
        data[j] = malloc((size_t)nb);
        for (int64_t k = 0; k < nb; k++) data[j][k] = (uint8_t)((k * 31 + j * 7 + 1) & 0xFF);
        ok &= duet_gguf_writer_add_tensor(w, ts[j].name, ts[j].t, ts[j].nd, ts[j].ne, data[j]) == DUET_OK;
    }
    T_CHECK(ok, "golden: tensors added");
    T_CHECK(duet_gguf_writer_write(w, tmp_path) == DUET_OK, "golden written: %s", duet_last_error());
    size_t n1 = 0, n2 = 0;
    uint8_t *got = read_all(tmp_path, &n1), *want = read_all(fixture_path("gguf_golden.gguf"), &n2);
    size_t first = 0;
    while (got && want && first < n1 && first < n2 && got[first] == want[first]) first++;
    T_CHECK(got && want && n1 == n2 && first == n1, "duet's file equals the spec-built golden file "
            "byte for byte (%zu vs %zu bytes, first difference at %zu)", n1, n2, first);
    free(got), free(want);
    /* and reads back */
    duet_gguf *g = duet_gguf_open(tmp_path);
    const char *s;
    int64_t len, x;
    T_CHECK(g && duet_gguf_alignment(g) == 64 && duet_gguf_get_int(g, "g.i8", &x) == DUET_OK && x == -7 &&
                duet_gguf_get_arr_str(g, "g.arr_str", 2, &s, &len) == DUET_OK && len == 4 &&
                duet_gguf_tensor_count(g) == 4 &&
                memcmp(duet_gguf_find_tensor(g, "d")->data, data[3], 288) == 0,
            "golden reads back");
    duet_gguf_close(g);
    for (int j = 0; j < 4; j++) free(data[j]);
    duet_gguf_writer_free(w);
}

/* Compares two values recursively (types, counts, contents). */
static int same_value(const duet_gguf *a, const duet_gguf_value *va, const duet_gguf *b,
                      const duet_gguf_value *vb) {
    if (va->type != vb->type) return 0;
    if (va->type == DUET_GGUF_TYPE_STRING) {
        const char *s1, *s2;
        int64_t l1, l2;
        duet_gguf_value_str(a, va, &s1, &l1);
        duet_gguf_value_str(b, vb, &s2, &l2);
        return l1 == l2 && memcmp(s1, s2, (size_t)l1) == 0;
    }
    if (va->type == DUET_GGUF_TYPE_ARRAY) {
        if (va->elem_type != vb->elem_type || va->count != vb->count) return 0;
        for (int64_t i = 0; i < va->count; i++) {
            duet_gguf_value ea, eb;
            duet_gguf_value_elem(a, va, i, &ea);
            duet_gguf_value_elem(b, vb, i, &eb);
            if (!same_value(a, &ea, b, &eb)) return 0;
        }
        return 1;
    }
    static const int size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return memcmp(va->p_, vb->p_, (size_t)size[va->type]) == 0;
}

static void test_roundtrip(void) {
    duet_gguf *src = duet_gguf_open(fixture_path("gguf_all.gguf"));
    if (!src) {
        T_CHECK(0, "open gguf_all.gguf");
        return;
    }
    duet_gguf_writer *w = duet_gguf_writer_new();
    int ok = 1;
    for (int64_t i = 0; i < duet_gguf_kv_count(src); i++) ok &= duet_gguf_writer_copy_kv(w, src, i) == DUET_OK;
    for (int64_t i = 0; i < duet_gguf_tensor_count(src); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(src, i);
        const int nd = t->n_dims ? t->n_dims : 1;
        ok &= duet_gguf_writer_add_tensor(w, t->name, t->type, nd, t->ne, t->data) == DUET_OK;
    }
    T_CHECK(ok, "copy every KV and tensor into a writer: %s", duet_last_error());
    T_CHECK(duet_gguf_writer_write(w, tmp_path) == DUET_OK, "write the copy");
    duet_gguf *g = duet_gguf_open(tmp_path);
    ok = g && duet_gguf_kv_count(g) == duet_gguf_kv_count(src) &&
         duet_gguf_tensor_count(g) == duet_gguf_tensor_count(src) && duet_gguf_version(g) == 3;
    for (int64_t i = 0; ok && i < duet_gguf_kv_count(src); i++) {
        duet_gguf_value a = duet_gguf_kv_value(src, i), b = duet_gguf_kv_value(g, i);
        ok &= strcmp(duet_gguf_kv_key(src, i), duet_gguf_kv_key(g, i)) == 0 && same_value(src, &a, g, &b);
    }
    T_CHECK(ok, "every KV reads back identical (keys in order, nested arrays included)");
    ok = g != NULL;
    uint64_t expect_off = 0;
    for (int64_t i = 0; ok && i < duet_gguf_tensor_count(src); i++) {
        const duet_gguf_tensor *a = duet_gguf_tensor_at(src, i), *b = duet_gguf_tensor_at(g, i);
        ok &= strcmp(a->name, b->name) == 0 && a->type == b->type && a->nbytes == b->nbytes &&
              memcmp(a->ne, b->ne, sizeof a->ne) == 0 &&
              (a->nbytes == 0 || memcmp(a->data, b->data, (size_t)a->nbytes) == 0) &&
              b->offset == expect_off; /* the writer packs in order, each padded to 32 */
        expect_off += ((uint64_t)a->nbytes + 31) / 32 * 32;
    }
    T_CHECK(ok, "every tensor reads back identical, packed in order at aligned offsets");
    /* a GGUF tensor goes straight into the quantized matvec */
    const duet_gguf_tensor *q = g ? duet_gguf_find_tensor(g, "q4_K.w") : NULL;
    if (q) {
        float x[256], y[2], wd[512], xd[256];
        uint8_t xq[2 * 292];
        for (int i = 0; i < 256; i++) x[i] = sinf((float)i * 0.37f);
        duet_status st = duet_quant_matvec(q->type, q->data, q->ne[1], q->ne[0], x, y, NULL);
        duet_dequantize_row(q->type, q->data, wd, 512);
        duet_quantize_row(DUET_QTYPE_Q8_K, x, xq, 256);
        duet_dequantize_row(DUET_QTYPE_Q8_K, xq, xd, 256);
        double e0 = 0, e1 = 0, m0 = 0, m1 = 0;
        for (int i = 0; i < 256; i++) {
            e0 += (double)wd[i] * (double)xd[i], m0 += fabs((double)wd[i] * (double)xd[i]);
            e1 += (double)wd[256 + i] * (double)xd[i], m1 += fabs((double)wd[256 + i] * (double)xd[i]);
        }
        T_CHECK(st == DUET_OK && fabs((double)y[0] - e0) <= 1e-4 * m0 && fabs((double)y[1] - e1) <= 1e-4 * m1,
                "matvec straight from the GGUF map (q4_K rows)");
    }
    duet_gguf_close(g);
    duet_gguf_writer_free(w);
    duet_gguf_close(src);
}

static void test_writer_errors(void) {
    duet_gguf_writer *w = duet_gguf_writer_new();
    const float data[64] = {0};
    const int64_t ne1[1] = {32}, ne48[1] = {48};
    T_CHECK(duet_gguf_writer_add_u32(w, "k", 1) == DUET_OK &&
                duet_gguf_writer_add_u32(w, "k", 2) == DUET_ERR_ARG && strstr(duet_last_error(), "'k'"),
            "duplicate key refused");
    T_CHECK(duet_gguf_writer_add_u32(w, "", 1) == DUET_ERR_ARG, "empty key refused");
    T_CHECK(duet_gguf_writer_set_alignment(w, 48) == DUET_ERR_ARG, "alignment 48 refused");
    T_CHECK(duet_gguf_writer_add_i32(w, "general.alignment", 64) == DUET_ERR_ARG,
            "general.alignment of another type refused");
    uint8_t two = 2;
    T_CHECK(duet_gguf_writer_add(w, "b", DUET_GGUF_TYPE_BOOL, &two) == DUET_ERR_ARG, "bool 2 refused");
    T_CHECK(duet_gguf_writer_add(w, "s", DUET_GGUF_TYPE_STRING, "x") == DUET_ERR_ARG, "_add of a string refused");
    const uint8_t trunc[] = {DUET_GGUF_TYPE_UINT8, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 2};
    T_CHECK(duet_gguf_writer_add_raw(w, "r", DUET_GGUF_TYPE_ARRAY, trunc, sizeof trunc) == DUET_ERR_ARG &&
                strstr(duet_last_error(), "'r'"), "add_raw checks the encoding: %s", duet_last_error());
    const uint8_t extra[] = {DUET_GGUF_TYPE_UINT8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9};
    T_CHECK(duet_gguf_writer_add_raw(w, "r", DUET_GGUF_TYPE_ARRAY, extra, sizeof extra) == DUET_ERR_ARG,
            "add_raw refuses trailing bytes");
    char long_name[80];
    memset(long_name, 'n', 65);
    long_name[65] = 0;
    T_CHECK(duet_gguf_writer_add_tensor(w, long_name, DUET_QTYPE_F32, 1, ne1, data) == DUET_ERR_ARG,
            "65-byte tensor name refused");
    long_name[64] = 0;
    T_CHECK(duet_gguf_writer_add_tensor(w, long_name, DUET_QTYPE_F32, 1, ne1, data) == DUET_OK,
            "64-byte tensor name accepted");
    T_CHECK(duet_gguf_writer_add_tensor(w, long_name, DUET_QTYPE_F32, 1, ne1, data) == DUET_ERR_ARG,
            "duplicate tensor refused");
    T_CHECK(duet_gguf_writer_add_tensor(w, "q", DUET_QTYPE_Q4_0, 1, ne48, data) == DUET_ERR_ARG &&
                strstr(duet_last_error(), "block"), "ne[0] not a block multiple refused");
    T_CHECK(duet_gguf_writer_add_tensor(w, "t", (duet_qtype)4, 1, ne1, data) == DUET_ERR_ARG,
            "unknown type refused");
    T_CHECK(duet_gguf_writer_add_tensor(w, "z", DUET_QTYPE_F32, 5, ne1, data) == DUET_ERR_ARG, "5 dims refused");
    T_CHECK(duet_gguf_writer_write(w, "/nonexistent-dir/x.gguf") == DUET_ERR_IO, "unwritable path is DUET_ERR_IO");
    /* alignment 1: no padding at all */
    T_CHECK(duet_gguf_writer_set_alignment(w, 1) == DUET_OK && duet_gguf_writer_write(w, tmp_path) == DUET_OK,
            "alignment 1 written");
    duet_gguf *g = duet_gguf_open(tmp_path);
    T_CHECK(g && duet_gguf_alignment(g) == 1 && duet_gguf_tensor_count(g) == 1, "alignment 1 reads back");
    duet_gguf_close(g);
    duet_gguf_writer_free(w);
    duet_gguf_writer_free(NULL);
    duet_gguf_close(NULL);
}

int main(void) {
    duet_init();
    snprintf(tmp_path, sizeof tmp_path, "/tmp/duet_test_gguf_%ld.gguf", (long)getpid());
    t_fix *f = t_fix_load("gguf_expect.bin");
    if (f) {
        test_fixture_files(f);
        test_bad_files(f);
        t_fix_free(f);
    }
    test_robustness();
    test_golden();
    test_roundtrip();
    test_writer_errors();
    unlink(tmp_path);
    return t_done();
}
