/*
 * internal.h — private helpers shared across duet's source files: the
 * always-on assert, small math helpers. Never included by users.
 */
#ifndef DUET_INTERNAL_H
#define DUET_INTERNAL_H

#include "duet.h"

#include <stdio.h>
#include <stdlib.h>

/* Programmer errors: on in release builds, prints file, line, expression. */
#define DUET_ASSERT(x)                                                                  \
    do {                                                                                \
        if (!(x)) duet_assert_fail(__FILE__, __LINE__, #x);                             \
    } while (0)

_Noreturn void duet_assert_fail(const char *file, int line, const char *expr);

#define DUET_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DUET_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Rows per OpenMP chunk so each thread gets a few chunks of useful size. */
static inline int duet_omp_enough(int64_t work) { return work > 32768; }

#endif
