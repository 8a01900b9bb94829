/*
 * test_safetensors.c — the checkpoint format and atomic writes.
 *
 *  - every file tests/ref/gen_safetensors.py wrote with json+struct+numpy loads
 *    with exactly the values, dtypes, shapes, order and metadata it recorded;
 *  - every malformed file gives the right status and a message that names the
 *    file and the field (the rule comes from the spec, see safetensors.c);
 *  - write/read round trip; duet's writer reproduces, byte for byte, the file
 *    the python script parsed and verified independently (st_duet_written);
 *  - atomic writes: replace, failure in a missing folder, rename onto a
 *    folder, a write cut short by RLIMIT_FSIZE, injected allocation failures —
 *    the old file survives and no temporary stays behind;
 *  - fuzz-ish: every truncation and thousands of header byte flips never crash
 *    (in memory buffers of exact size, so ASan sees any over-read).
 *
 * `test_safetensors --write-golden PATH` writes the golden tensors and exits
 * (used by gen_safetensors.py).
 */
#include "testutil.h"

#include "formats/formats.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void tmp_path(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", tmpdir, name);
}

static int count_tmp_files(void) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    char p[512];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* whole file into malloc memory; NULL when absent */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static void put_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

static int file_equals(const char *path, const void *data, size_t n) {
    size_t got;
    unsigned char *b = slurp(path, &got);
    int ok = b && got == n && memcmp(b, data, n) == 0;
    free(b);
    return ok;
}

/* ---- an allocator that fails after `budget` allocations ---- */
static int alloc_budget = -1, alloc_count = 0;
static void *counting_alloc(void *ud, size_t size, size_t align) {
    (void)ud;
    if (alloc_budget >= 0 && alloc_count >= alloc_budget) return NULL;
    alloc_count++;
    void *p = NULL;
    return posix_memalign(&p, align, size ? size : 1) ? NULL : p;
}
static void counting_free(void *ud, void *p) {
    (void)ud;
    free(p);
}
static void budget_on(int b) {
    static const duet_allocator a = {counting_alloc, counting_free, NULL};
    duet_set_allocator(&a);
    alloc_count = 0;
    alloc_budget = b;
}
static void budget_off(void) {
    alloc_budget = -1;
    duet_set_allocator(NULL);
}

static const char *st_name_of(duet_dtype t) {
    static const char *n[] = {"F32", "F16", "BF16", "I32", "I64", "U8", "I8", "F64"};
    return (unsigned)t < DUET_DTYPE_COUNT ? n[t] : "?";
}

/* ======================================================================== */
/* Files written by python                                                   */
/* ======================================================================== */

/* Splits a NUL-separated code array into strings; returns the count. */
static int split_codes(const int32_t *c, int64_t n, char out[][128], int max) {
    int k = 0;
    size_t at = 0;
    if (n == 0) return 0;
    for (int64_t i = 0; i <= n && k < max; i++) {
        if (i == n || c[i] == 0) {
            out[k][at] = 0;
            k++;
            at = 0;
        } else if (at < 127) out[k][at++] = (char)c[i];
    }
    return k;
}

static int codes_equal(const int32_t *c, int64_t n, const char *s) {
    if ((int64_t)strlen(s) != n) return 0;
    for (int64_t i = 0; i < n; i++)
        if ((unsigned char)s[i] != (unsigned)c[i]) return 0;
    return 1;
}

