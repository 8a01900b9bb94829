/*
 * test_data.c — the data layer: IDX reading (good and every malformed
 * variant, fixtures written by gen_data.py with gzip + struct), Fashion-MNIST
 * against numpy's reading of Debian's files, the resize against a numpy
 * implementation checked against PyTorch, image folders against PIL + numpy,
 * the PNG and GIF writers (read back with stb_image, walked chunk by chunk /
 * block by block from the specs here, and compared with golden files that
 * gen_data.py verified with its own zlib/struct PNG reader and PIL), the
 * f32 -> u8 rule and grids, corpora, the KJV and fortunes texts.
 *
 * `test_data --write-golden DIR` writes the PNG/GIF outputs and exits (used by
 * gen_data.py).
 *
 * Real Debian data (dataset-fashion-mnist, bible-kjv, fortunes) must be
 * installed: a missing package fails the test and says to run tools/deps.sh.
 */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[256];
static const char *fixdir(void) {
    const char *d = getenv("DUET_FIXTURES");
    return d ? d : "tests/fixtures";
}

static void fpath(char *buf, size_t n, const char *rel) { snprintf(buf, n, "%s/%s", fixdir(), rel); }

/* Whole file into malloc'd memory (NULL if unreadable). */
static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)len + 1);
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return p;
}

/* ======================================================================== */
/* IDX                                                                       */
/* ======================================================================== */

static void test_idx_good(void) {
    t_fix *fx = t_fix_load("data_idx.bin");
    if (!fx) return;
    int64_t ni, nl;
    int32_t *want = t_fix_i32(fx, "images", &ni);
    int32_t *wl = t_fix_i32(fx, "labels", &nl);
    const char *names[2] = {"data_idx/images.gz", "data_idx/images.idx"};
    for (int k = 0; k < 2; k++) {
        char p[512];
        fpath(p, sizeof p, names[k]);
        duet_idx x;
        duet_status s = duet_idx_read(p, &x);
        T_CHECK(s == DUET_OK, "%s reads: %s", names[k], duet_last_error());
        if (s) continue;
        T_CHECK(x.ndim == 3 && x.dims[0] == 5 && x.dims[1] == 4 && x.dims[2] == 3 && x.size == ni,
                "%s dims [5,4,3]", names[k]);
        int same = 1;
        for (int64_t i = 0; i < ni; i++) same &= x.data[i] == want[i];
        T_CHECK(same, "%s pixels match the Python writer", names[k]);
        duet_idx_free(&x);
    }
    char ip[512], lp[512];
    fpath(ip, sizeof ip, "data_idx/images.gz");
    fpath(lp, sizeof lp, "data_idx/labels.idx");
    duet_dataset d;
    duet_status s = duet_dataset_load_idx(ip, lp, &d);
    T_CHECK(s == DUET_OK, "dataset from idx: %s", duet_last_error());
    if (s) {
        t_fix_free(fx);
        return;
    }
    T_CHECK(d.n == 5 && d.c == 1 && d.h == 4 && d.w == 3, "dataset shape [5,1,4,3]");
    int same = 1;
    for (int64_t i = 0; i < nl; i++) same &= d.labels[i] == wl[i];
    T_CHECK(same, "labels match");
    T_CHECK(d.nclasses == 10 && strcmp(d.class_names[9], "9") == 0 && strcmp(d.class_names[0], "0") == 0,
            "nclasses = max label + 1 with numeric names");
    /* batch: x / 127.5 - 1 of images 2 and 0 */
    float got[2 * 12];
    int32_t lab[2];
    s = duet_dataset_batch_f32(&d, (int64_t[]){2, 0}, 2, got, lab);
    float exp[2 * 12];
    for (int i = 0; i < 12; i++) {
        exp[i] = (float)((double)want[2 * 12 + i] / 127.5 - 1.0);
        exp[12 + i] = (float)((double)want[i] / 127.5 - 1.0);
    }
    T_CHECK(s == DUET_OK && lab[0] == wl[2] && lab[1] == wl[0], "batch labels");
    t_close("batch_f32 = x/127.5 - 1", got, exp, 24, 1e-6, 1e-6);
    float lo = 0, hi = 0;
    uint8_t ends[2] = {0, 255};
    float ev[2];
    duet_u8_to_unit(ev, ends, 2);
    lo = ev[0];
    hi = ev[1];
    T_CHECK(lo == -1.0f && hi == 1.0f, "u8 0 -> -1 and 255 -> 1 exactly (%g %g)", (double)lo, (double)hi);
    s = duet_dataset_batch_f32(&d, (int64_t[]){5}, 1, got, NULL);
    T_CHECK(s == DUET_ERR_ARG && strstr(duet_last_error(), "index 5"), "index out of range: %s",
            duet_last_error());
    s = duet_dataset_batch_f32(&d, (int64_t[]){-1}, 1, got, NULL);
    T_CHECK(s == DUET_ERR_ARG, "negative index");
    duet_dataset_free(&d);
    T_CHECK(d.pixels == NULL && d.n == 0, "free zeroes the struct");
    duet_dataset_free(&d); /* twice is fine */
    duet_dataset_free(NULL);
    /* unlabelled */
    s = duet_dataset_load_idx(ip, NULL, &d);
    T_CHECK(s == DUET_OK && d.labels == NULL && d.nclasses == 0, "images without labels");
    if (!s) {
        s = duet_dataset_batch_f32(&d, (int64_t[]){1}, 1, got, lab);
        T_CHECK(s == DUET_OK && lab[0] == -1, "unlabelled batch gives label -1");
    }
    duet_dataset_free(&d);
    t_fix_free(fx);
}

static void test_idx_bad(void) {
    static const struct {
        const char *file, *want;
    } cases[] = {
        {"bad_magic.gz", "bad magic"},
        {"bad_type.gz", "data type 0x0d"},
        {"bad_ndim0.gz", "ndim 0 out of range"},
        {"bad_ndim5.gz", "ndim 5 out of range"},
        {"zero_dim.gz", "dims[1] is 0"},
        {"overflow.gz", "dims product overflows"},
        {"short_magic.gz", "truncated magic"},
        {"empty.gz", "truncated magic (0 of 4"},
        {"short_dims.gz", "truncated dims"},
        {"truncated.gz", "truncated data: dims [5, 4, 3] need 60 bytes, the file has 53"},
        {"truncated.idx", "truncated data"},
        {"extra.gz", "3 extra bytes after the data"},
        {"cut_stream.gz", "gzip"},
        {"corrupt_stream.gz", "gzip"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char p[512], rel[128];
        snprintf(rel, sizeof rel, "data_idx/%s", cases[i].file);
        fpath(p, sizeof p, rel);
        duet_idx x;
        x.data = (uint8_t *)1;
        duet_status s = duet_idx_read(p, &x);
        const char *msg = duet_last_error();
        T_CHECK(s == DUET_ERR_FORMAT && strstr(msg, cases[i].want) && strstr(msg, cases[i].file) &&
                    x.data == NULL,
                "%s: FORMAT naming file and '%s'; got %d '%s'", cases[i].file, cases[i].want, s, msg);
    }
    duet_idx x;
    duet_status s = duet_idx_read("/nonexistent/x.gz", &x);
    T_CHECK(s == DUET_ERR_IO && strstr(duet_last_error(), "/nonexistent/x.gz"), "missing file is IO: %s",
            duet_last_error());
    /* loader-level rules */
    char ip[512], lp[512], sp[512];
    fpath(ip, sizeof ip, "data_idx/images.gz");
    fpath(lp, sizeof lp, "data_idx/labels.gz");
    fpath(sp, sizeof sp, "data_idx/labels_short.gz");
    duet_dataset d;
    s = duet_dataset_load_idx(ip, sp, &d);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "labels count 4 != images count 5") &&
                strstr(duet_last_error(), "labels_short.gz") && d.pixels == NULL,
            "labels count mismatch: %s", duet_last_error());
    s = duet_dataset_load_idx(lp, lp, &d);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "images want magic 0x00000803"),
            "labels file as images: %s", duet_last_error());
    s = duet_dataset_load_idx(ip, ip, &d);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "labels want magic 0x00000801"),
            "images file as labels: %s", duet_last_error());
}

