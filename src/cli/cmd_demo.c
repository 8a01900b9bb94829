/*
 * cmd_demo.c — `duet demo`: the two paradigms side by side on the built-in
 * models. The storyteller writes a passage token by token; the painter turns
 * static into a picture, shown right in the terminal as it clears, and saves
 * a grid of every class it knows.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FRAMES 6

typedef struct {
    int64_t per;            /* floats per image */
    int picks[FRAMES];      /* steps to keep */
    float *frames;          /* [FRAMES, per] x_t of the first sample */
    int ts[FRAMES];
} traj_keep;

static void keep_frame(void *ctx, int step, int steps, int t, const float *x, const float *x0) {
    (void)x0;
    traj_keep *k = ctx;
    for (int i = 0; i < FRAMES; i++)
        if (k->picks[i] == step) {
            memcpy(k->frames + i * k->per, x, sizeof(float) * (size_t)k->per);
            k->ts[i] = t;
        }
    (void)steps;
}

/* brightness ramp, dark to light */
static const char ramp[] = " .:-=+*#%@";

static void print_frames(const traj_keep *k, int H, int W) {
    printf("  ");
    for (int f = 0; f < FRAMES; f++) printf("%-*s", W + 3, f == 0 ? "static" : "");
    printf("\n");
    for (int r = 0; r < H; r += 2) {
        printf("  ");
        for (int f = 0; f < FRAMES; f++) {
            const float *im = k->frames + f * k->per;
            for (int c = 0; c < W; c++) {
                float v = 0.5f * (im[r * W + c] + (r + 1 < H ? im[(r + 1) * W + c] : im[r * W + c]));
                int idx = (int)((v + 1.0f) * 0.5f * 9.99f);
                idx = idx < 0 ? 0 : idx > 9 ? 9 : idx;
                putchar(ramp[idx]);
            }
            printf(f + 1 < FRAMES ? " → " : "");
        }
        putchar('\n');
    }
    printf("  ");
    for (int f = 0; f < FRAMES; f++) {
        char lab[32];
        snprintf(lab, sizeof lab, "t=%d", k->ts[f]);
        printf("%-*s", W + 3, lab);
    }
    printf("\n");
}

static int demo_painter(const char *out_dir, uint64_t seed) {
    char path[1024];
    if (!cli_default_model("painter.safetensors", path, sizeof path)) {
        cli_error("demo", "the built-in painter %s is missing (make models rebuilds it)", path);
        return EXIT_IO;
    }
    duet_unet *u = duet_unet_load(path);
    if (!u) {
        cli_error("demo", "%s", duet_last_error());
        return EXIT_FORMAT;
    }
    const duet_unet_config *c = duet_unet_get_config(u);
    int K = c->num_classes > 0 ? c->num_classes : 1;
    int64_t per = (int64_t)c->in_channels * c->image_size * c->image_size;
    float *imgs = malloc(sizeof(float) * (size_t)(per * K));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)K);
    traj_keep k = {.per = per, .frames = malloc(sizeof(float) * (size_t)(per * FRAMES))};
    duet_diffusion_params p;
    duet_diffusion_params_init(&p);
    p.sampler = DUET_SAMPLER_DDIM;
    p.steps = 50;
    p.seed = seed;
    for (int i = 0; i < FRAMES; i++) k.picks[i] = i * (p.steps - 1) / (FRAMES - 1);
    for (int i = 0; i < K; i++) labels[i] = c->num_classes > 0 ? i : 0;
    double t0 = cli_now();
    duet_status st = duet_unet_sample(u, c->num_classes ? labels : NULL, K, &p, 3.0f, imgs, keep_frame, &k);
    double dt = cli_now() - t0;
    int rc = 0;
    if (st != DUET_OK) {
        cli_error("demo", "sampling failed: %s", duet_last_error());
        rc = cli_exit_code(st);
    } else {
        printf("\nThe painter starts from static and removes a little noise per step (DDIM, %d steps):\n\n", p.steps);
        /* frames hold the whole batch's first image: x is [K, per], first = offset 0 */
        print_frames(&k, c->image_size, c->image_size);
        int64_t gh, gw;
        int cols = K > 5 ? (K + 1) / 2 : K, rows = (K + cols - 1) / cols;
        duet_image_grid_size(rows, cols, c->image_size, c->image_size, 2, &gh, &gw);
        uint8_t *grid = malloc((size_t)(gh * gw * c->in_channels));
        duet_image_grid(grid, imgs, K, c->in_channels, c->image_size, c->image_size, rows, cols, 2, 0);
        mkdir(out_dir, 0777);
        char out[1024], sd[32];
        snprintf(out, sizeof out, "%s/demo-painter.png", out_dir);
        snprintf(sd, sizeof sd, "%llu", (unsigned long long)seed);
        const char *text[] = {"Software", "duet " DUET_VERSION, "model", path, "sampler", "ddim", "steps", "50", "cfg", "3", "seed", sd};
        st = duet_png_write(out, grid, gw, gh, c->in_channels, text, 6);
        free(grid);
        if (st != DUET_OK) {
            cli_error("demo", "%s", duet_last_error());
            rc = cli_exit_code(st);
        } else {
            printf("\nOne picture of each class (%d pictures in %.1f s) -> %s\n", K, dt, out);
        }
    }
    free(k.frames);
    free(imgs);
    free(labels);
    duet_unet_free(u);
    return rc;
}

int cmd_demo(int argc, char **argv) {
    const char *prompt = "And God said";
    const char *out_dir = "out";
    int64_t seed = 1;
    cli_opt opts[] = {
        {"prompt", 'p', OPT_STR, &prompt, "storyteller prompt (default \"And God said\")", 0},
        {"out-dir", 0, OPT_STR, &out_dir, "where the picture goes (default out/)", 0},
        {"seed", 0, OPT_I64, &seed, "seed for both models (default 1)", 0},
    };
    const char *pos[1];
    int npos;
    int rc = cli_parse("demo", "[options]", argc, argv, opts, 3, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    printf("duet %s — a storyteller and a painter on one engine (%s kernels, %d threads)\n\n",
           DUET_VERSION, duet_kernel_isa(), duet_get_threads());
    printf("The storyteller predicts the next token, appends it, and repeats:\n\n");
    fflush(stdout);
    char seedbuf[32];
    snprintf(seedbuf, sizeof seedbuf, "%lld", (long long)seed);
    char *targv[] = {"text", (char *)prompt, "-n", "120", "--temperature", "0.8", "--top-p", "0.95",
                     "--seed", seedbuf, NULL};
    int trc = cmd_text(10, targv);
    printf("\n");
    int prc = demo_painter(out_dir, (uint64_t)seed);
    return trc ? trc : prc;
}
