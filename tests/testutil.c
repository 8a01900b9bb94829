/*
 * testutil.c — see testutil.h.
 */
#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int t_passed, t_failed;

void t_check_(int ok, const char *file, int line, const char *fmt, ...) {
    if (ok) t_passed++;
    else t_failed++;
    if (!ok || getenv("DUET_TEST_VERBOSE")) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "%s %s:%d: ", ok ? "ok  " : "FAIL", file, line);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

static int close_impl(const char *what, const float *got, const float *wantf,
                      const double *wantd, int64_t n, double rtol, double atol) {
    int64_t worst = -1, nbad = 0;
    double worst_excess = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double w = wantf ? (double)wantf[i] : wantd[i];
        double g = got[i];
        double err = fabs(g - w);
        double tol = atol + rtol * fabs(w);
        int bad = !(err <= tol); /* NaN counts as bad */
        if (bad) {
            nbad++;
            double excess = isnan(err) ? (double)INFINITY : err / (tol > 0 ? tol : 1e-300);
            if (worst < 0 || excess > worst_excess) worst = i, worst_excess = excess;
        }
    }
    if (nbad) {
        double w = wantf ? (double)wantf[worst] : wantd[worst];
        t_check_(0, __FILE__, __LINE__,
                 "%s: %lld of %lld values off; worst [%lld] got %.9g want %.9g (rtol %g atol %g)",
                 what, (long long)nbad, (long long)n, (long long)worst, (double)got[worst], w,
                 rtol, atol);
        return 0;
    }
    t_check_(1, __FILE__, __LINE__, "%s: %lld values close", what, (long long)n);
    return 1;
}

int t_close(const char *what, const float *got, const float *want, int64_t n, double rtol,
            double atol) {
    return close_impl(what, got, want, NULL, n, rtol, atol);
}

int t_close_d(const char *what, const float *got, const double *want, int64_t n, double rtol,
              double atol) {
    return close_impl(what, got, NULL, want, n, rtol, atol);
}

int t_done(void) {
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}

/* ---- fixtures ---- */

typedef struct {
    char *name;
    int dtype, ndim;
    int64_t shape[8];
    int64_t n;
    void *data;
} fix_arr;

struct t_fix {
    int count;
    fix_arr *arr;
    char path[512];
};

static int rd(FILE *fp, void *p, size_t n) { return fread(p, 1, n, fp) == n; }

t_fix *t_fix_load(const char *name) {
    const char *dir = getenv("DUET_FIXTURES");
    if (!dir) dir = "tests/fixtures";
    t_fix *f = calloc(1, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s/%s", dir, name);
    FILE *fp = fopen(f->path, "rb");
    char magic[8];
    uint32_t count;
    if (!fp || !rd(fp, magic, 8) || memcmp(magic, "DUETFIX1", 8) || !rd(fp, &count, 4)) {
        T_CHECK(0, "cannot load fixture %s (run `make fixtures`?)", f->path);
        if (fp) fclose(fp);
        free(f);
        return NULL;
    }
    f->count = (int)count;
    f->arr = calloc(count ? count : 1, sizeof *f->arr);
    for (uint32_t i = 0; i < count; i++) {
        fix_arr *a = &f->arr[i];
        uint32_t nl, dt, nd;
        int ok = rd(fp, &nl, 4) && nl < 4096;
        if (ok) {
            a->name = calloc(nl + 1, 1);
            ok = rd(fp, a->name, nl) && rd(fp, &dt, 4) && rd(fp, &nd, 4) && nd <= 8 && dt <= 2;
        }
        if (ok) {
            a->dtype = (int)dt;
            a->ndim = (int)nd;
            a->n = 1;
            for (uint32_t d = 0; d < nd && ok; d++) {
                ok = rd(fp, &a->shape[d], 8);
                a->n *= a->shape[d];
            }
        }
        if (ok) {
            size_t es = a->dtype == 2 ? 8 : 4;
            a->data = malloc((size_t)a->n * es + 8);
            ok = rd(fp, a->data, (size_t)a->n * es);
        }
        if (!ok) {
            T_CHECK(0, "fixture %s: truncated or malformed at array %u", f->path, i);
            f->count = (int)i;
            fclose(fp);
            t_fix_free(f);
            return NULL;
        }
    }
    fclose(fp);
    return f;
}

void t_fix_free(t_fix *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) {
        free(f->arr[i].name);
        free(f->arr[i].data);
    }
    free(f->arr);
    free(f);
}