/* ======================================================================== */
/* Fashion-MNIST (Debian's dataset-fashion-mnist)                             */
/* ======================================================================== */

static void test_fashion(void) {
    t_fix *fx = t_fix_load("data_fashion.bin");
    if (!fx) return;
    for (int sp = 0; sp < 2; sp++) {
        const char *nm = sp ? "test" : "train";
        duet_dataset d;
        duet_status s = duet_fashion_mnist_load(NULL, (duet_split)sp, &d);
        T_CHECK(s == DUET_OK, "Fashion-MNIST %s loads (install dataset-fashion-mnist: run sh "
                "tools/deps.sh): %s", nm, duet_last_error());
        if (s) continue;
        char key[64];
        snprintf(key, sizeof key, "%s.shape", nm);
        int32_t *shape = t_fix_i32(fx, key, NULL);
        int64_t want_n = sp ? 10000 : 60000;
        T_CHECK(d.n == want_n && d.c == 1 && d.h == 28 && d.w == 28 && shape && shape[0] == d.n,
                "%s: [%lld, 1, 28, 28]", nm, (long long)want_n);
        int64_t hist[10] = {0}, lsum = 0, bad = 0;
        double psum = 0;
        for (int64_t i = 0; i < d.n; i++) {
            if (d.labels[i] < 0 || d.labels[i] > 9) bad++;
            else hist[d.labels[i]]++;
            lsum += d.labels[i];
        }
        for (int64_t i = 0; i < d.n * 784; i++) psum += d.pixels[i];
        T_CHECK(bad == 0, "%s: labels in 0..9", nm);
        snprintf(key, sizeof key, "%s.hist", nm);
        int32_t *wh = t_fix_i32(fx, key, NULL);
        int hist_ok = wh != NULL;
        for (int k = 0; k < 10 && wh; k++) hist_ok &= hist[k] == wh[k] && hist[k] == want_n / 10;
        T_CHECK(hist_ok, "%s: %lld images per class, as numpy counts", nm, (long long)want_n / 10);
        snprintf(key, sizeof key, "%s.pixel_sum", nm);
        T_CHECK(psum == t_fix_scalar(fx, key), "%s: pixel sum %.0f == numpy's", nm, psum);
        snprintf(key, sizeof key, "%s.label_sum", nm);
        T_CHECK((double)lsum == t_fix_scalar(fx, key), "%s: label sum", nm);
        snprintf(key, sizeof key, "%s.first", nm);
        int32_t *first = t_fix_i32(fx, key, NULL);
        snprintf(key, sizeof key, "%s.first_labels", nm);
        int32_t *fl = t_fix_i32(fx, key, NULL);
        snprintf(key, sizeof key, "%s.last", nm);
        int32_t *last = t_fix_i32(fx, key, NULL);
        int same = first && fl && last;
        for (int64_t i = 0; same && i < 3 * 784; i++) same &= d.pixels[i] == first[i];
        for (int64_t i = 0; same && i < 784; i++) same &= d.pixels[(d.n - 1) * 784 + i] == last[i];
        for (int i = 0; same && i < 3; i++) same &= d.labels[i] == fl[i];
        T_CHECK(same, "%s: first three and last image equal numpy's", nm);
        T_CHECK(d.nclasses == 10 && strcmp(d.class_names[0], "t-shirt") == 0 &&
                    strcmp(d.class_names[9], "ankle boot") == 0,
                "%s: class names", nm);
        T_CHECK(duet_dataset_class_index(&d, "Ankle-Boot") == 9 &&
                    duet_dataset_class_index(&d, "TSHIRT") == 0,
                "%s: dataset class lookup", nm);
        duet_dataset_free(&d);
    }
    t_fix_free(fx);
    static const char *const names[10] = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                          "sandal",  "shirt",   "sneaker",  "bag",   "ankle boot"};
    int ok = 1;
    for (int i = 0; i < 10; i++) ok &= strcmp(duet_fashion_mnist_class_name(i), names[i]) == 0;
    T_CHECK(ok && duet_fashion_mnist_class_name(10) == NULL && duet_fashion_mnist_class_name(-1) == NULL,
            "the ten class names");
    static const struct {
        const char *q;
        int want;
    } look[] = {
        {"t-shirt", 0}, {"tshirt", 0}, {"T-Shirt", 0}, {"T_SHIRT", 0}, {"ankle boot", 9},
        {"ankle-boot", 9}, {"AnkleBoot", 9}, {"bag", 8}, {"Sneaker", 7}, {"3", 3}, {"0", 0},
        {"9", 9}, {"10", -1}, {"hat", -1}, {"", -1}, {"-", -1}, {"shirts", -1}, {"t", -1},
    };
    for (size_t i = 0; i < sizeof look / sizeof *look; i++)
        T_CHECK(duet_fashion_mnist_class_from_name(look[i].q) == look[i].want, "lookup '%s' -> %d (got %d)",
                look[i].q, look[i].want, duet_fashion_mnist_class_from_name(look[i].q));
    T_CHECK(duet_fashion_mnist_class_from_name(NULL) == -1, "lookup NULL");
    T_CHECK(duet_split_from_name("train") == DUET_SPLIT_TRAIN && duet_split_from_name("test") == DUET_SPLIT_TEST &&
                duet_split_from_name("val") == -1 && strcmp(duet_split_name(DUET_SPLIT_TEST), "test") == 0,
            "split names");
    duet_dataset d;
    duet_status s = duet_fashion_mnist_load("/nonexistent", DUET_SPLIT_TRAIN, &d);
    T_CHECK(s == DUET_ERR_IO && strstr(duet_last_error(), "dataset-fashion-mnist") &&
                strstr(duet_last_error(), "tools/deps.sh"),
            "missing dataset says what to install: %s", duet_last_error());
}

/* ======================================================================== */
/* Resize                                                                    */
/* ======================================================================== */

static void test_resize(void) {
    t_fix *fx = t_fix_load("data_resize.bin");
    if (!fx) return;
    int nc = (int)t_fix_scalar(fx, "ncases");
    for (int k = 0; k < nc; k++) {
        char key[32];
        snprintf(key, sizeof key, "c%d.dims", k);
        int32_t *dm = t_fix_i32(fx, key, NULL);
        snprintf(key, sizeof key, "c%d.src", k);
        float *src = t_fix_f32(fx, key, NULL);
        snprintf(key, sizeof key, "c%d.out", k);
        int64_t n;
        double *want = t_fix_f64(fx, key, &n);
        if (!dm || !src || !want) continue;
        float *got = malloc((size_t)n * sizeof(float));
        duet_status s = duet_image_resize(got, dm[3], dm[4], src, dm[0], dm[1], dm[2]);
        char what[96];
        snprintf(what, sizeof what, "resize [%d,%d,%d] -> [%d,%d]", dm[0], dm[1], dm[2], dm[3], dm[4]);
        T_CHECK(s == DUET_OK, "%s runs", what);
        /* values up to 255 summed over a few float products: 1e-5 relative */
        t_close_d(what, got, want, n, 1e-5, 1e-4);
        free(got);
    }
    float x[4] = {0}, y[4];
    T_CHECK(duet_image_resize(y, 0, 2, x, 1, 2, 2) == DUET_ERR_ARG, "resize to 0 rows is an error");
    T_CHECK(duet_image_resize(y, 2, 2, x, 1, 2, 0) == DUET_ERR_ARG, "resize from 0 cols is an error");
    t_fix_free(fx);
}

