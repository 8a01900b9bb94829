/*
 * test_tokenizer.c — byte-level BPE: pre-tokenization, training merges and
 * encodings against the independent Python reference (tests/ref/
 * gen_tokenizer.py -> tok_ref.bin), a Hugging Face-layout file with another id
 * order and pair merges (tok_hf_pairs.json), exact round trips (fixture files,
 * random bytes with NULs and invalid UTF-8), save -> load, special tokens,
 * and the error messages of load and train.
 */
#include "testutil.h"
#include "tokenizer/bpe.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---- */

/* A regular file's bytes (NUL after them), or NULL (folders, missing). */
static char *read_all(const char *path, int64_t *n) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    long sz = (long)st.st_size;
    char *buf = malloc((size_t)sz + 1);
    if (buf && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[sz] = 0;
    *n = sz;
    return buf;
}

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(s, f);
    fclose(f);
}

/* Encodes into a fresh buffer; *n gets the count. */
static int32_t *encode(const duet_tokenizer *t, const char *s, int64_t len, unsigned flags,
                       int64_t *n) {
    int64_t cap = len + 2;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    *n = duet_tokenizer_encode(t, s, len, flags, ids, cap);
    return ids;
}

/* decode(encode(s)) == s; one check per call. */
static int roundtrip(const duet_tokenizer *t, const char *s, int64_t len, const char *what) {
    int64_t n;
    int32_t *ids = encode(t, s, len, 0, &n);
    char *back = malloc((size_t)len + 1);
    int64_t m = n >= 0 ? duet_tokenizer_decode(t, ids, n, back, len) : -1;
    int ok = n >= 0 && n <= len && m == len && memcmp(back, s, (size_t)len) == 0;
    T_CHECK(ok, "round trip of %s (%lld bytes -> %lld ids -> %lld bytes)", what, (long long)len,
            (long long)n, (long long)m);
    free(ids);
    free(back);
    return ok;
}

static int same_ids(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static char *fix_string(t_fix *f, int i, int64_t *len) {
    char name[32];
    snprintf(name, sizeof name, "str_%d", i);
    int32_t *b = t_fix_i32(f, name, len);
    char *s = malloc((size_t)*len + 1);
    for (int64_t k = 0; k < *len; k++) s[k] = (char)b[k];
    s[*len] = 0;
    return s;
}

static char g_tmp[256];
static const char *tmp_path(const char *name) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/duet_test_tok_%d_%s", (int)getpid(), name);
    return g_tmp;
}

/* ---- pre-tokenization ---- */

static void test_pretokenize(t_fix *f) {
    int n = (int)t_fix_scalar(f, "n_strings");
    int bad = -1;
    for (int i = 0; i < n; i++) {
        int64_t len, nref;
        char *s = fix_string(f, i, &len);
        char name[32];
        snprintf(name, sizeof name, "pre_%d", i);
        int32_t *ref = t_fix_i32(f, name, &nref);
        int64_t k = 0, p = 0;
        int ok = 1;
        while (p < len) {
            p = duet_bpe_pretoken_end((const unsigned char *)s, len, p);
            ok = ok && k < nref && ref[k] == p;
            k++;
        }
        if (!(ok && k == nref) && bad < 0) bad = i;
        free(s);
    }
    T_CHECK(bad < 0, "pre-token boundaries equal Python re's GPT-2 pattern (first bad string %d)", bad);
}

/* ---- training and encoding against the reference ---- */

