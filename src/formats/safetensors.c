/*
 * safetensors.c — duet's checkpoint format: the Hugging Face safetensors
 * layout, read (memory-mapped, zero-copy) and written (atomically).
 *
 * Layout (Ref: https://github.com/huggingface/safetensors, "Format"):
 *   u64 little-endian N | N bytes of UTF-8 JSON | data buffer
 * The JSON is an object: tensor name -> {"dtype": "F32", "shape": [2, 3],
 * "data_offsets": [begin, end]} with offsets relative to the data buffer,
 * plus an optional "__metadata__": {string: string}. The header may end in
 * spaces; writers pad it so the data buffer starts 8-byte aligned.
 *
 * The reader trusts nothing: every rule below gives DUET_ERR_FORMAT with a
 * message naming the file and the field — file shorter than 8 bytes, N over
 * 100,000,000, N past the end of the file, header not JSON / not an object,
 * duplicate keys, unknown dtype, shape entries that are not non-negative
 * integers, element counts that overflow, data_offsets that are not two
 * integers / end before begin / a byte count that disagrees with dtype and
 * shape / past the buffer, tensors that overlap, bytes that belong to no
 * tensor, non-string metadata. dtypes the spec has but duet does not (BOOL,
 * F8_*, U16, ...) give DUET_ERR_UNSUPPORTED.
 *
 * "File order" (duet_st_name(st, i)) is the order of the data in the buffer,
 * which is also the order our writer inserts tensors in.
 *
 * Alignment: well-formed files keep every tensor aligned to its element size;
 * a file that does not (legal by the spec) still loads — only the misaligned
 * tensors are copied into one aligned block, the rest stay in the map.
 *
 * What it is not: a writer of anything but the tensors handed to it (no
 * sharded checkpoints, no index.json).
 */
#include "formats/formats.h"
#include "formats/json.h"

#include "core/internal.h"

#include <stdarg.h>
#include <string.h>

#define ST_MAX_HEADER 100000000ull /* the spec's limit on N */

/* ======================================================================== */
/* dtypes                                                                    */
/* ======================================================================== */

/* The spec's dtype names. duet = -1: valid safetensors, not supported here. */
static const struct {
    const char *name;
    int duet;
} st_dtypes[] = {
    {"F32", DUET_DTYPE_F32},  {"F16", DUET_DTYPE_F16},  {"BF16", DUET_DTYPE_BF16},
    {"I32", DUET_DTYPE_I32},  {"I64", DUET_DTYPE_I64},  {"U8", DUET_DTYPE_U8},
    {"I8", DUET_DTYPE_I8},    {"F64", DUET_DTYPE_F64},  {"BOOL", -1},
    {"I16", -1},              {"U16", -1},              {"U32", -1},
    {"U64", -1},              {"F8_E4M3", -1},          {"F8_E5M2", -1},
    {"F8_E8M0", -1},          {"F4", -1},               {"F6_E2M3", -1},
    {"F6_E3M2", -1},          {"C64", -1},
};
#define ST_NDTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

static const char *st_dtype_name(duet_dtype t) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (st_dtypes[i].duet == (int)t) return st_dtypes[i].name;
    return NULL;
}

/* ======================================================================== */
/* The handle                                                                */
/* ======================================================================== */

typedef struct st_entry {
    const char *name;          /* into the JSON document */
    int64_t name_len;
    duet_dtype dtype;
    int ndim;
    const int64_t *shape;      /* (ndim) into st->shapes */
    int64_t numel;
    int64_t begin, end;        /* data_offsets */
    int64_t header_index;      /* member index in the header object */
    const unsigned char *data; /* into the map (or st->realigned) */
} st_entry;

struct duet_st {
    char *path;                /* for messages */
    duet_mapped map;           /* empty when opened from memory */
    duet_json *doc;
    const duet_json *meta;     /* the __metadata__ object, or NULL */
    int count;
    st_entry *e;               /* (count) in file order: sorted by data offset */
    int *by_name;              /* (count) indices into e, sorted by name */
    int64_t *shapes;           /* every tensor's dims, back to back */
    unsigned char *realigned;  /* copies of misaligned tensors, or NULL */
};

/* Names in messages: at most ~80 bytes, control characters replaced, cut on
 * a UTF-8 boundary, so a hostile name cannot flood or garble the message. */
static const char *printable(const char *s, int64_t len, char *buf, size_t size) {
    size_t n = 0, i = 0;
    const size_t limit = size - 4;
    while ((int64_t)i < len && n < limit) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t k = 1;
            while ((int64_t)(i + k) < len && ((unsigned char)s[i + k] & 0xC0) == 0x80) k++;
            if (n + k > limit) break;
            memcpy(buf + n, s + i, k);
            n += k;
            i += k;
            continue;
        }
        buf[n++] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
        i++;
    }
    if ((int64_t)i < len) memcpy(buf + n, "...", 3), n += 3;
    buf[n] = 0;
    return buf;
}

