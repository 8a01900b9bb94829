/*
 * spm.c — SentencePiece-style BPE as llama.cpp's "llama" tokenizer model runs
 * it (Llama 1/2, Mistral, TinyLlama, llama2.c): a vocabulary of pieces with
 * scores and token types, built from plain arrays (GGUF tokenizer.ggml.*,
 * a llama2.c tokenizer.bin, ...).
 *
 * Encoding one run of text (special tokens are split off before, in bpe.c):
 *   1. every ' ' becomes U+2581 "▁", and with add_space_prefix a "▁" goes in
 *      front (llama.cpp does this for the first run and for every run after a
 *      special token, which is every run);
 *   2. the text is cut into UTF-8 characters, each as long as its lead byte
 *      says (continuation and invalid lead bytes: 1), cut at the end;
 *   3. while some adjacent pair's concatenation is a piece, merge the pair
 *      whose piece has the highest score (ties: the leftmost pair), with a
 *      max-heap of candidate pairs and lazy deletion of stale ones;
 *   4. each symbol left is its piece's id, or, when it is no piece, one token
 *      per byte: the BYTE token "<0xXX>", else the one-byte piece, else unk.
 * What it is not: SentencePiece's unigram model, its normalizer (NFKC), or
 * sampling; the handle, special tokens and decoding are shared (bpe.c).
 */
#include "core/internal.h"
#include "tokenizer/bpe.h"

#include <math.h>
#include <string.h>

struct duet_spm {
    char *ppool;      /* piece texts as matched: "▁the" (NUL after each) */
    int64_t *poff;    /* [V + 1] */
    float *score;     /* [V] */
    int32_t *pslot;   /* piece text -> lowest id: open addressing, -1 empty */
    int64_t pcap;
    int32_t byte_tok[256];
};

void duet_spm_free(duet_spm *s) {
    if (!s) return;
    duet_free(s->ppool);
    duet_free(s->poff);
    duet_free(s->score);
    duet_free(s->pslot);
    duet_free(s);
}

static int32_t piece_lookup(const duet_spm *m, const unsigned char *s, int64_t n) {
    uint64_t mask = (uint64_t)m->pcap - 1;
    for (uint64_t i = duet_tok_hash(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = m->pslot[i];
        if (id < 0) return -1;
        if (m->poff[id + 1] - m->poff[id] - 1 == n && memcmp(m->ppool + m->poff[id], s, (size_t)n) == 0)
            return id;
    }
}

/* ======================================================================== */
/* Encoding                                                                  */
/* ======================================================================== */

/* int32 positions: a segment's escaped text is limited to INT32_MAX / 3
 * bytes (encode reports NOMEM beyond). Scratch per escaped byte: the byte,
 * a symbol (16 bytes) and room for 3 heap entries (48 bytes); a symbol per
 * byte is the worst case (llama.cpp's split can cut a "▁" into pieces). */
typedef struct spm_sym {
    int32_t start, n;   /* bytes of the escaped text; n == 0: merged away */
    int32_t prev, next; /* -1 at the ends */
} spm_sym;

typedef struct spm_pair {
    float score;
    int32_t l, r, size; /* the two symbols and their joint length when pushed */
} spm_pair;

typedef struct spm_scratch {
    unsigned char *text;
    spm_sym *sym;
    spm_pair *heap;
    int64_t cap, nheap; /* escaped bytes (= symbols) the arrays hold */
} spm_scratch;

void duet_spm_scratch_free(void *scratch) {
    spm_scratch *sc = scratch;
    if (!sc) return;
    duet_free(sc->text);
    duet_free(sc->sym);
    duet_free(sc->heap);
    duet_free(sc);
}

/* Room for m escaped bytes. */
static int scratch_reserve(spm_scratch *sc, int64_t m) {
    if (m <= sc->cap) return 1;
    if (3 * m > INT32_MAX) return 0;
    int64_t c = 256;
    while (c < m) c *= 2;
    duet_free(sc->text);
    duet_free(sc->sym);
    duet_free(sc->heap);
    sc->text = duet_alloc((size_t)c);
    sc->sym = duet_alloc((size_t)c * sizeof *sc->sym);
    /* pushes: ns - 1 at the start + 2 per merge (at most ns - 1) < 3 ns <= 3m */
    sc->heap = duet_alloc((size_t)(3 * c) * sizeof *sc->heap);
    if (!sc->text || !sc->sym || !sc->heap) {
        duet_free(sc->text);
        duet_free(sc->sym);
        duet_free(sc->heap);
        sc->text = NULL;
        sc->sym = NULL;
        sc->heap = NULL;
        sc->cap = 0;
        return 0;
    }
    sc->cap = c;
    return 1;
}

/* a comes out of the heap before b: higher score, then the leftmost */
static int pair_before(const spm_pair *a, const spm_pair *b) {
    if (a->score != b->score) return a->score > b->score;
    return a->l < b->l;
}

static void heap_push(spm_scratch *sc, spm_pair e) {
    int64_t i = sc->nheap++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!pair_before(&e, &sc->heap[p])) break;
        sc->heap[i] = sc->heap[p];
        i = p;
    }
    sc->heap[i] = e;
}

