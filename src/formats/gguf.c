/*
 * gguf.c — GGUF, ggml's model file format: a reader that memory-maps the
 * file, checks every byte of the header, and hands out zero-copy views of
 * metadata and tensor data; and a writer (version 3, atomic).
 *
 * Layout (Ref: ggml docs/gguf.md), all little-endian:
 *   u32 magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
 *   kv_count x   { string key | u32 type | value }
 *   tensor_count x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml type |
 *                    u64 offset }
 *   zero padding to the alignment | data section (each tensor at its offset)
 * string = u64 length + bytes (no NUL); array = u32 element type + u64 count
 * + elements (elements may be arrays). The alignment is the u32 KV
 * general.alignment, 32 when absent.
 *
 * The reader trusts nothing. Every rule gives DUET_ERR_FORMAT with
 * "<file>: byte <offset>: <where>: <what>" — a short read anywhere (each
 * string length and array count is checked against the bytes left before
 * anything is allocated for it), a bad magic, version 0 (1 is refused as
 * too old, 4+ as too new: DUET_ERR_UNSUPPORTED), a value type outside 0-12,
 * a bool other than 0/1, arrays nested deeper than GGUF_MAX_DEPTH, empty or
 * duplicate keys, keys with NUL bytes or over 65535 bytes, a
 * general.alignment that is not a u32 power of two, tensor names empty, over
 * 64 bytes, with NUL bytes or duplicated, n_dims > 4, a dim above INT64_MAX
 * or an element count that overflows, an unknown ggml type, ne[0] not a
 * multiple of the type's block size, an offset not a multiple of the
 * alignment, data past the end of the file, and two tensors overlapping.
 *
 * Memory: the handle holds the keys and tensor names (copied, NUL-
 * terminated), one table entry per KV and tensor, and for each array of
 * strings or arrays the byte offset of each element (so element i of
 * tokenizer.ggml.tokens is O(1)); everything else stays in the map.
 *
 * What it is not: a GGUF v1 reader, a big-endian reader, or an editor (the
 * writer starts from scratch; duet_gguf_writer_copy_kv carries KVs over).
 */
#include "formats/formats.h"
#include "formats/gguf.h"

#include "core/internal.h"

#include <stdarg.h>
#include <string.h>

#define GGUF_MAX_DEPTH 8          /* array inside array ... at most this deep */
#define GGUF_MAX_NAME 64          /* tensor names, bytes (the spec's limit) */
#define GGUF_MAX_KEY 65535        /* keys, bytes (the spec's limit) */
#define GGUF_DEFAULT_ALIGNMENT 32

/* ======================================================================== */
/* Value types                                                               */
/* ======================================================================== */

static const char *const type_names[DUET_GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool",  "string", "array", "uint64", "int64", "float64",
};

const char *duet_gguf_type_name(int t) {
    return t >= 0 && t < DUET_GGUF_TYPE_COUNT ? type_names[t] : NULL;
}