static void test_reference(t_fix *f, const char *cfg) {
    int64_t clen;
    char *corpus = read_all("tests/fixtures/tok_corpus.txt", &clen);
    T_CHECK(corpus != NULL, "read tests/fixtures/tok_corpus.txt");
    if (!corpus) return;
    char name[64];
    snprintf(name, sizeof name, "cfg_%s", cfg);
    int32_t *c = t_fix_i32(f, name, NULL);
    snprintf(name, sizeof name, "merges_%s", cfg);
    int64_t nm2;
    int32_t *rm = t_fix_i32(f, name, &nm2);
    if (!c || !rm) {
        free(corpus);
        return;
    }
    int64_t M = nm2 / 2;
    duet_tokenizer_train_params tp;
    duet_tokenizer_train_params_default(&tp);
    T_CHECK(tp.min_frequency == 2, "default min_frequency is 2");
    tp.min_frequency = c[1];
    duet_tokenizer *t = duet_tokenizer_train(corpus, clen, 258 + c[0], &tp);
    T_CHECK(t != NULL, "train config %s: %s", cfg, duet_last_error());
    if (!t) {
        free(corpus);
        return;
    }
    T_CHECK(duet_tokenizer_n_merges(t) == M, "config %s: %lld merges, reference %lld", cfg,
            (long long)duet_tokenizer_n_merges(t), (long long)M);
    T_CHECK(duet_tokenizer_vocab_size(t) == 258 + M, "config %s: vocab = 256 + merges + 2", cfg);
    int64_t first_bad = -1;
    for (int64_t r = 0; r < M && r < duet_tokenizer_n_merges(t); r++) {
        int32_t l, rr, o;
        duet_bpe_merge(t, r, &l, &rr, &o);
        if ((l != rm[2 * r] || rr != rm[2 * r + 1] || o != 256 + r) && first_bad < 0) first_bad = r;
    }
    T_CHECK(first_bad < 0, "config %s: every merge equals the reference (first bad rank %lld)", cfg,
            (long long)first_bad);
    T_CHECK(duet_tokenizer_eos(t) == 256 + M && duet_tokenizer_bos(t) == 256 + M &&
                duet_tokenizer_pad(t) == 257 + M,
            "config %s: <|endoftext|> and <|pad|> follow the merges", cfg);

    /* encodings of the test strings */
    int n = (int)t_fix_scalar(f, "n_strings");
    int bad = -1;
    for (int i = 0; i < n; i++) {
        int64_t len, nref, nids;
        char *s = fix_string(f, i, &len);
        snprintf(name, sizeof name, "enc_%s_%d", cfg, i);
        int32_t *ref = t_fix_i32(f, name, &nref);
        int32_t *ids = encode(t, s, len, 0, &nids);
        if (!ref || !same_ids(ids, nids, ref, nref)) {
            if (bad < 0) bad = i;
        }
        free(ids);
        free(s);
    }
    T_CHECK(bad < 0, "config %s: encodings equal the reference (first bad string %d)", cfg, bad);
    /* the corpus with BOS and EOS */
    int64_t nref, nids;
    snprintf(name, sizeof name, "enc_%s_corpus", cfg);
    int32_t *ref = t_fix_i32(f, name, &nref);
    int32_t *ids = encode(t, corpus, clen, DUET_TOK_ADD_BOS | DUET_TOK_ADD_EOS, &nids);
    T_CHECK(ref && same_ids(ids, nids, ref, nref), "config %s: corpus + BOS/EOS encodes as the "
            "reference (%lld vs %lld ids)", cfg, (long long)nids, (long long)nref);
    /* a short buffer: returns the needed size and fills only cap ids */
    int32_t small[8] = {0};
    int64_t need = duet_tokenizer_encode(t, corpus, clen, DUET_TOK_ADD_BOS | DUET_TOK_ADD_EOS,
                                         small, 5);
    T_CHECK(need == nids && ref && memcmp(small, ref, 5 * sizeof *small) == 0 && small[5] == 0,
            "config %s: cap smaller than needed returns the count and writes cap ids", cfg);
    T_CHECK(duet_tokenizer_encode(t, corpus, clen, 0, NULL, 0) == nids - 2,
            "config %s: NULL buffer measures", cfg);
    free(ids);

    /* save -> load -> identical encodings; save again -> same bytes */
    const char *p1 = tmp_path("a.json");
    char path1[256];
    snprintf(path1, sizeof path1, "%s", p1);
    T_CHECK(duet_tokenizer_save(t, path1) == DUET_OK, "save: %s", duet_last_error());
    duet_tokenizer *u = duet_tokenizer_load(path1);
    T_CHECK(u != NULL, "load what we saved: %s", duet_last_error());
    if (u) {
        T_CHECK(duet_tokenizer_vocab_size(u) == duet_tokenizer_vocab_size(t) &&
                    duet_tokenizer_n_merges(u) == M && duet_tokenizer_eos(u) == duet_tokenizer_eos(t) &&
                    duet_tokenizer_pad(u) == duet_tokenizer_pad(t),
                "reloaded: same vocab, merges and specials");
        int same = 1;
        for (int i = 0; i < n; i++) {
            int64_t len, na, nb;
            char *s = fix_string(f, i, &len);
            int32_t *a = encode(t, s, len, DUET_TOK_SPECIALS, &na);
            int32_t *b = encode(u, s, len, DUET_TOK_SPECIALS, &nb);
            same = same && same_ids(a, na, b, nb);
            free(a);
            free(b);
            free(s);
        }
        int64_t na, nb;
        int32_t *a = encode(t, corpus, clen, 0, &na);
        int32_t *b = encode(u, corpus, clen, 0, &nb);
        same = same && same_ids(a, na, b, nb);
        free(a);
        free(b);
        T_CHECK(same, "config %s: save -> load gives identical encodings", cfg);
        const char *p2 = tmp_path("b.json");
        T_CHECK(duet_tokenizer_save(u, p2) == DUET_OK, "save the reloaded tokenizer");
        int64_t n1, n2;
        char *f1 = read_all(path1, &n1), *f2 = read_all(p2, &n2);
        T_CHECK(f1 && f2 && n1 == n2 && memcmp(f1, f2, (size_t)n1) == 0,
                "save(load(save(t))) is byte-identical to save(t)");
        /* the file is what Hugging Face writes: key fields present */
        T_CHECK(f1 && strstr(f1, "\"type\": \"ByteLevel\"") && strstr(f1, "\"type\": \"BPE\"") &&
                    strstr(f1, "\"Ġ\": 32") && strstr(f1, "\"Ċ\": 10") && strstr(f1, "\"!\": 33") &&
                    strstr(f1, "\"use_regex\": true") && strstr(f1, "\"byte_fallback\": false"),
                "saved JSON uses the ByteLevel alphabet (Ġ = space, Ċ = newline) and HF fields");
        free(f1);
        free(f2);
        remove(p2);
        duet_tokenizer_free(u);
    }
    remove(path1);
    duet_tokenizer_free(t);
    free(corpus);
}

