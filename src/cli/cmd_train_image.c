/*
 * cmd_train_image.c — `duet train image`: trains a painter (a class-
 * conditional UNet denoiser) on Fashion-MNIST or a folder of images, and the
 * image-data loader `duet eval image` shares (cli_load_images).
 *
 * One step, all of it a pure function of (seed, step), so a resumed run sees
 * exactly what an uninterrupted one would:
 *   1. the batch: images k*B .. k*B+B-1 of an endless stream of epochs, each
 *      epoch a Fisher-Yates permutation drawn from philox(seed, epoch);
 *   2. each label becomes the "no class" label with probability --cond-drop
 *      (classifier-free guidance learns the unconditional model alongside);
 *   3. t uniform in [0, T), eps ~ N(0, 1), x_t = sqrt(abar) x_0 + sqrt(1-abar) eps;
 *   4. loss = MSE(UNet(x_t, t, label), eps or v), backward, global grad-norm
 *      clipping, AdamW with linear warmup then cosine decay to lr/10 over
 *      --steps (constant after warmup when only --minutes bounds the run);
 *   5. EMA of the weights in a second UNet, decay min(--ema, (1+k)/(10+k))
 *      so that short runs are not dominated by the initialisation.
 * Files: <out> (EMA weights, what `duet image` samples from, with the class
 * names), <out>.optim.safetensors (raw weights, EMA weights, AdamW m and v,
 * the step and everything needed to continue), both written atomically every
 * --save-every steps, at the end and on Ctrl-C (exit 130); <out>.csv (a row per
 * step); <out>.samples/step-NNNNNN.png (a grid, one row per class, from the
 * EMA model) every --sample-every steps and at the end.
 *
 * Test hook (as in `train text`): DUET_TRAIN_KILL_AT=N makes the process
 * SIGKILL itself right after step N, the way a crash would.
 *
 * What it is not: a mixed-precision or multi-process trainer; there is no
 * gradient accumulation, no data augmentation, no latent space.
 */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ==== data ================================================================ */

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* A folder holding Fashion-MNIST's four IDX files. */
static int has_idx_files(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    return is_file(p);
}

/* Nearest u8 of a [-1, 1] value (the inverse of duet_u8_to_unit). */
static uint8_t unit_to_u8(float x) {
    float v = (x + 1.0f) * 127.5f + 0.5f;
    return !(v > 0.0f) ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
}

/* Resizes every image of d to size x size in place (area shrink / bilinear
 * grow, duet_image_resize). */
static duet_status resize_dataset(duet_dataset *d, int64_t size) {
    const int64_t C = d->c, H = d->h, W = d->w, per = C * size * size;
    uint8_t *px = duet_alloc((size_t)(d->n * per));
    float *src = duet_alloc(sizeof(float) * (size_t)(C * H * W));
    float *dst = duet_alloc(sizeof(float) * (size_t)per);
    duet_status s = !px || !src || !dst ? duet_set_error(DUET_ERR_NOMEM, "out of memory resizing images") : DUET_OK;
    for (int64_t i = 0; !s && i < d->n; i++) {
        duet_u8_to_unit(src, d->pixels + i * C * H * W, C * H * W);
        s = duet_image_resize(dst, size, size, src, C, H, W);
        for (int64_t k = 0; !s && k < per; k++) px[i * per + k] = unit_to_u8(dst[k]);
    }
    duet_free(src);
    duet_free(dst);
    if (s) {
        duet_free(px);
        return s;
    }
    duet_free(d->pixels);
    d->pixels = px;
    d->h = d->w = size;
    return DUET_OK;
}

int cli_load_images(const char *cmd, const char *spec, duet_split split, int64_t size, int channels,
                    duet_dataset *d) {
    memset(d, 0, sizeof *d);
    duet_status s;
    int folder = 0;
    const char *fm_dir = NULL;
    if (strcmp(spec, "fashion-mnist") == 0) {
        fm_dir = DUET_FASHION_MNIST_DIR;
    } else if (strncmp(spec, "fashion-mnist:", 14) == 0) {
        fm_dir = spec + 14;
    } else if (is_dir(spec) && has_idx_files(spec)) {
        fm_dir = spec;
    } else if (is_dir(spec)) {
        folder = 1;
    } else {
        cli_error(cmd, "--data '%s': no such folder (give fashion-mnist, fashion-mnist:DIR, or a "
                  "folder of images, one sub-folder per class)", spec);
        return EXIT_IO;
    }
    if (fm_dir) {
        if (channels > 1) {
            cli_error(cmd, "Fashion-MNIST is gray: --image-channels must be 1 (got %d)", channels);
            return EXIT_USAGE;
        }
        s = duet_fashion_mnist_load(fm_dir, split, d);
        if (!s && size > 0 && size != d->h) {
            fprintf(stderr, "duet %s: resizing %lld images from %lldx%lld to %lldx%lld\n", cmd,
                    (long long)d->n, (long long)d->h, (long long)d->w, (long long)size, (long long)size);
            s = resize_dataset(d, size);
        }
    } else {
        duet_image_folder_params p;
        duet_image_folder_params_default(&p);
        if (size > 0) p.size = size;
        if (channels > 0) p.channels = channels;
        int64_t skipped = 0;
        s = duet_image_folder_load(spec, &p, d, &skipped);
        if (!s) {
            fprintf(stderr,
                    "duet %s: %lld images from %s (%d classes%s); every image is center-cropped to "
                    "a square and resized to %lldx%lld, whatever its size\n",
                    cmd, (long long)d->n, spec, d->nclasses, d->nclasses ? "" : ": unconditional",
                    (long long)d->h, (long long)d->w);
            if (skipped) fprintf(stderr, "duet %s: skipped %lld files that are not images\n", cmd, (long long)skipped);
        }
    }
    if (s) {
        cli_error(cmd, "%s", duet_last_error());
        duet_dataset_free(d);
        return cli_exit_code(s);
    }
    if (d->n < 1) {
        cli_error(cmd, "%s: no images", spec);
        duet_dataset_free(d);
        return EXIT_FORMAT;
    }
    (void)folder;
    return 0;
}

