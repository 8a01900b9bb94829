/*
 * test_cli_image.c — the painter's commands end to end, by running the duet
 * binary ($BUILD/duet, default build/duet) on tiny data made here: a
 * Fashion-MNIST-layout folder of 28x28 IDX files (trained at --size 8) and
 * folders of PNGs. Checks what the user sees and gets: exit codes, files,
 * messages, PNG sizes and tEXt, exact resume after --stop-at, after SIGKILL
 * and after Ctrl-C, refusals that write nothing, and the eval report.
 */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static char duet_bin[512], tmp[256];
static char cmdline[8192];

/* A tiny UNet at 8x8 so every run takes a fraction of a second. */
#define TINY "--size 8 --channels 8 --mults 1,2 --res-blocks 1 --attn 1 --heads 2 --groups 4 " \
             "--batch 8 --sample-every 4"

/* Runs "duet <args>" with stdout and stderr captured in tmp/out.txt and
 * tmp/err.txt; returns the exit status (128 + signal when killed). */
static int run(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static int run(const char *fmt, ...) {
    char args[6000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmdline, sizeof cmdline, "%s %s >%s/out.txt 2>%s/err.txt", duet_bin, args, tmp, tmp);
    int st = system(cmdline);
    if (st == -1) return -1;
    if (WIFEXITED(st)) {
        int rc = WEXITSTATUS(st);
        return rc; /* a shell reports a killed child as 128 + signal */
    }
    return 128 + WTERMSIG(st);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) len = 0;
    if (b) b[len] = 0;
    fclose(f);
    if (n) *n = (size_t)len;
    return b;
}

static int file_contains(const char *name, const char *needle) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    size_t n;
    char *b = slurp(p, &n);
    int found = 0;
    for (size_t i = 0; b && !found && i + strlen(needle) <= n; i++)
        found = memcmp(b + i, needle, strlen(needle)) == 0;
    free(b);
    return found;
}
#define OUT_HAS(s) file_contains("out.txt", s)
#define ERR_HAS(s) file_contains("err.txt", s)

/* Does tmp/<rel> exist? */
static int exists_(const char *rel) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    return access(p, F_OK) == 0;
}

/* Width and height from a PNG's IHDR; 0 when not a PNG. */
static int png_size(const char *path, int *w, int *h) {
    size_t n;
    unsigned char *b = (unsigned char *)slurp(path, &n);
    int ok = b && n > 24 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(b + 12, "IHDR", 4) == 0;
    if (ok) {
        *w = (b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19];
        *h = (b[20] << 24) | (b[21] << 16) | (b[22] << 8) | b[23];
    }
    free(b);
    return ok;
}

