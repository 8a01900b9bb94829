/*
 * cmd_train_text.c — `duet train text`: trains a storyteller (transformer
 * language model) on a text file or folder, and `duet train`, which
 * dispatches on the kind of model (text today; a `train image` slots into
 * train_kinds[] below).
 *
 * What the trainer does, in order:
 *   1. reads the corpus, holds out its last 10% (by bytes) for validation;
 *   2. gets a tokenizer: --tokenizer FILE, or trains a byte-level BPE of
 *      --vocab N ids on the training split (N = 256: plain bytes), or on
 *      --resume takes the one embedded in the checkpoint;
 *   3. trains with AdamW (decay on matrices and embeddings), global grad-norm
 *      clipping, linear warmup then cosine decay to lr/10 (--steps) or a
 *      constant rate (--minutes), on batches of windows drawn at random
 *      offsets: window b of batch k starts at philox(seed, k*B + b), so the
 *      data position is just k;
 *   4. every --eval-every steps measures the validation loss over a fixed set
 *      of windows, in nats/token and bits per byte
 *      (= loss * val_tokens / val_bytes / ln 2);
 *   5. writes <out> and <out>.optim.safetensors atomically every
 *      --save-every steps, at the end and on Ctrl-C; <out>.csv gets a row per
 *      step (step,lr,train_loss,val_loss,val_bpb,tokens_per_s,elapsed_s) and
 *      <out>.loss.png the loss curves.
 * --resume reloads both files and continues exactly: the same batches, the
 * same optimizer state, the same losses as a run that was never stopped.
 *
 * Test hook: DUET_TRAIN_KILL_AT=N makes the process SIGKILL itself right
 * after step N (as a crash would), so the resume test needs no timing.
 *
 * What it is not: a distributed or mixed-precision trainer; there is no
 * gradient accumulation or dropout.
 */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ==== tokenizer <-> JSON string (the checkpoint embeds the JSON) ========== */

/* The tokenizer API reads and writes files; the model file carries the JSON
 * as a string, so these go through a private temporary file. */
