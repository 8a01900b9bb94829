/*
 * bpe.c — byte-level BPE tokenizer: GPT-2 style pre-tokenization, training
 * (incremental pair counts), encoding (lowest-rank merge first), decoding,
 * and Hugging Face tokenizer.json load/save.
 *
 * What it is: everything duet needs to turn bytes into ids and back, with a
 * vocabulary it trains itself or loads; and the parts every kind of
 * tokenizer shares (the handle, special-token matching, decoding, the token
 * and merge tables). What it is not: a general `tokenizers` clone — no
 * normalizers, no WordPiece/Unigram, no dropout. The real models' kinds live
 * beside it: SentencePiece BPE in spm.c, GPT-2 byte-level BPE with Unicode
 * pre-tokenizers in gpt2bpe.c (struct duet_tokenizer is in bpe.h).
 *
 * Conventions (see the tokenizer section of duet.h for the contract):
 *  - pre-tokens use byte classes (letters = A-Z a-z and bytes >= 0x80,
 *    numbers = 0-9, whitespace = space \t \n \v \f \r, the rest "other");
 *  - trained/byte tokenizers: id b = byte b, merge m makes id 256 + m, then
 *    <|endoftext|>, <|pad|>;
 *  - training tie-break: highest count, then smallest (left id, right id).
 */
#include "core/internal.h"
#include "formats/json.h"
#include "tokenizer/bpe.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* Byte classes and the pre-tokenizer                                        */
/* ======================================================================== */

enum { CL_OTHER = 0, CL_LETTER, CL_DIGIT, CL_SPACE };

static unsigned char byte_class(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return CL_LETTER;
    if (c >= '0' && c <= '9') return CL_DIGIT;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r') return CL_SPACE;
    return CL_OTHER;
}

static unsigned char g_class[256];
static pthread_once_t g_class_once = PTHREAD_ONCE_INIT;

static void class_fill(void) {
    for (int c = 0; c < 256; c++) g_class[c] = byte_class((unsigned char)c);
}
static void class_init(void) { pthread_once(&g_class_once, class_fill); }

/* End (exclusive) of the pre-token that starts at p < n. Equivalent to the
 * first alternative of GPT-2's pattern that matches at p:
 *   's|'t|'re|'ve|'m|'ll|'d| ?L+| ?N+| ?O+|\s+(?!\S)|\s+               */