/* Bytes of a fixed-size value; 0 for STRING and ARRAY. */
static uint64_t type_size(uint32_t t) {
    switch (t) {
    case DUET_GGUF_TYPE_UINT8: case DUET_GGUF_TYPE_INT8: case DUET_GGUF_TYPE_BOOL: return 1;
    case DUET_GGUF_TYPE_UINT16: case DUET_GGUF_TYPE_INT16: return 2;
    case DUET_GGUF_TYPE_UINT32: case DUET_GGUF_TYPE_INT32: case DUET_GGUF_TYPE_FLOAT32: return 4;
    case DUET_GGUF_TYPE_UINT64: case DUET_GGUF_TYPE_INT64: case DUET_GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static int is_int_type(uint32_t t) {
    return t <= DUET_GGUF_TYPE_INT32 || t == DUET_GGUF_TYPE_UINT64 || t == DUET_GGUF_TYPE_INT64;
}

static uint32_t ld_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t ld_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ======================================================================== */
/* The handle                                                                */
/* ======================================================================== */

/* An element of an array whose elements have variable size (strings,
 * arrays): where it starts, and for an array element the first entry of its
 * own element table (-1 when its elements have a fixed size). */
typedef struct gguf_elem {
    uint64_t off;
    int64_t child;
} gguf_elem;

typedef struct gguf_kv {
    const char *key;
    uint64_t key_off;     /* into g->strs while parsing */
    duet_gguf_value v;
    uint64_t start, end;  /* the value's encoding (after the type tag) in the file */
} gguf_kv;

struct duet_gguf {
    char *name;               /* the path, for messages */
    duet_mapped map;          /* empty when opened from memory */
    const uint8_t *base;
    uint64_t size;
    uint32_t version, alignment;
    uint64_t data_offset;
    int64_t nkv, ntensors;
    gguf_kv *kv;              /* (nkv) file order */
    int64_t *kv_sorted;       /* (nkv) indices sorted by key */
    duet_gguf_tensor *t;      /* (ntensors) file order */
    uint64_t *t_name_off;     /* (ntensors) into strs while parsing */
    int64_t *t_sorted;        /* (ntensors) indices sorted by name */
    gguf_elem *elems;         /* element tables of variable-size arrays */
    int64_t nelems, elems_cap;
    char *strs;               /* keys and names, NUL-terminated, back to back */
    uint64_t strs_len, strs_cap;
};

/* ---- growable tables ---- */

static int grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *q = duet_alloc((size_t)nc * elem);
    if (!q) return -1;
    if (*p) memcpy(q, *p, (size_t)*cap * elem);
    duet_free(*p);
    *p = q;
    *cap = nc;
    return 0;
}

/* ======================================================================== */
/* The reader's cursor and messages                                          */
/* ======================================================================== */

typedef struct rd {
    duet_gguf *g;
    const uint8_t *b;
    uint64_t size, pos;
    duet_status st;
    /* where we are, for messages */
    int64_t kv, tensor;        /* -1 when not inside one */
    const uint8_t *label;      /* the KV's key or the tensor's name, when read */
    uint64_t label_len;
    int depth;
    int64_t path[GGUF_MAX_DEPTH + 1]; /* element indices of nested arrays */
} rd;

/* A name from the file, safe to print: at most ~60 bytes, control and
 * non-ASCII bytes as '?'. */
static const char *printable(const uint8_t *s, uint64_t len, char *buf, size_t size) {
    size_t n = 0;
    uint64_t i = 0;
    for (; i < len && n + 4 < size && n < 60; i++) {
        unsigned char c = s[i];
        buf[n++] = (c < 0x20 || c >= 0x7F) ? '?' : (char)c;
    }
    if (i < len) buf[n++] = '.', buf[n++] = '.', buf[n++] = '.';
    buf[n] = 0;
    return buf;
}

static void where(const rd *r, char *buf, size_t size) {
    char nm[80];
    int n = 0;
    if (r->kv >= 0) {
        n = snprintf(buf, size, "KV %lld", (long long)r->kv);
        if (r->label)
            n += snprintf(buf + n, size - (size_t)n, " '%s'", printable(r->label, r->label_len, nm, sizeof nm));
    } else if (r->tensor >= 0) {
        n = snprintf(buf, size, "tensor %lld", (long long)r->tensor);
        if (r->label)
            n += snprintf(buf + n, size - (size_t)n, " '%s'", printable(r->label, r->label_len, nm, sizeof nm));
    } else {
        n = snprintf(buf, size, "header");
    }
    for (int d = 0; d < r->depth && n > 0 && (size_t)n < size; d++)
        n += snprintf(buf + n, size - (size_t)n, "%s[%lld]", d ? "" : " element", (long long)r->path[d]);
}

static int fail(rd *r, uint64_t at, duet_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static int fail(rd *r, uint64_t at, duet_status s, const char *fmt, ...) {
    char msg[400], w[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    where(r, w, sizeof w);
    r->st = s;
    duet_set_error(s, "%s: byte %llu: %s: %s", r->g->name, (unsigned long long)at, w, msg);
    return -1;
}

static int oom(rd *r) {
    return fail(r, r->pos, DUET_ERR_NOMEM, "out of memory while indexing the header");
}

/* n more bytes must be there for `field`. */
static int need(rd *r, uint64_t n, const char *field) {
    if (r->size - r->pos >= n) return 0;
    return fail(r, r->pos, DUET_ERR_FORMAT, "%s needs %llu bytes but the file ends after %llu "
                "(truncated file?)", field, (unsigned long long)n,
                (unsigned long long)(r->size - r->pos));
}

static int rd_u32(rd *r, uint32_t *v, const char *field) {
    if (need(r, 4, field)) return -1;
    *v = ld_u32(r->b + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_u64(rd *r, uint64_t *v, const char *field) {
    if (need(r, 8, field)) return -1;
    *v = ld_u64(r->b + r->pos);
    r->pos += 8;
    return 0;
}

/* A string: its bytes stay in the file. */
static int rd_str(rd *r, const uint8_t **s, uint64_t *len, const char *field) {
    const uint64_t at = r->pos;
    if (rd_u64(r, len, field)) return -1;
    if (*len > r->size - r->pos)
        return fail(r, at, DUET_ERR_FORMAT, "%s has length %llu but only %llu bytes are left "
                    "in the file", field, (unsigned long long)*len,
                    (unsigned long long)(r->size - r->pos));
    *s = r->b + r->pos;
    r->pos += *len;
    return 0;
}

/* Copies a key or name into g->strs (NUL added); returns its offset. */
static int save_str(rd *r, const uint8_t *s, uint64_t len, uint64_t *off) {
    duet_gguf *g = r->g;
    int64_t cap = (int64_t)g->strs_cap;
    if (grow((void **)&g->strs, &cap, (int64_t)(g->strs_len + len + 1), 1)) return oom(r);
    g->strs_cap = (uint64_t)cap;
    memcpy(g->strs + g->strs_len, s, len);
    g->strs[g->strs_len + len] = 0;
    *off = g->strs_len;
    g->strs_len += len + 1;
    return 0;
}

/* ======================================================================== */
/* Values                                                                    */
/* ======================================================================== */

/* Parses one value of `type` at the cursor into v (p_ = its start). */
static int parse_value(rd *r, uint32_t type, int depth, duet_gguf_value *v) {
    memset(v, 0, sizeof *v);
    v->type = (duet_gguf_type)type;
    v->p_ = r->b + r->pos;
    v->node_ = -1;
    v->kv_ = r->kv;
    const uint64_t at = r->pos;
    const uint64_t sz = type_size(type);
    if (sz) {
        if (need(r, sz, duet_gguf_type_name((int)type))) return -1;
        if (type == DUET_GGUF_TYPE_BOOL && r->b[r->pos] > 1)
            return fail(r, at, DUET_ERR_FORMAT, "bool value is %u (only 0 and 1 are valid)",
                        r->b[r->pos]);
        r->pos += sz;
        return 0;
    }
    if (type == DUET_GGUF_TYPE_STRING) {
        const uint8_t *s;
        uint64_t len;
        if (rd_str(r, &s, &len, "string")) return -1;
        if (len > INT64_MAX) return fail(r, at, DUET_ERR_FORMAT, "string length overflows");
        v->count = (int64_t)len;
        return 0;
    }
    /* ARRAY */
    if (depth >= GGUF_MAX_DEPTH)
        return fail(r, at, DUET_ERR_FORMAT, "arrays nested more than %d deep", GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t count;
    if (rd_u32(r, &et, "array element type")) return -1;
    if (et >= DUET_GGUF_TYPE_COUNT)
        return fail(r, at, DUET_ERR_FORMAT, "array element type %u is not a GGUF type (0..12)", et);
    if (rd_u64(r, &count, "array count")) return -1;
    const uint64_t left = r->size - r->pos, esz = type_size(et);
    const uint64_t min = esz ? esz : et == DUET_GGUF_TYPE_STRING ? 8 : 12;
    if (count > left / min)
        return fail(r, at, DUET_ERR_FORMAT, "array of %llu %s elements needs at least %llu bytes "
                    "per element but only %llu bytes are left in the file",
                    (unsigned long long)count, duet_gguf_type_name((int)et),
                    (unsigned long long)min, (unsigned long long)left);
    v->elem_type = (duet_gguf_type)et;
    v->count = (int64_t)count; /* count <= left < 2^63 */
    if (esz) {
        if (et == DUET_GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < count; i++)
                if (r->b[r->pos + i] > 1) {
                    r->depth = depth + 1;
                    r->path[depth] = (int64_t)i;
                    return fail(r, r->pos + i, DUET_ERR_FORMAT, "bool value is %u (only 0 and 1 "
                                "are valid)", r->b[r->pos + i]);
                }
        r->pos += count * esz;
        return 0;
    }
    /* strings or arrays: one table entry per element, reserved before the
     * elements (whose own tables follow) so each table is contiguous */
    duet_gguf *g = r->g;
    const int64_t first = g->nelems;
    if (grow((void **)&g->elems, &g->elems_cap, first + (int64_t)count, sizeof(gguf_elem))) return oom(r);
    g->nelems += (int64_t)count;
    v->node_ = first;
    r->depth = depth + 1;
    for (uint64_t i = 0; i < count; i++) {
        r->path[depth] = (int64_t)i;
        duet_gguf_value sub;
        g->elems[first + (int64_t)i].off = r->pos;
        if (parse_value(r, et, depth + 1, &sub)) return -1;
        g->elems[first + (int64_t)i].child = sub.node_;
        r->depth = depth + 1;
    }
    r->depth = depth;
    return 0;
}

/* ======================================================================== */
/* Opening                                                                   */
/* ======================================================================== */

/* qsort has no context argument: the handle being sorted, per thread */
static _Thread_local duet_gguf *tl_sort;

static int cmp_kv(const void *a, const void *b) {
    const duet_gguf *g = tl_sort;
    return strcmp(g->kv[*(const int64_t *)a].key, g->kv[*(const int64_t *)b].key);
}
static int cmp_tname(const void *a, const void *b) {
    const duet_gguf *g = tl_sort;
    return strcmp(g->t[*(const int64_t *)a].name, g->t[*(const int64_t *)b].name);
}
static int cmp_toff(const void *a, const void *b) {
    const duet_gguf *g = tl_sort;
    const duet_gguf_tensor *x = &g->t[*(const int64_t *)a], *y = &g->t[*(const int64_t *)b];
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : 0;
}

static int parse_kvs(rd *r, uint64_t nkv) {
    duet_gguf *g = r->g;
    g->kv = duet_calloc(nkv ? nkv : 1, sizeof(gguf_kv));
    if (!g->kv) return oom(r);
    for (uint64_t i = 0; i < nkv; i++) {
        r->kv = (int64_t)i;
        r->label = NULL;
        r->depth = 0;
        gguf_kv *kv = &g->kv[i];
        const uint64_t at = r->pos;
        const uint8_t *key;
        uint64_t klen;
        uint32_t type;
        if (rd_str(r, &key, &klen, "key")) return -1;
        r->label = key, r->label_len = klen;
        if (klen == 0) return fail(r, at, DUET_ERR_FORMAT, "the key is empty");
        if (klen > GGUF_MAX_KEY)
            return fail(r, at, DUET_ERR_FORMAT, "the key is %llu bytes long (the limit is %d)",
                        (unsigned long long)klen, GGUF_MAX_KEY);
        if (memchr(key, 0, klen)) return fail(r, at, DUET_ERR_FORMAT, "the key holds a NUL byte");
        if (save_str(r, key, klen, &kv->key_off)) return -1;
        const uint64_t tat = r->pos;
        if (rd_u32(r, &type, "value type")) return -1;
        if (type >= DUET_GGUF_TYPE_COUNT)
            return fail(r, tat, DUET_ERR_FORMAT, "value type %u is not a GGUF type (0..12)", type);
        kv->start = r->pos;
        if (parse_value(r, type, 0, &kv->v)) return -1;
        kv->end = r->pos;
        g->nkv = (int64_t)i + 1;
    }
    r->kv = -1;
    r->label = NULL;
    r->depth = 0;
    return 0;
}

static int parse_tensor_infos(rd *r, uint64_t nt) {
    duet_gguf *g = r->g;
    g->t = duet_calloc(nt ? nt : 1, sizeof(duet_gguf_tensor));
    g->t_name_off = duet_calloc(nt ? nt : 1, sizeof(uint64_t));
    if (!g->t || !g->t_name_off) return oom(r);
    for (uint64_t i = 0; i < nt; i++) {
        r->tensor = (int64_t)i;
        r->label = NULL;
        duet_gguf_tensor *t = &g->t[i];
        const uint64_t at = r->pos;
        const uint8_t *name;
        uint64_t nlen;
        uint32_t nd, type;
        if (rd_str(r, &name, &nlen, "name")) return -1;
        r->label = name, r->label_len = nlen;
        if (nlen == 0) return fail(r, at, DUET_ERR_FORMAT, "the name is empty");
        if (nlen > GGUF_MAX_NAME)
            return fail(r, at, DUET_ERR_FORMAT, "the name is %llu bytes long (the limit is %d)",
                        (unsigned long long)nlen, GGUF_MAX_NAME);
        if (memchr(name, 0, nlen)) return fail(r, at, DUET_ERR_FORMAT, "the name holds a NUL byte");
        if (save_str(r, name, nlen, &g->t_name_off[i])) return -1;
        const uint64_t dat = r->pos;
        if (rd_u32(r, &nd, "n_dims")) return -1;
        if (nd > 4) return fail(r, dat, DUET_ERR_FORMAT, "n_dims is %u (at most 4)", nd);
        t->n_dims = (int)nd;
        int64_t numel = 1;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            const uint64_t eat = r->pos;
            uint64_t ne;
            char field[16];
            snprintf(field, sizeof field, "ne[%u]", d);
            if (rd_u64(r, &ne, field)) return -1;
            if (ne > INT64_MAX)
                return fail(r, eat, DUET_ERR_FORMAT, "ne[%u] = %llu is too large", d, (unsigned long long)ne);
            t->ne[d] = (int64_t)ne;
        }
        for (uint32_t d = 0; d < nd; d++) {
            if (t->ne[d] != 0 && numel > INT64_MAX / t->ne[d])
                return fail(r, dat, DUET_ERR_FORMAT, "the element count (product of ne) overflows");
            numel *= t->ne[d];
        }
        /* a zero dim makes the product 0 whatever the others, but the others
         * must still be sane: recheck the product of the non-zero ones */
        int64_t nz = 1;
        for (uint32_t d = 0; d < nd; d++)
            if (t->ne[d]) {
                if (nz > INT64_MAX / t->ne[d])
                    return fail(r, dat, DUET_ERR_FORMAT, "the element count (product of ne) overflows");
                nz *= t->ne[d];
            }
        t->numel = numel;
        const uint64_t tat = r->pos;
        if (rd_u32(r, &type, "type")) return -1;
        if (!duet_qtype_known((int)type))
            return fail(r, tat, DUET_ERR_FORMAT, "tensor type %u is not a ggml type duet knows "
                        "(0-3, 6-30, 34, 35, 39)", type);
        t->type = (duet_qtype)type;
        const int64_t bs = duet_qtype_block_size((int)type);
        if (t->ne[0] % bs)
            return fail(r, dat, DUET_ERR_FORMAT, "ne[0] = %lld is not a multiple of the %s block "
                        "size %lld", (long long)t->ne[0], duet_qtype_name((int)type), (long long)bs);
        const int64_t nbytes = duet_qtype_row_bytes((int)type, numel);
        if (nbytes < 0)
            return fail(r, dat, DUET_ERR_FORMAT, "the byte size of %lld %s values overflows",
                        (long long)numel, duet_qtype_name((int)type));
        t->nbytes = nbytes;
        const uint64_t oat = r->pos;
        if (rd_u64(r, &t->offset, "offset")) return -1;
        if (t->offset % g->alignment)
            return fail(r, oat, DUET_ERR_FORMAT, "offset %llu is not a multiple of the alignment %u",
                        (unsigned long long)t->offset, g->alignment);
        g->ntensors = (int64_t)i + 1;
    }
    r->tensor = -1;
    r->label = NULL;
    return 0;
}

/* general.alignment: a u32 power of two, when present. */
static int read_alignment(rd *r) {
    duet_gguf *g = r->g;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (int64_t i = 0; i < g->nkv; i++) {
        const char *key = g->strs + g->kv[i].key_off; /* strs may still move: no pointers yet */
        if (strcmp(key, "general.alignment") != 0) continue;
        r->kv = i;
        r->label = (const uint8_t *)key;
        r->label_len = strlen(key);
        const duet_gguf_value *v = &g->kv[i].v;
        const uint64_t at = (uint64_t)(v->p_ - r->b);
        if (v->type != DUET_GGUF_TYPE_UINT32)
            return fail(r, at, DUET_ERR_FORMAT, "general.alignment must be a uint32, not %s",
                        duet_gguf_type_name(v->type));
        const uint32_t a = ld_u32(v->p_);
        if (a == 0 || (a & (a - 1)))
            return fail(r, at, DUET_ERR_FORMAT, "general.alignment = %u is not a power of two", a);
        g->alignment = a;
    }
    r->kv = -1;
    r->label = NULL;
    return 0;
}

static int check_tables(rd *r) {
    duet_gguf *g = r->g;
    /* pointers into strs, now that it no longer moves */
    for (int64_t i = 0; i < g->nkv; i++) g->kv[i].key = g->strs + g->kv[i].key_off;
    for (int64_t i = 0; i < g->ntensors; i++) g->t[i].name = g->strs + g->t_name_off[i];
    g->kv_sorted = duet_alloc((size_t)(g->nkv ? g->nkv : 1) * sizeof(int64_t));
    g->t_sorted = duet_alloc((size_t)(g->ntensors ? g->ntensors : 1) * sizeof(int64_t));
    int64_t *by_off = duet_alloc((size_t)(g->ntensors ? g->ntensors : 1) * sizeof(int64_t));
    if (!g->kv_sorted || !g->t_sorted || !by_off) {
        duet_free(by_off);
        return oom(r);
    }
    for (int64_t i = 0; i < g->nkv; i++) g->kv_sorted[i] = i;
    for (int64_t i = 0; i < g->ntensors; i++) g->t_sorted[i] = by_off[i] = i;
    tl_sort = g;
    qsort(g->kv_sorted, (size_t)g->nkv, sizeof(int64_t), cmp_kv);
    qsort(g->t_sorted, (size_t)g->ntensors, sizeof(int64_t), cmp_tname);
    qsort(by_off, (size_t)g->ntensors, sizeof(int64_t), cmp_toff);
    tl_sort = NULL;
    int rc = 0;
    for (int64_t i = 1; i < g->nkv && !rc; i++) {
        const int64_t a = g->kv_sorted[i - 1], b = g->kv_sorted[i];
        if (strcmp(g->kv[a].key, g->kv[b].key) == 0) {
            const int64_t later = a > b ? a : b, first = a > b ? b : a;
            r->kv = later;
            r->label = (const uint8_t *)g->kv[later].key;
            r->label_len = strlen(g->kv[later].key);
            rc = fail(r, g->kv[later].start, DUET_ERR_FORMAT, "duplicate key (also KV %lld)",
                      (long long)first);
        }
    }
    r->kv = -1;
    for (int64_t i = 1; i < g->ntensors && !rc; i++) {
        const int64_t a = g->t_sorted[i - 1], b = g->t_sorted[i];
        if (strcmp(g->t[a].name, g->t[b].name) == 0) {
            const int64_t later = a > b ? a : b, first = a > b ? b : a;
            r->tensor = later;
            r->label = (const uint8_t *)g->t[later].name;
            r->label_len = strlen(g->t[later].name);
            rc = fail(r, g->data_offset, DUET_ERR_FORMAT, "duplicate tensor name (also tensor %lld)",
                      (long long)first);
        }
    }
    /* data: inside the file, no two tensors sharing a byte */
    const uint64_t dsize = g->data_offset < g->size ? g->size - g->data_offset : 0;
    for (int64_t i = 0; i < g->ntensors && !rc; i++) {
        duet_gguf_tensor *t = &g->t[i];
        if (t->offset > dsize || (uint64_t)t->nbytes > dsize - t->offset) {
            r->tensor = i;
            r->label = (const uint8_t *)t->name;
            r->label_len = strlen(t->name);
            rc = fail(r, g->data_offset, DUET_ERR_FORMAT, "its %lld bytes at data offset %llu "
                      "(file bytes %llu..%llu) lie past the end of the file (%llu bytes): "
                      "truncated file?", (long long)t->nbytes, (unsigned long long)t->offset,
                      (unsigned long long)(g->data_offset + t->offset),
                      (unsigned long long)(g->data_offset + t->offset + (uint64_t)t->nbytes),
                      (unsigned long long)g->size);
            break;
        }
        t->data = t->nbytes ? (const void *)(g->base + g->data_offset + t->offset) : (const void *)g->base;
    }
    int64_t prev = -1;
    for (int64_t k = 0; k < g->ntensors && !rc; k++) {
        const int64_t i = by_off[k];
        if (g->t[i].nbytes == 0) continue;
        if (prev >= 0 && g->t[prev].offset + (uint64_t)g->t[prev].nbytes > g->t[i].offset) {
            r->tensor = i;
            r->label = (const uint8_t *)g->t[i].name;
            r->label_len = strlen(g->t[i].name);
            rc = fail(r, g->data_offset + g->t[i].offset, DUET_ERR_FORMAT, "its data (offset %llu) "
                      "overlaps tensor %lld '%s' (offset %llu, %lld bytes)",
                      (unsigned long long)g->t[i].offset, (long long)prev, g->t[prev].name,
                      (unsigned long long)g->t[prev].offset, (long long)g->t[prev].nbytes);
        }
        prev = i;
    }
    duet_free(by_off);
    return rc;
}

/* The whole header; r->st holds the status on failure. */
static int parse(rd *r) {
    duet_gguf *g = r->g;
    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0) {
        char got[40] = "";
        for (uint64_t i = 0; i < 4 && i < g->size; i++)
            snprintf(got + 3 * i, sizeof got - 3 * i, "%02x ", g->base[i]);
        return fail(r, 0, DUET_ERR_FORMAT, "not a GGUF file: the magic is %s(want 47 47 55 46, "
                    "\"GGUF\")", g->size ? got : "missing ");
    }
    r->pos = 4;
    uint32_t version;
    if (rd_u32(r, &version, "version")) return -1;
    if (version == 1)
        return fail(r, 4, DUET_ERR_UNSUPPORTED, "GGUF version 1 (2023, 32-bit counts) is not "
                    "supported: convert the file with a current llama.cpp (convert or gguf-py)");
    if (version >= 0x01000000u && (version & 0xFFFFu) == 0)
        return fail(r, 4, DUET_ERR_UNSUPPORTED, "version field 0x%08x: a big-endian GGUF file, "
                    "which duet does not read", version);
    if (version == 0) return fail(r, 4, DUET_ERR_FORMAT, "version 0 is not a GGUF version");
    if (version > 3)
        return fail(r, 4, DUET_ERR_UNSUPPORTED, "GGUF version %u is newer than duet knows (2, 3)",
                    version);
    g->version = version;
    uint64_t nt, nkv;
    if (rd_u64(r, &nt, "tensor_count") || rd_u64(r, &nkv, "metadata_kv_count")) return -1;
    /* sanity bounds before allocating per-entry tables: the smallest KV is
     * an 8-byte key length, a 4-byte type and a 1-byte value; the smallest
     * tensor info 8 + 4 + 4 + 8 bytes (empty names are refused later) */
    if (nkv > (r->size - r->pos) / 13)
        return fail(r, 16, DUET_ERR_FORMAT, "metadata_kv_count %llu cannot fit in the %llu bytes "
                    "left", (unsigned long long)nkv, (unsigned long long)(r->size - r->pos));
    if (nt > (r->size - r->pos) / 24)
        return fail(r, 8, DUET_ERR_FORMAT, "tensor_count %llu cannot fit in the %llu bytes left",
                    (unsigned long long)nt, (unsigned long long)(r->size - r->pos));
    if (parse_kvs(r, nkv)) return -1;
    if (read_alignment(r)) return -1;
    if (nt > (r->size - r->pos) / 24)
        return fail(r, 8, DUET_ERR_FORMAT, "tensor_count %llu cannot fit in the %llu bytes left "
                    "after the metadata", (unsigned long long)nt, (unsigned long long)(r->size - r->pos));
    if (parse_tensor_infos(r, nt)) return -1;
    g->data_offset = (r->pos + g->alignment - 1) / g->alignment * g->alignment;
    return check_tables(r);
}

static _Thread_local duet_status last_open_status;

duet_status duet_gguf_last_open_status(void) { return last_open_status; }

static duet_gguf *open_common(const char *name, const uint8_t *data, size_t size, duet_mapped *map) {
    last_open_status = DUET_ERR_NOMEM;
    duet_gguf *g = duet_calloc(1, sizeof *g);
    size_t nl = strlen(name);
    char *nm = duet_alloc(nl + 1);
    if (!g || !nm) {
        duet_free(g);
        duet_free(nm);
        if (map) duet_unmap_file(map);
        duet_set_error(DUET_ERR_NOMEM, "%s: out of memory opening the file", name);
        return NULL;
    }
    memcpy(nm, name, nl + 1);
    g->name = nm;
    if (map) g->map = *map;
    g->base = data;
    g->size = size;
    rd r = {.g = g, .b = data, .size = size, .kv = -1, .tensor = -1};
    if (parse(&r) != 0) {
        last_open_status = r.st;
        duet_gguf_close(g);
        return NULL;
    }
    last_open_status = DUET_OK;
    return g;
}

duet_gguf *duet_gguf_open(const char *path) {
    if (!path) {
        duet_set_error(DUET_ERR_ARG, "gguf open: no path given");
        return NULL;
    }
    duet_mapped m;
    duet_status s = duet_map_file(path, &m);
    if (s != DUET_OK) {
        last_open_status = s;
        return NULL;
    }
    return open_common(path, m.data, m.size, &m);
}

duet_gguf *duet_gguf_open_memory(const char *name, const void *data, size_t size) {
    static const uint8_t empty[1] = {0};
    return open_common(name ? name : "(memory)", data ? data : empty, data ? size : 0, NULL);
}

void duet_gguf_close(duet_gguf *g) {
    if (!g) return;
    duet_unmap_file(&g->map);
    duet_free(g->name);
    duet_free(g->kv);
    duet_free(g->kv_sorted);
    duet_free(g->t);
    duet_free(g->t_name_off);
    duet_free(g->t_sorted);
    duet_free(g->elems);
    duet_free(g->strs);
    duet_free(g);
}

uint32_t duet_gguf_version(const duet_gguf *g) { return g->version; }
uint32_t duet_gguf_alignment(const duet_gguf *g) { return g->alignment; }
uint64_t duet_gguf_data_offset(const duet_gguf *g) { return g->data_offset; }
int64_t duet_gguf_kv_count(const duet_gguf *g) { return g->nkv; }
int64_t duet_gguf_tensor_count(const duet_gguf *g) { return g->ntensors; }

/* ======================================================================== */
/* Lookups                                                                   */
/* ======================================================================== */

const char *duet_gguf_kv_key(const duet_gguf *g, int64_t i) {
    return i >= 0 && i < g->nkv ? g->kv[i].key : NULL;
}

duet_gguf_value duet_gguf_kv_value(const duet_gguf *g, int64_t i) {
    if (i >= 0 && i < g->nkv) return g->kv[i].v;
    duet_gguf_value none = {.type = DUET_GGUF_TYPE_COUNT, .node_ = -1, .kv_ = -1};
    return none;
}

int64_t duet_gguf_find_key(const duet_gguf *g, const char *key) {
    int64_t lo = 0, hi = g->nkv - 1;
    while (lo <= hi) {
        const int64_t mid = lo + (hi - lo) / 2, i = g->kv_sorted[mid];
        const int c = strcmp(g->kv[i].key, key);
        if (c == 0) return i;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

const duet_gguf_tensor *duet_gguf_tensor_at(const duet_gguf *g, int64_t i) {
    return i >= 0 && i < g->ntensors ? &g->t[i] : NULL;
}

const duet_gguf_tensor *duet_gguf_find_tensor(const duet_gguf *g, const char *name) {
    int64_t lo = 0, hi = g->ntensors - 1;
    while (lo <= hi) {
        const int64_t mid = lo + (hi - lo) / 2, i = g->t_sorted[mid];
        const int c = strcmp(g->t[i].name, name);
        if (c == 0) return &g->t[i];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

/* ---- typed reads ---- */

static const char *vkey(const duet_gguf *g, const duet_gguf_value *v) {
    return v->kv_ >= 0 && v->kv_ < g->nkv ? g->kv[v->kv_].key : "?";
}

static duet_status wrong_type(const duet_gguf *g, const duet_gguf_value *v, const char *want) {
    return duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s': the value is %s, not %s", g->name,
                          vkey(g, v), duet_gguf_type_name(v->type) ? duet_gguf_type_name(v->type)
                                                                   : "missing", want);
}

/* An integer value as sign + magnitude; 0 when v is not an integer. */
static int int_parts(const duet_gguf_value *v, int *neg, uint64_t *mag) {
    const uint8_t *p = v->p_;
    int64_t s = 0;
    uint64_t u = 0;
    int is_signed = 1;
    switch (v->type) {
    case DUET_GGUF_TYPE_UINT8: u = p[0], is_signed = 0; break;
    case DUET_GGUF_TYPE_INT8: s = (int8_t)p[0]; break;
    case DUET_GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); u = x, is_signed = 0; break; }
    case DUET_GGUF_TYPE_INT16: { int16_t x; memcpy(&x, p, 2); s = x; break; }
    case DUET_GGUF_TYPE_UINT32: u = ld_u32(p), is_signed = 0; break;
    case DUET_GGUF_TYPE_INT32: { int32_t x; memcpy(&x, p, 4); s = x; break; }
    case DUET_GGUF_TYPE_UINT64: u = ld_u64(p), is_signed = 0; break;
    case DUET_GGUF_TYPE_INT64: { int64_t x; memcpy(&x, p, 8); s = x; break; }
    default: return 0;
    }
    if (is_signed) {
        *neg = s < 0;
        *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    } else {
        *neg = 0;
        *mag = u;
    }
    return 1;
}

duet_status duet_gguf_value_int(const duet_gguf *g, const duet_gguf_value *v, int64_t *out) {
    int neg;
    uint64_t mag;
    if (!int_parts(v, &neg, &mag)) return wrong_type(g, v, "an integer");
    if (!neg && mag > (uint64_t)INT64_MAX)
        return duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s': %llu does not fit an int64",
                              g->name, vkey(g, v), (unsigned long long)mag);
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return DUET_OK;
}

duet_status duet_gguf_value_u64(const duet_gguf *g, const duet_gguf_value *v, uint64_t *out) {
    int neg;
    uint64_t mag;
    if (!int_parts(v, &neg, &mag)) return wrong_type(g, v, "an integer");
    if (neg)
        return duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s': -%llu is negative", g->name,
                              vkey(g, v), (unsigned long long)mag);
    *out = mag;
    return DUET_OK;
}

duet_status duet_gguf_value_float(const duet_gguf *g, const duet_gguf_value *v, double *out) {
    if (v->type == DUET_GGUF_TYPE_FLOAT32) {
        float f;
        memcpy(&f, v->p_, 4);
        *out = (double)f;
        return DUET_OK;
    }
    if (v->type == DUET_GGUF_TYPE_FLOAT64) {
        memcpy(out, v->p_, 8);
        return DUET_OK;
    }
    int neg;
    uint64_t mag;
    if (!int_parts(v, &neg, &mag)) return wrong_type(g, v, "a number");
    *out = neg ? -(double)mag : (double)mag;
    return DUET_OK;
}

duet_status duet_gguf_value_bool(const duet_gguf *g, const duet_gguf_value *v, int *out) {
    if (v->type != DUET_GGUF_TYPE_BOOL) return wrong_type(g, v, "a bool");
    *out = v->p_[0];
    return DUET_OK;
}

duet_status duet_gguf_value_str(const duet_gguf *g, const duet_gguf_value *v, const char **s,
                                int64_t *len) {
    if (v->type != DUET_GGUF_TYPE_STRING) return wrong_type(g, v, "a string");
    *s = (const char *)v->p_ + 8;
    *len = v->count;
    return DUET_OK;
}

duet_status duet_gguf_value_elem(const duet_gguf *g, const duet_gguf_value *arr, int64_t i,
                                 duet_gguf_value *out) {
    if (arr->type != DUET_GGUF_TYPE_ARRAY) return wrong_type(g, arr, "an array");
    if (i < 0 || i >= arr->count)
        return duet_set_error(DUET_ERR_ARG, "%s: metadata '%s': element %lld of an array of %lld",
                              g->name, vkey(g, arr), (long long)i, (long long)arr->count);
    duet_gguf_value v = {.type = arr->elem_type, .node_ = -1, .kv_ = arr->kv_};
    const uint64_t esz = type_size(arr->elem_type);
    if (esz) {
        v.p_ = arr->p_ + 12 + (uint64_t)i * esz;
    } else {
        const gguf_elem *e = &g->elems[arr->node_ + i];
        v.p_ = g->base + e->off;
        if (v.type == DUET_GGUF_TYPE_STRING) {
            v.count = (int64_t)ld_u64(v.p_);
        } else {
            v.elem_type = (duet_gguf_type)ld_u32(v.p_);
            v.count = (int64_t)ld_u64(v.p_ + 4);
            v.node_ = e->child;
        }
    }
    *out = v;
    return DUET_OK;
}

/* ---- by key ---- */

static duet_status lookup(const duet_gguf *g, const char *key, duet_gguf_value *v) {
    const int64_t i = duet_gguf_find_key(g, key);
    if (i < 0) return duet_set_error(DUET_ERR_FORMAT, "%s: no metadata key '%s'", g->name, key);
    *v = g->kv[i].v;
    return DUET_OK;
}

duet_status duet_gguf_get_int(const duet_gguf *g, const char *key, int64_t *out) {
    duet_gguf_value v;
    duet_status s = lookup(g, key, &v);
    return s ? s : duet_gguf_value_int(g, &v, out);
}

duet_status duet_gguf_get_float(const duet_gguf *g, const char *key, double *out) {
    duet_gguf_value v;
    duet_status s = lookup(g, key, &v);
    return s ? s : duet_gguf_value_float(g, &v, out);
}

duet_status duet_gguf_get_bool(const duet_gguf *g, const char *key, int *out) {
    duet_gguf_value v;
    duet_status s = lookup(g, key, &v);
    return s ? s : duet_gguf_value_bool(g, &v, out);
}

duet_status duet_gguf_get_str(const duet_gguf *g, const char *key, const char **str, int64_t *len) {
    duet_gguf_value v;
    duet_status s = lookup(g, key, &v);
    return s ? s : duet_gguf_value_str(g, &v, str, len);
}

duet_status duet_gguf_get_arr(const duet_gguf *g, const char *key, duet_gguf_type *elem_type,
                              int64_t *n) {
    duet_gguf_value v;
    duet_status s = lookup(g, key, &v);
    if (s) return s;
    if (v.type != DUET_GGUF_TYPE_ARRAY) return wrong_type(g, &v, "an array");
    if (elem_type) *elem_type = v.elem_type;
    if (n) *n = v.count;
    return DUET_OK;
}

static duet_status arr_elem(const duet_gguf *g, const char *key, int64_t i, duet_gguf_value *e) {
    duet_gguf_value v;
    duet_status s = lookup(g, key, &v);
    return s ? s : duet_gguf_value_elem(g, &v, i, e);
}

duet_status duet_gguf_get_arr_str(const duet_gguf *g, const char *key, int64_t i, const char **str,
                                  int64_t *len) {
    duet_gguf_value e;
    duet_status s = arr_elem(g, key, i, &e);
    return s ? s : duet_gguf_value_str(g, &e, str, len);
}

duet_status duet_gguf_get_arr_int(const duet_gguf *g, const char *key, int64_t i, int64_t *out) {
    duet_gguf_value e;
    duet_status s = arr_elem(g, key, i, &e);
    return s ? s : duet_gguf_value_int(g, &e, out);
}

duet_status duet_gguf_get_arr_float(const duet_gguf *g, const char *key, int64_t i, double *out) {
    duet_gguf_value e;
    duet_status s = arr_elem(g, key, i, &e);
    return s ? s : duet_gguf_value_float(g, &e, out);
}

/* A whole numeric array of exactly n elements, element by element. */
static duet_status arr_numeric(const duet_gguf *g, const char *key, int64_t n, duet_gguf_value *v) {
    duet_status s = lookup(g, key, v);
    if (s) return s;
    if (v->type != DUET_GGUF_TYPE_ARRAY) return wrong_type(g, v, "an array");
    if (v->elem_type != DUET_GGUF_TYPE_FLOAT32 && v->elem_type != DUET_GGUF_TYPE_FLOAT64 &&
        !is_int_type(v->elem_type))
        return duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s': an array of %s, not of numbers",
                              g->name, key, duet_gguf_type_name(v->elem_type));
    if (v->count != n)
        return duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s' has %lld elements, %lld expected",
                              g->name, key, (long long)v->count, (long long)n);
    return DUET_OK;
}

duet_status duet_gguf_get_arr_f32(const duet_gguf *g, const char *key, float *dst, int64_t n) {
    duet_gguf_value v;
    duet_status s = arr_numeric(g, key, n, &v);
    if (s) return s;
    if (v.elem_type == DUET_GGUF_TYPE_FLOAT32) {
        memcpy(dst, v.p_ + 12, (size_t)n * sizeof(float));
        return DUET_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        duet_gguf_value e;
        double d = 0;
        duet_gguf_value_elem(g, &v, i, &e);
        if ((s = duet_gguf_value_float(g, &e, &d)) != DUET_OK) return s;
        dst[i] = (float)d;
    }
    return DUET_OK;
}

duet_status duet_gguf_get_arr_i32(const duet_gguf *g, const char *key, int32_t *dst, int64_t n) {
    duet_gguf_value v;
    duet_status s = arr_numeric(g, key, n, &v);
    if (s) return s;
    if (!is_int_type(v.elem_type))
        return duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s': an array of %s, not of integers",
                              g->name, key, duet_gguf_type_name(v.elem_type));
    for (int64_t i = 0; i < n; i++) {
        duet_gguf_value e;
        int64_t x = 0;
        duet_gguf_value_elem(g, &v, i, &e);
        if ((s = duet_gguf_value_int(g, &e, &x)) != DUET_OK) return s;
        if (x < INT32_MIN || x > INT32_MAX)
            return duet_set_error(DUET_ERR_FORMAT, "%s: metadata '%s': element %lld = %lld does "
                                  "not fit an int32", g->name, key, (long long)i, (long long)x);
        dst[i] = (int32_t)x;
    }
    return DUET_OK;
}