static int make_tmp(char *path, size_t n) {
    const char *td = getenv("TMPDIR");
    snprintf(path, n, "%s/duet-tok-XXXXXX", td && *td ? td : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

char *cli_tokenizer_to_json(const duet_tokenizer *tok) {
    char path[512];
    if (make_tmp(path, sizeof path)) {
        duet_set_error(DUET_ERR_IO, "cannot create a temporary file in %s: %s",
                       getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", strerror(errno));
        return NULL;
    }
    char *json = NULL;
    if (duet_tokenizer_save(tok, path) == DUET_OK) {
        FILE *f = fopen(path, "rb");
        if (f && fseek(f, 0, SEEK_END) == 0) {
            long n = ftell(f);
            if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) {
                json = duet_alloc((size_t)n + 1);
                if (json && fread(json, 1, (size_t)n, f) == (size_t)n) {
                    json[n] = 0;
                } else {
                    duet_free(json);
                    json = NULL;
                    duet_set_error(DUET_ERR_IO, "cannot read back the tokenizer from %s", path);
                }
            }
        }
        if (f) fclose(f);
    }
    unlink(path);
    return json;
}

duet_tokenizer *cli_tokenizer_from_json(const char *json) {
    char path[512];
    if (make_tmp(path, sizeof path)) {
        duet_set_error(DUET_ERR_IO, "cannot create a temporary file: %s", strerror(errno));
        return NULL;
    }
    duet_tokenizer *tok = NULL;
    if (duet_write_file_atomic(path, json, strlen(json)) == DUET_OK) tok = duet_tokenizer_load(path);
    unlink(path);
    return tok;
}

/* ==== `duet train` ======================================================== */

typedef struct {
    const char *kind;
    int (*run)(int argc, char **argv);
    const char *help;
} train_kind;

static const train_kind train_kinds[] = {
    {"text", cmd_train_text, "a storyteller (transformer language model) on a text corpus"},
    {"image", cmd_train_image, "a painter (diffusion UNet) on Fashion-MNIST or an image folder"},
};
#define NKINDS ((int)(sizeof train_kinds / sizeof *train_kinds))

int cmd_train(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: duet train <kind> [options]   (duet train <kind> --help)\n\nkinds:\n");
        for (int i = 0; i < NKINDS; i++)
            fprintf(f, "  %-8s %s\n", train_kinds[i].kind, train_kinds[i].help);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    for (int i = 0; i < NKINDS; i++)
        if (strcmp(argv[1], train_kinds[i].kind) == 0) return train_kinds[i].run(argc - 1, argv + 1);
    cli_error("train", "unknown kind '%s' (try: duet train text)", argv[1]);
    return EXIT_USAGE;
}

/* ==== options ============================================================= */

typedef struct {
    const char *data, *tokenizer, *arch, *out, *preset;
    int64_t vocab, layers, heads, kv_heads, dim, ctx, batch, steps, warmup, seed;
    int64_t eval_every, save_every, eval_batches;
    float minutes, lr, weight_decay, grad_clip;
    int resume;
} train_opts;

enum {
    O_DATA, O_TOKENIZER, O_VOCAB, O_ARCH, O_LAYERS, O_HEADS, O_KV_HEADS, O_DIM, O_CTX, O_BATCH,
    O_STEPS, O_MINUTES, O_LR, O_WARMUP, O_WD, O_CLIP, O_SEED, O_OUT, O_RESUME, O_PRESET,
    O_EVAL_EVERY, O_SAVE_EVERY, O_EVAL_BATCHES, O_COUNT
};

static const char usage_text[] =
    "--data FILE --out MODEL.safetensors [options]\n\n"
    "Trains a transformer language model. The last 10% of the data is held out\n"
    "for validation. Writes MODEL, MODEL.optim.safetensors (for --resume),\n"
    "MODEL.csv and MODEL.loss.png.\n\n"
    "presets: tiny (2 layers, dim 64, ctx 64, batch 8, bytes, 300 steps)\n"
    "         small (6 layers, 6 heads, dim 384, ctx 256, batch 16, vocab 512; the default)";

/* ==== data ================================================================ */

static uint64_t fnv1a(const uint8_t *p, int64_t n) {
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Encodes text[0..n) into a new array; NULL on failure. */
static int32_t *encode_all(const duet_tokenizer *tok, const char *text, int64_t n, int64_t *count) {
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n + 2));
    if (!ids) return NULL;
    int64_t k = duet_tokenizer_encode(tok, text, n, 0, ids, n + 2);
    if (k < 0 || k > n + 2) {
        free(ids);
        return NULL;
    }
    *count = k;
    return ids;
}

/* Batch k: window b starts at philox(seed, k*B + b) mod (n - T). */
static void draw_batch(const int32_t *tokens, int64_t n, int64_t B, int64_t T, uint64_t seed,
                       int64_t k, int32_t *ids, int32_t *tg) {
    const uint64_t span = (uint64_t)(n - T);
    for (int64_t b = 0; b < B; b++) {
        uint32_t w[4];
        duet_philox(seed ^ 0x5eed0da7a0000000ull, (uint64_t)(k * B + b), w);
        uint64_t r = ((uint64_t)w[0] << 32) | w[1];
        int64_t off = (int64_t)(r % span);
        memcpy(ids + b * T, tokens + off, sizeof(int32_t) * (size_t)T);
        memcpy(tg + b * T, tokens + off + 1, sizeof(int32_t) * (size_t)T);
    }
}

/* Mean validation loss (nats/token) over up to max_windows windows of Te
 * tokens spread evenly over the split; the graph runs in inference mode. */
static double evaluate(duet_tf *m, duet_graph *g, const int32_t *val, int64_t nval, int64_t B,
                       int64_t T, int64_t max_windows, int32_t *ids, int32_t *tg, int *failed) {
    int64_t Te = nval - 1 < T ? nval - 1 : T;
    int64_t slots = (nval - 1) / Te;
    int64_t nwin = slots < max_windows ? slots : max_windows;
    double sum = 0;
    int64_t tokens = 0;
    duet_graph_set_training(g, 0);
    for (int64_t w0 = 0; w0 < nwin; w0 += B) {
        int64_t rows = nwin - w0 < B ? nwin - w0 : B;
        for (int64_t r = 0; r < rows; r++) {
            int64_t off = ((w0 + r) * slots / nwin) * Te;
            memcpy(ids + r * Te, val + off, sizeof(int32_t) * (size_t)Te);
            memcpy(tg + r * Te, val + off + 1, sizeof(int32_t) * (size_t)Te);
        }
        duet_graph_reset(g);
        duet_tensor *l = duet_tf_forward(m, g, ids, tg, rows, Te, NULL);
        if (!l) {
            *failed = 1;
            break;
        }
        sum += (double)*(float *)l->data * (double)(rows * Te);
        tokens += rows * Te;
    }
    duet_graph_set_training(g, 1);
    return tokens ? sum / (double)tokens : (double)NAN;
}

/* ==== CSV log and loss curve ============================================== */

typedef struct {
    int64_t step;
    float lr, train, val, bpb, tps, elapsed;
} log_row;

typedef struct {
    log_row *rows;
    int64_t n, cap;
} log_rows;

static int log_push(log_rows *L, const log_row *r) {
    if (L->n == L->cap) {
        int64_t nc = L->cap ? 2 * L->cap : 1024;
        log_row *nr = realloc(L->rows, sizeof *nr * (size_t)nc);
        if (!nr) return -1;
        L->rows = nr;
        L->cap = nc;
    }
    L->rows[L->n++] = *r;
    return 0;
}

static const char csv_header[] = "step,lr,train_loss,val_loss,val_bpb,tokens_per_s,elapsed_s\n";

static void csv_format(char *buf, size_t n, const log_row *r) {
    char v[32] = "", b[32] = "";
    if (!isnan(r->val)) snprintf(v, sizeof v, "%.6f", (double)r->val);
    if (!isnan(r->bpb)) snprintf(b, sizeof b, "%.6f", (double)r->bpb);
    snprintf(buf, n, "%lld,%.6g,%.6f,%s,%s,%.1f,%.2f\n", (long long)r->step, (double)r->lr,
             (double)r->train, v, b, (double)r->tps, (double)r->elapsed);
}

static float parse_field(const char *s) {
    if (!*s || *s == ',' || *s == '\n') return NAN;
    return strtof(s, NULL);
}

/* Reads rows with step <= upto from an existing CSV (resume); rows cut off
 * by a crash are dropped. */
static void csv_read(const char *path, int64_t upto, log_rows *L) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n' || line[0] < '0' || line[0] > '9') continue;
        const char *fld[7];
        int nf = 0;
        fld[nf++] = line;
        for (char *c = line; *c && nf < 7; c++)
            if (*c == ',') fld[nf++] = c + 1;
        if (nf != 7) continue;
        log_row r;
        r.step = strtoll(fld[0], NULL, 10);
        r.lr = parse_field(fld[1]);
        r.train = parse_field(fld[2]);
        r.val = parse_field(fld[3]);
        r.bpb = parse_field(fld[4]);
        r.tps = parse_field(fld[5]);
        r.elapsed = parse_field(fld[6]);
        if (r.step >= 1 && r.step <= upto && (L->n == 0 || r.step > L->rows[L->n - 1].step))
            log_push(L, &r);
    }
    fclose(f);
}

/* Writes the whole CSV atomically (at start and on resume). */
static duet_status csv_rewrite(const char *path, const log_rows *L) {
    size_t cap = sizeof csv_header + (size_t)L->n * 128 + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) return duet_set_error(DUET_ERR_NOMEM, "out of memory writing %s", path);
    len += (size_t)snprintf(buf, cap, "%s", csv_header);
    for (int64_t i = 0; i < L->n; i++) {
        csv_format(buf + len, cap - len, &L->rows[i]);
        len += strlen(buf + len);
    }
    duet_status s = duet_write_file_atomic(path, buf, len);
    free(buf);
    return s;
}

/* ---- the loss curve: train loss (blue, with a running mean) and
 * validation loss (red) against steps, on a grid; axis ranges in tEXt ---- */

#define PW 800
#define PH 480
#define PM 40 /* margin */

static void put_px(uint8_t *img, int x, int y, const uint8_t c[3]) {
    if (x < 0 || y < 0 || x >= PW || y >= PH) return;
    memcpy(img + ((size_t)y * PW + (size_t)x) * 3, c, 3);
}

