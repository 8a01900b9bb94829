/*
 * cmd_data.c — `duet data kjv|fortunes|preview`: build the bundled training
 * texts from Debian packages, and look at an image dataset as a PNG grid.
 *
 *   duet data kjv --out data/kjv.txt          King James Bible (bible-kjv + bible-kjv-text)
 *   duet data fortunes --out data/fortunes.txt fortunes (fortunes, fortunes-min; no offensive ones)
 *   duet data preview fashion-mnist|DIR --out grid.png   first images as a grid
 *
 * The KJV text comes from running Debian's `bible -f` over the whole canon;
 * its layout (book headings, "chapter:verse text" one verse a line) is
 * documented at duet_text_kjv in duet.h.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KJV_DATA "/usr/lib/bible.data"
#define KJV_VERSES 31102
#define FORTUNES_DIR "/usr/share/games/fortunes"

/* Creates the folders above `path` (like mkdir -p of its dirname). */
static int make_parent_dirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return 0;
}

static int write_out(const char *cmd, const char *out, const char *data, size_t n) {
    if (make_parent_dirs(out) != 0) {
        cli_error(cmd, "cannot create the folder for '%s': %s", out, strerror(errno));
        return EXIT_IO;
    }
    duet_status s = duet_write_file_atomic(out, data, n);
    if (s) {
        cli_error(cmd, "%s", duet_last_error());
        return cli_exit_code(s);
    }
    return 0;
}

/* ---- kjv ---------------------------------------------------------------- */

static int data_kjv(const char *out, const char *bible) {
    const char *cmd = "data kjv";
    if (access(KJV_DATA, R_OK) != 0) {
        cli_error(cmd, "%s not found: install bible-kjv-text: sudo apt-get install bible-kjv-text "
                  "bible-kjv (or sh tools/deps.sh)", KJV_DATA);
        return EXIT_IO;
    }
    char line[4200];
    if (strlen(bible) > 4000 || strchr(bible, '\'')) {
        cli_error(cmd, "--bible: bad program path '%s'", bible);
        return EXIT_USAGE;
    }
    snprintf(line, sizeof line, "'%s' -f Genesis1:1-Revelation22:21 </dev/null", bible);
    FILE *p = popen(line, "r");
    if (!p) {
        cli_error(cmd, "cannot run '%s': %s", bible, strerror(errno));
        return EXIT_FAIL;
    }
    size_t cap = 8 << 20, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, p);
        if (len < cap) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int st = pclose(p);
    if (!buf) {
        cli_error(cmd, "out of memory reading the bible text");
        return EXIT_FAIL;
    }
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        free(buf);
        if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 127)
            cli_error(cmd, "the '%s' program was not found: install bible-kjv: sudo apt-get install "
                      "bible-kjv bible-kjv-text (or sh tools/deps.sh)", bible);
        else
            cli_error(cmd, "'%s -f ...' failed (status %d)", bible, st);
        return EXIT_FAIL;
    }
    char *text;
    size_t n;
    int64_t verses;
    duet_status s = duet_text_kjv(buf, len, &text, &n, &verses);
    free(buf);
    if (s) {
        cli_error(cmd, "%s", duet_last_error());
        return cli_exit_code(s);
    }
    if (verses != KJV_VERSES) {
        cli_error(cmd, "got %lld verses, the KJV has %d: is bible-kjv-text complete?",
                  (long long)verses, KJV_VERSES);
        duet_free(text);
        return EXIT_FORMAT;
    }
    int rc = write_out(cmd, out, text, n);
    if (!rc)
        printf("wrote %s: King James Bible, 66 books, %lld verses, %.2f MB\n", out,
               (long long)verses, (double)n / 1e6);
    duet_free(text);
    return rc;
}

/* ---- fortunes ----------------------------------------------------------- */

static int data_fortunes(const char *out, const char *dir) {
    const char *cmd = "data fortunes";
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cli_error(cmd, "%s not found: install fortunes: sudo apt-get install fortunes "
                  "fortunes-min (or sh tools/deps.sh)", dir);
        return EXIT_IO;
    }
    char *text;
    size_t n;
    int64_t entries, files;
    duet_status s = duet_text_fortunes(dir, &text, &n, &entries, &files);
    if (s) {
        cli_error(cmd, "%s", duet_last_error());
        return cli_exit_code(s);
    }
    int rc = write_out(cmd, out, text, n);
    if (!rc)
        printf("wrote %s: %lld fortunes from %lld files, %.2f MB\n", out, (long long)entries,
               (long long)files, (double)n / 1e6);
    duet_free(text);
    return rc;
}

/* ---- preview ------------------------------------------------------------ */

