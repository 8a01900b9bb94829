/*
 * testutil.h — the small test harness every tests/test_*.c uses: checks that
 * count, array comparison with tolerances, PyTorch fixture files, and central
 * finite differences. Each test binary ends with t_done(), which prints
 * "N passed, N failed" and returns non-zero when anything failed.
 */
#ifndef DUET_TESTUTIL_H
#define DUET_TESTUTIL_H

#include "duet.h"

#include <stdint.h>

extern int t_passed, t_failed;

/* One check. Prints the message only on failure (and with DUET_TEST_VERBOSE). */
#define T_CHECK(cond, ...) t_check_((cond) != 0, __FILE__, __LINE__, __VA_ARGS__)
void t_check_(int ok, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Compares got[i] with want[i]: |got-want| <= atol + rtol*|want| for all i.
 * One check; on failure prints the worst index. Returns 1 when close. */
int t_close(const char *what, const float *got, const float *want, int64_t n, double rtol,
            double atol);
/* Same against a double reference. */
int t_close_d(const char *what, const float *got, const double *want, int64_t n, double rtol,
              double atol);

/* Prints the summary line and returns the exit status. */
int t_done(void);

/* ---- fixtures: files written by the scripts in tests/ref (fixture.py) ---- */
/* Layout: "DUETFIX1", u32 count, then per array: u32 name length, name,
 * u32 dtype (0 f32, 1 i32, 2 f64), u32 ndim, i64 shape[ndim], raw LE data. */
typedef struct t_fix t_fix;
/* Loads tests/fixtures/<name> (or $DUET_FIXTURES/<name>); NULL + failed check if missing. */
t_fix *t_fix_load(const char *name);
void t_fix_free(t_fix *f);
/* Array by name (f32 / i32 / f64); n (numel) and shape may be NULL. Fails the
 * check and returns NULL when absent or of another dtype. */
float *t_fix_f32(t_fix *f, const char *name, int64_t *n);
int32_t *t_fix_i32(t_fix *f, const char *name, int64_t *n);
double *t_fix_f64(t_fix *f, const char *name, int64_t *n);
int t_fix_has(t_fix *f, const char *name);
/* Shape of an array: returns ndim, fills shape (up to 8). -1 when absent. */
int t_fix_shape(t_fix *f, const char *name, int64_t *shape);
/* A scalar stored as a 1-element array (f32, i32 or f64), as a double. */
double t_fix_scalar(t_fix *f, const char *name);

/* ---- finite differences ---- */
/* loss(ctx) evaluates a scalar (accumulated in double) from the current
 * inputs. For each of n entries of x (or a strided sample of at most
 * max_points), the central difference (L(x+eps) - L(x-eps)) / 2eps in double
 * is compared with analytic[i]: |fd - an| <= atol + rtol*|fd|. One check. */
int t_gradcheck(const char *what, double (*loss)(void *ctx), void *ctx, float *x, int64_t n,
                const float *analytic, float eps, double rtol, double atol, int64_t max_points);

/* Deterministic test data: uniform in [lo, hi) from a seed. */
void t_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi);
/* sum_i out[i] * r[i] in double: the usual "random projection" loss. */
double t_dot_d(const float *out, const float *r, int64_t n);

#endif