static void line_px(uint8_t *img, int x0, int y0, int x1, int y1, const uint8_t c[3], int thick) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        for (int a = 0; a < thick; a++)
            for (int b = 0; b < thick; b++) put_px(img, x0 + a, y0 + b, c);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

/* 3x5 digits for the axis labels */
static const char *const glyphs[] = {"111101101101111", "010110010010111", "111001111100111",
                                     "111001111001111", "101101111001001", "111100111001111",
                                     "111100111101111", "111001001001001", "111101111101111",
                                     "111101111001111"};

static void text_px(uint8_t *img, int x, int y, const char *s, const uint8_t c[3]) {
    for (; *s; s++, x += 8) {
        if (*s == '.') {
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) put_px(img, x + a, y + 8 + b, c);
            x -= 4;
            continue;
        }
        if (*s < '0' || *s > '9') continue;
        const char *gph = glyphs[*s - '0'];
        for (int r = 0; r < 5; r++)
            for (int q = 0; q < 3; q++)
                if (gph[r * 3 + q] == '1')
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++) put_px(img, x + q * 2 + a, y + r * 2 + b, c);
    }
}

static duet_status draw_curve(const char *path, const log_rows *L) {
    if (L->n < 1) return DUET_OK;
    uint8_t *img = malloc((size_t)PW * PH * 3);
    if (!img) return duet_set_error(DUET_ERR_NOMEM, "out of memory drawing %s", path);
    memset(img, 255, (size_t)PW * PH * 3);
    double xmax = (double)L->rows[L->n - 1].step, ymin = INFINITY, ymax = -INFINITY;
    for (int64_t i = 0; i < L->n; i++) {
        const log_row *r = &L->rows[i];
        if (isfinite(r->train)) ymin = fmin(ymin, r->train), ymax = fmax(ymax, r->train);
        if (isfinite(r->val)) ymin = fmin(ymin, r->val), ymax = fmax(ymax, r->val);
    }
    if (!isfinite(ymin)) ymin = 0, ymax = 1;
    if (ymax - ymin < 1e-3) ymax = ymin + 1e-3;
    ymin = floor(ymin * 10) / 10;
    ymax = ceil(ymax * 10) / 10;
    if (xmax < 1) xmax = 1;
    const int x0 = PM + 16, x1 = PW - PM, y0 = PH - PM, y1 = PM;
    const uint8_t grid[3] = {225, 225, 225}, axis[3] = {60, 60, 60}, blue[3] = {160, 190, 235},
                  dblue[3] = {30, 90, 200}, red[3] = {210, 40, 40};
    char lab[32];
    for (int k = 0; k <= 5; k++) {
        int y = y0 + (y1 - y0) * k / 5, x = x0 + (x1 - x0) * k / 5;
        line_px(img, x0, y, x1, y, grid, 1);
        line_px(img, x, y0, x, y1, grid, 1);
        snprintf(lab, sizeof lab, "%.2f", ymin + (ymax - ymin) * k / 5);
        text_px(img, 4, y - 5, lab, axis);
        snprintf(lab, sizeof lab, "%lld", (long long)llround(xmax * k / 5));
        text_px(img, x - 8, y0 + 8, lab, axis);
    }
    line_px(img, x0, y0, x1, y0, axis, 1);
    line_px(img, x0, y0, x0, y1, axis, 1);
#define MAPX(s) (x0 + (int)lround((double)(s) / xmax * (x1 - x0)))
#define MAPY(v) (y0 - (int)lround(((double)(v) - ymin) / (ymax - ymin) * (y0 - y1)))
    int px = -1, py = -1;
    for (int64_t i = 0; i < L->n; i++) { /* raw train loss */
        const log_row *r = &L->rows[i];
        if (!isfinite(r->train)) continue;
        int x = MAPX(r->step), y = MAPY(r->train);
        if (px >= 0) line_px(img, px, py, x, y, blue, 1);
        px = x, py = y;
    }
    px = -1;
    double ema = NAN;
    const double a = L->n > 200 ? 0.98 : 0.8;
    for (int64_t i = 0; i < L->n; i++) { /* smoothed train loss */
        const log_row *r = &L->rows[i];
        if (!isfinite(r->train)) continue;
        ema = isnan(ema) ? (double)r->train : a * ema + (1 - a) * (double)r->train;
        int x = MAPX(r->step), y = MAPY(ema);
        if (px >= 0) line_px(img, px, py, x, y, dblue, 2);
        px = x, py = y;
    }
    px = -1;
    for (int64_t i = 0; i < L->n; i++) { /* validation loss */
        const log_row *r = &L->rows[i];
        if (!isfinite(r->val)) continue;
        int x = MAPX(r->step), y = MAPY(r->val);
        if (px >= 0) line_px(img, px, py, x, y, red, 2);
        for (int d = -3; d <= 3; d++) line_px(img, x - 3, y + d, x + 3, y + d, red, 1);
        px = x, py = y;
    }
#undef MAPX
#undef MAPY
    char xr[64], yr[64];
    snprintf(xr, sizeof xr, "0 %lld", (long long)L->rows[L->n - 1].step);
    snprintf(yr, sizeof yr, "%.3f %.3f", ymin, ymax);
    const char *text[] = {"Title", "duet train text: loss (nats/token)", "Legend",
                          "blue: train loss (dark: running mean), red: validation loss",
                          "x-range (steps)", xr, "y-range (loss)", yr};
    duet_status s = duet_png_write(path, img, PW, PH, 3, text, 4);
    free(img);
    return s;
}

/* ==== checkpoints ========================================================= */

typedef struct {
    int64_t step, data_pos, steps_total, warmup, batch, eval_every, save_every, eval_batches;
    uint64_t seed, data_hash;
    int64_t data_bytes;
    float lr, min_lr, wd, clip, minutes;
    double elapsed;
    double train_loss, val_loss, val_bpb;
} train_state;

/* Metadata pairs for the checkpoints: keys are literals, values formatted here. */
typedef struct {
    char val[24][40];
    const char *kv[48];
    int n;
} meta_list;

static void meta_add(meta_list *l, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void meta_add(meta_list *l, const char *key, const char *fmt, ...) {
    if (l->n >= 24) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->val[l->n], sizeof l->val[0], fmt, ap);
    va_end(ap);
    l->kv[2 * l->n] = key;
    l->kv[2 * l->n + 1] = l->val[l->n];
    l->n++;
}