static int data_preview(const char *src, const char *out, const char *split_name, int count,
                        int64_t size, int channels, const char *cls) {
    const char *cmd = "data preview";
    duet_dataset d;
    duet_status s;
    int64_t skipped = 0;
    if (strcmp(src, "fashion-mnist") == 0) {
        int split = duet_split_from_name(split_name);
        if (split < 0) {
            cli_error(cmd, "--split wants train or test, got '%s'", split_name);
            return EXIT_USAGE;
        }
        s = duet_fashion_mnist_load(NULL, (duet_split)split, &d);
    } else {
        duet_image_folder_params p;
        duet_image_folder_params_default(&p);
        p.size = size;
        p.channels = channels;
        s = duet_image_folder_load(src, &p, &d, &skipped);
    }
    if (s) {
        cli_error(cmd, "%s", duet_last_error());
        return cli_exit_code(s);
    }
    int want = -1;
    if (cls) {
        want = duet_dataset_class_index(&d, cls);
        if (want < 0) {
            cli_error(cmd, "unknown class '%s' (%d classes%s%s)", cls, d.nclasses,
                      d.nclasses ? ", e.g. " : "", d.nclasses ? d.class_names[0] : "");
            duet_dataset_free(&d);
            return EXIT_USAGE;
        }
    }
    printf("%s: %lld images [%lld, %lld, %lld]", src, (long long)d.n, (long long)d.c,
           (long long)d.h, (long long)d.w);
    if (skipped) printf(", %lld non-image files skipped", (long long)skipped);
    printf("\n");
    for (int k = 0; k < d.nclasses; k++) {
        int64_t cnt = 0;
        for (int64_t i = 0; i < d.n; i++) cnt += d.labels[i] == k;
        printf("  class %d %-16s %lld\n", k, d.class_names[k], (long long)cnt);
    }
    /* the first `count` images (of the class, if asked) */
    int64_t *idx = malloc((size_t)count * sizeof *idx);
    int64_t m = 0;
    for (int64_t i = 0; idx && i < d.n && m < count; i++)
        if (want < 0 || (d.labels && d.labels[i] == want)) idx[m++] = i;
    int64_t cols = 1;
    while (cols * cols < m) cols++;
    int64_t rows = m ? (m + cols - 1) / cols : 1, gh, gw;
    duet_image_grid_size(rows, cols, d.h, d.w, 2, &gh, &gw);
    float *f = malloc((size_t)(m ? m : 1) * (size_t)(d.c * d.h * d.w) * sizeof(float));
    uint8_t *px = malloc((size_t)(gh * gw * d.c));
    int rc = 0;
    if (!idx || !f || !px) {
        cli_error(cmd, "out of memory");
        rc = EXIT_FAIL;
    } else if (m == 0) {
        cli_error(cmd, "no images to show");
        rc = EXIT_FAIL;
    } else {
        duet_dataset_batch_f32(&d, idx, m, f, NULL);
        duet_image_grid(px, f, m, d.c, d.h, d.w, rows, cols, 2, 255);
        const char *text[] = {"Software", "duet " DUET_VERSION, "Source", src};
        if (make_parent_dirs(out) != 0) {
            cli_error(cmd, "cannot create the folder for '%s': %s", out, strerror(errno));
            rc = EXIT_IO;
        } else if ((s = duet_png_write(out, px, gw, gh, (int)d.c, text, 2)) != DUET_OK) {
            cli_error(cmd, "%s", duet_last_error());
            rc = cli_exit_code(s);
        } else {
            printf("wrote %s: %lld images, %lldx%lld grid\n", out, (long long)m,
                   (long long)rows, (long long)cols);
        }
    }
    free(idx);
    free(f);
    free(px);
    duet_dataset_free(&d);
    return rc;
}

/* ---- entry -------------------------------------------------------------- */

int cmd_data(int argc, char **argv) {
    const char *out = NULL, *dir = FORTUNES_DIR, *bible = "bible", *split = "train", *cls = NULL;
    int count = 64, channels = 3;
    int64_t size = 32;
    cli_opt opts[] = {
        {"out", 'o', OPT_STR, &out, "output file (required)", 0},
        {"dir", 0, OPT_STR, &dir, "fortunes: the fortune folder (" FORTUNES_DIR ")", 0},
        {"bible", 0, OPT_STR, &bible, "kjv: the bible program (bible, from bible-kjv)", 0},
        {"split", 0, OPT_STR, &split, "preview: fashion-mnist split, train or test (train)", 0},
        {"count", 'n', OPT_INT, &count, "preview: images in the grid (64)", 0},
        {"size", 0, OPT_I64, &size, "preview: image folders are resized to SIZE x SIZE (32)", 0},
        {"channels", 0, OPT_INT, &channels, "preview: image folders as 1 (gray) or 3 (RGB) (3)", 0},
        {"class", 0, OPT_STR, &cls, "preview: only this class (name or index)", 0},
    };
    const int nopts = (int)(sizeof opts / sizeof *opts);
    const char *usage = "kjv|fortunes|preview [SOURCE] --out FILE\n\n"
                        "  kjv        King James Bible text, one verse a line, from bible-kjv\n"
                        "  fortunes   fortunes text, entries separated by blank lines\n"
                        "  preview    SOURCE (fashion-mnist or an image folder) as a PNG grid";
    const char *pos[2];
    int npos;
    int rc = cli_parse("data", usage, argc, argv, opts, nopts, pos, 2, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (npos < 1) {
        cli_error("data", "which data? kjv, fortunes or preview (see duet data --help)");
        return EXIT_USAGE;
    }
    if (!out) {
        cli_error("data", "--out FILE is required");
        return EXIT_USAGE;
    }
    const char *what = pos[0];
    if (strcmp(what, "preview") != 0 && npos > 1) {
        cli_error("data", "unexpected argument '%s'", pos[1]);
        return EXIT_USAGE;
    }
    if (strcmp(what, "kjv") == 0) return data_kjv(out, bible);
    if (strcmp(what, "fortunes") == 0) return data_fortunes(out, dir);
    if (strcmp(what, "preview") == 0) {
        if (npos < 2) {
            cli_error("data", "preview needs a SOURCE: fashion-mnist or an image folder");
            return EXIT_USAGE;
        }
        if (count < 1 || count > 4096) {
            cli_error("data", "--count wants 1..4096, got %d", count);
            return EXIT_USAGE;
        }
        if (channels != 1 && channels != 3) {
            cli_error("data", "--channels wants 1 or 3, got %d", channels);
            return EXIT_USAGE;
        }
        return data_preview(pos[1], out, split, count, size, channels, cls);
    }
    cli_error("data", "unknown data '%s': kjv, fortunes or preview", what);
    return EXIT_USAGE;
}