/* FNV-1a over pixels and labels: resume checks it is the same data. */
static uint64_t data_hash(const duet_dataset *d) {
    uint64_t h = 1469598103934665603ull;
    const int64_t n = d->n * d->c * d->h * d->w;
    for (int64_t i = 0; i < n; i++) h = (h ^ d->pixels[i]) * 1099511628211ull;
    for (int64_t i = 0; d->labels && i < d->n; i++) h = (h ^ (uint32_t)d->labels[i]) * 1099511628211ull;
    return h;
}

/* Random-stream keys: one philox key per purpose, all derived from --seed. */
#define KEY_PERM 0x7065726d75746531ull
#define KEY_DRAW 0x6c6162656c2f7431ull
#define KEY_NOISE 0x6e6f697365657073ull
#define KEY_DROPOUT 0x64726f706f757431ull

/* Fisher-Yates permutation of 0..n-1 for `epoch`. */
static void epoch_perm(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t w[4];
        duet_philox(seed ^ KEY_PERM, ((uint64_t)epoch << 32) + (uint64_t)i, w);
        const int64_t j = (int64_t)(((uint64_t)w[0] * (uint64_t)(i + 1)) >> 32);
        const int64_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

/* ==== options ============================================================= */

typedef struct {
    const char *data, *out, *preset, *mults, *attn, *prediction, *schedule;
    int size, channels, image_channels, res_blocks, heads, groups, resume;
    int64_t steps, batch, warmup, seed, save_every, sample_every, stop_at;
    float minutes, lr, ema, cond_drop, dropout, weight_decay, grad_clip;
} topts;

enum {
    O_DATA, O_SIZE, O_CHANNELS, O_MULTS, O_RES_BLOCKS, O_ATTN, O_HEADS, O_GROUPS, O_DROPOUT,
    O_IMAGE_CHANNELS, O_PREDICTION, O_SCHEDULE, O_STEPS, O_MINUTES, O_BATCH, O_LR, O_WARMUP,
    O_WD, O_CLIP, O_EMA, O_COND_DROP, O_SEED, O_OUT, O_RESUME, O_SAVE_EVERY, O_SAMPLE_EVERY,
    O_STOP_AT, O_PRESET, O_COUNT
};

static const char usage_text[] =
    "--data fashion-mnist|DIR --out painter.safetensors [options]\n\n"
    "Trains a class-conditional diffusion model (a UNet denoiser). --data is\n"
    "fashion-mnist (Debian's dataset-fashion-mnist), fashion-mnist:DIR, or a folder\n"
    "of images with one sub-folder per class (no sub-folders: unconditional).\n"
    "Writes OUT (EMA weights, for `duet image`), OUT.optim.safetensors (for\n"
    "--resume), OUT.csv and OUT.samples/step-NNNNNN.png.\n\n"
    "presets: tiny    (channels 16, mults 1,2, 1 res block, no attention, batch 32,\n"
    "                  lr 1e-3, 500 steps: a first look in a couple of minutes)\n"
    "         default (channels 32, mults 1,2,2, 2 res blocks, attention at level 2,\n"
    "                  batch 64, lr 5e-4, 10000 steps)";

/* Parses "1,2,2" into up to max ints; returns the count or -1. */
static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    if (strcmp(s, "none") == 0 || !*s) return 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 1000 || n == max) return -1;
        out[n++] = (int)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n;
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* Creates `dir` (one level); 0 when it exists or was made. */
static int make_dir(const char *dir) { return mkdir(dir, 0777) == 0 || errno == EEXIST ? 0 : -1; }

/* Creates the folders above `path` (mkdir -p of its dirname); 0 on success. */
static int make_parents(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        int bad = make_dir(buf);
        *p = '/';
        if (bad) return -1;
    }
    return 0;
}

/* ==== checkpoints ========================================================= */

typedef struct {
    int64_t step, total_steps, batch, warmup, seed, data_n;
    uint64_t data_hash;
    float lr, ema, cond_drop, weight_decay, grad_clip;
    char data[1024];
} train_state;

static void meta_i64(duet_st_writer *w, const char *k, int64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)v);
    duet_st_writer_meta(w, k, b);
}

static void meta_f32(duet_st_writer *w, const char *k, float v) {
    char b[32];
    snprintf(b, sizeof b, "%.9g", (double)v); /* round-trips a float exactly */
    duet_st_writer_meta(w, k, b);
}

/* Writes <optim>: raw weights, EMA weights, AdamW moments and the state. */
static duet_status save_optim(const char *path, duet_unet *u, duet_unet *ema, const duet_adamw *opt,
                              const train_state *ts) {
    duet_st_writer *w = duet_st_writer_new();
    if (!w) return duet_set_error(DUET_ERR_NOMEM, "out of memory");
    duet_st_writer_meta(w, "duet.kind", "painter-optim");
    meta_i64(w, "duet.step", ts->step);
    meta_i64(w, "duet.adam_step", opt->step);
    meta_i64(w, "duet.total_steps", ts->total_steps);
    meta_i64(w, "duet.batch", ts->batch);
    meta_i64(w, "duet.warmup", ts->warmup);
    meta_i64(w, "duet.seed", ts->seed);
    meta_i64(w, "duet.data_n", ts->data_n);
    char b[32];
    snprintf(b, sizeof b, "%016llx", (unsigned long long)ts->data_hash);
    duet_st_writer_meta(w, "duet.data_hash", b);
    duet_st_writer_meta(w, "duet.data", ts->data);
    meta_f32(w, "duet.lr", ts->lr);
    meta_f32(w, "duet.ema", ts->ema);
    meta_f32(w, "duet.cond_drop", ts->cond_drop);
    meta_f32(w, "duet.weight_decay", ts->weight_decay);
    meta_f32(w, "duet.grad_clip", ts->grad_clip);
    const int np = duet_unet_nparams(u);
    duet_tensor **p = duet_unet_params(u), **pe = duet_unet_params(ema);
    char (*names)[96] = duet_alloc(sizeof *names * (size_t)np * 4);
    if (!names) {
        duet_st_writer_free(w);
        return duet_set_error(DUET_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < np; i++) {
        const duet_tensor *t = p[i];
        snprintf(names[4 * i], 96, "raw.%s", t->name);
        snprintf(names[4 * i + 1], 96, "ema.%s", t->name);
        snprintf(names[4 * i + 2], 96, "m.%s", t->name);
        snprintf(names[4 * i + 3], 96, "v.%s", t->name);
        duet_st_writer_add(w, names[4 * i], DUET_DTYPE_F32, t->ndim, t->shape, t->data);
        duet_st_writer_add(w, names[4 * i + 1], DUET_DTYPE_F32, t->ndim, t->shape, pe[i]->data);
        duet_st_writer_add(w, names[4 * i + 2], DUET_DTYPE_F32, t->ndim, t->shape, opt->m[i]);
        duet_st_writer_add(w, names[4 * i + 3], DUET_DTYPE_F32, t->ndim, t->shape, opt->v[i]);
    }
    duet_status s = duet_st_writer_write(w, path);
    duet_st_writer_free(w);
    duet_free(names);
    return s;
}

static int get_i64(const duet_st *st, const char *path, const char *key, int64_t *out) {
    const char *v = duet_st_meta(st, key);
    char *end;
    if (!v) {
        duet_set_error(DUET_ERR_FORMAT, "%s: training state lacks '%s'", path, key);
        return 0;
    }
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno) {
        duet_set_error(DUET_ERR_FORMAT, "%s: '%s' = '%s' is not a whole number", path, key, v);
        return 0;
    }
    *out = x;
    return 1;
}