/* ======================================================================== */
/* Image files and folders                                                   */
/* ======================================================================== */

static void test_image_load(void) {
    t_fix *fx = t_fix_load("data_images.bin");
    if (!fx) return;
    int64_t n;
    int32_t *raw = t_fix_i32(fx, "rgba.raw", &n);
    int32_t *gray = t_fix_i32(fx, "rgba.gray", NULL);
    char p[512];
    fpath(p, sizeof p, "data_images/flat/c_rgba.png");
    uint8_t *px;
    int64_t w, h;
    int c;
    duet_status s = duet_image_load(p, 0, &px, &w, &h, &c);
    T_CHECK(s == DUET_OK && w == 10 && h == 12 && c == 4, "RGBA PNG keeps 4 channels: %s", duet_last_error());
    if (!s && raw) {
        int same = 1;
        for (int64_t i = 0; i < n; i++) same &= px[i] == raw[i];
        T_CHECK(same, "RGBA pixels as PIL wrote them");
        duet_free(px);
    }
    s = duet_image_load(p, 1, &px, &w, &h, &c);
    if (!s && gray) {
        int same = c == 1;
        for (int64_t i = 0; i < w * h; i++) same &= px[i] == gray[i];
        T_CHECK(same, "RGBA -> gray equals PIL convert('L') exactly");
        duet_free(px);
    } else {
        T_CHECK(0, "RGBA -> gray loads: %s", duet_last_error());
    }
    s = duet_image_load(p, 3, &px, &w, &h, NULL);
    if (!s && raw) {
        int same = 1;
        for (int64_t i = 0; i < w * h; i++)
            for (int k = 0; k < 3; k++) same &= px[i * 3 + k] == raw[i * 4 + k];
        T_CHECK(same, "RGBA -> RGB drops alpha");
        duet_free(px);
    } else {
        T_CHECK(0, "RGBA -> RGB loads: %s", duet_last_error());
    }
    T_CHECK(duet_image_load(p, 2, &px, &w, &h, NULL) == DUET_ERR_ARG, "channels 2 is refused");
    fpath(p, sizeof p, "data_images/fake/fake.png");
    s = duet_image_load(p, 3, &px, &w, &h, NULL);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "fake.png") && strstr(duet_last_error(), "not an image"),
            "text named .png: %s", duet_last_error());
    fpath(p, sizeof p, "data_images/corrupt/b_broken.png");
    s = duet_image_load(p, 3, &px, &w, &h, NULL);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "b_broken.png") && strstr(duet_last_error(), "corrupt"),
            "cut PNG: %s", duet_last_error());
    s = duet_image_load("/nonexistent.png", 3, &px, &w, &h, NULL);
    T_CHECK(s == DUET_ERR_IO, "missing image is IO");
    t_fix_free(fx);
}

/* Compares loader output with the PIL + numpy expectation: PNGs must round
 * the same (|got - exact| <= 0.5, a tie may go either way in float); JPEGs
 * are decoded by stb here and libjpeg in PIL, whose IDCTs and chroma
 * handling differ slightly (measured: max 1.24 levels, mean 0.25 on these
 * smooth quality-95 pictures; bounds 2 and 0.5). */
static void compare_loaded(const char *what, const uint8_t *got, const int32_t *want,
                           const double *wantf, const int32_t *is_jpeg, int64_t n, int64_t per) {
    for (int64_t i = 0; i < n; i++) {
        double worst = 0, sum = 0;
        int exact = 1;
        for (int64_t j = 0; j < per; j++) {
            double d = fabs((double)got[i * per + j] - wantf[i * per + j]);
            worst = d > worst ? d : worst;
            sum += d;
            exact &= got[i * per + j] == want[i * per + j];
        }
        if (is_jpeg[i])
            T_CHECK(worst <= 2.0 && sum / (double)per <= 0.5, "%s image %lld (JPEG): max |diff| %.2f, mean %.3f",
                    what, (long long)i, worst, sum / (double)per);
        else
            T_CHECK(worst <= 0.5 + 1e-3, "%s image %lld: max |got - exact| %.4f (exact match %d)", what,
                    (long long)i, worst, exact);
    }
}

static void test_folder(void) {
    t_fix *fx = t_fix_load("data_images.bin");
    if (!fx) return;
    char dir[512];
    fpath(dir, sizeof dir, "data_images/flat");
    int32_t *isj = t_fix_i32(fx, "flat.is_jpeg", NULL);
    for (int ch = 3; ch >= 1; ch -= 2) {
        duet_image_folder_params p;
        duet_image_folder_params_default(&p);
        T_CHECK(p.size == 32 && p.channels == 3 && p.classes == -1, "folder defaults");
        p.size = 8;
        p.channels = ch;
        duet_dataset d;
        int64_t skipped = -1;
        duet_status s = duet_image_folder_load(dir, &p, &d, &skipped);
        T_CHECK(s == DUET_OK, "flat folder, %d channels: %s", ch, duet_last_error());
        if (s) continue;
        T_CHECK(d.n == 5 && d.c == ch && d.h == 8 && d.w == 8 && d.labels == NULL && d.nclasses == 0,
                "flat: 5 images [%d, 8, 8], unlabelled", ch);
        T_CHECK(skipped == 1, "notes.txt skipped, .hidden.png ignored (skipped %lld)", (long long)skipped);
        char key[32];
        snprintf(key, sizeof key, "flat%d", ch);
        int32_t *want = t_fix_i32(fx, key, NULL);
        snprintf(key, sizeof key, "flat%d.f", ch);
        double *wantf = t_fix_f64(fx, key, NULL);
        if (want && wantf && isj && d.n == 5) compare_loaded(key, d.pixels, want, wantf, isj, 5, ch * 64);
        duet_dataset_free(&d);
    }
    /* classes */
    fpath(dir, sizeof dir, "data_images/classes");
    duet_image_folder_params p;
    duet_image_folder_params_default(&p);
    p.size = 6;
    duet_dataset d;
    int64_t skipped;
    duet_status s = duet_image_folder_load(dir, &p, &d, &skipped);
    T_CHECK(s == DUET_OK, "class folders: %s", duet_last_error());
    if (!s) {
        T_CHECK(d.n == 3 && d.c == 3 && d.h == 6 && d.nclasses == 2 && strcmp(d.class_names[0], "bag") == 0 &&
                    strcmp(d.class_names[1], "coat") == 0,
                "classes bag, coat");
        int32_t *wl = t_fix_i32(fx, "classes.labels", NULL);
        T_CHECK(wl && d.labels && d.labels[0] == wl[0] && d.labels[1] == wl[1] && d.labels[2] == wl[2],
                "labels by sub-folder");
        T_CHECK(skipped == 2, "README.txt beside the classes and Thumbs.db skipped (%lld)", (long long)skipped);
        T_CHECK(duet_dataset_class_index(&d, "Coat") == 1 && duet_dataset_class_index(&d, "1") == 1,
                "class lookup on folder names");
        int32_t *want = t_fix_i32(fx, "classes3", NULL);
        double *wantf = t_fix_f64(fx, "classes3.f", NULL);
        int32_t *cj = t_fix_i32(fx, "classes.is_jpeg", NULL);
        if (want && wantf && cj && d.n == 3) compare_loaded("classes3", d.pixels, want, wantf, cj, 3, 3 * 36);
        duet_dataset_free(&d);
    }
    /* the same folder without classes: only README.txt at the top */
    p.classes = 0;
    s = duet_image_folder_load(dir, &p, &d, NULL);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "holds no images") &&
                strstr(duet_last_error(), "1 files skipped"),
            "classes=0 ignores sub-folders: %s", duet_last_error());
    fpath(dir, sizeof dir, "data_images/flat");
    p.classes = 1;
    s = duet_image_folder_load(dir, &p, &d, NULL);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "no sub-folders"), "classes=1 needs sub-folders: %s",
            duet_last_error());
    p.classes = -1;
    fpath(dir, sizeof dir, "data_images/corrupt");
    s = duet_image_folder_load(dir, &p, &d, NULL);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "b_broken.png") && d.pixels == NULL,
            "corrupt image named: %s", duet_last_error());
    fpath(dir, sizeof dir, "data_images/fake");
    s = duet_image_folder_load(dir, &p, &d, NULL);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "fake.png") && strstr(duet_last_error(), "not a valid image"),
            "text named .png is an error, not a skip: %s", duet_last_error());
    char empty[300];
    snprintf(empty, sizeof empty, "%s/empty", tmpdir);
    mkdir(empty, 0700);
    s = duet_image_folder_load(empty, &p, &d, NULL);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "holds no images") && strstr(duet_last_error(), empty),
            "empty folder: %s", duet_last_error());
    /* a class folder without images */
    char cls[320];
    snprintf(cls, sizeof cls, "%s/empty/nothing", tmpdir);
    mkdir(cls, 0700);
    s = duet_image_folder_load(empty, &p, &d, NULL);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "'nothing' holds no images"),
            "empty class folder: %s", duet_last_error());
    rmdir(cls);
    rmdir(empty);
    s = duet_image_folder_load("/nonexistent/dir", &p, &d, NULL);
    T_CHECK(s == DUET_ERR_IO, "missing folder is IO");
    p.channels = 2;
    T_CHECK(duet_image_folder_load(dir, &p, &d, NULL) == DUET_ERR_ARG, "channels 2 refused");
    p.channels = 3;
    p.size = 0;
    T_CHECK(duet_image_folder_load(dir, &p, &d, NULL) == DUET_ERR_ARG, "size 0 refused");
    t_fix_free(fx);
}