static int64_t pretok_end(const unsigned char *s, int64_t n, int64_t p) {
    unsigned char c = s[p];
    if (c == '\'' && p + 1 < n) {
        unsigned char d = s[p + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return p + 2;
        if (p + 2 < n) {
            unsigned char e = s[p + 2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
                return p + 3;
        }
    }
    int64_t q = p;
    /* " ?X+": an optional single space, then a run of one class X != space */
    if (c == ' ' && p + 1 < n && g_class[s[p + 1]] != CL_SPACE) q = p + 1;
    if (q > p || g_class[c] != CL_SPACE) {
        unsigned char k = g_class[s[q]];
        q++;
        while (q < n && g_class[s[q]] == k) q++;
        return q;
    }
    /* whitespace run: \s+(?!\S) leaves the last space to the next word; a
     * single space before a non-space falls through to \s+ */
    int64_t r = p;
    while (r < n && g_class[s[r]] == CL_SPACE) r++;
    if (r == n || r - p == 1) return r;
    return r - 1;
}

int64_t duet_bpe_pretoken_end(const unsigned char *s, int64_t n, int64_t p) {
    class_init();
    return pretok_end(s, n, p);
}

/* ======================================================================== */
/* Hashing                                                                   */
/* ======================================================================== */

uint64_t duet_tok_hash(const unsigned char *s, int64_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a final mix */
    for (int64_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static int64_t pow2_at_least(int64_t n) {
    int64_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ======================================================================== */
/* The tokenizer object                                                      */
/* ======================================================================== */

/* struct duet_tokenizer is in bpe.h (shared with spm.c and gpt2bpe.c). */

static int64_t tok_len(const duet_tokenizer *t, int32_t id) {
    return t->tok_off[id + 1] - t->tok_off[id] - 1;
}
static const char *tok_bytes(const duet_tokenizer *t, int32_t id) { return t->pool + t->tok_off[id]; }

void duet_tokenizer_free(duet_tokenizer *t) {
    if (!t) return;
    duet_free(t->pool);
    duet_free(t->tok_off);
    duet_free(t->special);
    duet_free(t->type);
    duet_spm_free(t->spm);
    duet_free(t->merge_left);
    duet_free(t->merge_right);
    duet_free(t->merge_out);
    duet_free(t->mkey);
    duet_free(t->mrank);
    duet_free(t->tslot);
    duet_free(t->spec_ids);
    duet_free(t);
}

static int32_t merge_rank(const duet_tokenizer *t, int32_t a, int32_t b) {
    uint64_t k = pair_key(a, b), mask = (uint64_t)t->mcap - 1;
    for (uint64_t i = hash_u64(k) & mask;; i = (i + 1) & mask) {
        if (t->mkey[i] == k) return t->mrank[i];
        if (t->mkey[i] == ~0ull) return -1;
    }
}

/* Looks up a token by bytes; with plain_only, special tokens are skipped
 * (bytes and merges must resolve to ordinary tokens). */
int32_t duet_tok_lookup(const duet_tokenizer *t, const char *s, int64_t n, int plain_only) {
    uint64_t mask = (uint64_t)t->tcap - 1;
    for (uint64_t i = duet_tok_hash((const unsigned char *)s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = t->tslot[i];
        if (id < 0) return -1;
        if (tok_len(t, id) == n && memcmp(tok_bytes(t, id), s, (size_t)n) == 0 &&
            !(plain_only && t->special[id]))
            return id;
    }
}

duet_status duet_tok_index(duet_tokenizer *t, const char *where, int strict) {
    class_init();
    t->tcap = pow2_at_least(2 * t->V + 1);
    t->tslot = duet_alloc((size_t)t->tcap * sizeof *t->tslot);
    if (!t->tslot) return DUET_ERR_NOMEM;
    memset(t->tslot, 0xff, (size_t)t->tcap * sizeof *t->tslot);
    uint64_t mask = (uint64_t)t->tcap - 1;
    /* ordinary tokens first so they sit earlier in their probe chains */
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t id = 0; id < t->V; id++) {
            if ((t->special[id] != DUET_SPEC_NONE) != pass) continue;
            const char *s = tok_bytes(t, id);
            int64_t n = tok_len(t, id);
            if (strict && !pass && duet_tok_lookup(t, s, n, 1) >= 0) {
                return duet_set_error(DUET_ERR_FORMAT,
                                      "%s: tokens %d and %d have the same bytes; a byte-level "
                                      "vocabulary needs every token to be distinct",
                                      where, duet_tok_lookup(t, s, n, 1), id);
            }
            uint64_t i = duet_tok_hash((const unsigned char *)s, n) & mask;
            while (t->tslot[i] >= 0) i = (i + 1) & mask;
            t->tslot[i] = id;
        }
    }
    int ns = 0;
    for (int32_t id = 0; id < t->V; id++) ns += t->special[id] != DUET_SPEC_NONE;
    t->spec_ids = duet_alloc((size_t)(ns ? ns : 1) * sizeof *t->spec_ids);
    if (!t->spec_ids) return DUET_ERR_NOMEM;
    t->n_spec = 0;
    for (int32_t id = 0; id < t->V; id++)
        if (t->special[id] != DUET_SPEC_NONE && tok_len(t, id) > 0) t->spec_ids[t->n_spec++] = id;
    return DUET_OK;
}

/* The byte kind: the bytes -> id table (strict), byte ids, and
 * <|endoftext|> / <|pad|> as bos = eos / pad. Error messages start with
 * `where` (a file name or "tokenizer"). */
static duet_status tok_finish_tokens(duet_tokenizer *t, const char *where) {
    duet_status st = duet_tok_index(t, where, 1);
    if (st != DUET_OK) return st;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = duet_tok_lookup(t, &c, 1, 1);
        if (t->byte_id[b] < 0)
            return duet_set_error(DUET_ERR_FORMAT,
                                  "%s: no token for byte 0x%02x; a byte-level BPE vocabulary "
                                  "must hold all 256 bytes",
                                  where, b);
    }
    t->bos = t->eos = duet_tok_lookup(t, "<|endoftext|>", 13, 0);
    if (t->bos >= 0 && !t->special[t->bos]) t->bos = t->eos = -1;
    t->pad = duet_tok_lookup(t, "<|pad|>", 7, 0);
    if (t->pad >= 0 && !t->special[t->pad]) t->pad = -1;
    t->unk = -1;
    return DUET_OK;
}

duet_status duet_tok_index_merges(duet_tokenizer *t) {
    t->mcap = pow2_at_least(2 * t->n_merges + 1);
    t->mkey = duet_alloc((size_t)t->mcap * sizeof *t->mkey);
    t->mrank = duet_alloc((size_t)t->mcap * sizeof *t->mrank);
    if (!t->mkey || !t->mrank) return DUET_ERR_NOMEM;
    memset(t->mkey, 0xff, (size_t)t->mcap * sizeof *t->mkey);
    uint64_t mask = (uint64_t)t->mcap - 1;
    for (int64_t r = 0; r < t->n_merges; r++) {
        uint64_t k = pair_key(t->merge_left[r], t->merge_right[r]);
        uint64_t i = hash_u64(k) & mask;
        while (t->mkey[i] != ~0ull && t->mkey[i] != k) i = (i + 1) & mask;
        if (t->mkey[i] == k) continue; /* a repeated merge: the first rank wins */
        t->mkey[i] = k;
        t->mrank[i] = (int32_t)r;
    }
    return DUET_OK;
}

/* Builds a trained/byte tokenizer: ids 0..255 bytes, 256+m from merges
 * (left[m], right[m]), then <|endoftext|>, <|pad|>. Copies the merges. */
static duet_tokenizer *tok_from_merges(const int32_t *left, const int32_t *right, int64_t M) {
    duet_tokenizer *t = duet_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->V = 256 + M + 2;
    t->n_merges = M;
    t->tok_off = duet_alloc((size_t)(t->V + 1) * sizeof *t->tok_off);
    t->special = duet_calloc((size_t)t->V, 1);
    t->merge_left = duet_alloc((size_t)(M ? M : 1) * sizeof(int32_t));
    t->merge_right = duet_alloc((size_t)(M ? M : 1) * sizeof(int32_t));
    t->merge_out = duet_alloc((size_t)(M ? M : 1) * sizeof(int32_t));
    if (!t->tok_off || !t->special || !t->merge_left || !t->merge_right || !t->merge_out) goto fail;
    /* lengths first, then the pool */
    int64_t *len = t->tok_off; /* len[id] temporarily in tok_off[id + 1] */
    len[0] = 0;
    for (int b = 0; b < 256; b++) len[b + 1] = 1;
    for (int64_t m = 0; m < M; m++) {
        DUET_ASSERT(left[m] >= 0 && left[m] < 256 + m && right[m] >= 0 && right[m] < 256 + m);
        len[256 + m + 1] = len[left[m] + 1] + len[right[m] + 1];
        t->merge_left[m] = left[m];
        t->merge_right[m] = right[m];
        t->merge_out[m] = (int32_t)(256 + m);
    }
    len[256 + M + 1] = 13;
    len[256 + M + 2] = 7;
    int64_t total = 0;
    for (int64_t id = 0; id < t->V; id++) {
        int64_t l = len[id + 1];
        len[id + 1] = total + l + 1; /* now an offset: end of token id + its NUL */
        total += l + 1;
    }
    t->pool = duet_alloc((size_t)total);
    if (!t->pool) goto fail;
    for (int b = 0; b < 256; b++) {
        t->pool[2 * b] = (char)b;
        t->pool[2 * b + 1] = 0;
    }
    for (int64_t m = 0; m < M; m++) {
        char *dst = t->pool + t->tok_off[256 + m];
        int64_t la = tok_len(t, left[m]), lb = tok_len(t, right[m]);
        memcpy(dst, tok_bytes(t, left[m]), (size_t)la);
        memcpy(dst + la, tok_bytes(t, right[m]), (size_t)lb);
        dst[la + lb] = 0;
    }
    memcpy(t->pool + t->tok_off[256 + M], "<|endoftext|>", 14);
    memcpy(t->pool + t->tok_off[256 + M + 1], "<|pad|>", 8);
    t->special[256 + M] = t->special[256 + M + 1] = 1;
    if (tok_finish_tokens(t, "tokenizer") != DUET_OK || duet_tok_index_merges(t) != DUET_OK) goto fail;
    return t;
fail:
    if (!duet_last_error()[0]) duet_set_error(DUET_ERR_NOMEM, "tokenizer: out of memory");
    duet_tokenizer_free(t);
    return NULL;
}

duet_tokenizer *duet_tokenizer_new_bytes(void) {
    duet_clear_error();
    return tok_from_merges(NULL, NULL, 0);
}

int64_t duet_tokenizer_vocab_size(const duet_tokenizer *t) { return t->V; }
int64_t duet_tokenizer_n_merges(const duet_tokenizer *t) { return t->n_merges; }
int32_t duet_tokenizer_bos(const duet_tokenizer *t) { return t->bos; }
int32_t duet_tokenizer_eos(const duet_tokenizer *t) { return t->eos; }
int32_t duet_tokenizer_pad(const duet_tokenizer *t) { return t->pad; }
int32_t duet_tokenizer_unk(const duet_tokenizer *t) { return t->unk; }
duet_tokenizer_kind duet_tokenizer_get_kind(const duet_tokenizer *t) { return t->kind; }
unsigned duet_tokenizer_default_flags(const duet_tokenizer *t) { return t->default_flags; }

duet_token_type duet_tokenizer_token_type(const duet_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->V) return DUET_TOKEN_UNDEFINED;
    if (t->type) return (duet_token_type)t->type[id];
    return t->special[id] ? DUET_TOKEN_CONTROL : DUET_TOKEN_NORMAL;
}

int duet_bpe_merge(const duet_tokenizer *t, int64_t rank, int32_t *left, int32_t *right,
                   int32_t *out) {
    if (rank < 0 || rank >= t->n_merges) return 0;
    *left = t->merge_left[rank];
    *right = t->merge_right[rank];
    *out = t->merge_out[rank];
    return 1;
}

int32_t duet_tokenizer_token_to_id(const duet_tokenizer *t, const char *bytes, int64_t len) {
    if (len < 0 || (len > 0 && !bytes)) return -1;
    return duet_tok_lookup(t, bytes ? bytes : "", len, 0);
}

const char *duet_tokenizer_id_to_token(const duet_tokenizer *t, int32_t id, int64_t *len) {
    if (id < 0 || id >= t->V) return NULL;
    if (len) *len = tok_len(t, id);
    return tok_bytes(t, id);
}

/* ======================================================================== */
/* Decoding                                                                  */
/* ======================================================================== */

int64_t duet_tokenizer_decode_one(const duet_tokenizer *t, int32_t id, char *buf, int64_t cap) {
    if (id < 0 || id >= t->V) return -1;
    int64_t n = tok_len(t, id);
    if (buf && cap > 0) memcpy(buf, tok_bytes(t, id), (size_t)DUET_MIN(n, cap));
    return n;
}

/* SentencePiece with add_space_prefix: the space that encode put before the
 * text and after each special token (prev = -1, CONTROL or USER_DEFINED) is
 * not part of the text. 1 when token id's leading space is dropped after prev. */
static int drops_space(const duet_tokenizer *t, int32_t prev, int32_t id) {
    if (t->kind != DUET_TOKENIZER_SPM || !t->add_space_prefix) return 0;
    if (prev >= 0 && t->type[prev] != DUET_TOKEN_CONTROL && t->type[prev] != DUET_TOKEN_USER_DEFINED)
        return 0;
    return tok_len(t, id) > 0 && tok_bytes(t, id)[0] == ' ';
}

int64_t duet_tokenizer_decode_piece(const duet_tokenizer *t, int32_t prev, int32_t id, char *buf,
                                    int64_t cap) {
    if (id < 0 || id >= t->V) return -1;
    if (prev >= t->V) prev = -1;
    int64_t skip = drops_space(t, prev, id);
    int64_t n = tok_len(t, id) - skip;
    if (buf && cap > 0) memcpy(buf, tok_bytes(t, id) + skip, (size_t)DUET_MIN(n, cap));
    return n;
}

int64_t duet_tokenizer_decode(const duet_tokenizer *t, const int32_t *ids, int64_t n, char *buf,
                              int64_t cap) {
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->V) {
            duet_set_error(DUET_ERR_ARG, "tokenizer decode: id %d at position %lld is outside the "
                           "vocabulary [0, %lld)", id, (long long)i, (long long)t->V);
            return -1;
        }
        int64_t skip = drops_space(t, i > 0 ? ids[i - 1] : -1, id);
        int64_t l = tok_len(t, id) - skip;
        if (buf && total < cap)
            memcpy(buf + total, tok_bytes(t, id) + skip, (size_t)DUET_MIN(l, cap - total));
        total += l;
    }
    return total;
}

