/*
 * idx.c — IDX files (the MNIST layout: magic, big-endian u32 dims, raw u8
 * data), gzip'd or plain, and the image datasets built on them: the generic
 * duet_dataset helpers and the Fashion-MNIST loader.
 *
 * What it is: a strict reader — every header field is checked, the data must
 * be exactly prod(dims) bytes, and memory grows with the bytes actually read,
 * so a lying header cannot make us allocate gigabytes. What it is not: an IDX
 * writer, or a reader of the non-u8 IDX types (i8, i16, i32, f32, f64).
 */
#include "formats/data.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ======================================================================== */
/* IDX reader                                                                */
/* ======================================================================== */

/* Reads up to n bytes (n may exceed INT_MAX); returns the count, or -1 with
 * the error set when zlib reports a corrupt stream. */
/* zlib's gzerror message is "<path>: <what>"; keep the <what>. */
static const char *gz_msg(gzFile f, const char *path, int *errnum) {
    const char *msg = gzerror(f, errnum);
    if (!msg || !*msg) return "unknown zlib error";
    size_t n = strlen(path);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    return msg;
}

static int64_t gz_read_all(gzFile f, uint8_t *dst, int64_t n, const char *path,
                           const char *field) {
    int64_t done = 0;
    while (done < n) {
        int64_t want = n - done > (1 << 30) ? (1 << 30) : n - done;
        int r = gzread(f, dst + done, (unsigned)want);
        if (r < 0) {
            int errnum = 0;
            const char *msg = gz_msg(f, path, &errnum);
            duet_set_error(DUET_ERR_FORMAT, "%s: corrupt gzip stream (%s) reading the %s", path, msg,
                           field);
            return -1;
        }
        if (r == 0) break;
        done += r;
    }
    /* a truncated gzip stream ends with "unexpected end of file" */
    int errnum = 0;
    const char *msg = gz_msg(f, path, &errnum);
    if (errnum != Z_OK && errnum != Z_STREAM_END) {
        duet_set_error(DUET_ERR_FORMAT, "%s: corrupt gzip stream (%s) reading the %s", path, msg,
                       field);
        return -1;
    }
    return done;
}

void duet_idx_free(duet_idx *x) {
    if (!x) return;
    duet_free(x->data);
    memset(x, 0, sizeof *x);
}

duet_status duet_idx_read(const char *path, duet_idx *out) {
    memset(out, 0, sizeof *out);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return duet_set_error(DUET_ERR_IO, "cannot open %s: %s", path,
                              errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);
    duet_status s = DUET_OK;
    uint8_t *data = NULL;
    uint8_t magic[4];
    int64_t got = gz_read_all(f, magic, 4, path, "magic");
    if (got < 0) s = DUET_ERR_FORMAT;
    else if (got < 4)
        s = duet_set_error(DUET_ERR_FORMAT, "%s: truncated magic (%lld of 4 bytes): not an IDX file",
                           path, (long long)got);
    else if (magic[0] != 0 || magic[1] != 0)
        s = duet_set_error(DUET_ERR_FORMAT,
                           "%s: bad magic 0x%02x%02x%02x%02x: not an IDX file (want 0x000008NN)",
                           path, magic[0], magic[1], magic[2], magic[3]);
    else if (magic[2] != 0x08)
        s = duet_set_error(DUET_ERR_FORMAT,
                           "%s: magic data type 0x%02x is not supported (only unsigned byte, 0x08)",
                           path, magic[2]);
    else if (magic[3] < 1 || magic[3] > DUET_MAX_DIMS)
        s = duet_set_error(DUET_ERR_FORMAT, "%s: magic ndim %d out of range 1..%d", path, magic[3],
                           DUET_MAX_DIMS);
    int ndim = s ? 0 : magic[3];
    int64_t total = 1;
    if (!s) {
        uint8_t raw[4 * DUET_MAX_DIMS];
        got = gz_read_all(f, raw, 4 * ndim, path, "dims");
        if (got < 0) s = DUET_ERR_FORMAT;
        else if (got < 4 * ndim)
            s = duet_set_error(DUET_ERR_FORMAT, "%s: truncated dims (%lld of %d bytes)", path,
                               (long long)got, 4 * ndim);
        for (int i = 0; i < ndim && !s; i++) {
            const uint8_t *p = raw + 4 * i;
            int64_t d = ((int64_t)p[0] << 24) | ((int64_t)p[1] << 16) | ((int64_t)p[2] << 8) | p[3];
            out->dims[i] = d;
            if (d == 0)
                s = duet_set_error(DUET_ERR_FORMAT, "%s: dims[%d] is 0", path, i);
            else if (total > INT64_MAX / d)
                s = duet_set_error(DUET_ERR_FORMAT, "%s: dims product overflows (dims[%d] = %lld)",
                                   path, i, (long long)d);
            else
                total *= d;
        }
    }
    /* the data: grow with what arrives, never trust the header for the size */
    int64_t have = 0, cap = 0;
    while (!s && have < total) {
        int64_t ncap = cap ? (cap > total / 2 ? total : cap * 2) : (total < (1 << 20) ? total : (1 << 20));
        if ((uint64_t)ncap > SIZE_MAX) {
            s = duet_set_error(DUET_ERR_NOMEM, "%s: %lld data bytes do not fit in memory", path,
                               (long long)total);
            break;
        }
        uint8_t *nd = duet_alloc((size_t)ncap);
        if (!nd) {
            s = DUET_ERR_NOMEM;
            break;
        }
        if (have) memcpy(nd, data, (size_t)have);
        duet_free(data);
        data = nd;
        cap = ncap;
        got = gz_read_all(f, data + have, cap - have, path, "data");
        if (got < 0) {
            s = DUET_ERR_FORMAT;
            break;
        }
        have += got;
        if (have < cap) {
            char dims[96];
            int k = 0;
            for (int i = 0; i < ndim; i++)
                k += snprintf(dims + k, sizeof dims - (size_t)k, "%s%lld", i ? ", " : "",
                              (long long)out->dims[i]);
            s = duet_set_error(DUET_ERR_FORMAT,
                               "%s: truncated data: dims [%s] need %lld bytes, the file has %lld",
                               path, dims, (long long)total, (long long)have);
        }
    }
    if (!s) {
        uint8_t extra[4096];
        int64_t n_extra = 0;
        do {
            got = gz_read_all(f, extra, sizeof extra, path, "end of the data");
            if (got < 0) s = DUET_ERR_FORMAT;
            else n_extra += got;
        } while (!s && got == (int64_t)sizeof extra && n_extra < (1 << 24));
        if (!s && n_extra)
            s = duet_set_error(DUET_ERR_FORMAT,
                               "%s: %s%lld extra bytes after the data (the dims say %lld bytes)",
                               path, n_extra >= (1 << 24) ? "at least " : "", (long long)n_extra,
                               (long long)total);
    }
    gzclose(f);
    if (s) {
        duet_free(data);
        memset(out, 0, sizeof *out);
        return s;
    }
    out->ndim = ndim;
    out->data = data;
    out->size = total;
    return DUET_OK;
}