/* ======================================================================== */
/* PNG and GIF writers                                                       */
/* ======================================================================== */

static const char *const png_text_gray[] = {"duet", "test gray", "steps", "50"};
static const char *const png_text_rgb[] = {"Title", "duet sample", "prompt", "a coat, size 28"};
static const int gif_delays_gray[] = {7, 7, 50}, gif_delays_rgb[] = {10, 20}, gif_delays_noise[] = {3};

static uint8_t *to_u8(const int32_t *v, int64_t n) {
    uint8_t *p = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) p[i] = (uint8_t)v[i];
    return p;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Walks a PNG by the spec: signature, chunks with valid CRCs, IHDR first and
 * IEND last. Fills the IHDR fields, the tEXt pairs (as "key=value;..."), and
 * the concatenated IDAT payload. Returns 1 when well-formed. */
static int png_walk(const uint8_t *p, size_t n, uint32_t ihdr[2], uint8_t hdr[5], char *text,
                    size_t tcap, uint8_t **idat, size_t *idat_n, char *types, size_t typecap) {
    static const uint8_t sig[8] = {137, 'P', 'N', 'G', '\r', '\n', 26, '\n'};
    if (n < 8 || memcmp(p, sig, 8) != 0) return 0;
    size_t pos = 8, tl = 0;
    text[0] = 0;
    types[0] = 0;
    *idat = NULL;
    *idat_n = 0;
    int first = 1, ended = 0;
    while (pos + 12 <= n && !ended) {
        uint32_t len = be32(p + pos);
        if (pos + 12 + len > n) return 0;
        const uint8_t *type = p + pos + 4, *body = p + pos + 8;
        uLong crc = crc32(crc32(0L, Z_NULL, 0), type, (uInt)(4 + len));
        if (crc != be32(body + len)) return 0;
        if (strlen(types) + 6 < typecap) {
            strncat(types, (const char *)type, 4);
            strcat(types, " ");
        }
        if (first && (memcmp(type, "IHDR", 4) != 0 || len != 13)) return 0;
        first = 0;
        if (memcmp(type, "IHDR", 4) == 0) {
            ihdr[0] = be32(body);
            ihdr[1] = be32(body + 4);
            memcpy(hdr, body + 8, 5);
        } else if (memcmp(type, "tEXt", 4) == 0) {
            tl += (size_t)snprintf(text + tl, tcap - tl, "%.*s=%.*s;", (int)strnlen((const char *)body, len),
                                   (const char *)body, (int)(len - strnlen((const char *)body, len) - 1),
                                   (const char *)body + strnlen((const char *)body, len) + 1);
        } else if (memcmp(type, "IDAT", 4) == 0) {
            *idat = realloc(*idat, *idat_n + len);
            memcpy(*idat + *idat_n, body, len);
            *idat_n += len;
        } else if (memcmp(type, "IEND", 4) == 0) {
            ended = 1;
        }
        pos += 12 + len;
    }
    return ended && pos == n;
}

/* Inflates a zlib stream into a malloc'd buffer of exactly `want` bytes. */
static uint8_t *inflate_all(const uint8_t *z, size_t zn, size_t want) {
    uint8_t *out = malloc(want + 1);
    uLongf got = (uLongf)want + 1;
    if (uncompress(out, &got, z, (uLong)zn) != Z_OK || got != want) {
        free(out);
        return NULL;
    }
    return out;
}

