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

/* Anonymous memory for streaming large buffers: `bytes` at a 2 MiB-aligned
 * address, advised for transparent huge pages (Linux MADV_HUGEPAGE; with the
 * kernel's "madvise" setting this is what gets them). On this project's VM
 * a TLB miss is a two-level page walk, and streaming from 2 MiB pages ran
 * 5-12% faster than from 4 KiB ones. Mapped directly, not through the
 * allocation hook (like a mapped file). Returns NULL (errno set) on failure;
 * duet_huge_free takes back what h names (safe on a zeroed h). */
typedef struct duet_huge {
    void *base;  /* the mapping */
    size_t len;
} duet_huge;
void *duet_huge_alloc(size_t bytes, duet_huge *h);
void duet_huge_free(duet_huge *h);

/* Gives back the whole pages inside [p, p + n) of memory that will not be
 * read again (madvise MADV_DONTNEED): a mapped file's pages leave the
 * process (a later read would fetch them again), anonymous ones are freed
 * (a later read would see zeros). A hint: errors are ignored. */
void duet_pages_release(const void *p, size_t n);

/* The wrapping sum of n bytes read as 64-bit words (n a multiple of 256),
 * with the widest loads the CPU has (AVX-512, AVX2, else plain): the read
 * of duet_membw_read and bench/bench_qmv (kernels/memread.c). */
uint64_t duet_read_sum(const void *p, size_t n);

/* Rows per OpenMP chunk so each thread gets a few chunks of useful size. */
static inline int duet_omp_enough(int64_t work) { return work > 32768; }

#endif
