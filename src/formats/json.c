/*
 * json.c — the strict JSON parser and escaper declared in formats/json.h.
 *
 * How it parses: the same recursive-descent code runs twice. Pass 1 checks the
 * whole text, counts values and string bytes and notes how many children each
 * array/object has (in a temporary array, indexed by the containers' order of
 * appearance). Then ONE block is allocated — nodes first, decoded strings
 * after — and pass 2 fills it; pass 2 cannot meet bad text because pass 1
 * already accepted the same bytes (it can only run out of memory converting a
 * number longer than 511 characters). Knowing the child counts up front is what lets the
 * children of every container sit contiguously (O(1) indexing).
 *
 * What it is not: a writer (only duet_json_escape), an incremental parser, or
 * a validator of JSON Schema-like structure — that is the callers' job.
 */
#include "formats/json.h"

#include "core/internal.h"

#include <errno.h>
#include <locale.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* UTF-8                                                                     */
/* ======================================================================== */

/* Length (1..4) of the valid UTF-8 sequence at s[0..avail), or 0 if invalid.
 * Ranges follow RFC 3629's table, which rules out overlongs (C0, C1, E0 80..9F,
 * F0 80..8F), UTF-16 surrogates (ED A0..BF) and code points past U+10FFFF. */
static int utf8_seq(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (avail < (size_t)n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

int duet_utf8_valid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        int n = utf8_seq(u + i, len - i);
        if (!n) return 0;
        i += (size_t)n;
    }
    return 1;
}