static void check_png(const char *name, const uint8_t *px, int64_t w, int64_t h, int ch,
                      const char *const *text, const char *golden) {
    uint8_t *png;
    size_t n;
    duet_status s = duet_png_encode(px, w, h, ch, text, 2, &png, &n);
    T_CHECK(s == DUET_OK, "%s encodes: %s", name, duet_last_error());
    if (s) return;
    /* walk it by the spec */
    uint32_t ihdr[2];
    uint8_t hdr[5];
    char tx[512], types[256];
    uint8_t *idat;
    size_t idat_n;
    int ok = png_walk(png, n, ihdr, hdr, tx, sizeof tx, &idat, &idat_n, types, sizeof types);
    T_CHECK(ok, "%s: signature, chunk CRCs, IHDR first, IEND last", name);
    T_CHECK(ok && ihdr[0] == w && ihdr[1] == h && hdr[0] == 8 && hdr[1] == (ch == 1 ? 0 : 2) && hdr[2] == 0 &&
                hdr[3] == 0 && hdr[4] == 0,
            "%s: IHDR %ux%u depth 8 colour type %d", name, ihdr[0], ihdr[1], ch == 1 ? 0 : 2);
    char want_tx[256];
    snprintf(want_tx, sizeof want_tx, "%s=%s;%s=%s;", text[0], text[1], text[2], text[3]);
    T_CHECK(strcmp(tx, want_tx) == 0, "%s: tEXt chunks '%s'", name, tx);
    T_CHECK(strncmp(types, "IHDR tEXt tEXt IDAT", 19) == 0, "%s: chunk order %s", name, types);
    /* the raw scanlines: one filter byte (0..4) per row */
    size_t rawn = (size_t)(h * (w * ch + 1));
    uint8_t *raw = ok ? inflate_all(idat, idat_n, rawn) : NULL;
    int filt_ok = raw != NULL;
    for (int64_t y = 0; raw && y < h; y++) filt_ok &= raw[y * (w * ch + 1)] <= 4;
    T_CHECK(filt_ok, "%s: IDAT inflates to %zu bytes of filtered rows", name, rawn);
    /* read back with stb_image (through duet_image_load) */
    char path[400];
    snprintf(path, sizeof path, "%s/%s.png", tmpdir, name);
    s = duet_png_write(path, px, w, h, ch, text, 2);
    T_CHECK(s == DUET_OK, "%s: png_write: %s", name, duet_last_error());
    size_t fn;
    uint8_t *file = slurp(path, &fn);
    T_CHECK(file && fn == n && memcmp(file, png, n) == 0, "%s: the file holds the encoded bytes", name);
    free(file);
    uint8_t *back;
    int64_t bw, bh;
    int bc;
    s = duet_image_load(path, 0, &back, &bw, &bh, &bc);
    T_CHECK(s == DUET_OK && bw == w && bh == h && bc == ch && memcmp(back, px, (size_t)(w * h * ch)) == 0,
            "%s: stb_image reads back the same pixels", name);
    if (!s) duet_free(back);
    /* the golden file, verified by gen_data.py with its own reader and PIL:
     * same chunks, same header and text bytes, same filtered rows (the
     * deflate bytes may differ with the zlib version) */
    char gp[512];
    fpath(gp, sizeof gp, golden);
    size_t gn;
    uint8_t *g = slurp(gp, &gn);
    T_CHECK(g != NULL, "golden %s present (make fixtures)", golden);
    if (g && raw) {
        uint32_t gi[2];
        uint8_t gh[5];
        char gtx[512], gtypes[256];
        uint8_t *gidat;
        size_t gidat_n;
        int gok = png_walk(g, gn, gi, gh, gtx, sizeof gtx, &gidat, &gidat_n, gtypes, sizeof gtypes);
        uint8_t *graw = gok ? inflate_all(gidat, gidat_n, rawn) : NULL;
        T_CHECK(gok && gi[0] == ihdr[0] && gi[1] == ihdr[1] && memcmp(gh, hdr, 5) == 0 && strcmp(gtx, tx) == 0 &&
                    strcmp(gtypes, types) == 0 && graw && memcmp(graw, raw, rawn) == 0,
                "%s: same chunks, header, text and scanlines as the verified golden", name);
        free(graw);
        free(gidat);
    }
    free(g);
    free(raw);
    free(idat);
    duet_free(png);
}

static void test_png(void) {
    t_fix *fx = t_fix_load("data_img.bin");
    if (!fx) return;
    int64_t sh[8];
    int64_t n;
    int32_t *g = t_fix_i32(fx, "png_gray", &n);
    t_fix_shape(fx, "png_gray", sh);
    uint8_t *gp = to_u8(g, n);
    check_png("gray", gp, sh[1], sh[0], 1, png_text_gray, "data_golden_png_gray.png");
    int32_t *c = t_fix_i32(fx, "png_rgb", &n);
    t_fix_shape(fx, "png_rgb", sh);
    uint8_t *cp = to_u8(c, n);
    check_png("rgb", cp, sh[1], sh[0], 3, png_text_rgb, "data_golden_png_rgb.png");
    /* argument checks */
    uint8_t *out;
    size_t on;
    char long_key[81];
    memset(long_key, 'k', 80);
    long_key[80] = 0;
    const char *bad_keys[] = {long_key, "", " lead", "trail ", "two  spaces", "tab\there"};
    for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++) {
        const char *t[2] = {bad_keys[i], "v"};
        duet_status s = duet_png_encode(gp, 4, 4, 1, t, 1, &out, &on);
        T_CHECK(s == DUET_ERR_ARG && strstr(duet_last_error(), "tEXt key"), "bad tEXt key #%zu refused", i);
    }
    long_key[79] = 0;
    const char *t79[2] = {long_key, ""};
    duet_status s = duet_png_encode(gp, 4, 4, 1, t79, 1, &out, &on);
    T_CHECK(s == DUET_OK, "79-character key and empty value are fine");
    if (!s) duet_free(out);
    T_CHECK(duet_png_encode(gp, 4, 4, 2, NULL, 0, &out, &on) == DUET_ERR_ARG, "2 channels refused");
    T_CHECK(duet_png_encode(gp, 0, 4, 1, NULL, 0, &out, &on) == DUET_ERR_ARG, "width 0 refused");
    s = duet_png_write("/nonexistent/dir/x.png", gp, 4, 4, 1, NULL, 0);
    T_CHECK(s == DUET_ERR_IO, "unwritable path is IO: %s", duet_last_error());
    free(gp);
    free(cp);
    t_fix_free(fx);
}

static void test_grid(void) {
    t_fix *fx = t_fix_load("data_img.bin");
    if (!fx) return;
    int64_t n;
    float *in = t_fix_f32(fx, "grid.in", NULL);
    int32_t *want = t_fix_i32(fx, "grid.out", &n);
    int64_t gh, gw;
    duet_image_grid_size(2, 3, 4, 3, 2, &gh, &gw);
    T_CHECK(gh == 2 * 4 + 3 * 2 && gw == 3 * 3 + 4 * 2 && gh * gw * 3 == n, "grid size %lldx%lld",
            (long long)gh, (long long)gw);
    uint8_t *g = malloc((size_t)n);
    duet_image_grid(g, in, 5, 3, 4, 3, 2, 3, 2, 255);
    int same = 1;
    for (int64_t i = 0; i < n; i++) same &= g[i] == want[i];
    T_CHECK(same, "grid of 5 images on 2x3 with a 2px border equals numpy's");
    /* one image alone, as the PNG writer wants it: [H, W, C] */
    uint8_t one[4 * 3 * 3];
    duet_image_to_u8(one, in, 3, 4, 3);
    same = 1;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 3; x++)
            for (int c = 0; c < 3; c++) same &= one[(y * 3 + x) * 3 + c] == want[((2 + y) * gw + 2 + x) * 3 + c];
    T_CHECK(same, "to_u8 writes [H, W, C]");
    free(g);
    float *vals = t_fix_f32(fx, "u8.in", &n);
    int32_t *wv = t_fix_i32(fx, "u8.out", NULL);
    uint8_t out[32];
    duet_image_to_u8(out, vals, 1, 1, n);
    same = 1;
    for (int64_t i = 0; i < n; i++) same &= out[i] == wv[i];
    T_CHECK(same, "f32 -> u8 rule on edges, NaN and infinities");
    t_fix_free(fx);
}

/* Walks a GIF89a by the spec. Returns frames, or -1 when malformed; fills
 * delays (up to 8) and *loop (-1 when no NETSCAPE2.0 block). */