static spm_pair heap_pop(spm_scratch *sc) {
    spm_pair top = sc->heap[0], v = sc->heap[--sc->nheap];
    int64_t i = 0, m = sc->nheap;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && pair_before(&sc->heap[c + 1], &sc->heap[c])) c++;
        if (!pair_before(&sc->heap[c], &v)) break;
        sc->heap[i] = sc->heap[c];
        i = c;
    }
    if (m > 0) sc->heap[i] = v;
    return top;
}

/* Pushes the pair (l, r) when their concatenation is a piece. */
static void try_pair(const duet_spm *m, spm_scratch *sc, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    int32_t size = sc->sym[l].n + sc->sym[r].n;
    int32_t id = piece_lookup(m, sc->text + sc->sym[l].start, size);
    if (id < 0) return;
    spm_pair e = {m->score[id], l, r, size};
    heap_push(sc, e);
}

static void emit(int32_t id, int32_t *ids, int64_t cap, int64_t *count) {
    if (*count < cap) ids[*count] = id;
    (*count)++;
}

int duet_spm_encode_segment(const duet_tokenizer *t, void **scratch, const unsigned char *text,
                            int64_t n, int32_t *ids, int64_t cap, int64_t *count) {
    const duet_spm *m = t->spm;
    spm_scratch *sc = *scratch;
    if (!sc) {
        sc = duet_calloc(1, sizeof *sc);
        if (!sc) return 0;
        *scratch = sc;
    }
    int64_t spaces = 0;
    for (int64_t i = 0; i < n; i++) spaces += text[i] == ' ';
    if (!scratch_reserve(sc, (t->add_space_prefix ? 3 : 0) + n + 2 * spaces)) return 0;
    /* 1. escape */
    static const unsigned char LOWER_BLOCK[3] = {0xE2, 0x96, 0x81}; /* U+2581 */
    int64_t L = 0;
    if (t->add_space_prefix) {
        memcpy(sc->text, LOWER_BLOCK, 3);
        L = 3;
    }
    for (int64_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            memcpy(sc->text + L, LOWER_BLOCK, 3);
            L += 3;
        } else {
            sc->text[L++] = text[i];
        }
    }
    /* 2. characters by lead byte */
    static const unsigned char LEN_BY_NIBBLE[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    int32_t ns = 0;
    for (int32_t p = 0; p < L; ns++) {
        int32_t len = (int32_t)DUET_MIN((int64_t)LEN_BY_NIBBLE[sc->text[p] >> 4], L - p);
        sc->sym[ns].start = p;
        sc->sym[ns].n = len;
        sc->sym[ns].prev = ns - 1;
        sc->sym[ns].next = p + len < L ? ns + 1 : -1;
        p += len;
    }
    /* 3. merges by score */
    sc->nheap = 0;
    for (int32_t i = 0; i + 1 < ns; i++) try_pair(m, sc, i, i + 1);
    while (sc->nheap > 0) {
        spm_pair e = heap_pop(sc);
        spm_sym *a = &sc->sym[e.l], *b = &sc->sym[e.r];
        /* stale: one side was merged away, or grew since the push */
        if (a->n == 0 || b->n == 0 || a->n + b->n != e.size) continue;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (a->next >= 0) sc->sym[a->next].prev = e.l;
        try_pair(m, sc, a->prev, e.l);
        try_pair(m, sc, e.l, a->next);
    }
    /* 4. pieces, or bytes */
    for (int32_t i = ns > 0 ? 0 : -1; i >= 0; i = sc->sym[i].next) {
        const spm_sym *s = &sc->sym[i];
        int32_t id = piece_lookup(m, sc->text + s->start, s->n);
        if (id >= 0) {
            emit(id, ids, cap, count);
        } else {
            for (int32_t k = 0; k < s->n; k++) emit(m->byte_tok[sc->text[s->start + k]], ids, cap, count);
        }
    }
    return 1;
}

/* ======================================================================== */
/* Construction                                                              */
/* ======================================================================== */