/* ---- a Hugging Face-layout file: specials first, sorted alphabet, pairs ---- */

static void test_hf_file(t_fix *f) {
    duet_tokenizer *t = duet_tokenizer_load("tests/fixtures/tok_hf_pairs.json");
    T_CHECK(t != NULL, "load tok_hf_pairs.json: %s", duet_last_error());
    if (!t) return;
    T_CHECK(duet_tokenizer_bos(t) == 0 && duet_tokenizer_eos(t) == 0 && duet_tokenizer_pad(t) == 1,
            "HF file: specials at ids 0 and 1 (bos %d pad %d)", duet_tokenizer_bos(t),
            duet_tokenizer_pad(t));
    int n = (int)t_fix_scalar(f, "n_strings");
    int bad = -1;
    for (int i = 0; i < n; i++) {
        int64_t len, nref, nids;
        char *s = fix_string(f, i, &len);
        char name[32];
        snprintf(name, sizeof name, "enc_hf_%d", i);
        int32_t *ref = t_fix_i32(f, name, &nref);
        int32_t *ids = encode(t, s, len, 0, &nids);
        if ((!ref || !same_ids(ids, nids, ref, nref)) && bad < 0) bad = i;
        roundtrip(t, s, len, "a test string through the HF file");
        free(ids);
        free(s);
    }
    T_CHECK(bad < 0, "HF file (pair merges, other id order): encodings equal the reference "
            "(first bad string %d)", bad);
    int64_t len;
    const char *sp = duet_tokenizer_id_to_token(t, 0, &len);
    T_CHECK(sp && len == 13 && memcmp(sp, "<|endoftext|>", 13) == 0, "id 0 is <|endoftext|>");
    /* the space byte is the token written "Ġ" */
    T_CHECK(duet_tokenizer_token_to_id(t, " ", 1) >= 2, "space byte has an ordinary token");
    duet_tokenizer_free(t);
}