/* Encodes code point cp (<= 0x10FFFF, not a surrogate) into out; returns bytes. */
static int utf8_put(unsigned char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ======================================================================== */
/* Parser state                                                              */
/* ======================================================================== */

typedef struct jparser {
    const unsigned char *s;
    size_t len, pos;
    int build;              /* 0: pass 1 (check and count), 1: pass 2 (fill) */
    int failed;
    duet_status status;     /* of the failure */
    size_t err_pos;
    char err_msg[160];
    /* pass 1 tallies */
    int64_t nodes;          /* values, root included */
    size_t str_bytes;       /* upper bound of decoded string bytes, NULs included */
    /* child count of each container, in order of appearance (pass 1 writes) */
    int64_t *counts;
    int64_t ncont, cap_cont;
    int64_t cont_next;      /* pass 2: next container index */
    /* pass 2 output */
    duet_json *bump;        /* next free node */
    char *strp;             /* next free string byte */
} jparser;

static int fail(jparser *p, size_t at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail(jparser *p, size_t at, const char *fmt, ...) {
    if (!p->failed) {
        p->failed = 1;
        p->status = DUET_ERR_FORMAT;
        p->err_pos = at;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err_msg, sizeof p->err_msg, fmt, ap);
        va_end(ap);
    }
    return 0;
}

static int fail_nomem(jparser *p, size_t bytes) {
    if (!p->failed) {
        p->failed = 1;
        p->status = DUET_ERR_NOMEM;
        p->err_pos = p->pos;
        snprintf(p->err_msg, sizeof p->err_msg, "out of memory (%zu bytes)", bytes);
    }
    return 0;
}

/* A printable description of the byte at pos, for messages. */
static void describe_byte(const jparser *p, size_t pos, char *buf, size_t size) {
    if (pos >= p->len) snprintf(buf, size, "end of input");
    else if (p->s[pos] >= 0x20 && p->s[pos] < 0x7F) snprintf(buf, size, "'%c'", p->s[pos]);
    else snprintf(buf, size, "byte 0x%02x", p->s[pos]);
}

static void skip_ws(jparser *p) {
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int parse_value(jparser *p, int depth, duet_json *out);

/* ======================================================================== */
/* Strings                                                                   */
/* ======================================================================== */

static int hex4(const jparser *p, size_t at, uint32_t *out) {
    if (p->len - at < 4) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p->s[at + (size_t)i];
        uint32_t d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        v = v * 16 + d;
    }
    *out = v;
    return 1;
}

/* At '"'. Pass 1 checks and counts; pass 2 decodes into p->strp and returns
 * the decoded string in *out_str / *out_len. */
static int parse_string(jparser *p, const char **out_str, int64_t *out_len) {
    size_t start = p->pos;
    p->pos++; /* opening quote */
    unsigned char *dst = (unsigned char *)p->strp;
    unsigned char *d = dst;
    for (;;) {
        if (p->pos >= p->len)
            return fail(p, p->pos, "unterminated string (it starts at byte %zu)", start);
        unsigned char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20)
            return fail(p, p->pos,
                        "raw control character 0x%02x in a string (write it as \\u%04x)", c, c);
        if (c == '\\') {
            size_t esc = p->pos;
            if (p->pos + 1 >= p->len) return fail(p, esc, "unterminated escape in a string");
            unsigned char e = p->s[p->pos + 1];
            unsigned char one = 0;
            switch (e) {
            case '"': one = '"'; break;
            case '\\': one = '\\'; break;
            case '/': one = '/'; break;
            case 'b': one = '\b'; break;
            case 'f': one = '\f'; break;
            case 'n': one = '\n'; break;
            case 'r': one = '\r'; break;
            case 't': one = '\t'; break;
            case 'u': break;
            default: {
                char what[32];
                describe_byte(p, p->pos + 1, what, sizeof what);
                return fail(p, esc, "invalid escape \\%s in a string (valid: \\\" \\\\ \\/ "
                                    "\\b \\f \\n \\r \\t \\uXXXX)",
                            what);
            }
            }
            if (e != 'u') {
                if (p->build) *d++ = one;
                p->pos += 2;
                continue;
            }
            uint32_t cp;
            if (!hex4(p, p->pos + 2, &cp))
                return fail(p, esc, "\\u must be followed by 4 hex digits");
            p->pos += 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return fail(p, esc, "lone low surrogate \\u%04X (no high surrogate before it)",
                            (unsigned)cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (p->pos + 1 >= p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                    !hex4(p, p->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return fail(p, esc,
                                "high surrogate \\u%04X is not followed by a low surrogate "
                                "\\uDC00..\\uDFFF",
                                (unsigned)cp);
                p->pos += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (p->build) d += utf8_put(d, cp);
            continue;
        }
        int n = utf8_seq(p->s + p->pos, p->len - p->pos);
        if (!n) return fail(p, p->pos, "invalid UTF-8 byte 0x%02x in a string", c);
        if (p->build) {
            memcpy(d, p->s + p->pos, (size_t)n);
            d += n;
        }
        p->pos += (size_t)n;
    }
    if (p->build) {
        *d = 0;
        *out_str = (const char *)dst;
        *out_len = (int64_t)(d - dst);
        p->strp = (char *)(d + 1);
    } else {
        /* decoding never grows a string: raw content bytes bound the output */
        p->str_bytes += (p->pos - start - 2) + 1;
    }
    return 1;
}

/* ======================================================================== */
/* Numbers                                                                   */
/* ======================================================================== */

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* strtod of tok[0..n) (JSON grammar, already checked) independent of the
 * C locale's decimal point. Returns 0 on overflow past the double range. */
static int to_double(jparser *p, const char *tok, size_t n, double *out) {
    const char *dp = localeconv()->decimal_point;
    if (!dp || !*dp) dp = ".";
    size_t dpl = strlen(dp);
    size_t need = n * dpl + 1; /* generous: every byte could be the point */
    char stackbuf[512];
    char *buf = stackbuf;
    if (need > sizeof stackbuf) {
        buf = duet_alloc(need);
        if (!buf) return fail_nomem(p, need);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (tok[i] == '.') {
            memcpy(buf + k, dp, dpl);
            k += dpl;
        } else buf[k++] = tok[i];
    }
    buf[k] = 0;
    errno = 0;
    char *end;
    double v = strtod(buf, &end);
    int overflow = errno == ERANGE && (v > 1.0 || v < -1.0);
    if (buf != stackbuf) duet_free(buf);
    if (overflow) return 0;
    *out = v;
    return 1;
}

static int parse_number(jparser *p, duet_json *out) {
    size_t start = p->pos, i = p->pos;
    const unsigned char *s = p->s;
    int neg = 0;
    if (s[i] == '-') {
        neg = 1;
        i++;
        if (i >= p->len || !is_digit(s[i])) return fail(p, start, "expected a digit after '-'");
    }
    size_t int_start = i;
    if (s[i] == '0') {
        i++;
        if (i < p->len && is_digit(s[i]))
            return fail(p, start, "leading zeros are not allowed in a number");
    } else {
        while (i < p->len && is_digit(s[i])) i++;
    }
    size_t int_end = i, frac_start = i, frac_end = i;
    unsigned flags = 0;
    if (i < p->len && s[i] == '.') {
        flags |= DUET_JSON_FRAC_OR_EXP;
        i++;
        frac_start = i;
        if (i >= p->len || !is_digit(s[i]))
            return fail(p, i, "expected a digit after the decimal point");
        while (i < p->len && is_digit(s[i])) i++;
        frac_end = i;
    }
    int64_t exp = 0;
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        flags |= DUET_JSON_FRAC_OR_EXP;
        i++;
        int eneg = 0;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        if (i >= p->len || !is_digit(s[i])) return fail(p, i, "expected a digit in the exponent");
        while (i < p->len && is_digit(s[i])) {
            if (exp < 1000000000) exp = exp * 10 + (s[i] - '0'); /* saturate */
            i++;
        }
        if (eneg) exp = -exp;
    }
    p->pos = i;

    double v;
    if (!to_double(p, (const char *)s + start, i - start, &v)) {
        if (p->failed) return 0; /* out of memory */
        return fail(p, start, "number %.*s is outside the range of a double",
                    (int)DUET_MIN(i - start, (size_t)40), (const char *)s + start);
    }

    /* Exact integer test on the decimal digits: value = digits * 10^e10. */
    int64_t e10 = exp - (int64_t)(frac_end - frac_start);
    size_t nd = (int_end - int_start) + (frac_end - frac_start);
    /* digit k of the concatenated int+frac digit string */
#define DIGIT(k) \
    ((k) < int_end - int_start ? s[int_start + (k)] : s[frac_start + (k) - (int_end - int_start)])
    size_t first = 0, last = nd; /* significant digits [first, last) */
    while (first < nd && DIGIT(first) == '0') first++;
    while (last > first && DIGIT(last - 1) == '0') {
        last--;
        e10++;
    }
    int64_t i64 = 0;
    int integral = 0;
    if (first == last) {
        integral = 1; /* zero (also "-0", "0.000e5") */
    } else if (e10 >= 0 && (int64_t)(last - first) + e10 <= 19) {
        uint64_t u = 0; /* at most 19 digits: below 1e19 < 2^64, no wrap */
        for (size_t k = first; k < last; k++) u = u * 10 + (uint64_t)(DIGIT(k) - '0');
        for (int64_t k = 0; k < e10; k++) u *= 10;
        uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        if (u <= limit) {
            integral = 1;
            i64 = neg ? (int64_t)(0 - u) : (int64_t)u;
        }
    }
#undef DIGIT
    if (out) {
        out->type = DUET_JSON_NUMBER;
        out->num = v;
        out->i64 = i64;
        out->flags = flags | (integral ? DUET_JSON_INTEGRAL : 0u);
    }
    return 1;
}

/* ======================================================================== */
/* Containers                                                                */
/* ======================================================================== */

/* Pass 1: gives the container a slot in p->counts. */
static int64_t container_slot(jparser *p) {
    if (p->ncont == p->cap_cont) {
        int64_t cap = p->cap_cont ? p->cap_cont * 2 : 64;
        int64_t *n = duet_alloc((size_t)cap * sizeof *n);
        if (!n) return fail_nomem(p, (size_t)cap * sizeof *n), -1;
        if (p->ncont) memcpy(n, p->counts, (size_t)p->ncont * sizeof *n);
        duet_free(p->counts);
        p->counts = n;
        p->cap_cont = cap;
    }
    p->counts[p->ncont] = 0;
    return p->ncont++;
}

/* At '[' or '{'. */
static int parse_container(jparser *p, int depth, duet_json *out) {
    int is_obj = p->s[p->pos] == '{';
    unsigned char close = is_obj ? '}' : ']';
    size_t open_pos = p->pos;
    if (depth > DUET_JSON_MAX_DEPTH)
        return fail(p, p->pos, "arrays/objects nested deeper than %d levels",
                    DUET_JSON_MAX_DEPTH);
    int64_t slot;
    duet_json *items = NULL;
    if (!p->build) {
        slot = container_slot(p);
        if (slot < 0) return 0;
    } else {
        slot = p->cont_next++;
        items = p->bump;
        p->bump += p->counts[slot];
    }
    p->pos++;
    skip_ws(p);
    int64_t n = 0;
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
    } else {
        for (;;) {
            const char *key = NULL;
            int64_t key_len = 0;
            duet_json *item = p->build ? &items[n] : NULL;
            skip_ws(p);
            if (is_obj) {
                if (p->pos >= p->len || p->s[p->pos] != '"') {
                    char what[32];
                    describe_byte(p, p->pos, what, sizeof what);
                    return fail(p, p->pos, "expected a string key in an object, found %s",
                                what);
                }
                if (!parse_string(p, &key, &key_len)) return 0;
                skip_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != ':') {
                    char what[32];
                    describe_byte(p, p->pos, what, sizeof what);
                    return fail(p, p->pos, "expected ':' after an object key, found %s", what);
                }
                p->pos++;
            }
            if (!parse_value(p, depth, item)) return 0;
            if (item) {
                item->key = key;
                item->key_len = key_len;
            }
            n++;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == close) {
                p->pos++;
                break;
            }
            if (p->pos >= p->len)
                return fail(p, p->pos, "unterminated %s (opened at byte %zu)",
                            is_obj ? "object" : "array", open_pos);
            char what[32];
            describe_byte(p, p->pos, what, sizeof what);
            return fail(p, p->pos, "expected ',' or '%c' in %s, found %s", close,
                        is_obj ? "an object" : "an array", what);
        }
    }
    if (!p->build) {
        p->counts[slot] = n;
        p->nodes += n;
    }
    if (out) {
        out->type = is_obj ? DUET_JSON_OBJECT : DUET_JSON_ARRAY;
        out->len = n;
        out->items = items;
    }
    return 1;
}