/* The loss column (2nd) of a training CSV, as text, one loss per line. */
static char *csv_losses(const char *path) {
    char *b = slurp(path, NULL);
    if (!b) return NULL;
    char *out = malloc(strlen(b) + 1), *o = out;
    for (char *line = strchr(b, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        char *c1 = strchr(line + 1, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (!c2) break;
        memcpy(o, line + 1, (size_t)(c2 - line - 1)); /* "step,loss" */
        o += c2 - line - 1;
        *o++ = '\n';
    }
    *o = 0;
    free(b);
    return out;
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    return same;
}

/* ==== test data =========================================================== */

static void gz_idx(const char *path, const unsigned char *data, int ndim, const int *dims, int magic) {
    gzFile f = gzopen(path, "wb");
    unsigned char hdr[4 + 4 * 3];
    hdr[0] = 0, hdr[1] = 0, hdr[2] = 8, hdr[3] = (unsigned char)ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        hdr[4 + 4 * i] = (unsigned char)(dims[i] >> 24), hdr[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        hdr[6 + 4 * i] = (unsigned char)(dims[i] >> 8), hdr[7 + 4 * i] = (unsigned char)dims[i];
        n *= (size_t)dims[i];
    }
    (void)magic;
    gzwrite(f, hdr, (unsigned)(4 + 4 * ndim));
    gzwrite(f, data, (unsigned)n);
    gzclose(f);
}

/* Fashion-MNIST layout, 28x28, ten classes: class k is a bright 7x7 block in
 * cell k of a 4x4 layout over noise. */
static void make_idx_dir(const char *dir, int ntrain, int ntest, unsigned seed) {
    mkdir(dir, 0777);
    const char *names[2][2] = {{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"},
                               {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}};
    duet_rng r;
    duet_rng_init(&r, seed);
    for (int sp = 0; sp < 2; sp++) {
        int n = sp ? ntest : ntrain;
        unsigned char *img = malloc((size_t)n * 784), *lab = malloc((size_t)n);
        for (int i = 0; i < n; i++) {
            int k = i % 10, cy = k / 4, cx = k % 4;
            lab[i] = (unsigned char)k;
            for (int y = 0; y < 28; y++)
                for (int x = 0; x < 28; x++) {
                    int on = y / 7 == cy && x / 7 == cx;
                    img[i * 784 + y * 28 + x] = (unsigned char)((on ? 190 : 20) + 50 * duet_rng_next(&r));
                }
        }
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, names[sp][0]);
        gz_idx(p, img, 3, (int[]){n, 28, 28}, 0x803);
        snprintf(p, sizeof p, "%s/%s", dir, names[sp][1]);
        gz_idx(p, lab, 1, (int[]){n}, 0x801);
        free(img), free(lab);
    }
}

/* A PNG of w x h with channels c, a gradient that depends on k. */
static void make_png(const char *path, int w, int h, int c, int k) {
    unsigned char *px = malloc((size_t)(w * h * c));
    for (int i = 0; i < w * h * c; i++) px[i] = (unsigned char)((i * (k + 3) * 7) & 255);
    T_CHECK(duet_png_write(path, px, w, h, c, NULL, 0) == DUET_OK, "png_write %s: %s", path, duet_last_error());
    free(px);
}

/* ==== tests =============================================================== */

static void test_train_basic(const char *data) {
    int rc = run("train image --data %s " TINY " --steps 8 --out %s/a/p.safetensors", data, tmp);
    T_CHECK(rc == 0, "train: exit %d (%s)", rc, cmdline);
    T_CHECK(exists_("a/p.safetensors") && exists_("a/p.safetensors.optim.safetensors") &&
                exists_("a/p.safetensors.csv"),
            "train writes the painter, its training state and the CSV");
    T_CHECK(exists_("a/p.safetensors.samples/step-000004.png") &&
                exists_("a/p.safetensors.samples/step-000008.png"),
            "sample grids at step 4 (--sample-every) and at the end");
    char p[512];
    int w = 0, h = 0;
    snprintf(p, sizeof p, "%s/a/p.safetensors.samples/step-000008.png", tmp);
    /* ten rows (classes) of eight 8x8 samples with 2-pixel borders */
    T_CHECK(png_size(p, &w, &h) && w == 8 * 8 + 9 * 2 && h == 10 * 8 + 11 * 2, "grid %dx%d", w, h);
    T_CHECK(OUT_HAS("trained 8 steps") && OUT_HAS("images/s") && OUT_HAS("final loss"),
            "a summing-up last line");
    snprintf(p, sizeof p, "%s/a/p.safetensors.csv", tmp);
    char *csv = slurp(p, NULL);
    int lines = 0;
    for (char *c = csv; c && *c; c++) lines += *c == '\n';
    T_CHECK(csv && strncmp(csv, "step,loss,lr,grad_norm,images_per_s,elapsed_s\n", 46) == 0 && lines == 9,
            "CSV header + 8 rows (%d lines)", lines);
    free(csv);
    /* the painter carries its class names; another kind of file refuses to load */
    snprintf(p, sizeof p, "%s/a/p.safetensors", tmp);
    duet_st *st = duet_st_open(p);
    const char *names = st ? duet_st_meta(st, "duet.class_names") : NULL;
    T_CHECK(names && strncmp(names, "t-shirt,trouser,pullover", 24) == 0, "class names: %s", names ? names : "(none)");
    if (st) duet_st_close(st);
}

/* --stop-at N then --resume == one uninterrupted run: losses and the painter, bit for bit */
static void test_resume_stop_at(const char *data) {
    int rc = run("train image --data %s " TINY " --steps 8 --stop-at 4 --out %s/b/p.safetensors", data, tmp);
    T_CHECK(rc == 0 && OUT_HAS("trained 4 steps"), "--stop-at 4: exit %d", rc);
    rc = run("train image --resume --out %s/b/p.safetensors", tmp);
    T_CHECK(rc == 0 && OUT_HAS("trained 4 steps (4..8)"), "--resume: exit %d", rc);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/a/p.safetensors.csv", tmp);
    snprintf(b, sizeof b, "%s/b/p.safetensors.csv", tmp);
    char *la = csv_losses(a), *lb = csv_losses(b);
    T_CHECK(la && lb && strlen(la) > 20 && strcmp(la, lb) == 0, "losses equal after resume:\n%s---\n%s",
            la ? la : "", lb ? lb : "");
    free(la), free(lb);
    snprintf(a, sizeof a, "%s/a/p.safetensors", tmp);
    snprintf(b, sizeof b, "%s/b/p.safetensors", tmp);
    T_CHECK(same_file(a, b), "the resumed painter equals the uninterrupted one, byte for byte");
    rc = run("train image --resume --out %s/b/p.safetensors", tmp);
    T_CHECK(rc == 0 && ERR_HAS("already trained 8 of 8"), "resuming a finished run says so (%d)", rc);
}

/* SIGKILL right after step 5 with checkpoints every 3: resume from 3 is exact */
static void test_resume_kill9(const char *data) {
    setenv("DUET_TRAIN_KILL_AT", "5", 1);
    int rc = run("train image --data %s " TINY " --steps 8 --save-every 3 --out %s/c/p.safetensors", data, tmp);
    unsetenv("DUET_TRAIN_KILL_AT");
    T_CHECK(rc == 128 + SIGKILL, "the self-kill hook kills the run (exit %d)", rc);
    rc = run("train image --resume --out %s/c/p.safetensors", tmp);
    T_CHECK(rc == 0 && OUT_HAS("trained 5 steps (3..8)"), "resume after kill -9 from step 3: exit %d", rc);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/a/p.safetensors.csv", tmp);
    snprintf(b, sizeof b, "%s/c/p.safetensors.csv", tmp);
    char *la = csv_losses(a), *lb = csv_losses(b);
    T_CHECK(la && lb && strcmp(la, lb) == 0, "losses equal after kill -9 and resume (CSV rows past the "
            "checkpoint dropped):\n%s---\n%s", la ? la : "", lb ? lb : "");
    free(la), free(lb);
    snprintf(a, sizeof a, "%s/a/p.safetensors", tmp);
    snprintf(b, sizeof b, "%s/c/p.safetensors", tmp);
    T_CHECK(same_file(a, b), "painter after kill -9 + resume equals the uninterrupted one");
}

/* Ctrl-C: a checkpoint, exit 130; --resume continues exactly */
static void test_sigint(const char *data) {
    char out[300], csv[512];
    snprintf(out, sizeof out, "%s/d/p.safetensors", tmp);
    snprintf(csv, sizeof csv, "%s.csv", out);
    pid_t pid = fork();
    if (pid == 0) {
        char errp[512];
        snprintf(errp, sizeof errp, "%s/sigint.err", tmp);
        if (!freopen(errp, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(99);
        execl(duet_bin, duet_bin, "train", "image", "--data", data, "--size", "8", "--channels", "8",
              "--mults", "1,2", "--res-blocks", "1", "--attn", "1", "--heads", "2", "--groups", "4",
              "--batch", "8", "--sample-every", "0", "--save-every", "0", "--steps", "100000", "--out",
              out, (char *)NULL);
        _exit(98);
    }
    /* wait for a few rows in the CSV, then Ctrl-C */
    int rows = 0;
    for (int tries = 0; tries < 600 && rows < 3; tries++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        char *b = slurp(csv, NULL);
        rows = 0;
        for (char *c = b; c && *c; c++) rows += *c == '\n';
        rows -= 1;
        free(b);
    }
    kill(pid, SIGINT);
    int st = 0;
    waitpid(pid, &st, 0);
    T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 130, "Ctrl-C exits 130 (status %d)", st);
    duet_st *s = duet_st_open(out);
    const char *steps = s ? duet_st_meta(s, "duet.trained_steps") : NULL;
    long k = steps ? strtol(steps, NULL, 10) : 0;
    T_CHECK(k >= 3, "a checkpoint was written at Ctrl-C (step %ld)", k);
    if (s) duet_st_close(s);
    if (k < 3) return;
    /* continue to k+2, and compare with a fresh run stopped at k+2 */
    int rc = run("train image --resume --stop-at %ld --out %s", k + 2, out);
    T_CHECK(rc == 0, "resume after Ctrl-C: exit %d", rc);
    rc = run("train image --data %s " TINY " --sample-every 0 --save-every 0 --steps 100000 --stop-at %ld "
             "--out %s/e/p.safetensors", data, k + 2, tmp);
    T_CHECK(rc == 0, "reference run: exit %d", rc);
    char ref[512];
    snprintf(ref, sizeof ref, "%s/e/p.safetensors.csv", tmp);
    char *la = csv_losses(csv), *lb = csv_losses(ref);
    T_CHECK(la && lb && strcmp(la, lb) == 0, "losses equal after Ctrl-C and resume");
    free(la), free(lb);
}

static void test_train_errors(const char *data) {
    int rc = run("train image --data %s --bogus 1 --out %s/x.safetensors", data, tmp);
    T_CHECK(rc == 2 && ERR_HAS("unknown option '--bogus'"), "unknown flag: exit %d", rc);
    rc = run("train image --data %s --steps 0 --out %s/x.safetensors", data, tmp);
    T_CHECK(rc == 2 && ERR_HAS("--steps"), "--steps 0: exit %d", rc);
    rc = run("train image --data %s --steps -3 --out %s/x.safetensors", data, tmp);
    T_CHECK(rc == 2, "--steps -3: exit %d", rc);
    rc = run("train image --data %s --steps 2", data);
    T_CHECK(rc == 2 && ERR_HAS("--out"), "no --out: exit %d", rc);
    rc = run("train image --data %s/nope --steps 2 --out %s/x.safetensors", tmp, tmp);
    T_CHECK(rc == 3 && ERR_HAS("no such folder"), "missing data folder: exit %d", rc);
    rc = run("train image --data %s --mults 1,x --out %s/x.safetensors", data, tmp);
    T_CHECK(rc == 2 && ERR_HAS("--mults"), "bad --mults: exit %d", rc);
    rc = run("train image --data %s --size 8 --channels 12 --groups 8 --steps 1 --out %s/x.safetensors", data, tmp);
    T_CHECK(rc == 2 && ERR_HAS("groups"), "channels not a multiple of groups: exit %d", rc);
    rc = run("train image --data %s --preset huge --out %s/x.safetensors", data, tmp);
    T_CHECK(rc == 2 && ERR_HAS("--preset"), "unknown preset: exit %d", rc);
    T_CHECK(!exists_("x.safetensors") && !exists_("x.safetensors.csv"),
            "refused runs write nothing");

    /* a time-bounded run stops by itself, saves, and needs a bound to go on */
    rc = run("train image --data %s " TINY " --minutes 0.004 --out %s/m/p.safetensors", data, tmp);
    T_CHECK(rc == 0 && OUT_HAS("trained") && exists_("m/p.safetensors.optim.safetensors"),
            "--minutes: stops and saves (exit %d)", rc);
    rc = run("train image --resume --out %s/m/p.safetensors", tmp);
    T_CHECK(rc == 2 && ERR_HAS("--minutes"), "resuming a --minutes run without a bound: exit %d", rc);

    /* v prediction on the linear schedule trains, and its painter samples */
    rc = run("train image --data %s " TINY " --prediction v --schedule linear --steps 2 --out %s/v/p.safetensors",
             data, tmp);
    T_CHECK(rc == 0, "--prediction v --schedule linear: exit %d", rc);
    rc = run("image --model %s/v/p.safetensors dress -n 2 --steps 3 --out %s/v.png", tmp, tmp);
    T_CHECK(rc == 0 && exists_("v.png"), "sampling a v-prediction painter: exit %d", rc);
    rc = run("train image --data %s --prediction x --out %s/x.safetensors", data, tmp);
    T_CHECK(rc == 2, "--prediction x: exit %d", rc);

    /* a corrupt IDX: truncated gzip stream */
    char bad[512], p[600];
    snprintf(bad, sizeof bad, "%s/badidx", tmp);
    make_idx_dir(bad, 20, 10, 3);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", bad);
    size_t n;
    char *b = slurp(p, &n);
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, n / 2, f);
    fclose(f);
    free(b);
    rc = run("train image --data %s --size 8 --steps 2 --out %s/y.safetensors", bad, tmp);
    T_CHECK(rc == 4 && ERR_HAS("train-images-idx3-ubyte.gz"), "corrupt IDX: exit %d, names the file", rc);
    T_CHECK(!exists_("y.safetensors") && !exists_("y.safetensors.csv"), "nothing written");

    /* an empty folder; a folder with a broken PNG */
    snprintf(p, sizeof p, "%s/empty", tmp);
    mkdir(p, 0777);
    rc = run("train image --data %s/empty --steps 2 --out %s/y.safetensors", tmp, tmp);
    T_CHECK(rc == 4, "empty folder: exit %d", rc);
    snprintf(p, sizeof p, "%s/brokenpng", tmp);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/brokenpng/a.png", tmp);
    make_png(p, 8, 8, 1, 0);
    snprintf(p, sizeof p, "%s/brokenpng/b.png", tmp);
    f = fopen(p, "wb");
    fwrite("\x89PNG\r\n\x1a\nbroken", 1, 14, f);
    fclose(f);
    rc = run("train image --data %s/brokenpng --steps 2 --out %s/y.safetensors", tmp, tmp);
    T_CHECK(rc == 4 && ERR_HAS("b.png"), "broken PNG: exit %d, names the file", rc);
    T_CHECK(!exists_("y.safetensors"), "nothing written");

    /* --resume: nothing there; a file of another kind; other data */
    rc = run("train image --resume --out %s/none.safetensors", tmp);
    T_CHECK(rc == 3 && ERR_HAS("--resume needs"), "--resume without files: exit %d", rc);
    snprintf(p, sizeof p, "%s/judge.safetensors", tmp);
    duet_classifier_config cc = {1, 8, 3, 4, 8};
    duet_classifier *cl = duet_classifier_new(&cc, 0);
    duet_classifier_save(cl, p, NULL);
    duet_classifier_free(cl);
    snprintf(p, sizeof p, "%s/judge.safetensors.optim.safetensors", tmp);
    f = fopen(p, "wb");
    fclose(f);
    rc = run("train image --resume --out %s/judge.safetensors", tmp);
    T_CHECK(rc == 4 && ERR_HAS("not a duet painter"), "--resume on a classifier file: exit %d", rc);
    rc = run("train image --resume --data %s --steps 12 --out %s/a/p.safetensors", bad, tmp);
    T_CHECK(rc != 0, "--resume on other data is refused (exit %d)", rc);
    char other[512];
    snprintf(other, sizeof other, "%s/other", tmp);
    make_idx_dir(other, 30, 10, 77);
    rc = run("train image --resume --data %s --steps 12 --out %s/a/p.safetensors", other, tmp);
    T_CHECK(rc == 2 && ERR_HAS("not the data"), "--resume on other data: exit %d", rc);
}

static void test_folder(void) {
    /* two classes of PNGs of different sizes and channel counts */
    char p[600];
    snprintf(p, sizeof p, "%s/pics", tmp);
    mkdir(p, 0777);
    const char *cls[2] = {"cats", "dogs"};
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/pics/%s", tmp, cls[k]);
        mkdir(p, 0777);
        for (int i = 0; i < 4; i++) {
            snprintf(p, sizeof p, "%s/pics/%s/%d.png", tmp, cls[k], i);
            make_png(p, 10 + 3 * i, 12 + i, i % 2 ? 3 : 1, k);
        }
    }
    int rc = run("train image --data %s/pics --size 8 --image-channels 3 --channels 8 --mults 1,2 "
                 "--res-blocks 1 --attn none --groups 4 --batch 4 --steps 3 --out %s/f/p.safetensors", tmp, tmp);
    T_CHECK(rc == 0, "train on a PNG folder: exit %d", rc);
    T_CHECK(ERR_HAS("resized to 8x8") && ERR_HAS("2 classes"), "says the images are resized");
    int w, h;
    snprintf(p, sizeof p, "%s/f/p.safetensors.samples/step-000003.png", tmp);
    T_CHECK(png_size(p, &w, &h) && h == 2 * 8 + 3 * 2, "grid: a row per class (%dx%d)", w, h);
    rc = run("image --model %s/f/p.safetensors dogs -n 2 --steps 3 --out %s/dogs.png", tmp, tmp);
    T_CHECK(rc == 0, "sampling a folder-trained painter by its folder name: exit %d", rc);

    /* unconditional: images directly in the folder */
    snprintf(p, sizeof p, "%s/flat", tmp);
    mkdir(p, 0777);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/flat/%d.png", tmp, i);
        make_png(p, 8, 8, 1, i);
    }
    rc = run("train image --data %s/flat --size 8 --image-channels 1 --channels 8 --mults 1,2 "
             "--res-blocks 1 --attn none --groups 4 --batch 4 --steps 2 --out %s/g/p.safetensors", tmp, tmp);
    T_CHECK(rc == 0 && ERR_HAS("unconditional"), "unconditional training: exit %d", rc);
    rc = run("image --model %s/g/p.safetensors -n 3 --steps 3 --out %s/u.png", tmp, tmp);
    T_CHECK(rc == 0, "unconditional sampling: exit %d", rc);
    rc = run("image --model %s/g/p.safetensors sneaker --steps 3 --out %s/u.png", tmp, tmp);
    T_CHECK(rc == 2 && ERR_HAS("unconditional"), "a prompt for an unconditional painter: exit %d", rc);
}