static int get_f32(const duet_st *st, const char *path, const char *key, float *out) {
    const char *v = duet_st_meta(st, key);
    char *end;
    if (!v) {
        duet_set_error(DUET_ERR_FORMAT, "%s: training state lacks '%s'", path, key);
        return 0;
    }
    float x = strtof(v, &end);
    if (end == v || *end || !isfinite(x)) {
        duet_set_error(DUET_ERR_FORMAT, "%s: '%s' = '%s' is not a number", path, key, v);
        return 0;
    }
    *out = x;
    return 1;
}

/* Reads the run's settings and step from <optim> (metadata only). */
static duet_status read_state(const char *path, train_state *ts, int64_t *adam_step) {
    duet_st *st = duet_st_open(path);
    if (!st) return DUET_ERR_FORMAT;
    duet_status s = DUET_OK;
    const char *kind = duet_st_meta(st, "duet.kind");
    if (!kind || strcmp(kind, "painter-optim") != 0) {
        s = duet_set_error(DUET_ERR_FORMAT, "%s: not a painter training state (duet.kind = %s)", path,
                           kind ? kind : "missing");
    } else if (!get_i64(st, path, "duet.step", &ts->step) || !get_i64(st, path, "duet.adam_step", adam_step) ||
               !get_i64(st, path, "duet.total_steps", &ts->total_steps) ||
               !get_i64(st, path, "duet.batch", &ts->batch) || !get_i64(st, path, "duet.warmup", &ts->warmup) ||
               !get_i64(st, path, "duet.seed", &ts->seed) || !get_i64(st, path, "duet.data_n", &ts->data_n) ||
               !get_f32(st, path, "duet.lr", &ts->lr) || !get_f32(st, path, "duet.ema", &ts->ema) ||
               !get_f32(st, path, "duet.cond_drop", &ts->cond_drop) ||
               !get_f32(st, path, "duet.weight_decay", &ts->weight_decay) ||
               !get_f32(st, path, "duet.grad_clip", &ts->grad_clip)) {
        s = DUET_ERR_FORMAT;
    } else {
        const char *h = duet_st_meta(st, "duet.data_hash"), *dsrc = duet_st_meta(st, "duet.data");
        ts->data_hash = h ? strtoull(h, NULL, 16) : 0;
        snprintf(ts->data, sizeof ts->data, "%s", dsrc ? dsrc : "");
    }
    duet_st_close(st);
    return s;
}

/* Reads the raw and EMA weights and the moments (u, ema and opt are made
 * for the painter file's config). */
static duet_status load_tensors(const char *path, duet_unet *u, duet_unet *ema, duet_adamw *opt) {
    duet_st *st = duet_st_open(path);
    if (!st) return DUET_ERR_FORMAT;
    duet_status s = duet_unet_load_weights(u, st, "raw.");
    if (!s) s = duet_unet_load_weights(ema, st, "ema.");
    const int np = duet_unet_nparams(u);
    duet_tensor **p = duet_unet_params(u);
    char name[128];
    for (int i = 0; !s && i < np; i++) {
        snprintf(name, sizeof name, "m.%s", p[i]->name);
        s = duet_st_read_f32(st, name, opt->m[i], duet_tensor_numel(p[i]));
        snprintf(name, sizeof name, "v.%s", p[i]->name);
        if (!s) s = duet_st_read_f32(st, name, opt->v[i], duet_tensor_numel(p[i]));
    }
    if (s) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", duet_last_error());
        s = duet_set_error(DUET_ERR_FORMAT, "%s does not fit the model in its painter file: %s", path, msg);
    }
    duet_st_close(st);
    return s;
}

/* <out>: the EMA weights with the class names and a few facts of the run. */
static duet_status save_model(const char *path, duet_unet *ema, const duet_dataset *d,
                              const train_state *ts) {
    char step[32], seed[32];
    snprintf(step, sizeof step, "%lld", (long long)ts->step);
    snprintf(seed, sizeof seed, "%lld", (long long)ts->seed);
    const char *extra[] = {"duet.trained_steps", step, "duet.data", ts->data, "duet.seed", seed,
                           "duet.weights", "ema"};
    return duet_unet_save(ema, path, d->nclasses ? (const char *const *)d->class_names : NULL, 4, extra);
}

/* Both files: the training state first, so a crash between the two writes
 * leaves a state that resumes exactly (it holds the EMA weights too). */
static duet_status save_all(const char *out, const char *optim, duet_unet *u, duet_unet *ema,
                            const duet_adamw *opt, const train_state *ts, const duet_dataset *d) {
    duet_status s = save_optim(optim, u, ema, opt, ts);
    if (!s) s = save_model(out, ema, d, ts);
    return s;
}

/* ==== CSV log ============================================================= */

static const char csv_header[] = "step,loss,lr,grad_norm,images_per_s,elapsed_s\n";

/* Keeps the header and the rows with step <= upto of an existing log
 * (resume: rows written after the checkpoint are dropped), rewritten
 * atomically; then opens it for appending. */
