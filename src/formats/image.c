/*
 * image.c — pictures in: decoding one image file (stb_image from Debian's
 * libstb-dev, compiled here and only here), channel conversion, the resize
 * the loaders use (area-average down, bilinear up), and the image-folder
 * dataset loader (flat, or one sub-folder per class).
 *
 * What it is not: an image editor. No colour management, no gamma, no EXIF
 * rotation, alpha is dropped (not composited). stb_image's symbols are static
 * to this file, so linking libduet next to another stb_image is safe.
 */
#include "formats/data.h"
#include "formats/formats.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- stb_image: PNG, JPEG, BMP, GIF, PNM only; from memory only ---- */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_NO_STDIO
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_PNM
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop
/* stb 2.28 declares stbi_set_unpremultiply_on_load_thread but never defines
 * it; with STB_IMAGE_STATIC that is an unused static, reported at the end of
 * the file, so the warning stays off for this file. */
#pragma GCC diagnostic ignored "-Wunused-function"

/* ======================================================================== */
/* One image                                                                 */
/* ======================================================================== */

static int has_image_ext(const char *name) {
    static const char *const exts[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm"};
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++)
        if (strcasecmp(dot, exts[i]) == 0) return 1;
    return 0;
}

/* Converts u8 src [n, sc] (sc = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) to dst
 * [n, dc] (dc = 1 or 3). Gray from colour is ITU-R 601-2 luma in 16-bit fixed
 * point, the same integers as PIL's convert("L"); alpha is dropped. */
static void convert_channels(uint8_t *dst, int dc, const uint8_t *src, int sc, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *p = src + i * sc;
        if (dc == 1) {
            if (sc <= 2) dst[i] = p[0];
            else dst[i] = (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
        } else {
            uint8_t *q = dst + i * 3;
            if (sc <= 2) q[0] = q[1] = q[2] = p[0];
            else q[0] = p[0], q[1] = p[1], q[2] = p[2];
        }
    }
}

/* Decodes the file bytes buf[0..size) (named `path` in errors) to u8 [h, w,
 * channels] through stb. is_image: set to 0 when the bytes are not an image
 * stb recognises (no error set), 1 otherwise. */
static duet_status decode(const char *path, const uint8_t *buf, size_t size, int channels,
                          uint8_t **pixels, int64_t *w, int64_t *h, int *channels_out,
                          int *is_image) {
    *pixels = NULL;
    *is_image = 0;
    if (size > (size_t)INT32_MAX)
        return duet_set_error(DUET_ERR_FORMAT, "%s: image files over 2 GiB are not supported", path);
    int iw, ih, ic;
    if (!stbi_info_from_memory(buf, (int)size, &iw, &ih, &ic)) return DUET_OK;
    *is_image = 1;
    uint8_t *raw = stbi_load_from_memory(buf, (int)size, &iw, &ih, &ic, 0);
    if (!raw)
        return duet_set_error(DUET_ERR_FORMAT, "%s: corrupt image (%s)", path,
                              stbi_failure_reason() ? stbi_failure_reason() : "decoder failed");
    int dc = channels ? channels : ic;
    int64_t n = (int64_t)iw * ih;
    uint8_t *px = duet_alloc((size_t)(n * dc));
    if (!px) {
        stbi_image_free(raw);
        return DUET_ERR_NOMEM;
    }
    if (channels) convert_channels(px, dc, raw, ic, n);
    else memcpy(px, raw, (size_t)(n * dc));
    stbi_image_free(raw);
    *pixels = px;
    *w = iw;
    *h = ih;
    if (channels_out) *channels_out = dc;
    return DUET_OK;
}

duet_status duet_image_load(const char *path, int channels, uint8_t **pixels, int64_t *w,
                            int64_t *h, int *channels_out) {
    *pixels = NULL;
    if (channels != 0 && channels != 1 && channels != 3)
        return duet_set_error(DUET_ERR_ARG, "image channels must be 0, 1 or 3, got %d", channels);
    char *buf;
    size_t size;
    duet_status s = duet_read_file(path, &buf, &size);
    if (s) return s;
    int is_image;
    s = decode(path, (const uint8_t *)buf, size, channels, pixels, w, h, channels_out, &is_image);
    duet_free(buf);
    if (!s && !is_image)
        s = duet_set_error(DUET_ERR_FORMAT, "%s: not an image (%s)", path,
                           stbi_failure_reason() ? stbi_failure_reason() : "unknown format");
    return s;
}

/* ======================================================================== */
/* Resize                                                                    */
/* ======================================================================== */

