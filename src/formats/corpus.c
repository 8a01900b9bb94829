/*
 * corpus.c — text corpora for the storytellers: load a file or a folder of
 * files into memory, and build the two bundled training texts from Debian
 * packages: the King James Bible (from `bible -f` output) and fortunes.
 * Also the data layer's private helpers (byte buffer, sorted folder listing;
 * see data.h).
 *
 * What it is not: a tokenizer or a streaming reader. A corpus is bytes; the
 * trainer tokenizes it. Running the `bible` program is the CLI's job
 * (src/cli/cmd_data.c); this file only turns its output into text.
 */
#include "formats/data.h"
#include "formats/formats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ======================================================================== */
/* Private helpers: buffer, folder listing                                  */
/* ======================================================================== */

duet_status duet_data_buf_reserve(duet_data_buf *b, size_t extra) {
    if (extra <= b->cap - b->size) return DUET_OK;
    if (extra > SIZE_MAX / 2 - b->size)
        return duet_set_error(DUET_ERR_NOMEM, "buffer size overflow (%zu + %zu bytes)", b->size,
                              extra);
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->size + extra) cap *= 2;
    uint8_t *p = duet_alloc(cap);
    if (!p) return DUET_ERR_NOMEM;
    if (b->size) memcpy(p, b->data, b->size);
    duet_free(b->data);
    b->data = p;
    b->cap = cap;
    return DUET_OK;
}

duet_status duet_data_buf_append(duet_data_buf *b, const void *p, size_t n) {
    duet_status s = duet_data_buf_reserve(b, n);
    if (s) return s;
    if (n) memcpy(b->data + b->size, p, n);
    b->size += n;
    return DUET_OK;
}

void duet_data_buf_free(duet_data_buf *b) {
    duet_free(b->data);
    b->data = NULL;
    b->size = b->cap = 0;
}