static int literal(jparser *p, const char *word, duet_json *out, duet_json_type t, int b) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) {
        char what[32];
        describe_byte(p, p->pos, what, sizeof what);
        return fail(p, p->pos, "unexpected %s where a value should be", what);
    }
    p->pos += n;
    if (out) {
        out->type = t;
        out->num = b;
    }
    return 1;
}

/* depth: number of containers around this value. */
static int parse_value(jparser *p, int depth, duet_json *out) {
    skip_ws(p);
    if (out) {
        memset(out, 0, sizeof *out);
        out->offset = p->pos;
    }
    if (p->pos >= p->len) return fail(p, p->pos, "unexpected end of input, expected a value");
    unsigned char c = p->s[p->pos];
    switch (c) {
    case '{':
    case '[': return parse_container(p, depth + 1, out);
    case '"': {
        const char *str = NULL;
        int64_t len = 0;
        if (!parse_string(p, &str, &len)) return 0;
        if (out) {
            out->type = DUET_JSON_STRING;
            out->str = str;
            out->len = len;
        }
        return 1;
    }
    case 't': return literal(p, "true", out, DUET_JSON_BOOL, 1);
    case 'f': return literal(p, "false", out, DUET_JSON_BOOL, 0);
    case 'n': return literal(p, "null", out, DUET_JSON_NULL, 0);
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, out);
        {
            char what[32];
            describe_byte(p, p->pos, what, sizeof what);
            return fail(p, p->pos, "unexpected %s where a value should be", what);
        }
    }
}