/* ======================================================================== */
/* Encoding                                                                  */
/* ======================================================================== */

/* Per-call scratch for one pre-token of n bytes: a doubly linked list of
 * symbols and a min-heap of (rank << 32 | position) candidate merges. */
typedef struct enc_scratch {
    int64_t cap;
    int32_t *id, *prev, *next;
    uint64_t *heap;
    int64_t nheap;
    void *spm; /* the SentencePiece encoder's own scratch (spm.c) */
} enc_scratch;

/* Frees the byte-level arrays (not the SentencePiece scratch). */
static void scratch_free_bpe(enc_scratch *s) {
    duet_free(s->id);
    duet_free(s->prev);
    duet_free(s->next);
    duet_free(s->heap);
    s->id = s->prev = s->next = NULL;
    s->heap = NULL;
    s->cap = s->nheap = 0;
}

static void scratch_free(enc_scratch *s) {
    scratch_free_bpe(s);
    duet_spm_scratch_free(s->spm);
    s->spm = NULL;
}

static int scratch_reserve(enc_scratch *s, int64_t n) {
    if (n <= s->cap) return 1;
    int64_t c = pow2_at_least(n);
    scratch_free_bpe(s);
    s->id = duet_alloc((size_t)c * sizeof(int32_t));
    s->prev = duet_alloc((size_t)c * sizeof(int32_t));
    s->next = duet_alloc((size_t)c * sizeof(int32_t));
    /* each merge pushes at most 2 entries: n - 1 + 2 (n - 1) < 3n */
    s->heap = duet_alloc((size_t)(3 * c) * sizeof(uint64_t));
    if (!s->id || !s->prev || !s->next || !s->heap) {
        scratch_free_bpe(s);
        return 0;
    }
    s->cap = c;
    return 1;
}

