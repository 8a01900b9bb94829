/*
 * test_tokenizers_real.c — the tokenizers of real models and chat templates:
 *  - SentencePiece BPE (three synthetic vocabularies: with byte tokens and
 *    add_space_prefix, without the prefix, without byte tokens) and GPT-2
 *    byte-level BPE (pre-tokenizers gpt2, llama3, qwen2, smollm) against the
 *    independent Python references of tests/ref/gen_tokenizers_real.py
 *    (tokreal_spm.bin, tokreal_gpt2.bin): encodings with and without
 *    special-token parsing, pre-token boundaries, decodings, round trips;
 *  - small hand-worked cases from the algorithms' definitions (score order,
 *    leftmost ties, byte fallback, llama2.c's ' ' pieces, Unicode classes);
 *  - constructor errors;
 *  - chat templates: the published Jinja templates rendered by jinja2 as
 *    Hugging Face does (tokreal_chat.bin), plus hand-written expected strings
 *    from the templates' published formats.
 */
#include "testutil.h"
#include "tokenizer/bpe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* Fixture helpers                                                           */
/* ======================================================================== */

/* A list of byte strings: "<name>" holds the bytes 4 to an int32 word,
 * "<name>_off" (or off_name) the byte offsets. */
typedef struct strlist {
    const char *data;
    const int32_t *off;
    int64_t n;
} strlist;

static strlist get_list(t_fix *f, const char *name, const char *off_name) {
    strlist l = {0};
    char buf[96];
    if (!off_name) {
        snprintf(buf, sizeof buf, "%s_off", name);
        off_name = buf;
    }
    int64_t nw = 0, no = 0;
    l.data = (const char *)t_fix_i32(f, name, &nw);
    l.off = t_fix_i32(f, off_name, &no);
    l.n = no - 1;
    if (!l.off) l.n = 0;
    return l;
}

/* An id list: "<name>" ids, "<name>_off" offsets. */
typedef struct idlist {
    const int32_t *ids;
    const int32_t *off;
    int64_t n;
} idlist;

static idlist get_ids(t_fix *f, const char *name) {
    idlist l = {0};
    char buf[96];
    snprintf(buf, sizeof buf, "%s_off", name);
    int64_t ni = 0, no = 0;
    l.ids = t_fix_i32(f, name, &ni);
    l.off = t_fix_i32(f, buf, &no);
    l.n = l.off ? no - 1 : 0;
    return l;
}

/* A single string stored alone (zero-padded words): a new NUL-terminated copy. */
static char *get_str(t_fix *f, const char *name) {
    int64_t nw = 0;
    const int32_t *w = t_fix_i32(f, name, &nw);
    char *s = calloc((size_t)(4 * nw + 1), 1);
    if (w && nw) memcpy(s, w, (size_t)(4 * nw));
    return s;
}