/* Reads exactly n bytes from fd (0 when the file ended early). */
static duet_status read_full(int fd, uint8_t *dst, size_t n, size_t *got, const char *path) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fd, dst + done, n - done > (1u << 30) ? (1u << 30) : n - done);
        if (r < 0) {
            if (errno == EINTR) continue;
            return duet_set_error(DUET_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return DUET_OK;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

duet_status duet_data_list_dir(const char *dir, char ***names, int64_t *count) {
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return duet_set_error(DUET_ERR_IO, "cannot open folder %s: %s", dir, strerror(errno));
    duet_data_buf pool = {0}; /* the names, NUL-separated */
    int64_t n = 0;
    duet_status s = DUET_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        s = duet_data_buf_append(&pool, e->d_name, strlen(e->d_name) + 1);
        if (s) break;
        n++;
    }
    closedir(d);
    if (s) {
        duet_data_buf_free(&pool);
        return s;
    }
    /* one block: the pointer array, then the strings */
    size_t head = (size_t)n * sizeof(char *);
    char **arr = duet_alloc(head + pool.size + 1);
    if (!arr) {
        duet_data_buf_free(&pool);
        return DUET_ERR_NOMEM;
    }
    char *str = (char *)arr + head;
    if (pool.size) memcpy(str, pool.data, pool.size);
    for (int64_t i = 0; i < n; i++) {
        arr[i] = str;
        str += strlen(str) + 1;
    }
    duet_data_buf_free(&pool);
    qsort(arr, (size_t)n, sizeof *arr, cmp_names);
    *names = arr;
    *count = n;
    return DUET_OK;
}

/* dir + "/" + name into a duet_alloc'd string. */
static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = duet_alloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* ======================================================================== */
/* Corpus: a file (mmap) or a folder (read and concatenated)                 */
/* ======================================================================== */

static duet_status corpus_folder(const char *path, duet_corpus *out) {
    char **names;
    int64_t n;
    duet_status s = duet_data_list_dir(path, &names, &n);
    if (s) return s;
    /* pass 1: sizes of the regular, non-hidden files */
    size_t total = 0;
    for (int64_t i = 0; i < n && !s; i++) {
        if (names[i][0] == '.') continue;
        char *fp = join_path(path, names[i]);
        if (!fp) {
            s = DUET_ERR_NOMEM;
            break;
        }
        struct stat st;
        if (stat(fp, &st) == 0 && S_ISREG(st.st_mode)) {
            if ((uint64_t)st.st_size > SIZE_MAX / 2 - total)
                s = duet_set_error(DUET_ERR_NOMEM, "corpus %s is too big", path);
            total += (size_t)st.st_size;
        }
        duet_free(fp);
    }
    uint8_t *buf = NULL;
    if (!s && total == 0)
        s = duet_set_error(DUET_ERR_FORMAT, "corpus folder %s holds no non-empty files", path);
    if (!s && !(buf = duet_alloc(total))) s = DUET_ERR_NOMEM;
    /* pass 2: read them in name order */
    size_t off = 0;
    int64_t nfiles = 0;
    for (int64_t i = 0; i < n && !s; i++) {
        if (names[i][0] == '.') continue;
        char *fp = join_path(path, names[i]);
        if (!fp) {
            s = DUET_ERR_NOMEM;
            break;
        }
        int fd = open(fp, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            size_t want = (size_t)st.st_size, got = 0;
            if (want > total - off)
                s = duet_set_error(DUET_ERR_IO, "corpus file %s grew while being read", fp);
            else
                s = read_full(fd, buf + off, want, &got, fp);
            if (!s && got != want)
                s = duet_set_error(DUET_ERR_IO, "corpus file %s shrank while being read", fp);
            off += got;
            nfiles++;
        } else if (fd < 0 && errno != ENOENT) {
            s = duet_set_error(DUET_ERR_IO, "cannot open %s: %s", fp, strerror(errno));
        }
        if (fd >= 0) close(fd);
        duet_free(fp);
    }
    duet_free(names);
    if (s) {
        duet_free(buf);
        return s;
    }
    out->data = buf;
    out->size = (int64_t)off;
    out->nfiles = nfiles;
    out->mapped_ = 0;
    return DUET_OK;
}

duet_status duet_corpus_load(const char *path, duet_corpus *out) {
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(path, &st) != 0)
        return duet_set_error(DUET_ERR_IO, "cannot open corpus %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return corpus_folder(path, out);
    if (!S_ISREG(st.st_mode))
        return duet_set_error(DUET_ERR_IO, "corpus %s is neither a file nor a folder", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return duet_set_error(DUET_ERR_IO, "cannot open corpus %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || st.st_size == 0) {
        close(fd);
        return duet_set_error(DUET_ERR_FORMAT, "corpus %s is empty", path);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (map == MAP_FAILED)
        return duet_set_error(DUET_ERR_IO, "cannot map corpus %s: %s", path, strerror(err));
    madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
    out->data = map;
    out->size = (int64_t)st.st_size;
    out->nfiles = 1;
    out->mapped_ = 1;
    return DUET_OK;
}

void duet_corpus_free(duet_corpus *c) {
    if (!c) return;
    if (c->mapped_) munmap((void *)c->data, (size_t)c->size);
    else duet_free((void *)c->data);
    memset(c, 0, sizeof *c);
}

/* ======================================================================== */
/* King James Bible: `bible -f` output -> training text                      */
/* ======================================================================== */

/* The 66 books in canon order: the abbreviation `bible -f` prints, then the
 * heading we write. */
static const char *const kjv_books[66][2] = {
    {"Ge", "Genesis"},          {"Exo", "Exodus"},          {"Lev", "Leviticus"},
    {"Num", "Numbers"},         {"Deu", "Deuteronomy"},     {"Josh", "Joshua"},
    {"Jdgs", "Judges"},         {"Ruth", "Ruth"},           {"1Sm", "1 Samuel"},
    {"2Sm", "2 Samuel"},        {"1Ki", "1 Kings"},         {"2Ki", "2 Kings"},
    {"1Chr", "1 Chronicles"},   {"2Chr", "2 Chronicles"},   {"Ezra", "Ezra"},
    {"Neh", "Nehemiah"},        {"Est", "Esther"},          {"Job", "Job"},
    {"Psa", "Psalms"},          {"Prv", "Proverbs"},        {"Eccl", "Ecclesiastes"},
    {"SSol", "Song of Solomon"}, {"Isa", "Isaiah"},         {"Jer", "Jeremiah"},
    {"Lam", "Lamentations"},    {"Eze", "Ezekiel"},         {"Dan", "Daniel"},
    {"Hos", "Hosea"},           {"Joel", "Joel"},           {"Amos", "Amos"},
    {"Obad", "Obadiah"},        {"Jonah", "Jonah"},         {"Mic", "Micah"},
    {"Nahum", "Nahum"},         {"Hab", "Habakkuk"},        {"Zep", "Zephaniah"},
    {"Hag", "Haggai"},          {"Zec", "Zechariah"},       {"Mal", "Malachi"},
    {"Mat", "Matthew"},         {"Mark", "Mark"},           {"Luke", "Luke"},
    {"John", "John"},           {"Acts", "Acts"},           {"Rom", "Romans"},
    {"1Cor", "1 Corinthians"},  {"2Cor", "2 Corinthians"},  {"Gal", "Galatians"},
    {"Eph", "Ephesians"},       {"Phi", "Philippians"},     {"Col", "Colossians"},
    {"1Th", "1 Thessalonians"}, {"2Th", "2 Thessalonians"}, {"1Tim", "1 Timothy"},
    {"2Tim", "2 Timothy"},      {"Titus", "Titus"},         {"Phmn", "Philemon"},
    {"Heb", "Hebrews"},         {"Jas", "James"},           {"1Pet", "1 Peter"},
    {"2Pet", "2 Peter"},        {"1Jn", "1 John"},          {"2Jn", "2 John"},
    {"3Jn", "3 John"},          {"Jude", "Jude"},           {"Rev", "Revelation"},
};

static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Parses a decimal number of 1..4 digits at s[*i]; -1 when none. */
static int parse_small(const char *s, size_t len, size_t *i) {
    int v = 0, nd = 0;
    while (*i < len && is_digit(s[*i]) && nd < 5) {
        v = v * 10 + (s[*i] - '0');
        (*i)++;
        nd++;
    }
    return (nd == 0 || nd > 4 || v == 0) ? -1 : v;
}

duet_status duet_text_kjv(const char *src, size_t n, char **out, size_t *out_size,
                          int64_t *nverses) {
    *out = NULL;
    *out_size = 0;
    if (nverses) *nverses = 0;
    duet_data_buf b = {0};
    duet_status s = duet_data_buf_reserve(&b, n + 4096);
    int book = -1, chapter = 0, verse = 0;
    int64_t verses = 0, lineno = 0;
    size_t pos = 0;
    while (!s && pos < n) {
        const char *line = src + pos;
        const char *nl = memchr(line, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - line) : n - pos;
        pos += len + (nl ? 1 : 0);
        lineno++;
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) len--;
        if (len == 0) continue;
        /* reference: [digit] letters chapter ':' verse ' ' */
        size_t i = 0;
        if (is_digit(line[0])) i++;
        while (i < len && is_alpha(line[i])) i++;
        size_t alen = i;
        int b_idx = -1;
        for (int k = 0; k < 66 && alen > 0; k++)
            if (strlen(kjv_books[k][0]) == alen && memcmp(kjv_books[k][0], line, alen) == 0) b_idx = k;
        if (b_idx < 0) {
            s = duet_set_error(DUET_ERR_FORMAT,
                               "bible text line %lld: unknown book abbreviation '%.*s' (want "
                               "`bible -f` output such as \"Ge1:1 In the beginning ...\")",
                               (long long)lineno, (int)(alen < 40 ? alen : 40), line);
            break;
        }
        int c = parse_small(line, len, &i);
        int v = -1;
        if (c > 0 && i < len && line[i] == ':') {
            i++;
            v = parse_small(line, len, &i);
        }
        if (c < 0 || v < 0 || i >= len || line[i] != ' ') {
            s = duet_set_error(DUET_ERR_FORMAT,
                               "bible text line %lld: bad reference in \"%.*s\" (want "
                               "Book<chapter>:<verse> then a space)",
                               (long long)lineno, (int)(len < 40 ? len : 40), line);
            break;
        }
        while (i < len && line[i] == ' ') i++;
        if (i >= len) {
            s = duet_set_error(DUET_ERR_FORMAT, "bible text line %lld: verse %s %d:%d has no text",
                               (long long)lineno, kjv_books[b_idx][1], c, v);
            break;
        }
        if (b_idx < book) {
            s = duet_set_error(DUET_ERR_FORMAT,
                               "bible text line %lld: book %s out of canon order (after %s)",
                               (long long)lineno, kjv_books[b_idx][1],
                               book >= 0 ? kjv_books[book][1] : "the start");
            break;
        }
        if (b_idx == book && (c < chapter || (c == chapter && v <= verse))) {
            s = duet_set_error(DUET_ERR_FORMAT,
                               "bible text line %lld: %s %d:%d comes after %d:%d (out of order)",
                               (long long)lineno, kjv_books[b_idx][1], c, v, chapter, verse);
            break;
        }
        /* room for a heading, the reference and the text */
        s = duet_data_buf_reserve(&b, len + 64);
        if (s) break;
        if (b_idx != book) {
            if (book >= 0) duet_data_buf_put(&b, '\n');
            const char *name = kjv_books[b_idx][1];
            memcpy(b.data + b.size, name, strlen(name));
            b.size += strlen(name);
            duet_data_buf_put(&b, '\n');
            duet_data_buf_put(&b, '\n');
            book = b_idx;
        }
        chapter = c;
        verse = v;
        b.size += (size_t)snprintf((char *)b.data + b.size, 24, "%d:%d ", c, v);
        /* the text, with runs of spaces collapsed to one */
        for (; i < len; i++) {
            if (line[i] == ' ' && line[i - 1] == ' ') continue;
            duet_data_buf_put(&b, (uint8_t)line[i]);
        }
        duet_data_buf_put(&b, '\n');
        verses++;
    }
    if (!s && verses == 0)
        s = duet_set_error(DUET_ERR_FORMAT, "bible text: no verses found (is `bible -f` working?)");
    if (!s) s = duet_data_buf_reserve(&b, 1);
    if (s) {
        duet_data_buf_free(&b);
        return s;
    }
    b.data[b.size] = 0;
    *out = (char *)b.data;
    *out_size = b.size;
    if (nverses) *nverses = verses;
    return DUET_OK;
}

/* ======================================================================== */
/* Fortunes: a fortune folder -> blank-line-separated entries                */
/* ======================================================================== */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when invalid (overlongs,
 * surrogates and code points past U+10FFFF are invalid). */
static int utf8_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    int len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return 0;
    if ((size_t)len > n) return 0;
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return len;
}

/* Cleans one line src[0..n) into line (reused, reset here). Returns the
 * status of the buffer growth. */
static duet_status clean_line(duet_data_buf *line, const uint8_t *src, size_t n) {
    line->size = 0;
    /* a tab expands to at most 8 spaces: 8 bytes per input byte is enough */
    duet_status s = duet_data_buf_reserve(line, n * 8 + 8);
    if (s) return s;
    int64_t col = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = src[i];
        if (c == '\b') { /* overstrike: the next character replaces the last one */
            if (line->size) {
                size_t k = line->size - 1;
                while (k > 0 && (line->data[k] & 0xC0) == 0x80) k--;
                line->size = k;
                col--;
            }
            i++;
        } else if (c == '\t') {
            do {
                duet_data_buf_put(line, ' ');
                col++;
            } while (col % 8);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            i++;
        } else {
            int len = utf8_len(src + i, n - i);
            if (len == 0) {
                i++;
                continue;
            }
            for (int k = 0; k < len; k++) duet_data_buf_put(line, src[i + k]);
            col++;
            i += (size_t)len;
        }
    }
    while (line->size && line->data[line->size - 1] == ' ') line->size--;
    return DUET_OK;
}