static void heap_push_min(uint64_t *h, int64_t *n, uint64_t v) {
    int64_t i = (*n)++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop_min(uint64_t *h, int64_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    int64_t i = 0, m = *n;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    if (m > 0) h[i] = v;
    return top;
}

static void push_pair(const duet_tokenizer *t, enc_scratch *s, int32_t i) {
    if (i < 0) return;
    int32_t j = s->next[i];
    if (j < 0) return;
    int32_t r = merge_rank(t, s->id[i], s->id[j]);
    if (r >= 0) heap_push_min(s->heap, &s->nheap, ((uint64_t)(uint32_t)r << 32) | (uint32_t)i);
}

/* Applies the merges to one pre-token; returns the number of ids written
 * through emit (into ids while *count < cap). */
static void bpe_piece(const duet_tokenizer *t, enc_scratch *s, const unsigned char *p, int64_t n,
                      int32_t *ids, int64_t cap, int64_t *count) {
    for (int64_t i = 0; i < n; i++) {
        s->id[i] = t->byte_id[p[i]];
        s->prev[i] = (int32_t)(i - 1);
        s->next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
    }
    s->nheap = 0;
    if (t->n_merges > 0)
        for (int64_t i = 0; i + 1 < n; i++) push_pair(t, s, (int32_t)i);
    while (s->nheap > 0) {
        uint64_t top = heap_pop_min(s->heap, &s->nheap);
        int32_t r = (int32_t)(top >> 32), i = (int32_t)(uint32_t)top;
        int32_t j = s->next[i];
        /* stale entries: i was absorbed, or its pair changed since the push */
        if (s->id[i] < 0 || j < 0 || merge_rank(t, s->id[i], s->id[j]) != r) continue;
        s->id[i] = t->merge_out[r];
        s->id[j] = -1;
        s->next[i] = s->next[j];
        if (s->next[j] >= 0) s->prev[s->next[j]] = i;
        push_pair(t, s, s->prev[i]);
        push_pair(t, s, i);
    }
    for (int32_t i = 0; i >= 0; i = s->next[i]) {
        if (*count < cap) ids[*count] = s->id[i];
        (*count)++;
    }
}

static int encode_plain(const duet_tokenizer *t, enc_scratch *s, const unsigned char *text,
                        int64_t len, int32_t *ids, int64_t cap, int64_t *count) {
    int64_t p = 0;
    while (p < len) {
        int64_t q = t->pretok ? t->pretok(text, len, p) : pretok_end(text, len, p);
        int32_t whole = -1;
        if (q - p > 1 && t->ignore_merges) /* Llama 3: a piece that is a token is taken as is */
            whole = duet_tok_lookup(t, (const char *)text + p, q - p, 1);
        if (q - p == 1 || whole >= 0) {
            if (*count < cap) ids[*count] = q - p == 1 ? t->byte_id[text[p]] : whole;
            (*count)++;
        } else {
            if (!scratch_reserve(s, q - p)) return 0;
            bpe_piece(t, s, text + p, q - p, ids, cap, count);
        }
        p = q;
    }
    return 1;
}

/* One run of text between special tokens, by the tokenizer's kind. */
static int encode_segment(const duet_tokenizer *t, enc_scratch *s, const unsigned char *text,
                          int64_t len, int32_t *ids, int64_t cap, int64_t *count) {
    if (len == 0) return 1;
    if (t->kind == DUET_TOKENIZER_SPM)
        return duet_spm_encode_segment(t, &s->spm, text, len, ids, cap, count);
    return encode_plain(t, s, text, len, ids, cap, count);
}

int64_t duet_tokenizer_encode(const duet_tokenizer *t, const char *text, int64_t len, unsigned flags,
                              int32_t *ids, int64_t cap) {
    DUET_ASSERT(len >= 0 && (len == 0 || text));
    const unsigned char *s = (const unsigned char *)text;
    enc_scratch sc = {0};
    int64_t *next_at = NULL;
    int64_t count = 0;
    if (!ids) cap = 0;
    if ((flags & DUET_TOK_ADD_BOS) && t->bos >= 0) {
        if (count < cap) ids[count] = t->bos;
        count++;
    }
    /* USER_DEFINED specials are always matched, CONTROL ones with the flag */
    int n_match = 0;
    for (int k = 0; k < t->n_spec; k++)
        n_match += t->special[t->spec_ids[k]] == DUET_SPEC_USER || (flags & DUET_TOK_SPECIALS);
    int64_t p = 0;
    if (n_match > 0) {
        /* leftmost special occurrence; the longest one when several start
         * there. next_at[k]: where special k next occurs at or after p (len
         * when never), searched again only once p has passed it. */
        next_at = duet_alloc((size_t)t->n_spec * sizeof *next_at);
        if (!next_at) goto nomem;
        for (int k = 0; k < t->n_spec; k++) next_at[k] = -1;
        while (p < len) {
            int64_t best = len, best_len = 0;
            int32_t best_id = -1;
            for (int k = 0; k < t->n_spec; k++) {
                int32_t id = t->spec_ids[k];
                if (t->special[id] != DUET_SPEC_USER && !(flags & DUET_TOK_SPECIALS)) continue;
                int64_t l = tok_len(t, id);
                if (next_at[k] < p) {
                    const char *f = memmem(text + p, (size_t)(len - p), tok_bytes(t, id), (size_t)l);
                    next_at[k] = f ? f - text : len;
                }
                int64_t at = next_at[k];
                if (at == len) continue;
                if (at < best || (at == best && l > best_len)) best = at, best_len = l, best_id = id;
            }
            if (!encode_segment(t, &sc, s + p, best - p, ids, cap, &count)) goto nomem;
            if (best_id < 0) {
                p = len;
                break;
            }
            if (count < cap) ids[count] = best_id;
            count++;
            p = best + best_len;
        }
    } else if (!encode_segment(t, &sc, s, len, ids, cap, &count)) {
        goto nomem;
    }
    if ((flags & DUET_TOK_ADD_EOS) && t->eos >= 0) {
        if (count < cap) ids[count] = t->eos;
        count++;
    }
    scratch_free(&sc);
    duet_free(next_at);
    return count;
nomem:
    scratch_free(&sc);
    duet_free(next_at);
    duet_set_error(DUET_ERR_NOMEM, "tokenizer encode: out of memory");
    return -1;
}

/* ======================================================================== */
/* Training                                                                  */
/* ======================================================================== */

void duet_tokenizer_train_params_default(duet_tokenizer_train_params *p) {
    memset(p, 0, sizeof *p);
    p->min_frequency = 2;
}

/* Growable array helper: ensures *buf (elements of size es) holds n. */
static int grow(void **buf, int64_t *cap, int64_t n, size_t es) {
    if (n <= *cap) return 1;
    int64_t c = *cap ? *cap : 16;
    while (c < n) c *= 2;
    void *nb = duet_alloc((size_t)c * es);
    if (!nb) return 0;
    if (*buf) memcpy(nb, *buf, (size_t)*cap * es);
    duet_free(*buf);
    *buf = nb;
    *cap = c;
    return 1;
}

/* One distinct adjacent pair: its weighted count and the words that have
 * (or once had) it. */
typedef struct tr_pair {
    int32_t a, b;
    int64_t count;
    int32_t *words;
    int64_t nwords, capwords;
    int64_t stamp;  /* last merge that touched it as a new pair */
} tr_pair;

/* Max-heap entry: higher count first, then smaller (a, b). */
typedef struct tr_entry {
    int64_t count;
    int32_t a, b;
} tr_entry;

typedef struct trainer {
    /* pre-tokens */
    int64_t nwords;
    int32_t *sym;       /* all words' symbols, concatenated */
    int64_t *wstart;    /* [nwords] */
    int32_t *wlen;      /* [nwords] current length */
    int64_t *wcount;    /* [nwords] occurrences */
    int64_t *wstamp;    /* [nwords] last merge that visited it */
    /* pairs */
    tr_pair *pairs;
    int64_t npairs, cappairs;
    uint64_t *pkey;     /* open addressing: pair key -> index in pidx */
    int32_t *pidx;
    int64_t pcap;
    tr_entry *heap;
    int64_t nheap, capheap;
    int32_t *touched;   /* pairs created by the current merge */
    int64_t ntouched, captouched;
} trainer;

static void trainer_free(trainer *tr) {
    duet_free(tr->sym);
    duet_free(tr->wstart);
    duet_free(tr->wlen);
    duet_free(tr->wcount);
    duet_free(tr->wstamp);
    for (int64_t i = 0; i < tr->npairs; i++) duet_free(tr->pairs[i].words);
    duet_free(tr->pairs);
    duet_free(tr->pkey);
    duet_free(tr->pidx);
    duet_free(tr->heap);
    duet_free(tr->touched);
}

static int pairs_rehash(trainer *tr, int64_t newcap) {
    uint64_t *nk = duet_alloc((size_t)newcap * sizeof *nk);
    int32_t *ni = duet_alloc((size_t)newcap * sizeof *ni);
    if (!nk || !ni) {
        duet_free(nk);
        duet_free(ni);
        return 0;
    }
    memset(nk, 0xff, (size_t)newcap * sizeof *nk);
    uint64_t mask = (uint64_t)newcap - 1;
    for (int64_t i = 0; i < tr->npairs; i++) {
        uint64_t k = pair_key(tr->pairs[i].a, tr->pairs[i].b);
        uint64_t h = hash_u64(k) & mask;
        while (nk[h] != ~0ull) h = (h + 1) & mask;
        nk[h] = k;
        ni[h] = (int32_t)i;
    }
    duet_free(tr->pkey);
    duet_free(tr->pidx);
    tr->pkey = nk;
    tr->pidx = ni;
    tr->pcap = newcap;
    return 1;
}

/* Index of pair (a, b), created with count 0 when new; -1 on NOMEM. */
static int64_t pair_get(trainer *tr, int32_t a, int32_t b) {
    uint64_t k = pair_key(a, b), mask = (uint64_t)tr->pcap - 1;
    uint64_t h = hash_u64(k) & mask;
    for (; tr->pkey[h] != ~0ull; h = (h + 1) & mask)
        if (tr->pkey[h] == k) return tr->pidx[h];
    if (2 * (tr->npairs + 1) > tr->pcap) {
        if (!pairs_rehash(tr, tr->pcap * 2)) return -1;
        return pair_get(tr, a, b);
    }
    if (!grow((void **)&tr->pairs, &tr->cappairs, tr->npairs + 1, sizeof *tr->pairs)) return -1;
    int64_t i = tr->npairs++;
    tr_pair *p = &tr->pairs[i];
    memset(p, 0, sizeof *p);
    p->a = a;
    p->b = b;
    p->stamp = -1;
    tr->pkey[h] = k;
    tr->pidx[h] = (int32_t)i;
    return i;
}

/* Adds delta to pair (a, b) as seen in word w; registers w with the pair
 * when add_word. Returns 0 on NOMEM. */
static int pair_add(trainer *tr, int32_t a, int32_t b, int64_t delta, int32_t w, int add_word) {
    int64_t i = pair_get(tr, a, b);
    if (i < 0) return 0;
    tr_pair *p = &tr->pairs[i];
    p->count += delta;
    if (add_word && (p->nwords == 0 || p->words[p->nwords - 1] != w)) {
        if (!grow((void **)&p->words, &p->capwords, p->nwords + 1, sizeof *p->words)) return 0;
        p->words[p->nwords++] = w;
    }
    return 1;
}

static int entry_before(const tr_entry *x, const tr_entry *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static int heap_push_max(trainer *tr, tr_entry e) {
    if (!grow((void **)&tr->heap, &tr->capheap, tr->nheap + 1, sizeof *tr->heap)) return 0;
    int64_t i = tr->nheap++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!entry_before(&e, &tr->heap[p])) break;
        tr->heap[i] = tr->heap[p];
        i = p;
    }
    tr->heap[i] = e;
    return 1;
}