static FILE *csv_open(const char *path, int64_t upto) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    len = (size_t)snprintf(buf, cap, "%s", csv_header);
    FILE *f = upto > 0 ? fopen(path, "r") : NULL;
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n' || line[0] < '0' || line[0] > '9') continue;
        if (strtoll(line, NULL, 10) > upto) break;
        if (len + n + 1 > cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb, cap *= 2;
        }
        memcpy(buf + len, line, n + 1);
        len += n;
    }
    if (f) fclose(f);
    duet_status s = duet_write_file_atomic(path, buf, len);
    free(buf);
    return s ? NULL : fopen(path, "a");
}

/* ==== sample grids ======================================================== */

/* One row per class (8 columns), DDIM 20 steps, guidance 3, a fixed seed, so
 * the grids of successive steps are comparable. Unconditional: 4 x 8. */
static duet_status sample_grid(const char *path, duet_unet *ema, int64_t step) {
    const duet_unet_config *c = duet_unet_get_config(ema);
    const int64_t cols = 8, rows = c->num_classes ? c->num_classes : 4, n = rows * cols;
    const int64_t C = c->in_channels, S = c->image_size, per = C * S * S;
    float *x = duet_alloc(sizeof(float) * (size_t)(n * per));
    int32_t *lab = duet_alloc(sizeof(int32_t) * (size_t)n);
    if (!x || !lab) {
        duet_free(x), duet_free(lab);
        return duet_set_error(DUET_ERR_NOMEM, "out of memory for the sample grid");
    }
    for (int64_t i = 0; i < n; i++) lab[i] = (int32_t)(i / cols);
    duet_diffusion_params p;
    duet_diffusion_params_init(&p);
    p.sampler = DUET_SAMPLER_DDIM, p.steps = 20, p.seed = 1234;
    const int64_t chunk = 64; /* at most 64 samples (128 with guidance) per call */
    duet_status s = DUET_OK;
    for (int64_t i0 = 0; !s && i0 < n; i0 += chunk) {
        const int64_t k = n - i0 < chunk ? n - i0 : chunk;
        p.seed = 1234 + (uint64_t)(i0 / chunk);
        s = duet_unet_sample(ema, c->num_classes ? lab + i0 : NULL, k, &p, c->num_classes ? 3.0f : 1.0f,
                             x + i0 * per, NULL, NULL);
    }
    if (!s) {
        int64_t gh, gw;
        duet_image_grid_size(rows, cols, S, S, 2, &gh, &gw);
        uint8_t *img = duet_alloc((size_t)(gh * gw * C));
        if (!img) s = duet_set_error(DUET_ERR_NOMEM, "out of memory for the sample grid");
        else {
            duet_image_grid(img, x, n, C, S, S, rows, cols, 2, 255);
            char st[32];
            snprintf(st, sizeof st, "%lld", (long long)step);
            const char *text[] = {"Software", "duet " DUET_VERSION, "duet.step", st, "duet.sampler",
                                  "ddim", "duet.steps", "20", "duet.cfg", c->num_classes ? "3" : "1",
                                  "duet.seed", "1234"};
            s = duet_png_write(path, img, gw, gh, (int)C, text, 6);
            duet_free(img);
        }
    }
    duet_free(x);
    duet_free(lab);
    return s;
}

/* ==== the command ========================================================= */

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C stops at once */
}

#define SEEN(i) (opts[i].seen)