static int hex_val(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xXX>" text, or -1. */
static int byte_piece(const char *s, int64_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int hi = hex_val(s[3]), lo = hex_val(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int64_t str_len(const char *const *s, const int64_t *lens, int64_t i) {
    return lens ? lens[i] : (int64_t)strlen(s[i]);
}

#define SPM_FAIL(st, ...)                                                                    \
    do {                                                                                     \
        duet_set_error(st, __VA_ARGS__);                                                     \
        goto fail;                                                                           \
    } while (0)

duet_tokenizer *duet_tokenizer_new_spm(const duet_tokenizer_vocab *v) {
    duet_clear_error();
    const int64_t ID_LIMIT = (int64_t)1 << 30;
    if (!v || v->n <= 0 || v->n >= ID_LIMIT || !v->tokens) {
        duet_set_error(DUET_ERR_ARG, "spm tokenizer: the vocabulary needs 1..2^30 tokens (got "
                       "%lld) and a tokens array", v ? (long long)v->n : 0LL);
        return NULL;
    }
    const int64_t V = v->n;
    int32_t sp[4] = {v->bos, v->eos, v->unk, v->pad};
    static const char *const SP_NAME[4] = {"bos", "eos", "unk", "pad"};
    for (int k = 0; k < 4; k++) {
        if (sp[k] < -1 || sp[k] >= V) {
            duet_set_error(DUET_ERR_ARG, "spm tokenizer: %s id %d is outside the vocabulary "
                           "[0, %lld) (use -1 for none)", SP_NAME[k], sp[k], (long long)V);
            return NULL;
        }
    }
    duet_tokenizer *t = duet_calloc(1, sizeof *t);
    duet_spm *m = duet_calloc(1, sizeof *m);
    if (!t || !m) {
        duet_free(t);
        duet_free(m);
        goto nomem_early;
    }
    t->kind = DUET_TOKENIZER_SPM;
    t->spm = m;
    t->V = V;
    t->tok_off = duet_alloc((size_t)(V + 1) * sizeof *t->tok_off);
    t->special = duet_calloc((size_t)V, 1);
    t->type = duet_alloc((size_t)V);
    m->poff = duet_alloc((size_t)(V + 1) * sizeof *m->poff);
    m->score = duet_alloc((size_t)V * sizeof *m->score);
    if (!t->tok_off || !t->special || !t->type || !m->poff || !m->score) goto nomem;
    /* types, sizes */
    int64_t ppool = 0, pool = 0;
    for (int64_t id = 0; id < V; id++) {
        if (!v->tokens[id]) SPM_FAIL(DUET_ERR_ARG, "spm tokenizer: token %lld is NULL", (long long)id);
        int64_t l = str_len(v->tokens, v->token_lens, id);
        if (l < 0) SPM_FAIL(DUET_ERR_ARG, "spm tokenizer: token %lld has length %lld", (long long)id, (long long)l);
        const char *s = v->tokens[id];
        int ty;
        if (v->types) {
            ty = v->types[id];
            if (ty < DUET_TOKEN_UNDEFINED || ty > DUET_TOKEN_BYTE)
                SPM_FAIL(DUET_ERR_FORMAT, "spm tokenizer: token %lld has type %d; types are 0..6 "
                         "(tokenizer.ggml.token_type)", (long long)id, ty);
            if (ty == DUET_TOKEN_UNDEFINED) ty = DUET_TOKEN_NORMAL;
        } else if (id == v->bos || id == v->eos || id == v->pad) {
            ty = DUET_TOKEN_CONTROL;
        } else if (id == v->unk) {
            ty = DUET_TOKEN_UNKNOWN;
        } else {
            ty = byte_piece(s, l) >= 0 ? DUET_TOKEN_BYTE : DUET_TOKEN_NORMAL;
        }
        if (ty == DUET_TOKEN_BYTE && byte_piece(s, l) < 0)
            SPM_FAIL(DUET_ERR_FORMAT, "spm tokenizer: token %lld \"%.*s\" has type BYTE but is "
                     "not \"<0xXX>\"", (long long)id, (int)l, s);
        float sc = v->scores ? v->scores[id] : 0.0f;
        if (isnan(sc))
            SPM_FAIL(DUET_ERR_FORMAT, "spm tokenizer: token %lld \"%.*s\" has a NaN score",
                     (long long)id, (int)l, s);
        m->score[id] = sc;
        t->type[id] = (uint8_t)ty;
        t->special[id] = ty == DUET_TOKEN_USER_DEFINED                             ? DUET_SPEC_USER
                         : ty == DUET_TOKEN_CONTROL || ty == DUET_TOKEN_UNKNOWN ? DUET_SPEC_CONTROL
                                                                                 : DUET_SPEC_NONE;
        int64_t spaces = 0;
        if (v->ascii_space && ty != DUET_TOKEN_CONTROL && ty != DUET_TOKEN_BYTE)
            for (int64_t i = 0; i < l; i++) spaces += s[i] == ' ';
        ppool += l + 2 * spaces + 1;
        pool += l + 1;
    }
    m->ppool = duet_alloc((size_t)ppool);
    t->pool = duet_alloc((size_t)pool);
    if (!m->ppool || !t->pool) goto nomem;
    /* piece texts and token bytes */
    int64_t po = 0, to = 0;
    for (int64_t id = 0; id < V; id++) {
        const char *s = v->tokens[id];
        int64_t l = str_len(v->tokens, v->token_lens, id);
        int ty = t->type[id];
        int conv = v->ascii_space && ty != DUET_TOKEN_CONTROL && ty != DUET_TOKEN_BYTE;
        m->poff[id] = po;
        for (int64_t i = 0; i < l; i++) {
            if (conv && s[i] == ' ') {
                memcpy(m->ppool + po, "\xE2\x96\x81", 3);
                po += 3;
            } else {
                m->ppool[po++] = s[i];
            }
        }
        m->ppool[po++] = 0;
        /* what decoding gives: by type */
        const char *ps = m->ppool + m->poff[id];
        int64_t pl = po - 1 - m->poff[id];
        t->tok_off[id] = to;
        if (ty == DUET_TOKEN_BYTE) {
            t->pool[to++] = (char)byte_piece(ps, pl);
        } else if (ty == DUET_TOKEN_CONTROL || ty == DUET_TOKEN_USER_DEFINED) {
            memcpy(t->pool + to, ps, (size_t)pl);
            to += pl;
        } else {
            for (int64_t i = 0; i < pl; i++) {
                if (i + 2 < pl && memcmp(ps + i, "\xE2\x96\x81", 3) == 0) {
                    t->pool[to++] = ' ';
                    i += 2;
                } else {
                    t->pool[to++] = ps[i];
                }
            }
        }
        t->pool[to++] = 0;
    }
    m->poff[V] = po;
    t->tok_off[V] = to;
    /* piece text -> id (the lowest id of equal texts) */
    m->pcap = 16;
    while (m->pcap < 2 * V + 1) m->pcap *= 2;
    m->pslot = duet_alloc((size_t)m->pcap * sizeof *m->pslot);
    if (!m->pslot) goto nomem;
    memset(m->pslot, 0xff, (size_t)m->pcap * sizeof *m->pslot);
    uint64_t mask = (uint64_t)m->pcap - 1;
    for (int32_t id = 0; id < V; id++) {
        const unsigned char *ps = (const unsigned char *)m->ppool + m->poff[id];
        int64_t pl = m->poff[id + 1] - m->poff[id] - 1;
        if (piece_lookup(m, ps, pl) >= 0) continue;
        uint64_t i = duet_tok_hash(ps, pl) & mask;
        while (m->pslot[i] >= 0) i = (i + 1) & mask;
        m->pslot[i] = id;
    }
    /* byte fallback: "<0xXX>", else the one-byte piece, else unk */
    for (int b = 0; b < 256; b++) m->byte_tok[b] = -1;
    for (int32_t id = 0; id < V; id++) {
        if (t->type[id] != DUET_TOKEN_BYTE) continue;
        int b = (unsigned char)t->pool[t->tok_off[id]];
        if (m->byte_tok[b] < 0) m->byte_tok[b] = id;
    }
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        if (m->byte_tok[b] < 0) m->byte_tok[b] = piece_lookup(m, &c, 1);
        if (m->byte_tok[b] < 0) m->byte_tok[b] = v->unk;
        if (m->byte_tok[b] < 0)
            SPM_FAIL(DUET_ERR_FORMAT, "spm tokenizer: byte 0x%02x has no token: no \"<0x%02X>\" "
                     "BYTE token, no one-byte piece, and no unk id to fall back to", b, b);
        t->byte_id[b] = -1; /* the byte-level tables are not used by this kind */
    }
    if (duet_tok_index(t, "spm tokenizer", 0) != DUET_OK) goto nomem; /* only NOMEM when not strict */
    t->bos = v->bos;
    t->eos = v->eos;
    t->unk = v->unk;
    t->pad = v->pad;
    t->add_space_prefix = v->add_space_prefix != 0;
    t->default_flags = (v->add_bos ? DUET_TOK_ADD_BOS : 0u) | (v->add_eos ? DUET_TOK_ADD_EOS : 0u);
    return t;
nomem:
    duet_set_error(DUET_ERR_NOMEM, "spm tokenizer: out of memory");
fail:
    duet_tokenizer_free(t);
    return NULL;
nomem_early:
    duet_set_error(DUET_ERR_NOMEM, "spm tokenizer: out of memory");
    return NULL;
}