/* ======================================================================== */
/* Entry points                                                              */
/* ======================================================================== */

static void report(const jparser *p, const char *text, duet_json_error *err) {
    int64_t line = 1, col = 1;
    for (size_t i = 0; i < p->err_pos && i < p->len; i++) {
        if (text[i] == '\n') line++, col = 1;
        else col++;
    }
    if (err) {
        err->status = p->status;
        err->offset = p->err_pos;
        err->line = line;
        err->col = col;
        snprintf(err->msg, sizeof err->msg, "%s", p->err_msg);
    }
    if (p->status == DUET_ERR_NOMEM) duet_set_error(DUET_ERR_NOMEM, "JSON: %s", p->err_msg);
    else
        duet_set_error(p->status, "JSON: %s at line %lld, column %lld (byte %zu)", p->err_msg,
                       (long long)line, (long long)col, p->err_pos);
}

duet_json *duet_json_parse(const char *text, size_t len, duet_json_error *err) {
    jparser p;
    memset(&p, 0, sizeof p);
    p.s = (const unsigned char *)text;
    p.len = text ? len : 0;
    p.nodes = 1;
    if (err) memset(err, 0, sizeof *err);

    /* pass 1: check and count */
    int ok = parse_value(&p, 0, NULL);
    if (ok) {
        skip_ws(&p);
        if (p.pos < p.len) {
            char what[32];
            describe_byte(&p, p.pos, what, sizeof what);
            ok = fail(&p, p.pos, "unexpected %s after the JSON value (trailing garbage)", what);
        }
    }
    duet_json *root = NULL;
    if (ok) {
        size_t node_bytes = (size_t)p.nodes * sizeof(duet_json);
        if ((size_t)p.nodes > SIZE_MAX / sizeof(duet_json) || node_bytes > SIZE_MAX - p.str_bytes)
            ok = fail_nomem(&p, SIZE_MAX);
        else {
            root = duet_alloc(node_bytes + p.str_bytes);
            if (!root) ok = fail_nomem(&p, node_bytes + p.str_bytes);
        }
        if (ok) {
            /* pass 2: fill */
            p.build = 1;
            p.pos = 0;
            p.bump = root + 1;
            p.strp = (char *)root + node_bytes;
            p.cont_next = 0;
            ok = parse_value(&p, 0, root);
            /* pass 1 accepted these bytes: the only way pass 2 can fail is the
             * heap buffer a very long number needs */
            DUET_ASSERT(ok ? p.bump == root + p.nodes && p.cont_next == p.ncont
                           : p.status == DUET_ERR_NOMEM);
        }
    }
    duet_free(p.counts);
    if (!ok) {
        duet_free(root);
        report(&p, text, err);
        return NULL;
    }
    return root;
}