/* ======================================================================== */
/* Writer                                                                    */
/* ======================================================================== */

typedef struct gw_kv {
    char *key;
    uint32_t type;
    uint8_t *val;      /* the value's encoding after the type tag (owned) */
    size_t len;
} gw_kv;

typedef struct gw_tensor {
    char name[GGUF_MAX_NAME + 1];
    duet_qtype type;
    int n_dims;
    int64_t ne[4];
    const void *data;  /* caller's */
    int64_t nbytes;
} gw_tensor;

struct duet_gguf_writer {
    gw_kv *kv;
    int64_t nkv, kv_cap;
    gw_tensor *t;
    int64_t nt, t_cap;
    uint32_t alignment;
};

duet_gguf_writer *duet_gguf_writer_new(void) {
    duet_gguf_writer *w = duet_calloc(1, sizeof *w);
    if (!w) {
        duet_set_error(DUET_ERR_NOMEM, "gguf writer: out of memory");
        return NULL;
    }
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void duet_gguf_writer_free(duet_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->nkv; i++) {
        duet_free(w->kv[i].key);
        duet_free(w->kv[i].val);
    }
    duet_free(w->kv);
    duet_free(w->t);
    duet_free(w);
}

static gw_kv *find_wkv(duet_gguf_writer *w, const char *key) {
    for (int64_t i = 0; i < w->nkv; i++)
        if (strcmp(w->kv[i].key, key) == 0) return &w->kv[i];
    return NULL;
}