static int gif_walk(const uint8_t *p, size_t n, int64_t w, int64_t h, int channels, int *delays, int *loop) {
    *loop = -1;
    if (n < 13 + 768 || memcmp(p, "GIF89a", 6) != 0) return -1;
    if ((p[6] | p[7] << 8) != w || (p[8] | p[9] << 8) != h || p[10] != 0xF7) return -1;
    const uint8_t *pal = p + 13;
    for (int i = 0; i < 256; i++) {
        int r = pal[3 * i], g = pal[3 * i + 1], b = pal[3 * i + 2];
        if (channels == 1 && (r != i || g != i || b != i)) return -1;
        if (channels == 3 && i < 216 && (r != i / 36 * 51 || g != i / 6 % 6 * 51 || b != i % 6 * 51)) return -1;
    }
    size_t pos = 13 + 768;
    int frames = 0, delay = -1;
    while (pos < n) {
        uint8_t b = p[pos++];
        if (b == 0x3B) return pos == n ? frames : -1;
        if (b == 0x21) {
            if (pos + 1 >= n) return -1;
            uint8_t label = p[pos++];
            if (label == 0xF9) {
                if (p[pos] != 4 || pos + 6 > n) return -1;
                delay = p[pos + 2] | p[pos + 3] << 8;
            } else if (label == 0xFF) {
                if (pos + 17 <= n && p[pos] == 11 && memcmp(p + pos + 1, "NETSCAPE2.0", 11) == 0 && p[pos + 12] == 3 &&
                    p[pos + 13] == 1)
                    *loop = p[pos + 14] | p[pos + 15] << 8;
            }
            while (pos < n && p[pos]) pos += (size_t)p[pos] + 1; /* sub-blocks */
            pos++;
        } else if (b == 0x2C) {
            if (pos + 10 > n) return -1;
            if ((p[pos + 4] | p[pos + 5] << 8) != w || (p[pos + 6] | p[pos + 7] << 8) != h || p[pos + 8] != 0) return -1;
            pos += 9;
            if (p[pos++] != 8) return -1; /* LZW minimum code size */
            while (pos < n && p[pos]) pos += (size_t)p[pos] + 1;
            pos++;
            if (frames < 8) delays[frames] = delay;
            frames++;
            delay = -1;
        } else {
            return -1;
        }
    }
    return -1;
}

static void check_gif(const char *name, const int32_t *frames, int64_t nf, int64_t h, int64_t w, int ch,
                      const int *delays, const int32_t *first_expected) {
    duet_gif *g = duet_gif_new(w, h, ch);
    T_CHECK(g != NULL, "%s: gif_new", name);
    if (!g) return;
    int64_t per = h * w * ch;
    uint8_t *px = to_u8(frames, nf * per);
    duet_status s = DUET_OK;
    const uint8_t *data;
    size_t n;
    for (int64_t k = 0; k < nf && !s; k++) {
        s = duet_gif_add_frame(g, px + k * per, delays[k]);
        /* asking for the bytes in between must not spoil the file */
        if (!s && k == 0 && nf > 1) s = duet_gif_bytes(g, &data, &n);
    }
    T_CHECK(s == DUET_OK && duet_gif_frames(g) == nf, "%s: %lld frames added", name, (long long)nf);
    s = duet_gif_bytes(g, &data, &n);
    T_CHECK(s == DUET_OK, "%s: bytes", name);
    if (s) {
        duet_gif_free(g);
        free(px);
        return;
    }
    int got_delays[8] = {0}, loop;
    int nfr = gif_walk(data, n, w, h, ch, got_delays, &loop);
    int dl_ok = nfr == nf;
    for (int k = 0; k < nfr && k < 8; k++) dl_ok &= got_delays[k] == delays[k];
    T_CHECK(nfr == nf && loop == 0 && dl_ok, "%s: GIF89a structure, %d frames, loop %d, delays", name, nfr, loop);
    /* byte-identical to the golden file PIL decoded in gen_data.py */
    char gp[512], rel[64];
    snprintf(rel, sizeof rel, "data_golden_gif_%s.gif", name);
    fpath(gp, sizeof gp, rel);
    size_t gn;
    uint8_t *gold = slurp(gp, &gn);
    T_CHECK(gold && gn == n && memcmp(gold, data, n) == 0, "%s: bytes equal the verified golden %s", name, rel);
    free(gold);
    /* first frame through stb_image's GIF decoder */
    char path[400];
    snprintf(path, sizeof path, "%s/%s.gif", tmpdir, name);
    s = duet_gif_write(g, path);
    T_CHECK(s == DUET_OK, "%s: gif_write: %s", name, duet_last_error());
    uint8_t *back;
    int64_t bw, bh;
    s = duet_image_load(path, 3, &back, &bw, &bh, NULL);
    int same = s == DUET_OK && bw == w && bh == h;
    for (int64_t i = 0; same && i < w * h; i++)
        for (int c = 0; c < 3; c++) same &= back[i * 3 + c] == first_expected[i * ch + (ch == 3 ? c : 0)];
    T_CHECK(same, "%s: stb_image decodes frame 0 to the expected pixels", name);
    if (!s) duet_free(back);
    duet_gif_free(g);
    free(px);
}

static void test_gif(void) {
    t_fix *fx = t_fix_load("data_img.bin");
    if (!fx) return;
    int64_t sh[8];
    int32_t *gray = t_fix_i32(fx, "gif_gray", NULL);
    t_fix_shape(fx, "gif_gray", sh);
    if (gray) check_gif("gray", gray, sh[0], sh[1], sh[2], 1, gif_delays_gray, gray);
    int32_t *rgb = t_fix_i32(fx, "gif_rgb", NULL);
    int32_t *q = t_fix_i32(fx, "gif_rgb.q", NULL);
    t_fix_shape(fx, "gif_rgb", sh);
    if (rgb && q) check_gif("rgb", rgb, sh[0], sh[1], sh[2], 3, gif_delays_rgb, q);
    int32_t *noise = t_fix_i32(fx, "gif_noise", NULL);
    t_fix_shape(fx, "gif_noise", sh);
    if (noise) check_gif("noise", noise, sh[0], sh[1], sh[2], 1, gif_delays_noise, noise);
    T_CHECK(duet_gif_new(0, 4, 1) == NULL && duet_gif_new(4, 70000, 1) == NULL && duet_gif_new(4, 4, 2) == NULL,
            "gif_new refuses bad sizes and channels");
    duet_gif *g = duet_gif_new(2, 2, 1);
    const uint8_t *d;
    size_t n;
    T_CHECK(duet_gif_bytes(g, &d, &n) == DUET_ERR_ARG, "no frames: error");
    uint8_t px[4] = {0};
    T_CHECK(duet_gif_add_frame(g, px, -1) == DUET_ERR_ARG && duet_gif_add_frame(g, px, 65536) == DUET_ERR_ARG,
            "delay out of range");
    duet_gif_free(g);
    duet_gif_free(NULL);
    t_fix_free(fx);
}

/* ======================================================================== */
/* Corpora and texts                                                         */
/* ======================================================================== */

static void test_corpus(void) {
    char p[512];
    duet_corpus c;
    fpath(p, sizeof p, "data_corpus/one.txt");
    duet_status s = duet_corpus_load(p, &c);
    const char *one = "In the beginning\nwas the byte.\n";
    T_CHECK(s == DUET_OK && c.size == (int64_t)strlen(one) && memcmp(c.data, one, strlen(one)) == 0 &&
                c.nfiles == 1 && c.mapped_ == 1,
            "one file, memory-mapped: %s", duet_last_error());
    duet_corpus_free(&c);
    T_CHECK(c.data == NULL && c.size == 0, "free zeroes");
    duet_corpus_free(&c);
    fpath(p, sizeof p, "data_corpus/dir");
    s = duet_corpus_load(p, &c);
    T_CHECK(s == DUET_OK && c.size == 13 && memcmp(c.data, "first second\n", 13) == 0 && c.nfiles == 3,
            "folder: files in name order, hidden and nested ones left out (%lld files): %s", (long long)c.nfiles,
            duet_last_error());
    duet_corpus_free(&c);
    fpath(p, sizeof p, "data_corpus/empty.txt");
    s = duet_corpus_load(p, &c);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "empty"), "empty file: %s", duet_last_error());
    fpath(p, sizeof p, "data_corpus/nofiles");
    s = duet_corpus_load(p, &c);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "no non-empty files"), "folder of folders: %s",
            duet_last_error());
    s = duet_corpus_load("/nonexistent/corpus.txt", &c);
    T_CHECK(s == DUET_ERR_IO && strstr(duet_last_error(), "/nonexistent/corpus.txt"), "missing corpus is IO");
}