typedef struct st_ctx {
    const char *path;
    duet_status status;
} st_ctx;

static duet_status st_err(st_ctx *c, duet_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static duet_status st_err(st_ctx *c, duet_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->status = s;
    return duet_set_error(s, "%s: %s", c->path, msg);
}

/* "[5, 6]" (cut short when long) */
static const char *shape_str(const int64_t *shape, int ndim, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
    return buf;
}

/* How a JSON value that should have been a non-negative integer looks. */
static const char *value_str(const duet_json *v, char *buf, size_t size) {
    if (v->type == DUET_JSON_NUMBER) {
        if ((v->flags & DUET_JSON_INTEGRAL) && !(v->flags & DUET_JSON_FRAC_OR_EXP))
            snprintf(buf, size, "%lld", (long long)v->i64);
        else {
            snprintf(buf, size, "%.17g", v->num);
            /* show that 2.0 or 1e1 was not an integer literal */
            if (!strpbrk(buf, ".eEn")) snprintf(buf + strlen(buf), size - strlen(buf), ".0");
        }
    } else snprintf(buf, size, "%s", duet_json_type_phrase(v->type));
    return buf;
}

/* A JSON integer literal >= 0 (no fraction, no exponent: "2.0" is refused, as
 * the reference reader refuses it for usize). */
static int as_index(const duet_json *v, int64_t *out) {
    if (!v || v->type != DUET_JSON_NUMBER) return 0;
    if (!(v->flags & DUET_JSON_INTEGRAL) || (v->flags & DUET_JSON_FRAC_OR_EXP)) return 0;
    if (v->i64 < 0) return 0;
    *out = v->i64;
    return 1;
}

/* ======================================================================== */
/* Reading                                                                   */
/* ======================================================================== */

/* Checks one tensor entry and fills e (shape into shape_out). */
static duet_status parse_entry(st_ctx *c, const duet_json *m, int64_t buffer_size, st_entry *e,
                               int64_t *shape_out) {
    char nb[100], b1[128], b2[160];
    const char *nm = printable(m->key, m->key_len, nb, sizeof nb);
    if (m->type != DUET_JSON_OBJECT)
        return st_err(c, DUET_ERR_FORMAT,
                      "tensor '%s': entry is %s, not an object with dtype, shape and "
                      "data_offsets",
                      nm, duet_json_type_phrase(m->type));
    const duet_json *dt = NULL, *sh = NULL, *off = NULL;
    for (int64_t i = 0; i < m->len; i++) {
        const duet_json *f = &m->items[i];
        const duet_json **slot = NULL;
        if (f->key_len == 5 && memcmp(f->key, "dtype", 5) == 0) slot = &dt;
        else if (f->key_len == 5 && memcmp(f->key, "shape", 5) == 0) slot = &sh;
        else if (f->key_len == 12 && memcmp(f->key, "data_offsets", 12) == 0) slot = &off;
        else
            return st_err(c, DUET_ERR_FORMAT,
                          "tensor '%s': unexpected field '%s' (a tensor entry has dtype, shape "
                          "and data_offsets)",
                          nm, printable(f->key, f->key_len, b1, 64));
        if (*slot)
            return st_err(c, DUET_ERR_FORMAT, "tensor '%s': field '%s' appears twice", nm,
                          f->key);
        *slot = f;
    }
    if (!dt || !sh || !off)
        return st_err(c, DUET_ERR_FORMAT, "tensor '%s': missing field '%s'", nm,
                      !dt ? "dtype" : !sh ? "shape" : "data_offsets");

    /* dtype */
    if (dt->type != DUET_JSON_STRING)
        return st_err(c, DUET_ERR_FORMAT, "tensor '%s': dtype is %s, not a string", nm,
                      duet_json_type_phrase(dt->type));
    int k = 0;
    while (k < ST_NDTYPES && strcmp(st_dtypes[k].name, dt->str) != 0) k++;
    if (k == ST_NDTYPES || (int64_t)strlen(dt->str) != dt->len)
        return st_err(c, DUET_ERR_FORMAT,
                      "tensor '%s': unknown dtype '%s' (safetensors dtypes: F64, F32, F16, "
                      "BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, ...)",
                      nm, printable(dt->str, dt->len, b1, 64));
    if (st_dtypes[k].duet < 0)
        return st_err(c, DUET_ERR_UNSUPPORTED,
                      "tensor '%s': dtype %s is not supported by duet (it reads F32, F16, BF16, "
                      "F64, I64, I32, I8, U8); convert the checkpoint first",
                      nm, st_dtypes[k].name);
    e->dtype = (duet_dtype)st_dtypes[k].duet;
    int64_t esize = (int64_t)duet_dtype_size(e->dtype);

    /* shape */
    if (sh->type != DUET_JSON_ARRAY)
        return st_err(c, DUET_ERR_FORMAT, "tensor '%s': shape is %s, not an array", nm,
                      duet_json_type_phrase(sh->type));
    if (sh->len > 64)
        return st_err(c, DUET_ERR_FORMAT, "tensor '%s': shape has %lld dimensions (at most 64)",
                      nm, (long long)sh->len);
    e->ndim = (int)sh->len;
    int64_t numel = 1;
    int overflow = 0;
    for (int64_t i = 0; i < sh->len; i++) {
        int64_t d;
        if (!as_index(&sh->items[i], &d))
            return st_err(c, DUET_ERR_FORMAT,
                          "tensor '%s': shape[%lld] is %s, not a non-negative integer", nm,
                          (long long)i, value_str(&sh->items[i], b1, 64));
        shape_out[i] = d;
        if (d != 0 && numel > INT64_MAX / d) overflow = 1;
        else numel *= d;
    }
    /* a zero anywhere makes the tensor empty, however large the rest */
    for (int64_t i = 0; i < sh->len; i++)
        if (shape_out[i] == 0) numel = 0, overflow = 0;
    if (overflow || numel > INT64_MAX / esize)
        return st_err(c, DUET_ERR_FORMAT,
                      "tensor '%s': shape %s has too many elements (the byte count overflows "
                      "64 bits)",
                      nm, shape_str(shape_out, e->ndim, b2, sizeof b2));
    e->numel = numel;
    e->shape = shape_out;

    /* data_offsets */
    int64_t begin, end;
    if (off->type != DUET_JSON_ARRAY || off->len != 2 || !as_index(&off->items[0], &begin) ||
        !as_index(&off->items[1], &end)) {
        if (off->type != DUET_JSON_ARRAY)
            snprintf(b1, sizeof b1, "%s", duet_json_type_phrase(off->type));
        else if (off->len != 2)
            snprintf(b1, sizeof b1, "an array of %lld items", (long long)off->len);
        else {
            char v0[48], v1[48];
            snprintf(b1, sizeof b1, "[%s, %s]", value_str(&off->items[0], v0, sizeof v0),
                     value_str(&off->items[1], v1, sizeof v1));
        }
        return st_err(c, DUET_ERR_FORMAT,
                      "tensor '%s': data_offsets must be two non-negative integers "
                      "[begin, end], found %s",
                      nm, b1);
    }
    if (end < begin)
        return st_err(c, DUET_ERR_FORMAT, "tensor '%s': data_offsets [%lld, %lld] end before they begin",
                      nm, (long long)begin, (long long)end);
    if (end - begin != numel * esize)
        return st_err(c, DUET_ERR_FORMAT,
                      "tensor '%s': data_offsets [%lld, %lld] do not match dtype %s and shape "
                      "%s (%lld bytes)",
                      nm, (long long)begin, (long long)end, st_dtypes[k].name,
                      shape_str(shape_out, e->ndim, b2, sizeof b2), (long long)(numel * esize));
    if (end > buffer_size)
        return st_err(c, DUET_ERR_FORMAT,
                      "tensor '%s': data_offsets [%lld, %lld] run past the end of the data "
                      "buffer (%lld bytes after the header) - is the file truncated?",
                      nm, (long long)begin, (long long)end, (long long)buffer_size);
    e->begin = begin;
    e->end = end;
    e->name = m->key;
    e->name_len = m->key_len;
    return DUET_OK;
}

static duet_status check_metadata(st_ctx *c, const duet_json *m) {
    char b1[100], b2[100];
    if (m->type == DUET_JSON_NULL) return DUET_OK; /* the reference reader's None */
    if (m->type != DUET_JSON_OBJECT)
        return st_err(c, DUET_ERR_FORMAT, "__metadata__ is %s, not an object of strings",
                      duet_json_type_phrase(m->type));
    for (int64_t i = 0; i < m->len; i++) {
        const duet_json *v = &m->items[i];
        if (v->type != DUET_JSON_STRING)
            return st_err(c, DUET_ERR_FORMAT,
                          "__metadata__ '%s' is %s, not a string (metadata values must be "
                          "strings)",
                          printable(v->key, v->key_len, b1, sizeof b1),
                          duet_json_type_phrase(v->type));
    }
    int64_t a, b;
    int d = duet_json_find_duplicate(m, &a, &b);
    if (d < 0) return c->status = DUET_ERR_NOMEM;
    if (d)
        return st_err(c, DUET_ERR_FORMAT, "__metadata__ has the key '%s' twice (entries %lld and %lld)",
                      printable(m->items[b].key, m->items[b].key_len, b2, sizeof b2),
                      (long long)a, (long long)b);
    return DUET_OK;
}

static int entry_offset_cmp(const void *pa, const void *pb) {
    const st_entry *a = pa, *b = pb;
    if (a->begin != b->begin) return (a->begin > b->begin) - (a->begin < b->begin);
    if (a->end != b->end) return (a->end > b->end) - (a->end < b->end);
    return (a->header_index > b->header_index) - (a->header_index < b->header_index);
}

static int name_cmp(const char *a, int64_t al, const char *b, int64_t bl) {
    size_t n = (size_t)DUET_MIN(al, bl);
    int r = n ? memcmp(a, b, n) : 0;
    if (r) return r;
    return (al > bl) - (al < bl);
}

/* qsort has no context pointer: the by_name sort goes through this. */
static _Thread_local const st_entry *sort_entries;
static int by_name_cmp(const void *pa, const void *pb) {
    const st_entry *a = &sort_entries[*(const int *)pa], *b = &sort_entries[*(const int *)pb];
    return name_cmp(a->name, a->name_len, b->name, b->name_len);
}

static _Alignas(64) const unsigned char st_empty[64];

/* Points every tensor's data into the buffer; copies the ones whose address is
 * not a multiple of their element size into one aligned block. */
static duet_status place_data(st_ctx *c, duet_st *st, const unsigned char *buf) {
    size_t need = 0;
    for (int i = 0; i < st->count; i++) {
        st_entry *e = &st->e[i];
        if (e->end == e->begin) {
            e->data = st_empty; /* nothing to read; keep the pointer aligned */
            continue;
        }
        e->data = buf + e->begin;
        if ((uintptr_t)e->data % duet_dtype_size(e->dtype) != 0)
            need += ((size_t)(e->end - e->begin) + 63) & ~(size_t)63;
    }
    if (!need) return DUET_OK;
    st->realigned = duet_alloc(need);
    if (!st->realigned) return c->status = DUET_ERR_NOMEM;
    size_t at = 0;
    for (int i = 0; i < st->count; i++) {
        st_entry *e = &st->e[i];
        if ((uintptr_t)e->data % duet_dtype_size(e->dtype) == 0) continue;
        size_t n = (size_t)(e->end - e->begin);
        memcpy(st->realigned + at, e->data, n);
        e->data = st->realigned + at;
        at += (n + 63) & ~(size_t)63;
    }
    return DUET_OK;
}

static duet_status parse_file(st_ctx *c, duet_st *st, const unsigned char *bytes, size_t size) {
    char b1[100], b2[100];
    if (size < 8)
        return st_err(c, DUET_ERR_FORMAT,
                      "file is %zu bytes, shorter than the 8-byte header size field (not a "
                      "safetensors file, or truncated)",
                      size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
    if (n > ST_MAX_HEADER)
        return st_err(c, DUET_ERR_FORMAT,
                      "header size %llu exceeds the spec's limit of %llu bytes (not a "
                      "safetensors file?)",
                      (unsigned long long)n, ST_MAX_HEADER);
    if (n > size - 8)
        return st_err(c, DUET_ERR_FORMAT,
                      "header size %llu runs past the end of the file (%zu bytes) - is the file "
                      "truncated?",
                      (unsigned long long)n, size);
    const char *hdr = (const char *)bytes + 8;
    int64_t buffer_size = (int64_t)(size - 8 - n);

    duet_json_error je;
    st->doc = duet_json_parse(hdr, (size_t)n, &je);
    if (!st->doc) {
        if (je.status == DUET_ERR_NOMEM) return c->status = DUET_ERR_NOMEM;
        return st_err(c, DUET_ERR_FORMAT, "header is not valid JSON: %s (header byte %zu)",
                      je.msg, je.offset);
    }
    const duet_json *root = st->doc;
    if (root->type != DUET_JSON_OBJECT)
        return st_err(c, DUET_ERR_FORMAT, "header is %s, not a JSON object",
                      duet_json_type_phrase(root->type));
    int64_t da, db;
    int d = duet_json_find_duplicate(root, &da, &db);
    if (d < 0) return c->status = DUET_ERR_NOMEM;
    if (d)
        return st_err(c, DUET_ERR_FORMAT, "header has the key '%s' twice (entries %lld and %lld)",
                      printable(root->items[db].key, root->items[db].key_len, b1, sizeof b1),
                      (long long)da, (long long)db);

    /* metadata first; count tensors and dims */
    int64_t count = 0, dims = 0;
    for (int64_t i = 0; i < root->len; i++) {
        const duet_json *m = &root->items[i];
        if (m->key_len == 12 && memcmp(m->key, "__metadata__", 12) == 0) {
            duet_status s = check_metadata(c, m);
            if (s != DUET_OK) return s;
            if (m->type == DUET_JSON_OBJECT) st->meta = m;
            continue;
        }
        count++;
        const duet_json *sh = duet_json_get(m, "shape");
        if (sh && sh->type == DUET_JSON_ARRAY) dims += sh->len;
    }
    if (count > INT32_MAX)
        return st_err(c, DUET_ERR_UNSUPPORTED, "%lld tensors is more than duet handles",
                      (long long)count);

    /* one block: entries, name index, shapes */
    size_t bytes_e = (size_t)count * sizeof(st_entry), bytes_i = (size_t)count * sizeof(int);
    size_t bytes_i_al = (bytes_i + 7) & ~(size_t)7;
    unsigned char *blk = duet_alloc(bytes_e + bytes_i_al + (size_t)dims * sizeof(int64_t) + 8);
    if (!blk) return c->status = DUET_ERR_NOMEM;
    st->e = (st_entry *)blk;
    st->by_name = (int *)(blk + bytes_e);
    st->shapes = (int64_t *)(blk + bytes_e + bytes_i_al);
    st->count = (int)count;

    int64_t t = 0, shape_at = 0;
    for (int64_t i = 0; i < root->len; i++) {
        const duet_json *m = &root->items[i];
        if (m->key_len == 12 && memcmp(m->key, "__metadata__", 12) == 0) continue;
        st_entry *e = &st->e[t];
        memset(e, 0, sizeof *e);
        e->header_index = i;
        duet_status s = parse_entry(c, m, buffer_size, e, st->shapes + shape_at);
        if (s != DUET_OK) return s;
        shape_at += e->ndim;
        t++;
    }

    /* the buffer must be covered exactly: no overlap, no hole, nothing after */
    qsort(st->e, (size_t)count, sizeof *st->e, entry_offset_cmp);
    int64_t covered = 0;
    for (int i = 0; i < st->count; i++) {
        const st_entry *e = &st->e[i];
        if (e->begin < covered) {
            const st_entry *p = &st->e[i - 1]; /* covered > 0 implies i > 0 */
            return st_err(c, DUET_ERR_FORMAT,
                          "tensors '%s' (data_offsets [%lld, %lld]) and '%s' (data_offsets "
                          "[%lld, %lld]) overlap",
                          printable(p->name, p->name_len, b1, sizeof b1), (long long)p->begin,
                          (long long)p->end, printable(e->name, e->name_len, b2, sizeof b2),
                          (long long)e->begin, (long long)e->end);
        }
        if (e->begin > covered)
            return st_err(c, DUET_ERR_FORMAT,
                          "bytes [%lld, %lld) of the data buffer belong to no tensor (a gap "
                          "before tensor '%s'; data_offsets must cover the buffer exactly)",
                          (long long)covered, (long long)e->begin,
                          printable(e->name, e->name_len, b1, sizeof b1));
        covered = e->end;
    }
    if (covered != buffer_size)
        return st_err(c, DUET_ERR_FORMAT,
                      "bytes [%lld, %lld) at the end of the data buffer belong to no tensor "
                      "(data_offsets must cover the buffer exactly)",
                      (long long)covered, (long long)buffer_size);

    for (int i = 0; i < st->count; i++) st->by_name[i] = i;
    sort_entries = st->e;
    qsort(st->by_name, (size_t)count, sizeof *st->by_name, by_name_cmp);
    sort_entries = NULL;
    return place_data(c, st, bytes + 8 + n);
}

static duet_status open_impl(const char *path, const duet_mapped *map, const void *data,
                             size_t size, duet_st **out) {
    *out = NULL;
    st_ctx c = {path ? path : "(unnamed)", DUET_OK};
    size_t pl = strlen(c.path);
    duet_st *st = duet_alloc(sizeof *st + pl + 1);
    if (!st) return DUET_ERR_NOMEM;
    memset(st, 0, sizeof *st);
    st->path = (char *)(st + 1);
    memcpy(st->path, c.path, pl + 1);
    if (map) st->map = *map;
    duet_status s = parse_file(&c, st, data, size);
    if (s != DUET_OK) {
        if (s == DUET_ERR_NOMEM)
            duet_set_error(DUET_ERR_NOMEM, "%s: out of memory reading the header", c.path);
        st->map = (duet_mapped){0}; /* the caller still owns it */
        duet_st_close(st);
        return s;
    }
    *out = st;
    return DUET_OK;
}

duet_status duet_st_open_ex(const char *path, duet_st **out) {
    duet_mapped m;
    *out = NULL;
    duet_status s = duet_map_file(path, &m);
    if (s != DUET_OK) return s;
    s = open_impl(path, &m, m.data, m.size, out);
    if (s != DUET_OK) duet_unmap_file(&m);
    return s;
}

duet_st *duet_st_open(const char *path) {
    duet_st *st;
    duet_st_open_ex(path, &st);
    return st;
}

duet_status duet_st_open_memory(const char *name, const void *data, size_t size, duet_st **out) {
    *out = NULL;
    if (!data && size) return duet_set_error(DUET_ERR_ARG, "duet_st_open_memory: no data");
    return open_impl(name, NULL, data ? data : "", size, out);
}

void duet_st_close(duet_st *st) {
    if (!st) return;
    duet_free(st->realigned);
    duet_free(st->e); /* the block holding e, by_name and shapes */
    duet_json_free(st->doc);
    duet_unmap_file(&st->map);
    duet_free(st);
}

int duet_st_count(const duet_st *st) { return st ? st->count : 0; }

const char *duet_st_name(const duet_st *st, int i) {
    if (!st || i < 0 || i >= st->count) return NULL;
    return st->e[i].name;
}

int duet_st_find(const duet_st *st, const char *name) {
    if (!st || !name) return -1;
    int64_t nl = (int64_t)strlen(name);
    int lo = 0, hi = st->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const st_entry *e = &st->e[st->by_name[mid]];
        int r = name_cmp(e->name, e->name_len, name, nl);
        if (r == 0) return st->by_name[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

duet_status duet_st_tensor(const duet_st *st, int i, duet_tensor *out) {
    if (!st || i < 0 || i >= st->count)
        return duet_set_error(DUET_ERR_ARG, "duet_st_tensor: index %d out of range", i);
    const st_entry *e = &st->e[i];
    char nb[100];
    if (e->ndim > DUET_MAX_DIMS)
        return duet_set_error(DUET_ERR_UNSUPPORTED,
                              "%s: tensor '%s' has %d dimensions; duet tensors have at most %d",
                              st->path, printable(e->name, e->name_len, nb, sizeof nb), e->ndim,
                              DUET_MAX_DIMS);
    duet_tensor_init(out, e->dtype, e->ndim, e->shape, (void *)e->data);
    snprintf(out->name, sizeof out->name, "%s", e->name);
    return DUET_OK;
}

const char *duet_st_meta(const duet_st *st, const char *key) {
    return st ? duet_json_as_str(duet_json_get(st->meta, key)) : NULL;
}

int duet_st_meta_count(const duet_st *st) {
    return st && st->meta ? (int)DUET_MIN(st->meta->len, INT32_MAX) : 0;
}

const char *duet_st_meta_key(const duet_st *st, int i) {
    const duet_json *m = st ? duet_json_at(st->meta, i) : NULL;
    return m ? m->key : NULL;
}

duet_status duet_st_read_f32(const duet_st *st, const char *name, float *dst, int64_t n) {
    char nb[100];
    if (!st || !name) return duet_set_error(DUET_ERR_ARG, "duet_st_read_f32: no file or name");
    int i = duet_st_find(st, name);
    if (i < 0)
        return duet_set_error(DUET_ERR_FORMAT, "%s: no tensor named '%s' (the file has %d)",
                              st->path, printable(name, (int64_t)strlen(name), nb, sizeof nb),
                              st->count);
    const st_entry *e = &st->e[i];
    if (e->numel != n) {
        char sb[160];
        return duet_set_error(DUET_ERR_SHAPE,
                              "%s: tensor '%s' has %lld elements (shape %s), the model expects "
                              "%lld",
                              st->path, printable(e->name, e->name_len, nb, sizeof nb),
                              (long long)e->numel, shape_str(e->shape, e->ndim, sb, sizeof sb),
                              (long long)n);
    }
    if (n == 0) return DUET_OK;
    switch (e->dtype) {
    case DUET_DTYPE_F32: memcpy(dst, e->data, (size_t)n * sizeof(float)); break;
    case DUET_DTYPE_F16: duet_f16_to_f32(dst, (const uint16_t *)e->data, n); break;
    case DUET_DTYPE_BF16: duet_bf16_to_f32(dst, (const uint16_t *)e->data, n); break;
    default:
        return duet_set_error(DUET_ERR_UNSUPPORTED,
                              "%s: tensor '%s' is %s; reading as f32 converts F32, F16 and "
                              "BF16 only",
                              st->path, printable(e->name, e->name_len, nb, sizeof nb),
                              st_dtype_name(e->dtype));
    }
    return DUET_OK;
}

/* ======================================================================== */
/* Writing                                                                   */
/* ======================================================================== */

typedef struct wt_tensor {
    char *name;            /* NUL-terminated, in the same allocation */
    size_t name_len;
    duet_dtype dtype;
    int ndim;
    int64_t *shape;        /* (ndim), same allocation */
    const void *data;      /* borrowed */
    int64_t nbytes;
} wt_tensor;

typedef struct wt_meta {
    char *key, *value;     /* one allocation each */
} wt_meta;

struct duet_st_writer {
    wt_tensor **t;
    int64_t nt, cap_t;
    wt_meta *m;
    int64_t nm, cap_m;
    /* open-addressing set of tensor indices + 1 (0 = empty), keyed by name,
     * so refusing a duplicate name stays O(1) with 100k+ tensors */
    int64_t *slots;
    int64_t nslots;  /* a power of two, at least twice nt */
};

static uint64_t name_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Slot holding `name`, or the empty slot where it would go. */
static int64_t find_slot(const duet_st_writer *w, const char *name, size_t nl) {
    int64_t mask = w->nslots - 1, i = (int64_t)(name_hash(name, nl) & (uint64_t)mask);
    for (;;) {
        int64_t k = w->slots[i];
        if (k == 0) return i;
        const wt_tensor *t = w->t[k - 1];
        if (t->name_len == nl && memcmp(t->name, name, nl) == 0) return i;
        i = (i + 1) & mask;
    }
}

/* Makes room for one more name in the set (rehashes into a bigger table). */
static int reserve_slots(duet_st_writer *w) {
    if (w->nslots >= 2 * (w->nt + 1)) return 1;
    int64_t ns = w->nslots ? w->nslots * 2 : 64;
    int64_t *old = w->slots, old_n = w->nslots;
    w->slots = duet_calloc((size_t)ns, sizeof *w->slots);
    if (!w->slots) {
        w->slots = old;
        return 0;
    }
    w->nslots = ns;
    for (int64_t i = 0; i < old_n; i++)
        if (old[i]) {
            const wt_tensor *t = w->t[old[i] - 1];
            w->slots[find_slot(w, t->name, t->name_len)] = old[i];
        }
    duet_free(old);
    return 1;
}

duet_st_writer *duet_st_writer_new(void) {
    duet_st_writer *w = duet_alloc(sizeof *w);
    if (w) memset(w, 0, sizeof *w);
    return w;
}

void duet_st_writer_free(duet_st_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->nt; i++) duet_free(w->t[i]);
    for (int64_t i = 0; i < w->nm; i++) {
        duet_free(w->m[i].key);
        duet_free(w->m[i].value);
    }
    duet_free(w->t);
    duet_free(w->m);
    duet_free(w->slots);
    duet_free(w);
}

/* Grows an array of elem-byte items to hold one more. */
static int grow(void **arr, int64_t n, int64_t *cap, size_t elem) {
    if (n < *cap) return 1;
    int64_t nc = *cap ? *cap * 2 : 16;
    void *na = duet_alloc((size_t)nc * elem);
    if (!na) return 0;
    if (n) memcpy(na, *arr, (size_t)n * elem);
    duet_free(*arr);
    *arr = na;
    *cap = nc;
    return 1;
}

static char *dup_str(const char *s, size_t n) {
    char *d = duet_alloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

duet_status duet_st_writer_add(duet_st_writer *w, const char *name, duet_dtype dtype, int ndim,
                               const int64_t *shape, const void *data) {
    if (!w || !name) return duet_set_error(DUET_ERR_ARG, "duet_st_writer_add: no writer or name");
    char nb[100];
    size_t nl = strlen(name);
    const char *nm = printable(name, (int64_t)nl, nb, sizeof nb);
    if (!duet_utf8_valid(name, nl))
        return duet_set_error(DUET_ERR_ARG, "safetensors: tensor name '%s' is not valid UTF-8", nm);
    if (strcmp(name, "__metadata__") == 0)
        return duet_set_error(DUET_ERR_ARG, "safetensors: '__metadata__' cannot name a tensor");
    if (!st_dtype_name(dtype))
        return duet_set_error(DUET_ERR_ARG, "safetensors: tensor '%s': bad dtype %d", nm, (int)dtype);
    if (ndim < 0 || ndim > 64 || (ndim > 0 && !shape))
        return duet_set_error(DUET_ERR_ARG, "safetensors: tensor '%s': bad ndim %d", nm, ndim);
    int64_t numel = 1, esize = (int64_t)duet_dtype_size(dtype);
    int zero = 0, overflow = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return duet_set_error(DUET_ERR_ARG, "safetensors: tensor '%s': shape[%d] is %lld", nm,
                                  i, (long long)shape[i]);
        if (shape[i] == 0) zero = 1;
        else if (numel > INT64_MAX / shape[i]) overflow = 1;
        else numel *= shape[i];
    }
    if (zero) numel = 0;
    else if (overflow || numel > INT64_MAX / esize)
        return duet_set_error(DUET_ERR_ARG, "safetensors: tensor '%s': shape too large", nm);
    if (numel > 0 && !data)
        return duet_set_error(DUET_ERR_ARG, "safetensors: tensor '%s': no data", nm);
    if (!reserve_slots(w)) return DUET_ERR_NOMEM;
    int64_t slot = find_slot(w, name, nl);
    if (w->slots[slot])
        return duet_set_error(DUET_ERR_ARG, "safetensors: tensor '%s' added twice", nm);
    if (!grow((void **)&w->t, w->nt, &w->cap_t, sizeof *w->t)) return DUET_ERR_NOMEM;
    size_t shape_off = (sizeof(wt_tensor) + 7) & ~(size_t)7;
    wt_tensor *t = duet_alloc(shape_off + (size_t)ndim * sizeof(int64_t) + nl + 1);
    if (!t) return DUET_ERR_NOMEM;
    t->shape = (int64_t *)((char *)t + shape_off);
    t->name = (char *)(t->shape + ndim);
    memcpy(t->name, name, nl + 1);
    t->name_len = nl;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = numel * esize;
    w->t[w->nt++] = t;
    w->slots[slot] = w->nt;
    return DUET_OK;
}

duet_status duet_st_writer_meta(duet_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value)
        return duet_set_error(DUET_ERR_ARG, "duet_st_writer_meta: no writer, key or value");
    size_t kl = strlen(key), vl = strlen(value);
    if (!duet_utf8_valid(key, kl) || !duet_utf8_valid(value, vl)) {
        char nb[100];
        return duet_set_error(DUET_ERR_ARG, "safetensors: metadata '%s' is not valid UTF-8",
                              printable(key, (int64_t)kl, nb, sizeof nb));
    }
    char *v = dup_str(value, vl);
    if (!v) return DUET_ERR_NOMEM;
    for (int64_t i = 0; i < w->nm; i++)
        if (strcmp(w->m[i].key, key) == 0) { /* setting a key again replaces its value */
            duet_free(w->m[i].value);
            w->m[i].value = v;
            return DUET_OK;
        }
    char *k = dup_str(key, kl);
    if (!k || !grow((void **)&w->m, w->nm, &w->cap_m, sizeof *w->m)) {
        duet_free(k);
        duet_free(v);
        return DUET_ERR_NOMEM;
    }
    w->m[w->nm].key = k;
    w->m[w->nm].value = v;
    w->nm++;
    return DUET_OK;
}

/* A measuring/writing string builder: counts everything, stores what fits. */
typedef struct sbuf {
    char *p;
    size_t cap, len;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->len + n <= b->cap) memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_str(sbuf *b, const char *s, size_t n) {
    size_t room = b->len < b->cap ? b->cap - b->len : 0;
    /* escape straight into the buffer when it fits (the escaper NUL-terminates) */
    size_t need = duet_json_escape(room > 0 ? b->p + b->len : NULL, 0, s, n);
    if (need + 1 <= room) duet_json_escape(b->p + b->len, room, s, n);
    b->len += need;
}

static void sb_int(sbuf *b, int64_t v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    sb_put(b, tmp, (size_t)n);
}

static void build_header(const duet_st_writer *w, sbuf *b) {
    sb_put(b, "{", 1);
    int first = 1;
    if (w->nm) {
        sb_put(b, "\"__metadata__\":{", 16);
        for (int64_t i = 0; i < w->nm; i++) {
            if (i) sb_put(b, ",", 1);
            sb_str(b, w->m[i].key, strlen(w->m[i].key));
            sb_put(b, ":", 1);
            sb_str(b, w->m[i].value, strlen(w->m[i].value));
        }
        sb_put(b, "}", 1);
        first = 0;
    }
    int64_t off = 0;
    for (int64_t i = 0; i < w->nt; i++) {
        const wt_tensor *t = w->t[i];
        if (!first) sb_put(b, ",", 1);
        first = 0;
        sb_str(b, t->name, t->name_len);
        sb_put(b, ":{\"dtype\":\"", 11);
        const char *dn = st_dtype_name(t->dtype);
        sb_put(b, dn, strlen(dn));
        sb_put(b, "\",\"shape\":[", 11);
        for (int d = 0; d < t->ndim; d++) {
            if (d) sb_put(b, ",", 1);
            sb_int(b, t->shape[d]);
        }
        sb_put(b, "],\"data_offsets\":[", 18);
        sb_int(b, off);
        sb_put(b, ",", 1);
        sb_int(b, off + t->nbytes);
        sb_put(b, "]}", 2);
        off += t->nbytes;
    }
    sb_put(b, "}", 1);
}

duet_status duet_st_writer_write(duet_st_writer *w, const char *path) {
    if (!w || !path || !*path)
        return duet_set_error(DUET_ERR_ARG, "duet_st_writer_write: no writer or path");
    int64_t total = 0;
    for (int64_t i = 0; i < w->nt; i++) {
        if (w->t[i]->nbytes > INT64_MAX - total)
            return duet_set_error(DUET_ERR_ARG, "%s: tensors too large for one file", path);
        total += w->t[i]->nbytes;
    }
    sbuf b = {NULL, 0, 0};
    build_header(w, &b); /* measure */
    size_t hlen = b.len;
    size_t padded = (hlen + 7) & ~(size_t)7; /* 8 + padded is a multiple of 8 */
    if (padded > ST_MAX_HEADER)
        return duet_set_error(DUET_ERR_ARG,
                              "%s: the header would be %zu bytes, over the spec's limit of %llu",
                              path, padded, ST_MAX_HEADER);
    unsigned char *head = duet_alloc(8 + padded + 1);
    if (!head) return duet_set_error(DUET_ERR_NOMEM, "%s: out of memory building the header", path);
    duet_chunk *chunks = duet_alloc((size_t)(w->nt + 1) * sizeof *chunks);
    if (!chunks) {
        duet_free(head);
        return duet_set_error(DUET_ERR_NOMEM, "%s: out of memory building the header", path);
    }
    b = (sbuf){(char *)head + 8, padded + 1, 0};
    build_header(w, &b);
    DUET_ASSERT(b.len == hlen);
    memset(head + 8 + hlen, ' ', padded - hlen);
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int64_t nc = 0;
    chunks[nc++] = (duet_chunk){head, 8 + padded};
    for (int64_t i = 0; i < w->nt; i++)
        if (w->t[i]->nbytes) chunks[nc++] = (duet_chunk){w->t[i]->data, (size_t)w->t[i]->nbytes};
    duet_status s = duet_write_chunks_atomic(path, chunks, nc);
    duet_free(chunks);
    duet_free(head);
    return s;
}