/* Takes ownership of val (freed on failure too). */
static duet_status add_kv(duet_gguf_writer *w, const char *key, uint32_t type, uint8_t *val,
                          size_t len) {
    duet_status s = DUET_OK;
    const size_t kl = key ? strlen(key) : 0;
    if (kl == 0 || kl > GGUF_MAX_KEY)
        s = duet_set_error(DUET_ERR_ARG, "gguf writer: key '%.60s' must be 1..%d bytes",
                           key ? key : "", GGUF_MAX_KEY);
    else if (find_wkv(w, key))
        s = duet_set_error(DUET_ERR_ARG, "gguf writer: key '%.200s' was already added", key);
    else if (strcmp(key, "general.alignment") == 0) {
        uint32_t a = 0;
        if (type == DUET_GGUF_TYPE_UINT32) memcpy(&a, val, 4);
        if (type != DUET_GGUF_TYPE_UINT32 || a == 0 || (a & (a - 1)))
            s = duet_set_error(DUET_ERR_ARG, "gguf writer: general.alignment must be a uint32 "
                               "power of two");
        else
            w->alignment = a;
    }
    if (s == DUET_OK && grow((void **)&w->kv, &w->kv_cap, w->nkv + 1, sizeof(gw_kv)))
        s = duet_set_error(DUET_ERR_NOMEM, "gguf writer: out of memory");
    char *k = NULL;
    if (s == DUET_OK && !(k = duet_alloc(kl + 1)))
        s = duet_set_error(DUET_ERR_NOMEM, "gguf writer: out of memory");
    if (s != DUET_OK) {
        duet_free(val);
        return s;
    }
    memcpy(k, key, kl + 1);
    w->kv[w->nkv++] = (gw_kv){k, type, val, len};
    return DUET_OK;
}