static void test_kjv_snippet(void) {
    const char *src = "Ge1:1 In the beginning God created the heaven and the earth.\n"
                      "Ge1:2 And the earth  was without form.  \r\n"
                      "\n"
                      "Exo1:1 Now these are the names.\n"
                      "Exo2:10 And the child grew.\n"
                      "1Sm3:4 That the LORD called Samuel.\n";
    const char *want = "Genesis\n\n"
                       "1:1 In the beginning God created the heaven and the earth.\n"
                       "1:2 And the earth was without form.\n"
                       "\nExodus\n\n"
                       "1:1 Now these are the names.\n"
                       "2:10 And the child grew.\n"
                       "\n1 Samuel\n\n"
                       "3:4 That the LORD called Samuel.\n";
    char *out;
    size_t n;
    int64_t nv;
    duet_status s = duet_text_kjv(src, strlen(src), &out, &n, &nv);
    T_CHECK(s == DUET_OK && nv == 5 && n == strlen(want) && strcmp(out, want) == 0, "KJV layout: got\n%s",
            s ? duet_last_error() : out);
    if (!s) duet_free(out);
    static const struct {
        const char *src, *want;
    } bad[] = {
        {"Xyz1:1 text\n", "unknown book abbreviation 'Xyz'"},
        {"Ge1 text\n", "bad reference"},
        {"Ge1:1\n", "bad reference"},
        {"Ge1:1    \n", "bad reference"},
        {"Ge0:1 zero chapter\n", "bad reference"},
        {"Ge1:1 a\nGe1:1x b\n", "line 2: bad reference"},
        {"Exo1:1 a\nGe1:1 b\n", "line 2: book Genesis out of canon order (after Exodus)"},
        {"Ge1:2 a\nGe1:1 b\n", "Genesis 1:1 comes after 1:2"},
        {"", "no verses"},
        {"\n\n", "no verses"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s = duet_text_kjv(bad[i].src, strlen(bad[i].src), &out, &n, NULL);
        T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), bad[i].want) && out == NULL,
                "bad bible text #%zu: want '%s', got '%s'", i, bad[i].want, duet_last_error());
    }
}

/* The real thing: Debian's `bible` over the whole canon. */
static void test_kjv_real(void) {
    FILE *p = popen("bible -f Genesis1:1-Revelation22:21 </dev/null 2>/dev/null", "r");
    size_t cap = 8 << 20, len = 0;
    char *buf = malloc(cap);
    if (p) len = fread(buf, 1, cap, p);
    int st = p ? pclose(p) : -1;
    T_CHECK(st == 0 && len > 4000000 && len < cap,
            "`bible -f` runs (install bible-kjv and bible-kjv-text: run sh tools/deps.sh) — status %d, %zu bytes",
            st, len);
    if (st != 0 || len >= cap) {
        free(buf);
        return;
    }
    char *out;
    size_t n;
    int64_t nv;
    duet_status s = duet_text_kjv(buf, len, &out, &n, &nv);
    free(buf);
    T_CHECK(s == DUET_OK && nv == 31102, "whole KJV: 31102 verses (%lld): %s", (long long)nv, duet_last_error());
    if (s) return;
    const char *head = "Genesis\n\n1:1 In the beginning God created the heaven and the earth.\n";
    const char *tail = "\n22:21 The grace of our Lord Jesus Christ be with you all. Amen.\n";
    T_CHECK(strncmp(out, head, strlen(head)) == 0 && n > strlen(tail) &&
                strcmp(out + n - strlen(tail), tail) == 0,
            "starts with Genesis 1:1, ends with Revelation 22:21");
    int64_t blank = 0, lines = 0;
    int trailing_space = 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] == '\n') {
            lines++;
            blank += i > 0 && out[i - 1] == '\n';
            trailing_space |= i > 0 && out[i - 1] == ' ';
        }
    T_CHECK(blank == 66 + 65 && lines == 31102 + 66 + 131, "66 headings, blank lines around them (%lld, %lld)",
            (long long)blank, (long long)lines);
    T_CHECK(!trailing_space, "no trailing spaces");
    T_CHECK(strstr(out, "\n\nSong of Solomon\n\n1:1 The song of songs, which is Solomon's.\n") != NULL &&
                strstr(out, "\n\nRevelation\n\n1:1 ") != NULL && strstr(out, "\n3:16 For God so loved the world") != NULL,
            "book headings and verses in place");
    duet_free(out);
}

static void test_fortunes(void) {
    char dir[512];
    fpath(dir, sizeof dir, "data_fortunes");
    char *out;
    size_t n;
    int64_t ne, nf;
    duet_status s = duet_text_fortunes(dir, &out, &n, &ne, &nf);
    const char *want = "First fortune,\n"
                       "        two lines.\n"
                       "\n"
                       "Tab     here, underlined and X bold.\n"
                       "Blank line above is dropped.\n"
                       "\n"
                       "Bad  byte, good \xc3\xa9 e-acute, bell.\n"
                       "\n"
                       "Beta only entry\n"
                       "  indented -- Author\n";
    T_CHECK(s == DUET_OK && ne == 4 && nf == 2 && n == strlen(want) && strcmp(out, want) == 0,
            "fortune cleaning (%lld entries, %lld files): got\n%s", (long long)ne, (long long)nf,
            s ? duet_last_error() : out);
    if (!s) duet_free(out);
    char empty[300];
    snprintf(empty, sizeof empty, "%s/nofortunes", tmpdir);
    mkdir(empty, 0700);
    s = duet_text_fortunes(empty, &out, &n, NULL, NULL);
    T_CHECK(s == DUET_ERR_FORMAT && strstr(duet_last_error(), "no fortunes"), "empty fortune folder: %s",
            duet_last_error());
    rmdir(empty);
    T_CHECK(duet_text_fortunes("/nonexistent", &out, &n, NULL, NULL) == DUET_ERR_IO, "missing folder is IO");
    /* Debian's fortunes */
    s = duet_text_fortunes("/usr/share/games/fortunes", &out, &n, &ne, &nf);
    T_CHECK(s == DUET_OK && ne > 10000 && nf >= 40,
            "Debian fortunes (install fortunes, fortunes-min: run sh tools/deps.sh): %lld entries from %lld files: %s",
            (long long)ne, (long long)nf, s ? duet_last_error() : "");
    if (s) return;
    int ctrl = 0, sep = 0, triple = 0, trailing = 0, bad_utf8 = 0;
    int64_t blanks = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if ((c < 0x20 && c != '\n') || c == 0x7F) ctrl++;
        if (c == '\n' && i + 2 < n && out[i + 1] == '%' && out[i + 2] == '\n') sep++;
        if (c == '\n' && i + 2 < n && out[i + 1] == '\n' && out[i + 2] == '\n') triple++;
        if (c == '\n' && i > 0 && out[i - 1] == ' ') trailing++;
        if (c == '\n' && i + 1 < n && out[i + 1] == '\n') blanks++;
    }
    for (size_t i = 0; i < n;) { /* strict UTF-8 */
        unsigned char c = (unsigned char)out[i];
        int len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!len || i + (size_t)len > n) {
            bad_utf8++;
            break;
        }
        for (int k = 1; k < len; k++) bad_utf8 += ((unsigned char)out[i + k] & 0xC0) != 0x80;
        i += (size_t)len;
    }
    T_CHECK(!ctrl && !sep && !triple && !trailing && !bad_utf8,
            "clean text: %d control chars, %d '%%' lines, %d triple newlines, %d trailing spaces, %d bad UTF-8",
            ctrl, sep, triple, trailing, bad_utf8);
    T_CHECK(blanks == ne - 1, "one blank line between entries (%lld for %lld entries)", (long long)blanks,
            (long long)ne);
    duet_free(out);
}