static void hexdump(const char *what, const char *s, int64_t n) {
    fprintf(stderr, "    %s (%lld bytes): \"", what, (long long)n);
    for (int64_t i = 0; i < n && i < 120; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

static void dump_ids(const char *what, const int32_t *ids, int64_t n) {
    fprintf(stderr, "    %s (%lld):", what, (long long)n);
    for (int64_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Encodes into a fresh buffer (bound 6 * len + 8); *n gets the count. */
static int32_t *encode(const duet_tokenizer *t, const char *s, int64_t len, unsigned flags, int64_t *n) {
    int64_t cap = 6 * len + 8;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    *n = duet_tokenizer_encode(t, s, len, flags, ids, cap);
    return ids;
}

/* Compares encodings of every string with the reference; one check. Also
 * checks the documented bound on the count. */
static void check_encodings(const duet_tokenizer *t, const strlist *strs, const idlist *ref,
                            unsigned flags, int64_t bound_mul, int64_t bound_add, const char *what) {
    int64_t bad = 0, over = 0, first = -1;
    for (int64_t i = 0; i < strs->n && i < ref->n; i++) {
        const char *s = strs->data + strs->off[i];
        int64_t len = strs->off[i + 1] - strs->off[i], n;
        int32_t *ids = encode(t, s, len, flags, &n);
        int64_t rn = ref->off[i + 1] - ref->off[i];
        const int32_t *r = ref->ids + ref->off[i];
        if (n != rn || memcmp(ids, r, (size_t)n * sizeof *ids) != 0) {
            if (first < 0) {
                first = i;
                fprintf(stderr, "  %s: string %lld differs\n", what, (long long)i);
                hexdump("text", s, len);
                dump_ids("got ", ids, n);
                dump_ids("want", r, rn);
            }
            bad++;
        }
        if (n > bound_mul * len + bound_add) over++;
        free(ids);
    }
    T_CHECK(bad == 0 && strs->n == ref->n && strs->n > 0,
            "%s: %lld of %lld encodings differ from the Python reference", what, (long long)bad,
            (long long)strs->n);
    T_CHECK(over == 0, "%s: %lld encodings exceed the documented bound", what, (long long)over);
}

/* decode(ids) equals the reference bytes and the concatenated decode_piece
 * stream for every list; one check. */
static void check_decodings(const duet_tokenizer *t, const idlist *ids, const strlist *ref, const char *what) {
    int64_t bad = 0;
    for (int64_t i = 0; i < ids->n; i++) {
        const int32_t *p = ids->ids + ids->off[i];
        int64_t n = ids->off[i + 1] - ids->off[i];
        int64_t want = ref->off[i + 1] - ref->off[i];
        char *buf = malloc((size_t)want + 64), *stream = malloc((size_t)want + 64);
        int64_t got = duet_tokenizer_decode(t, p, n, buf, want + 64);
        int64_t sl = 0;
        for (int64_t k = 0; k < n; k++) {
            char piece[256];
            int64_t l = duet_tokenizer_decode_piece(t, k ? p[k - 1] : -1, p[k], piece, sizeof piece);
            if (l < 0 || sl + l > want + 64) {
                sl = -1;
                break;
            }
            memcpy(stream + sl, piece, (size_t)l);
            sl += l;
        }
        int ok = got == want && memcmp(buf, ref->data + ref->off[i], (size_t)want) == 0 && sl == got &&
                 memcmp(stream, buf, (size_t)got) == 0;
        if (!ok && bad++ == 0) {
            fprintf(stderr, "  %s: list %lld decodes wrong\n", what, (long long)i);
            if (got >= 0) hexdump("got ", buf, got);
            hexdump("want", ref->data + ref->off[i], want);
        }
        free(buf);
        free(stream);
    }
    T_CHECK(bad == 0 && ids->n > 0, "%s: %lld of %lld decodings wrong", what, (long long)bad, (long long)ids->n);
}

/* 1 when llama.cpp's character split (a lead byte's length, whatever
 * follows) makes a character of s[0..n) swallow a space: the space then
 * never becomes "▁" and SentencePiece cannot give it back. */
static int lead_swallows_space(const char *s, int64_t n) {
    static const int LEN[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    for (int64_t p = 0; p < n;) {
        int64_t l = LEN[(unsigned char)s[p] >> 4];
        for (int64_t k = 1; k < l && p + k < n; k++)
            if (s[p + k] == ' ') return 1;
        p += l;
    }
    return 0;
}

/* decode(encode(s)) == s for every string (with spm, skipping those holding
 * U+2581 or a space swallowed by a bad lead byte); one check. */
static void check_roundtrips(const duet_tokenizer *t, const strlist *strs, unsigned flags,
                             int spm, const char *what) {
    int64_t bad = 0, done = 0;
    for (int64_t i = 0; i < strs->n; i++) {
        const char *s = strs->data + strs->off[i];
        int64_t len = strs->off[i + 1] - strs->off[i], n;
        if (spm && (memmem(s, (size_t)len, "\xE2\x96\x81", 3) || lead_swallows_space(s, len))) continue;
        int32_t *ids = encode(t, s, len, flags, &n);
        char *back = malloc((size_t)len + 1);
        int64_t m = n >= 0 ? duet_tokenizer_decode(t, ids, n, back, len) : -1;
        if (!(m == len && memcmp(back, s, (size_t)len) == 0) && bad++ == 0) {
            fprintf(stderr, "  %s: string %lld does not round-trip\n", what, (long long)i);
            hexdump("text", s, len);
            if (m >= 0) hexdump("back", back, m < len ? m : len);
        }
        done++;
        free(ids);
        free(back);
    }
    T_CHECK(bad == 0 && done > 0, "%s: %lld of %lld strings do not round-trip", what, (long long)bad,
            (long long)done);
}

/* Vocabulary arrays from a fixture list: pointers into the list + lengths. */
typedef struct vocab_arrays {
    const char **tok;
    int64_t *len;
    int64_t n;
} vocab_arrays;

static vocab_arrays to_arrays(const strlist *l) {
    vocab_arrays a;
    a.n = l->n;
    a.tok = malloc((size_t)(l->n ? l->n : 1) * sizeof *a.tok);
    a.len = malloc((size_t)(l->n ? l->n : 1) * sizeof *a.len);
    for (int64_t i = 0; i < l->n; i++) {
        a.tok[i] = l->data + l->off[i];
        a.len[i] = l->off[i + 1] - l->off[i];
    }
    return a;
}

static void free_arrays(vocab_arrays *a) {
    free(a->tok);
    free(a->len);
}

/* ======================================================================== */
/* SentencePiece against the reference                                       */
/* ======================================================================== */

static void test_spm_reference(void) {
    t_fix *f = t_fix_load("tokreal_spm.bin");
    if (!f) return;
    strlist strs = get_list(f, "str_bytes", "str_off");
    const char *cfgs[3] = {"a", "b", "c"};
    for (int c = 0; c < 3; c++) {
        char name[64], off[64], what[96];
        snprintf(name, sizeof name, "%s_tok_bytes", cfgs[c]);
        snprintf(off, sizeof off, "%s_tok_off", cfgs[c]);
        strlist toks = get_list(f, name, off);
        vocab_arrays va = to_arrays(&toks);
        snprintf(name, sizeof name, "%s_scores", cfgs[c]);
        const float *scores = t_fix_f32(f, name, NULL);
        snprintf(name, sizeof name, "%s_types", cfgs[c]);
        const int32_t *types = t_fix_i32(f, name, NULL);
        snprintf(name, sizeof name, "%s_prefix", cfgs[c]);
        int prefix = (int)t_fix_scalar(f, name);
        duet_tokenizer_vocab v;
        duet_tokenizer_vocab_default(&v);
        v.n = va.n;
        v.tokens = va.tok;
        v.token_lens = va.len;
        v.scores = scores;
        v.types = types;
        v.unk = 0;
        v.bos = 1;
        v.eos = 2;
        v.add_space_prefix = prefix;
        duet_tokenizer *t = duet_tokenizer_new_spm(&v);
        T_CHECK(t != NULL, "spm config %s: constructor failed: %s", cfgs[c], duet_last_error());
        if (t) {
            T_CHECK(duet_tokenizer_get_kind(t) == DUET_TOKENIZER_SPM && duet_tokenizer_vocab_size(t) == va.n,
                    "spm config %s: kind and size", cfgs[c]);
            for (int sp = 0; sp < 2; sp++) {
                snprintf(name, sizeof name, "%s_enc%d", cfgs[c], sp);
                idlist ref = get_ids(f, name);
                snprintf(what, sizeof what, "spm %s (prefix %d)%s", cfgs[c], prefix, sp ? " +specials" : "");
                check_encodings(t, &strs, &ref, sp ? DUET_TOK_SPECIALS : 0, 6, 5, what);
                if (sp) {
                    snprintf(name, sizeof name, "%s_dec", cfgs[c]);
                    strlist dec = get_list(f, name, NULL);
                    check_decodings(t, &ref, &dec, what);
                }
                /* without byte tokens unknown characters become unk: no round trip */
                if (c != 2) check_roundtrips(t, &strs, sp ? DUET_TOK_SPECIALS : 0, 1, what);
            }
            /* BOS/EOS flags wrap the same ids; a short buffer gets a prefix */
            const char *s = "Hello world";
            int64_t n0, n1;
            int32_t *a = encode(t, s, 11, 0, &n0);
            int32_t *b = encode(t, s, 11, DUET_TOK_ADD_BOS | DUET_TOK_ADD_EOS, &n1);
            T_CHECK(n1 == n0 + 2 && b[0] == 1 && b[n1 - 1] == 2 && memcmp(a, b + 1, (size_t)n0 * 4) == 0,
                    "spm %s: ADD_BOS/ADD_EOS wrap the plain ids", cfgs[c]);
            int32_t small[2] = {-7, -7};
            int64_t ns = duet_tokenizer_encode(t, s, 11, 0, small, 1);
            T_CHECK(ns == n0 && small[0] == a[0] && small[1] == -7, "spm %s: cap 1 writes one id, returns %lld",
                    cfgs[c], (long long)ns);
            free(a);
            free(b);
        }
        duet_tokenizer_free(t);
        free_arrays(&va);
    }
    t_fix_free(f);
}

/* ======================================================================== */
/* GPT-2 byte-level BPE against the reference                                */
/* ======================================================================== */

static duet_tokenizer *gpt2_from_fixture(t_fix *f, const char *pre, int ignore_merges, vocab_arrays *va,
                                         vocab_arrays *ma) {
    strlist toks = get_list(f, "tok_bytes", "tok_off");
    strlist merges = get_list(f, "merge_bytes", "merge_off");
    *va = to_arrays(&toks);
    *ma = to_arrays(&merges);
    duet_tokenizer_vocab v;
    duet_tokenizer_vocab_default(&v);
    v.n = va->n;
    v.tokens = va->tok;
    v.token_lens = va->len;
    v.types = t_fix_i32(f, "types", NULL);
    v.merges = ma->tok;
    v.merge_lens = ma->len;
    v.n_merges = ma->n;
    v.pre = pre;
    v.ignore_merges = ignore_merges;
    v.bos = (int32_t)va->n - 6; /* <|begin_of_text|> */
    v.eos = (int32_t)va->n - 5;
    return duet_tokenizer_new_gpt2(&v);
}

static void test_gpt2_reference(void) {
    t_fix *f = t_fix_load("tokreal_gpt2.bin");
    if (!f) return;
    strlist strs = get_list(f, "str_bytes", "str_off");
    const char *pres[4] = {"gpt2", "llama3", "qwen2", "smollm"};
    for (int k = 0; k < 4; k++) {
        char name[64], what[96];
        /* pre-token boundaries */
        snprintf(name, sizeof name, "%s_ends", pres[k]);
        idlist ends = get_ids(f, name);
        int64_t bad = 0;
        for (int64_t i = 0; i < strs.n && i < ends.n; i++) {
            const unsigned char *s = (const unsigned char *)strs.data + strs.off[i];
            int64_t len = strs.off[i + 1] - strs.off[i], p = 0, j = ends.off[i];
            int ok = 1;
            while (p < len) {
                p = duet_gpt2_pretoken_end(pres[k], s, len, p);
                if (j >= ends.off[i + 1] || ends.ids[j] != p) {
                    ok = 0;
                    break;
                }
                j++;
            }
            ok = ok && j == ends.off[i + 1];
            if (!ok && bad++ == 0) {
                fprintf(stderr, "  pre-tokenizer %s: string %lld splits differently\n", pres[k], (long long)i);
                hexdump("text", (const char *)s, len);
                dump_ids("want ends", ends.ids + ends.off[i], ends.off[i + 1] - ends.off[i]);
            }
        }
        T_CHECK(bad == 0 && ends.n == strs.n, "pre-tokenizer %s: %lld of %lld strings split differently "
                "from Python's re", pres[k], (long long)bad, (long long)strs.n);
        /* encodings */
        vocab_arrays va, ma;
        duet_tokenizer *t = gpt2_from_fixture(f, pres[k], -1, &va, &ma);
        T_CHECK(t != NULL, "gpt2 %s: constructor failed: %s", pres[k], duet_last_error());
        if (t) {
            T_CHECK(duet_tokenizer_get_kind(t) == DUET_TOKENIZER_GPT2 && duet_tokenizer_n_merges(t) == ma.n,
                    "gpt2 %s: kind and merges", pres[k]);
            for (int sp = 0; sp < 2; sp++) {
                snprintf(name, sizeof name, "%s_enc%d", pres[k], sp);
                idlist ref = get_ids(f, name);
                snprintf(what, sizeof what, "gpt2 %s%s", pres[k], sp ? " +specials" : "");
                check_encodings(t, &strs, &ref, sp ? DUET_TOK_SPECIALS : 0, 1, 2, what);
                check_roundtrips(t, &strs, sp ? DUET_TOK_SPECIALS : 0, 0, what);
            }
        }
        duet_tokenizer_free(t);
        free_arrays(&va);
        free_arrays(&ma);
    }
    /* Llama 3 with ignore_merges off gives the other reference, and the two
     * references differ (so the switch is tested) */
    vocab_arrays va, ma;
    duet_tokenizer *t = gpt2_from_fixture(f, "llama3", 0, &va, &ma);
    idlist on = get_ids(f, "llama3_enc0"), off = get_ids(f, "llama3nomi_enc0");
    if (t) check_encodings(t, &strs, &off, 0, 1, 2, "gpt2 llama3 ignore_merges=0");
    int differ = on.off && off.off && (on.off[on.n] != off.off[off.n] ||
                                       memcmp(on.ids, off.ids, (size_t)on.off[on.n] * 4) != 0);
    T_CHECK(differ, "the ignore_merges references differ somewhere");
    duet_tokenizer_free(t);
    free_arrays(&va);
    free_arrays(&ma);
    t_fix_free(f);
}

/* ======================================================================== */
/* Hand-worked cases                                                         */
/* ======================================================================== */

/* A small SentencePiece vocabulary: <unk> <s> </s>, pieces 3.., then the 256
 * byte tokens. */
#define HW_PIECES 9
static const char *const HW_TOK[3 + HW_PIECES] = {
    "<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "c", "\xE2\x96\x81" "a", "ab", "bc", "abc", "\xE2\x96\x81" "ab",
};

static duet_tokenizer *hw_spm(float score_lower_a, float score_bc, int prefix) {
    const int64_t V = 3 + HW_PIECES + 256;
    static char bytes[256][8];
    const char *tok[3 + HW_PIECES + 256];
    float sc[3 + HW_PIECES + 256];
    int32_t ty[3 + HW_PIECES + 256];
    /* scores: ▁a and bc given, ab -1, abc -5, ▁ab -4; chars and bytes 0 */
    const float piece_score[HW_PIECES] = {0, 0, 0, 0, score_lower_a, -1, score_bc, -5, -4};
    for (int i = 0; i < 3 + HW_PIECES; i++) {
        tok[i] = HW_TOK[i];
        sc[i] = i < 3 ? 0.0f : piece_score[i - 3];
        ty[i] = i == 0 ? DUET_TOKEN_UNKNOWN : i < 3 ? DUET_TOKEN_CONTROL : DUET_TOKEN_NORMAL;
    }
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tok[3 + HW_PIECES + b] = bytes[b];
        sc[3 + HW_PIECES + b] = 0;
        ty[3 + HW_PIECES + b] = DUET_TOKEN_BYTE;
    }
    duet_tokenizer_vocab v;
    duet_tokenizer_vocab_default(&v);
    v.n = V;
    v.tokens = tok;
    v.scores = sc;
    v.types = ty;
    v.unk = 0;
    v.bos = 1;
    v.eos = 2;
    v.add_space_prefix = prefix;
    v.add_bos = 1;
    return duet_tokenizer_new_spm(&v);
}

static int ids_are(const duet_tokenizer *t, const char *s, unsigned flags, const int32_t *want, int64_t nw) {
    int64_t n;
    int32_t *ids = encode(t, s, (int64_t)strlen(s), flags, &n);
    int ok = n == nw && memcmp(ids, want, (size_t)nw * sizeof *ids) == 0;
    if (!ok) {
        hexdump("text", s, (int64_t)strlen(s));
        dump_ids("got ", ids, n);
        dump_ids("want", want, nw);
    }
    free(ids);
    return ok;
}

static void test_spm_hand(void) {
    const int B = 3 + HW_PIECES; /* id of byte token 0x00 */
    /* "▁abc": pairs ▁a(-3) ab(-1) bc(-2): ab first; then ▁ab(-4) beats abc(-5) */
    duet_tokenizer *t = hw_spm(-3.0f, -2.0f, 1);
    T_CHECK(t != NULL, "hand spm: %s", duet_last_error());
    if (!t) return;
    T_CHECK(ids_are(t, "abc", 0, (const int32_t[]){11, 6}, 2), "spm: highest score first (ab, then ▁ab)");
    /* é is no piece: its two bytes */
    T_CHECK(ids_are(t, "a\xC3\xA9", 0, (const int32_t[]){7, B + 0xC3, B + 0xA9}, 3), "spm: byte fallback");
    /* a space in the text is a ▁; specials get a prefix after them */
    T_CHECK(ids_are(t, "a a", 0, (const int32_t[]){7, 7}, 2), "spm: spaces are ▁");
    T_CHECK(ids_are(t, "a<s>a", DUET_TOK_SPECIALS, (const int32_t[]){7, 1, 7}, 3), "spm: ▁ after a special");
    T_CHECK(ids_are(t, "a<s>a", 0, (const int32_t[]){7, B + '<', B + 's', B + '>', 4}, 5),
            "spm: without DUET_TOK_SPECIALS <s> is text");
    T_CHECK(ids_are(t, "", DUET_TOK_ADD_BOS, (const int32_t[]){1}, 1), "spm: empty text + BOS is [BOS]");
    T_CHECK(duet_tokenizer_default_flags(t) == DUET_TOK_ADD_BOS, "spm: default flags from add_bos");
    /* decoding */
    const int32_t seq[] = {1, 7, B + 0xC3, B + 0xA9, 1, 7, 3, 4};
    char buf[64];
    int64_t n = duet_tokenizer_decode(t, seq, 8, buf, sizeof buf);
    T_CHECK(n == 12 && memcmp(buf, "<s>a\xC3\xA9<s>a a", 12) == 0, "spm: decode strips the prefix after BOS "
            "only (%lld)", (long long)n);
    n = duet_tokenizer_decode_one(t, 7, buf, sizeof buf);
    T_CHECK(n == 2 && memcmp(buf, " a", 2) == 0, "spm: decode_one keeps the space");
    T_CHECK(duet_tokenizer_decode_piece(t, -1, 7, buf, sizeof buf) == 1 && buf[0] == 'a' &&
            duet_tokenizer_decode_piece(t, 4, 7, buf, sizeof buf) == 2 &&
            duet_tokenizer_decode_piece(t, 1, 7, buf, sizeof buf) == 1,
            "spm: decode_piece drops the space at the start and after BOS only");
    T_CHECK(duet_tokenizer_decode_piece(t, -1, 99999, buf, sizeof buf) == -1, "spm: decode_piece bad id");
    int64_t len;
    const char *s7 = duet_tokenizer_id_to_token(t, 7, &len);
    T_CHECK(s7 && len == 2 && memcmp(s7, " a", 2) == 0 && duet_tokenizer_token_to_id(t, " a", 2) == 7 &&
            duet_tokenizer_token_to_id(t, "a", 1) == 4, "spm: id_to_token / token_to_id use decoded bytes");
    T_CHECK(duet_tokenizer_token_type(t, B + 5) == DUET_TOKEN_BYTE && duet_tokenizer_token_type(t, 1) ==
            DUET_TOKEN_CONTROL && duet_tokenizer_token_type(t, 0) == DUET_TOKEN_UNKNOWN &&
            duet_tokenizer_token_type(t, 4) == DUET_TOKEN_NORMAL && duet_tokenizer_token_type(t, -1) ==
            DUET_TOKEN_UNDEFINED, "spm: token types");
    T_CHECK(duet_tokenizer_unk(t) == 0 && duet_tokenizer_bos(t) == 1 && duet_tokenizer_eos(t) == 2,
            "spm: special ids");
    T_CHECK(duet_tokenizer_save(t, "/tmp/duet_spm_never.json") == DUET_ERR_UNSUPPORTED,
            "spm: save is unsupported");
    duet_tokenizer_free(t);
    /* ▁a at -0.5 beats ab: ▁a, then bc, then ▁abc is no piece */
    t = hw_spm(-0.5f, -2.0f, 1);
    T_CHECK(t && ids_are(t, "abc", 0, (const int32_t[]){7, 9}, 2), "spm: a higher score changes the order");
    duet_tokenizer_free(t);
    /* ab and bc tie at -1: the leftmost (ab) goes first, then ▁ab; with bc
     * just above ab, bc goes first, then ▁a */
    t = hw_spm(-3.0f, -1.0f, 1);
    T_CHECK(t && ids_are(t, "abc", 0, (const int32_t[]){11, 6}, 2), "spm: ties go to the leftmost pair");
    duet_tokenizer_free(t);
    t = hw_spm(-3.0f, -0.5f, 1);
    T_CHECK(t && ids_are(t, "abc", 0, (const int32_t[]){7, 9}, 2), "spm: bc above ab goes first");
    duet_tokenizer_free(t);
    /* no prefix: a b c -> ab c -> abc */
    t = hw_spm(-3.0f, -2.0f, 0);
    T_CHECK(t && ids_are(t, "abc", 0, (const int32_t[]){10}, 1), "spm: without add_space_prefix");
    /* invalid UTF-8: a lead byte takes its length from itself (llama.cpp) */
    T_CHECK(t && ids_are(t, "\xE4" "ab", 0, (const int32_t[]){B + 0xE4, B + 'a', B + 'b'}, 3),
            "spm: a 3-byte lead swallows the next two bytes");
    duet_tokenizer_free(t);
}

/* llama2.c's tokenizer.bin: ' ' instead of ▁, "\n<s>\n", no types */
static void test_spm_llama2c(void) {
    static char bytes[256][8];
    const char *fixed[] = {"<unk>", "\n<s>\n", "\n</s>\n"};
    const char *pieces[] = {" ", "h", "e", "l", "o", "w", "r", "d", " h", " he", " hel", " hell", " hello",
                            " w", " wo", " wor", " worl", " world"};
    const float pscore[] = {0, 0, 0, 0, 0, 0, 0, 0, 10, 9, 8, 7, 6, 10, 9, 8, 7, 6};
    const int NP = (int)(sizeof pieces / sizeof pieces[0]);
    const char *tok[3 + 256 + 32];
    float sc[3 + 256 + 32];
    int64_t V = 0;
    for (int i = 0; i < 3; i++) tok[V] = fixed[i], sc[V++] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tok[V] = bytes[b];
        sc[V++] = 0;
    }
    for (int i = 0; i < NP; i++) tok[V] = pieces[i], sc[V++] = pscore[i];
    duet_tokenizer_vocab v;
    duet_tokenizer_vocab_default(&v);
    v.n = V;
    v.tokens = tok;
    v.scores = sc;
    v.unk = 0;
    v.bos = 1;
    v.eos = 2;
    v.ascii_space = 1;
    duet_tokenizer *t = duet_tokenizer_new_spm(&v);
    T_CHECK(t != NULL, "llama2.c vocab: %s", duet_last_error());
    if (!t) return;
    const int P = 3 + 256; /* first piece id */
    T_CHECK(ids_are(t, "hello world", DUET_TOK_ADD_BOS, (const int32_t[]){1, P + 12, P + 17}, 3),
            "llama2.c vocab: hello world");
    T_CHECK(ids_are(t, "hi", 0, (const int32_t[]){P + 8, 3 + 'i'}, 2), "llama2.c vocab: i by its byte token");
    T_CHECK(duet_tokenizer_token_type(t, 3 + 'i') == DUET_TOKEN_BYTE && duet_tokenizer_token_type(t, 1) ==
            DUET_TOKEN_CONTROL && duet_tokenizer_token_type(t, 0) == DUET_TOKEN_UNKNOWN,
            "llama2.c vocab: types inferred");
    const int32_t seq[] = {P + 12, P + 17};
    char buf[32];
    int64_t n = duet_tokenizer_decode(t, seq, 2, buf, sizeof buf);
    T_CHECK(n == 11 && memcmp(buf, "hello world", 11) == 0, "llama2.c vocab: decode");
    duet_tokenizer_free(t);
}

/* GPT-2's bytes_to_unicode (the spec): the UTF-8 of byte b's character. */
static int bl_char(int b, char *out) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    int cp = b;
    if (!printable) {
        int k = 0;
        for (int x = 0; x < b; x++)
            k += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

typedef struct pre_case {
    const char *pre, *text;
    const char *pieces[12];
} pre_case;

static void test_gpt2_hand(void) {
    /* pre-tokenizers: splits worked out from the patterns */
    static const pre_case cases[] = {
        {"llama3", "12 345 6789", {"12", " ", "345", " ", "678", "9"}},
        {"llama3", "Hello\n\n\nworld", {"Hello", "\n\n\n", "world"}},
        {"llama3", "DON'T go", {"DON", "'T", " go"}},
        {"llama3", "  x\t\ty", {" ", " x", "\t", "\ty"}},
        {"llama3", "a...\n\nb", {"a", "...\n\n", "b"}},
        {"gpt2", "I'm  ok", {"I", "'m", " ", " ok"}},
        {"gpt2", "DON'T", {"DON", "'", "T"}},
        {"gpt2", "x  \n", {"x", "  \n"}},
        {"qwen2", "x123", {"x", "1", "2", "3"}},
        {"smollm", "a 12", {"a", " ", "1", "2"}},
        {"gpt2", "caf\xC3\xA9 \xE2\x82\xAC" "5", {"caf\xC3\xA9", " \xE2\x82\xAC", "5"}},
        {"llama3", "\xE6\x97\xA5\xE6\x9C\xAC\xE3\x80\x80x", {"\xE6\x97\xA5\xE6\x9C\xAC", "\xE3\x80\x80x"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const unsigned char *s = (const unsigned char *)cases[c].text;
        int64_t n = (int64_t)strlen(cases[c].text), p = 0;
        int k = 0, ok = 1;
        while (p < n && ok) {
            int64_t q = duet_gpt2_pretoken_end(cases[c].pre, s, n, p);
            const char *w = cases[c].pieces[k++];
            ok = w && q - p == (int64_t)strlen(w) && memcmp(s + p, w, (size_t)(q - p)) == 0;
            p = q;
        }
        T_CHECK(ok && cases[c].pieces[k] == NULL, "pre-tokenizer %s splits case %zu as worked out",
                cases[c].pre, c);
    }
    T_CHECK(duet_gpt2_pretoken_end("nope", (const unsigned char *)"x", 1, 0) == -1, "unknown pre name");

    /* a tiny vocabulary: the 256 bytes in byte order, merges "h e" "he l" "l o"... */
    char chars[256][3];
    const char *tok[300];
    int64_t lens[300];
    int32_t types[300];
    int64_t V = 0;
    for (int b = 0; b < 256; b++) {
        lens[V] = bl_char(b, chars[b]);
        tok[V] = chars[b];
        types[V++] = DUET_TOKEN_NORMAL;
    }
    const char *more[] = {"he", "ll", "llo", "hello", "\xC4\xA0hello", "<|eot|>"}; /* Ġhello: " hello" */
    for (int i = 0; i < 6; i++) {
        tok[V] = more[i];
        lens[V] = (int64_t)strlen(more[i]);
        types[V++] = i == 5 ? DUET_TOKEN_CONTROL : DUET_TOKEN_NORMAL;
    }
    const char *merges[] = {"h e", "l l", "ll o", "he llo", "\xC4\xA0 hello"};
    duet_tokenizer_vocab v;
    duet_tokenizer_vocab_default(&v);
    v.n = V;
    v.tokens = tok;
    v.token_lens = lens;
    v.types = types;
    v.merges = merges;
    v.n_merges = 5;
    v.pre = "llama3";
    v.eos = (int32_t)V - 1;
    duet_tokenizer *t = duet_tokenizer_new_gpt2(&v);
    T_CHECK(t != NULL, "tiny gpt2: %s", duet_last_error());
    if (t) {
        T_CHECK(ids_are(t, "hello hello", 0, (const int32_t[]){259, 260}, 2), "tiny gpt2: merges by rank");
        T_CHECK(ids_are(t, "hello<|eot|>", DUET_TOK_SPECIALS | DUET_TOK_ADD_EOS,
                        (const int32_t[]){259, 261, 261}, 3), "tiny gpt2: special + EOS");
        T_CHECK(ids_are(t, "\xFF", 0, (const int32_t[]){255}, 1), "tiny gpt2: a lone byte is its byte id");
        char buf[32];
        T_CHECK(duet_tokenizer_decode_piece(t, 259, 260, buf, sizeof buf) == 6 && memcmp(buf, " hello", 6) == 0 &&
                duet_tokenizer_decode_one(t, 261, buf, sizeof buf) == 7, "tiny gpt2: decode keeps spaces and specials");
        T_CHECK(duet_tokenizer_token_to_id(t, " hello", 6) == 260 && duet_tokenizer_token_type(t, 261) ==
                DUET_TOKEN_CONTROL, "tiny gpt2: lookups");
    }
    duet_tokenizer_free(t);
}

/* Unicode classes from the tables against the Unicode categories. */
static void test_unicode(void) {
    struct { uint32_t cp; int cls; } cs[] = {
        {'a', DUET_UCD_LETTER},   {'Z', DUET_UCD_LETTER},   {'5', DUET_UCD_NUMBER},   {' ', DUET_UCD_SPACE},
        {'\n', DUET_UCD_SPACE},   {'_', DUET_UCD_OTHER},    {0xDF, DUET_UCD_LETTER},  /* ß Ll */
        {0xAA, DUET_UCD_LETTER},  /* ª Lo */                {0xB2, DUET_UCD_NUMBER},  /* ² No */
        {0xBD, DUET_UCD_NUMBER},  /* ½ No */                {0xA0, DUET_UCD_SPACE},   /* NBSP */
        {0x85, DUET_UCD_SPACE},   /* NEL */                 {0x1C, DUET_UCD_OTHER},   /* not White_Space */
        {0x0663, DUET_UCD_NUMBER}, /* Arabic-Indic 3 Nd */  {0x0301, DUET_UCD_OTHER}, /* combining Mn */
        {0x216B, DUET_UCD_NUMBER}, /* Ⅻ Nl */               {0x3000, DUET_UCD_SPACE},
        {0x4E2D, DUET_UCD_LETTER}, /* 中 Lo */              {0xAC00, DUET_UCD_LETTER}, /* 가 Lo */
        {0x20AC, DUET_UCD_OTHER},  /* € Sc */               {0x1F600, DUET_UCD_OTHER}, /* 😀 So */
        {0x2028, DUET_UCD_SPACE},  {0x200B, DUET_UCD_OTHER}, /* zero width space is Cf */
        {0x10400, DUET_UCD_LETTER}, /* Deseret Lu */        {0x1D7CE, DUET_UCD_NUMBER}, /* math digit Nd */
        {0x10FFFF, DUET_UCD_OTHER},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        if (duet_ucd_class(cs[i].cp) != cs[i].cls) {
            if (!bad) fprintf(stderr, "  U+%04X: class %d, want %d\n", cs[i].cp, duet_ucd_class(cs[i].cp), cs[i].cls);
            bad++;
        }
    T_CHECK(bad == 0, "Unicode classes: %d wrong", bad);
    /* the table is sorted and disjoint */
    int sorted = 1;
    for (int64_t i = 0; i < duet_ucd_n_ranges; i++) {
        if (duet_ucd_ranges[i].first > duet_ucd_ranges[i].last) sorted = 0;
        if (i && duet_ucd_ranges[i].first <= duet_ucd_ranges[i - 1].last) sorted = 0;
    }
    T_CHECK(sorted && duet_ucd_n_ranges > 500, "Unicode table sorted and disjoint (%lld ranges)",
            (long long)duet_ucd_n_ranges);
    /* UTF-8 stepping: RFC 3629 */
    struct { const char *s; int len; uint32_t cp; } us[] = {
        {"A", 1, 'A'},           {"\xC3\xA9", 2, 0xE9},    {"\xE2\x82\xAC", 3, 0x20AC}, {"\xF0\x9F\x98\x80", 4, 0x1F600},
        {"\xC0\xAF", 1, ~0u},    {"\xE0\x80\xAF", 1, ~0u}, {"\xED\xA0\x80", 1, ~0u},    {"\xF4\x90\x80\x80", 1, ~0u},
        {"\x80", 1, ~0u},        {"\xC3", 1, ~0u},         {"\xE2\x82", 1, ~0u},        {"\xF8\x88\x80\x80", 1, ~0u},
    };
    bad = 0;
    for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
        uint32_t cp = 0;
        int len = duet_utf8_next((const unsigned char *)us[i].s, (int64_t)strlen(us[i].s), 0, &cp);
        bad += len != us[i].len || cp != us[i].cp;
    }
    T_CHECK(bad == 0, "UTF-8 stepping: %d wrong", bad);
}

/* ======================================================================== */
/* Constructor errors                                                        */
/* ======================================================================== */

static int err_has(const char *needle) {
    int ok = strstr(duet_last_error(), needle) != NULL;
    if (!ok) fprintf(stderr, "  error \"%s\" lacks \"%s\"\n", duet_last_error(), needle);
    return ok;
}

static void test_errors(void) {
    const char *tok[4] = {"<unk>", "a", "abc", "b"};
    int32_t ty[4] = {DUET_TOKEN_UNKNOWN, DUET_TOKEN_NORMAL, DUET_TOKEN_BYTE, DUET_TOKEN_NORMAL};
    float sc[4] = {0, 0, 0, 0};
    duet_tokenizer_vocab v;
    duet_tokenizer_vocab_default(&v);
    v.n = 4;
    v.tokens = tok;
    v.types = ty;
    v.scores = sc;
    v.unk = 0;
    T_CHECK(!duet_tokenizer_new_spm(&v) && err_has("token 2") && err_has("BYTE"), "spm: BYTE token not <0xXX>");
    ty[2] = DUET_TOKEN_NORMAL;
    sc[3] = NAN;
    T_CHECK(!duet_tokenizer_new_spm(&v) && err_has("NaN"), "spm: NaN score");
    sc[3] = 0;
    ty[1] = 9;
    T_CHECK(!duet_tokenizer_new_spm(&v) && err_has("type 9"), "spm: bad type");
    ty[1] = DUET_TOKEN_NORMAL;
    v.bos = 4;
    T_CHECK(!duet_tokenizer_new_spm(&v) && err_has("bos id 4"), "spm: bos out of range");
    v.bos = -1;
    v.unk = -1;
    T_CHECK(!duet_tokenizer_new_spm(&v) && err_has("byte 0x00"), "spm: a byte nothing encodes");
    v.unk = 0;
    duet_tokenizer *t = duet_tokenizer_new_spm(&v);
    T_CHECK(t != NULL, "spm: unk as the byte fallback is fine");
    if (t) {
        int64_t n;
        int32_t *ids = encode(t, "ax", 2, 0, &n); /* no ▁ piece, no x: unk for each byte */
        T_CHECK(n == 5 && ids[0] == 0 && ids[3] == 1 && ids[4] == 0, "spm: unk fallback per byte (%lld)", (long long)n);
        free(ids);
    }
    duet_tokenizer_free(t);
    v.n = 0;
    T_CHECK(!duet_tokenizer_new_spm(&v) && err_has("1..2^30"), "spm: empty vocabulary");

    /* gpt2 */
    char chars[256][3];
    const char *gt[260];
    int64_t gl[260];
    for (int b = 0; b < 256; b++) {
        gl[b] = bl_char(b, chars[b]);
        gt[b] = chars[b];
    }
    gt[256] = "ab";
    gl[256] = 2;
    const char *merges[1] = {"a b"};
    duet_tokenizer_vocab g;
    duet_tokenizer_vocab_default(&g);
    g.n = 257;
    g.tokens = gt;
    g.token_lens = gl;
    g.merges = merges;
    g.n_merges = 1;
    g.pre = "deepseek-llm";
    T_CHECK(!duet_tokenizer_new_gpt2(&g) && err_has("not one duet knows") && err_has("llama3"),
            "gpt2: unknown pre-tokenizer");
    g.pre = "gpt2";
    t = duet_tokenizer_new_gpt2(&g);
    T_CHECK(t != NULL, "gpt2: minimal vocabulary: %s", duet_last_error());
    duet_tokenizer_free(t);
    merges[0] = "ab";
    T_CHECK(!duet_tokenizer_new_gpt2(&g) && err_has("merge 0") && err_has("left right"), "gpt2: merge without space");
    merges[0] = "a zz";
    T_CHECK(!duet_tokenizer_new_gpt2(&g) && err_has("\"zz\" is not"), "gpt2: merge of an unknown token");
    merges[0] = "b a";
    T_CHECK(!duet_tokenizer_new_gpt2(&g) && err_has("makes a token"), "gpt2: merge making no token");
    merges[0] = "a b";
    gt[0x41] = "zz"; /* byte 'A' has no token now */
    T_CHECK(!duet_tokenizer_new_gpt2(&g) && err_has("byte 0x41"), "gpt2: a byte without a token");
    gt[0x41] = chars[0x41];
    g.eos = 300;
    T_CHECK(!duet_tokenizer_new_gpt2(&g) && err_has("eos id 300"), "gpt2: eos out of range");
}

/* ======================================================================== */
/* Chat templates                                                            */
/* ======================================================================== */

/* Renders into a fresh string (NULL when render fails). */
static char *render(const duet_chat_template *c, const duet_chat_message *m, int64_t n, int gen) {
    int64_t need = duet_chat_template_render(c, m, n, gen, NULL, 0);
    if (need < 0) return NULL;
    char *buf = malloc((size_t)need + 1);
    int64_t again = duet_chat_template_render(c, m, n, gen, buf, need + 1);
    if (again != need) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int same_text(const char *got, const char *want, const char *what) {
    int ok = got && strcmp(got, want) == 0;
    if (!ok) {
        fprintf(stderr, "  %s:\n", what);
        if (got) hexdump("got ", got, (int64_t)strlen(got));
        hexdump("want", want, (int64_t)strlen(want));
    }
    return ok;
}

static void test_chat_reference(void) {
    t_fix *f = t_fix_load("tokreal_chat.bin");
    if (!f) return;
    int nconv = (int)t_fix_scalar(f, "n_conv"), ntpl = (int)t_fix_scalar(f, "n_tpl");
    duet_chat_message conv[8][8];
    char *texts[8][8][2];
    int nmsg[8];
    char name[96];
    for (int c = 0; c < nconv && c < 8; c++) {
        snprintf(name, sizeof name, "conv_%d_n", c);
        nmsg[c] = (int)t_fix_scalar(f, name);
        for (int k = 0; k < nmsg[c] && k < 8; k++) {
            snprintf(name, sizeof name, "conv_%d_%d_role", c, k);
            texts[c][k][0] = get_str(f, name);
            snprintf(name, sizeof name, "conv_%d_%d_content", c, k);
            texts[c][k][1] = get_str(f, name);
            conv[c][k].role = texts[c][k][0];
            conv[c][k].content = texts[c][k][1];
        }
    }
    int renders = 0;
    for (int i = 0; i < ntpl; i++) {
        char key[64];
        snprintf(key, sizeof key, "tpl_%d", i);
        char *tpl = get_str(f, key);
        snprintf(key, sizeof key, "name_%d", i);
        char *want_name = get_str(f, key);
        snprintf(key, sizeof key, "bos_%d", i);
        char *bos = get_str(f, key);
        snprintf(key, sizeof key, "eos_%d", i);
        char *eos = get_str(f, key);
        snprintf(key, sizeof key, "hasbos_%d", i);
        const int32_t *has = t_fix_i32(f, key, NULL);
        duet_chat_template *c = duet_chat_template_detect(tpl, has && has[0] ? bos : NULL, has && has[1] ? eos : NULL);
        if (!want_name[0]) {
            T_CHECK(c == NULL && err_has("not recognised") && err_has("chatml"),
                    "template %d: not recognised, and the error names the fallback", i);
        } else {
            T_CHECK(c && strcmp(duet_chat_template_name(c), want_name) == 0, "template %d detected as %s (got %s)",
                    i, want_name, c ? duet_chat_template_name(c) : duet_last_error());
        }
        for (int cv = 0; c && cv < nconv; cv++) {
            for (int g = 0; g < 2; g++) {
                snprintf(key, sizeof key, "out_%d_%d_%d", i, cv, g);
                int fam_merges_system = !strcmp(want_name, "gemma") || !strcmp(want_name, "mistral");
                char *got = render(c, conv[cv], nmsg[cv], g);
                if (t_fix_has(f, key)) {
                    char *want = get_str(f, key);
                    char what[96];
                    snprintf(what, sizeof what, "template %d (%s), conversation %d, generation prompt %d", i,
                             want_name, cv, g);
                    T_CHECK(same_text(got, want, what), "%s renders as jinja2 does", what);
                    free(want);
                    renders++;
                } else if (!(fam_merges_system && !strcmp(conv[cv][0].role, "system"))) {
                    /* the template raises: so does render (the system merge of
                     * gemma/mistral is checked by hand below) */
                    T_CHECK(got == NULL && err_has("alternate"), "template %d conversation %d: rejected", i, cv);
                }
                free(got);
            }
        }
        duet_chat_template_free(c);
        free(tpl);
        free(want_name);
        free(bos);
        free(eos);
    }
    T_CHECK(renders >= 60, "chat: %d renderings compared", renders);
    for (int c = 0; c < nconv && c < 8; c++)
        for (int k = 0; k < nmsg[c] && k < 8; k++) free(texts[c][k][0]), free(texts[c][k][1]);
    t_fix_free(f);
}

/* The conversation of llama.cpp's tests/test-chat-template.cpp. */
static const duet_chat_message CONV[] = {
    {"system", "You are a helpful assistant"}, {"user", "Hello"},     {"assistant", "Hi there"},
    {"user", "Who are you"},                   {"assistant", "   I am an assistant   "}, {"user", "Another question"},
};

static void test_chat_hand(void) {
    /* expected strings written from each template's published format */
    static const struct {
        const char *name, *want;
    } cases[] = {
        {"chatml", "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                   "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
                   "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question"
                   "<|im_end|>\n<|im_start|>assistant\n"},
        {"llama3", "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant"
                   "<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you"
                   "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>"
                   "assistant<|end_header_id|>\n\n"},
        {"llama2", "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
                   "<s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]"},
        /* the system message joins the first user message, as llama.cpp does */
        {"mistral", "<s>[INST] You are a helpful assistant\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]"
                    "   I am an assistant   </s>[INST] Another question [/INST]"},
        {"zephyr", "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n"
                   "<|user|>\nWho are you</s>\n<|assistant|>\n   I am an assistant   </s>\n<|user|>\nAnother question"
                   "</s>\n<|assistant|>\n"},
        {"gemma", "<bos><start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\n"
                  "Hi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n"
                  "I am an assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n"
                  "<start_of_turn>model\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        duet_chat_template *c = duet_chat_template_named(cases[i].name, NULL, NULL);
        char *got = c ? render(c, CONV, 6, 1) : NULL;
        T_CHECK(same_text(got, cases[i].want, cases[i].name), "chat %s: the published format", cases[i].name);
        free(got);
        duet_chat_template_free(c);
    }
    /* default system prompts found in templates */
    const char *qwen2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                        "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
                        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
                        "{% endfor %}";
    duet_chat_template *c = duet_chat_template_detect(qwen2, NULL, NULL);
    T_CHECK(c && duet_chat_template_default_system(c) &&
            !strcmp(duet_chat_template_default_system(c), "You are a helpful assistant."), "qwen2 default system");
    const duet_chat_message one[] = {{"user", "Hi"}};
    char *got = c ? render(c, one, 1, 1) : NULL;
    T_CHECK(same_text(got, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi"
                      "<|im_end|>\n<|im_start|>assistant\n", "qwen2 one message"), "qwen2: default system used");
    free(got);
    /* snprintf semantics */
    char small[8];
    int64_t n = c ? duet_chat_template_render(c, one, 1, 0, small, sizeof small) : -1;
    T_CHECK(n == 88 && !strcmp(small, "<|im_st"), "render: full length, truncated copy with NUL (%lld)", (long long)n);
    const duet_chat_message bad[] = {{"user", NULL}};
    T_CHECK(c && duet_chat_template_render(c, bad, 1, 0, small, sizeof small) == -1 && err_has("NULL content"),
            "render: NULL content");
    duet_chat_template_free(c);
    T_CHECK(!duet_chat_template_named("vicuna", NULL, NULL) && err_has("chatml"), "named: unknown family");
    T_CHECK(!duet_chat_template_detect(NULL, NULL, NULL) && err_has("chatml"), "detect: no template text");
    /* bos/eos from the model override the family's */
    c = duet_chat_template_named("llama2", "<BOS>", "<EOS>");
    const duet_chat_message two[] = {{"user", "a"}, {"assistant", "b"}};
    got = c ? render(c, two, 2, 0) : NULL;
    T_CHECK(same_text(got, "<BOS>[INST] a [/INST] b <EOS>", "llama2 tokens"), "chat: bos/eos texts are the model's");
    free(got);
    duet_chat_template_free(c);
}

/* ======================================================================== */
/* Allocation failures: every failure point gives NULL / -1 cleanly          */
/* ======================================================================== */

static int g_budget = -1, g_count = 0;
static void *fail_alloc(void *ud, size_t size, size_t align) {
    (void)ud;
    if (g_budget >= 0 && g_count >= g_budget) return NULL;
    g_count++;
    void *p = NULL;
    return posix_memalign(&p, align, size ? size : 1) ? NULL : p;
}
static void fail_free(void *ud, void *p) {
    (void)ud;
    free(p);
}

static duet_tokenizer *tiny_gpt2(void) {
    static char chars[256][3];
    const char *tok[258];
    int64_t lens[258];
    int32_t types[258];
    for (int b = 0; b < 256; b++) {
        lens[b] = bl_char(b, chars[b]);
        tok[b] = chars[b];
        types[b] = DUET_TOKEN_NORMAL;
    }
    tok[256] = "he";
    lens[256] = 2;
    types[256] = DUET_TOKEN_NORMAL;
    tok[257] = "<|u|>";
    lens[257] = 5;
    types[257] = DUET_TOKEN_USER_DEFINED;
    const char *merges[1] = {"h e"};
    duet_tokenizer_vocab v;
    duet_tokenizer_vocab_default(&v);
    v.n = 258;
    v.tokens = tok;
    v.token_lens = lens;
    v.types = types;
    v.merges = merges;
    v.n_merges = 1;
    v.pre = "qwen2";
    return duet_tokenizer_new_gpt2(&v);
}

static void test_alloc_failures(void) {
    duet_allocator a = {fail_alloc, fail_free, NULL};
    duet_set_allocator(&a);
    const char *text = "hello <|u|> abc  he\xC3\xA9 123";
    for (int kind = 0; kind < 2; kind++) {
        int clean = 1, succeeded = 0;
        for (int budget = 0; budget < 200 && !succeeded; budget++) {
            g_count = 0;
            g_budget = budget;
            duet_tokenizer *t = kind ? tiny_gpt2() : hw_spm(-3.0f, -2.0f, 1);
            if (!t) {
                clean = clean && strstr(duet_last_error(), "out of memory") != NULL;
                continue;
            }
            succeeded = 1;
            /* encode: every failure point reports -1, then it works */
            int32_t ids[64];
            int enc_ok = 0;
            for (int eb = 0; eb < 50 && !enc_ok; eb++) {
                g_count = 0;
                g_budget = eb;
                int64_t n = duet_tokenizer_encode(t, text, (int64_t)strlen(text), DUET_TOK_SPECIALS, ids, 64);
                if (n >= 0) enc_ok = 1;
                else clean = clean && strstr(duet_last_error(), "out of memory") != NULL;
            }
            clean = clean && enc_ok;
            g_budget = -1;
            duet_tokenizer_free(t);
        }
        T_CHECK(clean && succeeded, "%s: construction and encode fail cleanly at every allocation failure point",
                kind ? "gpt2" : "spm");
    }
    const char *qwen2 = "{% if loop.first %}{{ '<|im_start|>system\\nDefault.<|im_end|>\\n' }}{% endif %}";
    const duet_chat_message conv[] = {{"system", "s"}, {"user", "Hello"}};
    int clean = 1, succeeded = 0;
    for (int budget = 0; budget < 50 && !succeeded; budget++) {
        g_count = 0;
        g_budget = budget;
        duet_chat_template *c = duet_chat_template_detect(qwen2, NULL, NULL);
        if (!c) {
            clean = clean && strstr(duet_last_error(), "out of memory") != NULL;
            continue;
        }
        char buf[256];
        int64_t n = duet_chat_template_render(c, conv, 2, 1, buf, sizeof buf);
        if (n >= 0) succeeded = 1;
        else clean = clean && strstr(duet_last_error(), "out of memory") != NULL;
        duet_chat_template_free(c);
    }
    g_budget = -1;
    duet_set_allocator(NULL);
    T_CHECK(clean && succeeded, "chat: detect and render fail cleanly at every allocation failure point");
}

int main(void) {
    test_unicode();
    test_spm_hand();
    test_spm_llama2c();
    test_gpt2_hand();
    test_errors();
    test_spm_reference();
    test_gpt2_reference();
    test_chat_reference();
    test_chat_hand();
    test_alloc_failures();
    return t_done();
}
