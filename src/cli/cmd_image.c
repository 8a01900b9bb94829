/*
 * cmd_image.c — `duet image`: paints. Loads a painter checkpoint, finds the
 * requested class among the names it carries ("duet.class_names"), draws
 * samples with the chosen sampler and classifier-free guidance in batches of
 * at most 64 (the conditional and unconditional passes of a batch run as one
 * forward of 128), and writes
 *   - one grid PNG (--out; `--prompt all` gives one row per class), or one
 *     PNG per sample (--out-dir, named <class-index>_<n>.png);
 *   - with --trajectory T.png, the static -> picture story of the first
 *     sample: x_t (top row) and the predicted x_0 (bottom row) at ~10 evenly
 *     spaced steps, and T.gif beside it with every step;
 * every PNG carries the generation parameters in tEXt chunks. Batch k of 64
 * draws its noise from seed + k, so the same flags give the same pictures.
 *
 * What it is not: a text-to-image model; the "prompt" is a class name.
 */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MODEL "painter.safetensors"
#define CHUNK 64      /* samples per duet_unet_sample call */
#define TRAJ_COLS 10  /* columns of the trajectory strip */

/* ==== class names ========================================================= */

typedef struct {
    char **names;  /* [n] */
    int n;
    char *store;   /* one block the names point into */
} class_list;

static void class_list_free(class_list *c) {
    free(c->names);
    free(c->store);
    memset(c, 0, sizeof *c);
}

/* Names from "duet.class_names" (comma-separated), or "0".."K-1". */
static int class_list_read(const char *path, int K, class_list *c) {
    memset(c, 0, sizeof *c);
    if (K <= 0) return 0;
    duet_st *st = duet_st_open(path);
    const char *meta = st ? duet_st_meta(st, "duet.class_names") : NULL;
    size_t len = meta ? strlen(meta) : 0;
    c->store = malloc(len + (size_t)K * 12 + 1);
    c->names = calloc((size_t)K, sizeof *c->names);
    if (!c->store || !c->names) {
        if (st) duet_st_close(st);
        class_list_free(c);
        return -1;
    }
    c->n = K;
    int got = 0;
    if (meta) {
        memcpy(c->store, meta, len + 1);
        char *p = c->store;
        for (got = 0; got < K && p;) {
            c->names[got++] = p;
            p = strchr(p, ',');
            if (p) *p++ = 0;
        }
    }
    char *extra = c->store + len + 1;
    for (int i = got; i < K; i++) { /* missing names: the index */
        c->names[i] = extra;
        extra += sprintf(extra, "%d", i) + 1;
    }
    if (st) duet_st_close(st);
    return 0;
}

/* The class index of prompt, matched like the data sets match names
 * (letters and digits only, case-insensitively; or a number), or -1. */
static int class_find(const class_list *c, const char *prompt) {
    duet_dataset d;
    memset(&d, 0, sizeof d);
    d.nclasses = c->n;
    d.class_names = c->names;
    return duet_dataset_class_index(&d, prompt);
}

/* ==== pictures ============================================================ */

/* Nearest-neighbour upscale of n images [n, C, S, S] by f into dst [n, C, fS, fS]. */
static void upscale(float *dst, const float *src, int64_t n, int64_t C, int64_t S, int64_t f) {
    const int64_t FS = S * f;
    for (int64_t i = 0; i < n * C; i++)
        for (int64_t y = 0; y < FS; y++)
            for (int64_t x = 0; x < FS; x++)
                dst[(i * FS + y) * FS + x] = src[(i * S + y / f) * S + x / f];
}

/* Writes images [n, C, S, S] as a rows x cols grid PNG (white borders;
 * none around a single picture). */
static duet_status write_grid(const char *path, const float *img, int64_t n, int64_t C, int64_t S,
                              int64_t rows, int64_t cols, const char *const *text, int ntext) {
    const int64_t border = rows * cols == 1 ? 0 : 2;
    int64_t gh, gw;
    duet_image_grid_size(rows, cols, S, S, border, &gh, &gw);
    uint8_t *px = duet_alloc((size_t)(gh * gw * C));
    if (!px) return duet_set_error(DUET_ERR_NOMEM, "out of memory for a %lldx%lld picture", (long long)gw, (long long)gh);
    duet_image_grid(px, img, n, C, S, S, rows, cols, border, 255);
    duet_status s = duet_png_write(path, px, gw, gh, (int)C, text, ntext);
    duet_free(px);
    return s;
}

