/*
 * gpt2bpe.c — GPT-2 style byte-level BPE built from a model's arrays (tokens
 * in the bytes_to_unicode alphabet + "a b" merges, as GGUF
 * tokenizer.ggml.tokens/.merges and tokenizer.json store them), with the
 * pre-tokenizer the model names (tokenizer.ggml.pre) done by hand over real
 * Unicode classes.
 *
 * What it is: the constructor duet_tokenizer_new_gpt2, the Unicode class
 * lookup, UTF-8 stepping, and the pre-tokenizers
 *   gpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   llama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   qwen2   llama3 with \p{N} (one digit) instead of \p{N}{1,3}
 *   digits  \p{N} split off first (each digit alone), then gpt2 inside the rest
 *           (llama.cpp's smollm/starcoder/refact)
 * each written as "the first alternative that matches at p", with \s =
 * White_Space, \p{L}/\p{N} = General Category L* and N* (unicode_tables.c), and
 * each invalid UTF-8 byte one character of class "other". (?i) is ASCII case
 * folding only, as in llama.cpp.
 * What it is not: a regex engine; the encoding itself (merges by rank inside
 * each pre-token, special tokens, decoding) is the shared code in bpe.c.
 */
#include "core/internal.h"
#include "tokenizer/bpe.h"

#include <string.h>

/* ======================================================================== */
/* Unicode classes and UTF-8                                                 */
/* ======================================================================== */

int duet_ucd_class(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return DUET_UCD_LETTER;
        if (cp >= '0' && cp <= '9') return DUET_UCD_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return DUET_UCD_SPACE;
        return DUET_UCD_OTHER;
    }
    int64_t lo = 0, hi = duet_ucd_n_ranges - 1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        if (cp < duet_ucd_ranges[mid].first) hi = mid - 1;
        else if (cp > duet_ucd_ranges[mid].last) lo = mid + 1;
        else return duet_ucd_ranges[mid].cls;
    }
    return DUET_UCD_OTHER;
}