static void check_python_file(const char *file, const char *expect) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/%s", file);
    t_fix *f = t_fix_load(expect);
    duet_st *st = duet_st_open(path);
    T_CHECK(st != NULL, "%s opens: %s", file, duet_last_error());
    if (!f || !st) {
        t_fix_free(f);
        duet_st_close(st);
        return;
    }
    static char names[64][128], keys[64][128];
    int64_t nn, nk;
    int32_t *nc = t_fix_i32(f, "@names", &nn);
    int32_t *kc = t_fix_i32(f, "@meta_keys", &nk);
    int ntens = nc ? split_codes(nc, nn, names, 64) : -1;
    int nmeta = kc ? split_codes(kc, nk, keys, 64) : -1;
    T_CHECK(duet_st_count(st) == ntens, "%s: %d tensors (python wrote %d)", file,
            duet_st_count(st), ntens);
    int bad_vals = 0, bad_meta = 0;
    for (int i = 0; i < ntens && i < duet_st_count(st); i++) {
        const char *nm = names[i];
        char key[200];
        T_CHECK(duet_st_name(st, i) && strcmp(duet_st_name(st, i), nm) == 0,
                "%s: tensor %d in data order is '%s' (want '%s')", file, i,
                duet_st_name(st, i) ? duet_st_name(st, i) : "(null)", nm);
        T_CHECK(duet_st_find(st, nm) == i, "%s: find('%s') = %d, want %d", file, nm,
                duet_st_find(st, nm), i);
        duet_tensor t;
        if (duet_st_tensor(st, i, &t) != DUET_OK) {
            T_CHECK(0, "%s: tensor '%s': %s", file, nm, duet_last_error());
            continue;
        }
        snprintf(key, sizeof key, "%s.dtype", nm);
        int64_t ndc;
        int32_t *dc = t_fix_i32(f, key, &ndc);
        T_CHECK(dc && codes_equal(dc, ndc, st_name_of(t.dtype)), "%s: '%s' dtype %s", file, nm,
                st_name_of(t.dtype));
        snprintf(key, sizeof key, "%s.shape", nm);
        int64_t nd = -1;
        int32_t *shape = t_fix_i32(f, key, &nd);
        int shape_ok = shape && nd == t.ndim;
        for (int d = 0; shape_ok && d < nd; d++) shape_ok = shape[d] == t.shape[d];
        T_CHECK(shape_ok, "%s: '%s' shape (ndim %d vs %lld)", file, nm, t.ndim, (long long)nd);
        size_t es = duet_dtype_size(t.dtype);
        T_CHECK(((uintptr_t)t.data % es) == 0, "%s: '%s' data is aligned to %zu", file, nm, es);
        int64_t n = duet_tensor_numel(&t), nf = -1;
        switch (t.dtype) {
        case DUET_DTYPE_F32:
        case DUET_DTYPE_F16:
        case DUET_DTYPE_BF16: {
            float *want = t_fix_f32(f, nm, &nf);
            float *got = malloc(sizeof(float) * (size_t)(n + 1));
            duet_status s = duet_st_read_f32(st, nm, got, n);
            if (s != DUET_OK || !want || nf != n || (n && memcmp(got, want, sizeof(float) * (size_t)n)))
                bad_vals++, fprintf(stderr, "values of %s differ\n", nm);
            if (t.dtype != DUET_DTYPE_F32) {
                snprintf(key, sizeof key, "%s.bits", nm);
                int32_t *bits = t_fix_i32(f, key, NULL);
                for (int64_t j = 0; bits && j < n; j++)
                    if (((const uint16_t *)t.data)[j] != (uint16_t)bits[j]) bad_vals++;
            }
            free(got);
            break;
        }
        case DUET_DTYPE_I32:
        case DUET_DTYPE_U8:
        case DUET_DTYPE_I8: {
            int32_t *want = t_fix_i32(f, nm, &nf);
            for (int64_t j = 0; want && j < n; j++) {
                int64_t v = t.dtype == DUET_DTYPE_I32 ? ((const int32_t *)t.data)[j]
                            : t.dtype == DUET_DTYPE_U8 ? ((const uint8_t *)t.data)[j]
                                                       : ((const int8_t *)t.data)[j];
                if (v != want[j]) bad_vals++;
            }
            if (!want || nf != n) bad_vals++;
            break;
        }
        case DUET_DTYPE_I64:
        case DUET_DTYPE_F64: {
            double *want = t_fix_f64(f, nm, &nf);
            for (int64_t j = 0; want && j < n; j++) {
                double v = t.dtype == DUET_DTYPE_I64 ? (double)((const int64_t *)t.data)[j]
                                                     : ((const double *)t.data)[j];
                if (v != want[j]) bad_vals++;
            }
            if (!want || nf != n) bad_vals++;
            break;
        }
        default: bad_vals++;
        }
    }
    T_CHECK(bad_vals == 0, "%s: every value equals what python wrote (%d off)", file, bad_vals);
    T_CHECK(duet_st_meta_count(st) == nmeta, "%s: %d metadata entries (want %d)", file,
            duet_st_meta_count(st), nmeta);
    for (int i = 0; i < nmeta; i++) {
        char key[200];
        snprintf(key, sizeof key, "@meta.%.127s", keys[i]);
        int64_t nv;
        int32_t *vc = t_fix_i32(f, key, &nv);
        const char *got = duet_st_meta(st, keys[i]);
        if (!vc || !got || !codes_equal(vc, nv, got)) bad_meta++;
        if (!duet_st_meta_key(st, i) || strcmp(duet_st_meta_key(st, i), keys[i])) bad_meta++;
    }
    T_CHECK(bad_meta == 0, "%s: metadata equals what python wrote", file);
    T_CHECK(duet_st_find(st, "no such tensor") == -1 && duet_st_meta(st, "nope") == NULL,
            "%s: absent names give -1 / NULL", file);
    duet_st_close(st);
    t_fix_free(f);
}

static void test_python_files(void) {
    check_python_file("st_basic.safetensors", "st_basic_expect.bin");
    check_python_file("st_escaped.safetensors", "st_escaped_expect.bin");
    check_python_file("st_unaligned.safetensors", "st_unaligned_expect.bin");
    check_python_file("st_meta_only.safetensors", "st_meta_only_expect.bin");

    /* read_f32 refusals on a python file */
    duet_st *st = duet_st_open("tests/fixtures/st_basic.safetensors");
    if (!st) return;
    float buf[8];
    duet_status s = duet_st_read_f32(st, "i_i32", buf, 4);
    T_CHECK(s == DUET_ERR_UNSUPPORTED && strstr(duet_last_error(), "i_i32") &&
                strstr(duet_last_error(), "I32"),
            "read_f32 of I32 is unsupported: %s", duet_last_error());
    s = duet_st_read_f32(st, "w_f32", buf, 5);
    T_CHECK(s == DUET_ERR_SHAPE && strstr(duet_last_error(), "w_f32") &&
                strstr(duet_last_error(), "[2, 3]"),
            "read_f32 with a wrong count: %s", duet_last_error());
    s = duet_st_read_f32(st, "missing.weight", buf, 1);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "missing.weight") &&
                strstr(duet_last_error(), "st_basic.safetensors"),
            "read_f32 of an absent tensor: %s", duet_last_error());
    duet_st_close(st);
}

/* ======================================================================== */
/* Malformed files                                                           */
/* ======================================================================== */