static uint8_t *buf_new(size_t n) {
    uint8_t *p = duet_alloc(n ? n : 1);
    if (!p) duet_set_error(DUET_ERR_NOMEM, "gguf writer: out of memory");
    return p;
}

duet_status duet_gguf_writer_add(duet_gguf_writer *w, const char *key, duet_gguf_type type,
                                 const void *value) {
    const uint64_t sz = type_size((uint32_t)type);
    if (!sz || (int)type < 0)
        return duet_set_error(DUET_ERR_ARG, "gguf writer: key '%.200s': _add takes scalar types "
                              "(use _add_str / _add_arr for strings and arrays)", key ? key : "");
    if (type == DUET_GGUF_TYPE_BOOL && *(const uint8_t *)value > 1)
        return duet_set_error(DUET_ERR_ARG, "gguf writer: key '%.200s': a bool is 0 or 1", key);
    uint8_t *v = buf_new(sz);
    if (!v) return DUET_ERR_NOMEM;
    memcpy(v, value, sz);
    return add_kv(w, key, (uint32_t)type, v, sz);
}

duet_status duet_gguf_writer_add_u32(duet_gguf_writer *w, const char *key, uint32_t v) {
    return duet_gguf_writer_add(w, key, DUET_GGUF_TYPE_UINT32, &v);
}
duet_status duet_gguf_writer_add_i32(duet_gguf_writer *w, const char *key, int32_t v) {
    return duet_gguf_writer_add(w, key, DUET_GGUF_TYPE_INT32, &v);
}
duet_status duet_gguf_writer_add_f32(duet_gguf_writer *w, const char *key, float v) {
    return duet_gguf_writer_add(w, key, DUET_GGUF_TYPE_FLOAT32, &v);
}
duet_status duet_gguf_writer_add_bool(duet_gguf_writer *w, const char *key, int v) {
    uint8_t b = v ? 1 : 0;
    return duet_gguf_writer_add(w, key, DUET_GGUF_TYPE_BOOL, &b);
}