/* ======================================================================== */
/* Datasets                                                                  */
/* ======================================================================== */

void duet_dataset_free(duet_dataset *d) {
    if (!d) return;
    duet_free(d->pixels);
    duet_free(d->labels);
    if (d->class_names)
        for (int i = 0; i < d->nclasses; i++) duet_free(d->class_names[i]);
    duet_free(d->class_names);
    memset(d, 0, sizeof *d);
}

void duet_u8_to_unit(float *dst, const uint8_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i] / 127.5f - 1.0f;
}

duet_status duet_dataset_batch_f32(const duet_dataset *d, const int64_t *idx, int64_t count,
                                   float *dst, int32_t *labels) {
    int64_t per = d->c * d->h * d->w;
    for (int64_t i = 0; i < count; i++)
        if (idx[i] < 0 || idx[i] >= d->n)
            return duet_set_error(DUET_ERR_ARG, "dataset index %lld out of range 0..%lld",
                                  (long long)idx[i], (long long)d->n - 1);
    for (int64_t i = 0; i < count; i++) {
        duet_u8_to_unit(dst + i * per, d->pixels + idx[i] * per, per);
        if (labels) labels[i] = d->labels ? d->labels[idx[i]] : -1;
    }
    return DUET_OK;
}

/* Compares on letters and digits only, case-insensitively. */
static int name_match(const char *a, const char *b) {
    for (;;) {
        while (*a && !isalnum((unsigned char)*a)) a++;
        while (*b && !isalnum((unsigned char)*b)) b++;
        if (!*a || !*b) return !*a && !*b;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
        a++;
        b++;
    }
}

/* A class among names[0..n) by name, then as a decimal index. */
static int class_lookup(const char *const *names, int n, const char *name) {
    if (!name) return -1;
    int alnum = 0;
    for (const char *p = name; *p; p++) alnum |= isalnum((unsigned char)*p);
    if (alnum)
        for (int i = 0; i < n; i++)
            if (names[i] && name_match(names[i], name)) return i;
    if (!*name) return -1;
    long v = 0;
    for (const char *p = name; *p; p++) {
        if (!isdigit((unsigned char)*p) || v > 100000000L) return -1;
        v = v * 10 + (*p - '0');
    }
    return v < n ? (int)v : -1;
}