static const struct {
    const char *file;
    duet_status status;
    const char *needles[3]; /* all must appear in the message (besides the file name) */
} bad_files[] = {
    {"st_bad_short", DUET_ERR_FORMAT, {"5 bytes", "8-byte header size"}},
    {"st_bad_header_trunc", DUET_ERR_FORMAT, {"header size 1000 ", "past the end of the file"}},
    {"st_bad_header_eof", DUET_ERR_FORMAT, {"header size 50000000 ", "past the end of the file"}},
    {"st_bad_header_huge", DUET_ERR_FORMAT, {"header size 200000000 ", "limit of 100000000"}},
    {"st_bad_json", DUET_ERR_FORMAT, {"header is not valid JSON", "unterminated object", "header byte"}},
    {"st_bad_not_object", DUET_ERR_FORMAT, {"header is an array, not a JSON object"}},
    {"st_bad_dtype", DUET_ERR_FORMAT, {"tensor 'a'", "unknown dtype 'F12'"}},
    {"st_bad_unsupported", DUET_ERR_UNSUPPORTED, {"tensor 'a'", "dtype F8_E4M3 is not supported"}},
    {"st_bad_past_end", DUET_ERR_FORMAT, {"tensor 'w'", "data_offsets [0, 400]", "past the end of the data buffer (24 bytes"}},
    {"st_bad_overlap", DUET_ERR_FORMAT, {"'a' (data_offsets [0, 16])", "'b' (data_offsets [8, 24])", "overlap"}},
    {"st_bad_gap", DUET_ERR_FORMAT, {"bytes [16, 24)", "belong to no tensor", "before tensor 'b'"}},
    {"st_bad_trailing", DUET_ERR_FORMAT, {"bytes [16, 24)", "end of the data buffer", "no tensor"}},
    {"st_bad_nbytes", DUET_ERR_FORMAT, {"tensor 'w1': data_offsets [0, 100] do not match dtype F32 and shape [5, 6] (120 bytes)"}},
    {"st_bad_neg_shape", DUET_ERR_FORMAT, {"tensor 'a'", "shape[0] is -1", "non-negative integer"}},
    {"st_bad_frac_shape", DUET_ERR_FORMAT, {"tensor 'a'", "shape[0] is 2.5", "non-negative integer"}},
    {"st_bad_overflow", DUET_ERR_FORMAT, {"tensor 'a'", "shape [4611686018427387904, 4611686018427387904, 4]", "overflows"}},
    {"st_bad_meta_value", DUET_ERR_FORMAT, {"__metadata__ 'epoch'", "a number, not a string"}},
    {"st_bad_dup_key", DUET_ERR_FORMAT, {"the key 'a' twice"}},
    {"st_bad_offsets_type", DUET_ERR_FORMAT, {"tensor 'a'", "data_offsets must be two non-negative integers", "array of 1 items"}},
    {"st_bad_offsets_order", DUET_ERR_FORMAT, {"tensor 'a'", "data_offsets [16, 8]", "end before they begin"}},
    {"st_bad_missing_field", DUET_ERR_FORMAT, {"tensor 'a'", "missing field 'shape'"}},
    {"st_bad_entry_type", DUET_ERR_FORMAT, {"tensor 'a'", "entry is a string, not an object"}},
    {"st_bad_utf8", DUET_ERR_FORMAT, {"header is not valid JSON", "invalid UTF-8 byte 0xff"}},
    {"st_bad_data_trunc", DUET_ERR_FORMAT, {"tensor 'h_f16'", "past the end of the data buffer", "truncated"}},
};

static void test_bad_files(void) {
    int nb = (int)(sizeof bad_files / sizeof bad_files[0]);
    for (int i = 0; i < nb; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", bad_files[i].file);
        duet_clear_error();
        duet_st *st = (duet_st *)1;
        duet_status s = duet_st_open_ex(path, &st);
        const char *msg = duet_last_error();
        int ok = st == NULL && s == bad_files[i].status && strncmp(msg, path, strlen(path)) == 0 &&
                 msg[strlen(path)] == ':';
        for (int k = 0; k < 3 && bad_files[i].needles[k]; k++)
            if (!strstr(msg, bad_files[i].needles[k])) ok = 0;
        T_CHECK(ok, "%s is refused (status %s, want %s) with a message naming the file and "
                    "field: %s",
                bad_files[i].file, duet_strerror(s), duet_strerror(bad_files[i].status), msg);
        duet_st_close(st);
        /* the public opener agrees */
        st = duet_st_open(path);
        T_CHECK(st == NULL, "duet_st_open(%s) is NULL", bad_files[i].file);
    }
    duet_st *st;
    duet_status s = duet_st_open_ex("tests/fixtures/does_not_exist.safetensors", &st);
    T_CHECK(s == DUET_ERR_IO && strstr(duet_last_error(), "does_not_exist.safetensors") &&
                strstr(duet_last_error(), "No such file"),
            "a missing file: %s", duet_last_error());
    s = duet_st_open_ex("tests/fixtures", &st);
    T_CHECK(s == DUET_ERR_IO && strstr(duet_last_error(), "directory"), "a folder: %s",
            duet_last_error());
}