void duet_json_free(duet_json *root) { duet_free(root); }

/* ======================================================================== */
/* Lookups and getters                                                       */
/* ======================================================================== */

static const char *const type_names[] = {"null", "bool", "number", "string", "array", "object"};
static const char *const type_phrases[] = {"null",     "a boolean", "a number",
                                           "a string", "an array",  "an object"};

const char *duet_json_type_name(duet_json_type t) {
    return (unsigned)t < 6 ? type_names[t] : "?";
}

const char *duet_json_type_phrase(duet_json_type t) {
    return (unsigned)t < 6 ? type_phrases[t] : "?";
}

const duet_json *duet_json_get(const duet_json *obj, const char *key) {
    if (!obj || obj->type != DUET_JSON_OBJECT || !key) return NULL;
    size_t kl = strlen(key);
    for (int64_t i = 0; i < obj->len; i++) {
        const duet_json *m = &obj->items[i];
        if ((size_t)m->key_len == kl && memcmp(m->key, key, kl) == 0) return m;
    }
    return NULL;
}

const duet_json *duet_json_at(const duet_json *v, int64_t i) {
    if (!v || (v->type != DUET_JSON_ARRAY && v->type != DUET_JSON_OBJECT)) return NULL;
    if (i < 0 || i >= v->len) return NULL;
    return &v->items[i];
}

int64_t duet_json_len(const duet_json *v) {
    if (!v || (v->type != DUET_JSON_ARRAY && v->type != DUET_JSON_OBJECT)) return -1;
    return v->len;
}

int duet_json_as_int(const duet_json *v, int64_t *out) {
    if (!v || v->type != DUET_JSON_NUMBER || !(v->flags & DUET_JSON_INTEGRAL)) return 0;
    *out = v->i64;
    return 1;
}

int duet_json_as_num(const duet_json *v, double *out) {
    if (!v || v->type != DUET_JSON_NUMBER) return 0;
    *out = v->num;
    return 1;
}