int cmd_train_image(int argc, char **argv) {
    const char *cmd = "train image";
    topts o;
    memset(&o, 0, sizeof o);
    o.preset = "default";
    o.mults = NULL, o.attn = NULL, o.prediction = "eps", o.schedule = "cosine";
    o.image_channels = 0, o.size = 0;
    o.batch = 64, o.steps = 10000, o.warmup = -1, o.seed = 0, o.save_every = 1000;
    o.sample_every = 1000, o.lr = 5e-4f, o.ema = 0.999f, o.cond_drop = 0.1f, o.dropout = 0.1f;
    o.weight_decay = 0.0f, o.grad_clip = 1.0f;
    cli_opt opts[O_COUNT] = {
        [O_DATA] = {"data", 'd', OPT_STR, &o.data, "fashion-mnist, fashion-mnist:DIR or an image folder", 0},
        [O_SIZE] = {"size", 0, OPT_INT, &o.size, "image side (fashion-mnist 28, folders 32; 28, 32, 64 ...)", 0},
        [O_CHANNELS] = {"channels", 0, OPT_INT, &o.channels, "UNet base width (32)", 0},
        [O_MULTS] = {"mults", 0, OPT_STR, &o.mults, "width multipliers per level (1,2,2)", 0},
        [O_RES_BLOCKS] = {"res-blocks", 0, OPT_INT, &o.res_blocks, "ResBlocks per level (2)", 0},
        [O_ATTN] = {"attn", 0, OPT_STR, &o.attn, "levels with self-attention, e.g. 2 or 1,2 or none (2)", 0},
        [O_HEADS] = {"heads", 0, OPT_INT, &o.heads, "attention heads (4)", 0},
        [O_GROUPS] = {"groups", 0, OPT_INT, &o.groups, "GroupNorm groups (8)", 0},
        [O_DROPOUT] = {"dropout", 0, OPT_FLOAT, &o.dropout, "dropout in the ResBlocks (0.1)", 0},
        [O_IMAGE_CHANNELS] = {"image-channels", 0, OPT_INT, &o.image_channels, "1 (gray) or 3 (RGB) for folders (3)", 0},
        [O_PREDICTION] = {"prediction", 0, OPT_STR, &o.prediction, "eps or v (eps)", 0},
        [O_SCHEDULE] = {"schedule", 0, OPT_STR, &o.schedule, "noise schedule: linear or cosine (cosine)", 0},
        [O_STEPS] = {"steps", 0, OPT_I64, &o.steps, "optimizer steps in all (10000)", 0},
        [O_MINUTES] = {"minutes", 0, OPT_FLOAT, &o.minutes, "stop after this much wall time", 0},
        [O_BATCH] = {"batch", 'b', OPT_I64, &o.batch, "images per step (64)", 0},
        [O_LR] = {"lr", 0, OPT_FLOAT, &o.lr, "peak learning rate (5e-4)", 0},
        [O_WARMUP] = {"warmup", 0, OPT_I64, &o.warmup, "warmup steps (min(500, steps/10))", 0},
        [O_WD] = {"weight-decay", 0, OPT_FLOAT, &o.weight_decay, "AdamW weight decay on matrices (0)", 0},
        [O_CLIP] = {"grad-clip", 0, OPT_FLOAT, &o.grad_clip, "clip the global grad norm (1; 0 = off)", 0},
        [O_EMA] = {"ema", 0, OPT_FLOAT, &o.ema, "EMA decay of the sampled weights (0.999)", 0},
        [O_COND_DROP] = {"cond-drop", 0, OPT_FLOAT, &o.cond_drop, "probability of dropping the label (0.1)", 0},
        [O_SEED] = {"seed", 0, OPT_I64, &o.seed, "seed of init, batches, noise (0)", 0},
        [O_OUT] = {"out", 'o', OPT_STR, &o.out, "the painter file to write (required)", 0},
        [O_RESUME] = {"resume", 0, OPT_FLAG, &o.resume, "continue from OUT.optim.safetensors", 0},
        [O_SAVE_EVERY] = {"save-every", 0, OPT_I64, &o.save_every, "checkpoint every N steps (1000; 0 = end only)", 0},
        [O_SAMPLE_EVERY] = {"sample-every", 0, OPT_I64, &o.sample_every, "sample grid every N steps (1000; 0 = end only)", 0},
        [O_STOP_AT] = {"stop-at", 0, OPT_I64, &o.stop_at, "save and stop after step N (continue with --resume)", 0},
        [O_PRESET] = {"preset", 0, OPT_STR, &o.preset, "tiny or default", 0},
    };
    const char *pos[1];
    int npos;
    int rc = cli_parse(cmd, usage_text, argc, argv, opts, O_COUNT, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;

    /* ---- the model config: preset, then flags ---- */
    duet_unet_config uc;
    duet_unet_config_default(&uc);
    if (strcmp(o.preset, "tiny") == 0) {
        uc.channels = 16, uc.nlevels = 2, uc.mults[0] = 1, uc.mults[1] = 2, uc.res_blocks = 1;
        uc.attn_levels = 0, uc.heads = 2;
        if (!SEEN(O_BATCH)) o.batch = 32;
        if (!SEEN(O_LR)) o.lr = 1e-3f;
        if (!SEEN(O_STEPS)) o.steps = 500;
        if (!SEEN(O_SAVE_EVERY)) o.save_every = 250;
        if (!SEEN(O_SAMPLE_EVERY)) o.sample_every = 250;
    } else if (strcmp(o.preset, "default") != 0) {
        cli_error(cmd, "--preset '%s': use tiny or default", o.preset);
        return EXIT_USAGE;
    }
    if (!o.out) {
        cli_error(cmd, "--out is required (where to write the painter, e.g. models/painter.safetensors)");
        return EXIT_USAGE;
    }
    if (SEEN(O_CHANNELS)) uc.channels = o.channels;
    if (SEEN(O_RES_BLOCKS)) uc.res_blocks = o.res_blocks;
    if (SEEN(O_HEADS)) uc.heads = o.heads;
    if (SEEN(O_GROUPS)) uc.groups = o.groups;
    uc.dropout = o.dropout;
    if (o.mults) {
        int n = parse_list(o.mults, uc.mults, DUET_UNET_MAX_LEVELS);
        if (n < 1) {
            cli_error(cmd, "--mults '%s': give 1 to %d comma-separated widths, e.g. 1,2,2", o.mults,
                      DUET_UNET_MAX_LEVELS);
            return EXIT_USAGE;
        }
        uc.nlevels = n;
    }
    if (o.attn) {
        int lv[DUET_UNET_MAX_LEVELS], n = parse_list(o.attn, lv, DUET_UNET_MAX_LEVELS);
        if (n < 0) {
            cli_error(cmd, "--attn '%s': give level numbers such as 2 or 1,2, or none", o.attn);
            return EXIT_USAGE;
        }
        uc.attn_levels = 0;
        for (int i = 0; i < n; i++) uc.attn_levels |= 1u << lv[i];
    }
    if (uc.attn_levels >> uc.nlevels) {
        if (o.attn) {
            cli_error(cmd, "--attn '%s': the UNet has levels 0..%d only", o.attn, uc.nlevels - 1);
            return EXIT_USAGE;
        }
        uc.attn_levels &= (1u << uc.nlevels) - 1; /* the default's level 2 with fewer --mults */
    }
    if (strcmp(o.prediction, "eps") && strcmp(o.prediction, "v")) {
        cli_error(cmd, "--prediction '%s': use eps or v", o.prediction);
        return EXIT_USAGE;
    }
    uc.predict_v = strcmp(o.prediction, "v") == 0;
    int sk = duet_beta_schedule_from_name(o.schedule);
    if (sk < 0) {
        cli_error(cmd, "--schedule '%s': use linear or cosine", o.schedule);
        return EXIT_USAGE;
    }
    uc.schedule = (duet_beta_schedule)sk;
    if (SEEN(O_STEPS) && o.steps < 1) {
        cli_error(cmd, "--steps %lld: must be at least 1", (long long)o.steps);
        return EXIT_USAGE;
    }
    if (SEEN(O_MINUTES) && !(o.minutes > 0)) {
        cli_error(cmd, "--minutes %g: must be > 0", (double)o.minutes);
        return EXIT_USAGE;
    }
    if (o.batch < 1 || o.batch > 65536) {
        cli_error(cmd, "--batch %lld: must be in 1..65536", (long long)o.batch);
        return EXIT_USAGE;
    }
    if (!(o.lr > 0) || o.lr > 10 || o.weight_decay < 0 || o.grad_clip < 0) {
        cli_error(cmd, "--lr must be in (0, 10], --weight-decay and --grad-clip >= 0");
        return EXIT_USAGE;
    }
    if (!(o.ema >= 0 && o.ema < 1) || !(o.cond_drop >= 0 && o.cond_drop <= 1)) {
        cli_error(cmd, "--ema must be in [0, 1) and --cond-drop in [0, 1]");
        return EXIT_USAGE;
    }
    if (o.seed < 0 || o.save_every < 0 || o.sample_every < 0 || (SEEN(O_STOP_AT) && o.stop_at < 1)) {
        cli_error(cmd, "--seed, --save-every and --sample-every must be >= 0, --stop-at >= 1");
        return EXIT_USAGE;
    }
    if (SEEN(O_IMAGE_CHANNELS) && o.image_channels != 1 && o.image_channels != 3) {
        cli_error(cmd, "--image-channels %d: use 1 (gray) or 3 (RGB)", o.image_channels);
        return EXIT_USAGE;
    }
    if (SEEN(O_SIZE) && (o.size < 4 || o.size > 1024)) {
        cli_error(cmd, "--size %d: must be in 4..1024", o.size);
        return EXIT_USAGE;
    }

    char optim_path[4096], csv_path[4096], samples_dir[4096];
    snprintf(optim_path, sizeof optim_path, "%s.optim.safetensors", o.out);
    snprintf(csv_path, sizeof csv_path, "%s.csv", o.out);
    snprintf(samples_dir, sizeof samples_dir, "%s.samples", o.out);

    /* ---- resume: the model's shape and the run's settings come from the files ---- */
    train_state ts;
    memset(&ts, 0, sizeof ts);
    duet_unet *u = NULL, *ema = NULL;
    duet_dataset d;
    memset(&d, 0, sizeof d);
    duet_adamw opt;
    memset(&opt, 0, sizeof opt);
    duet_graph *g = NULL;
    duet_schedule *sched = NULL;
    FILE *csv = NULL;
    float *x0 = NULL, *xt = NULL, *target = NULL, *tbuf = NULL;
    int32_t *lab = NULL;
    int64_t *perm = NULL, *idx = NULL;
    int exit_code = EXIT_FAIL;
    duet_status s;
    int64_t adam_step = 0;

    if (o.resume) {
        if (!file_exists(optim_path) || !file_exists(o.out)) {
            cli_error(cmd, "--resume needs %s and %s from an earlier run; %s is missing", o.out,
                      optim_path, file_exists(o.out) ? optim_path : o.out);
            return EXIT_IO;
        }
        ema = duet_unet_load(o.out);
        if (!ema) {
            cli_error(cmd, "--resume: %s", duet_last_error());
            return EXIT_FORMAT;
        }
        s = read_state(optim_path, &ts, &adam_step);
        if (s) {
            cli_error(cmd, "--resume: %s", duet_last_error());
            exit_code = EXIT_FORMAT;
            goto done;
        }
        uc = *duet_unet_get_config(ema);
        if (SEEN(O_CHANNELS) || SEEN(O_MULTS) || SEEN(O_RES_BLOCKS) || SEEN(O_ATTN) || SEEN(O_HEADS) ||
            SEEN(O_GROUPS) || SEEN(O_PREDICTION) || SEEN(O_SCHEDULE) || SEEN(O_SIZE) || SEEN(O_DROPOUT) ||
            SEEN(O_PRESET) || SEEN(O_IMAGE_CHANNELS))
            fprintf(stderr, "duet %s: --resume: the model's shape comes from %s; shape flags are ignored\n",
                    cmd, o.out);
        if (SEEN(O_BATCH) && o.batch != ts.batch)
            fprintf(stderr, "duet %s: --batch %lld differs from the checkpoint's %lld: the run will "
                    "not match an uninterrupted one\n", cmd, (long long)o.batch, (long long)ts.batch);
        if (!SEEN(O_STEPS)) o.steps = ts.total_steps;
        if (!SEEN(O_BATCH)) o.batch = ts.batch;
        if (!SEEN(O_LR)) o.lr = ts.lr;
        if (!SEEN(O_WARMUP)) o.warmup = ts.warmup;
        if (!SEEN(O_SEED)) o.seed = ts.seed;
        if (!SEEN(O_EMA)) o.ema = ts.ema;
        if (!SEEN(O_COND_DROP)) o.cond_drop = ts.cond_drop;
        if (!SEEN(O_WD)) o.weight_decay = ts.weight_decay;
        if (!SEEN(O_CLIP)) o.grad_clip = ts.grad_clip;
        if (!o.data) o.data = ts.data;
        if (o.steps == 0 && !SEEN(O_MINUTES)) {
            cli_error(cmd, "--resume: %s was bounded by --minutes, not --steps; pass --minutes M "
                      "(or --steps N) to say how long to go on", o.out);
            exit_code = EXIT_USAGE;
            goto done;
        }
        if (o.steps > 0 && ts.step >= o.steps) {
            fprintf(stderr, "duet %s: %s has already trained %lld of %lld steps; pass a larger "
                    "--steps to train further\n", cmd, o.out, (long long)ts.step, (long long)o.steps);
            exit_code = 0;
            goto done;
        }
    } else {
        if (!o.data) {
            cli_error(cmd, "--data is required (fashion-mnist, or a folder of images)");
            return EXIT_USAGE;
        }
        if (SEEN(O_MINUTES) && !SEEN(O_STEPS)) o.steps = 0; /* time-bounded: constant lr after warmup */
        if (file_exists(optim_path))
            fprintf(stderr, "duet %s: starting a new run; the training state in %s will be "
                    "replaced (use --resume to continue it)\n", cmd, optim_path);
    }
    if (o.warmup < 0) {
        int64_t base = o.steps > 0 ? o.steps : 5000;
        o.warmup = base / 10 < 500 ? base / 10 : 500;
    }

    /* ---- data: it decides the image format of a new model ---- */
    rc = cli_load_images(cmd, o.data, DUET_SPLIT_TRAIN,
                         o.resume ? uc.image_size : (SEEN(O_SIZE) ? o.size : 0),
                         o.resume ? uc.in_channels : (SEEN(O_IMAGE_CHANNELS) ? o.image_channels : 0), &d);
    if (rc) {
        exit_code = rc;
        goto done;
    }
    if (o.resume) {
        if (d.c != uc.in_channels || d.h != uc.image_size || d.nclasses != uc.num_classes ||
            d.n != ts.data_n || data_hash(&d) != ts.data_hash) {
            cli_error(cmd, "--resume: %s is not the data %s was trained on (%lld images, %d classes; "
                      "the checkpoint's data had %lld images, %d classes, or other pixels); pass the same --data",
                      o.data, o.out, (long long)d.n, d.nclasses, (long long)ts.data_n, uc.num_classes);
            exit_code = EXIT_USAGE;
            goto done;
        }
    } else {
        uc.image_size = (int)d.h;
        uc.in_channels = (int)d.c;
        uc.num_classes = d.nclasses;
        snprintf(ts.data, sizeof ts.data, "%s", o.data);
        ts.data_n = d.n;
        ts.data_hash = data_hash(&d);
    }
    ts.seed = o.seed, ts.batch = o.batch, ts.lr = o.lr, ts.warmup = o.warmup, ts.ema = o.ema;
    ts.cond_drop = o.cond_drop, ts.weight_decay = o.weight_decay, ts.grad_clip = o.grad_clip;
    ts.total_steps = o.steps;

    /* ---- the model, its EMA twin and AdamW ---- */
    u = duet_unet_new(&uc, (uint64_t)o.seed);
    if (!u) {
        cli_error(cmd, "%s", duet_last_error());
        exit_code = EXIT_USAGE;
        goto done;
    }
    if (!ema && !(ema = duet_unet_new(&uc, (uint64_t)o.seed))) { /* starts equal to the raw weights */
        cli_error(cmd, "%s", duet_last_error());
        goto done;
    }
    duet_tensor **P = duet_unet_params(u), **PE = duet_unet_params(ema);
    const int NP = duet_unet_nparams(u);
    if (duet_adamw_init(&opt, P, NP, 0.9f, 0.999f, 1e-8f, o.weight_decay) != DUET_OK) {
        cli_error(cmd, "%s", duet_last_error());
        goto done;
    }
    for (int i = 0; i < NP; i++) duet_adamw_set_decay(&opt, i, P[i]->ndim > 1);
    if (o.resume) {
        s = load_tensors(optim_path, u, ema, &opt);
        if (s) {
            cli_error(cmd, "--resume: %s", duet_last_error());
            exit_code = EXIT_FORMAT;
            goto done;
        }
        opt.step = adam_step;
    }

    /* ---- buffers ---- */
    const int64_t B = o.batch, C = uc.in_channels, S = uc.image_size, per = C * S * S;
    x0 = duet_alloc(sizeof(float) * (size_t)(B * per));
    xt = duet_alloc(sizeof(float) * (size_t)(B * per));
    target = duet_alloc(sizeof(float) * (size_t)(B * per));
    tbuf = duet_alloc(sizeof(float) * (size_t)B);
    lab = duet_alloc(sizeof(int32_t) * (size_t)B);
    perm = duet_alloc(sizeof(int64_t) * (size_t)d.n);
    idx = duet_alloc(sizeof(int64_t) * (size_t)B);
    g = duet_graph_new((size_t)64 << 20);
    sched = duet_alloc(sizeof *sched);
    if (!x0 || !xt || !target || !tbuf || !lab || !perm || !idx || !g || !sched) {
        cli_error(cmd, "out of memory for a batch of %lld images", (long long)B);
        goto done;
    }
    duet_schedule_init(sched, uc.schedule, uc.T);

    if (make_parents(o.out)) {
        cli_error(cmd, "cannot create the folder of %s: %s", o.out, strerror(errno));
        exit_code = EXIT_IO;
        goto done;
    }
    csv = csv_open(csv_path, ts.step);
    if (!csv) {
        cli_error(cmd, "cannot write %s: %s", csv_path, strerror(errno));
        exit_code = EXIT_IO;
        goto done;
    }
    if (make_dir(samples_dir)) {
        cli_error(cmd, "cannot create %s: %s", samples_dir, strerror(errno));
        exit_code = EXIT_IO;
        goto done;
    }

    {
        const int64_t start = ts.step;
        const double limit_s = SEEN(O_MINUTES) ? 60.0 * (double)o.minutes : 0.0;
        const int64_t nparams_f = duet_unet_numel(u);
        fprintf(stderr,
                "duet %s: %s%s, %lld images %lldx%lldx%lld, %d classes | UNet %.2fM params "
                "(channels %d, %d levels, %d res blocks) | batch %lld, lr %g, %s%lld steps\n",
                cmd, o.resume ? "resuming " : "", o.data, (long long)d.n, (long long)C, (long long)S,
                (long long)S, uc.num_classes, (double)nparams_f / 1e6, uc.channels, uc.nlevels,
                uc.res_blocks, (long long)B, (double)o.lr, o.resume ? "from step " : "",
                (long long)(o.resume ? start : o.steps));
        if (o.resume)
            fprintf(stderr, "duet %s: continuing at step %lld of %lld\n", cmd, (long long)start,
                    (long long)o.steps);
        const char *kill_env = getenv("DUET_TRAIN_KILL_AT");
        const int64_t kill_at = kill_env ? strtoll(kill_env, NULL, 10) : -1;
        g_interrupted = 0;
        signal(SIGINT, on_sigint);
        cli_progress bar;
        cli_progress_start(&bar, "train image", o.steps > 0 ? o.steps - start : (int64_t)limit_s);
        const double t0 = cli_now();
        double train_time = 0, loss_sum = 0;
        int64_t cur_epoch = -1, nloss = 0;
        float loss = NAN, last_losses[50];
        int stopped = 0; /* 1: interrupted, 2: --stop-at or time */
        s = DUET_OK;
        for (int64_t k = start; o.steps == 0 || k < o.steps; k++) {
            const double ts0 = cli_now();
            /* 1. batch: positions k*B .. k*B+B-1 of the epoch stream */
            for (int64_t b = 0; b < B; b++) {
                const int64_t at = k * B + b, ep = at / d.n;
                if (ep != cur_epoch) epoch_perm(perm, d.n, (uint64_t)o.seed, cur_epoch = ep);
                idx[b] = perm[at % d.n];
            }
            s = duet_dataset_batch_f32(&d, idx, B, x0, lab);
            if (s) break;
            /* 2-3. label drop, timestep, noise, x_t and the target */
            duet_rng nr = {(uint64_t)o.seed ^ KEY_NOISE, (uint64_t)k << 40};
            duet_rng_normal(&nr, target, B * per, 0.0f, 1.0f); /* eps, first into target */
            for (int64_t b = 0; b < B; b++) {
                uint32_t w[4];
                duet_philox((uint64_t)o.seed ^ KEY_DRAW, (uint64_t)(k * B + b), w);
                if (uc.num_classes && (double)w[0] * (1.0 / 4294967296.0) < (double)o.cond_drop)
                    lab[b] = uc.num_classes;
                const int t = (int)(((uint64_t)w[1] * (uint64_t)uc.T) >> 32);
                tbuf[b] = (float)t;
                const double abar = sched->abar[t];
                float *e = target + b * per;
                duet_diffusion_q_sample(xt + b * per, x0 + b * per, e, abar, per);
                if (uc.predict_v) duet_diffusion_v_target(e, x0 + b * per, e, abar, per);
            }
            /* 4. loss, backward, clip, AdamW */
            duet_graph_reset(g);
            duet_graph_set_training(g, 1);
            duet_tensor *xin = duet_graph_input(g, xt, DUET_DTYPE_F32, 4, (int64_t[]){B, C, S, S});
            duet_tensor *tin = duet_graph_input(g, tbuf, DUET_DTYPE_F32, 1, (int64_t[]){B});
            duet_tensor *lin = uc.num_classes ? duet_graph_input(g, lab, DUET_DTYPE_I32, 1, (int64_t[]){B}) : NULL;
            duet_tensor *yin = duet_graph_input(g, target, DUET_DTYPE_F32, 4, (int64_t[]){B, C, S, S});
            duet_rng dr = {(uint64_t)o.seed ^ KEY_DROPOUT, (uint64_t)k << 40};
            duet_tensor *l = duet_nn_mse(g, duet_unet_forward(u, g, xin, tin, lin, &dr), yin);
            if (!l) {
                s = duet_graph_status(g);
                break;
            }
            duet_params_zero_grad(P, NP);
            s = duet_graph_backward(g, l);
            if (s) break;
            loss = *(const float *)l->data;
            if (!isfinite(loss)) {
                s = duet_set_error(DUET_ERR_INTERNAL, "the loss is %g at step %lld: lower --lr (now %g) "
                                   "or --grad-clip", (double)loss, (long long)k + 1, (double)o.lr);
                break;
            }
            const float gnorm = duet_clip_grad_norm(P, NP, o.grad_clip);
            const float lr = o.steps > 0
                                 ? duet_lr_at(DUET_LR_WARMUP_COSINE, k, o.warmup, o.steps, o.lr, o.lr * 0.1f)
                                 : duet_lr_at(DUET_LR_CONSTANT, k, o.warmup, 0, o.lr, o.lr);
            duet_adamw_step(&opt, P, NP, lr);
            /* 5. EMA */
            const float decay = fminf(o.ema, (float)(1 + k) / (float)(10 + k));
            for (int i = 0; i < NP; i++)
                duet_ema_update(PE[i]->data, P[i]->data, duet_tensor_numel(P[i]), decay);
            ts.step = k + 1;
            train_time += cli_now() - ts0;

            /* log, progress */
            last_losses[nloss % 50] = loss;
            nloss++;
            loss_sum += (double)loss;
            const double ips = (double)((ts.step - start) * B) / (train_time > 0 ? train_time : 1e-9);
            fprintf(csv, "%lld,%.9g,%.6g,%.6g,%.1f,%.2f\n", (long long)ts.step, (double)loss,
                    (double)lr, (double)gnorm, ips, cli_now() - t0);
            fflush(csv);
            char extra[96];
            snprintf(extra, sizeof extra, "loss %.4f | %.1f img/s", (double)loss, ips);
            cli_progress_update(&bar, o.steps > 0 ? ts.step - start : (int64_t)(cli_now() - t0), extra);

            /* checkpoints and sample grids */
            const int last = (o.steps > 0 && ts.step == o.steps);
            const int out_of_time = limit_s > 0 && cli_now() - t0 >= limit_s;
            const int stop_here = SEEN(O_STOP_AT) && ts.step >= o.stop_at;
            if (g_interrupted) stopped = 1;
            else if (stop_here || out_of_time) stopped = 2;
            if (stopped || last || (o.save_every > 0 && ts.step % o.save_every == 0)) {
                s = save_all(o.out, optim_path, u, ema, &opt, &ts, &d);
                if (s) break;
            }
            if (!stopped && o.sample_every > 0 && ts.step % o.sample_every == 0 && !last) {
                char path[4200];
                snprintf(path, sizeof path, "%s/step-%06lld.png", samples_dir, (long long)ts.step);
                s = sample_grid(path, ema, ts.step);
                if (s) break;
            }
            if (kill_at >= 0 && ts.step == kill_at) raise(SIGKILL);
            if (stopped) break;
        }
        signal(SIGINT, SIG_DFL);
        cli_progress_end(&bar);
        if (s) {
            cli_error(cmd, "%s", duet_last_error());
            exit_code = cli_exit_code(s) == EXIT_USAGE ? EXIT_FAIL : cli_exit_code(s);
            goto done;
        }
        if (stopped == 1 && ts.step == start) {
            fprintf(stderr, "duet %s: interrupted before the first step; nothing written\n", cmd);
            exit_code = EXIT_INTERRUPTED;
            goto done;
        }
        if (stopped != 1) { /* the end (or --stop-at / --minutes): a grid of the final model */
            char path[4200];
            snprintf(path, sizeof path, "%s/step-%06lld.png", samples_dir, (long long)ts.step);
            s = sample_grid(path, ema, ts.step);
            if (s) {
                cli_error(cmd, "sample grid: %s", duet_last_error());
                exit_code = cli_exit_code(s);
                goto done;
            }
        }
        double recent = 0;
        const int64_t nrec = nloss < 50 ? nloss : 50;
        for (int64_t i = 0; i < nrec; i++) recent += (double)last_losses[i];
        const int64_t done_steps = ts.step - start;
        printf("%s %lld steps (%lld..%lld) | %.1f images/s | final loss %.4f (mean of last %lld: %.4f) | "
               "%.1f s | wrote %s\n",
               stopped == 1 ? "interrupted after" : "trained", (long long)done_steps, (long long)start,
               (long long)ts.step, train_time > 0 ? (double)(done_steps * B) / train_time : 0.0,
               (double)loss, (long long)nrec, nrec ? recent / (double)nrec : (double)NAN,
               cli_now() - t0, o.out);
        if (stopped == 1) {
            fprintf(stderr, "duet %s: interrupted; checkpoint saved at step %lld (continue with --resume)\n",
                    cmd, (long long)ts.step);
            exit_code = EXIT_INTERRUPTED;
        } else {
            exit_code = 0;
        }
        (void)loss_sum;
    }

done:
    if (csv) fclose(csv);
    duet_free(sched);
    duet_free(x0);
    duet_free(xt);
    duet_free(target);
    duet_free(tbuf);
    duet_free(lab);
    duet_free(perm);
    duet_free(idx);
    duet_graph_free(g);
    duet_adamw_free(&opt);
    duet_unet_free(u);
    duet_unet_free(ema);
    duet_dataset_free(&d);
    return exit_code;
}