static void test_image(void) {
    char model[512], p[600];
    snprintf(model, sizeof model, "%s/a/p.safetensors", tmp);
    int rc = run("image --model %s --prompt all -n 2 --steps 5 --out %s/all.png", model, tmp);
    int w = 0, h = 0;
    snprintf(p, sizeof p, "%s/all.png", tmp);
    T_CHECK(rc == 0 && png_size(p, &w, &h) && w == 2 * 8 + 3 * 2 && h == 10 * 8 + 11 * 2,
            "--prompt all: one row per class (exit %d, %dx%d)", rc, w, h);
    T_CHECK(ERR_HAS("images/s"), "reports images/s on stderr");
    /* tEXt: keyword NUL text */
    char *b;
    size_t n;
    b = slurp(p, &n);
    int has_sampler = 0, has_steps = 0, has_version = 0, has_model = 0, has_cfg = 0, has_seed = 0;
    for (size_t i = 0; b && i + 32 < n; i++) {
        has_sampler |= memcmp(b + i, "sampler\0ddim", 12) == 0;
        has_steps |= memcmp(b + i, "steps\0" "5", 7) == 0;
        has_version |= memcmp(b + i, "Software\0duet " DUET_VERSION, 14 + strlen(DUET_VERSION)) == 0;
        has_model |= memcmp(b + i, "model\0", 6) == 0;
        has_cfg |= memcmp(b + i, "cfg\0" "3", 5) == 0;
        has_seed |= memcmp(b + i, "seed\0" "0", 6) == 0;
    }
    free(b);
    T_CHECK(has_sampler && has_steps && has_version && has_model && has_cfg && has_seed,
            "PNG tEXt carries the parameters (%d %d %d %d %d %d)", has_sampler, has_steps, has_version,
            has_model, has_cfg, has_seed);

    /* positional prompt, matched loosely; same seed -> same bytes; other seed -> other */
    rc = run("image --model %s Ankle-Boot -n 3 --steps 5 --out %s/s1.png", model, tmp);
    T_CHECK(rc == 0, "positional prompt 'Ankle-Boot': exit %d", rc);
    rc = run("image --model %s --prompt \"ankle boot\" -n 3 --steps 5 --out %s/s2.png", model, tmp);
    T_CHECK(rc == 0, "--prompt 'ankle boot': exit %d", rc);
    run("image --model %s --prompt 9 -n 3 --steps 5 --seed 1 --out %s/s3.png", model, tmp);
    char a[600], c[600];
    snprintf(a, sizeof a, "%s/s1.png", tmp);
    snprintf(c, sizeof c, "%s/s2.png", tmp);
    /* the tEXt prompt differs; compare the pixels through the image data chunk */
    size_t na, nc;
    char *xa = slurp(a, &na), *xc = slurp(c, &nc);
    const char *ia = xa ? memmem(xa, na, "IDAT", 4) : NULL, *ic = xc ? memmem(xc, nc, "IDAT", 4) : NULL;
    T_CHECK(ia && ic && na - (size_t)(ia - xa) == nc - (size_t)(ic - xc) &&
                memcmp(ia, ic, na - (size_t)(ia - xa)) == 0,
            "same class and seed -> the same pixels");
    free(xa), free(xc);
    snprintf(c, sizeof c, "%s/s3.png", tmp);
    xa = slurp(a, &na), xc = slurp(c, &nc);
    ia = xa ? memmem(xa, na, "IDAT", 4) : NULL, ic = xc ? memmem(xc, nc, "IDAT", 4) : NULL;
    T_CHECK(ia && ic && (na - (size_t)(ia - xa) != nc - (size_t)(ic - xc) ||
                         memcmp(ia, ic, na - (size_t)(ia - xa)) != 0),
            "another seed -> other pixels");
    free(xa), free(xc);

    /* unknown prompt: the list of known names */
    rc = run("image --model %s --prompt boots --steps 5 --out %s/x.png", model, tmp);
    T_CHECK(rc == 2 && ERR_HAS("unknown prompt 'boots'") && ERR_HAS("ankle boot") && ERR_HAS("t-shirt"),
            "unknown prompt lists the classes (exit %d)", rc);
    T_CHECK(!exists_("x.png"), "no picture for an unknown prompt");

    /* --out-dir: <class-index>_<n>.png */
    rc = run("image --model %s sneaker -n 2 --steps 4 --out-dir %s/dir", model, tmp);
    T_CHECK(rc == 0 && exists_("dir/7_0.png") && exists_("dir/7_1.png"),
            "--out-dir writes 7_0.png and 7_1.png (exit %d)", rc);
    snprintf(p, sizeof p, "%s/dir/7_1.png", tmp);
    T_CHECK(png_size(p, &w, &h) && w == 8 && h == 8, "one 8x8 picture per file (%dx%d)", w, h);
    T_CHECK(file_contains("dir/7_1.png", "class"), "per-sample file has tEXt");

    /* trajectory: PNG (2 rows) + GIF (every step) */
    rc = run("image --model %s bag -n 2 --steps 12 --trajectory %s/traj.png --out %s/bag.png", model, tmp, tmp);
    snprintf(p, sizeof p, "%s/traj.png", tmp);
    T_CHECK(rc == 0 && png_size(p, &w, &h), "--trajectory writes traj.png (exit %d)", rc);
    /* 8x8 upscaled x8 to 64: 10 columns, 2 rows, border 2 */
    T_CHECK(w == 10 * 64 + 11 * 2 && h == 2 * 64 + 3 * 2, "trajectory strip %dx%d", w, h);
    snprintf(p, sizeof p, "%s/traj.gif", tmp);
    b = slurp(p, &n);
    int frames = 0;
    for (size_t i = 0; b && i + 1 < n; i++) frames += (unsigned char)b[i] == 0x21 && (unsigned char)b[i + 1] == 0xF9;
    T_CHECK(b && n > 6 && memcmp(b, "GIF89a", 6) == 0 && frames >= 12, "traj.gif with a frame per step (%d)", frames);
    free(b);

    /* every sampler, and guidance off */
    const char *samplers[] = {"ddpm", "euler", "euler-a", "dpmpp-2m"};
    for (int i = 0; i < 4; i++) {
        rc = run("image --model %s coat -n 2 --steps 3 --sampler %s --out %s/smp.png", model, samplers[i], tmp);
        T_CHECK(rc == 0, "--sampler %s: exit %d", samplers[i], rc);
    }
    rc = run("image --model %s coat -n 70 --steps 2 --cfg 1 --eta 1 --out %s/many.png", model, tmp);
    T_CHECK(rc == 0, "70 samples (two batches), cfg 1, eta 1: exit %d", rc);

    /* refusals */
    rc = run("image --model %s/nothing.safetensors coat", tmp);
    T_CHECK(rc == 3 && ERR_HAS("cannot read model"), "missing model: exit %d", rc);
    rc = run("image --model %s/judge.safetensors coat", tmp);
    T_CHECK(rc == 4 && ERR_HAS("not a duet painter"), "a classifier is not a painter: exit %d", rc);
    rc = run("image --model %s coat --sampler plms", model);
    T_CHECK(rc == 2, "unknown sampler: exit %d", rc);
    rc = run("image --model %s coat --steps 0", model);
    T_CHECK(rc == 2, "--steps 0: exit %d", rc);
    rc = run("image --model %s coat --out a.png --out-dir d", model);
    T_CHECK(rc == 2, "--out with --out-dir: exit %d", rc);
    rc = run("image --model %s coat --prompt bag", model);
    T_CHECK(rc == 2, "two prompts: exit %d", rc);
}