/* Appends the entries of one fortune file's text to out. */
static duet_status fortune_file(duet_data_buf *out, duet_data_buf *line, const uint8_t *src,
                                size_t n, int64_t *nentries) {
    int in_entry = 0; /* lines written for the current entry */
    size_t pos = 0;
    duet_status s = DUET_OK;
    while (!s && pos <= n) {
        const uint8_t *l = src + pos;
        const uint8_t *nl = pos < n ? memchr(l, '\n', n - pos) : NULL;
        size_t len = nl ? (size_t)(nl - l) : n - pos;
        pos += len + 1;
        size_t t = len;
        while (t && (l[t - 1] == '\r' || l[t - 1] == ' ' || l[t - 1] == '\t')) t--;
        if (t == 1 && l[0] == '%') { /* separator */
            in_entry = 0;
            continue;
        }
        s = clean_line(line, l, len);
        if (s || line->size == 0) continue; /* blank lines inside an entry are dropped */
        s = duet_data_buf_reserve(out, line->size + 3);
        if (s) break;
        if (!in_entry) {
            if (out->size) duet_data_buf_put(out, '\n'); /* the blank line between entries */
            (*nentries)++;
        }
        memcpy(out->data + out->size, line->data, line->size);
        out->size += line->size;
        duet_data_buf_put(out, '\n');
        in_entry = 1;
    }
    return s;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

duet_status duet_text_fortunes(const char *dir, char **out, size_t *out_size, int64_t *nentries,
                               int64_t *nfiles) {
    *out = NULL;
    *out_size = 0;
    if (nentries) *nentries = 0;
    if (nfiles) *nfiles = 0;
    char **names;
    int64_t n;
    duet_status s = duet_data_list_dir(dir, &names, &n);
    if (s) return s;
    duet_data_buf b = {0}, line = {0};
    int64_t entries = 0, files = 0;
    for (int64_t i = 0; i < n && !s; i++) {
        if (names[i][0] == '.' || ends_with(names[i], ".dat")) continue;
        char *fp = join_path(dir, names[i]);
        if (!fp) {
            s = DUET_ERR_NOMEM;
            break;
        }
        struct stat st;
        if (lstat(fp, &st) == 0 && S_ISREG(st.st_mode)) { /* no links, no folders (off/) */
            char *text;
            size_t len;
            s = duet_read_file(fp, &text, &len);
            if (!s) {
                s = fortune_file(&b, &line, (const uint8_t *)text, len, &entries);
                duet_free(text);
                files++;
            }
        }
        duet_free(fp);
    }
    duet_free(names);
    duet_data_buf_free(&line);
    if (!s && entries == 0)
        s = duet_set_error(DUET_ERR_FORMAT, "no fortunes found in %s (install fortunes: sudo "
                                            "apt-get install fortunes fortunes-min)", dir);
    if (!s) s = duet_data_buf_reserve(&b, 1);
    if (s) {
        duet_data_buf_free(&b);
        return s;
    }
    b.data[b.size] = 0;
    *out = (char *)b.data;
    *out_size = b.size;
    if (nentries) *nentries = entries;
    if (nfiles) *nfiles = files;
    return DUET_OK;
}