/* More header rules, in memory (exact-size buffers). */
/* (the buffer lives until the next call: close the handle before that) */
static unsigned char *header_buf;
static duet_st *open_header(const char *json, const void *data, size_t ndata, int pad) {
    free(header_buf);
    header_buf = NULL;
    if (!json) return NULL;
    size_t hl = strlen(json), padded = pad ? (hl + 7) & ~(size_t)7 : hl;
    size_t n = 8 + padded + ndata;
    unsigned char *b = malloc(n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(b + 8, json, hl);
    memset(b + 8 + hl, ' ', padded - hl);
    if (ndata) memcpy(b + 8 + padded, data, ndata);
    header_buf = b;
    duet_st *st;
    duet_st_open_memory("mem.safetensors", b, n, &st);
    return st;
}

static duet_st *open_mem(const char *name, const void *data, size_t n) {
    duet_st *st;
    duet_st_open_memory(name, data, n, &st);
    return st;
}

static void test_header_rules(void) {
    float d[4] = {1, 2, 3, 4};
    duet_st *st;
    st = open_header("{}", NULL, 0, 1);
    T_CHECK(st && duet_st_count(st) == 0 && duet_st_meta_count(st) == 0, "empty header '{}'");
    duet_st_close(st);
    st = open_header("{\"__metadata__\":null}", NULL, 0, 1);
    T_CHECK(st && duet_st_meta_count(st) == 0, "null __metadata__ is no metadata");
    duet_st_close(st);
    st = open_header("{\"__metadata__\":[\"a\"]}", NULL, 0, 1);
    T_CHECK(!st && strstr(duet_last_error(), "__metadata__ is an array"), "metadata array: %s",
            duet_last_error());
    st = open_header("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", NULL, 0, 1);
    T_CHECK(!st && strstr(duet_last_error(), "__metadata__ has the key 'k' twice"),
            "duplicate metadata key: %s", duet_last_error());
    st = open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"x\":1}}", d,
                     16, 1);
    T_CHECK(!st && strstr(duet_last_error(), "unexpected field 'x'"), "unknown field: %s",
            duet_last_error());
    st = open_header("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                     d, 16, 1);
    T_CHECK(!st && strstr(duet_last_error(), "field 'dtype' appears twice"), "duplicate field: %s",
            duet_last_error());
    st = open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0, 2],\"data_offsets\":[0,16]}}", d, 16, 1);
    T_CHECK(!st && strstr(duet_last_error(), "shape[0] is 2.0,"), "2.0 is not an integer literal: %s",
            duet_last_error());
    st = open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,1.6e1]}}", d, 16, 1);
    T_CHECK(!st && strstr(duet_last_error(), "found [0, 16.0]"), "1.6e1 offset: %s",
            duet_last_error());
    st = open_header("{\"a\":{\"dtype\":\"F32\\u0000\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 16, 1);
    T_CHECK(!st && strstr(duet_last_error(), "unknown dtype"), "dtype with a NUL: %s",
            duet_last_error());
    st = open_header("{\"a\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[0,4]}}", d, 4, 1);
    T_CHECK(!st && strstr(duet_last_error(), "BOOL is not supported"), "BOOL: %s",
            duet_last_error());
    st = open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}\n\t ", d, 16,
                     0);
    T_CHECK(st != NULL, "trailing JSON whitespace in the header is fine: %s", duet_last_error());
    duet_st_close(st);
    st = open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}\0", d, 16, 0);
    /* (strlen stops at the NUL: same as above, accepted) */
    duet_st_close(st);
    {
        /* a NUL byte in the padding is not a space: refused */
        const char *js = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
        size_t hl = strlen(js) + 1;
        size_t n = 8 + hl + 16;
        unsigned char *b = malloc(n);
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
        memcpy(b + 8, js, hl); /* includes the NUL */
        memcpy(b + 8 + hl, d, 16);
        st = open_mem("nul.safetensors", b, n);
        T_CHECK(!st && strstr(duet_last_error(), "trailing garbage"), "NUL padding: %s",
                duet_last_error());
        free(b);
    }
    /* zero-length tensors anywhere in a chain are fine; 5-d is readable raw */
    st = open_header("{\"e\":{\"dtype\":\"I64\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,2,2],\"data_offsets\":[0,16]},"
                     "\"z\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[16,16]}}",
                     d, 16, 1);
    T_CHECK(st && duet_st_count(st) == 3, "empty tensors at both ends: %s", duet_last_error());
    if (st) {
        duet_tensor t;
        float got[4];
        T_CHECK(duet_st_tensor(st, duet_st_find(st, "a"), &t) == DUET_ERR_UNSUPPORTED &&
                    strstr(duet_last_error(), "5 dimensions"),
                "5-d tensor cannot become a duet_tensor: %s", duet_last_error());
        T_CHECK(duet_st_read_f32(st, "a", got, 4) == DUET_OK && memcmp(got, d, 16) == 0,
                "...but reads as f32");
        T_CHECK(duet_st_tensor(st, duet_st_find(st, "e"), &t) == DUET_OK && t.ndim == 2 &&
                    t.shape[0] == 0 && t.shape[1] == 3 && t.data != NULL,
                "empty I64 tensor [0, 3]");
        duet_st_close(st);
    }
    /* a name with an embedded NUL loads, and cannot be found by its prefix */
    st = open_header("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 16, 1);
    T_CHECK(st && duet_st_count(st) == 1 && duet_st_find(st, "a") == -1, "NUL inside a name");
    duet_st_close(st);
    /* two empty tensors at the same offset (no bytes overlap) */
    st = open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}",
                     NULL, 0, 1);
    T_CHECK(st && duet_st_count(st) == 2, "two empty tensors at offset 0: %s", duet_last_error());
    duet_st_close(st);
    /* an empty tensor inside another's range counts as overlap (as the reference) */
    st = open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}",
                     d, 16, 1);
    T_CHECK(!st && strstr(duet_last_error(), "overlap"), "empty tensor inside another: %s",
            duet_last_error());
    /* header size 0 */
    {
        unsigned char b[8] = {0};
        st = open_mem("zero.safetensors", b, 8);
        T_CHECK(!st && strstr(duet_last_error(), "zero.safetensors: header is not valid JSON"),
                "header size 0: %s", duet_last_error());
    }
    /* the 100 MB limit is inclusive: 100000000 is allowed (then past EOF here) */
    {
        unsigned char b[16] = {0};
        uint64_t n = 100000000;
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
        st = open_mem("lim.safetensors", b, 16);
        T_CHECK(!st && strstr(duet_last_error(), "past the end of the file"), "N = 1e8: %s",
                duet_last_error());
        n = 100000001;
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
        st = open_mem("lim.safetensors", b, 16);
        T_CHECK(!st && strstr(duet_last_error(), "limit"), "N = 1e8+1: %s", duet_last_error());
        /* N just past the end (by 1 byte): refused before any header byte is read */
        n = 9;
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
        memcpy(b + 8, "{}      ", 8);
        st = open_mem("lim.safetensors", b, 16);
        T_CHECK(!st && strstr(duet_last_error(), "header size 9 runs past the end of the file (16 bytes)"),
                "N = size - 8 + 1: %s", duet_last_error());
        n = 8;
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
        st = open_mem("lim.safetensors", b, 16);
        T_CHECK(st && duet_st_count(st) == 0, "N = size - 8 exactly: %s", duet_last_error());
        duet_st_close(st);
        memset(b, 0xff, 8);
        st = open_mem("lim.safetensors", b, 16);
        T_CHECK(!st && strstr(duet_last_error(), "18446744073709551615"), "N = 2^64-1: %s",
                duet_last_error());
    }
    /* a hostile name is cut and sanitised in messages */
    {
        char js[2048];
        char name[600];
        memset(name, 'x', 599);
        name[599] = 0;
        name[3] = '\\', name[4] = 'n'; /* an escaped newline */
        snprintf(js, sizeof js, "{\"%s\":{\"dtype\":\"F12\",\"shape\":[4],\"data_offsets\":[0,16]}}", name);
        st = open_header(js, d, 16, 1);
        const char *m = duet_last_error();
        T_CHECK(!st && strlen(m) < 400 && !strchr(m, '\n') && strstr(m, "xxx?xx") && strstr(m, "..."),
                "long hostile names are cut and sanitised: %s", m);
    }
    open_header(NULL, NULL, 0, 0);
}

/* ======================================================================== */
/* Writer                                                                    */
/* ======================================================================== */