/* ---- round trips ---- */

static void test_roundtrips(void) {
    int64_t clen;
    char *corpus = read_all("tests/fixtures/tok_corpus.txt", &clen);
    if (!corpus) return;
    duet_tokenizer *toks[3];
    toks[0] = duet_tokenizer_new_bytes();
    toks[1] = duet_tokenizer_train(corpus, clen, 400, NULL);
    duet_tokenizer_train_params tp;
    duet_tokenizer_train_params_default(&tp);
    tp.min_frequency = 1;
    toks[2] = duet_tokenizer_train(corpus, clen, 1200, &tp);
    T_CHECK(toks[0] && toks[1] && toks[2], "three tokenizers built");
    if (!toks[0] || !toks[1] || !toks[2]) return;
    const char *dirs[2] = {"tests/fixtures", "tests/ref"};
    int nfiles = 0, okfiles = 0;
    for (int d = 0; d < 2; d++) {
        DIR *dir = opendir(dirs[d]);
        T_CHECK(dir != NULL, "open %s", dirs[d]);
        if (!dir) continue;
        struct dirent *e;
        while ((e = readdir(dir))) {
            if (e->d_name[0] == '.') continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dirs[d], e->d_name);
            int64_t n;
            struct stat st;
            if (stat(path, &st) != 0 || st.st_size > (4 << 20)) continue; /* keep ASan quick */
            char *data = read_all(path, &n);
            if (!data) continue;
            nfiles++;
            int ok = 1;
            for (int k = 0; k < 3; k++) ok &= roundtrip(toks[k], data, n, path);
            okfiles += ok;
            free(data);
        }
        closedir(dir);
    }
    T_CHECK(nfiles >= 5 && okfiles == nfiles, "round trip on every fixture/ref file (%d of %d)",
            okfiles, nfiles);
    /* random byte strings: every byte value, NULs, invalid UTF-8 */
    duet_rng rng;
    duet_rng_init(&rng, 7);
    char buf[2048];
    int ok = 1;
    for (int trial = 0; trial < 300; trial++) {
        int64_t n = (int64_t)(duet_rng_next(&rng) * 2000.0f);
        int mode = trial % 3;
        for (int64_t i = 0; i < n; i++) {
            float u = duet_rng_next(&rng);
            if (mode == 0) buf[i] = (char)(int)(u * 256.0f);              /* any byte */
            else if (mode == 1) buf[i] = "a \0\xff\xc3\n'1."[(int)(u * 9.0f)]; /* few bytes */
            else buf[i] = corpus[(int64_t)(u * (float)(clen - 1))];       /* corpus bytes */
        }
        for (int k = 0; k < 3; k++) {
            int64_t nids;
            int32_t *ids = encode(toks[k], buf, n, 0, &nids);
            char back[2048];
            int64_t m = duet_tokenizer_decode(toks[k], ids, nids, back, sizeof back);
            ok = ok && nids <= n && m == n && memcmp(back, buf, (size_t)n) == 0;
            free(ids);
        }
    }
    T_CHECK(ok, "round trip of 300 random byte strings (NULs, invalid UTF-8) on 3 tokenizers");
    /* streaming decode: decode_one per id concatenates to the same bytes */
    int64_t nids;
    int32_t *ids = encode(toks[2], corpus, clen, 0, &nids);
    char *back = malloc((size_t)clen);
    int64_t pos = 0;
    int sok = 1;
    for (int64_t i = 0; i < nids; i++) {
        int64_t l = duet_tokenizer_decode_one(toks[2], ids[i], back + pos, clen - pos);
        sok = sok && l > 0;
        pos += l;
    }
    T_CHECK(sok && pos == clen && memcmp(back, corpus, (size_t)clen) == 0,
            "decode_one per id streams back the corpus");
    T_CHECK(nids < clen / 2, "the trained tokenizer compresses its corpus (%lld ids for %lld bytes)",
            (long long)nids, (long long)clen);
    free(back);
    free(ids);
    /* determinism: training twice gives the same merges */
    duet_tokenizer *again = duet_tokenizer_train(corpus, clen, 1200, &tp);
    int same = again && duet_tokenizer_n_merges(again) == duet_tokenizer_n_merges(toks[2]);
    for (int64_t r = 0; same && r < duet_tokenizer_n_merges(again); r++) {
        int32_t a1, b1, o1, a2, b2, o2;
        duet_bpe_merge(again, r, &a1, &b1, &o1);
        duet_bpe_merge(toks[2], r, &a2, &b2, &o2);
        same = a1 == a2 && b1 == b2;
    }
    T_CHECK(same, "training is deterministic");
    duet_tokenizer_free(again);
    for (int k = 0; k < 3; k++) duet_tokenizer_free(toks[k]);
    free(corpus);
}