static void test_eval(const char *data) {
    char judge[512];
    snprintf(judge, sizeof judge, "%s/j/judge.safetensors", tmp);
    int rc = run("eval image --model %s/a/p.safetensors --data %s --classifier %s --classifier-steps 6 "
                 "--n-per-class 2 --steps 5", tmp, data, judge);
    T_CHECK(rc == 0, "eval image: exit %d", rc);
    T_CHECK(ERR_HAS("training the judge") && access(judge, F_OK) == 0, "the missing judge is trained and saved");
    T_CHECK(OUT_HAS("conditional accuracy") && OUT_HAS("per class: t-shirt") && OUT_HAS("frechet distance") &&
                OUT_HAS("the floor") && OUT_HAS("ratio") && OUT_HAS("right on the 20 test images"),
            "the report");
    rc = run("eval image --model %s/a/p.safetensors --data %s --classifier %s --n-per-class 1 --steps 3",
             tmp, data, judge);
    T_CHECK(rc == 0 && !ERR_HAS("training the judge"), "a second run loads the judge (exit %d)", rc);
    rc = run("eval image --model %s/g/p.safetensors --data %s --classifier %s", tmp, data, judge);
    T_CHECK(rc == 2 && ERR_HAS("class-conditional"), "an unconditional painter: exit %d", rc);
    rc = run("eval image --model %s/a/p.safetensors --data %s --classifier %s/a/p.safetensors", tmp, data, tmp);
    T_CHECK(rc == 4 && ERR_HAS("not a duet classifier"), "a painter as the judge: exit %d", rc);
    rc = run("eval text");
    T_CHECK(rc == 2, "eval of an unknown kind: exit %d", rc);
}