int duet_utf8_next(const unsigned char *s, int64_t n, int64_t p, uint32_t *cp) {
    unsigned c = s[p];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, v = c & 0x07, min = 0x10000;
    else goto bad;
    if (p + len > n) goto bad;
    for (int i = 1; i < len; i++) {
        unsigned d = s[p + i];
        if ((d & 0xC0) != 0x80) goto bad;
        v = (v << 6) | (d & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) goto bad;
    *cp = v;
    return len;
bad:
    *cp = 0xFFFFFFFFu;
    return 1;
}

/* Class and byte length of the character at p < n. */
static int cls_at(const unsigned char *s, int64_t n, int64_t p, int *len) {
    uint32_t cp;
    *len = duet_utf8_next(s, n, p, &cp);
    return cp == 0xFFFFFFFFu ? DUET_UCD_OTHER : duet_ucd_class(cp);
}

/* End of the run of characters of class k that starts at p. */
static int64_t run_end(const unsigned char *s, int64_t n, int64_t p, int k) {
    int len;
    while (p < n && cls_at(s, n, p, &len) == k) p += len;
    return p;
}

static unsigned char lower_ascii(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd at p (s[p] == '\''): the end, or -1. */
static int64_t contraction(const unsigned char *s, int64_t n, int64_t p, int fold) {
    if (p + 1 >= n) return -1;
    unsigned char d = fold ? lower_ascii(s[p + 1]) : s[p + 1];
    if (d == 's' || d == 't' || d == 'm' || d == 'd') return p + 2;
    if (p + 2 >= n) return -1;
    unsigned char e = fold ? lower_ascii(s[p + 2]) : s[p + 2];
    if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) return p + 3;
    return -1;
}

/* ======================================================================== */
/* Pre-tokenizers                                                            */
/* ======================================================================== */

/* GPT-2's pattern; with split_digits every \p{N} is a piece of its own and
 * the text between digits is matched as if it ended at the digit. */
static int64_t pretok_gpt2_impl(const unsigned char *s, int64_t n, int64_t p, int split_digits) {
    if (s[p] == '\'') {
        int64_t e = contraction(s, n, p, 0);
        if (e > 0) return e;
    }
    int len;
    int c = cls_at(s, n, p, &len);
    if (split_digits && c == DUET_UCD_NUMBER) return p + len;
    /* " ?X+": an optional ASCII space, then a run of one class X != space */
    int64_t q = p;
    if (s[p] == ' ' && p + 1 < n) {
        int len2;
        int c2 = cls_at(s, n, p + 1, &len2);
        if (c2 != DUET_UCD_SPACE && !(split_digits && c2 == DUET_UCD_NUMBER)) q = p + 1, c = c2;
    }
    if (q > p || c != DUET_UCD_SPACE) return run_end(s, n, q, c);
    /* whitespace run p..r; last = start of its last character */
    int64_t r = p, last = p;
    while (r < n && cls_at(s, n, r, &len) == DUET_UCD_SPACE) last = r, r += len;
    int at_end = r == n;
    if (!at_end && split_digits && cls_at(s, n, r, &len) == DUET_UCD_NUMBER) at_end = 1;
    if (at_end || last == p) return r; /* \s+(?!\S) to the end, or a lone \s+ */
    return last;                       /* \s+(?!\S) leaves the last one to the next piece */
}

static int64_t pretok_gpt2(const unsigned char *s, int64_t n, int64_t p) {
    return pretok_gpt2_impl(s, n, p, 0);
}
static int64_t pretok_digits(const unsigned char *s, int64_t n, int64_t p) {
    return pretok_gpt2_impl(s, n, p, 1);
}

/* Llama 3's pattern; max_digits 3 (Llama 3) or 1 (Qwen2). */
static int64_t pretok_llama3_impl(const unsigned char *s, int64_t n, int64_t p, int max_digits) {
    if (s[p] == '\'') {
        int64_t e = contraction(s, n, p, 1);
        if (e > 0) return e;
    }
    int len, len2;
    int c = cls_at(s, n, p, &len);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c == DUET_UCD_LETTER) return run_end(s, n, p, DUET_UCD_LETTER);
    if (c != DUET_UCD_NUMBER && s[p] != '\r' && s[p] != '\n' && p + len < n &&
        cls_at(s, n, p + len, &len2) == DUET_UCD_LETTER)
        return run_end(s, n, p + len, DUET_UCD_LETTER);
    /* \p{N}{1,max} */
    if (c == DUET_UCD_NUMBER) {
        int64_t q = p;
        for (int k = 0; k < max_digits && q < n && cls_at(s, n, q, &len2) == DUET_UCD_NUMBER; k++)
            q += len2;
        return q;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    int64_t q = p;
    if (s[p] == ' ' && p + 1 < n && cls_at(s, n, p + 1, &len2) == DUET_UCD_OTHER) q = p + 1;
    if (q > p || c == DUET_UCD_OTHER) {
        q = run_end(s, n, q, DUET_UCD_OTHER);
        while (q < n && (s[q] == '\r' || s[q] == '\n')) q++;
        return q;
    }
    /* c is whitespace. \s*[\r\n]+ ends after the run's last \r or \n */
    int64_t r = p, last = p, last_nl = -1;
    while (r < n && cls_at(s, n, r, &len2) == DUET_UCD_SPACE) {
        if (s[r] == '\r' || s[r] == '\n') last_nl = r;
        last = r;
        r += len2;
    }
    if (last_nl >= 0) return last_nl + 1;
    /* \s+(?!\S) | \s+ */
    if (r == n || last == p) return r;
    return last;
}

static int64_t pretok_llama3(const unsigned char *s, int64_t n, int64_t p) {
    return pretok_llama3_impl(s, n, p, 3);
}
static int64_t pretok_qwen2(const unsigned char *s, int64_t n, int64_t p) {
    return pretok_llama3_impl(s, n, p, 1);
}

typedef struct pre_entry {
    const char *name;
    duet_pretok_fn fn;
    int ignore_merges; /* what the models of this pre-tokenizer do */
} pre_entry;

static const pre_entry PRE_TABLE[] = {
    {"default", pretok_gpt2, 0},    {"gpt2", pretok_gpt2, 0},       {"gpt-2", pretok_gpt2, 0},
    {"llama3", pretok_llama3, 1},   {"llama-bpe", pretok_llama3, 1}, {"qwen2", pretok_qwen2, 0},
    {"smollm", pretok_digits, 0},   {"starcoder", pretok_digits, 0}, {"refact", pretok_digits, 0},
};
#define N_PRE ((int)(sizeof PRE_TABLE / sizeof PRE_TABLE[0]))

static const pre_entry *find_pre(const char *name) {
    if (!name) name = "default";
    for (int i = 0; i < N_PRE; i++)
        if (strcmp(PRE_TABLE[i].name, name) == 0) return &PRE_TABLE[i];
    return NULL;
}

int64_t duet_gpt2_pretoken_end(const char *pre, const unsigned char *s, int64_t n, int64_t p) {
    const pre_entry *e = find_pre(pre);
    return e ? e->fn(s, n, p) : -1;
}

/* ======================================================================== */
/* Construction                                                              */
/* ======================================================================== */

void duet_tokenizer_vocab_default(duet_tokenizer_vocab *v) {
    memset(v, 0, sizeof *v);
    v->ignore_merges = -1;
    v->bos = v->eos = v->unk = v->pad = -1;
    v->add_space_prefix = 1;
}

static int64_t str_len(const char *const *s, const int64_t *lens, int64_t i) {
    return lens ? lens[i] : (int64_t)strlen(s[i]);
}

#define GPT2_FAIL(st, ...)                                                                   \
    do {                                                                                     \
        duet_set_error(st, __VA_ARGS__);                                                     \
        goto fail;                                                                           \
    } while (0)

duet_tokenizer *duet_tokenizer_new_gpt2(const duet_tokenizer_vocab *v) {
    duet_clear_error();
    duet_tokenizer *t = NULL;
    char *tmp = NULL;
    const int64_t ID_LIMIT = (int64_t)1 << 30;
    if (!v || v->n <= 0 || v->n >= ID_LIMIT || !v->tokens) {
        duet_set_error(DUET_ERR_ARG, "gpt2 tokenizer: the vocabulary needs 1..2^30 tokens "
                       "(got %lld) and a tokens array", v ? (long long)v->n : 0LL);
        return NULL;
    }
    if (v->n_merges < 0 || (v->n_merges > 0 && !v->merges)) {
        duet_set_error(DUET_ERR_ARG, "gpt2 tokenizer: n_merges is %lld but merges is %s",
                       (long long)v->n_merges, v->merges ? "set" : "NULL");
        return NULL;
    }
    const pre_entry *pre = find_pre(v->pre);
    if (!pre) {
        duet_set_error(DUET_ERR_UNSUPPORTED, "gpt2 tokenizer: pre-tokenizer \"%s\" "
                       "(tokenizer.ggml.pre) is not one duet knows: default, gpt2, gpt-2, "
                       "llama3, llama-bpe, qwen2, smollm, starcoder, refact; pass pre = "
                       "\"default\" to use GPT-2's pattern anyway (tokens may then differ "
                       "from the model's own tokenizer)", v->pre);
        return NULL;
    }
    const int64_t V = v->n;
    int32_t sp[4] = {v->bos, v->eos, v->unk, v->pad};
    static const char *const SP_NAME[4] = {"bos", "eos", "unk", "pad"};
    for (int k = 0; k < 4; k++) {
        if (sp[k] < -1 || sp[k] >= V) {
            duet_set_error(DUET_ERR_ARG, "gpt2 tokenizer: %s id %d is outside the vocabulary "
                           "[0, %lld) (use -1 for none)", SP_NAME[k], sp[k], (long long)V);
            return NULL;
        }
    }
    t = duet_calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->kind = DUET_TOKENIZER_GPT2;
    t->V = V;
    t->tok_off = duet_alloc((size_t)(V + 1) * sizeof *t->tok_off);
    t->special = duet_calloc((size_t)V, 1);
    t->type = duet_alloc((size_t)V);
    if (!t->tok_off || !t->special || !t->type) goto nomem;
    int64_t pool = 0, maxlen = 1;
    for (int64_t id = 0; id < V; id++) {
        if (!v->tokens[id]) GPT2_FAIL(DUET_ERR_ARG, "gpt2 tokenizer: token %lld is NULL", (long long)id);
        int64_t l = str_len(v->tokens, v->token_lens, id);
        if (l < 0) GPT2_FAIL(DUET_ERR_ARG, "gpt2 tokenizer: token %lld has length %lld", (long long)id, (long long)l);
        int ty = DUET_TOKEN_NORMAL;
        if (v->types) {
            ty = v->types[id];
            if (ty < DUET_TOKEN_UNDEFINED || ty > DUET_TOKEN_BYTE)
                GPT2_FAIL(DUET_ERR_FORMAT, "gpt2 tokenizer: token %lld has type %d; types are "
                          "0..6 (tokenizer.ggml.token_type)", (long long)id, ty);
            if (ty == DUET_TOKEN_UNDEFINED) ty = DUET_TOKEN_NORMAL;
        } else if (id == v->bos || id == v->eos || id == v->pad) {
            ty = DUET_TOKEN_CONTROL;
        } else if (id == v->unk) {
            ty = DUET_TOKEN_UNKNOWN;
        }
        t->type[id] = (uint8_t)ty;
        t->special[id] = ty == DUET_TOKEN_USER_DEFINED                             ? DUET_SPEC_USER
                         : ty == DUET_TOKEN_CONTROL || ty == DUET_TOKEN_UNKNOWN ? DUET_SPEC_CONTROL
                                                                                 : DUET_SPEC_NONE;
        pool += l + 1;
        maxlen = DUET_MAX(maxlen, l);
    }
    t->pool = duet_alloc((size_t)pool);
    tmp = duet_alloc((size_t)(2 * maxlen + 8));
    if (!t->pool || !tmp) goto nomem;
    int16_t c2b[324];
    duet_tok_byte_level_inverse(c2b);
    int64_t off = 0;
    for (int64_t id = 0; id < V; id++) {
        const char *s = v->tokens[id];
        int64_t l = str_len(v->tokens, v->token_lens, id);
        t->tok_off[id] = off;
        char *dst = t->pool + off;
        int64_t nb = -1;
        /* specials keep their text; the rest are byte-level strings (a text
         * outside the alphabet is kept as it is) */
        if (t->special[id] == DUET_SPEC_NONE) nb = duet_tok_from_byte_level(s, l, c2b, dst);
        if (nb < 0) {
            memcpy(dst, s, (size_t)l);
            nb = l;
        }
        dst[nb] = 0;
        off += nb + 1;
    }
    t->tok_off[V] = off;
    if (duet_tok_index(t, "gpt2 tokenizer", 0) != DUET_OK) goto nomem; /* only NOMEM when not strict */
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = duet_tok_lookup(t, &c, 1, 1);
        if (t->byte_id[b] < 0)
            GPT2_FAIL(DUET_ERR_FORMAT, "gpt2 tokenizer: no ordinary token for byte 0x%02x; a "
                      "byte-level BPE vocabulary must hold all 256 byte characters", b);
    }
    /* merges */
    const int64_t M = v->n_merges;
    t->n_merges = M;
    t->merge_left = duet_alloc((size_t)(M ? M : 1) * sizeof(int32_t));
    t->merge_right = duet_alloc((size_t)(M ? M : 1) * sizeof(int32_t));
    t->merge_out = duet_alloc((size_t)(M ? M : 1) * sizeof(int32_t));
    if (!t->merge_left || !t->merge_right || !t->merge_out) goto nomem;
    for (int64_t r = 0; r < M; r++) {
        const char *m = v->merges[r];
        int64_t ml = m ? str_len(v->merges, v->merge_lens, r) : -1;
        const char *space = ml > 1 ? memchr(m + 1, ' ', (size_t)(ml - 1)) : NULL;
        if (!space || space == m + ml - 1)
            GPT2_FAIL(DUET_ERR_FORMAT, "gpt2 tokenizer: merge %lld \"%.*s\" is not \"left "
                      "right\" (two non-empty halves split by a space)", (long long)r,
                      (int)DUET_MAX(ml, 0), m ? m : "");
        int32_t half[2];
        for (int side = 0; side < 2; side++) {
            const char *hs = side ? space + 1 : m;
            int64_t hl = side ? m + ml - space - 1 : space - m;
            /* tmp has room: 2 * maxlen + 8 >= any half's bytes only if the half
             * is no longer than a token; longer halves cannot be tokens */
            int64_t nb = hl <= 2 * maxlen ? duet_tok_from_byte_level(hs, hl, c2b, tmp) : -1;
            half[side] = nb > 0 ? duet_tok_lookup(t, tmp, nb, 1) : -1;
            if (half[side] < 0)
                GPT2_FAIL(DUET_ERR_FORMAT, "gpt2 tokenizer: merge %lld \"%.*s\": \"%.*s\" is not "
                          "an ordinary token of the vocabulary", (long long)r, (int)ml, m, (int)hl, hs);
        }
        int64_t la = t->tok_off[half[0] + 1] - t->tok_off[half[0]] - 1;
        int64_t lb = t->tok_off[half[1] + 1] - t->tok_off[half[1]] - 1;
        int32_t out = -1;
        if (la + lb <= 2 * maxlen + 8) {
            memcpy(tmp, t->pool + t->tok_off[half[0]], (size_t)la);
            memcpy(tmp + la, t->pool + t->tok_off[half[1]], (size_t)lb);
            out = duet_tok_lookup(t, tmp, la + lb, 1);
        }
        if (out < 0)
            GPT2_FAIL(DUET_ERR_FORMAT, "gpt2 tokenizer: merge %lld \"%.*s\" makes a token that "
                      "is not in the vocabulary", (long long)r, (int)ml, m);
        t->merge_left[r] = half[0];
        t->merge_right[r] = half[1];
        t->merge_out[r] = out;
    }
    if (duet_tok_index_merges(t) != DUET_OK) goto nomem;
    t->pretok = pre->fn;
    t->ignore_merges = v->ignore_merges < 0 ? pre->ignore_merges : v->ignore_merges != 0;
    t->bos = v->bos;
    t->eos = v->eos;
    t->unk = v->unk;
    t->pad = v->pad;
    t->default_flags = (v->add_bos ? DUET_TOK_ADD_BOS : 0u) | (v->add_eos ? DUET_TOK_ADD_EOS : 0u);
    duet_free(tmp);
    return t;
nomem:
    duet_set_error(DUET_ERR_NOMEM, "gpt2 tokenizer: out of memory");
fail:
    duet_free(tmp);
    duet_tokenizer_free(t);
    return NULL;
}