/* ---- byte tokenizer, specials, lookups ---- */

static void test_bytes_and_specials(void) {
    duet_tokenizer *t = duet_tokenizer_new_bytes();
    T_CHECK(t && duet_tokenizer_vocab_size(t) == 258 && duet_tokenizer_n_merges(t) == 0,
            "byte tokenizer: 258 ids, no merges");
    if (!t) return;
    T_CHECK(duet_tokenizer_eos(t) == 256 && duet_tokenizer_bos(t) == 256 && duet_tokenizer_pad(t) == 257,
            "byte tokenizer: <|endoftext|> 256, <|pad|> 257");
    int32_t ids[64];
    int64_t n = duet_tokenizer_encode(t, "ab\0c", 4, DUET_TOK_ADD_BOS | DUET_TOK_ADD_EOS, ids, 64);
    T_CHECK(n == 6 && ids[0] == 256 && ids[1] == 'a' && ids[2] == 'b' && ids[3] == 0 && ids[4] == 'c' &&
                ids[5] == 256,
            "byte tokenizer: id = byte, BOS/EOS on request");
    const char *txt = "x<|endoftext|>y<|pad|>";
    n = duet_tokenizer_encode(t, txt, (int64_t)strlen(txt), 0, ids, 64);
    T_CHECK(n == (int64_t)strlen(txt), "special text is plain bytes without DUET_TOK_SPECIALS");
    n = duet_tokenizer_encode(t, txt, (int64_t)strlen(txt), DUET_TOK_SPECIALS, ids, 64);
    T_CHECK(n == 4 && ids[0] == 'x' && ids[1] == 256 && ids[2] == 'y' && ids[3] == 257,
            "DUET_TOK_SPECIALS recognises <|endoftext|> and <|pad|> (n=%lld)", (long long)n);
    {   /* many specials (a corpus of documents): every occurrence, in order */
        char *many = malloc(15 * 1000 + 1);
        for (int i = 0; i < 1000; i++) memcpy(many + 15 * i, i % 2 ? "ab<|endoftext|>" : "ab<|pad|>\n\n\n\n\n\n", 15);
        int32_t *mids = malloc(20000 * sizeof *mids);
        int64_t mn = duet_tokenizer_encode(t, many, 15000, DUET_TOK_SPECIALS, mids, 20000);
        int good = mn == 500 * 3 + 500 * 9;
        for (int64_t i = 0, k = 0; good && k < 1000; k++) {
            good = mids[i] == 'a' && mids[i + 1] == 'b' && mids[i + 2] == (k % 2 ? 256 : 257);
            i += k % 2 ? 3 : 9;
        }
        T_CHECK(good, "1000 specials in one text are all found (%lld ids)", (long long)mn);
        free(mids);
        free(many);
    }
    n = duet_tokenizer_encode(t, "<|endoftext", 11, DUET_TOK_SPECIALS, ids, 64);
    T_CHECK(n == 11, "a partial special is plain text");
    char out[32];
    int64_t l = duet_tokenizer_decode_one(t, 256, out, sizeof out);
    T_CHECK(l == 13 && memcmp(out, "<|endoftext|>", 13) == 0, "decode_one(EOS) is its text");
    T_CHECK(duet_tokenizer_decode_one(t, 258, out, sizeof out) == -1 &&
                duet_tokenizer_decode_one(t, -1, out, sizeof out) == -1,
            "decode_one rejects ids out of range");
    int32_t badids[3] = {1, 2, 999};
    T_CHECK(duet_tokenizer_decode(t, badids, 3, out, sizeof out) == -1 &&
                strstr(duet_last_error(), "999") && strstr(duet_last_error(), "position 2"),
            "decode names the bad id and its position: %s", duet_last_error());
    int32_t two[2] = {'h', 'i'};
    T_CHECK(duet_tokenizer_decode(t, two, 2, NULL, 0) == 2, "decode with no buffer measures");
    T_CHECK(duet_tokenizer_token_to_id(t, "<|pad|>", 7) == 257 && duet_tokenizer_token_to_id(t, "\0", 1) == 0 &&
                duet_tokenizer_token_to_id(t, "ab", 2) == -1,
            "token_to_id");
    int64_t len;
    const char *s = duet_tokenizer_id_to_token(t, 'q', &len);
    T_CHECK(s && len == 1 && s[0] == 'q' && s[1] == 0 && !duet_tokenizer_id_to_token(t, 258, &len),
            "id_to_token");
    /* byte tokenizer save/load */
    const char *p = tmp_path("bytes.json");
    T_CHECK(duet_tokenizer_save(t, p) == DUET_OK, "save the byte tokenizer");
    duet_tokenizer *u = duet_tokenizer_load(p);
    T_CHECK(u && duet_tokenizer_vocab_size(u) == 258 && duet_tokenizer_n_merges(u) == 0 &&
                duet_tokenizer_eos(u) == 256 && duet_tokenizer_pad(u) == 257,
            "byte tokenizer reloads: %s", duet_last_error());
    if (u) roundtrip(u, "\xff\x00 hello", 8, "bytes through the reloaded byte tokenizer");
    duet_tokenizer_free(u);
    remove(p);
    duet_tokenizer_free(t);

    /* Counted by hand on this text: "at" occurs 7 times (cat x2, sat, mat,
     * hat, ate, rat), "th" 6 (the x5, with), then "th"+"e" 5, " "+"the" 4,
     * " "+"c" 2, " c"+"at" 2, and no other pair twice. */
    const char *text = "the cat sat on the mat with the hat; the cat ate the rat. ";
    const int32_t want[6][2] = {{'a', 't'}, {'t', 'h'}, {257, 'e'}, {' ', 258}, {' ', 'c'}, {260, 256}};
    duet_tokenizer *tr = duet_tokenizer_train(text, (int64_t)strlen(text), 262, NULL);
    int ok = tr && duet_tokenizer_vocab_size(tr) == 262 && duet_tokenizer_n_merges(tr) == 4;
    for (int r = 0; ok && r < 4; r++) {
        int32_t a, b, o;
        ok = duet_bpe_merge(tr, r, &a, &b, &o) && a == want[r][0] && b == want[r][1] && o == 256 + r;
    }
    T_CHECK(ok, "train stops at the asked vocab size with the hand-counted merges");
    duet_tokenizer_free(tr);
    tr = duet_tokenizer_train(text, (int64_t)strlen(text), 4096, NULL);
    ok = tr && duet_tokenizer_vocab_size(tr) == 264 && duet_tokenizer_n_merges(tr) == 6;
    for (int r = 0; ok && r < 6; r++) {
        int32_t a, b, o;
        ok = duet_bpe_merge(tr, r, &a, &b, &o) && a == want[r][0] && b == want[r][1];
    }
    T_CHECK(ok, "train stops when no pair occurs min_frequency (2) times: 6 merges");
    duet_tokenizer_free(tr);
}