static fix_arr *fix_find(t_fix *f, const char *name) {
    if (!f) return NULL;
    for (int i = 0; i < f->count; i++)
        if (f->arr[i].name && strcmp(f->arr[i].name, name) == 0) return &f->arr[i];
    return NULL;
}

int t_fix_has(t_fix *f, const char *name) { return fix_find(f, name) != NULL; }

static void *fix_get(t_fix *f, const char *name, int dtype, int64_t *n) {
    fix_arr *a = fix_find(f, name);
    if (!a || a->dtype != dtype) {
        T_CHECK(0, "fixture %s: no %s array '%s'", f ? f->path : "?",
                dtype == 0 ? "f32" : dtype == 1 ? "i32" : "f64", name);
        return NULL;
    }
    if (n) *n = a->n;
    return a->data;
}

float *t_fix_f32(t_fix *f, const char *name, int64_t *n) { return fix_get(f, name, 0, n); }
int32_t *t_fix_i32(t_fix *f, const char *name, int64_t *n) { return fix_get(f, name, 1, n); }
double *t_fix_f64(t_fix *f, const char *name, int64_t *n) { return fix_get(f, name, 2, n); }

int t_fix_shape(t_fix *f, const char *name, int64_t *shape) {
    fix_arr *a = fix_find(f, name);
    if (!a) return -1;
    for (int i = 0; i < a->ndim; i++) shape[i] = a->shape[i];
    return a->ndim;
}

double t_fix_scalar(t_fix *f, const char *name) {
    fix_arr *a = fix_find(f, name);
    if (!a || a->n < 1) {
        T_CHECK(0, "fixture %s: no scalar '%s'", f ? f->path : "?", name);
        return NAN;
    }
    if (a->dtype == 0) return ((float *)a->data)[0];
    if (a->dtype == 1) return ((int32_t *)a->data)[0];
    return ((double *)a->data)[0];
}

/* ---- finite differences ---- */

int t_gradcheck(const char *what, double (*loss)(void *ctx), void *ctx, float *x, int64_t n,
                const float *analytic, float eps, double rtol, double atol, int64_t max_points) {
    int64_t step = 1;
    if (max_points > 0 && n > max_points) step = (n + max_points - 1) / max_points;
    int64_t worst = -1, nbad = 0;
    double worst_fd = 0, worst_excess = 0;
    for (int64_t i = 0; i < n; i += step) {
        float x0 = x[i];
        x[i] = x0 + eps;
        double lp = loss(ctx);
        x[i] = x0 - eps;
        double lm = loss(ctx);
        x[i] = x0;
        /* the actual perturbation in float may differ from eps: use it */
        double h = ((double)(x0 + eps) - (double)(x0 - eps));
        double fd = (lp - lm) / h;
        double err = fabs(fd - (double)analytic[i]);
        double tol = atol + rtol * fabs(fd);
        if (!(err <= tol)) {
            nbad++;
            double ex = err / tol;
            if (worst < 0 || ex > worst_excess) worst = i, worst_excess = ex, worst_fd = fd;
        }
    }
    if (nbad) {
        t_check_(0, __FILE__, __LINE__,
                 "gradcheck %s: %lld points off; worst [%lld] analytic %.8g fd %.8g", what,
                 (long long)nbad, (long long)worst, (double)analytic[worst], worst_fd);
        return 0;
    }
    t_check_(1, __FILE__, __LINE__, "gradcheck %s", what);
    return 1;
}

void t_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    duet_rng r;
    duet_rng_init(&r, seed);
    duet_rng_uniform(&r, x, n);
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * x[i];
}

double t_dot_d(const float *out, const float *r, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)out[i] * (double)r[i];
    return s;
}