/* The golden tensors; tests/ref/gen_safetensors.py has the same list (GOLDEN). */
static duet_status write_golden(const char *path) {
    float tok[12];
    for (int i = 0; i < 12; i++) tok[i] = (float)(i - 5) * 0.25f;
    const float lnf[5] = {1.0f, -0.5f, 0.125f, 65504.0f, -0.0009765625f};
    const float pwf[4] = {1.5f, -2.0f, 0.15625f, 256.0f};
    uint16_t ln[5], pw[4];
    duet_f32_to_f16(ln, lnf, 5);
    duet_f32_to_bf16(pw, pwf, 4);
    const int32_t ids[3] = {-7, 0, 2147483647};
    const int64_t big[2] = {INT64_MIN, (int64_t)1 << 40};
    const uint8_t mask[4] = {0, 1, 200, 255};
    const int8_t s8[2] = {-128, 127};
    const double d[1] = {0.1};
    const float scalar = 2.5f, one = -1.0f;
    duet_st_writer *w = duet_st_writer_new();
    if (!w) return DUET_ERR_NOMEM;
    duet_status s = DUET_OK;
#define W(x)                             \
    do {                                 \
        if (s == DUET_OK) s = (x);       \
    } while (0)
    W(duet_st_writer_meta(w, "format", "duet"));
    W(duet_st_writer_meta(w, "step", "1234"));
    W(duet_st_writer_meta(w, "note", "tab\there \"q\" \\ \xc3\xa9 \xf0\x9f\x98\x80"));
    W(duet_st_writer_add(w, "tok_emb.weight", DUET_DTYPE_F32, 2, (int64_t[]){4, 3}, tok));
    W(duet_st_writer_add(w, "ln.bias", DUET_DTYPE_F16, 1, (int64_t[]){5}, ln));
    W(duet_st_writer_add(w, "proj.w", DUET_DTYPE_BF16, 2, (int64_t[]){2, 2}, pw));
    W(duet_st_writer_add(w, "ids", DUET_DTYPE_I32, 1, (int64_t[]){3}, ids));
    W(duet_st_writer_add(w, "big", DUET_DTYPE_I64, 1, (int64_t[]){2}, big));
    W(duet_st_writer_add(w, "mask", DUET_DTYPE_U8, 1, (int64_t[]){4}, mask));
    W(duet_st_writer_add(w, "s", DUET_DTYPE_I8, 1, (int64_t[]){2}, s8));
    W(duet_st_writer_add(w, "d", DUET_DTYPE_F64, 1, (int64_t[]){1}, d));
    W(duet_st_writer_add(w, "scalar", DUET_DTYPE_F32, 0, NULL, &scalar));
    W(duet_st_writer_add(w, "empty", DUET_DTYPE_F32, 1, (int64_t[]){0}, NULL));
    W(duet_st_writer_add(w, "\xc3\xbcn\xc3\xaf" "code/\xe5\x90\x8d\xe5\x89\x8d", DUET_DTYPE_F32, 1,
                         (int64_t[]){1}, &one));
#undef W
    if (s == DUET_OK) s = duet_st_writer_write(w, path);
    duet_st_writer_free(w);
    return s;
}

static void test_golden(void) {
    size_t n;
    unsigned char *want = slurp("tests/fixtures/st_duet_written.safetensors", &n);
    T_CHECK(want != NULL, "tests/fixtures/st_duet_written.safetensors exists (make fixtures)");
    if (!want) return;
    char path[300];
    tmp_path(path, sizeof path, "golden.safetensors");
    duet_status s = write_golden(path);
    T_CHECK(s == DUET_OK, "golden write: %s", duet_last_error());
    T_CHECK(file_equals(path, want, n),
            "duet's writer reproduces the python-verified file byte for byte (%zu bytes)", n);
    /* and the reader reads it (its I32 data sits at an odd offset: realigned) */
    duet_st *st = duet_st_open(path);
    T_CHECK(st && duet_st_count(st) == 11 && strcmp(duet_st_name(st, 0), "tok_emb.weight") == 0 &&
                strcmp(duet_st_meta_key(st, 0), "format") == 0,
            "golden file reads back in insertion order");
    if (st) {
        duet_tensor t;
        int i = duet_st_find(st, "ids");
        T_CHECK(i >= 0 && duet_st_tensor(st, i, &t) == DUET_OK && ((uintptr_t)t.data & 3) == 0 &&
                    ((int32_t *)t.data)[2] == 2147483647,
                "I32 at a misaligned offset is realigned");
        i = duet_st_find(st, "big");
        T_CHECK(i >= 0 && duet_st_tensor(st, i, &t) == DUET_OK &&
                    ((int64_t *)t.data)[0] == INT64_MIN,
                "I64 min round trip");
        duet_st_close(st);
    }
    free(want);
}