int duet_json_as_bool(const duet_json *v, int *out) {
    if (!v || v->type != DUET_JSON_BOOL) return 0;
    *out = v->num != 0.0;
    return 1;
}

const char *duet_json_as_str(const duet_json *v) {
    return v && v->type == DUET_JSON_STRING ? v->str : NULL;
}

int64_t duet_json_get_int(const duet_json *obj, const char *key, int64_t dflt) {
    int64_t v;
    return duet_json_as_int(duet_json_get(obj, key), &v) ? v : dflt;
}

double duet_json_get_num(const duet_json *obj, const char *key, double dflt) {
    double v;
    return duet_json_as_num(duet_json_get(obj, key), &v) ? v : dflt;
}

const char *duet_json_get_str(const duet_json *obj, const char *key, const char *dflt) {
    const char *s = duet_json_as_str(duet_json_get(obj, key));
    return s ? s : dflt;
}

/* ---- duplicate keys ---- */

static int key_cmp(const duet_json *a, const duet_json *b) {
    size_t n = (size_t)DUET_MIN(a->key_len, b->key_len);
    int c = n ? memcmp(a->key, b->key, n) : 0;
    if (c) return c;
    return (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

static int member_ptr_cmp(const void *pa, const void *pb) {
    const duet_json *a = *(const duet_json *const *)pa, *b = *(const duet_json *const *)pb;
    int c = key_cmp(a, b);
    if (c) return c;
    return (a > b) - (a < b); /* document order among equal keys */
}

int duet_json_find_duplicate(const duet_json *obj, int64_t *first, int64_t *second) {
    if (!obj || obj->type != DUET_JSON_OBJECT) {
        duet_set_error(DUET_ERR_ARG, "duet_json_find_duplicate: not an object");
        return -1;
    }
    int64_t n = obj->len, best_a = -1, best_b = -1;
    if (n <= 16) {
        for (int64_t j = 1; j < n && best_b < 0; j++)
            for (int64_t i = 0; i < j; i++)
                if (key_cmp(&obj->items[i], &obj->items[j]) == 0) {
                    best_a = i, best_b = j;
                    break;
                }
    } else {
        const duet_json **idx = duet_alloc((size_t)n * sizeof *idx);
        if (!idx) return -1;
        for (int64_t i = 0; i < n; i++) idx[i] = &obj->items[i];
        qsort(idx, (size_t)n, sizeof *idx, member_ptr_cmp);
        /* among all equal neighbours, report the pair whose second member
         * comes first in the document (what a linear reader would hit); equal
         * keys sort in document order, so its first member is the earliest */
        for (int64_t i = 1; i < n; i++) {
            if (key_cmp(idx[i - 1], idx[i]) != 0) continue;
            int64_t a = idx[i - 1] - obj->items, b = idx[i] - obj->items;
            if (best_b < 0 || b < best_b) best_a = a, best_b = b;
        }
        duet_free(idx);
    }
    if (best_b < 0) return 0;
    if (first) *first = best_a;
    if (second) *second = best_b;
    return 1;
}

/* ======================================================================== */
/* Escaper                                                                   */
/* ======================================================================== */

size_t duet_json_escape(char *dst, size_t cap, const char *s, size_t len) {
    size_t n = 0;
#define PUT(ch)                                \
    do {                                       \
        if (n + 1 < cap) dst[n] = (char)(ch); \
        n++;                                   \
    } while (0)
    static const char hex[] = "0123456789abcdef";
    PUT('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            PUT('\\');
            PUT(c);
        } else if (c < 0x20) {
            PUT('\\');
            switch (c) {
            case '\b': PUT('b'); break;
            case '\f': PUT('f'); break;
            case '\n': PUT('n'); break;
            case '\r': PUT('r'); break;
            case '\t': PUT('t'); break;
            default:
                PUT('u');
                PUT('0');
                PUT('0');
                PUT(hex[c >> 4]);
                PUT(hex[c & 15]);
            }
        } else {
            PUT(c);
        }
    }
    PUT('"');
#undef PUT
    if (cap) dst[n < cap ? n : cap - 1] = 0;
    return n;
}