/* One axis in -> out as a sparse matrix: output i takes weights wt[k] of
 * inputs first[i] + k for k < cnt[i]. Built in double, stored in float. */
typedef struct {
    int64_t *first, *cnt;
    float *wt;   /* out * maxc */
    int64_t maxc;
} axis_weights;

static void axis_free(axis_weights *a) {
    duet_free(a->first);
    duet_free(a->cnt);
    duet_free(a->wt);
}

static duet_status axis_build(axis_weights *a, int64_t in, int64_t out) {
    memset(a, 0, sizeof *a);
    double scale = (double)in / (double)out;
    a->maxc = out < in ? (int64_t)ceil(scale) + 1 : 2;
    a->first = duet_alloc((size_t)out * sizeof(int64_t));
    a->cnt = duet_alloc((size_t)out * sizeof(int64_t));
    a->wt = duet_calloc((size_t)(out * a->maxc), sizeof(float));
    if (!a->first || !a->cnt || !a->wt) {
        axis_free(a);
        return DUET_ERR_NOMEM;
    }
    for (int64_t i = 0; i < out; i++) {
        float *w = a->wt + i * a->maxc;
        if (out == in) { /* copy */
            a->first[i] = i;
            a->cnt[i] = 1;
            w[0] = 1.0f;
        } else if (out < in) { /* area: overlap of [i*scale, (i+1)*scale) with [j, j+1) */
            double lo = (double)i * scale, hi = (double)(i + 1) * scale;
            if (i == out - 1) hi = (double)in; /* exact right edge */
            int64_t j0 = (int64_t)floor(lo), j1 = (int64_t)ceil(hi);
            if (j1 > in) j1 = in;
            a->first[i] = j0;
            a->cnt[i] = 0;
            for (int64_t j = j0; j < j1; j++) {
                double ov = fmin(hi, (double)(j + 1)) - fmax(lo, (double)j);
                if (ov <= 0.0) continue;
                if (a->cnt[i] == 0) a->first[i] = j;
                w[a->cnt[i]++] = (float)(ov / (hi - lo));
            }
        } else { /* bilinear, half-pixel centres, clamped (align_corners=False) */
            double x = ((double)i + 0.5) * scale - 0.5;
            if (x < 0.0) x = 0.0;
            int64_t j0 = (int64_t)floor(x);
            if (j0 > in - 1) j0 = in - 1;
            double l = x - (double)j0;
            a->first[i] = j0;
            if (j0 + 1 < in) {
                a->cnt[i] = 2;
                w[0] = (float)(1.0 - l);
                w[1] = (float)l;
            } else {
                a->cnt[i] = 1;
                w[0] = 1.0f;
            }
        }
    }
    return DUET_OK;
}

duet_status duet_image_resize(float *dst, int64_t OH, int64_t OW, const float *src, int64_t C,
                              int64_t H, int64_t W) {
    if (OH < 1 || OW < 1 || H < 1 || W < 1 || C < 1)
        return duet_set_error(DUET_ERR_ARG, "resize: sizes must be positive (C %lld, %lldx%lld -> %lldx%lld)",
                              (long long)C, (long long)H, (long long)W, (long long)OH, (long long)OW);
    axis_weights ay, ax;
    duet_status s = axis_build(&ay, H, OH);
    if (s) return s;
    s = axis_build(&ax, W, OW);
    if (s) {
        axis_free(&ay);
        return s;
    }
    float *tmp = duet_alloc((size_t)(C * OH * W) * sizeof(float)); /* [C, OH, W] */
    if (!tmp) {
        axis_free(&ay);
        axis_free(&ax);
        return DUET_ERR_NOMEM;
    }
    /* rows: tmp[c, i, :] = sum_k wy[i,k] * src[c, first+k, :] */
    for (int64_t c = 0; c < C; c++) {
        for (int64_t i = 0; i < OH; i++) {
            float *t = tmp + (c * OH + i) * W;
            const float *wy = ay.wt + i * ay.maxc;
            for (int64_t x = 0; x < W; x++) t[x] = 0.0f;
            for (int64_t k = 0; k < ay.cnt[i]; k++) {
                const float *row = src + (c * H + ay.first[i] + k) * W;
                for (int64_t x = 0; x < W; x++) t[x] += wy[k] * row[x];
            }
        }
    }
    /* columns: dst[c, i, j] = sum_k wx[j,k] * tmp[c, i, first+k] */
    for (int64_t r = 0; r < C * OH; r++) {
        const float *t = tmp + r * W;
        float *d = dst + r * OW;
        for (int64_t j = 0; j < OW; j++) {
            const float *wx = ax.wt + j * ax.maxc;
            const float *p = t + ax.first[j];
            float acc = 0.0f;
            for (int64_t k = 0; k < ax.cnt[j]; k++) acc += wx[k] * p[k];
            d[j] = acc;
        }
    }
    duet_free(tmp);
    axis_free(&ay);
    axis_free(&ax);
    return DUET_OK;
}