static duet_status save_all(duet_tf *m, duet_adamw *opt, const char *out, const char *optim_path,
                            const char *tok_json, const train_state *s) {
    meta_list ml;
    ml.n = 0;
    meta_list *L = &ml;
    meta_add(L, "duet.train.step", "%lld", (long long)(s->step));
    meta_add(L, "duet.train.data_pos", "%lld", (long long)(s->data_pos));
    meta_add(L, "duet.train.seed", "%llu", (unsigned long long)(s->seed));
    meta_add(L, "duet.train.steps", "%lld", (long long)(s->steps_total));
    meta_add(L, "duet.train.minutes", "%.9g", (double)(s->minutes));
    meta_add(L, "duet.train.warmup", "%lld", (long long)(s->warmup));
    meta_add(L, "duet.train.batch", "%lld", (long long)(s->batch));
    meta_add(L, "duet.train.lr", "%.9g", (double)(s->lr));
    meta_add(L, "duet.train.min_lr", "%.9g", (double)(s->min_lr));
    meta_add(L, "duet.train.weight_decay", "%.9g", (double)(s->wd));
    meta_add(L, "duet.train.grad_clip", "%.9g", (double)(s->clip));
    meta_add(L, "duet.train.eval_every", "%lld", (long long)(s->eval_every));
    meta_add(L, "duet.train.save_every", "%lld", (long long)(s->save_every));
    meta_add(L, "duet.train.eval_batches", "%lld", (long long)(s->eval_batches));
    meta_add(L, "duet.train.elapsed_s", "%.9g", (double)(s->elapsed));
    meta_add(L, "duet.train.data_bytes", "%lld", (long long)(s->data_bytes));
    meta_add(L, "duet.train.data_hash", "%llu", (unsigned long long)(s->data_hash));
    meta_add(L, "duet.train.train_loss", "%.9g", (double)(s->train_loss));
    meta_add(L, "duet.train.val_loss", "%.9g", (double)(s->val_loss));
    meta_add(L, "duet.train.val_bpb", "%.9g", (double)(s->val_bpb));
    /* optimizer first: a model file never points at state that is not there */
    duet_status st = duet_tf_save_optim(m, opt, optim_path, ml.kv, ml.n);
    if (st == DUET_OK) st = duet_tf_save(m, out, tok_json, ml.kv, ml.n);
    return st;
}

static int meta_get_i64(duet_st *st, const char *key, int64_t *out) {
    const char *v = duet_st_meta(st, key);
    if (!v) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno) return -1;
    *out = x;
    return 0;
}
static int meta_get_u64(duet_st *st, const char *key, uint64_t *out) {
    const char *v = duet_st_meta(st, key);
    if (!v) return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || errno) return -1;
    *out = x;
    return 0;
}
static int meta_get_f(duet_st *st, const char *key, double *out) {
    const char *v = duet_st_meta(st, key);
    if (!v) return -1;
    char *end;
    *out = strtod(v, &end);
    return (!*v || *end) ? -1 : 0;
}

/* Reads the trainer state from a checkpoint's metadata. */
static int read_state(const char *path, train_state *s) {
    duet_st *st = duet_st_open(path);
    if (!st) return -1;
    double lr, min_lr, wd, clip, minutes;
    int bad = meta_get_i64(st, "duet.train.step", &s->step) ||
              meta_get_i64(st, "duet.train.data_pos", &s->data_pos) ||
              meta_get_u64(st, "duet.train.seed", &s->seed) ||
              meta_get_i64(st, "duet.train.steps", &s->steps_total) ||
              meta_get_f(st, "duet.train.minutes", &minutes) ||
              meta_get_i64(st, "duet.train.warmup", &s->warmup) ||
              meta_get_i64(st, "duet.train.batch", &s->batch) ||
              meta_get_f(st, "duet.train.lr", &lr) || meta_get_f(st, "duet.train.min_lr", &min_lr) ||
              meta_get_f(st, "duet.train.weight_decay", &wd) ||
              meta_get_f(st, "duet.train.grad_clip", &clip) ||
              meta_get_i64(st, "duet.train.eval_every", &s->eval_every) ||
              meta_get_i64(st, "duet.train.save_every", &s->save_every) ||
              meta_get_i64(st, "duet.train.eval_batches", &s->eval_batches) ||
              meta_get_f(st, "duet.train.elapsed_s", &s->elapsed) ||
              meta_get_i64(st, "duet.train.data_bytes", &s->data_bytes) ||
              meta_get_u64(st, "duet.train.data_hash", &s->data_hash);
    /* last reported losses: optional */
    if (meta_get_f(st, "duet.train.train_loss", &s->train_loss)) s->train_loss = 0;
    if (meta_get_f(st, "duet.train.val_loss", &s->val_loss)) s->val_loss = 0;
    if (meta_get_f(st, "duet.train.val_bpb", &s->val_bpb)) s->val_bpb = 0;
    duet_st_close(st);
    if (bad) {
        duet_set_error(DUET_ERR_FORMAT, "%s: the training state (duet.train.* metadata) is "
                       "missing or damaged; it cannot be resumed", path);
        return -1;
    }
    s->lr = (float)lr, s->min_lr = (float)min_lr, s->wd = (float)wd, s->clip = (float)clip;
    s->minutes = (float)minutes;
    return 0;
}

/* ==== the command ========================================================= */

static volatile sig_atomic_t interrupted = 0;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