/* ======================================================================== */
/* Every allocation failure point fails cleanly (ASan's leak check runs at exit) */
/* ======================================================================== */

static int alloc_budget = -1, alloc_count = 0;
static void *budget_alloc(void *ud, size_t size, size_t align) {
    (void)ud;
    if (alloc_budget >= 0 && alloc_count >= alloc_budget) return NULL;
    alloc_count++;
    void *p = NULL;
    return posix_memalign(&p, align, size ? size : 1) ? NULL : p;
}
static void budget_free(void *ud, void *p) {
    (void)ud;
    free(p);
}

/* Runs op(ctx) with budgets 0..N-1 where N is what a full run allocates;
 * each must return DUET_ERR_NOMEM (not crash, not succeed). */
static void every_failure(const char *what, duet_status (*op)(void *), void *ctx) {
    duet_allocator a = {budget_alloc, budget_free, NULL};
    duet_set_allocator(&a);
    alloc_budget = -1;
    alloc_count = 0;
    duet_status s = op(ctx);
    int n = alloc_count, bad = -1;
    for (int b = 0; b < n && bad < 0; b++) {
        alloc_count = 0;
        alloc_budget = b;
        if (op(ctx) != DUET_ERR_NOMEM) bad = b;
    }
    alloc_budget = -1;
    duet_set_allocator(NULL);
    T_CHECK(s == DUET_OK && n > 0 && bad < 0, "%s: OK with %d allocations, NOMEM at each failure point (first bad %d)",
            what, n, bad);
}

static duet_status op_idx(void *ctx) {
    char ip[512], lp[512];
    fpath(ip, sizeof ip, "data_idx/images.gz");
    fpath(lp, sizeof lp, "data_idx/labels.gz");
    (void)ctx;
    duet_dataset d;
    duet_status s = duet_dataset_load_idx(ip, lp, &d);
    duet_dataset_free(&d);
    return s;
}

static duet_status op_folder(void *ctx) {
    char dir[512];
    fpath(dir, sizeof dir, (const char *)ctx);
    duet_image_folder_params p;
    duet_image_folder_params_default(&p);
    p.size = 5;
    duet_dataset d;
    duet_status s = duet_image_folder_load(dir, &p, &d, NULL);
    duet_dataset_free(&d);
    return s;
}

static duet_status op_png(void *ctx) {
    (void)ctx;
    uint8_t px[6 * 5 * 3];
    for (int i = 0; i < 90; i++) px[i] = (uint8_t)(i * 7);
    uint8_t *out;
    size_t n;
    duet_status s = duet_png_encode(px, 5, 6, 3, png_text_rgb, 2, &out, &n);
    if (!s) duet_free(out);
    return s;
}

static duet_status op_gif(void *ctx) {
    (void)ctx;
    uint8_t px[40 * 40];
    for (int i = 0; i < 1600; i++) px[i] = (uint8_t)(i * 13 + i / 40);
    duet_gif *g = duet_gif_new(40, 40, 1);
    if (!g) return DUET_ERR_NOMEM;
    duet_status s = DUET_OK;
    for (int k = 0; k < 3 && !s; k++) s = duet_gif_add_frame(g, px, 5);
    const uint8_t *d;
    size_t n;
    if (!s) s = duet_gif_bytes(g, &d, &n);
    duet_gif_free(g);
    return s;
}

static duet_status op_resize(void *ctx) {
    (void)ctx;
    float src[2 * 7 * 5], dst[2 * 3 * 9];
    for (int i = 0; i < 70; i++) src[i] = (float)i;
    return duet_image_resize(dst, 3, 9, src, 2, 7, 5);
}

static duet_status op_texts(void *ctx) {
    (void)ctx;
    const char *src = "Ge1:1 In the beginning.\nExo1:1 Now these.\n";
    char *out;
    size_t n;
    duet_status s = duet_text_kjv(src, strlen(src), &out, &n, NULL);
    if (s) return s;
    duet_free(out);
    char dir[512];
    fpath(dir, sizeof dir, "data_fortunes");
    s = duet_text_fortunes(dir, &out, &n, NULL, NULL);
    if (s) return s;
    duet_free(out);
    duet_corpus c;
    fpath(dir, sizeof dir, "data_corpus/dir");
    s = duet_corpus_load(dir, &c);
    duet_corpus_free(&c);
    return s;
}

static void test_alloc_failures(void) {
    every_failure("dataset_load_idx", op_idx, NULL);
    every_failure("image_folder_load (flat)", op_folder, "data_images/flat");
    every_failure("image_folder_load (classes)", op_folder, "data_images/classes");
    every_failure("png_encode", op_png, NULL);
    every_failure("gif", op_gif, NULL);
    every_failure("image_resize", op_resize, NULL);
    every_failure("kjv, fortunes, corpus folder", op_texts, NULL);
}

/* ======================================================================== */

static duet_status write_golden(const char *dir) {
    t_fix *fx = t_fix_load("data_img.bin");
    if (!fx) return duet_set_error(DUET_ERR_IO, "data_img.bin missing");
    char p[512];
    int64_t sh[8], n;
    duet_status s = DUET_OK;
    /* PNGs */
    const char *pn[2] = {"png_gray", "png_rgb"};
    for (int k = 0; k < 2 && !s; k++) {
        int32_t *v = t_fix_i32(fx, pn[k], &n);
        int nd = t_fix_shape(fx, pn[k], sh);
        uint8_t *px = to_u8(v, n);
        snprintf(p, sizeof p, "%s/%s.png", dir, pn[k]);
        s = duet_png_write(p, px, sh[1], sh[0], nd == 3 ? 3 : 1, k ? png_text_rgb : png_text_gray, 2);
        free(px);
    }
    /* GIFs */
    const char *gn[3] = {"gif_gray", "gif_rgb", "gif_noise"};
    const int *dl[3] = {gif_delays_gray, gif_delays_rgb, gif_delays_noise};
    for (int k = 0; k < 3 && !s; k++) {
        int32_t *v = t_fix_i32(fx, gn[k], &n);
        int nd = t_fix_shape(fx, gn[k], sh);
        int ch = nd == 4 ? 3 : 1;
        uint8_t *px = to_u8(v, n);
        duet_gif *g = duet_gif_new(sh[2], sh[1], ch);
        if (!g) s = DUET_ERR_ARG;
        for (int64_t f = 0; f < sh[0] && !s; f++) s = duet_gif_add_frame(g, px + f * sh[1] * sh[2] * ch, dl[k][f]);
        snprintf(p, sizeof p, "%s/%s.gif", dir, gn[k]);
        if (!s) s = duet_gif_write(g, p);
        duet_gif_free(g);
        free(px);
    }
    t_fix_free(fx);
    return s;
}

int main(int argc, char **argv) {
    duet_init();
    if (argc == 3 && strcmp(argv[1], "--write-golden") == 0) {
        duet_status s = write_golden(argv[2]);
        if (s != DUET_OK) fprintf(stderr, "write-golden: %s\n", duet_last_error());
        return s == DUET_OK ? 0 : 1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/duet_data_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_idx_good();
    test_idx_bad();
    test_fashion();
    test_resize();
    test_image_load();
    test_folder();
    test_png();
    test_grid();
    test_gif();
    test_corpus();
    test_kjv_snippet();
    test_kjv_real();
    test_fortunes();
    test_alloc_failures();
    /* clean the temporary folder */
    const char *left[] = {"gray.png", "rgb.png", "gray.gif", "rgb.gif", "noise.gif"};
    for (size_t i = 0; i < sizeof left / sizeof *left; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", tmpdir, left[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    return t_done();
}