/* ======================================================================== */
/* Image folders                                                             */
/* ======================================================================== */

void duet_image_folder_params_default(duet_image_folder_params *p) {
    p->size = 32;
    p->channels = 3;
    p->classes = -1;
}

/* u8 [h, w, C] -> center square crop -> resize -> u8 dst [C, S, S].
 * work: at least C*side*side + C*S*S floats. */
static duet_status crop_resize(uint8_t *dst, const uint8_t *px, int64_t w, int64_t h, int64_t C,
                               int64_t S, float *work) {
    int64_t side = w < h ? w : h;
    int64_t x0 = (w - side) / 2, y0 = (h - side) / 2;
    float *crop = work, *res = work + C * side * side;
    for (int64_t c = 0; c < C; c++)
        for (int64_t y = 0; y < side; y++)
            for (int64_t x = 0; x < side; x++)
                crop[(c * side + y) * side + x] = (float)px[((y0 + y) * w + x0 + x) * C + c];
    duet_status s = duet_image_resize(res, S, S, crop, C, side, side);
    if (s) return s;
    for (int64_t i = 0; i < C * S * S; i++) {
        float v = res[i] + 0.5f;
        dst[i] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
    }
    return DUET_OK;
}

typedef struct {
    char *path;  /* duet_alloc'd */
    int label;   /* -1 unlabelled */
} img_file;

/* dir + "/" + name */
static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = duet_alloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Appends the regular, non-hidden files of dir to files (label `label`). */
static duet_status collect(const char *dir, int label, img_file **files, int64_t *n,
                           int64_t *cap) {
    char **names;
    int64_t cnt;
    duet_status s = duet_data_list_dir(dir, &names, &cnt);
    if (s) return s;
    for (int64_t i = 0; i < cnt && !s; i++) {
        if (names[i][0] == '.') continue;
        char *p = path_join(dir, names[i]);
        if (!p) {
            s = DUET_ERR_NOMEM;
            break;
        }
        if (!is_file(p)) { /* nested folders are not looked into */
            duet_free(p);
            continue;
        }
        if (*n == *cap) {
            int64_t nc = *cap ? *cap * 2 : 64;
            img_file *nf = duet_alloc((size_t)nc * sizeof *nf);
            if (!nf) {
                duet_free(p);
                s = DUET_ERR_NOMEM;
                break;
            }
            if (*n) memcpy(nf, *files, (size_t)*n * sizeof *nf);
            duet_free(*files);
            *files = nf;
            *cap = nc;
        }
        (*files)[(*n)++] = (img_file){p, label};
    }
    duet_free(names);
    return s;
}