static void test_roundtrip(void) {
    char path[300];
    tmp_path(path, sizeof path, "rt.safetensors");
    /* every dtype, several shapes, metadata needing escapes */
    float a[2 * 3 * 4 * 5];
    t_fill_uniform(a, 120, 3, -4, 4);
    uint16_t h[7], b[7];
    duet_f32_to_f16(h, a, 7);
    duet_f32_to_bf16(b, a + 7, 7);
    int32_t i32[6] = {1, -2, 3, INT32_MIN, INT32_MAX, 0};
    int64_t i64[2] = {INT64_MAX, -3};
    uint8_t u8[3] = {250, 0, 7};
    int8_t i8[3] = {-1, 2, -3};
    double f64[2] = {1e-300, -2.5};
    duet_st_writer *w = duet_st_writer_new();
    T_CHECK(duet_st_writer_add(w, "a", DUET_DTYPE_F32, 4, (int64_t[]){2, 3, 4, 5}, a) == DUET_OK &&
                duet_st_writer_add(w, "h", DUET_DTYPE_F16, 1, (int64_t[]){7}, h) == DUET_OK &&
                duet_st_writer_add(w, "b", DUET_DTYPE_BF16, 2, (int64_t[]){1, 7}, b) == DUET_OK &&
                duet_st_writer_add(w, "i32", DUET_DTYPE_I32, 2, (int64_t[]){3, 2}, i32) == DUET_OK &&
                duet_st_writer_add(w, "i64", DUET_DTYPE_I64, 1, (int64_t[]){2}, i64) == DUET_OK &&
                duet_st_writer_add(w, "u8", DUET_DTYPE_U8, 1, (int64_t[]){3}, u8) == DUET_OK &&
                duet_st_writer_add(w, "i8", DUET_DTYPE_I8, 1, (int64_t[]){3}, i8) == DUET_OK &&
                duet_st_writer_add(w, "f64", DUET_DTYPE_F64, 1, (int64_t[]){2}, f64) == DUET_OK &&
                duet_st_writer_add(w, "five", DUET_DTYPE_F32, 5, (int64_t[]){1, 1, 1, 1, 2}, a) == DUET_OK,
            "writer_add accepts every dtype: %s", duet_last_error());
    const char *odd = "q\"uote\\ \x01\x1f ctl\n\r\t / \xe2\x82\xac";
    T_CHECK(duet_st_writer_meta(w, "k", "first") == DUET_OK &&
                duet_st_writer_meta(w, odd, odd) == DUET_OK &&
                duet_st_writer_meta(w, "k", "second") == DUET_OK,
            "writer_meta");
    /* refusals */
    T_CHECK(duet_st_writer_add(w, "a", DUET_DTYPE_F32, 1, (int64_t[]){1}, a) == DUET_ERR_ARG &&
                strstr(duet_last_error(), "'a' added twice"),
            "duplicate name refused: %s", duet_last_error());
    T_CHECK(duet_st_writer_add(w, "n", DUET_DTYPE_F32, 1, (int64_t[]){-1}, a) == DUET_ERR_ARG,
            "negative shape refused");
    T_CHECK(duet_st_writer_add(w, "__metadata__", DUET_DTYPE_F32, 1, (int64_t[]){1}, a) ==
                DUET_ERR_ARG,
            "__metadata__ as a name refused");
    T_CHECK(duet_st_writer_add(w, "bad\xff", DUET_DTYPE_F32, 1, (int64_t[]){1}, a) == DUET_ERR_ARG &&
                strstr(duet_last_error(), "UTF-8"),
            "invalid UTF-8 name refused");
    T_CHECK(duet_st_writer_add(w, "big", DUET_DTYPE_F32, 3,
                               (int64_t[]){INT64_MAX / 2, 4, 4}, a) == DUET_ERR_ARG,
            "overflowing shape refused");
    T_CHECK(duet_st_writer_add(w, "nodata", DUET_DTYPE_F32, 1, (int64_t[]){2}, NULL) == DUET_ERR_ARG,
            "missing data refused");
    T_CHECK(duet_st_writer_meta(w, "k", "\xc0\xaf") == DUET_ERR_ARG, "overlong UTF-8 value refused");
    duet_status s = duet_st_writer_write(w, path);
    T_CHECK(s == DUET_OK, "write: %s", duet_last_error());
    duet_st_writer_free(w);

    /* duplicate names among many (the writer's name set rehashes as it grows) */
    w = duet_st_writer_new();
    int dup_ok = 1;
    char nm[32];
    for (int i = 0; i < 3000 && dup_ok; i++) {
        snprintf(nm, sizeof nm, "layer.%d.w", i);
        dup_ok = duet_st_writer_add(w, nm, DUET_DTYPE_F32, 1, (int64_t[]){1}, a) == DUET_OK;
    }
    for (int i = 0; i < 3000 && dup_ok; i += 7) {
        snprintf(nm, sizeof nm, "layer.%d.w", i);
        dup_ok = duet_st_writer_add(w, nm, DUET_DTYPE_F32, 1, (int64_t[]){1}, a) == DUET_ERR_ARG;
    }
    T_CHECK(dup_ok && duet_st_writer_add(w, "layer.3000.w", DUET_DTYPE_F32, 1, (int64_t[]){1}, a) ==
                          DUET_OK,
            "3000 names: every re-added one is refused, a new one accepted");
    duet_st_writer_free(w);

    size_t n;
    unsigned char *raw = slurp(path, &n);
    uint64_t hn = 0;
    for (int i = 7; raw && i >= 0; i--) hn = hn << 8 | raw[i];
    T_CHECK(raw && (8 + hn) % 8 == 0, "data starts 8-byte aligned (N = %llu)",
            (unsigned long long)hn);
    T_CHECK(raw && memcmp(raw + 8, "{\"__metadata__\":{", 17) == 0, "__metadata__ comes first");
    free(raw);

    duet_st *st = duet_st_open(path);
    T_CHECK(st != NULL, "round trip opens: %s", duet_last_error());
    if (!st) return;
    static const char *order[] = {"a", "h", "b", "i32", "i64", "u8", "i8", "f64", "five"};
    int order_ok = duet_st_count(st) == 9;
    for (int i = 0; order_ok && i < 9; i++) order_ok = strcmp(duet_st_name(st, i), order[i]) == 0;
    T_CHECK(order_ok, "insertion order kept");
    duet_tensor t;
    int ok = 1;
    ok &= duet_st_tensor(st, 0, &t) == DUET_OK && t.ndim == 4 && t.shape[3] == 5 &&
          memcmp(t.data, a, sizeof a) == 0 && strcmp(t.name, "a") == 0;
    ok &= duet_st_tensor(st, 1, &t) == DUET_OK && t.dtype == DUET_DTYPE_F16 && memcmp(t.data, h, 14) == 0;
    ok &= duet_st_tensor(st, 2, &t) == DUET_OK && t.dtype == DUET_DTYPE_BF16 && t.shape[1] == 7 &&
          memcmp(t.data, b, 14) == 0;
    ok &= duet_st_tensor(st, 3, &t) == DUET_OK && memcmp(t.data, i32, sizeof i32) == 0;
    ok &= duet_st_tensor(st, 4, &t) == DUET_OK && memcmp(t.data, i64, sizeof i64) == 0;
    ok &= duet_st_tensor(st, 5, &t) == DUET_OK && memcmp(t.data, u8, 3) == 0;
    ok &= duet_st_tensor(st, 6, &t) == DUET_OK && memcmp(t.data, i8, 3) == 0;
    ok &= duet_st_tensor(st, 7, &t) == DUET_OK && memcmp(t.data, f64, sizeof f64) == 0;
    T_CHECK(ok, "every dtype round-trips bit-exactly");
    float back[7], want[7];
    duet_f16_to_f32(want, h, 7);
    T_CHECK(duet_st_read_f32(st, "h", back, 7) == DUET_OK && memcmp(back, want, sizeof back) == 0,
            "read_f32 converts F16");
    duet_bf16_to_f32(want, b, 7);
    T_CHECK(duet_st_read_f32(st, "b", back, 7) == DUET_OK && memcmp(back, want, sizeof back) == 0,
            "read_f32 converts BF16");
    T_CHECK(duet_st_meta_count(st) == 2 && strcmp(duet_st_meta(st, "k"), "second") == 0 &&
                strcmp(duet_st_meta(st, odd), odd) == 0,
            "metadata round trip (escapes, replaced value)");
    duet_st_close(st);

    /* an empty writer makes a valid empty file */
    w = duet_st_writer_new();
    T_CHECK(duet_st_writer_write(w, path) == DUET_OK, "empty writer writes");
    duet_st_writer_free(w);
    st = duet_st_open(path);
    T_CHECK(st && duet_st_count(st) == 0, "empty file reads back");
    duet_st_close(st);
    raw = slurp(path, &n);
    T_CHECK(raw && n == 16 && memcmp(raw + 8, "{}      ", 8) == 0 && raw[0] == 8,
            "empty file is the 8-byte size + \"{}\" padded with spaces");
    free(raw);
    duet_st_writer_free(NULL);
    duet_st_close(NULL);
}