/* ---- errors ---- */

static void expect_load_error(const char *name, const char *json, const char *want1,
                              const char *want2) {
    const char *p = tmp_path(name);
    char path[256];
    snprintf(path, sizeof path, "%s", p);
    write_text(path, json);
    duet_tokenizer *t = duet_tokenizer_load(path);
    const char *e = duet_last_error();
    T_CHECK(t == NULL && strstr(e, path) && strstr(e, want1) && (!want2 || strstr(e, want2)),
            "load %s fails naming the file and '%s': %s", name, want1, e);
    duet_tokenizer_free(t);
    remove(path);
}

/* A minimal valid byte-level file body: 256 byte tokens in byte order. */
static char *vocab_256(const char *extra_entries) {
    static const char *hex = "0123456789abcdef";
    size_t cap = 16384;
    char *s = malloc(cap);
    size_t n = 0;
    n += (size_t)snprintf(s + n, cap - n, "{");
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)extra++;
        /* write the character as a \\u escape (exercises the JSON decoder too) */
        n += (size_t)snprintf(s + n, cap - n, "%s\"\\u%c%c%c%c\": %d", b ? ", " : "",
                              hex[(cp >> 12) & 15], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15],
                              hex[cp & 15], b);
    }
    n += (size_t)snprintf(s + n, cap - n, "%s}", extra_entries ? extra_entries : "");
    return s;
}

