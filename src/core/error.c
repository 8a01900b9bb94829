/*
 * error.c — status strings and the thread-local last-error buffer.
 */
#include "core/internal.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char last_error[1024];

static const char *const status_names[DUET_STATUS_COUNT] = {
    [DUET_OK] = "ok",
    [DUET_ERR_NOMEM] = "out of memory",
    [DUET_ERR_IO] = "input/output error",
    [DUET_ERR_FORMAT] = "malformed file",
    [DUET_ERR_ARG] = "bad argument",
    [DUET_ERR_SHAPE] = "shape mismatch",
    [DUET_ERR_UNSUPPORTED] = "unsupported",
    [DUET_ERR_INTERNAL] = "internal error",
};

const char *duet_strerror(duet_status s) {
    if ((int)s < 0 || s >= DUET_STATUS_COUNT) return "unknown status";
    return status_names[s];
}

const char *duet_last_error(void) { return last_error; }

void duet_clear_error(void) { last_error[0] = 0; }

duet_status duet_set_error(duet_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

void duet_assert_fail(const char *file, int line, const char *expr) {
    fprintf(stderr, "duet: assertion failed at %s:%d: %s\n", file, line, expr);
    fflush(stderr);
    abort();
}