/* mkdir -p of `dir` itself; 0 on success. */
static int make_dirs(const char *dir) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        int bad = mkdir(buf, 0777) != 0 && errno != EEXIST;
        *p = '/';
        if (bad) return -1;
    }
    return 0;
}

/* ==== the trajectory of the first sample ================================== */

typedef struct {
    int64_t per;     /* floats per sample */
    int steps;
    int seen;
    float *x, *x0;   /* [steps, per] each */
} traj_rec;

static void on_step(void *ctx, int step, int steps, int t, const float *x, const float *x0) {
    traj_rec *r = ctx;
    (void)t;
    if (step < 0 || step >= r->steps || steps != r->steps) return;
    memcpy(r->x + (int64_t)step * r->per, x, sizeof(float) * (size_t)r->per);
    memcpy(r->x0 + (int64_t)step * r->per, x0, sizeof(float) * (size_t)r->per);
    if (step + 1 > r->seen) r->seen = step + 1;
}

/* T.png: two rows (x_t, predicted x_0) at ~10 evenly spaced steps; T.gif:
 * every step, x_t beside x_0, the last frame held. Both upscaled to >= 64 px. */
static duet_status write_trajectory(const char *png_path, const traj_rec *r, int64_t C, int64_t S,
                                    const char *const *text, int ntext, char *gif_path, size_t gif_n) {
    const int64_t f = S >= 64 ? 1 : (64 + S - 1) / S, FS = f * S, fper = C * FS * FS;
    const int64_t k = r->seen < TRAJ_COLS ? r->seen : TRAJ_COLS;
    float *cells = duet_alloc(sizeof(float) * (size_t)(2 * (k > 2 ? k : 2) * fper));
    if (!cells) return duet_set_error(DUET_ERR_NOMEM, "out of memory for the trajectory");
    duet_status s = DUET_OK;
    if (k < 1) s = duet_set_error(DUET_ERR_INTERNAL, "the sampler reported no steps");
    for (int64_t i = 0; !s && i < k; i++) {
        const int64_t step = k == 1 ? 0 : (int64_t)llround((double)i * (double)(r->seen - 1) / (double)(k - 1));
        upscale(cells + i * fper, r->x + step * r->per, 1, C, S, f);
        upscale(cells + (k + i) * fper, r->x0 + step * r->per, 1, C, S, f);
    }
    if (!s) s = write_grid(png_path, cells, 2 * k, C, FS, 2, k, text, ntext);
    /* the GIF: one frame per step */
    size_t len = strlen(png_path);
    if (len > 4 && strcmp(png_path + len - 4, ".png") == 0) snprintf(gif_path, gif_n, "%.*s.gif", (int)(len - 4), png_path);
    else snprintf(gif_path, gif_n, "%s.gif", png_path);
    int64_t gh, gw;
    duet_image_grid_size(1, 2, FS, FS, 2, &gh, &gw);
    duet_gif *gif = s ? NULL : duet_gif_new(gw, gh, (int)C);
    uint8_t *px = duet_alloc((size_t)(gh * gw * C));
    if (!s && (!gif || !px)) s = duet_set_error(DUET_ERR_NOMEM, "out of memory for the trajectory GIF");
    for (int step = 0; !s && step < r->seen; step++) {
        upscale(cells, r->x + step * r->per, 1, C, S, f);
        upscale(cells + fper, r->x0 + step * r->per, 1, C, S, f);
        duet_image_grid(px, cells, 2, C, FS, FS, 1, 2, 2, 255);
        s = duet_gif_add_frame(gif, px, step + 1 == r->seen ? 200 : 6);
    }
    if (!s) s = duet_gif_write(gif, gif_path);
    duet_gif_free(gif);
    duet_free(px);
    duet_free(cells);
    return s;
}

/* ==== the command ========================================================= */

static const char usage_text[] =
    "[PROMPT] [--model M] [--prompt CLASS|all] [-n N] [options]\n\n"
    "Draws pictures of a class from a painter. PROMPT is a class name of the model\n"
    "(`all`: N of every class, one grid row per class). Without --model the built-in\n"
    "models/painter.safetensors is used. Samplers: ddim ddpm euler euler-a dpmpp-2m.";