int cmd_train_text(int argc, char **argv) {
    const char *cmd = "train text";
    train_opts o;
    memset(&o, 0, sizeof o);
    o.arch = "gpt2";
    o.preset = "small";
    cli_opt opts[O_COUNT] = {
        [O_DATA] = {"data", 0, OPT_STR, &o.data, "text file or folder to train on (required)", 0},
        [O_TOKENIZER] = {"tokenizer", 0, OPT_STR, &o.tokenizer, "tokenizer.json to use", 0},
        [O_VOCAB] = {"vocab", 0, OPT_I64, &o.vocab, "train a BPE of N ids on the data (256: bytes; small 512)", 0},
        [O_ARCH] = {"arch", 0, OPT_STR, &o.arch, "gpt2 (default) or llama", 0},
        [O_LAYERS] = {"layers", 0, OPT_I64, &o.layers, "transformer blocks (small 6, tiny 2)", 0},
        [O_HEADS] = {"heads", 0, OPT_I64, &o.heads, "attention heads (small 6, tiny 2)", 0},
        [O_KV_HEADS] = {"kv-heads", 0, OPT_I64, &o.kv_heads, "key/value heads (default: heads)", 0},
        [O_DIM] = {"dim", 0, OPT_I64, &o.dim, "model width (small 384, tiny 64)", 0},
        [O_CTX] = {"ctx", 0, OPT_I64, &o.ctx, "context length in tokens (small 256, tiny 64)", 0},
        [O_BATCH] = {"batch", 0, OPT_I64, &o.batch, "sequences per step (small 16, tiny 8)", 0},
        [O_STEPS] = {"steps", 0, OPT_I64, &o.steps, "optimizer steps (small 1000, tiny 300)", 0},
        [O_MINUTES] = {"minutes", 0, OPT_FLOAT, &o.minutes, "train for M minutes instead of --steps", 0},
        [O_LR] = {"lr", 0, OPT_FLOAT, &o.lr, "peak learning rate (small 1e-3, tiny 3e-3)", 0},
        [O_WARMUP] = {"warmup", 0, OPT_I64, &o.warmup, "warmup steps (default min(100, steps/10))", 0},
        [O_WD] = {"weight-decay", 0, OPT_FLOAT, &o.weight_decay, "AdamW weight decay (0.1)", 0},
        [O_CLIP] = {"grad-clip", 0, OPT_FLOAT, &o.grad_clip, "clip the gradient norm (1.0; 0 = off)", 0},
        [O_SEED] = {"seed", 0, OPT_I64, &o.seed, "seed for init and batches (1337)", 0},
        [O_OUT] = {"out", 'o', OPT_STR, &o.out, "model file to write (required)", 0},
        [O_RESUME] = {"resume", 0, OPT_FLAG, &o.resume, "continue from --out and its .optim file", 0},
        [O_PRESET] = {"preset", 0, OPT_STR, &o.preset, "tiny or small (default small)", 0},
        [O_EVAL_EVERY] = {"eval-every", 0, OPT_I64, &o.eval_every, "steps between validations (min(100, steps/10))", 0},
        [O_SAVE_EVERY] = {"save-every", 0, OPT_I64, &o.save_every, "steps between checkpoints (500; 0: end only)", 0},
        [O_EVAL_BATCHES] = {"eval-batches", 0, OPT_I64, &o.eval_batches, "validation batches (default 8)", 0},
    };
    const char *pos[1];
    int npos;
    int rc = cli_parse(cmd, usage_text, argc, argv, opts, O_COUNT, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
#define SEEN(i) (opts[i].seen)

    /* ---- presets and defaults, then checks (before touching any file) ---- */
    int tiny;
    if (strcmp(o.preset, "tiny") == 0) tiny = 1;
    else if (strcmp(o.preset, "small") == 0) tiny = 0;
    else {
        cli_error(cmd, "--preset '%s': use tiny or small", o.preset);
        return EXIT_USAGE;
    }
    if (!o.data) {
        cli_error(cmd, "--data FILE is required (a text file or a folder of text files)");
        return EXIT_USAGE;
    }
    if (!o.out) {
        cli_error(cmd, "--out MODEL.safetensors is required");
        return EXIT_USAGE;
    }
    int arch = duet_tf_arch_from_name(o.arch);
    if (arch < 0) {
        cli_error(cmd, "--arch '%s': use gpt2 or llama", o.arch);
        return EXIT_USAGE;
    }
    if (SEEN(O_STEPS) && SEEN(O_MINUTES)) {
        cli_error(cmd, "give --steps or --minutes, not both");
        return EXIT_USAGE;
    }
    if (SEEN(O_TOKENIZER) && SEEN(O_VOCAB)) {
        cli_error(cmd, "give --tokenizer or --vocab, not both");
        return EXIT_USAGE;
    }
    if (!SEEN(O_LAYERS)) o.layers = tiny ? 2 : 6;
    if (!SEEN(O_HEADS)) o.heads = tiny ? 2 : 6;
    if (!SEEN(O_KV_HEADS)) o.kv_heads = o.heads;
    if (!SEEN(O_DIM)) o.dim = tiny ? 64 : 384;
    if (!SEEN(O_CTX)) o.ctx = tiny ? 64 : 256;
    if (!SEEN(O_BATCH)) o.batch = tiny ? 8 : 16;
    if (!SEEN(O_VOCAB)) o.vocab = tiny ? 256 : 512;
    if (!SEEN(O_STEPS)) o.steps = tiny ? 300 : 1000;
    if (!SEEN(O_LR)) o.lr = tiny ? 3e-3f : 1e-3f;
    if (!SEEN(O_WD)) o.weight_decay = 0.1f;
    if (!SEEN(O_CLIP)) o.grad_clip = 1.0f;
    if (!SEEN(O_SEED)) o.seed = 1337;
    if (!SEEN(O_EVAL_BATCHES)) o.eval_batches = 8;
    {
        const struct { int id; int64_t v, lo, hi; } chk[] = {
            {O_LAYERS, o.layers, 1, 1024},   {O_HEADS, o.heads, 1, 4096},
            {O_KV_HEADS, o.kv_heads, 1, 4096}, {O_DIM, o.dim, 1, 1 << 16},
            {O_CTX, o.ctx, 2, 1 << 20},      {O_BATCH, o.batch, 1, 1 << 16},
            {O_STEPS, o.steps, 1, (int64_t)1 << 40}, {O_VOCAB, o.vocab, 256, 1 << 20},
            {O_EVAL_BATCHES, o.eval_batches, 1, 1 << 20},
        };
        for (size_t i = 0; i < sizeof chk / sizeof *chk; i++)
            if (chk[i].v < chk[i].lo || chk[i].v > chk[i].hi) {
                cli_error(cmd, "--%s %lld: must be in %lld..%lld", opts[chk[i].id].name,
                          (long long)chk[i].v, (long long)chk[i].lo, (long long)chk[i].hi);
                return EXIT_USAGE;
            }
    }
    if (SEEN(O_VOCAB) && o.vocab > 256 && o.vocab < 259) {
        cli_error(cmd, "--vocab %lld: use 256 for plain bytes, or at least 259 for a BPE "
                  "(256 bytes + 2 special ids + merges)", (long long)o.vocab);
        return EXIT_USAGE;
    }
    if (SEEN(O_MINUTES) && !(o.minutes > 0)) {
        cli_error(cmd, "--minutes %g: must be > 0", (double)o.minutes);
        return EXIT_USAGE;
    }
    if (!(o.lr > 0) || o.lr > 10) {
        cli_error(cmd, "--lr %g: must be in (0, 10]", (double)o.lr);
        return EXIT_USAGE;
    }
    if (o.weight_decay < 0 || o.grad_clip < 0) {
        cli_error(cmd, "--weight-decay and --grad-clip must be >= 0");
        return EXIT_USAGE;
    }
    if ((SEEN(O_WARMUP) && o.warmup < 0) || (SEEN(O_EVAL_EVERY) && o.eval_every < 1) ||
        (SEEN(O_SAVE_EVERY) && o.save_every < 0) || o.seed < 0) {
        cli_error(cmd, "--warmup, --save-every and --seed must be >= 0, --eval-every >= 1");
        return EXIT_USAGE;
    }
    if (o.dim % o.heads || o.heads % o.kv_heads) {
        cli_error(cmd, "--dim %lld must be a multiple of --heads %lld, and --heads of --kv-heads %lld",
                  (long long)o.dim, (long long)o.heads, (long long)o.kv_heads);
        return EXIT_USAGE;
    }
    if (arch == DUET_TF_ARCH_LLAMA && (o.dim / o.heads) % 2) {
        cli_error(cmd, "llama needs an even head size (dim / heads) for RoPE; got %lld",
                  (long long)(o.dim / o.heads));
        return EXIT_USAGE;
    }
    char optim_path[4096], csv_path[4096], png_path[4096];
    snprintf(optim_path, sizeof optim_path, "%s.optim.safetensors", o.out);
    snprintf(csv_path, sizeof csv_path, "%s.csv", o.out);
    snprintf(png_path, sizeof png_path, "%s.loss.png", o.out);
    if (o.resume && (!file_exists(o.out) || !file_exists(optim_path))) {
        cli_error(cmd, "--resume needs %s and %s from an earlier run; %s is missing", o.out,
                  optim_path, file_exists(o.out) ? optim_path : o.out);
        return EXIT_IO;
    }

    /* ---- data ---- */
    duet_corpus corpus;
    duet_status s = duet_corpus_load(o.data, &corpus);
    if (s != DUET_OK) {
        cli_error(cmd, "%s", duet_last_error());
        return cli_exit_code(s);
    }
    const char *text = (const char *)corpus.data;
    const int64_t nbytes = corpus.size, ntrain_bytes = nbytes - nbytes / 10;
    const int64_t nval_bytes = nbytes - ntrain_bytes;
    const uint64_t data_hash = fnv1a(corpus.data, nbytes);

    duet_tf *m = NULL;
    duet_tokenizer *tok = NULL;
    char *tok_json = NULL;
    int32_t *train = NULL, *val = NULL, *ids = NULL, *tg = NULL;
    duet_graph *g = NULL;
    duet_adamw opt;
    memset(&opt, 0, sizeof opt);
    log_rows L = {0};
    FILE *csv = NULL;
    int exit_code = EXIT_FAIL;
    train_state ts;
    memset(&ts, 0, sizeof ts);

    if (nval_bytes < 2) {
        cli_error(cmd, "%s: %lld bytes is too little to hold out a validation split",
                  o.data, (long long)nbytes);
        exit_code = EXIT_FORMAT;
        goto done;
    }

    /* ---- tokenizer: checkpoint, file, or trained here ---- */
    if (o.resume) {
        if (read_state(o.out, &ts)) {
            cli_error(cmd, "%s", duet_last_error());
            exit_code = EXIT_FORMAT;
            goto done;
        }
        if (ts.data_bytes != nbytes || ts.data_hash != data_hash) {
            cli_error(cmd, "--resume: %s is not the data %s was trained on (%lld bytes, hash "
                      "differs); pass the same --data", o.data, o.out, (long long)nbytes);
            exit_code = EXIT_USAGE;
            goto done;
        }
        m = duet_tf_load(o.out, &tok_json);
        if (!m) {
            cli_error(cmd, "%s", duet_last_error());
            exit_code = EXIT_FORMAT;
            goto done;
        }
        if (!tok_json) {
            cli_error(cmd, "%s has no embedded tokenizer (duet.tokenizer)", o.out);
            exit_code = EXIT_FORMAT;
            goto done;
        }
        tok = cli_tokenizer_from_json(tok_json);
        if (SEEN(O_ARCH) || SEEN(O_LAYERS) || SEEN(O_DIM) || SEEN(O_HEADS) || SEEN(O_CTX) ||
            SEEN(O_KV_HEADS) || SEEN(O_VOCAB) || SEEN(O_TOKENIZER) || SEEN(O_PRESET))
            fprintf(stderr, "duet %s: --resume: the model's shape and tokenizer come from %s; "
                    "shape flags are ignored\n", cmd, o.out);
    } else if (o.tokenizer) {
        tok = duet_tokenizer_load(o.tokenizer);
    } else if (o.vocab == 256) {
        tok = duet_tokenizer_new_bytes();
    } else {
        fprintf(stderr, "duet %s: training a BPE tokenizer of %lld ids on %lld bytes\n", cmd,
                (long long)o.vocab, (long long)ntrain_bytes);
        tok = duet_tokenizer_train(text, ntrain_bytes, o.vocab, NULL);
    }
    if (!tok) {
        cli_error(cmd, "%s", duet_last_error());
        exit_code = o.tokenizer && !file_exists(o.tokenizer) ? EXIT_IO : EXIT_FORMAT;
        goto done;
    }
    if (!tok_json) tok_json = cli_tokenizer_to_json(tok);
    if (!tok_json) {
        cli_error(cmd, "%s", duet_last_error());
        goto done;
    }
    int64_t ntrain = 0, nval = 0;
    train = encode_all(tok, text, ntrain_bytes, &ntrain);
    val = encode_all(tok, text + ntrain_bytes, nval_bytes, &nval);
    if (!train || !val) {
        cli_error(cmd, "out of memory tokenizing %s", o.data);
        goto done;
    }

    /* ---- model and training state ---- */
    const int64_t V = duet_tokenizer_vocab_size(tok);
    if (o.resume) {
        if (duet_tf_config(m)->vocab < V) {
            cli_error(cmd, "%s: vocab %lld is smaller than its tokenizer's %lld", o.out,
                      (long long)duet_tf_config(m)->vocab, (long long)V);
            exit_code = EXIT_FORMAT;
            goto done;
        }
        /* explicitly given flags may change the plan (e.g. more steps) */
        if (SEEN(O_STEPS)) ts.steps_total = o.steps, ts.minutes = 0;
        if (SEEN(O_MINUTES)) ts.minutes = o.minutes, ts.steps_total = 0;
        if (SEEN(O_EVAL_EVERY)) ts.eval_every = o.eval_every;
        if (SEEN(O_SAVE_EVERY)) ts.save_every = o.save_every;
        if (SEEN(O_BATCH) && o.batch != ts.batch)
            fprintf(stderr, "duet %s: --batch %lld differs from the checkpoint's %lld: the "
                    "run will not match an uninterrupted one\n", cmd, (long long)o.batch,
                    (long long)ts.batch), ts.batch = o.batch;
        if (SEEN(O_LR)) ts.lr = o.lr, ts.min_lr = o.lr / 10;
    } else {
        duet_tf_params p;
        duet_tf_params_default(&p, (duet_tf_arch)arch);
        p.vocab = V;
        p.ctx = o.ctx;
        p.dim = o.dim;
        p.layers = o.layers;
        p.heads = o.heads;
        p.kv_heads = o.kv_heads;
        m = duet_tf_new(&p, (uint64_t)o.seed);
        if (!m) {
            cli_error(cmd, "%s", duet_last_error());
            exit_code = EXIT_USAGE;
            goto done;
        }
        ts.seed = (uint64_t)o.seed;
        ts.minutes = SEEN(O_MINUTES) ? o.minutes : 0;
        ts.steps_total = SEEN(O_MINUTES) ? 0 : o.steps;
        int64_t plan = ts.steps_total ? ts.steps_total : 1000;
        ts.warmup = SEEN(O_WARMUP) ? o.warmup : (plan / 10 < 100 ? plan / 10 : 100);
        ts.batch = o.batch;
        ts.lr = o.lr;
        ts.min_lr = o.lr / 10;
        ts.wd = o.weight_decay;
        ts.clip = o.grad_clip;
        ts.eval_every = SEEN(O_EVAL_EVERY) ? o.eval_every
                        : plan / 10 < 1 ? 1 : plan / 10 < 100 ? plan / 10 : 100;
        ts.save_every = SEEN(O_SAVE_EVERY) ? o.save_every : 500;
        ts.eval_batches = o.eval_batches;
        ts.data_bytes = nbytes;
        ts.data_hash = data_hash;
    }
    const duet_tf_params *cfg = duet_tf_config(m);
    const int64_t B = ts.batch, T = cfg->ctx;
    if (ntrain < T + 1) {
        cli_error(cmd, "%s: the training split is %lld tokens, shorter than ctx + 1 = %lld; "
                  "use more data or a smaller --ctx", o.data, (long long)ntrain, (long long)(T + 1));
        exit_code = EXIT_FORMAT;
        goto done;
    }
    if (nval < 2) {
        cli_error(cmd, "%s: the validation split (last 10%%) is only %lld token(s); use more data",
                  o.data, (long long)nval);
        exit_code = EXIT_FORMAT;
        goto done;
    }
    int np;
    duet_tensor **ps = duet_tf_params_list(m, &np);
    if (duet_adamw_init(&opt, ps, np, 0.9f, 0.95f, 1e-8f, ts.wd) != DUET_OK) {
        cli_error(cmd, "%s", duet_last_error());
        goto done;
    }
    for (int i = 0; i < np; i++) duet_adamw_set_decay(&opt, i, duet_tf_param_decays(ps[i]));
    if (o.resume) {
        train_state os;
        if (read_state(optim_path, &os) || duet_tf_load_optim(m, &opt, optim_path) != DUET_OK) {
            cli_error(cmd, "%s", duet_last_error());
            exit_code = EXIT_FORMAT;
            goto done;
        }
        if (os.step != ts.step || os.data_pos != ts.data_pos) {
            cli_error(cmd, "%s is at step %lld but %s at step %lld: they are from different "
                      "saves; cannot resume", o.out, (long long)ts.step, optim_path,
                      (long long)os.step);
            exit_code = EXIT_FORMAT;
            goto done;
        }
        if (ts.minutes > 0 && ts.elapsed >= (double)ts.minutes * 60.0) {
            fprintf(stderr, "duet %s: %s already trained for %.1f of %.1f minutes\n", cmd, o.out,
                    ts.elapsed / 60.0, (double)ts.minutes);
        }
        csv_read(csv_path, ts.step, &L);
    }
    ids = malloc(sizeof(int32_t) * (size_t)(B * T));
    tg = malloc(sizeof(int32_t) * (size_t)(B * T));
    g = duet_graph_new((size_t)64 << 20);
    if (!ids || !tg || !g) {
        cli_error(cmd, "out of memory");
        goto done;
    }
    s = csv_rewrite(csv_path, &L);
    csv = s == DUET_OK ? fopen(csv_path, "a") : NULL;
    if (!csv) {
        cli_error(cmd, "cannot write %s: %s", csv_path, s != DUET_OK ? duet_last_error() : strerror(errno));
        exit_code = EXIT_IO;
        goto done;
    }

    /* ---- train ---- */
    fprintf(stderr,
            "duet %s: %s, %lld layers, %lld heads (%lld kv), dim %lld, ctx %lld, vocab %lld: "
            "%.2fM parameters\n"
            "  data %s: %lld train / %lld validation tokens (%.2f bytes/token), batch %lld, "
            "lr %g, %s %lld\n",
            cmd, duet_tf_arch_name(cfg->arch), (long long)cfg->layers, (long long)cfg->heads,
            (long long)cfg->kv_heads, (long long)cfg->dim, (long long)T, (long long)cfg->vocab,
            (double)duet_tf_numel(m) / 1e6, o.data, (long long)ntrain, (long long)nval,
            (double)ntrain_bytes / (double)ntrain, (long long)B, (double)ts.lr,
            ts.minutes > 0 ? "minutes" : "steps",
            ts.minutes > 0 ? (long long)ts.minutes : (long long)ts.steps_total);
    if (o.resume) fprintf(stderr, "  resuming at step %lld\n", (long long)ts.step);
    const char *kill_at_env = getenv("DUET_TRAIN_KILL_AT");
    const int64_t kill_at = kill_at_env ? strtoll(kill_at_env, NULL, 10) : -1;
    const double bytes_per_token_val = (double)nval_bytes / (double)nval;
    const int timed = ts.minutes > 0;
    cli_progress pb;
    cli_progress_start(&pb, "train", timed ? (int64_t)((double)ts.minutes * 60000.0) : ts.steps_total);
    signal(SIGINT, on_sigint);
    double t_start = cli_now(), elapsed0 = ts.elapsed, train_time = 0;
    double loss_sum = 0;
    int64_t loss_n = 0, tokens_run = 0;
    duet_status fail = DUET_OK;
    for (;;) {
        const int64_t step = ts.step;
        double now_el = elapsed0 + (cli_now() - t_start);
        if (timed ? now_el >= (double)ts.minutes * 60.0 : step >= ts.steps_total) break;
        if (interrupted) break;
        float lr = timed ? duet_lr_at(DUET_LR_CONSTANT, step, ts.warmup, 0, ts.lr, ts.lr)
                         : duet_lr_at(DUET_LR_WARMUP_COSINE, step, ts.warmup, ts.steps_total,
                                      ts.lr, ts.min_lr);
        const double t_step = cli_now();
        draw_batch(train, ntrain, B, T, ts.seed, ts.data_pos, ids, tg);
        ts.data_pos++;
        duet_graph_reset(g);
        duet_tf_zero_grad(m);
        duet_tensor *loss = duet_tf_forward(m, g, ids, tg, B, T, NULL);
        if (!loss || duet_graph_backward(g, loss) != DUET_OK) {
            fail = duet_graph_status(g) != DUET_OK ? duet_graph_status(g) : DUET_ERR_INTERNAL;
            break;
        }
        const float lv = *(float *)loss->data;
        if (!isfinite(lv)) {
            cli_progress_end(&pb);
            cli_error(cmd, "the loss is %g at step %lld: training diverged; try a lower --lr "
                      "(now %g) or --grad-clip", (double)lv, (long long)step + 1, (double)ts.lr);
            exit_code = EXIT_FAIL;
            goto done;
        }
        if (ts.clip > 0) duet_clip_grad_norm(ps, np, ts.clip);
        duet_adamw_step(&opt, ps, np, lr);
        ts.step++;
        loss_sum += (double)lv;
        loss_n++;
        const double now = cli_now(), dt = now - t_step;
        train_time += dt;
        tokens_run += B * T;
        ts.elapsed = elapsed0 + (now - t_start);
        log_row row = {ts.step, lr, lv, NAN, NAN, (float)((double)(B * T) / (dt + 1e-9)),
                       (float)ts.elapsed};
        int last = timed ? ts.elapsed >= (double)ts.minutes * 60.0 : ts.step >= ts.steps_total;
        if (ts.step % ts.eval_every == 0 || last || interrupted) {
            int efail = 0;
            double vl = evaluate(m, g, val, nval, B, T, ts.eval_batches * B, ids, tg, &efail);
            if (efail) {
                fail = duet_graph_status(g);
                break;
            }
            ts.val_loss = vl;
            ts.val_bpb = vl / bytes_per_token_val / log(2.0);
            ts.train_loss = loss_sum / (double)loss_n;
            loss_sum = 0;
            loss_n = 0;
            row.val = (float)ts.val_loss;
            row.bpb = (float)ts.val_bpb;
        }
        char line[160];
        csv_format(line, sizeof line, &row);
        fputs(line, csv);
        fflush(csv);
        log_push(&L, &row);
        char extra[160], vbuf[32] = "-";
        if (ts.val_loss > 0) snprintf(vbuf, sizeof vbuf, "%.4f", ts.val_loss);
        snprintf(extra, sizeof extra, "step %lld | loss %.4f | val %s | %.0f tok/s",
                 (long long)ts.step, (double)lv, vbuf, (double)row.tps);
        cli_progress_update(&pb, timed ? (int64_t)(ts.elapsed * 1000.0) : ts.step, extra);
        if (ts.save_every > 0 && ts.step % ts.save_every == 0 && !last) {
            if (loss_n) ts.train_loss = loss_sum / (double)loss_n;
            s = save_all(m, &opt, o.out, optim_path, tok_json, &ts);
            if (s != DUET_OK) {
                fail = s;
                break;
            }
            draw_curve(png_path, &L);
        }
        if (kill_at == ts.step) raise(SIGKILL);
    }
    cli_progress_end(&pb);
    signal(SIGINT, SIG_DFL);
    if (fail != DUET_OK) {
        cli_error(cmd, "%s", duet_last_error());
        exit_code = cli_exit_code(fail);
        goto done;
    }
    if (loss_n) ts.train_loss = loss_sum / (double)loss_n;
    s = save_all(m, &opt, o.out, optim_path, tok_json, &ts);
    if (s != DUET_OK) {
        cli_error(cmd, "%s", duet_last_error());
        exit_code = cli_exit_code(s);
        goto done;
    }
    s = draw_curve(png_path, &L);
    if (s != DUET_OK) fprintf(stderr, "duet %s: warning: %s\n", cmd, duet_last_error());
    printf("%s: %lld steps, %.0f tokens/s, train loss %.4f, val loss %.4f nats/token, "
           "%.4f bits/byte -> %s\n",
           interrupted ? "interrupted" : "done", (long long)ts.step,
           train_time > 0 ? (double)tokens_run / train_time : 0.0, ts.train_loss, ts.val_loss, ts.val_bpb, o.out);
    exit_code = interrupted ? EXIT_INTERRUPTED : 0;
done:
    if (csv) fclose(csv);
    free(L.rows);
    free(ids);
    free(tg);
    free(train);
    free(val);
    duet_graph_free(g);
    duet_adamw_free(&opt);
    duet_free(tok_json);
    duet_tokenizer_free(tok);
    duet_tf_free(m);
    duet_corpus_free(&corpus);
    return exit_code;
#undef SEEN
}