static tr_entry heap_pop_max(trainer *tr) {
    tr_entry top = tr->heap[0], v = tr->heap[--tr->nheap];
    int64_t i = 0, m = tr->nheap;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && entry_before(&tr->heap[c + 1], &tr->heap[c])) c++;
        if (!entry_before(&tr->heap[c], &v)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (m > 0) tr->heap[i] = v;
    return top;
}

/* Counts distinct pre-tokens of text into the trainer's word arrays. */
static int count_words(trainer *tr, const unsigned char *text, int64_t len) {
    int64_t cap = 1024, n = 0;
    /* table of (start, length, count) keyed by the pre-token's bytes */
    int64_t *ws = NULL, *wc = NULL;
    int32_t *wl = NULL;
    int64_t wcap = 0, wlcap = 0, wccap = 0;
    int32_t *slot = duet_alloc((size_t)cap * sizeof *slot);
    if (!slot) return 0;
    memset(slot, 0xff, (size_t)cap * sizeof *slot);
    int64_t total_syms = 0;
    int ok = 0;
    for (int64_t p = 0; p < len;) {
        int64_t q = pretok_end(text, len, p);
        int64_t l = q - p;
        if (l > INT32_MAX) goto done;
        uint64_t mask = (uint64_t)cap - 1, h = duet_tok_hash(text + p, l) & mask;
        for (; slot[h] >= 0; h = (h + 1) & mask) {
            int32_t w = slot[h];
            if (wl[w] == l && memcmp(text + ws[w], text + p, (size_t)l) == 0) break;
        }
        if (slot[h] >= 0) {
            wc[slot[h]]++;
        } else {
            if (!grow((void **)&ws, &wcap, n + 1, sizeof *ws) ||
                !grow((void **)&wl, &wlcap, n + 1, sizeof *wl) ||
                !grow((void **)&wc, &wccap, n + 1, sizeof *wc))
                goto done;
            ws[n] = p;
            wl[n] = (int32_t)l;
            wc[n] = 1;
            slot[h] = (int32_t)n;
            n++;
            total_syms += l;
            if (2 * n > cap) { /* rehash */
                int64_t nc = cap * 2;
                int32_t *ns = duet_alloc((size_t)nc * sizeof *ns);
                if (!ns) goto done;
                memset(ns, 0xff, (size_t)nc * sizeof *ns);
                uint64_t nm = (uint64_t)nc - 1;
                for (int64_t w = 0; w < n; w++) {
                    uint64_t hh = duet_tok_hash(text + ws[w], wl[w]) & nm;
                    while (ns[hh] >= 0) hh = (hh + 1) & nm;
                    ns[hh] = (int32_t)w;
                }
                duet_free(slot);
                slot = ns;
                cap = nc;
            }
        }
        p = q;
    }
    tr->nwords = n;
    tr->sym = duet_alloc((size_t)(total_syms ? total_syms : 1) * sizeof *tr->sym);
    tr->wstart = duet_alloc((size_t)(n ? n : 1) * sizeof *tr->wstart);
    tr->wstamp = duet_alloc((size_t)(n ? n : 1) * sizeof *tr->wstamp);
    if (!tr->sym || !tr->wstart || !tr->wstamp) goto done;
    int64_t off = 0;
    for (int64_t w = 0; w < n; w++) {
        tr->wstart[w] = off;
        tr->wstamp[w] = -1;
        for (int64_t i = 0; i < wl[w]; i++) tr->sym[off + i] = text[ws[w] + i];
        off += wl[w];
    }
    tr->wlen = wl;
    tr->wcount = wc;
    wl = NULL;
    wc = NULL;
    ok = 1;
done:
    duet_free(slot);
    duet_free(ws);
    duet_free(wl);
    duet_free(wc);
    return ok;
}

/* Merges (a, b) -> c in word w, left to right without overlap, updating the
 * pair counts around each occurrence. */
static int merge_word(trainer *tr, int32_t w, int32_t a, int32_t b, int32_t c, int64_t merge) {
    int32_t *s = tr->sym + tr->wstart[w];
    int32_t n = tr->wlen[w];
    int64_t wc = tr->wcount[w];
    int32_t o = 0; /* output length; s[0..o) is merged already */
    for (int32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            if (o > 0) {
                if (!pair_add(tr, s[o - 1], a, -wc, w, 0)) return 0;
                if (!pair_add(tr, s[o - 1], c, wc, w, 1)) return 0;
            }
            if (i + 2 < n) {
                if (!pair_add(tr, b, s[i + 2], -wc, w, 0)) return 0;
                if (!pair_add(tr, c, s[i + 2], wc, w, 1)) return 0;
            }
            if (!pair_add(tr, a, b, -wc, w, 0)) return 0;
            s[o++] = c;
            i += 2;
        } else {
            s[o++] = s[i++];
        }
    }
    tr->wlen[w] = o;
    /* remember the new pairs of this word, to push their counts afterwards */
    for (int32_t i = 0; i + 1 < o; i++) {
        if (s[i] != c && s[i + 1] != c) continue;
        int64_t pi = pair_get(tr, s[i], s[i + 1]);
        if (pi < 0) return 0;
        if (tr->pairs[pi].stamp == merge) continue;
        tr->pairs[pi].stamp = merge;
        if (!grow((void **)&tr->touched, &tr->captouched, tr->ntouched + 1, sizeof *tr->touched))
            return 0;
        tr->touched[tr->ntouched++] = (int32_t)pi;
    }
    return 1;
}

