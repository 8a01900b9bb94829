/*
 * alloc.c — the one allocation hook and the arena (bump allocator).
 *
 * Every byte duet allocates goes through `hook`, so a test can count
 * allocations or make the N-th one fail. Arenas grow by chaining blocks and
 * merge them into one at reset, so a steady training loop stops allocating.
 */
#include "core/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *default_alloc(void *ud, size_t size, size_t align) {
    (void)ud;
    void *p = NULL;
    if (posix_memalign(&p, align, size ? size : 1) != 0) return NULL;
    return p;
}

static void default_free(void *ud, void *ptr) {
    (void)ud;
    free(ptr);
}

static duet_allocator hook = {default_alloc, default_free, NULL};

void duet_set_allocator(const duet_allocator *a) {
    if (a) hook = *a;
    else hook = (duet_allocator){default_alloc, default_free, NULL};
}

void *duet_alloc(size_t size) {
    void *p = hook.alloc(hook.ud, size, 64);
    if (!p) duet_set_error(DUET_ERR_NOMEM, "out of memory allocating %zu bytes", size);
    return p;
}

void *duet_calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        duet_set_error(DUET_ERR_NOMEM, "allocation size overflow (%zu x %zu)", n, size);
        return NULL;
    }
    void *p = duet_alloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

void duet_free(void *ptr) {
    if (ptr) hook.free(hook.ud, ptr);
}

/* ---- arena ------------------------------------------------------------- */

typedef struct arena_block {
    struct arena_block *prev;
    size_t cap, used;
    unsigned char *mem;
} arena_block;

struct duet_arena {
    arena_block *head;  /* current block; older ones via prev */
    size_t total_used;  /* bytes handed out since reset (incl. padding) */
    size_t peak;
    size_t initial;
};

static arena_block *block_new(size_t cap) {
    arena_block *b = duet_alloc(sizeof *b);
    if (!b) return NULL;
    b->mem = duet_alloc(cap);
    if (!b->mem) {
        duet_free(b);
        return NULL;
    }
    b->prev = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

static void blocks_free(arena_block *b) {
    while (b) {
        arena_block *p = b->prev;
        duet_free(b->mem);
        duet_free(b);
        b = p;
    }
}

duet_arena *duet_arena_new(size_t initial_bytes) {
    duet_arena *a = duet_alloc(sizeof *a);
    if (!a) return NULL;
    memset(a, 0, sizeof *a);
    a->initial = initial_bytes ? initial_bytes : 1 << 20;
    a->head = block_new(a->initial);
    if (!a->head) {
        duet_free(a);
        return NULL;
    }
    return a;
}

void duet_arena_free(duet_arena *a) {
    if (!a) return;
    blocks_free(a->head);
    duet_free(a);
}

void *duet_arena_alloc(duet_arena *a, size_t size) {
    size_t need = (size + 63) & ~(size_t)63;
    if (need < size) {
        duet_set_error(DUET_ERR_NOMEM, "arena allocation of %zu bytes overflows", size);
        return NULL;
    }
    arena_block *b = a->head;
    if (b->cap - b->used < need) {
        size_t cap = DUET_MAX(need, b->cap * 2);
        arena_block *nb = block_new(cap);
        if (!nb) return NULL;
        nb->prev = b;
        a->head = b = nb;
    }
    void *p = b->mem + b->used;
    b->used += need;
    a->total_used += need;
    if (a->total_used > a->peak) a->peak = a->total_used;
    return p;
}

void duet_arena_reset(duet_arena *a) {
    if (a->head->prev) {
        /* merge: one block big enough for the peak seen so far, its pages
         * touched now, not by the next pass's first writes (for a 1.1B
         * model's 128-token prompt ~10% of a pass went to page faults and
         * the kernel's zeroing of fresh pages) */
        arena_block *nb = block_new(a->peak);
        if (nb) {
            memset(nb->mem, 0, a->peak);
            blocks_free(a->head);
            a->head = nb;
        } else {
            /* keep the chain; just rewind every block (still correct) */
            blocks_free(a->head->prev);
            a->head->prev = NULL;
        }
    }
    a->head->used = 0;
    a->total_used = 0;
}

size_t duet_arena_used(const duet_arena *a) { return a->total_used; }
size_t duet_arena_peak(const duet_arena *a) { return a->peak; }

/* ======================================================================== */
/* Huge-page memory                                                          */
/* ======================================================================== */

void *duet_huge_alloc(size_t bytes, duet_huge *h) {
    const size_t hp = (size_t)2 << 20;
    h->base = NULL, h->len = 0;
    if (bytes > SIZE_MAX - 2 * hp) return NULL;
    const size_t len = (bytes + hp - 1) / hp * hp + hp; /* + room to align */
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    unsigned char *p = (unsigned char *)(((uintptr_t)base + hp - 1) & ~(uintptr_t)(hp - 1));
#ifdef MADV_HUGEPAGE
    madvise(p, len - (size_t)(p - (unsigned char *)base), MADV_HUGEPAGE);
#endif
    h->base = base, h->len = len;
    return p;
}

void duet_pages_release(const void *p, size_t n) {
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), b = ((uintptr_t)p + n) & ~(pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

void duet_huge_free(duet_huge *h) {
    if (h->base) munmap(h->base, h->len);
    h->base = NULL, h->len = 0;
}