duet_status duet_gguf_writer_add_str(duet_gguf_writer *w, const char *key, const char *s,
                                     int64_t len) {
    if (!s) return duet_set_error(DUET_ERR_ARG, "gguf writer: key '%.200s': no string", key ? key : "");
    const uint64_t n = len < 0 ? strlen(s) : (uint64_t)len;
    uint8_t *v = buf_new(8 + n);
    if (!v) return DUET_ERR_NOMEM;
    memcpy(v, &n, 8);
    memcpy(v + 8, s, n);
    return add_kv(w, key, DUET_GGUF_TYPE_STRING, v, 8 + n);
}

duet_status duet_gguf_writer_add_arr(duet_gguf_writer *w, const char *key, duet_gguf_type elem,
                                     const void *data, int64_t n) {
    const uint64_t sz = type_size((uint32_t)elem);
    if (!sz || (int)elem < 0 || n < 0 || (n > 0 && !data) || (uint64_t)n > (SIZE_MAX - 12) / sz)
        return duet_set_error(DUET_ERR_ARG, "gguf writer: key '%.200s': _add_arr takes n >= 0 "
                              "elements of a scalar type", key ? key : "");
    if (elem == DUET_GGUF_TYPE_BOOL)
        for (int64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1)
                return duet_set_error(DUET_ERR_ARG, "gguf writer: key '%.200s': element %lld: a "
                                      "bool is 0 or 1", key, (long long)i);
    const size_t len = 12 + (size_t)n * sz;
    uint8_t *v = buf_new(len);
    if (!v) return DUET_ERR_NOMEM;
    const uint32_t et = (uint32_t)elem;
    const uint64_t cnt = (uint64_t)n;
    memcpy(v, &et, 4);
    memcpy(v + 4, &cnt, 8);
    if (n) memcpy(v + 12, data, (size_t)n * sz);
    return add_kv(w, key, DUET_GGUF_TYPE_ARRAY, v, len);
}

