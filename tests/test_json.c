/*
 * test_json.c — the private JSON parser and escaper (src/formats/json.h).
 *
 * Expected values come from the spec (RFC 8259 for the grammar, RFC 3629 for
 * UTF-8, Unicode's UTF-16 surrogate rules) and from the C compiler's own
 * parsing of the same decimal literals. Every parse runs on an exact-size
 * heap copy that is not NUL-terminated, so ASan sees any read past the end.
 */
#include "testutil.h"

#include "formats/json.h"

#include <locale.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* parse text[0..n) from an exact-size copy */
static duet_json *parse_n(const char *text, size_t n, duet_json_error *err) {
    char *b = malloc(n ? n : 1);
    if (n) memcpy(b, text, n);
    duet_json *j = duet_json_parse(b, n, err);
    free(b); /* the document must not point into the text */
    return j;
}

static duet_json *parse(const char *text, duet_json_error *err) {
    return parse_n(text, strlen(text), err);
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

static void test_scalars(void) {
    duet_json_error e;
    duet_json *j = parse("null", &e);
    T_CHECK(j && j->type == DUET_JSON_NULL, "null");
    duet_json_free(j);
    int b = -1;
    j = parse(" true ", &e);
    T_CHECK(j && duet_json_as_bool(j, &b) && b == 1, "true");
    duet_json_free(j);
    j = parse("false", &e);
    T_CHECK(j && duet_json_as_bool(j, &b) && b == 0, "false");
    duet_json_free(j);
    j = parse("\"hi\"", &e);
    T_CHECK(j && j->type == DUET_JSON_STRING && j->len == 2 && strcmp(duet_json_as_str(j), "hi") == 0,
            "string at the root");
    duet_json_free(j);
    j = parse("\"\"", &e);
    T_CHECK(j && j->len == 0 && strcmp(j->str, "") == 0, "empty string");
    duet_json_free(j);
    j = parse(" \t\r\n42\n", &e);
    int64_t v;
    T_CHECK(j && duet_json_as_int(j, &v) && v == 42 && j->offset == 4, "number at the root, offset 4");
    duet_json_free(j);
    T_CHECK(strcmp(duet_json_type_name(DUET_JSON_OBJECT), "object") == 0 &&
                strcmp(duet_json_type_phrase(DUET_JSON_ARRAY), "an array") == 0,
            "type names");
}

static void test_nesting(void) {
    const char *text = "{\"a\": [1, {\"b\": [[], {}]}, \"x\"], \"c\": {\"d\": null}, \"e\": -2.5}";
    duet_json_error e;
    duet_json *j = parse(text, &e);
    T_CHECK(j && j->type == DUET_JSON_OBJECT && duet_json_len(j) == 3, "object with 3 members");
    if (!j) return;
    const duet_json *a = duet_json_get(j, "a");
    T_CHECK(a && a->type == DUET_JSON_ARRAY && duet_json_len(a) == 3 && a->offset == 6,
            "member a is an array of 3 at byte 6");
    const duet_json *a1 = duet_json_at(a, 1);
    const duet_json *bb = duet_json_get(a1, "b");
    T_CHECK(bb && duet_json_len(bb) == 2 && duet_json_at(bb, 0)->type == DUET_JSON_ARRAY &&
                duet_json_len(duet_json_at(bb, 0)) == 0 &&
                duet_json_at(bb, 1)->type == DUET_JSON_OBJECT && duet_json_len(duet_json_at(bb, 1)) == 0,
            "empty array and object inside");
    T_CHECK(strcmp(duet_json_as_str(duet_json_at(a, 2)), "x") == 0, "a[2] is \"x\"");
    T_CHECK(duet_json_at(a, 3) == NULL && duet_json_at(a, -1) == NULL, "out of range index");
    T_CHECK(&a->items[1] == duet_json_at(a, 1) && duet_json_at(a, 2) == duet_json_at(a, 1) + 1,
            "children are contiguous");
    const duet_json *c = duet_json_get(j, "c");
    T_CHECK(c && duet_json_get(c, "d") && duet_json_get(c, "d")->type == DUET_JSON_NULL,
            "c.d is null");
    T_CHECK(strcmp(duet_json_at(j, 2)->key, "e") == 0 && duet_json_at(j, 2)->key_len == 1,
            "member keys in order");
    T_CHECK(duet_json_get(j, "zz") == NULL && duet_json_get(a, "a") == NULL &&
                duet_json_get(NULL, "a") == NULL,
            "get: absent key, not an object, NULL");
    T_CHECK(duet_json_len(duet_json_get(j, "e")) == -1, "len of a number is -1");
    /* getters with defaults */
    T_CHECK(duet_json_get_num(j, "e", 0) == -2.5 && duet_json_get_num(j, "a", 7) == 7 &&
                duet_json_get_int(j, "e", 9) == 9 && duet_json_get_int(j, "nope", 3) == 3 &&
                strcmp(duet_json_get_str(j, "e", "dflt"), "dflt") == 0,
            "defaulting getters");
    int64_t iv;
    double dv;
    int bv;
    T_CHECK(!duet_json_as_int(a, &iv) && !duet_json_as_num(a, &dv) && !duet_json_as_bool(a, &bv) &&
                duet_json_as_str(a) == NULL && !duet_json_as_int(NULL, &iv),
            "typed getters refuse other types");
    duet_json_free(j);
    duet_json_free(NULL);
}

static void test_strings(void) {
    static const struct {
        const char *json;
        const char *want;
        size_t want_len;
    } cases[] = {
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8},
        {"\"\\u0041\\u00e9\\u00E9\"", "A\xc3\xa9\xc3\xa9", 5},
        {"\"\\u20AC\"", "\xe2\x82\xac", 3},
        {"\"\\u07FF\\u0800\\uFFFF\"", "\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 8},
        {"\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 4},       /* U+1F600 */
        {"\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4},       /* U+10FFFF */
        {"\"\\ud800\\udc00\"", "\xf0\x90\x80\x80", 4},       /* U+10000, lower-case hex */
        {"\"a\\u0000b\"", "a\0b", 3},                        /* embedded NUL */
        {"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9},
        {"\"\x7f\"", "\x7f", 1}, /* DEL is not a control character in JSON */
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        duet_json_error e;
        duet_json *j = parse(cases[i].json, &e);
        T_CHECK(j && j->type == DUET_JSON_STRING && (size_t)j->len == cases[i].want_len &&
                    memcmp(j->str, cases[i].want, cases[i].want_len) == 0 &&
                    j->str[j->len] == 0,
                "string %d %s decodes (%s)", i, cases[i].json, j ? "" : e.msg);
        duet_json_free(j);
    }
    /* keys get the same decoding */
    duet_json_error e;
    duet_json *j = parse("{\"\\u00fcber\": 1, \"a\\nb\": 2}", &e);
    T_CHECK(j && duet_json_get(j, "\xc3\xbc" "ber") && duet_json_get_int(j, "a\nb", 0) == 2,
            "escaped keys");
    duet_json_free(j);
}

static void test_utf8(void) {
    static const struct {
        const char *s;
        int valid;
    } cases[] = {
        {"plain", 1},
        {"\xc2\x80", 1},           /* U+0080 */
        {"\xdf\xbf", 1},
        {"\xe0\xa0\x80", 1},       /* U+0800 */
        {"\xed\x9f\xbf", 1},       /* U+D7FF */
        {"\xee\x80\x80", 1},       /* U+E000 */
        {"\xf0\x90\x80\x80", 1},   /* U+10000 */
        {"\xf4\x8f\xbf\xbf", 1},   /* U+10FFFF */
        {"\xc0\xaf", 0},           /* overlong '/' */
        {"\xc1\xbf", 0},           /* overlong */
        {"\xe0\x9f\xbf", 0},       /* overlong 3-byte */
        {"\xf0\x8f\xbf\xbf", 0},   /* overlong 4-byte */
        {"\xed\xa0\x80", 0},       /* UTF-16 surrogate D800 encoded */
        {"\xed\xbf\xbf", 0},       /* DFFF */
        {"\xf4\x90\x80\x80", 0},   /* past U+10FFFF */
        {"\xf5\x80\x80\x80", 0},
        {"\xff", 0},
        {"\x80", 0},               /* lone continuation */
        {"\xe2\x82", 0},           /* cut short */
        {"\xe2\x28\xa1", 0},       /* bad continuation */
    };
    int n = (int)(sizeof cases / sizeof cases[0]), bad = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(cases[i].s);
        if (duet_utf8_valid(cases[i].s, len) != cases[i].valid) {
            bad++;
            fprintf(stderr, "utf8 case %d: want %d\n", i, cases[i].valid);
        }
        /* the parser agrees inside a string */
        char buf[32];
        snprintf(buf, sizeof buf, "\"%s\"", cases[i].s);
        duet_json_error e;
        duet_json *j = parse(buf, &e);
        if ((j != NULL) != cases[i].valid ||
            (!j && (!strstr(e.msg, "invalid UTF-8") || e.offset < 1 || e.offset > len))) {
            bad++;
            fprintf(stderr, "utf8 case %d in a string: %s\n", i, j ? "accepted" : e.msg);
        }
        duet_json_free(j);
    }
    T_CHECK(bad == 0, "UTF-8 validation per RFC 3629 (%d cases, %d off)", n, bad);
}

static void test_numbers(void) {
    static const struct {
        const char *text;
        double num;
        int integral;
        int64_t i64;
        int frac_or_exp;
    } cases[] = {
        {"0", 0.0, 1, 0, 0},
        {"-0", -0.0, 1, 0, 0},
        {"123", 123.0, 1, 123, 0},
        {"-123", -123.0, 1, -123, 0},
        {"1.5", 1.5, 0, 0, 1},
        {"1e3", 1e3, 1, 1000, 1},
        {"1E+2", 100.0, 1, 100, 1},
        {"1.0", 1.0, 1, 1, 1},
        {"1.25e2", 125.0, 1, 125, 1},
        {"12.5e-1", 1.25, 0, 0, 1},
        {"100e-2", 1.0, 1, 1, 1},
        {"0.000e5", 0.0, 1, 0, 1},
        {"0.1", 0.1, 0, 0, 1},
        {"-0.5e-3", -0.5e-3, 0, 0, 1},
        {"9007199254740993", 9007199254740993.0, 1, 9007199254740993LL, 0},
        {"9223372036854775807", 9223372036854775807.0, 1, INT64_MAX, 0},
        {"9223372036854775808", 9223372036854775808.0, 0, 0, 0},
        {"-9223372036854775808", -9223372036854775808.0, 1, INT64_MIN, 0},
        {"-9223372036854775809", -9223372036854775809.0, 0, 0, 0},
        {"922337203685477580.7e1", 9223372036854775807.0, 1, INT64_MAX, 1},
        {"123456789012345678901234567890", 123456789012345678901234567890.0, 0, 0, 0},
        {"1e-400", 0.0, 0, 0, 1}, /* underflow: a value, not an error */
        {"2.2250738585072014e-308", 2.2250738585072014e-308, 0, 0, 1},
        {"4.9406564584124654e-324", 4.9406564584124654e-324, 0, 0, 1},
        {"1.7976931348623157e308", 1.7976931348623157e308, 0, 0, 1},
        {"5e18", 5e18, 1, 5000000000000000000LL, 1},
        {"1e19", 1e19, 0, 0, 1},
    };
    int n = (int)(sizeof cases / sizeof cases[0]), bad = 0;
    for (int i = 0; i < n; i++) {
        duet_json_error e;
        duet_json *j = parse(cases[i].text, &e);
        int ok = j && j->type == DUET_JSON_NUMBER &&
                 memcmp(&j->num, &cases[i].num, sizeof(double)) == 0 &&
                 !!(j->flags & DUET_JSON_INTEGRAL) == cases[i].integral &&
                 !!(j->flags & DUET_JSON_FRAC_OR_EXP) == cases[i].frac_or_exp &&
                 (!cases[i].integral || j->i64 == cases[i].i64);
        if (!ok) {
            bad++;
            fprintf(stderr, "number %s: %s num %.17g flags %u i64 %lld\n", cases[i].text,
                    j ? "parsed" : e.msg, j ? j->num : 0.0, j ? j->flags : 0u,
                    j ? (long long)j->i64 : 0LL);
        }
        duet_json_free(j);
    }
    T_CHECK(bad == 0, "numbers: double bits, exact int64 and flags (%d cases, %d off)", n, bad);

    /* long tokens (past the parser's stack buffer) */
    char big[1200];
    memset(big, '0', sizeof big);
    big[0] = '1', big[1] = '.', big[sizeof big - 1] = 0; /* 1.000...0 */
    duet_json_error e;
    duet_json *j = parse(big, &e);
    int64_t v;
    T_CHECK(j && j->num == 1.0 && duet_json_as_int(j, &v) && v == 1, "1.(1197 zeros) is 1");
    duet_json_free(j);
    big[0] = '0', big[sizeof big - 2] = '3'; /* 0.000...03 */
    j = parse(big, &e);
    T_CHECK(j && j->num == 0.0 && !(j->flags & DUET_JSON_INTEGRAL), "tiny long number underflows to 0");
    duet_json_free(j);
    memset(big, '9', 400);
    big[400] = 0;
    j = parse(big, &e);
    T_CHECK(!j && strstr(e.msg, "outside the range of a double") && e.offset == 0,
            "400 nines overflow a double: %s", e.msg);
    j = parse("[1, -1e400]", &e);
    T_CHECK(!j && strstr(e.msg, "outside the range") && e.offset == 4, "-1e400 at offset 4: %s",
            e.msg);

    /* the decimal point does not depend on the C locale: under de_DE strtod
     * wants "1,5". The machine's own comma-decimal locale if it has one, else
     * one compiled into a temporary folder with localedef (package locales;
     * glibc reads LOCPATH). */
    const char *locs[] = {"de_DE.UTF-8", "fr_FR.UTF-8", "de_DE", "ru_RU.UTF-8", NULL};
    const char *used = NULL;
    for (int i = 0; locs[i] && !used; i++)
        if (setlocale(LC_NUMERIC, locs[i])) used = locs[i];
    char dir[] = "/tmp/duet_locale_XXXXXX", cmd[256];
    int made = 0;
    if (!used && mkdtemp(dir)) {
        made = 1;
        snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
        if (system(cmd) == 0 && setenv("LOCPATH", dir, 1) == 0 &&
            setlocale(LC_NUMERIC, "de_DE.UTF-8"))
            used = "de_DE.UTF-8 (built with localedef)";
    }
    if (used) {
        char probe[16];
        snprintf(probe, sizeof probe, "%.1f", 1.5);
        T_CHECK(strcmp(probe, "1,5") == 0, "locale %s really uses a decimal comma (%s)", used,
                probe);
        j = parse("[1.5, 2.25e1, -0.125]", &e);
        T_CHECK(j && duet_json_at(j, 0)->num == 1.5 && duet_json_at(j, 1)->num == 22.5 &&
                    duet_json_at(j, 2)->num == -0.125,
                "numbers parse under locale %s", used);
        duet_json_free(j);
    }
    setlocale(LC_NUMERIC, "C");
    unsetenv("LOCPATH");
    if (made) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    }
    T_CHECK(used != NULL, "a comma-decimal locale to test under (install Debian's locales "
            "package: tools/deps.sh does)");
}

static void test_errors(void) {
    static const struct {
        const char *text;
        size_t offset;
        const char *needle;
    } cases[] = {
        {"", 0, "unexpected end of input"},
        {"   ", 3, "unexpected end of input"},
        {"[1,]", 3, "unexpected ']'"},
        {"{\"a\":1,}", 7, "expected a string key"},
        {"{\"a\" 1}", 5, "expected ':'"},
        {"{1:2}", 1, "expected a string key"},
        {"[1 2]", 3, "expected ',' or ']'"},
        {"{\"a\":1 \"b\":2}", 7, "expected ',' or '}'"},
        {"01", 0, "leading zeros"},
        {"-01", 0, "leading zeros"},
        {"-", 0, "digit after '-'"},
        {"-a", 0, "digit after '-'"},
        {"1.", 2, "after the decimal point"},
        {"1.e5", 2, "after the decimal point"},
        {".5", 0, "unexpected '.'"},
        {"+1", 0, "unexpected '+'"},
        {"1e", 2, "exponent"},
        {"1e+", 3, "exponent"},
        {"0x10", 1, "trailing garbage"},
        {"NaN", 0, "unexpected 'N'"},
        {"Infinity", 0, "unexpected 'I'"},
        {"-Infinity", 0, "digit after '-'"},
        {"tru", 0, "unexpected 't'"},
        {"nul", 0, "unexpected 'n'"},
        {"True", 0, "unexpected 'T'"},
        {"nulls", 4, "trailing garbage"},
        {"\"abc", 4, "unterminated string"},
        {"\"a\tb\"", 2, "raw control character 0x09"},
        {"\"a\nb\"", 2, "raw control character 0x0a"},
        {"\"\\x\"", 1, "invalid escape \\'x'"},
        {"\"\\", 1, "unterminated escape"},
        {"\"\\u12G4\"", 1, "4 hex digits"},
        {"\"\\u12\"", 1, "4 hex digits"},
        {"\"\\uDC00\"", 1, "lone low surrogate"},
        {"\"\\uD800\"", 1, "not followed by a low surrogate"},
        {"\"\\uD800\\u0041\"", 1, "not followed by a low surrogate"},
        {"\"\\uD800\\uD800\"", 1, "not followed by a low surrogate"},
        {"\"x\\uDBFF\"", 2, "not followed by a low surrogate"},
        {"[1] x", 4, "trailing garbage"},
        {"{} {}", 3, "trailing garbage"},
        {"1 2", 2, "trailing garbage"},
        {"// c\n1", 0, "unexpected '/'"},
        {"[1,/*c*/2]", 3, "unexpected '/'"},
        {"'a'", 0, "unexpected '''"},
        {"[", 1, "unexpected end of input"},
        {"[1", 2, "unterminated array (opened at byte 0)"},
        {"{\"a\":[1,2", 9, "unterminated array (opened at byte 5)"},
        {"{\"a\":1", 6, "unterminated object (opened at byte 0)"},
        {"\xef\xbb\xbf{}", 0, "unexpected byte 0xef"},
        {"[1,\f2]", 3, "unexpected byte 0x0c"},
        {"[\xc2\xa0" "1]", 1, "unexpected byte 0xc2"},
        {"{\"a\":}", 5, "unexpected '}'"},
    };
    int n = (int)(sizeof cases / sizeof cases[0]), bad = 0;
    for (int i = 0; i < n; i++) {
        duet_json_error e;
        duet_json *j = parse(cases[i].text, &e);
        if (j || e.status != DUET_ERR_FORMAT || e.offset != cases[i].offset ||
            !strstr(e.msg, cases[i].needle) || !strstr(duet_last_error(), e.msg)) {
            bad++;
            fprintf(stderr, "error case %d '%s': %s at %zu (want '%s' at %zu)\n", i,
                    cases[i].text, j ? "ACCEPTED" : e.msg, e.offset, cases[i].needle,
                    cases[i].offset);
        }
        duet_json_free(j);
    }
    T_CHECK(bad == 0, "malformed JSON is refused at the right byte with the right reason (%d "
                      "cases, %d off)",
            n, bad);

    duet_json_error e;
    duet_json *j = parse("{\n  \"a\": 1,\n  \"b\": x\n}", &e);
    T_CHECK(!j && e.line == 3 && e.col == 8 && e.offset == 19 &&
                strstr(duet_last_error(), "line 3, column 8 (byte 19)"),
            "line and column: %s", duet_last_error());
    j = duet_json_parse(NULL, 0, NULL);
    T_CHECK(!j, "NULL text with no error struct");
}

static void test_depth(void) {
    int D = DUET_JSON_MAX_DEPTH;
    size_t n = 2 * (size_t)(D + 1);
    char *t = malloc(n + 1);
    /* exactly D levels: fine */
    memset(t, '[', (size_t)D);
    memset(t + D, ']', (size_t)D);
    duet_json_error e;
    duet_json *j = parse_n(t, 2 * (size_t)D, &e);
    int depth = 0;
    for (const duet_json *p = j; p && p->len; p = duet_json_at(p, 0)) depth++;
    T_CHECK(j && depth == D - 1, "%d nested arrays parse", D);
    duet_json_free(j);
    /* D + 1: refused where the extra level opens */
    memset(t, '[', (size_t)D + 1);
    memset(t + D + 1, ']', (size_t)D + 1);
    j = parse_n(t, n, &e);
    T_CHECK(!j && e.offset == (size_t)D && strstr(e.msg, "nested deeper than"),
            "%d levels refused at byte %d: %s", D + 1, D, e.msg);
    free(t);
    /* objects count too, and a huge depth does not overflow the stack */
    size_t big = 1000000;
    t = malloc(big * 5);
    for (size_t i = 0; i < big; i++) memcpy(t + 5 * i, "{\"a\":", 5);
    j = parse_n(t, big * 5, &e);
    T_CHECK(!j && e.offset == 5 * (size_t)D && strstr(e.msg, "nested deeper"),
            "a million nested objects are refused at level %d: %s", D + 1, e.msg);
    free(t);
}

static void test_duplicates(void) {
    duet_json_error e;
    duet_json *j = parse("{\"a\":1,\"b\":2,\"a\":3}", &e);
    int64_t f = -1, s = -1;
    T_CHECK(j && duet_json_find_duplicate(j, &f, &s) == 1 && f == 0 && s == 2,
            "small object: duplicate 'a' at 0 and 2");
    T_CHECK(j && duet_json_get_int(j, "a", 0) == 1, "get returns the first of duplicates");
    duet_json_free(j);
    j = parse("{\"a\\u0000b\":1,\"a\\u0000c\":2,\"a\":3}", &e);
    T_CHECK(j && duet_json_find_duplicate(j, &f, &s) == 0, "keys differing after a NUL are distinct");
    duet_json_free(j);
    /* large object: sorted path; the reported pair is the one a reader meets first */
    char *t = malloc(100 * 16 + 16);
    size_t at = 0;
    t[at++] = '{';
    for (int i = 0; i < 100; i++) {
        int k = i;
        if (i == 80) k = 37;       /* 37 == 80 */
        if (i == 90) k = 50;       /* 50 == 90 */
        if (i == 60 || i == 70) k = 10; /* 10 == 60 == 70 */
        at += (size_t)sprintf(t + at, "%s\"k%d\":%d", i ? "," : "", k, i);
    }
    t[at++] = '}';
    j = parse_n(t, at, &e);
    T_CHECK(j && duet_json_find_duplicate(j, &f, &s) == 1 && f == 10 && s == 60,
            "large object: first duplicate pair (10, 60), got (%lld, %lld)", (long long)f,
            (long long)s);
    duet_json_free(j);
    at = 0;
    t[at++] = '{';
    for (int i = 0; i < 100; i++) at += (size_t)sprintf(t + at, "%s\"k%d\":%d", i ? "," : "", i, i);
    t[at++] = '}';
    j = parse_n(t, at, &e);
    T_CHECK(j && duet_json_find_duplicate(j, &f, &s) == 0, "large object without duplicates");
    /* allocation failure in the sorted path */
    duet_allocator a = {counting_alloc, counting_free, NULL};
    duet_set_allocator(&a);
    alloc_count = 0, alloc_budget = 0;
    int r = j ? duet_json_find_duplicate(j, &f, &s) : 0;
    alloc_budget = -1;
    duet_set_allocator(NULL);
    T_CHECK(r == -1 && strstr(duet_last_error(), "out of memory"), "find_duplicate out of memory");
    duet_json_free(j);
    free(t);
    j = parse("[1]", &e);
    T_CHECK(duet_json_find_duplicate(j, &f, &s) == -1, "find_duplicate on an array is -1");
    duet_json_free(j);
}

static void test_escape(void) {
    const char *s = "a\"b\\c\n\x01\x1f\x7f \xc3\xa9/";
    char out[64];
    size_t n = duet_json_escape(out, sizeof out, s, strlen(s));
    const char *want = "\"a\\\"b\\\\c\\n\\u0001\\u001f\x7f \xc3\xa9/\"";
    T_CHECK(n == strlen(want) && strcmp(out, want) == 0, "escape: %s", out);
    char small[6];
    n = duet_json_escape(small, sizeof small, s, strlen(s));
    T_CHECK(n == strlen(want) && strcmp(small, "\"a\\\"b") == 0, "escape truncates like snprintf");
    T_CHECK(duet_json_escape(NULL, 0, "\t", 1) == 4, "escape measures with cap 0");
    char one[1] = {'x'};
    duet_json_escape(one, 1, "abc", 3);
    T_CHECK(one[0] == 0, "cap 1 gives an empty string");

    /* round trip: every byte 0..127 and some UTF-8, embedded NUL included */
    char in[200];
    size_t len = 0;
    for (int c = 0; c < 128; c++) in[len++] = (char)c;
    memcpy(in + len, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9);
    len += 9;
    char buf[1200];
    size_t m = duet_json_escape(buf, sizeof buf, in, len);
    duet_json_error e;
    duet_json *j = parse_n(buf, m, &e);
    T_CHECK(j && (size_t)j->len == len && memcmp(j->str, in, len) == 0,
            "parse(escape(s)) == s for all ASCII and UTF-8 (%s)", j ? "" : e.msg);
    duet_json_free(j);
}

static void test_nomem(void) {
    const char *text = "{\"a\": [1, 2, {\"b\": \"c\"}], \"d\": [[[]]]}";
    duet_allocator a = {counting_alloc, counting_free, NULL};
    int b, clean = 1;
    for (b = 0; b < 10; b++) {
        duet_set_allocator(&a);
        alloc_count = 0, alloc_budget = b;
        duet_json_error e;
        duet_json *j = parse(text, &e);
        alloc_budget = -1;
        duet_set_allocator(NULL);
        if (j) {
            duet_json_free(j);
            break;
        }
        if (e.status != DUET_ERR_NOMEM || !strstr(duet_last_error(), "out of memory")) clean = 0;
    }
    T_CHECK(clean && b == 2, "parse fails cleanly at each allocation point (%d: counts + document)", b);
    /* a long number needs a heap buffer too */
    char big[800];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = 0;
    big[5] = '.';
    /* allocations: pass 1 number buffer, counts, document, pass 2 number buffer */
    clean = 1;
    for (b = 0; b < 10; b++) {
        duet_set_allocator(&a);
        alloc_count = 0, alloc_budget = b;
        duet_json_error e;
        duet_json *j = parse(big, &e);
        alloc_budget = -1;
        duet_set_allocator(NULL);
        if (j) {
            clean &= j->num > 11111.0 && j->num < 11112.0;
            duet_json_free(j);
            break;
        }
        if (e.status != DUET_ERR_NOMEM) clean = 0;
    }
    T_CHECK(clean && b == 3, "long number: every allocation failure is clean, in both passes (%d)", b);
}

static uint64_t rng_state = 12345;
static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void test_fuzz(void) {
    /* every prefix of a rich document: no crash, error offsets within the text */
    const char *doc = "{\"k\\u00e9y\": [1, -2.5e-3, true, false, null, \"\\uD83D\\uDE00\\n\", "
                      "{\"x\": []}], \"y\": \"\xc3\xa9\"}";
    size_t n = strlen(doc);
    int bad = 0, accepted = 0;
    for (size_t len = 0; len <= n; len++) {
        duet_json_error e;
        duet_json *j = parse_n(doc, len, &e);
        if (j) accepted++;
        else if (e.offset > len) bad++;
        duet_json_free(j);
    }
    T_CHECK(bad == 0 && accepted == 1, "every prefix of a document: only the whole parses");
    /* random strings over JSON's alphabet */
    static const char alpha[] = "{}[],:\"\\u0123456789abcdefE+-. tnrl\xc3\xa9\x80\xff\n";
    char buf[64];
    bad = 0;
    accepted = 0;
    for (int it = 0; it < 30000; it++) {
        size_t len = (size_t)(next_u64() % sizeof buf);
        for (size_t i = 0; i < len; i++) buf[i] = alpha[next_u64() % (sizeof alpha - 1)];
        duet_json_error e;
        duet_json *j = parse_n(buf, len, &e);
        if (j) {
            accepted++;
            /* a parsed document is self-consistent */
            if (j->type > DUET_JSON_OBJECT || j->offset > len) bad++;
        } else if (e.offset > len || e.status != DUET_ERR_FORMAT) bad++;
        duet_json_free(j);
    }
    T_CHECK(bad == 0, "30000 random texts never crash; %d parsed", accepted);
    /* mutations of a valid document */
    char *m = malloc(n);
    bad = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(m, doc, n);
        int flips = 1 + (int)(next_u64() % 3);
        for (int k = 0; k < flips; k++) m[next_u64() % n] = alpha[next_u64() % (sizeof alpha - 1)];
        duet_json_error e;
        duet_json *j = parse_n(m, n, &e);
        if (!j && e.offset > n) bad++;
        duet_json_free(j);
    }
    free(m);
    T_CHECK(bad == 0, "20000 mutated documents never crash");
}

int main(void) {
    duet_init();
    test_scalars();
    test_nesting();
    test_strings();
    test_utf8();
    test_numbers();
    test_errors();
    test_depth();
    test_duplicates();
    test_escape();
    test_nomem();
    test_fuzz();
    return t_done();
}
