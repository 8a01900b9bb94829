/*
 * json.h — duet's small private JSON reader (RFC 8259) and string escaper,
 * shared by every file format that carries JSON: safetensors headers, model
 * configs, tokenizer files.
 *
 * What it is: a strict parser that turns a buffer (not NUL-terminated, e.g.
 * a slice of an mmap) into a read-only DOM held in ONE allocation, with
 * lookups, typed getters, a duplicate-key check, a UTF-8 validator and an
 * escaper for writers. What it is not: a streaming parser, a general JSON
 * writer, or lenient (no comments, trailing commas, NaN, single quotes).
 *
 * Strictness, so that hostile input fails cleanly:
 *  - strings must be valid UTF-8 (no overlongs, no encoded surrogates, nothing
 *    past U+10FFFF) with no raw control characters; \uXXXX escapes are
 *    decoded to UTF-8, surrogate pairs joined, lone surrogates rejected;
 *  - numbers follow the JSON grammar exactly; a number outside the double
 *    range (1e400) is an error, underflow becomes 0;
 *  - nesting deeper than DUET_JSON_MAX_DEPTH is an error (no stack overflow);
 *  - anything but whitespace after the value is an error ("trailing garbage").
 * Duplicate object keys are kept (the RFC allows them); callers that must
 * refuse them ask duet_json_find_duplicate.
 */
#ifndef DUET_FORMATS_JSON_H
#define DUET_FORMATS_JSON_H

#include "duet.h"

#include <stddef.h>
#include <stdint.h>

/* Arrays and objects nested deeper than this are rejected. */
#define DUET_JSON_MAX_DEPTH 256

typedef enum duet_json_type {
    DUET_JSON_NULL = 0,
    DUET_JSON_BOOL,
    DUET_JSON_NUMBER,
    DUET_JSON_STRING,
    DUET_JSON_ARRAY,
    DUET_JSON_OBJECT,
} duet_json_type;

/* Number flags. */
enum {
    /* the value is a whole number that fits int64: i64 holds it exactly
     * (decided from the decimal digits, not from the double: 1.0, 1e3 and
     * 9007199254740993 all qualify) */
    DUET_JSON_INTEGRAL = 1u << 0,
    /* the number was written with a fraction or an exponent ("2.0", "1e3");
     * formats that want integer literals only (safetensors) refuse these */
    DUET_JSON_FRAC_OR_EXP = 1u << 1,
};

/* One value. Nodes are read-only and live in the document's allocation; the
 * root is the document (free it with duet_json_free). Children of an array or
 * object are contiguous: items[0..len). */
typedef struct duet_json duet_json;
struct duet_json {
    duet_json_type type;
    unsigned flags;      /* NUMBER: DUET_JSON_INTEGRAL | DUET_JSON_FRAC_OR_EXP */
    int64_t len;         /* STRING: bytes (no NUL); ARRAY, OBJECT: number of items */
    double num;          /* NUMBER: nearest double; BOOL: 0 or 1 */
    int64_t i64;         /* NUMBER with DUET_JSON_INTEGRAL: the exact value */
    const char *str;     /* STRING: UTF-8, NUL-terminated; may hold a \0 from \u0000,
                            so use len when that matters */
    duet_json *items;    /* ARRAY, OBJECT: len children (object members carry key) */
    const char *key;     /* members of an object: the key, NUL-terminated; else NULL */
    int64_t key_len;     /* bytes of key (no NUL) */
    size_t offset;       /* byte offset of this value in the parsed text */
};

/* Where and why a parse failed. */
typedef struct duet_json_error {
    duet_status status;  /* DUET_OK, DUET_ERR_FORMAT (bad text) or DUET_ERR_NOMEM */
    size_t offset;       /* byte offset of the first bad byte */
    int64_t line, col;   /* 1-based; col counts bytes */
    char msg[160];       /* e.g. "expected ',' or '}' after an object member" */
} duet_json_error;

/* Parses text[0..len) (need not be NUL-terminated). Returns the root, or NULL
 * with *err filled (err may be NULL) and duet_set_error called with
 * "JSON: <msg> at line L, column C (byte O)". The caller owns the result. */
duet_json *duet_json_parse(const char *text, size_t len, duet_json_error *err);
/* Frees a document returned by duet_json_parse; NULL is fine. */
void duet_json_free(duet_json *root);

/* "null", "bool", "number", "string", "array", "object" (with an article for
 * messages: duet_json_type_phrase gives "a number", "an object", ...). */
const char *duet_json_type_name(duet_json_type t);
const char *duet_json_type_phrase(duet_json_type t);

/* First member of obj named key (NUL-terminated), or NULL when obj is not an
 * object or has no such key. Linear in the number of members. */
const duet_json *duet_json_get(const duet_json *obj, const char *key);
/* Element i of an array (or member i of an object), NULL when out of range. */
const duet_json *duet_json_at(const duet_json *v, int64_t i);
/* Number of items of an array or object; -1 for anything else. */
int64_t duet_json_len(const duet_json *v);

/* Typed getters: return 1 and set *out when v has that type, else 0. */
int duet_json_as_int(const duet_json *v, int64_t *out);   /* DUET_JSON_INTEGRAL numbers */
int duet_json_as_num(const duet_json *v, double *out);
int duet_json_as_bool(const duet_json *v, int *out);
/* The string of v, or NULL when v is not a string. */
const char *duet_json_as_str(const duet_json *v);

/* Member lookups with a default for absent or mistyped members (config files). */
int64_t duet_json_get_int(const duet_json *obj, const char *key, int64_t dflt);
double duet_json_get_num(const duet_json *obj, const char *key, double dflt);
const char *duet_json_get_str(const duet_json *obj, const char *key, const char *dflt);

/* Looks for two members of obj with byte-equal keys. Returns 1 and sets
 * *first < *second (member indices) when found, 0 when the keys are unique,
 * -1 when obj is not an object or a temporary allocation failed (then
 * duet_last_error says so). O(n log n). */
int duet_json_find_duplicate(const duet_json *obj, int64_t *first, int64_t *second);

/* 1 when s[0..len) is valid UTF-8 (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), else 0. */
int duet_utf8_valid(const char *s, size_t len);

/* Writes s[0..len) as a quoted JSON string into dst (snprintf rules: at most
 * cap bytes including the NUL, always NUL-terminated when cap > 0). Escapes
 * '"', '\\' and control characters; other bytes, UTF-8 included, are copied.
 * Returns the length the full result needs (without the NUL), so a call with
 * cap 0 measures. */
size_t duet_json_escape(char *dst, size_t cap, const char *s, size_t len);

#endif