duet_tokenizer *duet_tokenizer_train(const char *text, int64_t len, int64_t vocab_size,
                                     const duet_tokenizer_train_params *params) {
    duet_clear_error();
    class_init();
    duet_tokenizer_train_params dp;
    if (!params) {
        duet_tokenizer_train_params_default(&dp);
        params = &dp;
    }
    if (vocab_size < 258) {
        duet_set_error(DUET_ERR_ARG, "tokenizer train: vocab size %lld is too small: it needs at "
                       "least 258 (256 bytes + <|endoftext|> + <|pad|>)", (long long)vocab_size);
        return NULL;
    }
    if (vocab_size > INT32_MAX / 2) {
        duet_set_error(DUET_ERR_ARG, "tokenizer train: vocab size %lld is too large",
                       (long long)vocab_size);
        return NULL;
    }
    if (len <= 0 || !text) {
        duet_set_error(DUET_ERR_ARG, "tokenizer train: the training text is empty");
        return NULL;
    }
    int64_t want = vocab_size - 258;
    trainer tr;
    memset(&tr, 0, sizeof tr);
    int32_t *ml = duet_alloc((size_t)(want ? want : 1) * sizeof *ml);
    int32_t *mr = duet_alloc((size_t)(want ? want : 1) * sizeof *mr);
    duet_tokenizer *t = NULL;
    int64_t M = 0;
    if (!ml || !mr) goto nomem;
    if (!count_words(&tr, (const unsigned char *)text, len)) goto nomem;
    tr.pcap = 1024;
    tr.pkey = duet_alloc((size_t)tr.pcap * sizeof *tr.pkey);
    tr.pidx = duet_alloc((size_t)tr.pcap * sizeof *tr.pidx);
    if (!tr.pkey || !tr.pidx) goto nomem;
    memset(tr.pkey, 0xff, (size_t)tr.pcap * sizeof *tr.pkey);
    for (int64_t w = 0; w < tr.nwords; w++) {
        const int32_t *s = tr.sym + tr.wstart[w];
        for (int32_t i = 0; i + 1 < tr.wlen[w]; i++)
            if (!pair_add(&tr, s[i], s[i + 1], tr.wcount[w], (int32_t)w, 1)) goto nomem;
    }
    for (int64_t i = 0; i < tr.npairs; i++) {
        tr_entry e = {tr.pairs[i].count, tr.pairs[i].a, tr.pairs[i].b};
        if (!heap_push_max(&tr, e)) goto nomem;
    }
    int64_t min_freq = params->min_frequency > 1 ? params->min_frequency : 1;
    while (M < want && tr.nheap > 0) {
        /* Every pair with count > 0 has a heap entry with count >= its count
         * (counts only grow for new pairs, which are pushed), so the first
         * entry that matches its pair's current count is the best pair. */
        tr_entry e = heap_pop_max(&tr);
        int64_t pi = pair_get(&tr, e.a, e.b);
        if (pi < 0) goto nomem;
        int64_t cur = tr.pairs[pi].count;
        if (cur <= 0) continue;
        if (cur != e.count) {
            e.count = cur;
            if (!heap_push_max(&tr, e)) goto nomem;
            continue;
        }
        if (cur < min_freq) break;
        int32_t c = (int32_t)(256 + M);
        ml[M] = e.a;
        mr[M] = e.b;
        tr.ntouched = 0;
        /* the word list is not appended to during this merge (new pairs
         * contain c, never (a, b)), but tr.pairs may move: copy out */
        int32_t *words = tr.pairs[pi].words;
        int64_t nw = tr.pairs[pi].nwords;
        for (int64_t k = 0; k < nw; k++) {
            int32_t w = words[k];
            if (tr.wstamp[w] == M) continue;
            tr.wstamp[w] = M;
            if (!merge_word(&tr, w, e.a, e.b, c, M)) goto nomem;
        }
        /* the pair is gone from every word: drop its word list */
        duet_free(tr.pairs[pi].words);
        tr.pairs[pi].words = NULL;
        tr.pairs[pi].nwords = tr.pairs[pi].capwords = 0;
        for (int64_t k = 0; k < tr.ntouched; k++) {
            tr_pair *p = &tr.pairs[tr.touched[k]];
            if (p->count > 0) {
                tr_entry ne = {p->count, p->a, p->b};
                if (!heap_push_max(&tr, ne)) goto nomem;
            }
        }
        M++;
        if (params->progress && (M % 64 == 0)) params->progress(params->progress_ud, M, want);
    }
    if (params->progress) params->progress(params->progress_ud, M, want);
    t = tok_from_merges(ml, mr, M);
    trainer_free(&tr);
    duet_free(ml);
    duet_free(mr);
    return t;
nomem:
    trainer_free(&tr);
    duet_free(ml);
    duet_free(mr);
    duet_set_error(DUET_ERR_NOMEM, "tokenizer train: out of memory");
    return NULL;
}

/* ======================================================================== */
/* tokenizer.json: the bytes_to_unicode alphabet                             */
/* ======================================================================== */

/* Hugging Face's (GPT-2's) bytes_to_unicode: printable bytes map to
 * themselves, the other 68 to U+0100.. in byte order. */
static void byte_to_codepoint_table(uint32_t cp[256]) {
    uint32_t n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        cp[b] = printable ? (uint32_t)b : 256 + n++;
    }
}

static int put_utf8(char *dst, uint32_t cp) {
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    dst[0] = (char)(0xC0 | (cp >> 6));
    dst[1] = (char)(0x80 | (cp & 0x3F));
    return 2; /* every code point of the alphabet is below U+0800 */
}