static void test_errors(void) {
    duet_tokenizer *t = duet_tokenizer_load("/nonexistent/dir/tok.json");
    T_CHECK(t == NULL && strstr(duet_last_error(), "/nonexistent/dir/tok.json") &&
                strstr(duet_last_error(), "cannot open"),
            "missing file: %s", duet_last_error());
    expect_load_error("empty.json", "", "empty", NULL);
    expect_load_error("bad.json", "{\"model\": {\"vocab\": {\"a\": 0,}}}", "not valid JSON", "line 1");
    expect_load_error("array.json", "[1, 2]", "top level", NULL);
    expect_load_error("nomodel.json", "{\"version\": \"1.0\"}", "no \"model\"", NULL);
    expect_load_error("novocab.json", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}",
                      "model.vocab", "missing");
    expect_load_error("wordpiece.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}",
                      "WordPiece", NULL);
    char *v = vocab_256(NULL);
    char *doc = malloc(strlen(v) + 1024);
    sprintf(doc, "{\"model\": {\"type\": \"BPE\", \"vocab\": %s}}", v);
    expect_load_error("nomerges.json", doc, "model.merges", "missing");
    /* the minimal file itself loads */
    sprintf(doc, "{\"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": []}}", v);
    {
        const char *p = tmp_path("minimal.json");
        char path[256];
        snprintf(path, sizeof path, "%s", p);
        write_text(path, doc);
        duet_tokenizer *m = duet_tokenizer_load(path);
        T_CHECK(m && duet_tokenizer_vocab_size(m) == 256 && duet_tokenizer_eos(m) == -1,
                "a minimal 256-byte vocab loads (no specials: eos -1): %s", duet_last_error());
        if (m) roundtrip(m, "any \x01\x80 bytes", 12, "the minimal tokenizer");
        duet_tokenizer_free(m);
        remove(path);
    }
    free(v);
    /* a merge naming an unknown token */
    v = vocab_256(", \"ab\": 256");
    doc = realloc(doc, strlen(v) + 1024);
    sprintf(doc, "{\"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": [\"a b\", \"ab zz\"]}}", v);
    expect_load_error("unknownmerge.json", doc, "model.merges[1]", "\"zz\"");
    sprintf(doc, "{\"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": [\"a c\"]}}", v);
    expect_load_error("mergeout.json", doc, "model.merges[0]", "not in model.vocab");
    sprintf(doc, "{\"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": [\"a b c\"]}}", v);
    expect_load_error("merge3.json", doc, "model.merges[0]", "one space");
    sprintf(doc, "{\"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": [[\"a\", \"b\"]]}}", v);
    {
        const char *p = tmp_path("pairs.json");
        char path[256];
        snprintf(path, sizeof path, "%s", p);
        write_text(path, doc);
        duet_tokenizer *m = duet_tokenizer_load(path);
        int32_t ids[8];
        int64_t n = m ? duet_tokenizer_encode(m, "abc ab", 6, 0, ids, 8) : -1;
        /* pre-tokens "abc" and " ab" -> (ab) c | ' ' (ab) */
        T_CHECK(n == 4 && ids[0] == 256 && ids[1] == 'c' && ids[2] == ' ' && ids[3] == 256,
                "[\"a\", \"b\"] pair merges load and apply (n=%lld)", (long long)n);
        duet_tokenizer_free(m);
        remove(path);
    }
    free(v);
    /* gaps, duplicate ids, non-byte-level strings, missing bytes */
    v = vocab_256(", \"ab\": 300");
    doc = realloc(doc, strlen(v) + 1024);
    sprintf(doc, "{\"model\": {\"vocab\": %s, \"merges\": []}}", v);
    expect_load_error("gap.json", doc, "no token has id 256", NULL);
    free(v);
    v = vocab_256(", \"ab\": 5");
    sprintf(doc, "{\"model\": {\"vocab\": %s, \"merges\": []}}", v);
    expect_load_error("dupid.json", doc, "id 5", NULL);
    free(v);
    v = vocab_256(", \"\xe2\x96\x81the\": 256");
    sprintf(doc, "{\"model\": {\"vocab\": %s, \"merges\": []}}", v);
    expect_load_error("sentencepiece.json", doc, "ByteLevel alphabet", "id 256");
    free(v);
    expect_load_error("fewbytes.json", "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}}",
                      "needs at least the 256 bytes", NULL);
    expect_load_error("negid.json", "{\"model\": {\"vocab\": {\"a\": -1}, \"merges\": []}}",
                      "model.vocab[\"a\"]", NULL);
    free(doc);

    /* train errors */
    t = duet_tokenizer_train("abc", 3, 257, NULL);
    T_CHECK(t == NULL && strstr(duet_last_error(), "258"), "vocab < 258 is refused: %s",
            duet_last_error());
    t = duet_tokenizer_train("", 0, 1000, NULL);
    T_CHECK(t == NULL && strstr(duet_last_error(), "empty"), "empty text is refused: %s",
            duet_last_error());
    /* save to a folder that does not exist */
    duet_tokenizer *b = duet_tokenizer_new_bytes();
    T_CHECK(duet_tokenizer_save(b, "/nonexistent/dir/tok.json") != DUET_OK,
            "save into a missing folder fails: %s", duet_last_error());
    duet_tokenizer_free(b);
}

/* ---- allocation failures: every failure point returns NULL cleanly ---- */

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

static void test_alloc_failures(void) {
    const char *text = "hello hello world, the world is wide; hello again 123 123!";
    duet_allocator a = {fail_alloc, fail_free, NULL};
    duet_set_allocator(&a);
    int clean = 1, succeeded = 0;
    for (int budget = 0; budget < 400 && !succeeded; budget++) {
        g_count = 0;
        g_budget = budget;
        duet_tokenizer *t = duet_tokenizer_train(text, (int64_t)strlen(text), 300, NULL);
        if (t) {
            succeeded = 1;
        } else {
            clean = clean && strstr(duet_last_error(), "out of memory") != NULL;
        }
        duet_tokenizer_free(t);
    }
    T_CHECK(clean && succeeded, "train fails cleanly at every allocation failure point");
    clean = 1;
    succeeded = 0;
    for (int budget = 0; budget < 400 && !succeeded; budget++) {
        g_count = 0;
        g_budget = budget;
        duet_tokenizer *t = duet_tokenizer_load("tests/fixtures/tok_hf_pairs.json");
        if (t) {
            succeeded = 1;
            /* encode needs scratch: with no allocation left it reports -1 */
            g_count = 0;
            g_budget = 0;
            int32_t ids[64];
            clean = clean && duet_tokenizer_encode(t, text, 20, 0, ids, 64) == -1 &&
                    strstr(duet_last_error(), "out of memory");
            g_budget = -1;
            clean = clean && duet_tokenizer_encode(t, text, 20, 0, ids, 64) > 0;
        } else {
            clean = clean && duet_last_error()[0] != 0;
        }
        duet_tokenizer_free(t);
    }
    g_budget = -1;
    duet_set_allocator(NULL);
    T_CHECK(clean && succeeded, "load fails cleanly at every allocation failure point; encode "
            "reports -1 without memory");
}

int main(void) {
    duet_init();
    t_fix *f = t_fix_load("tok_ref.bin");
    if (f) {
        test_pretokenize(f);
        test_reference(f, "a");
        test_reference(f, "b");
        test_hf_file(f);
        t_fix_free(f);
    }
    test_roundtrips();
    test_bytes_and_specials();
    test_errors();
    test_alloc_failures();
    return t_done();
}