duet_status duet_image_folder_load(const char *dir, const duet_image_folder_params *p,
                                   duet_dataset *out, int64_t *nskipped) {
    memset(out, 0, sizeof *out);
    if (nskipped) *nskipped = 0;
    duet_image_folder_params def;
    if (!p) {
        duet_image_folder_params_default(&def);
        p = &def;
    }
    if (p->channels != 1 && p->channels != 3)
        return duet_set_error(DUET_ERR_ARG, "image channels must be 1 or 3, got %d", p->channels);
    if (p->size < 1 || p->size > 4096)
        return duet_set_error(DUET_ERR_ARG, "image size must be 1..4096, got %lld",
                              (long long)p->size);
    if (!is_dir(dir)) return duet_set_error(DUET_ERR_IO, "image folder %s: not a folder", dir);

    char **names;
    int64_t nnames;
    duet_status s = duet_data_list_dir(dir, &names, &nnames);
    if (s) return s;
    /* sub-folders (sorted, non-hidden) */
    int nsub = 0;
    for (int64_t i = 0; i < nnames && !s; i++) {
        if (names[i][0] == '.') continue;
        char *sp = path_join(dir, names[i]);
        if (!sp) s = DUET_ERR_NOMEM;
        else if (is_dir(sp)) names[nsub++] = names[i]; /* compact in place, order kept */
        duet_free(sp);
    }
    int classes = p->classes < 0 ? nsub > 0 : p->classes;
    if (!s && classes && nsub == 0)
        s = duet_set_error(DUET_ERR_FORMAT,
                           "image folder %s has no sub-folders, but classes were asked for (one "
                           "sub-folder per class)", dir);

    img_file *files = NULL;
    int64_t nfiles = 0, cap = 0, skipped = 0;
    if (!s && classes) {
        out->class_names = duet_calloc((size_t)nsub, sizeof(char *));
        if (!out->class_names) s = DUET_ERR_NOMEM;
        out->nclasses = s ? 0 : nsub;
        for (int k = 0; k < nsub && !s; k++) {
            size_t len = strlen(names[k]);
            if (!(out->class_names[k] = duet_alloc(len + 1))) {
                s = DUET_ERR_NOMEM;
                break;
            }
            memcpy(out->class_names[k], names[k], len + 1);
            char *sp = path_join(dir, names[k]);
            if (!sp) s = DUET_ERR_NOMEM;
            else s = collect(sp, k, &files, &nfiles, &cap);
            duet_free(sp);
        }
        /* the top-level files are not in any class */
        if (!s) {
            img_file *top = NULL;
            int64_t ntop = 0, ctop = 0;
            s = collect(dir, -1, &top, &ntop, &ctop);
            for (int64_t i = 0; i < ntop; i++) duet_free(top[i].path);
            duet_free(top);
            skipped += ntop;
        }
    } else if (!s) {
        s = collect(dir, -1, &files, &nfiles, &cap);
    }
    duet_free(names);

    const int64_t C = p->channels, S = p->size;
    int64_t per = C * S * S;
    if (!s && nfiles > 0) {
        out->pixels = duet_alloc((size_t)(nfiles * per));
        if (classes) out->labels = duet_alloc((size_t)nfiles * sizeof(int32_t));
        if (!out->pixels || (classes && !out->labels)) s = DUET_ERR_NOMEM;
    }
    int64_t n = 0;
    int64_t *per_class = NULL;
    if (!s && classes && !(per_class = duet_calloc((size_t)out->nclasses, sizeof(int64_t))))
        s = DUET_ERR_NOMEM;
    float *work = NULL;
    int64_t work_cap = 0;
    for (int64_t i = 0; i < nfiles && !s; i++) {
        char *buf;
        uint8_t *px = NULL;
        size_t size;
        s = duet_read_file(files[i].path, &buf, &size);
        if (s) break;
        int64_t w = 0, h = 0;
        int is_image;
        s = decode(files[i].path, (const uint8_t *)buf, size, (int)C, &px, &w, &h, NULL, &is_image);
        duet_free(buf);
        if (!s && !is_image) {
            const char *base = strrchr(files[i].path, '/');
            if (has_image_ext(base ? base + 1 : files[i].path))
                s = duet_set_error(DUET_ERR_FORMAT, "%s: not a valid image (%s)", files[i].path,
                                   stbi_failure_reason() ? stbi_failure_reason() : "unknown format");
            else
                skipped++;
            continue;
        }
        if (s) break;
        int64_t side = w < h ? w : h;
        int64_t need = C * side * side + per;
        if (need > work_cap) {
            duet_free(work);
            work_cap = need;
            if (!(work = duet_alloc((size_t)work_cap * sizeof(float)))) {
                duet_free(px);
                s = DUET_ERR_NOMEM;
                break;
            }
        }
        s = crop_resize(out->pixels + n * per, px, w, h, C, S, work);
        duet_free(px);
        if (s) break;
        if (classes) {
            out->labels[n] = files[i].label;
            per_class[files[i].label]++;
        }
        n++;
    }
    duet_free(work);
    for (int k = 0; k < out->nclasses && !s; k++)
        if (per_class[k] == 0)
            s = duet_set_error(DUET_ERR_FORMAT,
                               "image folder %s: class folder '%s' holds no images (remove it, or "
                               "load the folder without classes)", dir, out->class_names[k]);
    duet_free(per_class);
    for (int64_t i = 0; i < nfiles; i++) duet_free(files[i].path);
    duet_free(files);
    if (!s && n == 0 && skipped == 0)
        s = duet_set_error(DUET_ERR_FORMAT, "image folder %s holds no images (it is empty)", dir);
    else if (!s && n == 0)
        s = duet_set_error(DUET_ERR_FORMAT,
                           "image folder %s holds no images (%lld files skipped: not PNG/JPEG/"
                           "BMP/GIF/PNM)", dir, (long long)skipped);
    if (s) {
        duet_dataset_free(out);
        return s;
    }
    out->n = n;
    out->c = C;
    out->h = out->w = S;
    if (nskipped) *nskipped = skipped;
    return DUET_OK;
}