int64_t duet_tok_from_byte_level(const char *s, int64_t n, const int16_t *cp_to_byte, char *out) {
    int64_t o = 0;
    for (int64_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        if (c < 0x80) {
            cp = c;
            i++;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < n) {
            cp = ((uint32_t)(c & 0x1F) << 6) | ((unsigned char)s[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1;
        }
        if (cp >= 324 || cp_to_byte[cp] < 0) return -1;
        out[o++] = (char)cp_to_byte[cp];
    }
    return o;
}

void duet_tok_byte_level_inverse(int16_t c2b[324]) {
    uint32_t b2c[256];
    byte_to_codepoint_table(b2c);
    for (int i = 0; i < 324; i++) c2b[i] = -1;
    for (int b = 0; b < 256; b++) c2b[b2c[b]] = (int16_t)b;
}

/* ======================================================================== */
/* Saving                                                                    */
/* ======================================================================== */

typedef struct sbuf {
    char *p;
    int64_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, int64_t n) {
    if (b->oom) return;
    if (!grow((void **)&b->p, &b->cap, b->n + n + 1, 1)) {
        b->oom = 1;
        return;
    }
    memcpy(b->p + b->n, s, (size_t)n);
    b->n += n;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, (int64_t)strlen(s)); }

/* A JSON string literal of raw bytes s[0..n) (already valid UTF-8). */
static void sb_json_string(sbuf *b, const char *s, int64_t n) {
    size_t need = duet_json_escape(NULL, 0, s, (size_t)n);
    if (b->oom || !grow((void **)&b->p, &b->cap, b->n + (int64_t)need + 1, 1)) {
        b->oom = 1;
        return;
    }
    duet_json_escape(b->p + b->n, need + 1, s, (size_t)n);
    b->n += (int64_t)need;
}

/* The vocab string of token id: byte-level alphabet, or the raw text of a special. */
static void sb_token(sbuf *b, const duet_tokenizer *t, const uint32_t *cp, int32_t id, char *tmp) {
    const char *s = tok_bytes(t, id);
    int64_t n = tok_len(t, id);
    if (t->special[id]) {
        sb_json_string(b, s, n);
        return;
    }
    int64_t o = 0;
    for (int64_t i = 0; i < n; i++) o += put_utf8(tmp + o, cp[(unsigned char)s[i]]);
    sb_json_string(b, tmp, o);
}

duet_status duet_tokenizer_save(const duet_tokenizer *t, const char *path) {
    if (t->kind != DUET_TOKENIZER_BYTE_BPE)
        return duet_set_error(DUET_ERR_UNSUPPORTED, "tokenizer save '%s': only duet's own byte-level "
                              "BPE tokenizers are saved; a %s vocabulary stays in its model file",
                              path, t->kind == DUET_TOKENIZER_SPM ? "SentencePiece" : "GPT-2 BPE");
    uint32_t cp[256];
    byte_to_codepoint_table(cp);
    int64_t maxlen = 0;
    for (int32_t id = 0; id < t->V; id++) maxlen = DUET_MAX(maxlen, tok_len(t, id));
    char *tmp = duet_alloc((size_t)(4 * maxlen + 8)); /* two tokens, 2 UTF-8 bytes per byte */
    if (!tmp) return duet_set_error(DUET_ERR_NOMEM, "tokenizer save '%s': out of memory", path);
    sbuf b = {0};
    char num[64];
    sb_str(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
               "  \"added_tokens\": [");
    int first = 1;
    for (int32_t id = 0; id < t->V; id++) {
        if (!t->special[id]) continue;
        snprintf(num, sizeof num, "%s\n    {\"id\": %d, \"content\": ", first ? "" : ",", id);
        sb_str(&b, num);
        sb_json_string(&b, tok_bytes(t, id), tok_len(t, id));
        sb_str(&b, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                   "\"normalized\": false, \"special\": true}");
        first = 0;
    }
    sb_str(&b, first ? "],\n" : "\n  ],\n");
    sb_str(&b, "  \"normalizer\": null,\n"
               "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
               "\"trim_offsets\": true, \"use_regex\": true},\n"
               "  \"post_processor\": null,\n"
               "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
               "\"trim_offsets\": true, \"use_regex\": true},\n"
               "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
               "    \"unk_token\": null,\n    \"continuing_subword_prefix\": null,\n"
               "    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
               "    \"byte_fallback\": false,\n    \"vocab\": {");
    for (int32_t id = 0; id < t->V; id++) {
        sb_str(&b, id ? ",\n      " : "\n      ");
        sb_token(&b, t, cp, id, tmp);
        snprintf(num, sizeof num, ": %d", id);
        sb_str(&b, num);
    }
    sb_str(&b, "\n    },\n    \"merges\": [");
    for (int64_t r = 0; r < t->n_merges; r++) {
        /* "left right" in the byte-level alphabet (which has no space) */
        sb_str(&b, r ? ",\n      " : "\n      ");
        int64_t o = 0;
        for (int side = 0; side < 2; side++) {
            int32_t id = side ? t->merge_right[r] : t->merge_left[r];
            const char *s = tok_bytes(t, id);
            if (side) tmp[o++] = ' ';
            for (int64_t i = 0; i < tok_len(t, id); i++) o += put_utf8(tmp + o, cp[(unsigned char)s[i]]);
        }
        sb_json_string(&b, tmp, o);
    }
    sb_str(&b, t->n_merges ? "\n    ]\n  }\n}\n" : "]\n  }\n}\n");
    duet_free(tmp);
    if (b.oom) {
        duet_free(b.p);
        return duet_set_error(DUET_ERR_NOMEM, "tokenizer save '%s': out of memory", path);
    }
    duet_status st = duet_write_file_atomic(path, b.p, (size_t)b.n);
    duet_free(b.p);
    return st;
}

/* ======================================================================== */
/* Loading                                                                   */
/* ======================================================================== */

/* Reads a whole file into a new buffer (*n bytes). */
static char *read_file(const char *path, int64_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        duet_set_error(DUET_ERR_IO, "tokenizer '%s': cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    int64_t cap = 0, len = 0;
    for (;;) {
        if (!grow((void **)&buf, &cap, len + 65536, 1)) {
            fclose(f);
            duet_free(buf);
            duet_set_error(DUET_ERR_NOMEM, "tokenizer '%s': out of memory reading the file", path);
            return NULL;
        }
        size_t got = fread(buf + len, 1, (size_t)(cap - len), f);
        len += (int64_t)got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        duet_free(buf);
        duet_set_error(DUET_ERR_IO, "tokenizer '%s': read failed", path);
        return NULL;
    }
    *n = len;
    return buf;
}

/* Looks up a merge half (byte-level string) as an ordinary token. */
static int32_t merge_part(const duet_tokenizer *t, const int16_t *c2b, const char *s, int64_t n,
                          char *tmp) {
    int64_t nb = duet_tok_from_byte_level(s, n, c2b, tmp);
    if (nb <= 0) return -1;
    return duet_tok_lookup(t, tmp, nb, 1);
}

#define LOAD_FAIL(st, ...)                                                                   \
    do {                                                                                     \
        duet_set_error(st, __VA_ARGS__);                                                     \
        goto fail;                                                                           \
    } while (0)

static duet_tokenizer *load_text(const char *path, char *text, int64_t flen);

duet_tokenizer *duet_tokenizer_load(const char *path) {
    duet_clear_error();
    int64_t flen = 0;
    char *text = read_file(path, &flen);
    if (!text) return NULL;
    return load_text(path, text, flen);
}

duet_tokenizer *duet_tokenizer_from_json(const char *json, int64_t len, const char *name) {
    duet_clear_error();
    if (len < 0) len = (int64_t)strlen(json);
    char *text = duet_alloc((size_t)len + 1);
    if (!text) {
        duet_set_error(DUET_ERR_NOMEM, "tokenizer '%s': out of memory", name);
        return NULL;
    }
    memcpy(text, json, (size_t)len);
    return load_text(name, text, len);
}

/* Parses tokenizer.json text (takes ownership of text; path names it in
 * messages). */
static duet_tokenizer *load_text(const char *path, char *text, int64_t flen) {
    class_init();
    duet_json *root = NULL;
    duet_tokenizer *t = NULL;
    int32_t *added_id = NULL;
    const duet_json **src = NULL; /* id -> its vocab member */
    char *tmp = NULL;
    uint32_t b2c[256];
    int16_t c2b[324];
    byte_to_codepoint_table(b2c);
    for (int i = 0; i < 324; i++) c2b[i] = -1;
    for (int b = 0; b < 256; b++) c2b[b2c[b]] = (int16_t)b;

    if (flen == 0) LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': the file is empty", path);
    duet_json_error jerr;
    root = duet_json_parse(text, (size_t)flen, &jerr);
    if (!root)
        LOAD_FAIL(jerr.status == DUET_ERR_NOMEM ? DUET_ERR_NOMEM : DUET_ERR_FORMAT,
                  "tokenizer '%s': not valid JSON: %s at line %lld, column %lld", path, jerr.msg,
                  (long long)jerr.line, (long long)jerr.col);
    if (root->type != DUET_JSON_OBJECT)
        LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': the top level is %s, expected an object "
                  "(a Hugging Face tokenizer.json)", path, duet_json_type_phrase(root->type));
    const duet_json *model = duet_json_get(root, "model");
    if (!model || model->type != DUET_JSON_OBJECT)
        LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': no \"model\" object; expected a Hugging "
                  "Face tokenizer.json with a BPE model", path);
    const char *mtype = duet_json_get_str(model, "type", NULL);
    if (mtype && strcmp(mtype, "BPE") != 0)
        LOAD_FAIL(DUET_ERR_UNSUPPORTED, "tokenizer '%s': model.type is \"%s\"; only byte-level "
                  "\"BPE\" models are supported", path, mtype);
    const duet_json *vocab = duet_json_get(model, "vocab");
    if (!vocab || vocab->type != DUET_JSON_OBJECT)
        LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': model.vocab is %s; expected an object of "
                  "token -> id", path, vocab ? duet_json_type_phrase(vocab->type) : "missing");
    const duet_json *merges = duet_json_get(model, "merges");
    if (!merges || merges->type != DUET_JSON_ARRAY)
        LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': model.merges is %s; expected an array of "
                  "\"a b\" strings or [\"a\", \"b\"] pairs", path,
                  merges ? duet_json_type_phrase(merges->type) : "missing");
    const duet_json *added = duet_json_get(root, "added_tokens");
    if (added && added->type != DUET_JSON_ARRAY && added->type != DUET_JSON_NULL)
        LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': added_tokens is %s; expected an array", path,
                  duet_json_type_phrase(added->type));
    int64_t nadded = added && added->type == DUET_JSON_ARRAY ? added->len : 0;

    /* the vocabulary size: largest id + 1 over vocab and added_tokens */
    const int64_t ID_LIMIT = (int64_t)1 << 24;
    int64_t V = 0;
    for (int64_t i = 0; i < vocab->len; i++) {
        const duet_json *m = &vocab->items[i];
        int64_t id;
        if (!duet_json_as_int(m, &id) || id < 0 || id >= ID_LIMIT)
            LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': model.vocab[\"%s\"] must be a whole "
                      "number in [0, %lld)", path, m->key, (long long)ID_LIMIT);
        V = DUET_MAX(V, id + 1);
    }
    for (int64_t i = 0; i < nadded; i++) {
        const duet_json *a = &added->items[i];
        int64_t id;
        if (a->type != DUET_JSON_OBJECT || !duet_json_as_int(duet_json_get(a, "id"), &id) ||
            id < 0 || id >= ID_LIMIT || !duet_json_as_str(duet_json_get(a, "content")))
            LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': added_tokens[%lld] needs an \"id\" in "
                      "[0, %lld) and a \"content\" string", path, (long long)i, (long long)ID_LIMIT);
        V = DUET_MAX(V, id + 1);
    }
    if (V < 256)
        LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': model.vocab has %lld ids; a byte-level BPE "
                  "needs at least the 256 bytes", path, (long long)V);

    t = duet_calloc(1, sizeof *t);
    added_id = duet_alloc((size_t)V * sizeof *added_id); /* id -> index in added_tokens, or -1 */
    if (!t || !added_id) goto nomem;
    t->V = V;
    t->tok_off = duet_alloc((size_t)(V + 1) * sizeof *t->tok_off);
    t->special = duet_calloc((size_t)V, 1);
    src = duet_calloc((size_t)V, sizeof *src);
    if (!t->tok_off || !t->special || !src) goto nomem;
    for (int64_t id = 0; id < V; id++) added_id[id] = -1;
    for (int64_t i = 0; i < nadded; i++) {
        const duet_json *a = &added->items[i];
        int64_t id = duet_json_get_int(a, "id", -1);
        added_id[id] = (int32_t)i;
        t->special[id] = 1;
    }
    int64_t pool_bytes = 0, maxlen = 1;
    for (int64_t i = 0; i < vocab->len; i++) {
        const duet_json *m = &vocab->items[i];
        int64_t id = m->i64;
        if (src[id]) {
            LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': model.vocab gives id %lld to both \"%s\" "
                      "and \"%s\"", path, (long long)id, src[id]->key, m->key);
        }
        src[id] = m;
        pool_bytes += m->key_len + 1;
        maxlen = DUET_MAX(maxlen, m->key_len);
    }
    for (int64_t i = 0; i < nadded; i++) {
        const duet_json *c = duet_json_get(&added->items[i], "content");
        pool_bytes += c->len + 1;
        maxlen = DUET_MAX(maxlen, c->len);
    }
    for (int64_t id = 0; id < V; id++) {
        if (!src[id] && added_id[id] < 0) {
            LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': no token has id %lld (ids must run "
                      "0..%lld without gaps)", path, (long long)id, (long long)(V - 1));
        }
    }
    t->pool = duet_alloc((size_t)pool_bytes);
    tmp = duet_alloc((size_t)(2 * maxlen + 8));
    if (!t->pool || !tmp) goto nomem;
    int64_t off = 0;
    for (int64_t id = 0; id < V; id++) {
        t->tok_off[id] = off;
        char *dst = t->pool + off;
        int64_t n;
        if (added_id[id] >= 0) { /* specials keep their text as is */
            const duet_json *c = duet_json_get(&added->items[added_id[id]], "content");
            memcpy(dst, c->str, (size_t)c->len);
            n = c->len;
        } else {
            n = duet_tok_from_byte_level(src[id]->key, src[id]->key_len, c2b, dst);
            if (n < 0)
                LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': model.vocab entry \"%s\" (id %lld) "
                          "is not in the ByteLevel alphabet; only byte-level BPE vocabularies "
                          "(GPT-2 style) are supported", path, src[id]->key, (long long)id);
        }
        dst[n] = 0;
        off += n + 1;
    }
    t->tok_off[V] = off;
    char where[512];
    snprintf(where, sizeof where, "tokenizer '%s'", path);
    if (tok_finish_tokens(t, where) != DUET_OK) goto fail;

    /* merges, in rank order */
    int64_t M = merges->len;
    t->n_merges = M;
    t->merge_left = duet_alloc((size_t)(M ? M : 1) * sizeof(int32_t));
    t->merge_right = duet_alloc((size_t)(M ? M : 1) * sizeof(int32_t));
    t->merge_out = duet_alloc((size_t)(M ? M : 1) * sizeof(int32_t));
    if (!t->merge_left || !t->merge_right || !t->merge_out) goto nomem;
    for (int64_t r = 0; r < M; r++) {
        const duet_json *m = &merges->items[r];
        const char *a = NULL, *b = NULL;
        int64_t na = 0, nb = 0;
        if (m->type == DUET_JSON_STRING) {
            const char *sp = memchr(m->str, ' ', (size_t)m->len);
            if (sp && !memchr(sp + 1, ' ', (size_t)(m->len - (sp + 1 - m->str)))) {
                a = m->str;
                na = sp - m->str;
                b = sp + 1;
                nb = m->len - na - 1;
            }
        } else if (m->type == DUET_JSON_ARRAY && m->len == 2 &&
                   m->items[0].type == DUET_JSON_STRING && m->items[1].type == DUET_JSON_STRING) {
            a = m->items[0].str;
            na = m->items[0].len;
            b = m->items[1].str;
            nb = m->items[1].len;
        }
        if (!a)
            LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': model.merges[%lld] must be a string "
                      "\"a b\" (one space) or a pair [\"a\", \"b\"]", path, (long long)r);
        int32_t ia = merge_part(t, c2b, a, na, tmp);
        int32_t ib = merge_part(t, c2b, b, nb, tmp);
        if (ia < 0 || ib < 0)
            LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': model.merges[%lld] refers to \"%.*s\", "
                      "which is not a token of model.vocab", path, (long long)r,
                      (int)(ia < 0 ? na : nb), ia < 0 ? a : b);
        int64_t la = tok_len(t, ia), lb = tok_len(t, ib);
        memcpy(tmp, tok_bytes(t, ia), (size_t)la);
        memcpy(tmp + la, tok_bytes(t, ib), (size_t)lb);
        int32_t out = duet_tok_lookup(t, tmp, la + lb, 1);
        if (out < 0)
            LOAD_FAIL(DUET_ERR_FORMAT, "tokenizer '%s': model.merges[%lld] \"%.*s\" + \"%.*s\" "
                      "makes a token that is not in model.vocab", path, (long long)r, (int)na, a,
                      (int)nb, b);
        t->merge_left[r] = ia;
        t->merge_right[r] = ib;
        t->merge_out[r] = out;
    }
    if (duet_tok_index_merges(t) != DUET_OK) goto fail;
    duet_free(tmp);
    duet_free(src);
    duet_free(added_id);
    duet_json_free(root);
    duet_free(text);
    return t;
nomem:
    duet_set_error(DUET_ERR_NOMEM, "tokenizer '%s': out of memory", path);
fail:
    duet_free(tmp);
    duet_free(src);
    duet_free(added_id);
    duet_tokenizer_free(t);
    duet_json_free(root);
    duet_free(text);
    return NULL;
}