int duet_dataset_class_index(const duet_dataset *d, const char *name) {
    return class_lookup((const char *const *)d->class_names, d->nclasses, name);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *p = duet_alloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

duet_status duet_dataset_load_idx(const char *images_path, const char *labels_path,
                                  duet_dataset *out) {
    memset(out, 0, sizeof *out);
    duet_idx im, lb = {0};
    duet_status s = duet_idx_read(images_path, &im);
    if (s) return s;
    if (im.ndim != 3) {
        s = duet_set_error(DUET_ERR_FORMAT,
                           "%s: images want magic 0x00000803 (ndim 3: [N, H, W]), got ndim %d",
                           images_path, im.ndim);
        duet_idx_free(&im);
        return s;
    }
    if (labels_path) {
        s = duet_idx_read(labels_path, &lb);
        if (!s && lb.ndim != 1)
            s = duet_set_error(DUET_ERR_FORMAT,
                               "%s: labels want magic 0x00000801 (ndim 1: [N]), got ndim %d",
                               labels_path, lb.ndim);
        if (!s && lb.dims[0] != im.dims[0])
            s = duet_set_error(DUET_ERR_FORMAT,
                               "%s: labels count %lld != images count %lld in %s", labels_path,
                               (long long)lb.dims[0], (long long)im.dims[0], images_path);
        if (s) {
            duet_idx_free(&im);
            duet_idx_free(&lb);
            return s;
        }
    }
    out->n = im.dims[0];
    out->c = 1;
    out->h = im.dims[1];
    out->w = im.dims[2];
    out->pixels = im.data; /* [N, H, W] is [N, 1, H, W] */
    if (labels_path) {
        int maxl = 0;
        out->labels = duet_alloc((size_t)out->n * sizeof(int32_t));
        if (!out->labels) s = DUET_ERR_NOMEM;
        for (int64_t i = 0; i < out->n && !s; i++) {
            out->labels[i] = lb.data[i];
            if (lb.data[i] > maxl) maxl = lb.data[i];
        }
        if (!s) {
            out->nclasses = maxl + 1;
            out->class_names = duet_calloc((size_t)out->nclasses, sizeof(char *));
            if (!out->class_names) s = DUET_ERR_NOMEM;
            for (int i = 0; i < out->nclasses && !s; i++) {
                char num[16];
                snprintf(num, sizeof num, "%d", i);
                if (!(out->class_names[i] = dup_str(num))) s = DUET_ERR_NOMEM;
            }
        }
        duet_idx_free(&lb);
    }
    if (s) duet_dataset_free(out);
    return s;
}

/* ======================================================================== */
/* Fashion-MNIST                                                             */
/* ======================================================================== */

static const char *const fashion_names[DUET_FASHION_MNIST_CLASSES] = {
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal",  "shirt",   "sneaker",  "bag",   "ankle boot",
};

const char *duet_fashion_mnist_class_name(int i) {
    return i >= 0 && i < DUET_FASHION_MNIST_CLASSES ? fashion_names[i] : NULL;
}

int duet_fashion_mnist_class_from_name(const char *name) {
    return class_lookup(fashion_names, DUET_FASHION_MNIST_CLASSES, name);
}

const char *duet_split_name(duet_split s) {
    switch (s) {
    case DUET_SPLIT_TRAIN: return "train";
    case DUET_SPLIT_TEST: return "test";
    default: return "?";
    }
}

int duet_split_from_name(const char *name) {
    if (!name) return -1;
    if (strcmp(name, "train") == 0) return DUET_SPLIT_TRAIN;
    if (strcmp(name, "test") == 0 || strcmp(name, "t10k") == 0) return DUET_SPLIT_TEST;
    return -1;
}

duet_status duet_fashion_mnist_load(const char *dir, duet_split split, duet_dataset *out) {
    memset(out, 0, sizeof *out);
    if (split != DUET_SPLIT_TRAIN && split != DUET_SPLIT_TEST)
        return duet_set_error(DUET_ERR_ARG, "Fashion-MNIST split must be train or test");
    if (!dir) dir = DUET_FASHION_MNIST_DIR;
    const char *pre = split == DUET_SPLIT_TRAIN ? "train" : "t10k";
    char ip[4096], lp[4096];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, pre);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, pre);
    for (int k = 0; k < 2; k++) {
        const char *p = k ? lp : ip;
        if (access(p, R_OK) != 0)
            return duet_set_error(DUET_ERR_IO,
                                  "Fashion-MNIST file %s not found (%s): install Debian's "
                                  "dataset-fashion-mnist (sh tools/deps.sh, or sudo apt-get "
                                  "install dataset-fashion-mnist)",
                                  p, strerror(errno));
    }
    duet_status s = duet_dataset_load_idx(ip, lp, out);
    if (s) return s;
    if (out->h != 28 || out->w != 28)
        s = duet_set_error(DUET_ERR_FORMAT, "%s: Fashion-MNIST images are 28x28, got %lldx%lld",
                           ip, (long long)out->h, (long long)out->w);
    else if (out->nclasses > DUET_FASHION_MNIST_CLASSES)
        s = duet_set_error(DUET_ERR_FORMAT, "%s: label %d out of range 0..9", lp,
                           out->nclasses - 1);
    if (!s) {
        /* replace the "0".."9" names with the class names (all ten, even if a
         * small file lacks the last classes) */
        for (int i = 0; i < out->nclasses; i++) duet_free(out->class_names[i]);
        duet_free(out->class_names);
        out->nclasses = DUET_FASHION_MNIST_CLASSES;
        out->class_names = duet_calloc(DUET_FASHION_MNIST_CLASSES, sizeof(char *));
        if (!out->class_names) s = DUET_ERR_NOMEM;
        for (int i = 0; i < DUET_FASHION_MNIST_CLASSES && !s; i++)
            if (!(out->class_names[i] = dup_str(fashion_names[i]))) s = DUET_ERR_NOMEM;
    }
    if (s) duet_dataset_free(out);
    return s;
}