/* ======================================================================== */
/* Atomic writes                                                             */
/* ======================================================================== */

static void test_atomic(void) {
    char path[300], sub[300], dirp[300];
    tmp_path(path, sizeof path, "atomic.bin");
    const char *old = "the old contents";
    T_CHECK(duet_write_file_atomic(path, old, strlen(old)) == DUET_OK && file_equals(path, old, strlen(old)),
            "atomic write creates the file");
    T_CHECK(duet_write_file_atomic(path, "new", 3) == DUET_OK && file_equals(path, "new", 3),
            "atomic write replaces an existing file");
    T_CHECK(count_tmp_files() == 0, "no temporary left after success");
    put_file(path, old, strlen(old));

    /* into a folder that does not exist */
    tmp_path(sub, sizeof sub, "no/such/dir/x.bin");
    duet_status s = duet_write_file_atomic(sub, "x", 1);
    T_CHECK(s == DUET_ERR_IO && strstr(duet_last_error(), sub) &&
                strstr(duet_last_error(), "does the folder exist"),
            "missing folder: %s", duet_last_error());

    /* onto a folder: the rename fails after the data was written */
    tmp_path(dirp, sizeof dirp, "adir");
    mkdir(dirp, 0755);
    s = duet_write_file_atomic(dirp, "data", 4);
    struct stat st;
    T_CHECK(s == DUET_ERR_IO && strstr(duet_last_error(), "rename") && stat(dirp, &st) == 0 &&
                S_ISDIR(st.st_mode) && count_tmp_files() == 0,
            "failed rename removes the temporary: %s", duet_last_error());

    /* a write cut short (file size limit): old file intact, no temporary */
    struct rlimit saved, small;
    getrlimit(RLIMIT_FSIZE, &saved);
    small = saved;
    small.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &small) == 0) {
        static unsigned char big[100000];
        memset(big, 7, sizeof big);
        s = duet_write_file_atomic(path, big, sizeof big);
        setrlimit(RLIMIT_FSIZE, &saved);
        T_CHECK(s == DUET_ERR_IO && strstr(duet_last_error(), "write") &&
                    strstr(duet_last_error(), "untouched"),
                "a failed write reports IO: %s", duet_last_error());
        T_CHECK(file_equals(path, old, strlen(old)) && count_tmp_files() == 0,
                "after a failed write the old file is intact and no temporary is left");
        /* the same through the safetensors writer (data chunks past the limit) */
        duet_st_writer *w = duet_st_writer_new();
        duet_st_writer_add(w, "big", DUET_DTYPE_U8, 1, (int64_t[]){(int64_t)sizeof big}, big);
        setrlimit(RLIMIT_FSIZE, &small);
        s = duet_st_writer_write(w, path);
        setrlimit(RLIMIT_FSIZE, &saved);
        duet_st_writer_free(w);
        T_CHECK(s == DUET_ERR_IO && file_equals(path, old, strlen(old)) && count_tmp_files() == 0,
                "safetensors writer: failed write leaves the old file: %s", duet_last_error());
    } else {
        T_CHECK(0, "setrlimit(RLIMIT_FSIZE) failed: %s", strerror(errno));
    }
    signal(SIGXFSZ, prev);

    /* allocation failures */
    budget_on(0);
    s = duet_write_file_atomic(path, "x", 1);
    budget_off();
    T_CHECK(s == DUET_ERR_NOMEM && file_equals(path, old, strlen(old)) && count_tmp_files() == 0,
            "allocation failure: old file intact: %s", duet_last_error());
    float v[4] = {1, 2, 3, 4};
    int fail_ok = 1, b;
    for (b = 0; b < 64; b++) {
        budget_on(b);
        duet_st_writer *w = duet_st_writer_new();
        duet_status r = w ? duet_st_writer_meta(w, "k", "v") : DUET_ERR_NOMEM;
        if (r == DUET_OK) r = duet_st_writer_add(w, "v", DUET_DTYPE_F32, 1, (int64_t[]){4}, v);
        if (r == DUET_OK) r = duet_st_writer_write(w, path);
        duet_st_writer_free(w);
        budget_off();
        if (r == DUET_OK) break;
        if (r != DUET_ERR_NOMEM || !file_equals(path, old, strlen(old)) || count_tmp_files() != 0)
            fail_ok = 0;
    }
    T_CHECK(fail_ok && b < 64, "safetensors writer: each of %d allocation failures leaves the old "
                               "file intact and no temporary", b);

    /* permissions of the replaced file are kept */
    put_file(path, old, strlen(old));
    chmod(path, 0640);
    duet_write_file_atomic(path, "p", 1);
    int have = stat(path, &st) == 0;
    T_CHECK(have && (st.st_mode & 0777) == 0640, "mode 0640 kept (%o)",
            (unsigned)(st.st_mode & 0777));

    /* a stale temporary of a crashed process with our pid is replaced */
    char stale[400];
    snprintf(stale, sizeof stale, "%s.tmp.%ld", path, (long)getpid());
    put_file(stale, "junk", 4);
    T_CHECK(duet_write_file_atomic(path, "fresh", 5) == DUET_OK && file_equals(path, "fresh", 5) &&
                access(stale, F_OK) != 0,
            "stale temporary does not block the write");

    /* zero bytes; chunks */
    T_CHECK(duet_write_file_atomic(path, NULL, 0) == DUET_OK && file_equals(path, "", 0),
            "zero-byte write");
    duet_chunk ch[3] = {{"ab", 2}, {NULL, 0}, {"cde", 3}};
    T_CHECK(duet_write_chunks_atomic(path, ch, 3) == DUET_OK && file_equals(path, "abcde", 5),
            "chunked write concatenates");
    T_CHECK(duet_write_file_atomic("", "x", 1) == DUET_ERR_ARG, "empty path refused");

    /* reading helpers: regular file, empty file, a character device */
    char *data;
    size_t n;
    T_CHECK(duet_read_file(path, &data, &n) == DUET_OK && n == 5 && strcmp(data, "abcde") == 0,
            "read_file NUL-terminates");
    duet_free(data);
    duet_mapped m;
    put_file(path, "", 0);
    T_CHECK(duet_map_file(path, &m) == DUET_OK && m.size == 0 && m.data != NULL, "map empty file");
    duet_unmap_file(&m);
    T_CHECK(duet_map_file("/dev/null", &m) == DUET_OK && m.size == 0 && m.heap != NULL,
            "map a non-regular file reads it");
    duet_unmap_file(&m);
}