int main(void) {
    duet_init();
    const char *build = getenv("BUILD");
    if (build && strlen(build) > 200) build = NULL;
    snprintf(duet_bin, sizeof duet_bin, "%s/duet", build && *build ? build : "build");
    if (access(duet_bin, X_OK) != 0) {
        T_CHECK(0, "%s not found: run from the repository root after `make`", duet_bin);
        return t_done();
    }
    char cwd[256];
    if (duet_bin[0] != '/' && getcwd(cwd, sizeof cwd)) { /* the tests cd nowhere, but be safe */
        snprintf(duet_bin, sizeof duet_bin, "%s/%s/duet", cwd, build && *build ? build : "build");
    }
    snprintf(tmp, sizeof tmp, "/tmp/duet_cli_image_XXXXXX");
    if (!mkdtemp(tmp)) {
        T_CHECK(0, "mkdtemp: %s", strerror(errno));
        return t_done();
    }
    setenv("DUET_THREADS", "1", 1); /* two busy cores: no oversubscription */
    char data[512];
    snprintf(data, sizeof data, "%s/fm", tmp);
    make_idx_dir(data, 40, 20, 1);

    test_train_basic(data);
    test_resume_stop_at(data);
    test_resume_kill9(data);
    test_sigint(data);
    test_train_errors(data);
    test_folder();
    test_image();
    test_eval(data);

    if (t_failed == 0) {
        snprintf(cmdline, sizeof cmdline, "rm -rf %s", tmp);
        if (system(cmdline) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    } else {
        fprintf(stderr, "test files kept in %s\n", tmp);
    }
    return t_done();
}