duet_status duet_gguf_writer_add_arr_str(duet_gguf_writer *w, const char *key,
                                         const char *const *s, const int64_t *lens, int64_t n) {
    if (n < 0 || (n > 0 && !s))
        return duet_set_error(DUET_ERR_ARG, "gguf writer: key '%.200s': bad string list", key ? key : "");
    size_t len = 12;
    for (int64_t i = 0; i < n; i++) {
        if (!s[i] || (lens && lens[i] < 0))
            return duet_set_error(DUET_ERR_ARG, "gguf writer: key '%.200s': string %lld is "
                                  "missing", key ? key : "", (long long)i);
        len += 8 + (size_t)(lens ? (size_t)lens[i] : strlen(s[i]));
    }
    uint8_t *v = buf_new(len);
    if (!v) return DUET_ERR_NOMEM;
    const uint32_t et = DUET_GGUF_TYPE_STRING;
    const uint64_t cnt = (uint64_t)n;
    memcpy(v, &et, 4);
    memcpy(v + 4, &cnt, 8);
    size_t at = 12;
    for (int64_t i = 0; i < n; i++) {
        const uint64_t l = lens ? (uint64_t)lens[i] : strlen(s[i]);
        memcpy(v + at, &l, 8);
        memcpy(v + at + 8, s[i], l);
        at += 8 + l;
    }
    return add_kv(w, key, DUET_GGUF_TYPE_ARRAY, v, len);
}