/* ======================================================================== */
/* Allocation failures while reading                                         */
/* ======================================================================== */

static void test_open_nomem(void) {
    int b, clean = 1;
    for (b = 0; b < 64; b++) {
        budget_on(b);
        duet_st *st = duet_st_open("tests/fixtures/st_unaligned.safetensors");
        budget_off();
        if (st) {
            duet_st_close(st);
            break;
        }
        if (!strstr(duet_last_error(), "out of memory")) clean = 0;
    }
    T_CHECK(clean && b > 3 && b < 64, "open fails cleanly at each of %d allocation points", b);
}

/* ======================================================================== */
/* Fuzz-ish                                                                  */
/* ======================================================================== */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Opens an exact-size heap copy; when it opens, touches every tensor's bytes. */
static int fuzz_one(const unsigned char *bytes, size_t n, uint64_t *sink) {
    unsigned char *b = malloc(n ? n : 1);
    if (n) memcpy(b, bytes, n);
    duet_clear_error();
    duet_st *st = open_mem("fuzz.safetensors", b, n);
    int opened = st != NULL;
    if (st) {
        for (int i = 0; i < duet_st_count(st); i++) {
            duet_tensor t;
            if (duet_st_tensor(st, i, &t) != DUET_OK) continue;
            size_t nb = duet_tensor_nbytes(&t);
            for (size_t k = 0; k < nb; k++) *sink += ((const unsigned char *)t.data)[k];
        }
        for (int i = 0; i < duet_st_meta_count(st); i++) *sink += strlen(duet_st_meta_key(st, i));
        duet_st_close(st);
    } else if (strncmp(duet_last_error(), "fuzz.safetensors: ", 18) != 0) {
        opened = -1; /* a refusal without the file name */
    }
    free(b);
    return opened;
}

static void test_fuzz(void) {
    const char *files[] = {"tests/fixtures/st_basic.safetensors",
                           "tests/fixtures/st_escaped.safetensors",
                           "tests/fixtures/st_unaligned.safetensors"};
    uint64_t sink = 0;
    for (int f = 0; f < 3; f++) {
        size_t n;
        unsigned char *whole = slurp(files[f], &n);
        if (!whole) {
            T_CHECK(0, "cannot read %s", files[f]);
            continue;
        }
        int trunc_bad = 0;
        for (size_t len = 0; len <= n; len++) {
            int r = fuzz_one(whole, len, &sink);
            if (r != (len == n)) trunc_bad++;
        }
        T_CHECK(trunc_bad == 0, "%s: every truncation 0..%zu is refused with a message (%d off)",
                files[f], n, trunc_bad);

        uint64_t hn = 0;
        for (int i = 7; i >= 0; i--) hn = hn << 8 | whole[i];
        size_t span = 8 + (size_t)hn;
        static const unsigned char interesting[] = {'"', '{', '}', '[', ']', ',', ':', '-', '0',
                                                    '9', '\\', 'u', 'e', '.', ' ', 0x80, 0xff, 0};
        unsigned char *mut = malloc(n);
        int opened = 0, unnamed = 0;
        for (int v = 0; v < 3000; v++) {
            memcpy(mut, whole, n);
            int flips = 1 + (int)(next_u64() % 3);
            for (int k = 0; k < flips; k++) {
                size_t at = (size_t)(next_u64() % span);
                uint64_t r = next_u64();
                if (r & 1) mut[at] ^= (unsigned char)(1u << ((r >> 1) & 7));
                else mut[at] = interesting[(r >> 1) % sizeof interesting];
            }
            int r = fuzz_one(mut, n, &sink);
            opened += r == 1;
            unnamed += r < 0;
        }
        free(mut);
        T_CHECK(unnamed == 0, "%s: 3000 header mutations never crash, refusals name the file "
                              "(%d still opened)",
                files[f], opened);
        /* a few truncations through real files (the mmap path) */
        char path[300];
        tmp_path(path, sizeof path, "trunc.safetensors");
        int real_bad = 0;
        for (size_t len = 0; len < n; len += 1 + len / 3) {
            put_file(path, whole, len);
            duet_st *st = duet_st_open(path);
            if (st || !strstr(duet_last_error(), path)) real_bad++;
            duet_st_close(st);
        }
        T_CHECK(real_bad == 0, "%s: truncated files on disk are refused", files[f]);
        free(whole);
    }
    T_CHECK(sink != 1, "checksum %llu", (unsigned long long)sink);
}

int main(int argc, char **argv) {
    duet_init();
    if (argc == 3 && strcmp(argv[1], "--write-golden") == 0) {
        duet_status s = write_golden(argv[2]);
        if (s != DUET_OK) fprintf(stderr, "write-golden: %s\n", duet_last_error());
        return s == DUET_OK ? 0 : 1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/duet_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_python_files();
    test_bad_files();
    test_header_rules();
    test_golden();
    test_roundtrip();
    test_atomic();
    test_open_nomem();
    test_fuzz();
    remove_tree(tmpdir);
    return t_done();
}