int cmd_image(int argc, char **argv) {
    const char *cmd = "image";
    const char *model_path = NULL, *prompt_opt = NULL, *sampler_name = "ddim", *out = NULL;
    const char *out_dir = NULL, *traj_path = NULL;
    int64_t n = 8, seed = 0;
    int steps = 50;
    float cfg = 3.0f, eta = 0.0f;
    enum { O_MODEL, O_PROMPT, O_N, O_SAMPLER, O_STEPS, O_CFG, O_ETA, O_SEED, O_OUT, O_OUT_DIR,
           O_TRAJ, O_COUNT };
    cli_opt opts[O_COUNT] = {
        [O_MODEL] = {"model", 'm', OPT_STR, &model_path, "painter checkpoint (models/painter.safetensors)", 0},
        [O_PROMPT] = {"prompt", 'p', OPT_STR, &prompt_opt, "class name, or all (default: all)", 0},
        [O_N] = {"n", 'n', OPT_I64, &n, "samples (per class with all) (8)", 0},
        [O_SAMPLER] = {"sampler", 0, OPT_STR, &sampler_name, "ddim, ddpm, euler, euler-a, dpmpp-2m (ddim)", 0},
        [O_STEPS] = {"steps", 's', OPT_INT, &steps, "sampling steps (50)", 0},
        [O_CFG] = {"cfg", 0, OPT_FLOAT, &cfg, "classifier-free guidance scale, 1 = off (3)", 0},
        [O_ETA] = {"eta", 0, OPT_FLOAT, &eta, "DDIM eta: 0 deterministic, 1 DDPM-like (0)", 0},
        [O_SEED] = {"seed", 0, OPT_I64, &seed, "noise seed (0)", 0},
        [O_OUT] = {"out", 'o', OPT_STR, &out, "grid PNG to write (image.png)", 0},
        [O_OUT_DIR] = {"out-dir", 0, OPT_STR, &out_dir, "write one PNG per sample into this folder instead", 0},
        [O_TRAJ] = {"trajectory", 0, OPT_STR, &traj_path, "also write the first sample's denoising story (PNG + GIF)", 0},
    };
    const char *pos[16];
    int npos;
    int rc = cli_parse(cmd, usage_text, argc, argv, opts, O_COUNT, pos, 16, &npos);
    if (rc) return rc < 0 ? 0 : rc;

    /* ---- flags ---- */
    char prompt_buf[512] = "";
    for (int i = 0, len = 0; i < npos; i++)
        len += snprintf(prompt_buf + len, sizeof prompt_buf - (size_t)len, i ? " %s" : "%s", pos[i]);
    if (npos && prompt_opt) {
        cli_error(cmd, "give the prompt either as an argument or with --prompt, not both");
        return EXIT_USAGE;
    }
    const char *prompt = npos ? prompt_buf : prompt_opt;
    int sk = duet_diffusion_sampler_from_name(sampler_name);
    if (sk < 0) {
        cli_error(cmd, "--sampler '%s': use ddim, ddpm, euler, euler-a or dpmpp-2m", sampler_name);
        return EXIT_USAGE;
    }
    if (n < 1 || n > 100000) {
        cli_error(cmd, "-n %lld: must be in 1..100000", (long long)n);
        return EXIT_USAGE;
    }
    if (!(cfg >= 0.0f && cfg <= 100.0f)) {
        cli_error(cmd, "--cfg %g: must be in [0, 100] (1 = no guidance)", (double)cfg);
        return EXIT_USAGE;
    }
    if (!(eta >= 0.0f && eta <= 1.0f)) {
        cli_error(cmd, "--eta %g: must be in [0, 1]", (double)eta);
        return EXIT_USAGE;
    }
    if (seed < 0) {
        cli_error(cmd, "--seed must be >= 0");
        return EXIT_USAGE;
    }
    if (out && out_dir) {
        cli_error(cmd, "give --out (one grid) or --out-dir (one file per sample), not both");
        return EXIT_USAGE;
    }
    if (!out && !out_dir) out = "image.png";

    /* ---- the model and its classes ---- */
    char defbuf[4096];
    if (!model_path) {
        model_path = cli_default_model(DEFAULT_MODEL, defbuf, sizeof defbuf);
        if (!model_path) {
            cli_error(cmd, "no --model given and the built-in painter (%s) is missing.\n"
                      "  Train one:  duet train image --data fashion-mnist --out %s\n"
                      "  or pass:    duet image --model PAINTER.safetensors sneaker",
                      defbuf, defbuf);
            return EXIT_IO;
        }
    }
    if (access(model_path, R_OK) != 0) {
        cli_error(cmd, "cannot read model '%s': %s", model_path, strerror(errno));
        return EXIT_IO;
    }
    duet_unet *u = duet_unet_load(model_path);
    if (!u) {
        cli_error(cmd, "%s", duet_last_error());
        return EXIT_FORMAT;
    }
    const duet_unet_config *uc = duet_unet_get_config(u);
    const int K = uc->num_classes;
    class_list cl;
    if (class_list_read(model_path, K, &cl)) {
        duet_unet_free(u);
        cli_error(cmd, "out of memory");
        return EXIT_FAIL;
    }
    int exit_code = EXIT_FAIL;
    float *img = NULL;
    int32_t *labels = NULL;
    traj_rec tr;
    memset(&tr, 0, sizeof tr);

    int klass = -1; /* -1: all classes (or unconditional) */
    if (K == 0) {
        if (prompt && *prompt && strcmp(prompt, "all") != 0) {
            cli_error(cmd, "%s is unconditional (trained without classes): it takes no prompt", model_path);
            exit_code = EXIT_USAGE;
            goto done;
        }
    } else if (prompt && strcmp(prompt, "all") != 0) {
        klass = class_find(&cl, prompt);
        if (klass < 0) {
            char list[2048];
            int len = 0;
            for (int i = 0; i < K && len < (int)sizeof list - 64; i++)
                len += snprintf(list + len, sizeof list - (size_t)len, "%s%s", i ? ", " : "", cl.names[i]);
            cli_error(cmd, "unknown prompt '%s'; %s knows: %s (or all)", prompt, model_path, list);
            exit_code = EXIT_USAGE;
            goto done;
        }
    }
    if (steps < 1 || steps > uc->T) {
        cli_error(cmd, "--steps %d: must be in 1..%d (the model's training steps)", steps, uc->T);
        exit_code = EXIT_USAGE;
        goto done;
    }

    /* ---- labels: n of one class, or n of each ---- */
    const int64_t rows_all = K && klass < 0 ? K : 0;
    const int64_t total = rows_all ? n * K : n;
    const int64_t C = uc->in_channels, S = uc->image_size, per = C * S * S;
    img = duet_alloc(sizeof(float) * (size_t)(total * per));
    labels = duet_alloc(sizeof(int32_t) * (size_t)total);
    if (!img || !labels) {
        cli_error(cmd, "out of memory for %lld pictures", (long long)total);
        goto done;
    }
    for (int64_t i = 0; i < total; i++) labels[i] = (int32_t)(rows_all ? i / n : (klass < 0 ? K : klass));
    if (traj_path) {
        tr.per = per, tr.steps = steps;
        tr.x = duet_alloc(sizeof(float) * (size_t)(steps * per));
        tr.x0 = duet_alloc(sizeof(float) * (size_t)(steps * per));
        if (!tr.x || !tr.x0) {
            cli_error(cmd, "out of memory for the trajectory");
            goto done;
        }
    }

    /* ---- sampling ---- */
    duet_diffusion_params p;
    duet_diffusion_params_init(&p);
    p.sampler = (duet_diffusion_sampler)sk;
    p.steps = steps;
    p.eta = eta;
    const float w = K ? cfg : 1.0f;
    const double t0 = cli_now();
    cli_progress bar;
    cli_progress_start(&bar, "image", total);
    for (int64_t i0 = 0; i0 < total; i0 += CHUNK) {
        const int64_t k = total - i0 < CHUNK ? total - i0 : CHUNK;
        p.seed = (uint64_t)seed + (uint64_t)(i0 / CHUNK);
        /* the first chunk's trajectory callback records its first sample */
        duet_status s = duet_unet_sample(u, K ? labels + i0 : NULL, k, &p, w, img + i0 * per,
                                         i0 == 0 && traj_path ? on_step : NULL, &tr);
        if (s) {
            cli_progress_end(&bar);
            cli_error(cmd, "%s", duet_last_error());
            exit_code = cli_exit_code(s);
            goto done;
        }
        cli_progress_update(&bar, i0 + k, NULL);
    }
    cli_progress_end(&bar);
    const double secs = cli_now() - t0;

    /* ---- pictures with their parameters in tEXt ---- */
    char steps_s[16], cfg_s[32], seed_s[32], eta_s[32], class_s[1024], n_s[32] = "";
    snprintf(steps_s, sizeof steps_s, "%d", steps);
    snprintf(cfg_s, sizeof cfg_s, "%g", (double)w);
    snprintf(seed_s, sizeof seed_s, "%lld", (long long)seed);
    snprintf(eta_s, sizeof eta_s, "%g", (double)eta);
    if (!K) snprintf(class_s, sizeof class_s, "none (unconditional)");
    else if (klass < 0) snprintf(class_s, sizeof class_s, "all (one row per class)");
    else snprintf(class_s, sizeof class_s, "%d %s", klass, cl.names[klass]);
    const char *text[] = {"Software", "duet " DUET_VERSION, "model", model_path,
                          "prompt", prompt ? prompt : "all", "class", class_s,
                          "sampler", duet_diffusion_sampler_name(p.sampler), "steps", steps_s,
                          "cfg", cfg_s, "eta", eta_s, "seed", seed_s, "sample", n_s};
    const int ntext = 9; /* "sample" only on --out-dir files */
    duet_status s = DUET_OK;
    if (out) {
        const int64_t cols = rows_all ? n : (n < 8 ? n : 8);
        const int64_t rows = rows_all ? K : (n + cols - 1) / cols;
        s = write_grid(out, img, total, C, S, rows, cols, text, ntext);
        if (!s) printf("wrote %s (%lld x %lld grid of %lldx%lld)\n", out, (long long)rows, (long long)cols,
                       (long long)S, (long long)S);
    } else {
        if (make_dirs(out_dir)) {
            cli_error(cmd, "cannot create %s: %s", out_dir, strerror(errno));
            exit_code = EXIT_IO;
            goto done;
        }
        for (int64_t i = 0; !s && i < total; i++) {
            char path[4200];
            const int64_t j = rows_all ? i % n : i;
            if (K) snprintf(path, sizeof path, "%s/%d_%lld.png", out_dir, labels[i], (long long)j);
            else snprintf(path, sizeof path, "%s/sample_%lld.png", out_dir, (long long)j);
            if (K) snprintf(class_s, sizeof class_s, "%d %s", labels[i], cl.names[labels[i]]);
            snprintf(n_s, sizeof n_s, "%lld", (long long)i);
            s = write_grid(path, img + i * per, 1, C, S, 1, 1, text, ntext + 1);
        }
        if (!s) printf("wrote %lld pictures to %s/\n", (long long)total, out_dir);
    }
    if (!s && traj_path) {
        if (!K) snprintf(class_s, sizeof class_s, "none (unconditional)");
        else snprintf(class_s, sizeof class_s, "%d %s", labels[0], cl.names[labels[0]]);
        char gif_path[4200];
        s = write_trajectory(traj_path, &tr, C, S, text, ntext, gif_path, sizeof gif_path);
        if (!s) printf("wrote %s and %s (the first sample, %d steps)\n", traj_path, gif_path, tr.seen);
    }
    if (s) {
        cli_error(cmd, "%s", duet_last_error());
        exit_code = cli_exit_code(s) == EXIT_USAGE ? EXIT_IO : cli_exit_code(s);
        goto done;
    }
    fprintf(stderr, "duet %s: %lld pictures in %.2f s (%.2f images/s; %s, %d steps, cfg %g)\n", cmd,
            (long long)total, secs, secs > 0 ? (double)total / secs : 0.0,
            duet_diffusion_sampler_name(p.sampler), steps, (double)w);
    exit_code = 0;

done:
    duet_free(tr.x);
    duet_free(tr.x0);
    duet_free(img);
    duet_free(labels);
    class_list_free(&cl);
    duet_unet_free(u);
    return exit_code;
}