duet_status duet_gguf_writer_add_raw(duet_gguf_writer *w, const char *key, duet_gguf_type type,
                                     const void *bytes, size_t nbytes) {
    if ((int)type < 0 || type >= DUET_GGUF_TYPE_COUNT || (nbytes && !bytes))
        return duet_set_error(DUET_ERR_ARG, "gguf writer: key '%.200s': bad raw value", key ? key : "");
    /* check it exactly as the reader would, on a scratch handle */
    char name[300];
    snprintf(name, sizeof name, "gguf writer: key '%.200s'", key ? key : "");
    duet_gguf tmp = {.name = name, .base = bytes, .size = nbytes};
    rd r = {.g = &tmp, .b = bytes, .size = nbytes, .kv = -1, .tensor = -1};
    duet_gguf_value v;
    int bad = parse_value(&r, (uint32_t)type, 0, &v);
    duet_free(tmp.elems);
    if (bad) return DUET_ERR_ARG;
    if (r.pos != nbytes)
        return duet_set_error(DUET_ERR_ARG, "%s: the value is %llu bytes, %zu given", name,
                              (unsigned long long)r.pos, nbytes);
    uint8_t *c = buf_new(nbytes);
    if (!c) return DUET_ERR_NOMEM;
    if (nbytes) memcpy(c, bytes, nbytes);
    return add_kv(w, key, (uint32_t)type, c, nbytes);
}

duet_status duet_gguf_writer_copy_kv(duet_gguf_writer *w, const duet_gguf *g, int64_t i) {
    if (!g || i < 0 || i >= g->nkv)
        return duet_set_error(DUET_ERR_ARG, "gguf writer: copy_kv: no KV %lld", (long long)i);
    const gguf_kv *kv = &g->kv[i];
    const size_t n = (size_t)(kv->end - kv->start);
    uint8_t *c = buf_new(n);
    if (!c) return DUET_ERR_NOMEM;
    memcpy(c, g->base + kv->start, n);
    return add_kv(w, kv->key, kv->v.type, c, n);
}

duet_status duet_gguf_writer_set_alignment(duet_gguf_writer *w, uint32_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)))
        return duet_set_error(DUET_ERR_ARG, "gguf writer: alignment %u is not a power of two",
                              alignment);
    gw_kv *kv = find_wkv(w, "general.alignment");
    if (kv) { /* add_kv made sure it is a uint32 */
        memcpy(kv->val, &alignment, 4);
        w->alignment = alignment;
        return DUET_OK;
    }
    return duet_gguf_writer_add_u32(w, "general.alignment", alignment);
}

duet_status duet_gguf_writer_add_tensor(duet_gguf_writer *w, const char *name, duet_qtype t,
                                        int n_dims, const int64_t *ne, const void *data) {
    const size_t nl = name ? strlen(name) : 0;
    if (nl == 0 || nl > GGUF_MAX_NAME)
        return duet_set_error(DUET_ERR_ARG, "gguf writer: tensor name '%.80s' must be 1..%d bytes",
                              name ? name : "", GGUF_MAX_NAME);
    for (int64_t i = 0; i < w->nt; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return duet_set_error(DUET_ERR_ARG, "gguf writer: tensor '%s' was already added", name);
    if (!duet_qtype_known((int)t))
        return duet_set_error(DUET_ERR_ARG, "gguf writer: tensor '%s': unknown type %d", name, (int)t);
    if (n_dims < 1 || n_dims > 4 || !ne)
        return duet_set_error(DUET_ERR_ARG, "gguf writer: tensor '%s': n_dims %d (1..4)", name, n_dims);
    int64_t numel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0 || (ne[d] && numel > INT64_MAX / ne[d]))
            return duet_set_error(DUET_ERR_ARG, "gguf writer: tensor '%s': bad ne[%d] = %lld",
                                  name, d, (long long)ne[d]);
        numel *= ne[d];
    }
    if (ne[0] % duet_qtype_block_size((int)t))
        return duet_set_error(DUET_ERR_ARG, "gguf writer: tensor '%s': ne[0] = %lld is not a "
                              "multiple of the %s block size %lld", name, (long long)ne[0],
                              duet_qtype_name((int)t), (long long)duet_qtype_block_size((int)t));
    const int64_t nbytes = duet_qtype_row_bytes((int)t, numel);
    if (nbytes < 0 || (nbytes > 0 && !data))
        return duet_set_error(DUET_ERR_ARG, "gguf writer: tensor '%s': no data or size overflow", name);
    if (grow((void **)&w->t, &w->t_cap, w->nt + 1, sizeof(gw_tensor)))
        return duet_set_error(DUET_ERR_NOMEM, "gguf writer: out of memory");
    gw_tensor *x = &w->t[w->nt++];
    memset(x, 0, sizeof *x);
    memcpy(x->name, name, nl + 1);
    x->type = t;
    x->n_dims = n_dims;
    for (int d = 0; d < 4; d++) x->ne[d] = d < n_dims ? ne[d] : 1;
    x->data = data;
    x->nbytes = nbytes;
    return DUET_OK;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

duet_status duet_gguf_writer_write(duet_gguf_writer *w, const char *path) {
    const uint64_t a = w->alignment;
    /* header size */
    uint64_t hs = 4 + 4 + 8 + 8;
    for (int64_t i = 0; i < w->nkv; i++) hs += 8 + strlen(w->kv[i].key) + 4 + w->kv[i].len;
    for (int64_t i = 0; i < w->nt; i++) hs += 8 + strlen(w->t[i].name) + 4 + 8 * (uint64_t)w->t[i].n_dims + 4 + 8;
    const uint64_t hpad = align_up(hs, a);
    uint8_t *h = duet_calloc(1, (size_t)hpad);
    uint8_t *zeros = duet_calloc(1, (size_t)a);
    duet_chunk *ch = duet_alloc((size_t)(1 + 2 * w->nt) * sizeof(duet_chunk));
    if (!h || !zeros || !ch) {
        duet_free(h), duet_free(zeros), duet_free(ch);
        return duet_set_error(DUET_ERR_NOMEM, "%s: out of memory building the GGUF header", path);
    }
    uint8_t *p = h;
#define PUT(src, n) (memcpy(p, (src), (n)), p += (n))
    const uint32_t version = 3;
    const uint64_t nt = (uint64_t)w->nt, nkv = (uint64_t)w->nkv;
    PUT("GGUF", 4);
    PUT(&version, 4);
    PUT(&nt, 8);
    PUT(&nkv, 8);
    for (int64_t i = 0; i < w->nkv; i++) {
        const uint64_t kl = strlen(w->kv[i].key);
        PUT(&kl, 8);
        PUT(w->kv[i].key, kl);
        PUT(&w->kv[i].type, 4);
        PUT(w->kv[i].val, w->kv[i].len);
    }
    uint64_t off = 0;
    int64_t nch = 1;
    for (int64_t i = 0; i < w->nt; i++) {
        const gw_tensor *t = &w->t[i];
        const uint64_t nl = strlen(t->name), nd = (uint64_t)t->n_dims;
        const uint32_t nd32 = (uint32_t)nd, ty = (uint32_t)t->type;
        PUT(&nl, 8);
        PUT(t->name, nl);
        PUT(&nd32, 4);
        for (uint64_t d = 0; d < nd; d++) {
            const uint64_t ne = (uint64_t)t->ne[d];
            PUT(&ne, 8);
        }
        PUT(&ty, 4);
        PUT(&off, 8);
        const uint64_t padded = align_up((uint64_t)t->nbytes, a);
        ch[nch++] = (duet_chunk){t->data, (size_t)t->nbytes};
        ch[nch++] = (duet_chunk){zeros, (size_t)(padded - (uint64_t)t->nbytes)};
        off += padded;
    }
#undef PUT
    ch[0] = (duet_chunk){h, (size_t)hpad};
    duet_status s = duet_write_chunks_atomic(path, ch, nch);
    duet_free(h), duet_free(zeros), duet_free(ch);
    return s;
}
